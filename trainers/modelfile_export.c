/* `kiln export`: a kiln-model file from a training checkpoint (docs/formats.md). What it adds to
 * the checkpoint's model is computed here, in trainers/, because it needs the training data: the
 * class names (a labels file, or the data set's) and the reference statistics of the training
 * inputs and outputs for drift monitoring. The file itself is written by the model file's writer,
 * runtime/modelfile_write.c. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "kiln/data.h"
#include "kiln/modelfile_export.h"
#include "runtime/modelfile_parts.h"

/* The shuffle epoch that picks the reference subsample from the training split: fixed, so the
 * subsample depends on train.seed only and is never a training epoch's order. */
#define REFERENCE_EPOCH UINT64_C(0x7265666572656e63)

/* The batch export scores the reference subsample in. */
#define EXPORT_BATCH 256

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

/* The statistics being computed, owned here; the writer takes them as a kl_modelfile_reference
 * (reference_view). */
typedef struct reference {
    int64_t samples;
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

/* r as the writer takes it: views, not copies. */
static kl_modelfile_reference reference_view(const kl_modelfile *mf, const reference *r)
{
    return (kl_modelfile_reference){.samples = r->samples,
                                    .seed = mf->cfg->train.seed,
                                    .input_edges = r->input_edges,
                                    .input_proportions = r->input_props,
                                    .label_proportions = r->label_props,
                                    .predicted_proportions = r->pred_props,
                                    .target_edges = r->target_edges,
                                    .target_proportions = r->target_props,
                                    .prediction_edges = r->pred_edges,
                                    .prediction_proportions = r->pred_bin_props};
}

/* The checkpoint's absolute path and, when it lies in <run>/checkpoints/ beside a run.json (a
 * recorded run, docs/runs.md), that run's folder: the model file's /lineage. */
static kl_status set_lineage(kl_modelfile *mf, const char *ckpt_path, kl_error *err)
{
    char abs[PATH_MAX], run[PATH_MAX + 16];
    if (!realpath(ckpt_path, abs))
        return kl__modelfile_set_lineage(&mf->lineage.checkpoint, ckpt_path, err);
    kl_status st = kl__modelfile_set_lineage(&mf->lineage.checkpoint, abs, err);
    char *slash = strrchr(abs, '/');
    if (st != KL_OK || !slash)
        return st;
    *slash = '\0';
    slash = strrchr(abs, '/');
    if (!slash || strcmp(slash + 1, "checkpoints") != 0)
        return KL_OK;
    *slash = '\0';
    snprintf(run, sizeof run, "%s/run.json", abs);
    return access(run, F_OK) == 0 ? kl__modelfile_set_lineage(&mf->lineage.run, abs, err) : KL_OK;
}

kl_status kl_modelfile_export(const char *ckpt_path, const char *out_path,
                              const kl_modelfile_export_options *o, kl_error *err)
{
    kl_modelfile_export_options def = {0};
    o = o ? o : &def;
    int64_t want = o->reference_samples > 0 ? o->reference_samples : KL_MODELFILE_REFERENCE_SAMPLES;
    kl_modelfile *mf = NULL;
    reference r = {0};
    kl_status st = kl__modelfile_open(ckpt_path, false, EXPORT_BATCH, NULL, &mf, err);
    if (st == KL_OK)
        st = set_lineage(mf, ckpt_path, err);
    if (st == KL_OK && o->labels_file)
        st = read_labels_file(mf, o->labels_file, err);
    if (st == KL_OK && !o->no_reference && !o->onnx)
        st = compute_reference(mf, want, &r, err);
    if (st == KL_OK && o->onnx) {
        st = kl__modelfile_write_onnx(mf, out_path, err);
    } else if (st == KL_OK) {
        kl_modelfile_reference view = reference_view(mf, &r);
        st = kl__modelfile_write(mf, &mf->m, o->no_reference ? NULL : &view, out_path, err);
    }
    reference_free(&r);
    kl_modelfile_free(mf);
    return st;
}
