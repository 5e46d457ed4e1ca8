/* Private interface of the data loaders: one loader per format (trainers/data_idx.c,
 * data_csv.c, data_hdf5.c) behind kl_dataset_load in trainers/data.c, and the helpers they share.
 * Each loader fills a kl_dataset completely or leaves it empty, with an error naming the file. */
#ifndef KILN_DATA_IMPL_H
#define KILN_DATA_IMPL_H

#include <math.h>

#include "kiln/data.h"
#include "runtime/csv.h"

/* IDX images (magic 0x803, u8 (N, rows, cols)) and labels (magic 0x801, u8 (N)), gzip or raw. */
kl_status kl__idx_load(const char *images, const char *labels, kl_task task, kl_dataset *out,
                       kl_error *err);

/* IDX images alone, f32 (N, 1, rows, cols) in [0, 1]: what kiln predict reads without labels. */
kl_status kl__idx_read_images(const char *path, kl_tensor **out, kl_error *err);

/* A CSV file with a header row: label_column is y, every other column a feature. */
kl_status kl__csv_load(const char *path, const char *label_column, kl_task task, kl_dataset *out,
                       kl_error *err);

/* An HDF5 file: x_name (rank 2-4, any float or integer type) and y_name. */
kl_status kl__hdf5_load(const char *path, const char *x_name, const char *y_name, kl_task task,
                        kl_dataset *out, kl_error *err);

/* x_name alone from an open HDF5 file (an hid_t): what kiln predict reads without labels. */
kl_status kl__hdf5_read_x(int64_t file, const char *path, const char *name, kl_tensor **out,
                          kl_error *err);

/* The same, leaving x in the file: x gets its shape only, and d->lazy the open file
 * (data_lazy.c reads rows from it). */
kl_status kl__hdf5_open_lazy(const char *path, const char *x_name, const char *y_name, kl_task task,
                             kl_dataset *out, kl_error *err);

/* Lazy data sets (data_lazy.c). attach takes an open file and dataset (hid_t) whose rows
 * 0..n-1 become the data set's; share gives `to` the file rows `rows` of from's file (a split);
 * set_rows renumbers (n of the current rows, in order); prepare runs the pass that computes the
 * training split's statistics (mode) and checks every lazy split for NaN, over comm's ranks;
 * gather reads and standardises samples idx. */
kl_status kl__lazy_attach(kl_dataset *d, int64_t file, int64_t xset, int64_t features, int64_t n,
                          kl_error *err);
kl_status kl__lazy_open_x(int64_t file, const char *name, int64_t *xset, kl_error *err);
kl_status kl__lazy_share(const kl_dataset *from, kl_dataset *to, const int64_t *rows, int64_t n,
                         kl_error *err);
void kl__lazy_set_rows(kl_dataset *d, const int64_t *rows, int64_t n);
const int64_t *kl__lazy_rows(const kl_dataset *d);
kl_status kl__lazy_prepare(kl_data_splits *s, kl_standardize mode, struct kl_comm *comm,
                           kl_error *err);
kl_status kl__lazy_gather(const kl_dataset *d, const int64_t *idx, int64_t n, float *x,
                          kl_error *err);
void kl__lazy_free(struct kl__lazy *z);

/* KL_ESTOPPED once a stop was asked for (kl_stop_request, which kiln train's signal
 * handler calls), with a message naming what was being read; KL_OK otherwise. The long loops of
 * data preparation call it between blocks of at most KL__DATA_BLOCK_BYTES, so that SIGTERM ends
 * a load within a fraction of a second instead of after it. */
kl_status kl__data_stop_check(const char *what, kl_error *err);
#define KL__DATA_BLOCK_BYTES ((int64_t)16 << 20)

/* Standardises rows (f floats each) of v in place, (v - mean) / std in float as kiln serves it
 * (nstats 1: global, else per feature). Finite values can still overflow (values near 3.4e38 of
 * both signs): KL_ERANGE naming name, the sample (sample[r], or first + r when sample is NULL)
 * and the feature. */
kl_status kl__standardize(float *v, int64_t rows, int64_t f, const float *mean, const float *std,
                          int64_t nstats, const char *name, const int64_t *sample, int64_t first,
                          kl_error *err);

/* The scale a feature's standardisation divides by, given its training mean and (population)
 * standard deviation. A (near-)constant feature, sd below KL__STD_CONSTANT x (1 + |mean|): an
 * always-black border pixel, a column of one value up to rounding, gets scale 1, as
 * scikit-learn's StandardScaler gives it, so that a value it never took in training (in a test
 * split, a file kiln predict scores, a served request) moves by its distance from the mean, not
 * by a million times that. The scale is stored with the mean in checkpoints and model files, so
 * training, export, predict and serve all divide by the same number. */
#define KL__STD_CONSTANT 1e-6
static inline float kl__std_scale(double sd, double mean)
{
    return sd < KL__STD_CONSTANT * (1.0 + fabs(mean)) ? 1.0f : (float)sd;
}

/* Sets d->name to a copy of name; KL_ENOMEM when it cannot. */
kl_status kl__dataset_set_name(kl_dataset *d, const char *name, kl_error *err);

/* Checks classification labels: every one in 0..INT32_MAX-1 (and below classes when classes > 0);
 * sets *max_label. The error names what (a file) and the record. */
kl_status kl__check_labels(const int32_t *y, int64_t n, int classes, const char *what,
                           int32_t *max_label, kl_error *err);

#endif
