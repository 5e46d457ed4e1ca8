/* The model file's reader (include/kiln/modelfile.h): opening a kiln-model file (or, for export,
 * a checkpoint), rebuilding its model from the stored config, and scoring raw inputs in batches
 * with the stored standardisation applied on the way into the graph. `kiln predict`, `kiln serve`,
 * `kiln export` (for the reference predictions) and the benchmarks call it; its writer is
 * runtime/modelfile_write.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/ckpt.h"
#include "runtime/modelfile_parts.h"

static const char *const fashion_mnist_labels[] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static void free_labels(kl_modelfile *mf)
{
    for (int k = 0; k < mf->nlabels; k++)
        free(mf->labels[k]);
    free(mf->labels);
    mf->labels = NULL;
    mf->nlabels = 0;
}

void kl_modelfile_free(kl_modelfile *mf)
{
    if (!mf)
        return;
    if (mf->built)
        kl_model_free(&mf->m);
    if (mf->score_built)
        kl_model_free(&mf->score);
    kl_config_free(mf->cfg);
    kl_onnx_free(mf->onnx);
    free(mf->onnx_io);
    kl__modelfile_free_xgb(mf);
    free_labels(mf);
    free(mf->ref_data);
    free(mf->exps);
    free(mf->mean);
    free(mf->std);
    free(mf->config_text);
    free(mf->path);
    free(mf->lineage.run);
    free(mf->lineage.checkpoint);
    free(mf->lineage.parent);
    free(mf);
}

kl_status kl__modelfile_set_lineage(char **field, const char *value, kl_error *err)
{
    char *copy = value ? strdup(value) : NULL;
    if (value && !copy)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    free(*field);
    *field = copy;
    return KL_OK;
}

const kl_modelfile_lineage *kl_modelfile_lineage_of(const kl_modelfile *mf)
{
    return &mf->lineage;
}

/* /lineage, when the file has one (files written before it have not). */
static kl_status read_lineage(kl_modelfile *mf, hid_t file, kl_error *err)
{
    if (!kl__h5_exists(file, "lineage"))
        return KL_OK;
    hid_t g = H5Gopen2(file, "lineage", H5P_DEFAULT);
    bool ok = g >= 0 && kl__h5_get_str(g, "run", &mf->lineage.run) >= 0 &&
              kl__h5_get_str(g, "checkpoint", &mf->lineage.checkpoint) >= 0 &&
              kl__h5_get_str(g, "parent", &mf->lineage.parent) >= 0 &&
              kl__h5_get_i64(g, "parent_version", &mf->lineage.parent_version) >= 0;
    kl__h5_close(g, H5Gclose);
    return ok ? KL_OK
              : kl_error_set(err, KL_EFORMAT,
                             "%s: /lineage is damaged (an attribute of another type)", mf->path);
}

kl_status kl__modelfile_default_labels(kl_modelfile *mf, kl_error *err)
{
    free_labels(mf);
    int k = mf->sig.task == KL_TASK_CLASSIFICATION ? mf->sig.outputs : 0;
    const char *ds = mf->cfg ? mf->cfg->data.dataset : NULL;
    bool fashion = ds && !strcmp(ds, "fashion-mnist") && k == 10;
    if (k == 0)
        return KL_OK;
    if (!(mf->labels = calloc((size_t)k, sizeof *mf->labels)))
        return kl_error_set(err, KL_ENOMEM, "out of memory naming the classes");
    mf->nlabels = k;
    for (int i = 0; i < k; i++) {
        char num[16];
        snprintf(num, sizeof num, "%d", i);
        if (!(mf->labels[i] = strdup(fashion ? fashion_mnist_labels[i] : num)))
            return kl_error_set(err, KL_ENOMEM, "out of memory naming the classes");
    }
    return KL_OK;
}

/* ---- reading a model file's own groups ---- */

/* An int64 array attribute of up to max values: the count read, or -1. */
static int get_i64s_attr(hid_t obj, const char *name, int64_t *v, int max)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), sp = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = n >= 1 && n <= max && H5Aread(a, H5T_NATIVE_INT64, v) >= 0 ? (int)n : -1;
    kl__h5_close(sp, H5Sclose);
    kl__h5_close(a, H5Aclose);
    return rc;
}

