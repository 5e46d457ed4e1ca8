/* `kiln export`: writes a kiln-model file from a training checkpoint (docs/formats.md): the
 * checkpoint's weights layout, then the signature, the class names and the reference statistics
 * of the training data for drift monitoring, all into a temporary file renamed into place. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "kiln/ckpt.h"
#include "runtime/modelfile_impl.h"

#define FORMAT_MODEL "kiln-model"

/* The shuffle epoch that picks the reference subsample from the training split: fixed, so the
 * subsample depends on train.seed only and is never a training epoch's order. */
#define REFERENCE_EPOCH UINT64_C(0x7265666572656e63)

/* The batch export scores the reference subsample in. */
#define EXPORT_BATCH 256

/* ---- HDF5 writing helpers, shared with runtime/modelfile_io.c ---- */

bool kl__mf_put_strings(hid_t loc, const char *name, const char *const *v, int n)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = -1, d = -1;
    hsize_t dims = (hsize_t)n;
    bool ok = t >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0 &&
              (sp = H5Screate_simple(1, &dims, NULL)) >= 0 &&
              (d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    kl__h5_close(d, H5Dclose);
    kl__h5_close(sp, H5Sclose);
    kl__h5_close(t, H5Tclose);
    return ok;
}

/* An int64 array attribute (h5py reads it as a numpy array). */
static bool put_i64s_attr(hid_t obj, const char *name, const int64_t *v, int n)
{
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL), a = -1;
    bool ok = sp >= 0 &&
              (a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, H5T_NATIVE_INT64, v) >= 0;
    kl__h5_close(a, H5Aclose);
    kl__h5_close(sp, H5Sclose);
    return ok;
}

static hid_t new_group(hid_t loc, const char *name)
{
    return H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

/* ---- class names ---- */

/* Replaces mf's class names with path's lines (one name a line, trailing blank lines ignored). */
static kl_status read_labels_file(kl_modelfile *mf, const char *path, kl_error *err)
{
    int k = mf->sig.outputs, n = 0, blank_at = 0;
    if (mf->sig.task != KL_TASK_CLASSIFICATION)
        return kl_error_set(err, KL_EINVAL,
                            "--labels %s: the model is a regression model; class names are for "
                            "classification",
                            path);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return kl_error_set(err, KL_EIO, "cannot open the labels file %s: %s", path,
                            strerror(errno));
    char **names = calloc((size_t)k, sizeof *names), *line = NULL;
    size_t cap = 0;
    ssize_t len;
    kl_status st = names ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int lineno = 1; st == KL_OK && (len = getline(&line, &cap, fp)) >= 0; lineno++) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0) {
            blank_at = blank_at ? blank_at : lineno;
            continue;
        }
        if (blank_at)
            st = kl_error_set(err, KL_EFORMAT,
                              "%s:%d: an empty line among the class names; give one name a line",
                              path, blank_at);
        else if (n < k && !(names[n] = strdup(line)))
            st = kl_error_set(err, KL_ENOMEM, "out of memory");
        n++;
    }
    free(line);
    fclose(fp);
    if (st == KL_OK && n != k)
        st = kl_error_set(err, KL_EINVAL,
                          "%s has %d class name%s but the model has %d classes; give one name a "
                          "line, class 0 first",
                          path, n, n == 1 ? "" : "s", k);
    if (st != KL_OK) {
        for (int i = 0; names && i < k; i++)
            free(names[i]);
        free(names);
        return st;
    }
    for (int i = 0; i < mf->nlabels; i++)
        free(mf->labels[i]);
    free(mf->labels);
    mf->labels = names;
    mf->nlabels = k;
    return KL_OK;
}

/* ---- reference statistics ---- */

typedef struct reference {
    int64_t samples, features, outputs;
    float *input_edges, *input_props;   /* (features, BINS + 1), (features, BINS) */
    float *label_props, *pred_props;    /* classification (outputs) */
    float *target_edges, *target_props; /* regression (outputs, BINS + 1), (outputs, BINS) */
    float *pred_edges, *pred_bin_props;
} reference;

