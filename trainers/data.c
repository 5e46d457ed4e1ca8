/* Data sets in memory, format-independent: loading dispatch, the training/validation/test splits
 * with standardisation from training statistics (kl_data_prepare, behind kiln train), per-epoch
 * shuffling, batch gathering and image augmentation (the training loop's), and the summary behind
 * `kiln data info`. The per-format readers are data_idx.c, data_csv.c and data_hdf5.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/comm.h"
#include "kiln/rng.h"
#include "kiln/stop.h"
#include "kiln/train.h"
#include "trainers/data_impl.h"

/* The shuffle epoch that picks the validation subset: fixed, so the split depends on the seed only
 * and never coincides with a training epoch's order. */
#define VAL_SPLIT_EPOCH UINT64_C(0x76616c73706c6974)

kl_status kl__dataset_set_name(kl_dataset *d, const char *name, kl_error *err)
{
    free(d->name);
    d->name = malloc(strlen(name) + 1);
    if (!d->name)
        return kl_error_set(err, KL_ENOMEM, "out of memory naming a data set");
    strcpy(d->name, name);
    return KL_OK;
}

kl_status kl__data_stop_check(const char *what, kl_error *err)
{
    int signo = kl_stop_signal();
    if (!signo)
        return KL_OK;
    return kl_error_set(err, KL_ESTOPPED,
                        "stopped by signal %d while preparing the data (%s); nothing was trained",
                        signo, what);
}

kl_status kl__check_labels(const int32_t *y, int64_t n, int classes, const char *what,
                           int32_t *max_label, kl_error *err)
{
    int32_t max = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0)
            return kl_error_set(err, KL_ERANGE,
                                "%s: label %d of record %lld (counting from 0) is negative; class "
                                "labels must be 0, 1, ...",
                                what, (int)y[i], (long long)i);
        if (classes > 0 && y[i] >= classes)
            return kl_error_set(err, KL_ERANGE,
                                "%s: label %d of record %lld (counting from 0) is out of range: "
                                "there are %d classes (labels 0..%d); check data.classes and that "
                                "the file belongs to this data set",
                                what, (int)y[i], (long long)i, classes, classes - 1);
        max = y[i] > max ? y[i] : max;
    }
    if (max == INT32_MAX)
        return kl_error_set(err, KL_ERANGE, "%s: label %d is too large", what, (int)max);
    *max_label = max;
    return KL_OK;
}

kl_status kl_dataset_load(const kl_data_source *src, kl_task task, kl_dataset *out, kl_error *err)
{
    memset(out, 0, sizeof *out);
    if (!src->path || !*src->path)
        return kl_error_set(err, KL_EINVAL, "data source without a path");
    switch (src->format) {
    case KL_DATA_IDX:
        return kl__idx_load(src->path, src->labels, task, out, err);
    case KL_DATA_CSV:
        return kl__csv_load(src->path, src->label_column ? src->label_column : "label", task, out,
                            err);
    case KL_DATA_HDF5:
        return kl__hdf5_load(src->path, src->x_dataset ? src->x_dataset : "x",
                             src->y_dataset ? src->y_dataset : "y", task, out, err);
    case KL_DATA_NONE:
        break;
    }
    return kl_error_set(err, KL_EINVAL, "%s: no data format given (idx, hdf5 or csv)", src->path);
}

void kl_dataset_free(kl_dataset *d)
{
    kl_tensor_free(d->x);
    kl_tensor_free(d->y);
    kl__lazy_free(d->lazy);
    free(d->name);
    memset(d, 0, sizeof *d);
}

static int64_t rows(const kl_dataset *d)
{
    return d->x ? d->x->shape.d[0] : 0;
}

/* Floats per sample of t (1 for a rank-1 tensor). */
static int64_t row_size(const kl_tensor *t)
{
    return kl_numel(t) / t->shape.d[0];
}

static void describe_values(FILE *f, const char *label, const float *v, int64_t n)
{
    double sum = 0, sq = 0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        lo = v[i] < lo ? v[i] : lo;
        hi = v[i] > hi ? v[i] : hi;
    }
    double mean = n ? sum / (double)n : 0;
    for (int64_t i = 0; i < n; i++)
        sq += ((double)v[i] - mean) * ((double)v[i] - mean);
    fprintf(f, "  %s: min %.6g  max %.6g  mean %.6g  std %.6g\n", label, lo, hi, mean,
            n ? sqrt(sq / (double)n) : 0.0);
}