/* Checks that /signature/<kind>s/<name> says FP32 and shape [-1, dims...]. */
static bool signature_entry_is(hid_t file, const char *kind, const char *name, const int64_t *dims,
                               int ndim)
{
    char path[128], *dt = NULL;
    snprintf(path, sizeof path, "signature/%ss/%s", kind, name);
    if (!kl__h5_exists(file, path))
        return false;
    hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
    int64_t shape[KL_MAX_DIMS + 2];
    int n = g >= 0 ? get_i64s_attr(g, "shape", shape, KL_MAX_DIMS + 2) : -1;
    bool ok = n == ndim + 1 && shape[0] == -1 && kl__h5_get_str(g, "datatype", &dt) > 0 &&
              !strcmp(dt, KL__MODELFILE_DATATYPE);
    for (int i = 0; ok && i < ndim; i++)
        ok = shape[i + 1] == dims[i];
    free(dt);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static kl_status read_signature(kl_modelfile *mf, hid_t file, kl_error *err)
{
    const kl_modelfile_signature *s = &mf->sig;
    int64_t out = s->outputs;
    if (!signature_entry_is(file, "input", s->input_name, s->input.d, s->input.ndim) ||
        !signature_entry_is(file, "output", s->output_name, &out, 1))
        return kl_error_set(err, KL_EFORMAT,
                            "%s: the signature (/signature) is missing or does not match the "
                            "model (/model); the file is damaged: export it again",
                            mf->path);
    return KL_OK;
}

static kl_status read_labels(kl_modelfile *mf, hid_t file, kl_error *err)
{
    if (mf->sig.task != KL_TASK_CLASSIFICATION)
        return KL_OK;
    int k = mf->sig.outputs;
    if (!(mf->labels = calloc((size_t)k, sizeof *mf->labels)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading the class names");
    mf->nlabels = k;
    int nd;
    int64_t dims[8];
    if (kl__h5_shape(file, "labels", &nd, dims) != 0 || nd != 1 || dims[0] != k)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: /labels must hold one name per class (%d); export the model again",
                            mf->path, k);
    return kl__h5_get_strings(file, "labels", mf->labels, k, mf->path, "/labels", err);
}

/* Edges must be finite and non-decreasing (equal edges are common: a constant pixel), and
 * proportions finite and in [0, 1]: a NaN edge puts every value in the last bin, which a drift
 * monitor reads as a shift. which names a row in messages ("input feature"). */
static kl_status check_table(const kl_modelfile *mf, const char *name, const char *which,
                             const float *v, int64_t rows, int64_t cols, bool edges, kl_error *err)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t b = 0; b < (cols ? cols : 1); b++) {
            float x = v[r * (cols ? cols : 1) + b];
            bool ok =
                isfinite(x) && (edges ? b == 0 || x >= v[r * cols + b - 1] : x >= 0 && x <= 1);
            if (!ok)
                return kl_error_set(err, KL_EFORMAT,
                                    "%s: /reference/%s of %s %lld: value %lld is %g, %s; the "
                                    "reference statistics are damaged: export the model again",
                                    mf->path, name, which, (long long)r, (long long)b, (double)x,
                                    edges ? "and edges must be finite and in increasing order"
                                          : "and proportions must be between 0 and 1");
        }
    return KL_OK;
}

/* Reads dataset name as f32 of shape (rows, cols) (cols 0: 1-D) into v. */
static kl_status get_table(kl_modelfile *mf, hid_t ref, const char *name, const char *which,
                           int64_t rows, int64_t cols, float *v, kl_error *err)
{
    int64_t dims[2] = {rows, cols};
    char what[96];
    snprintf(what, sizeof what, "reference statistics %s", name);
    kl_status st = kl__h5_get_f32(ref, name, v, cols ? 2 : 1, dims, cols ? rows * cols : rows,
                                  mf->path, what, err);
    return st == KL_OK ? check_table(mf, name, which, v, rows, cols, strstr(name, "edges"), err)
                       : st;
}

