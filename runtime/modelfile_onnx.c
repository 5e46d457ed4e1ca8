/* ONNX models behind the model-file API (include/kiln/modelfile.h): a .onnx file opened as a
 * kl_modelfile, so that kiln predict and kiln serve score it with the calls they use for kiln's
 * own files. The signature comes from the graph: its one input and one output, FP32, the batch as
 * dim 0. There is no standardisation, no class names and no training config: the graph's output is
 * returned as it is (task regression: "predictions"), and what needs a config (online learning,
 * scoring against answers, saving) says it is not supported for ONNX models yet. */
#include <stdlib.h>
#include <string.h>

#include "kiln/onnx.h"
#include "runtime/modelfile_parts.h"

bool kl__modelfile_is_onnx(const char *path)
{
    size_t n = strlen(path);
    return n >= 5 && !strcmp(path + n - 5, ".onnx");
}

/* The signature of m's one input and one output. */
static kl_status onnx_signature(kl_modelfile *mf, const char *path, kl_error *err)
{
    const kl_onnx *m = mf->onnx;
    if (kl_onnx_num_inputs(m) != 1 || kl_onnx_num_outputs(m) != 1)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: the graph has %d inputs and %d outputs; scoring ONNX models with "
                            "more than one input or output is not supported yet",
                            path, kl_onnx_num_inputs(m), kl_onnx_num_outputs(m));
    const kl_onnx_io *in = kl_onnx_input(m, 0), *out = kl_onnx_output(m, 0);
    if (out->features > 1 << 20)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: output '%s' has %lld values per sample; kiln serves at most %d",
                            path, out->name, (long long)out->features, 1 << 20);
    mf->sig.input_name = in->name;
    mf->sig.output_name = out->name;
    mf->sig.datatype = KL__MODELFILE_DATATYPE;
    mf->sig.input.ndim = in->shape.ndim - 1;
    for (int i = 1; i < in->shape.ndim; i++)
        mf->sig.input.d[i - 1] = in->shape.d[i];
    mf->sig.features = in->features;
    mf->sig.outputs = (int)out->features;
    mf->sig.task = KL_TASK_REGRESSION;
    mf->sig.nstats = 0;
    return KL_OK;
}

kl_status kl__modelfile_open_onnx(const char *path, int64_t max_batch, kl_modelfile **out,
                                  kl_error *err)
{
    kl_modelfile *mf = calloc(1, sizeof *mf);
    *out = NULL;
    if (!mf || !(mf->path = strdup(path))) {
        free(mf);
        return kl_error_set(err, KL_ENOMEM, "out of memory loading %s", path);
    }
    kl_onnx_opts o = {.max_batch = max_batch};
    kl_status st = kl_onnx_load(path, &o, &mf->onnx, err);
    if (!st)
        st = onnx_signature(mf, path, err);
    /* The scoring buffers, once: a request allocates nothing. The sizes are the compiled graph's,
     * already checked by the importer. */
    int64_t b = st ? 0 : kl_onnx_max_batch(mf->onnx);
    if (!st && !(mf->onnx_io = malloc((size_t)(b * (mf->sig.features + mf->sig.outputs)) *
                                      sizeof *mf->onnx_io)))
        st = kl_error_set(err, KL_ENOMEM, "%s: out of memory for batches of %lld", path,
                          (long long)b);
    if (st) {
        kl_modelfile_free(mf);
        return st;
    }
    *out = mf;
    return KL_OK;
}

kl_status kl__modelfile_run_onnx(kl_modelfile *mf, const float *x, const void *y, int64_t n,
                                 float *out, int32_t *classes, kl_error *err)
{
    if (y)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: scoring against answers (labels or targets) is not supported for "
                            "ONNX models yet; score the inputs alone",
                            mf->path);
    int64_t f = mf->sig.features, k = mf->sig.outputs, max_b = kl_onnx_max_batch(mf->onnx);
    float *xb = mf->onnx_io, *yb = mf->onnx_io + max_b * f;
    kl_status st = KL_OK;
    for (int64_t s = 0; s < n && !st; s += max_b) {
        int64_t b = n - s < max_b ? n - s : max_b;
        float *dst = out ? out + s * k : yb;
        if (!(st = kl__modelfile_put_inputs(mf, x + s * f, b, s, xb, err)))
            st = kl_onnx_run(mf->onnx, (const float *const *)&xb, b, &dst, err);
        for (int64_t i = 0; !st && i < b * k; i++)
            if (!(dst[i] == dst[i]) || dst[i] - dst[i] != 0)
                st = kl_error_set(err, KL_ERANGE,
                                  "%s: the model's output for sample %lld (counting from 0) is %g",
                                  mf->path, (long long)(s + i / k), (double)dst[i]);
        /* The argmax of each output row, for callers that ask. */
        for (int64_t r = 0; !st && classes && r < b; r++) {
            int32_t best = 0;
            for (int64_t j = 1; j < k; j++)
                if (dst[r * k + j] > dst[r * k + best])
                    best = (int32_t)j;
            classes[s + r] = best;
        }
    }
    return st;
}