void kl_dataset_describe(const kl_dataset *d, FILE *f)
{
    char xs[96], ys[96];
    if (!d->x) {
        fprintf(f, "%s: empty\n", d->name ? d->name : "(data set)");
        return;
    }
    fprintf(f, "%s: %lld samples\n", d->name ? d->name : "(data set)", (long long)rows(d));
    fprintf(f, "  x: f32 %s\n", kl_shape_str(&d->x->shape, xs, sizeof xs));
    fprintf(f, "  y: %s %s\n", kl_dtype_name(d->y->dtype),
            kl_shape_str(&d->y->shape, ys, sizeof ys));
    describe_values(f, "x", kl_f32(d->x), kl_numel(d->x));
    if (d->y->dtype == KL_F32) {
        describe_values(f, "y", kl_f32(d->y), kl_numel(d->y));
        return;
    }
    int64_t *count = calloc((size_t)(d->classes > 0 ? d->classes : 1), sizeof *count);
    if (!count)
        return;
    for (int64_t i = 0; i < rows(d); i++)
        if (kl_i32(d->y)[i] >= 0 && kl_i32(d->y)[i] < d->classes)
            count[kl_i32(d->y)[i]]++;
    fprintf(f, "  classes: %d\n", d->classes);
    for (int k = 0; k < d->classes; k++)
        fprintf(f, "    %3d: %lld (%.1f%%)\n", k, (long long)count[k],
                100.0 * (double)count[k] / (double)rows(d));
    free(count);
}

void kl_data_splits_free(kl_data_splits *s)
{
    kl_dataset_free(&s->train);
    kl_dataset_free(&s->val);
    kl_dataset_free(&s->test);
    free(s->mean);
    free(s->std);
    memset(s, 0, sizeof *s);
}

/* Keeps the first n rows of t, giving the rest of the memory back. */
static void keep_rows(kl_tensor *t, int64_t n)
{
    t->shape.d[0] = n;
    if (!t->data) /* a lazy data set's x: the rows stay in the file */
        return;
    void *p = realloc(t->data, (size_t)kl_numel(t) * kl_dtype_size(t->dtype));
    if (p)
        t->data = p;
}

/* An empty tensor shaped like t but with n rows. */
static kl_tensor *new_like(const kl_tensor *t, int64_t n, kl_error *err)
{
    kl_shape s = t->shape;
    s.d[0] = n;
    return kl_tensor_new(t->dtype, s, err);
}

/* split_val for a lazy training set: the same rows go to val (in the same order) as for one in
 * memory, but only the labels move; x's rows are renumbered into the file. Takes idx and in_val
 * (n each, either may be NULL on failure) and frees them. */
static kl_status split_val_lazy(kl_dataset *train, int64_t nval, uint64_t seed, kl_dataset *val,
                                int64_t *idx, unsigned char *in_val, kl_error *err)
{
    int64_t n = rows(train);
    kl_status st = KL_OK;
    int64_t *vrows = malloc((size_t)nval * sizeof *vrows);
    val->x = calloc(1, sizeof *val->x);
    val->y = new_like(train->y, nval, err);
    if (!idx || !in_val || !vrows || !val->x || !val->y) {
        st = kl_error_set(err, KL_ENOMEM, "out of memory splitting off validation data");
        goto out;
    }
    kl_data_shuffle(idx, n, seed, VAL_SPLIT_EPOCH);
    for (int64_t i = 0; i < nval; i++)
        in_val[idx[i]] = 1;
    *val->x = *train->x; /* shape only */
    val->x->shape.d[0] = nval;
    size_t yb = (size_t)row_size(train->y) * kl_dtype_size(train->y->dtype);
    char *ty = train->y->data, *vy = val->y->data;
    const int64_t *file_rows = kl__lazy_rows(train);
    int64_t nv = 0, nt = 0;
    for (int64_t r = 0; r < n; r++) {
        if (in_val[r]) {
            memcpy(vy + nv * yb, ty + r * yb, yb);
            vrows[nv++] = file_rows[r];
        } else {
            memmove(ty + nt * yb, ty + r * yb, yb);
            idx[nt++] = file_rows[r];
        }
    }
    if ((st = kl__lazy_share(train, val, vrows, nval, err)) != KL_OK)
        goto out;
    kl__lazy_set_rows(train, idx, nt);
    keep_rows(train->x, nt);
    keep_rows(train->y, nt);
    val->classes = train->classes;
    st = kl__dataset_set_name(val, train->name, err);
    if (st == KL_OK) {
        size_t len = strlen(train->name) + sizeof " (validation split)";
        char *name = malloc(len);
        if (name) {
            snprintf(name, len, "%s (validation split)", train->name);
            free(val->name);
            val->name = name;
        }
    }
out:
    free(vrows);
    free(idx);
    free(in_val);
    if (st != KL_OK)
        kl_dataset_free(val);
    return st;
}