static kl_status read_reference(kl_modelfile *mf, hid_t file, kl_error *err)
{
    if (!kl__h5_exists(file, "reference"))
        return KL_OK;
    const int B = KL_MODELFILE_BINS;
    int64_t f = mf->sig.features, k = mf->sig.outputs, samples = 0, seed = 0, bins = 0;
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    hid_t ref = H5Gopen2(file, "reference", H5P_DEFAULT);
    kl_status st = KL_OK;
    if (ref < 0 || kl__h5_get_i64(ref, "samples", &samples) <= 0 || samples < 1 ||
        kl__h5_get_i64(ref, "seed", &seed) <= 0 || kl__h5_get_i64(ref, "bins", &bins) <= 0)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: /reference lacks its samples, seed or bins attribute; the file is "
                          "damaged: export it again",
                          mf->path);
    else if (bins != B)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: /reference has %lld bins; this kiln reads %d (deciles)", mf->path,
                          (long long)bins, B);
    size_t n = 0;
    char what[300];
    snprintf(what, sizeof what, "%s: /reference", mf->path);
    /* An upper bound of n below, checked before it is computed: f comes from the file. */
    if (st == KL_OK)
        st = kl_dims_check(2, (int64_t[]){f + 2 * k, 2 * B + 1}, sizeof(float), what, NULL, err);
    if (st == KL_OK)
        n = (size_t)(f * (2 * B + 1) + (cls ? 2 * k : 2 * k * (2 * B + 1)));
    if (st == KL_OK && !(mf->ref_data = malloc(n * sizeof *mf->ref_data)))
        st = kl_error_set(err, KL_ENOMEM, "out of memory reading the reference statistics");
    kl_modelfile_reference *r = &mf->ref;
    float *p = mf->ref_data;
    if (st == KL_OK) {
        r->samples = samples;
        r->seed = (uint64_t)seed;
        r->input_edges = p;
        r->input_proportions = p + f * (B + 1);
        p += f * (2 * B + 1);
        st = get_table(mf, ref, "input/edges", "input feature", f, B + 1, (float *)r->input_edges,
                       err);
    }
    if (st == KL_OK)
        st = get_table(mf, ref, "input/proportions", "input feature", f, B,
                       (float *)r->input_proportions, err);
    if (st == KL_OK && cls) {
        r->label_proportions = p;
        r->predicted_proportions = p + k;
        st = get_table(mf, ref, "labels/proportions", "class", k, 0, p, err);
        if (st == KL_OK)
            st = get_table(mf, ref, "predictions/proportions", "class", k, 0, p + k, err);
    } else if (st == KL_OK) {
        const char *names[4] = {"targets/edges", "targets/proportions", "predictions/edges",
                                "predictions/proportions"};
        const float **dst[4] = {&r->target_edges, &r->target_proportions, &r->prediction_edges,
                                &r->prediction_proportions};
        for (int i = 0; i < 4 && st == KL_OK; i++) {
            int64_t cols = i % 2 ? B : B + 1;
            *dst[i] = p;
            st = get_table(mf, ref, names[i], i < 2 ? "target" : "prediction", k, cols, p, err);
            p += k * cols;
        }
    }
    kl__h5_close(ref, H5Gclose);
    mf->has_ref = st == KL_OK;
    return st;
}

/* ---- opening ---- */

