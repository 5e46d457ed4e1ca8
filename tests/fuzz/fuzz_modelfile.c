/* A libFuzzer target for the model-file loader (runtime/modelfile.c, ckpt.c, h5.c, and the config
 * and model builder behind them). The input is a recipe (fuzz_h5.h): its first byte picks a model
 * file that kiln export wrote (tests/fuzz/seeds-modelfile), then each op edits it as a damaged or
 * hostile file could be: root and /model attributes, /model/input_shape, a splice into the
 * /config YAML the model is rebuilt from, the standardisation statistics, a parameter's shape or
 * values, the reference statistics, the signature and labels, or a deleted object. The file is
 * loaded as kiln predict and kiln serve load one; a model that loads must score a batch: finite
 * probabilities that sum to 1 (or finite predictions), classes in range, reference edges in
 * order. HDF5 must stay quiet and every HDF5 object must be closed afterwards. tests/fuzz/run.sh
 * builds and runs it. */
#include <math.h>

#include "fuzz_h5.h"
#include "kiln/modelfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { BATCH = 3 };

static void check_reference(const kl_modelfile *mf)
{
    const kl_modelfile_reference *r = kl_modelfile_ref(mf);
    for (int64_t j = 0; r && j < kl_modelfile_sig(mf)->features; j++)
        for (int b = 0; b < KL_MODELFILE_BINS; b++)
            if (!(r->input_edges[j * (KL_MODELFILE_BINS + 1) + b] <=
                  r->input_edges[j * (KL_MODELFILE_BINS + 1) + b + 1]))
                __builtin_trap();
}

static void check_scores(kl_modelfile *mf)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    float *x = calloc((size_t)(BATCH * s->features), sizeof *x);
    float *out = malloc((size_t)(BATCH * s->outputs) * sizeof *out);
    int32_t classes[BATCH];
    if (!x || !out)
        abort();
    for (int64_t i = 0; i < BATCH * s->features; i++)
        x[i] = (float)(i % 7) - 3;
    kl_error err = {0};
    kl_status st = kl_modelfile_predict(mf, x, BATCH, out, classes, &err);
    if (st != KL_OK)
        fuzz_check_error(st, &err);
    bool cls = s->task == KL_TASK_CLASSIFICATION;
    for (int i = 0; st == KL_OK && i < BATCH; i++) {
        double sum = 0;
        for (int k = 0; k < s->outputs; k++)
            sum += out[i * s->outputs + k];
        if (!isfinite(sum) || (cls && (fabs(sum - 1) > 1e-3 || classes[i] < 0 ||
                                       classes[i] >= s->outputs || !kl_modelfile_label(mf, 0)))) {
            fprintf(stderr, "fuzz: sample %d scores a sum of %g (class %d of %d)\n", i, sum,
                    (int)classes[i], s->outputs);
            __builtin_trap();
        }
    }
    free(x);
    free(out);
}

/* Splices the recipe's bytes into the /config text: a YAML the model is then rebuilt from. */
static void splice_config(hid_t f, fuzz_in *in)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t d = H5Dopen2(f, "config", H5P_DEFAULT);
    char *text = NULL;
    if (d < 0 || H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) < 0 || !text)
        text = NULL;
    size_t len = text ? strlen(text) : 0, at = ((size_t)in_u8(in) << 8 | in_u8(in)) % (len + 1);
    size_t cut = in_u8(in) % 16, add = in_u8(in) % 32;
    cut = cut < len - at ? cut : len - at;
    char *next = malloc(len + add + 1);
    if (next) {
        memcpy(next, text ? text : "", at);
        for (size_t i = 0; i < add; i++)
            next[at + i] = (char)(in_u8(in) | 1); /* no NUL inside the text */
        memcpy(next + at + add, (text ? text : "") + at + cut, len - at - cut + 1);
    }
    if (d >= 0) {
        if (text)
            H5Dvlen_reclaim(t, sp, H5P_DEFAULT, &text);
        H5Dclose(d);
    }
    H5Ldelete(f, "config", H5P_DEFAULT);
    d = next ? H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    if (d >= 0) {
        H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &next);
        H5Dclose(d);
    }
    free(next);
    H5Sclose(sp);
    H5Tclose(t);
}