static void reference_free(reference *r)
{
    free(r->input_edges);
    free(r->input_props);
    free(r->label_props);
    free(r->pred_props);
    free(r->target_edges);
    free(r->target_props);
    free(r->pred_edges);
    free(r->pred_bin_props);
    memset(r, 0, sizeof *r);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Quantile q of n sorted values with linear interpolation between neighbours (numpy.quantile's
 * default method), so that a peer can recompute the edges. */
static float quantile(const float *sorted, int64_t n, double q)
{
    double pos = q * (double)(n - 1);
    int64_t lo = (int64_t)floor(pos), hi = lo + 1 < n ? lo + 1 : n - 1;
    double frac = pos - (double)lo;
    return (float)((double)sorted[lo] + frac * ((double)sorted[hi] - (double)sorted[lo]));
}

/* Edges (BINS + 1) and proportions (BINS) of column j of m (n rows of stride floats); col is n
 * floats of scratch. */
static void column_bins(const float *m, int64_t n, int64_t stride, int64_t j, float *col,
                        float *edges, float *props)
{
    const int B = KL_MODELFILE_BINS;
    for (int64_t i = 0; i < n; i++)
        col[i] = m[i * stride + j];
    qsort(col, (size_t)n, sizeof *col, cmp_float);
    for (int b = 0; b <= B; b++)
        edges[b] = quantile(col, n, (double)b / B);
    int64_t count[KL_MODELFILE_BINS] = {0};
    for (int64_t i = 0; i < n; i++)
        count[kl_modelfile_bin(edges, col[i])]++;
    for (int b = 0; b < B; b++)
        props[b] = (float)((double)count[b] / (double)n);
}

static kl_status table_bins(const float *m, int64_t n, int64_t cols, float **edges, float **props,
                            kl_error *err)
{
    const int B = KL_MODELFILE_BINS;
    float *col = malloc((size_t)n * sizeof *col);
    *edges = malloc((size_t)cols * (B + 1) * sizeof **edges);
    *props = malloc((size_t)cols * B * sizeof **props);
    if (!col || !*edges || !*props) {
        free(col);
        return kl_error_set(err, KL_ENOMEM, "out of memory computing the reference statistics");
    }
    for (int64_t j = 0; j < cols; j++)
        column_bins(m, n, cols, j, col, *edges + j * (B + 1), *props + j * B);
    free(col);
    return KL_OK;
}

static kl_status class_props(const int32_t *c, int64_t n, int64_t k, float **props, kl_error *err)
{
    int64_t *count = calloc((size_t)k, sizeof *count);
    *props = malloc((size_t)k * sizeof **props);
    if (!count || !*props) {
        free(count);
        return kl_error_set(err, KL_ENOMEM, "out of memory computing the reference statistics");
    }
    for (int64_t i = 0; i < n; i++)
        if (c[i] >= 0 && c[i] < k)
            count[c[i]]++;
    for (int64_t j = 0; j < k; j++)
        (*props)[j] = (float)((double)count[j] / (double)n);
    free(count);
    return KL_OK;
}

/* The raw training split (no standardisation), as kiln train made it from the same config. */
static kl_status load_training(kl_modelfile *mf, kl_data_splits *sp, kl_error *err)
{
    kl_data_config dc = mf->cfg->data;
    dc.standardize = KL_STD_NONE;
    kl_status st = kl_data_prepare(&dc, mf->cfg->train.seed, sp, err);
    if (st != KL_OK) {
        char why[KL_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return kl_error_set(err, st,
                            "the reference statistics need the training data of %s's config, "
                            "which cannot be loaded here: %s; run export where the data is, or "
                            "pass --no-reference",
                            mf->path, why);
    }
    kl_shape s = sp->train.x->shape, t = sp->train.y->shape;
    s.d[0] = t.d[0] = 1;
    if (mf->sig.task == KL_TASK_REGRESSION && kl_shape_numel(&t) != mf->sig.outputs)
        return kl_error_set(err, KL_ESHAPE,
                            "the training data %s now has %lld regression targets, not the %d "
                            "the model was trained on; pass --no-reference",
                            sp->train.name, (long long)kl_shape_numel(&t), mf->sig.outputs);
    if (kl_shape_numel(&s) != mf->sig.features) {
        char a[96];
        return kl_error_set(err, KL_ESHAPE,
                            "the training data %s now has samples of shape %s, not the %lld "
                            "features the model was trained on; pass --no-reference",
                            sp->train.name, kl_shape_str(&sp->train.x->shape, a, sizeof a),
                            (long long)mf->sig.features);
    }
    return KL_OK;
}

/* Gathers the reference subsample (min(want, training samples), a seeded random choice) into x
 * and y, both malloc'd. */
static kl_status subsample(kl_modelfile *mf, const kl_dataset *train, int64_t want, float **x,
                           void **y, int64_t *n, kl_error *err)
{
    int64_t rows = train->x->shape.d[0], f = mf->sig.features;
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    size_t yb = cls ? sizeof(int32_t) : (size_t)mf->sig.outputs * sizeof(float);
    *n = want < rows ? want : rows;
    int64_t *idx = malloc((size_t)rows * sizeof *idx);
    *x = malloc((size_t)(*n * f) * sizeof **x);
    *y = malloc((size_t)*n * yb);
    if (!idx || !*x || !*y) {
        free(idx);
        return kl_error_set(err, KL_ENOMEM, "out of memory gathering %lld reference samples",
                            (long long)*n);
    }
    if (cls && train->y->dtype != KL_I32) {
        free(idx);
        return kl_error_set(err, KL_EFORMAT, "the training labels are not class labels");
    }
    kl_data_shuffle(idx, rows, mf->cfg->train.seed, REFERENCE_EPOCH);
    kl_status st = kl_data_gather(train, idx, *n, *x, *y, err);
    free(idx);
    return st;
}

static kl_status compute_reference(kl_modelfile *mf, int64_t want, reference *r, kl_error *err)
{
    kl_data_splits sp = {0};
    float *x = NULL, *pred = NULL;
    void *y = NULL;
    int32_t *classes = NULL;
    int64_t n = 0, k = mf->sig.outputs;
    kl_status st = load_training(mf, &sp, err);
    if (st == KL_OK)
        st = subsample(mf, &sp.train, want, &x, &y, &n, err);
    kl_data_splits_free(&sp);
    r->samples = n;
    r->features = mf->sig.features;
    r->outputs = k;
    if (st == KL_OK)
        st = table_bins(x, n, mf->sig.features, &r->input_edges, &r->input_props, err);
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    if (st == KL_OK && !(cls ? (void *)(classes = malloc((size_t)n * sizeof *classes))
                             : (void *)(pred = malloc((size_t)(n * k) * sizeof *pred))))
        st = kl_error_set(err, KL_ENOMEM, "out of memory predicting the reference samples");
    if (st == KL_OK)
        st = kl__modelfile_run(mf, x, NULL, n, pred, classes, NULL, err);
    if (st == KL_OK && cls) {
        st = class_props(y, n, k, &r->label_props, err);
        if (st == KL_OK)
            st = class_props(classes, n, k, &r->pred_props, err);
    } else if (st == KL_OK) {
        st = table_bins(y, n, k, &r->target_edges, &r->target_props, err);
        if (st == KL_OK)
            st = table_bins(pred, n, k, &r->pred_edges, &r->pred_bin_props, err);
    }
    free(x);
    free(y);
    free(pred);
    free(classes);
    return st;
}

/* ---- writing ---- */

static bool put_table(hid_t loc, const char *group, const float *edges, const float *props,
                      int64_t rows, bool one_d)
{
    const int64_t B = KL_MODELFILE_BINS;
    hid_t g = new_group(loc, group);
    int64_t de[2] = {rows, B + 1}, dp[2] = {rows, B};
    bool ok = g >= 0 && (!edges || kl__h5_put_f32(g, "edges", edges, 2, de)) &&
              kl__h5_put_f32(g, "proportions", props, one_d ? 1 : 2, one_d ? &rows : dp);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static bool put_reference(hid_t file, const kl_modelfile *mf, const reference *r)
{
    hid_t g = new_group(file, "reference");
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    bool ok =
        g >= 0 && kl__h5_put_i64(g, "samples", r->samples) &&
        kl__h5_put_i64(g, "seed", (int64_t)mf->cfg->train.seed) &&
        kl__h5_put_i64(g, "bins", KL_MODELFILE_BINS) &&
        kl__h5_put_str(g, "source",
                       "the training split of /config (data.train or data.dataset, after "
                       "data.limit and the validation split), raw values before standardisation") &&
        kl__h5_put_str(g, "method",
                       "edges: min, deciles and max by linear interpolation (numpy.quantile's "
                       "default); bin b holds edges[b] <= v < edges[b+1], the last bin also v == "
                       "edges[10]") &&
        put_table(g, "input", r->input_edges, r->input_props, r->features, false);
    if (ok && cls)
        ok = put_table(g, "labels", NULL, r->label_props, r->outputs, true) &&
             put_table(g, "predictions", NULL, r->pred_props, r->outputs, true);
    else if (ok)
        ok = put_table(g, "targets", r->target_edges, r->target_props, r->outputs, false) &&
             put_table(g, "predictions", r->pred_edges, r->pred_bin_props, r->outputs, false);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static bool put_signature_entry(hid_t loc, const char *name, const kl_shape *per_sample)
{
    int64_t shape[KL_MAX_DIMS + 1] = {-1};
    for (int i = 0; i < per_sample->ndim; i++)
        shape[i + 1] = per_sample->d[i];
    hid_t g = new_group(loc, name);
    bool ok = g >= 0 && kl__h5_put_str(g, "datatype", KL__MF_DATATYPE) &&
              put_i64s_attr(g, "shape", shape, per_sample->ndim + 1);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static bool put_signature(hid_t file, const kl_modelfile *mf)
{
    const kl_modelfile_signature *s = &mf->sig;
    kl_shape out = KL_SHAPE(s->outputs);
    hid_t g = new_group(file, "signature"), in = -1, o = -1;
    bool ok = g >= 0 &&
              kl__h5_put_str(g, "task",
                             s->task == KL_TASK_CLASSIFICATION ? "classification" : "regression") &&
              (in = new_group(g, "inputs")) >= 0 &&
              put_signature_entry(in, s->input_name, &s->input) &&
              (o = new_group(g, "outputs")) >= 0 && put_signature_entry(o, s->output_name, &out);
    kl__h5_close(o, H5Gclose);
    kl__h5_close(in, H5Gclose);
    kl__h5_close(g, H5Gclose);
    return ok;
}

/* Says in words what /preprocessing holds, for readers other than kiln. */
static bool describe_preprocessing(hid_t file, const kl_modelfile *mf)
{
    int64_t n = mf->sig.nstats;
    hid_t g = H5Gopen2(file, "preprocessing", H5P_DEFAULT);
    bool ok = g >= 0 &&
              kl__h5_put_str(g, "standardize",
                             n == 0   ? "none"
                             : n == 1 ? "global"
                                      : "feature") &&
              kl__h5_put_str(g, "formula", "x' = (x - mean) / std, in float32, before the model");
    kl__h5_close(g, H5Gclose);
    return ok;
}

/* Writes mf with model m's weights (mf's own model, or a copy holding other weights). */
static kl_status write_file(const kl_modelfile *mf, const kl_model *m, const char *path,
                            const reference *r, kl_error *err)
{
    char tmp[PATH_MAX];
    int64_t f = kl_ckpt_create(path, FORMAT_MODEL, KL_MODEL_FORMAT_VERSION, tmp, sizeof tmp, err);
    if (f < 0)
        return err ? err->status : KL_EIO;
    kl_status st =
        kl_ckpt_write_weights(f, mf->config_text, m, mf->mean, mf->std, mf->sig.nstats, err);
    if (st == KL_OK) {
        kl__h5_quiet q = kl__h5_quiet_begin();
        bool ok = describe_preprocessing(f, mf) && put_signature(f, mf) &&
                  (mf->nlabels == 0 ||
                   kl__mf_put_strings(f, "labels", (const char *const *)mf->labels, mf->nlabels)) &&
                  (!r || put_reference(f, mf, r));
        kl__h5_quiet_end(q);
        if (!ok)
            st = kl_error_set(err, KL_EIO, "cannot write the model file %s (disk full?)", tmp);
    }
    return kl_ckpt_commit(f, tmp, path, st == KL_OK, err);
}

kl_status kl_modelfile_export(const char *ckpt_path, const char *out_path,
                              const kl_modelfile_export_options *o, kl_error *err)
{
    kl_modelfile_export_options def = {0};
    o = o ? o : &def;
    int64_t want = o->reference_samples > 0 ? o->reference_samples : KL_MODELFILE_REFERENCE_SAMPLES;
    kl_modelfile *mf = NULL;
    reference r = {0};
    kl_status st = kl__modelfile_open(ckpt_path, false, EXPORT_BATCH, &mf, err);
    if (st == KL_OK && o->labels_file)
        st = read_labels_file(mf, o->labels_file, err);
    if (st == KL_OK && !o->no_reference)
        st = compute_reference(mf, want, &r, err);
    if (st == KL_OK)
        st = write_file(mf, &mf->m, out_path, o->no_reference ? NULL : &r, err);
    reference_free(&r);
    kl_modelfile_free(mf);
    return st;
}

/* The reference statistics mf has, as put_reference writes them (views, not copies). */
static reference reference_view(const kl_modelfile *mf)
{
    const kl_modelfile_reference *f = &mf->ref;
    return (reference){.samples = f->samples,
                       .features = mf->sig.features,
                       .outputs = mf->sig.outputs,
                       .input_edges = (float *)f->input_edges,
                       .input_props = (float *)f->input_proportions,
                       .label_props = (float *)f->label_proportions,
                       .pred_props = (float *)f->predicted_proportions,
                       .target_edges = (float *)f->target_edges,
                       .target_props = (float *)f->target_proportions,
                       .pred_edges = (float *)f->prediction_edges,
                       .pred_bin_props = (float *)f->prediction_proportions};
}

kl_status kl_modelfile_save(const kl_modelfile *mf, const float *params, const float *buffers,
                            const char *path, kl_error *err)
{
    /* A copy of the model to hold the weights: mf's own may be scoring on another thread. */
    kl_model m;
    kl_model_options o = mf->m.opts;
    o.batch = 1;
    o.trainable = false;
    kl_status st = kl_model_build(&mf->cfg->model, &o, &m, err);
    if (st != KL_OK)
        return st;
    kl_graph *from = mf->m.g;
    size_t np = kl_graph_param_count(m.g), nb = kl_graph_buffer_count(m.g);
    KL_ASSERT(np == kl_graph_param_count(from) && nb == kl_graph_buffer_count(from));
    memcpy(kl_graph_params(m.g), params ? params : kl_graph_params(from), np * sizeof(float));
    memcpy(kl_graph_buffers(m.g), buffers ? buffers : kl_graph_buffers(from), nb * sizeof(float));
    reference r = reference_view(mf);
    st = write_file(mf, &m, path, mf->has_ref ? &r : NULL, err);
    kl_model_free(&m);
    return st;
}