static kl_status build(kl_modelfile *mf, kl_ckpt *c, int64_t max_batch, const kl_device_choice *dev,
                       kl_error *err)
{
    const char *text = kl_ckpt_config_text(c);
    if (!(mf->config_text = strdup(text)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", mf->path);
    if (!(mf->cfg = kl_config_parse_model(mf->path, text, strlen(text), err)))
        return err ? err->status : KL_EFORMAT;
    kl_model_options o;
    kl_status st = kl_ckpt_read_model_options(c, &o, err);
    if (st != KL_OK)
        return st;
    /* The graph's input holds max_batch samples of the shape the file gives. */
    int64_t in[KL_MAX_DIMS + 1] = {max_batch};
    memcpy(in + 1, o.input.d, (size_t)o.input.ndim * sizeof *in);
    char what[300];
    snprintf(what, sizeof what, "%s: /model/input_shape at a batch of %lld", mf->path,
             (long long)max_batch);
    if ((st = kl_dims_check(o.input.ndim + 1, in, sizeof(float), what, NULL, err)) != KL_OK)
        return st;
    o.batch = max_batch;
    o.trainable = false;
    o.inference = true;
    o.device = dev ? dev->device : KL_DEVICE_CPU;
    o.device_index = dev ? dev->index : 0;
    if ((st = kl_model_build(&mf->cfg->model, &o, &mf->m, err)) != KL_OK)
        return st;
    mf->built = true;
    kl_graph_set_mode(mf->m.g, KL_MODE_EVAL);
    if ((st = kl_ckpt_read_weights(c, mf->m.g, err)) != KL_OK ||
        (st = kl_graph_to_device(mf->m.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err)) != KL_OK)
        return st;
    kl_modelfile_signature *s = &mf->sig;
    s->input_name = KL__MODELFILE_INPUT_NAME;
    s->output_name = o.task == KL_TASK_CLASSIFICATION ? "probabilities" : "predictions";
    s->datatype = KL__MODELFILE_DATATYPE;
    s->input = o.input;
    s->features = kl_shape_numel(&o.input);
    s->outputs = o.outputs;
    s->task = o.task;
    if (!(mf->exps = malloc((size_t)o.outputs * sizeof *mf->exps)))
        return kl_error_set(err, KL_ENOMEM, "out of memory building %s", mf->path);
    if ((st = kl_ckpt_read_stats(c, &mf->mean, &mf->std, &s->nstats, err)) != KL_OK)
        return st;
    if (s->nstats != 0 && s->nstats != 1 && s->nstats != s->features)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: %lld standardisation statistics for inputs of %lld features "
                            "(expected 0, 1 or %lld); the file is damaged",
                            mf->path, (long long)s->nstats, (long long)s->features,
                            (long long)s->features);
    for (int64_t j = 0; j < s->nstats; j++)
        if (!isfinite(mf->mean[j]) || !(mf->std[j] > 0) || !isfinite(mf->std[j]))
            return kl_error_set(err, KL_EFORMAT,
                                "%s: standardisation statistic %lld (mean %g, std %g) is not "
                                "usable; the file is damaged",
                                mf->path, (long long)j, (double)mf->mean[j], (double)mf->std[j]);
    return KL_OK;
}

kl_status kl__modelfile_open(const char *path, bool model, int64_t max_batch,
                             const kl_device_choice *dev, kl_modelfile **out, kl_error *err)
{
    *out = NULL;
    if (max_batch < 1)
        return kl_error_set(err, KL_EINVAL, "batch size %lld: it must be at least 1",
                            (long long)max_batch);
    kl_ckpt *c = NULL;
    kl_status st = kl_ckpt_open(path, model, &c, err);
    if (st != KL_OK)
        return st;
    kl_modelfile *mf = calloc(1, sizeof *mf);
    if (!mf || !(mf->path = strdup(path))) {
        free(mf);
        kl_ckpt_close(c);
        return kl_error_set(err, KL_ENOMEM, "out of memory opening %s", path);
    }
    st = build(mf, c, max_batch, dev, err);
    if (st == KL_OK && model) {
        hid_t f = (hid_t)kl_ckpt_hid(c);
        kl__h5_quiet q = kl__h5_quiet_begin();
        st = read_signature(mf, f, err);
        if (st == KL_OK)
            st = read_labels(mf, f, err);
        if (st == KL_OK)
            st = read_reference(mf, f, err);
        if (st == KL_OK)
            st = read_lineage(mf, f, err);
        kl__h5_quiet_end(q);
    } else if (st == KL_OK) {
        st = kl__modelfile_default_labels(mf, err);
    }
    kl_ckpt_close(c);
    if (st != KL_OK) {
        kl_modelfile_free(mf);
        return st;
    }
    *out = mf;
    return KL_OK;
}

kl_status kl_modelfile_load(const char *path, int64_t max_batch, kl_modelfile **out, kl_error *err)
{
    return kl_modelfile_load_on(path, max_batch, NULL, out, err);
}

kl_status kl_modelfile_load_on(const char *path, int64_t max_batch, const kl_device_choice *dev,
                               kl_modelfile **out, kl_error *err)
{
    bool onnx = kl__modelfile_is_onnx(path), xgb = !onnx && kl__modelfile_is_xgboost(path);
    if ((onnx || xgb) && dev && dev->device != KL_DEVICE_CPU)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: running %s models on a GPU is not supported yet; score it on the "
                            "CPU",
                            path, onnx ? "ONNX" : "XGBoost");
    if (onnx)
        return kl__modelfile_open_onnx(path, max_batch, out, err);
    if (xgb)
        return kl__modelfile_open_xgb(path, max_batch, out, err);
    return kl__modelfile_open(path, true, max_batch, dev, out, err);
}