/* Moves a seeded random fraction of train's rows into val: the chosen rows are copied out, the
 * others are compacted in place (keeping their order) and train shrinks, so no second copy of the
 * training set is ever made. */
static kl_status split_val(kl_dataset *train, float frac, uint64_t seed, kl_dataset *val,
                           kl_error *err)
{
    int64_t n = rows(train), nval = (int64_t)llround((double)frac * (double)n);
    if (!(frac > 0 && frac < 1) || nval < 1 || nval >= n)
        return kl_error_set(err, KL_EINVAL,
                            "data.val_fraction %g of %lld training samples leaves %lld for "
                            "validation; it must leave at least one sample on each side",
                            (double)frac, (long long)n, (long long)nval);
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    unsigned char *in_val = calloc((size_t)n, 1);
    if (train->lazy)
        return split_val_lazy(train, nval, seed, val, idx, in_val, err);
    val->x = new_like(train->x, nval, err);
    val->y = val->x ? new_like(train->y, nval, err) : NULL;
    kl_status st = KL_OK;
    if (!idx || !in_val || !val->y) {
        st = val->y ? kl_error_set(err, KL_ENOMEM, "out of memory splitting off validation data")
                    : (err ? err->status : KL_ENOMEM);
        goto out;
    }
    kl_data_shuffle(idx, n, seed, VAL_SPLIT_EPOCH);
    for (int64_t i = 0; i < nval; i++)
        in_val[idx[i]] = 1;
    size_t xb = (size_t)row_size(train->x) * sizeof(float);
    size_t yb = (size_t)row_size(train->y) * kl_dtype_size(train->y->dtype);
    char *tx = train->x->data, *ty = train->y->data, *vx = val->x->data, *vy = val->y->data;
    int64_t nv = 0, nt = 0;
    for (int64_t r = 0; r < n; r++) {
        if (in_val[r]) {
            memcpy(vx + nv * xb, tx + r * xb, xb);
            memcpy(vy + nv * yb, ty + r * yb, yb);
            nv++;
        } else {
            if (nt != r) {
                memcpy(tx + nt * xb, tx + r * xb, xb);
                memcpy(ty + nt * yb, ty + r * yb, yb);
            }
            nt++;
        }
    }
    keep_rows(train->x, nt);
    keep_rows(train->y, nt);
    val->classes = train->classes;
    size_t len = strlen(train->name) + sizeof " (validation split)";
    val->name = malloc(len);
    if (!val->name)
        st = kl_error_set(err, KL_ENOMEM, "out of memory naming the validation split");
    else
        snprintf(val->name, len, "%s (validation split)", train->name);
out:
    free(idx);
    free(in_val);
    if (st != KL_OK)
        kl_dataset_free(val);
    return st;
}

/* Rows of a pass over x (f floats a row) between two stop checks. */
static int64_t rows_per_check(int64_t f)
{
    int64_t b = KL__DATA_BLOCK_BYTES / (f * (int64_t)sizeof(float));
    return b > 0 ? b : 1;
}

/* Mean and (population) standard deviation of the training split: one pair over every value, or
 * one per feature (position within a sample). */