/* The name of link k (modulo their number) of group path, into name; false when it has none. */
static bool nth_link(hid_t f, const char *path, uint8_t k, char *name, size_t size)
{
    H5G_info_t info;
    if (H5Gget_info_by_name(f, path, &info, H5P_DEFAULT) < 0 || info.nlinks == 0)
        return false;
    ssize_t n = H5Lget_name_by_idx(f, path, H5_INDEX_NAME, H5_ITER_INC, k % info.nlinks, name, size,
                                   H5P_DEFAULT);
    return n > 0 && (size_t)n < size;
}

/* One op of the recipe on the open model file f. */
static void edit(hid_t f, uint8_t op, uint8_t which, fuzz_in *in)
{
    static const char *const root[] = {"format_version", "format"};
    static const char *const model[] = {"outputs", "task", "label_smoothing", "seed"};
    static const char *const ref[] = {"samples", "seed", "bins"};
    static const char *const tables[] = {"reference/input/edges", "reference/input/proportions",
                                         "preprocessing/mean", "preprocessing/std"};
    static const char *const objects[] = {"config",
                                          "model",
                                          "model/input_shape",
                                          "params",
                                          "buffers",
                                          "reference",
                                          "signature",
                                          "labels",
                                          "preprocessing",
                                          "reference/input",
                                          "signature/outputs/probabilities"};
    char name[256], path[300];
    hid_t g = -1;
    switch (op % 9) {
    case 0:
        fuzz_h5_attr(f, root[which % 2], in);
        break;
    case 1:
        if ((g = H5Gopen2(f, "model", H5P_DEFAULT)) >= 0)
            fuzz_h5_dataset(g, "input_shape", in);
        break;
    case 2:
        if ((g = H5Gopen2(f, "model", H5P_DEFAULT)) >= 0)
            fuzz_h5_attr(g, model[which % 4], in);
        break;
    case 3:
        splice_config(f, in);
        break;
    case 4:
        if ((g = H5Gopen2(f, "preprocessing", H5P_DEFAULT)) >= 0)
            which & 4 ? fuzz_h5_attr(g, "nstats", in)
                      : fuzz_h5_dataset(g, which & 8 ? "std" : "mean", in);
        break;
    case 5:
        if (nth_link(f, "params", which, name, sizeof name)) {
            snprintf(path, sizeof path, "params/%s", name);
            if (which & 0x80)
                fuzz_h5_poke(f, path, in);
            else if ((g = H5Gopen2(f, "params", H5P_DEFAULT)) >= 0)
                fuzz_h5_dataset(g, name, in);
        }
        break;
    case 6:
        if (which & 0x80)
            fuzz_h5_poke(f, tables[which % 4], in);
        else if ((g = H5Gopen2(f, "reference", H5P_DEFAULT)) >= 0)
            fuzz_h5_attr(g, ref[which % 3], in);
        break;
    case 7:
        if ((g = H5Gopen2(f, "signature/inputs/input", H5P_DEFAULT)) >= 0)
            fuzz_h5_attr(g, which & 1 ? "shape" : "datatype", in);
        break;
    case 8:
        H5Ldelete(f, objects[which % (sizeof objects / sizeof *objects)], H5P_DEFAULT);
        break;
    }
    if (g >= 0)
        H5Gclose(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    hid_t f = fuzz_h5_open(in_u8(&in) % fuzz_nseeds);
    while (in.n) {
        uint8_t op = in_u8(&in), which = in_u8(&in);
        edit(f, op, which, &in);
    }
    const char *path = fuzz_h5_save(f, "model.h5");
    kl_modelfile *mf = NULL;
    kl_error err = {0};
    kl_status st = kl_modelfile_load(path, BATCH, &mf, &err);
    if (st == KL_OK) {
        check_reference(mf);
        check_scores(mf);
    } else {
        fuzz_check_error(st, &err);
    }
    kl_modelfile_free(mf);
    fuzz_h5_check_closed();
    return 0;
}