const kl_modelfile_signature *kl_modelfile_sig(const kl_modelfile *mf)
{
    return &mf->sig;
}

const char *kl_modelfile_label(const kl_modelfile *mf, int k)
{
    return k >= 0 && k < mf->nlabels ? mf->labels[k] : NULL;
}

const char *const *kl_modelfile_labels(const kl_modelfile *mf, int *n)
{
    *n = mf->nlabels;
    return mf->nlabels ? (const char *const *)mf->labels : NULL;
}

const kl_config *kl_modelfile_config(const kl_modelfile *mf)
{
    return mf->cfg;
}

kl_status kl_modelfile_set_threads(kl_modelfile *mf, int threads, kl_error *err)
{
    if (threads < 1)
        return kl_error_set(err, KL_EINVAL, "%s: threads must be at least 1, got %d", mf->path,
                            threads);
    if (mf->xgb)
        return KL_OK;
    mf->threads = threads;
    kl_status st = kl_graph_set_threads(mf->onnx ? kl_onnx_graph(mf->onnx) : mf->m.g, threads, err);
    if (st == KL_OK && mf->score_built)
        st = kl_graph_set_threads(mf->score.g, threads, err);
    return st;
}

const kl_modelfile_reference *kl_modelfile_ref(const kl_modelfile *mf)
{
    return mf->has_ref ? &mf->ref : NULL;
}

const kl_model *kl_modelfile_model(const kl_modelfile *mf)
{
    return mf->onnx || mf->xgb ? NULL : &mf->m;
}

const char *kl_modelfile_path(const kl_modelfile *mf)
{
    return mf->path;
}

int64_t kl_modelfile_max_batch(const kl_modelfile *mf)
{
    if (mf->onnx)
        return kl_onnx_max_batch(mf->onnx);
    if (mf->xgb)
        return mf->xgb_max_batch;
    return kl_graph_max_batch(mf->m.g);
}

int kl_modelfile_bin(const float *edges, float v)
{
    int b = 0;
    while (b < KL_MODELFILE_BINS - 1 && edges[b + 1] <= v)
        b++;
    return b;
}

/* ---- scoring ---- */

/* Whether v is NaN or infinite, from its bits (all-ones exponent): unlike isfinite(), it lets the
 * loop that tests a whole batch vectorise (bench/RESULTS.md, what predict costs). */
