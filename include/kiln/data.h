/* Data sets: loading IDX (gzip or raw), HDF5 and CSV sources, checking them record by record,
 * splitting off validation data, standardising with training statistics, per-epoch shuffling,
 * batch gathering and image augmentation. A data set is read once into one f32 tensor (and one
 * label tensor) and batches are gathered from it by index; or, with data.lazy and an HDF5
 * source, only its labels are read and each batch's rows come from the file when gathered, so a
 * rank reads the rows it trains on and holds no copy of the inputs. */
#ifndef KILN_DATA_H
#define KILN_DATA_H

#include <stdint.h>
#include <stdio.h>

#include "kiln/config.h"
#include "kiln/tensor.h"

struct kl__lazy;
struct kl_comm;

typedef struct kl_dataset {
    kl_tensor *x; /* f32 (N, ...): IDX images are (N, 1, rows, cols) scaled to [0, 1]; with lazy,
                     shape only (data NULL) */
    kl_tensor *y; /* classification: i32 (N); regression: f32 (N, targets) */
    int classes;  /* classification: number of classes (labels are 0..classes-1) */
    char *name;   /* where it came from, for messages ("train-images-idx3-ubyte.gz") */
    struct kl__lazy *lazy; /* NULL: x is in memory; else the file its rows are read from */
} kl_dataset;

/* Reads one source. Bad data (wrong magic, truncated file, ragged CSV row, NaN, a label that is
 * negative or not an integer) is refused with an error naming the file and the record. */
kl_status kl_dataset_load(const kl_data_source *src, kl_task task, kl_dataset *out, kl_error *err);
void kl_dataset_free(kl_dataset *d);

/* Writes x and y (and classes as an attribute) to an HDF5 file that kl_dataset_load reads back
 * with x_dataset "x" and y_dataset "y"; behind `kiln data convert`. */
kl_status kl_dataset_save_hdf5(const kl_dataset *d, const char *path, kl_error *err);

/* Shapes, classes with counts, and per-set statistics (min, max, mean, std); `kiln data info`. */
void kl_dataset_describe(const kl_dataset *d, FILE *f);

/* What a run trains on. mean/std hold the standardisation statistics of the training split
 * (one value for global, one per feature for feature, none for none): export keeps them so that
 * serving applies exactly the same preprocessing. */
typedef struct kl_data_splits {
    kl_dataset train, val, test; /* val and test may be empty (x == NULL) */
    float *mean, *std;
    int64_t nstats;
} kl_data_splits;

/* How to get a built-in data set's files on Debian 12 (fashion-mnist, mnist), as a clause for a
 * message: Debian packages Fashion-MNIST but not MNIST. */
const char *kl_data_install_hint(const char *dataset);

/* Loads the configured sources (data.dataset shorthand included), applies data.limit, splits off
 * data.val_fraction of train when no val source is given (a seeded random subset), checks that
 * classes agree across splits and with data.classes, and standardises every split with the
 * training split's statistics. */
kl_status kl_data_prepare(const kl_data_config *cfg, uint64_t seed, kl_data_splits *out,
                          kl_error *err);
/* The same, called by every rank of comm (NULL: one process). With data.lazy the ranks share
 * the one pass that computes the statistics and checks the values (each reads 1/N of the rows),
 * and reach the same statistics bit for bit whatever their number. */
kl_status kl_data_prepare_dist(const kl_data_config *cfg, uint64_t seed, struct kl_comm *comm,
                               kl_data_splits *out, kl_error *err);
void kl_data_splits_free(kl_data_splits *s);

/* Applies statistics computed elsewhere (an exported model's) to x in place. */
void kl_data_standardize(kl_tensor *x, const float *mean, const float *std, int64_t nstats);

/* idx[0..n) becomes a permutation of 0..n-1 that depends only on (seed, epoch). */
void kl_data_shuffle(int64_t *idx, int64_t n, uint64_t seed, uint64_t epoch);

/* Copies samples idx[0..n) of d into x (n rows of d's per-sample size) and y (may be NULL).
 * Only a lazy data set can fail (a read error names the file). */
kl_status kl_data_gather(const kl_dataset *d, const int64_t *idx, int64_t n, float *x, void *y,
                         kl_error *err);
/* Input rows read from the file so far by this process (lazy data sets; 0 otherwise). */
int64_t kl_dataset_rows_read(const kl_dataset *d);

/* Random crop after zero padding and random horizontal flip, in place on n images (C, H, W).
 * The draws depend on (seed, epoch, sample[i]) only, so augmentation is reproducible whatever
 * the batch size or rank count. */
void kl_data_augment(float *x, int64_t n, int64_t c, int64_t h, int64_t w, const int64_t *sample,
                     int crop_padding, bool flip, uint64_t seed, uint64_t epoch);

#endif