static kl_status compute_stats(const kl_dataset *d, kl_standardize mode, kl_data_splits *s,
                               kl_error *err)
{
    const kl_tensor *x = d->x;
    int64_t n = x->shape.d[0], f = row_size(x), k = mode == KL_STD_GLOBAL ? 1 : f;
    int64_t check = rows_per_check(f);
    double *sum = calloc((size_t)k, sizeof *sum), *sq = calloc((size_t)k, sizeof *sq);
    s->mean = malloc((size_t)k * sizeof *s->mean);
    s->std = malloc((size_t)k * sizeof *s->std);
    kl_status st =
        sum && sq && s->mean && s->std
            ? KL_OK
            : kl_error_set(err, KL_ENOMEM, "out of memory computing standardisation statistics");
    const float *v = kl_f32(x);
    for (int64_t r = 0; st == KL_OK && r < n; r++) {
        if (r % check == 0 && (st = kl__data_stop_check(d->name, err)) != KL_OK)
            break;
        for (int64_t j = 0; j < f; j++)
            sum[k == 1 ? 0 : j] += v[r * f + j];
    }
    int64_t per = k == 1 ? n * f : n;
    for (int64_t j = 0; st == KL_OK && j < k; j++)
        sum[j] /= (double)per;
    for (int64_t r = 0; st == KL_OK && r < n; r++) {
        if (r % check == 0 && (st = kl__data_stop_check(d->name, err)) != KL_OK)
            break;
        for (int64_t j = 0; j < f; j++) {
            double dv = v[r * f + j] - sum[k == 1 ? 0 : j];
            sq[k == 1 ? 0 : j] += dv * dv;
        }
    }
    for (int64_t j = 0; st == KL_OK && j < k; j++) {
        double sd = sqrt(sq[j] / (double)per);
        s->mean[j] = (float)sum[j];
        s->std[j] = kl__std_scale(sd, sum[j]);
    }
    if (st == KL_OK)
        s->nstats = k;
    free(sum);
    free(sq);
    return st;
}

/* Whether v is NaN or infinite, from its bits, so that the loop below still vectorises. */
static inline uint32_t nonfinite(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

kl_status kl__standardize(float *v, int64_t rows, int64_t f, const float *mean, const float *std,
                          int64_t nstats, const char *name, const int64_t *sample, int64_t first,
                          kl_error *err)
{
    uint32_t bad = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < f; j++) {
            int64_t k = nstats == 1 ? 0 : j;
            v[r * f + j] = (v[r * f + j] - mean[k]) / std[k];
            bad |= nonfinite(v[r * f + j]);
        }
    for (int64_t i = 0; bad && i < rows * f; i++) {
        int64_t k = nstats == 1 ? 0 : i % f;
        if (nonfinite(v[i]))
            return kl_error_set(err, KL_ERANGE,
                                "%s: sample %lld (counting from 0), feature %lld standardises to "
                                "%g with mean %g and std %g: its values are too far apart for "
                                "32-bit floats; rescale the data",
                                name, (long long)(sample ? sample[i / f] : first + i / f),
                                (long long)(i % f), (double)v[i], (double)mean[k], (double)std[k]);
    }
    return KL_OK;
}

void kl_data_standardize(kl_tensor *x, const float *mean, const float *std, int64_t nstats)
{
    if (!x || nstats == 0)
        return;
    int64_t f = row_size(x);
    KL_ASSERT(nstats == 1 || nstats == f);
    kl__standardize(kl_f32(x), x->shape.d[0], f, mean, std, nstats, "", NULL, 0, NULL);
}

/* kl_data_standardize on a split, a block of rows at a time with a stop check between; a value
 * that overflows float is an error naming it. */
static kl_status standardize_split(kl_dataset *d, const kl_data_splits *s, kl_error *err)
{
    if (!d->x)
        return KL_OK;
    int64_t n = d->x->shape.d[0], f = row_size(d->x), check = rows_per_check(f);
    KL_ASSERT(s->nstats == 1 || s->nstats == f);
    kl_status st = KL_OK;
    for (int64_t r = 0; st == KL_OK && r < n; r += check)
        if ((st = kl__data_stop_check(d->name, err)) == KL_OK)
            st = kl__standardize(kl_f32(d->x) + r * f, r + check < n ? check : n - r, f, s->mean,
                                 s->std, s->nstats, d->name, NULL, r, err);
    return st;
}