static inline uint32_t nonfinite(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* Copies b raw samples into the graph's input, standardised exactly as kl_data_standardize does
 * it in training ((v - mean) / std in float, a division, not a multiplication by 1 / std), in one
 * pass that also looks for NaN and Inf; only when it finds one does a second pass say where. first
 * is the index of x[0] in the caller's data, for the message. */
kl_status kl__modelfile_put_inputs(const kl_modelfile *mf, const float *x, int64_t b, int64_t first,
                                   float *dst, kl_error *err)
{
    int64_t f = mf->sig.features, total = b * f;
    const float *mean = mf->mean, *std = mf->std;
    uint32_t bad = 0;
    if (mf->sig.nstats == 0) {
        for (int64_t i = 0; i < total; i++) {
            bad |= nonfinite(x[i]);
            dst[i] = x[i];
        }
    } else if (mf->sig.nstats == 1) {
        float m = mean[0], s = std[0];
        for (int64_t i = 0; i < total; i++) {
            bad |= nonfinite(x[i]);
            dst[i] = (x[i] - m) / s;
        }
    } else {
        for (int64_t r = 0; r < b; r++)
            for (int64_t j = 0; j < f; j++) {
                bad |= nonfinite(x[r * f + j]);
                dst[r * f + j] = (x[r * f + j] - mean[j]) / std[j];
            }
    }
    for (int64_t i = 0; bad && i < total; i++)
        if (nonfinite(x[i]))
            return kl_error_set(err, KL_EINVAL,
                                "sample %lld (counting from 0), feature %lld holds %g; NaN and "
                                "Inf inputs are refused",
                                (long long)(first + i / f), (long long)(i % f), (double)x[i]);
    return KL_OK;
}

/* Softmax of logits rows into p: shifted by the row maximum, so no exp() overflows, with the
 * exponentials (kept in e, k doubles) and their sum in double: one exp() per value, where
 * exp(x - lse) would take two. */
static void softmax_rows(const float *logits, int64_t b, int64_t k, double *e, float *p)
{
    for (int64_t i = 0; i < b; i++) {
        const float *row = logits + i * k;
        float mx = row[0];
        for (int64_t j = 1; j < k; j++)
            mx = row[j] > mx ? row[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < k; j++)
            sum += e[j] = exp((double)row[j] - mx);
        for (int64_t j = 0; j < k; j++)
            p[i * k + j] = (float)(e[j] / sum);
    }
}

/* The first largest logit of each row: the class training's accuracy counts. */
static void argmax_rows(const float *logits, int64_t b, int64_t k, int32_t *classes)
{
    for (int64_t i = 0; i < b; i++) {
        const float *row = logits + i * k;
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            best = row[j] > row[best] ? j : best;
        classes[i] = (int32_t)best;
    }
}

/* Adds one batch to score, as training's evaluation does (trainers/train.c, batch_stats). */
static void add_score(const kl_modelfile *mf, const float *logits, const void *y, int64_t b,
                      kl_modelfile_score *score)
{
    kl_graph *g = mf->score.g;
    int64_t k = mf->sig.outputs;
    score->n += b;
    score->loss_sum += (double)kl_f32(kl_graph_value(g, mf->score.loss))[0] * (double)b;
    for (int64_t i = 0; i < b; i++) {
        const float *row = logits + i * k;
        if (mf->sig.task == KL_TASK_CLASSIFICATION) {
            int32_t c;
            argmax_rows(row, 1, k, &c);
            score->hits += c == ((const int32_t *)y)[i];
        } else {
            for (int64_t j = 0; j < k; j++)
                score->abs_err += fabs((double)row[j] - ((const float *)y)[i * k + j]);
        }
    }
}

/* Finite weights can still overflow on an input (a crafted or diverged model: a row of -2e38
 * against inputs of both signs sums to Inf - Inf): such a batch is refused instead of answered
 * with NaN probabilities. first is the index of the batch's first sample. */
static kl_status check_outputs(const kl_modelfile *mf, const float *logits, int64_t b,
                               int64_t first, kl_error *err)
{
    int64_t k = mf->sig.outputs;
    uint32_t bad = 0;
    for (int64_t i = 0; i < b * k; i++)
        bad |= nonfinite(logits[i]);
    for (int64_t i = 0; bad && i < b * k; i++)
        if (nonfinite(logits[i]))
            return kl_error_set(err, KL_ERANGE,
                                "%s: the model's output for sample %lld (counting from 0) is %g: "
                                "its weights overflow float on this input",
                                mf->path, (long long)(first + i / k), (double)logits[i]);
    return KL_OK;
}

/* The model with its loss, which scoring against answers needs (the served one computes its
 * outputs alone): built once, with the served model's weights. */
static kl_status scoring_model(kl_modelfile *mf, kl_error *err)
{
    if (mf->score_built)
        return KL_OK;
    kl_model_options o = mf->m.opts;
    o.inference = false;
    kl_status st = kl_model_build(&mf->cfg->model, &o, &mf->score, err);
    if (st != KL_OK)
        return st;
    mf->score_built = true;
    kl_graph *g = mf->score.g, *from = mf->m.g;
    if (mf->threads > 1 && (st = kl_graph_set_threads(g, mf->threads, err)) != KL_OK)
        return st;
    size_t np = kl_graph_param_count(g), nb = kl_graph_buffer_count(g);
    KL_ASSERT(np == kl_graph_param_count(from) && nb == kl_graph_buffer_count(from));
    memcpy(kl_graph_params(g), kl_graph_params(from), np * sizeof(float));
    memcpy(kl_graph_buffers(g), kl_graph_buffers(from), nb * sizeof(float));
    kl_graph_set_mode(g, KL_MODE_EVAL);
    return kl_graph_to_device(g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err);
}

kl_status kl__modelfile_run(kl_modelfile *mf, const float *x, const void *y, int64_t n, float *out,
                            int32_t *classes, kl_modelfile_score *score, kl_error *err)
{
    if (mf->onnx)
        return kl__modelfile_run_onnx(mf, x, y, n, out, classes, err);
    if (mf->xgb)
        return kl__modelfile_run_xgb(mf, x, y, n, out, classes, err);
    kl_status st = y ? scoring_model(mf, err) : KL_OK;
    if (st != KL_OK)
        return st;
    const kl_model *m = y ? &mf->score : &mf->m;
    kl_graph *g = m->g;
    int64_t f = mf->sig.features, k = mf->sig.outputs, max_b = kl_graph_max_batch(g);
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    size_t ysize = cls ? sizeof(int32_t) : (size_t)k * sizeof(float);
    kl_graph_set_mode(g, KL_MODE_EVAL);
    for (int64_t s = 0; s < n && st == KL_OK; s += max_b) {
        int64_t b = n - s < max_b ? n - s : max_b;
        if (b != kl_graph_batch(g) && (st = kl_graph_set_batch(g, b, err)) != KL_OK)
            break;
        if ((st = kl__modelfile_put_inputs(mf, x + s * f, b, s, kl_f32(kl_graph_value(g, m->x)),
                                           err)))
            break;
        const void *ys = y ? (const char *)y + (size_t)s * ysize : NULL;
        if (ys)
            memcpy(kl_graph_value(g, m->y)->data, ys, (size_t)b * ysize);
        if ((st = kl_graph_forward(g, err)) != KL_OK)
            break;
        const float *logits = kl_f32(kl_graph_value(g, m->output));
        if ((st = check_outputs(mf, logits, b, s, err)) != KL_OK)
            break;
        if (out && cls)
            softmax_rows(logits, b, k, mf->exps, out + s * k);
        else if (out)
            memcpy(out + s * k, logits, (size_t)(b * k) * sizeof *out);
        if (classes && cls)
            argmax_rows(logits, b, k, classes + s);
        if (ys && score)
            add_score(mf, logits, ys, b, score);
    }
    return st;
}

kl_status kl_modelfile_predict(kl_modelfile *mf, const float *x, int64_t n, float *out,
                               int32_t *classes, kl_error *err)
{
    return kl__modelfile_run(mf, x, NULL, n, out, classes, NULL, err);
}

kl_status kl_modelfile_evaluate(kl_modelfile *mf, const float *x, const void *y, int64_t n,
                                float *out, int32_t *classes, kl_modelfile_score *score,
                                kl_error *err)
{
    return kl__modelfile_run(mf, x, y, n, out, classes, score, err);
}

void kl_modelfile_score_means(const kl_modelfile *mf, const kl_modelfile_score *s, double *loss,
                              double *accuracy, double *mae)
{
    double n = s->n > 0 ? (double)s->n : NAN;
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    *loss = s->loss_sum / n;
    *accuracy = cls ? s->hits / n : NAN;
    *mae = cls ? NAN : s->abs_err / (n * (double)mf->sig.outputs);
}