/* Fills src with the IDX files of a built-in data set (fashion-mnist, mnist) in dir. */
static kl_status builtin_source(const char *dir, const char *prefix, kl_data_source *src,
                                char **paths, kl_error *err)
{
    size_t len = strlen(dir) + 40;
    paths[0] = malloc(len);
    paths[1] = malloc(len);
    if (!paths[0] || !paths[1])
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    snprintf(paths[0], len, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(paths[1], len, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    *src = (kl_data_source){.format = KL_DATA_IDX, .path = paths[0], .labels = paths[1]};
    return KL_OK;
}

const char *kl_data_install_hint(const char *dataset)
{
    if (!strcmp(dataset, "fashion-mnist"))
        return "install it with `apt-get install dataset-fashion-mnist`";
    return "Debian 12 has no package for MNIST: put its four IDX files "
           "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
           "t10k-labels-idx1-ubyte.gz) in /usr/share/datasets/mnist/";
}

static kl_status builtin(const kl_data_config *cfg, kl_data_source *train, kl_data_source *test,
                         char **paths, kl_error *err)
{
    if (strcmp(cfg->dataset, "fashion-mnist") != 0 && strcmp(cfg->dataset, "mnist") != 0)
        return kl_error_set(err, KL_EINVAL,
                            "data.dataset: unknown data set '%s'; kiln knows fashion-mnist and "
                            "mnist (or give data.train as idx, hdf5 or csv)",
                            cfg->dataset);
    char def[128];
    snprintf(def, sizeof def, "/usr/share/datasets/%s", cfg->dataset);
    const char *dir = cfg->dir && *cfg->dir ? cfg->dir : def;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kl_error_set(err, KL_EIO,
                            "data.dataset %s: the folder %s does not exist; %s, or set data.dir "
                            "to where its IDX files are",
                            cfg->dataset, dir, kl_data_install_hint(cfg->dataset));
    kl_status st = KL_OK;
    if (train->format == KL_DATA_NONE)
        st = builtin_source(dir, "train", train, paths, err);
    if (st == KL_OK && test->format == KL_DATA_NONE)
        st = builtin_source(dir, "t10k", test, paths + 2, err);
    return st;
}

/* Checks that a split's samples have the training samples' shape. */
static kl_status check_like(const kl_dataset *train, const kl_dataset *d, kl_error *err)
{
    kl_shape a = train->x->shape, b = d->x->shape, ya = train->y->shape, yb = d->y->shape;
    a.d[0] = b.d[0] = ya.d[0] = yb.d[0] = 1;
    if (!kl_shape_eq(&a, &b) || !kl_shape_eq(&ya, &yb) || train->y->dtype != d->y->dtype) {
        char s1[96], s2[96];
        return kl_error_set(err, KL_ESHAPE,
                            "%s has samples of shape %s but the training data (%s) has %s; every "
                            "split must have the same features",
                            d->name, kl_shape_str(&d->x->shape, s1, sizeof s1), train->name,
                            kl_shape_str(&train->x->shape, s2, sizeof s2));
    }
    return KL_OK;
}

/* Settles the class count: data.classes when set, else the training labels' max + 1; every split's
 * labels must be below it. */
static kl_status settle_classes(const kl_data_config *cfg, kl_data_splits *s, kl_error *err)
{
    int classes = cfg->classes > 0 ? cfg->classes : s->train.classes;
    int32_t max;
    kl_dataset *all[] = {&s->train, &s->val, &s->test};
    for (int i = 0; i < 3; i++) {
        if (!all[i]->x)
            continue;
        kl_status st =
            kl__check_labels(kl_i32(all[i]->y), rows(all[i]), classes, all[i]->name, &max, err);
        if (st != KL_OK)
            return st;
        all[i]->classes = classes;
    }
    return KL_OK;
}

/* A source as a lazy data set (data.lazy): HDF5 only, since IDX and CSV files cannot be read by
 * row without reading what comes before. */
static kl_status load_source(const kl_data_config *cfg, const kl_data_source *src,
                             const char *which, kl_dataset *out, kl_error *err)
{
    if (!cfg->lazy)
        return kl_dataset_load(src, cfg->task, out, err);
    if (src->format != KL_DATA_HDF5)
        return kl_error_set(err, KL_EINVAL,
                            "data.lazy reads rows from HDF5 files, but data.%s is %s (%s); "
                            "convert it with `kiln data convert` or leave data.lazy off",
                            which, src->format == KL_DATA_IDX ? "IDX" : "CSV", src->path);
    return kl__hdf5_open_lazy(src->path, src->x_dataset ? src->x_dataset : "x",
                              src->y_dataset ? src->y_dataset : "y", cfg->task, out, err);
}

static kl_status prepare(const kl_data_config *cfg, uint64_t seed, kl_data_splits *s, char **paths,
                         kl_error *err)
{
    kl_data_source train = cfg->train, test = cfg->test;
    kl_status st = KL_OK;
    if (cfg->dataset && *cfg->dataset && (st = builtin(cfg, &train, &test, paths, err)) != KL_OK)
        return st;
    if (train.format == KL_DATA_NONE)
        return kl_error_set(err, KL_EINVAL,
                            "data: no training data; set data.dataset (fashion-mnist, mnist) or "
                            "data.train");
    if (cfg->val.format != KL_DATA_NONE && cfg->val_fraction > 0)
        return kl_error_set(err, KL_EINVAL,
                            "data.val and data.val_fraction are both set; give one of them");
    if ((st = load_source(cfg, &train, "train", &s->train, err)) != KL_OK)
        return st;
    if (cfg->limit > 0 && cfg->limit < rows(&s->train)) {
        keep_rows(s->train.x, cfg->limit);
        keep_rows(s->train.y, cfg->limit);
    }
    if (cfg->val.format != KL_DATA_NONE)
        st = load_source(cfg, &cfg->val, "val", &s->val, err);
    else if (cfg->val_fraction > 0)
        st = split_val(&s->train, cfg->val_fraction, seed, &s->val, err);
    if (st == KL_OK && test.format != KL_DATA_NONE)
        st = load_source(cfg, &test, "test", &s->test, err);
    if (st == KL_OK && s->val.x)
        st = check_like(&s->train, &s->val, err);
    if (st == KL_OK && s->test.x)
        st = check_like(&s->train, &s->test, err);
    if (st == KL_OK && cfg->task == KL_TASK_CLASSIFICATION)
        st = settle_classes(cfg, s, err);
    if (st != KL_OK || cfg->lazy || cfg->standardize == KL_STD_NONE)
        return st;
    if ((st = compute_stats(&s->train, cfg->standardize, s, err)) != KL_OK)
        return st;
    kl_dataset *all[] = {&s->train, &s->val, &s->test};
    for (int i = 0; st == KL_OK && i < 3; i++)
        st = standardize_split(all[i], s, err);
    return st;
}

kl_status kl_data_prepare(const kl_data_config *cfg, uint64_t seed, kl_data_splits *out,
                          kl_error *err)
{
    return kl_data_prepare_dist(cfg, seed, NULL, out, err);
}

kl_status kl_data_prepare_dist(const kl_data_config *cfg, uint64_t seed, struct kl_comm *comm,
                               kl_data_splits *out, kl_error *err)
{
    char *paths[4] = {0};
    memset(out, 0, sizeof *out);
    kl_status st = prepare(cfg, seed, out, paths, err);
    /* The lazy pass is collective: every rank must know that every rank got this far. */
    if (cfg->lazy && comm) {
        int mine = st, size = kl_comm_size(comm);
        int *all = calloc((size_t)size, sizeof *all);
        kl_status cst = all ? kl_comm_allgather(comm, &mine, all, sizeof mine, err)
                            : kl_error_set(err, KL_ENOMEM, "out of memory");
        for (int r = 0; st == KL_OK && cst == KL_OK && r < size; r++)
            if (all[r] != KL_OK)
                st = kl_error_set(err, (kl_status)all[r], "rank %d could not open its data", r);
        free(all);
        if (st == KL_OK)
            st = cst;
    }
    if (st == KL_OK && cfg->lazy)
        st = kl__lazy_prepare(out, cfg->standardize, comm, err);
    for (int i = 0; i < 4; i++)
        free(paths[i]);
    if (st != KL_OK)
        kl_data_splits_free(out);
    return st;
}

void kl_data_shuffle(int64_t *idx, int64_t n, uint64_t seed, uint64_t epoch)
{
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    /* Fisher-Yates, each swap drawn from (seed, epoch, i). */
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j =
            (int64_t)(kl_rng_uniform(seed, KL_RNG_SHUFFLE, epoch, (uint64_t)i) * (float)(i + 1));
        if (j > i)
            j = i;
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

kl_status kl_data_gather(const kl_dataset *d, const int64_t *idx, int64_t n, float *x, void *y,
                         kl_error *err)
{
    int64_t xr = row_size(d->x), yr = d->y ? row_size(d->y) : 0;
    size_t yb = d->y ? (size_t)yr * kl_dtype_size(d->y->dtype) : 0;
    for (int64_t i = 0; i < n; i++) {
        KL_ASSERT(idx[i] >= 0 && idx[i] < rows(d));
        if (!d->lazy)
            memcpy(x + i * xr, kl_f32(d->x) + idx[i] * xr, (size_t)xr * sizeof(float));
        if (y && d->y)
            memcpy((char *)y + (size_t)i * yb, (const char *)d->y->data + (size_t)idx[i] * yb, yb);
    }
    return d->lazy ? kl__lazy_gather(d, idx, n, x, err) : KL_OK;
}

/* Translates each (h, w) plane of img by (dy, dx) in place: out(r, c) = in(r + dy, c + dx), zero
 * where that falls outside. This is a crop at offset (p + dy, p + dx) of the image padded by p.
 * Rows are visited in the order that reads each source row before it is overwritten. */
static void shift_image(float *img, int64_t c, int64_t h, int64_t w, int64_t dy, int64_t dx)
{
    int64_t lo = dx < 0 ? -dx : 0, hi = dx > 0 ? w - dx : w; /* output columns with a source */
    for (int64_t ch = 0; ch < c; ch++) {
        float *p = img + ch * h * w;
        for (int64_t k = 0; k < h; k++) {
            int64_t r = dy > 0 ? k : h - 1 - k, sr = r + dy;
            float *out = p + r * w;
            if (sr < 0 || sr >= h || lo >= hi) {
                memset(out, 0, (size_t)w * sizeof *out);
                continue;
            }
            memmove(out + lo, p + sr * w + lo + dx, (size_t)(hi - lo) * sizeof *out);
            memset(out, 0, (size_t)lo * sizeof *out);
            memset(out + hi, 0, (size_t)(w - hi) * sizeof *out);
        }
    }
}

static void flip_image(float *img, int64_t c, int64_t h, int64_t w)
{
    for (int64_t r = 0; r < c * h; r++) {
        float *row = img + r * w;
        for (int64_t a = 0, b = w - 1; a < b; a++, b--) {
            float t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

void kl_data_augment(float *x, int64_t n, int64_t c, int64_t h, int64_t w, const int64_t *sample,
                     int crop_padding, bool flip, uint64_t seed, uint64_t epoch)
{
    int64_t p = crop_padding > 0 ? crop_padding : 0;
    for (int64_t i = 0; i < n; i++) {
        float *img = x + i * c * h * w;
        uint64_t base = (uint64_t)sample[i] * 4;
        if (p > 0) {
            float span = (float)(2 * p + 1);
            int64_t oy = (int64_t)(kl_rng_uniform(seed, KL_RNG_AUGMENT, epoch, base) * span);
            int64_t ox = (int64_t)(kl_rng_uniform(seed, KL_RNG_AUGMENT, epoch, base + 1) * span);
            oy = oy > 2 * p ? 2 * p : oy;
            ox = ox > 2 * p ? 2 * p : ox;
            if (oy != p || ox != p)
                shift_image(img, c, h, w, oy - p, ox - p);
        }
        if (flip && kl_rng_uniform(seed, KL_RNG_AUGMENT, epoch, base + 2) < 0.5f)
            flip_image(img, c, h, w);
    }
}
