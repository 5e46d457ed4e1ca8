/* Small HDF5 helpers shared by kiln's file formats (checkpoints, model files, data sets): HDF5's
 * error printing silenced for one call, string and integer attributes, and f32 datasets written
 * and read with their shapes checked. Every reader returns a kl_status with a message that names
 * the file and the object, because these files come from users and may be anything. */
#ifndef KILN_RUNTIME_H5_H
#define KILN_RUNTIME_H5_H

#include <hdf5.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/status.h"

typedef struct kl__h5_quiet {
    H5E_auto2_t fn;
    void *data;
} kl__h5_quiet;

/* HDF5 prints its error stack by default; kiln reports through kl_error instead. */
kl__h5_quiet kl__h5_quiet_begin(void);
void kl__h5_quiet_end(kl__h5_quiet q);
void kl__h5_close(hid_t id, herr_t (*close)(hid_t));

/* Attributes on any object: a variable-length UTF-8 string, an int64, a double. */
bool kl__h5_put_str(hid_t obj, const char *name, const char *v);
bool kl__h5_put_i64(hid_t obj, const char *name, int64_t v);
bool kl__h5_put_f64(hid_t obj, const char *name, double v);
/* The readers return 1 when read, 0 when the attribute is absent, -1 when it is unreadable or of
 * another type. *v from get_str is malloc'd. */
int kl__h5_get_str(hid_t obj, const char *name, char **v);
int kl__h5_get_i64(hid_t obj, const char *name, int64_t *v);
int kl__h5_get_f64(hid_t obj, const char *name, double *v);

/* A scalar dataset holding one variable-length string, and its reader (malloc'd result). */
bool kl__h5_put_text(hid_t loc, const char *name, const char *text);
int kl__h5_get_text(hid_t loc, const char *name, char **text);

/* A 1-D dataset of n variable-length UTF-8 strings (h5py reads them as str with .asstr()). */
bool kl__h5_put_strings(hid_t loc, const char *name, const char *const *v, int n);
/* Reads such a dataset (or one of fixed-length strings) of exactly n strings into v, n malloc'd
 * strings the caller frees (also those set before a failure). what names the dataset in
 * messages ("/labels"); file is the file's path. */
kl_status kl__h5_get_strings(hid_t loc, const char *name, char **v, int n, const char *file,
                             const char *what, kl_error *err);

/* Writes n values as an f32 (or f64, i32) dataset of rank ndim with dims; ndim 0 writes 1-D n. */
bool kl__h5_put_f32(hid_t loc, const char *name, const float *v, int ndim, const int64_t *dims);
bool kl__h5_put_f64s(hid_t loc, const char *name, const double *v, int64_t n);
bool kl__h5_put_i32(hid_t loc, const char *name, const int32_t *v, int ndim, const int64_t *dims);

/* Reads dataset name (under loc) into v, which holds want floats, after checking that it exists,
 * holds floating-point numbers, has exactly ndim axes of dims (ndim 0: any shape of want
 * elements) and stores them (kl__h5_check_stored). what names the object in messages ("parameter
 * layers.0.weight"); file is the file's path. With want 0 it only checks. */
kl_status kl__h5_get_f32(hid_t loc, const char *name, float *v, int ndim, const int64_t *dims,
                         int64_t want, const char *file, const char *what, kl_error *err);
/* Checks that dataset ds stores its values in the file (of file_bytes bytes, kl__h5_file_bytes)
 * before anything is allocated for them: their size through kl_dims_check, no external or
 * virtual storage, and as many stored bytes as the values take, or for filtered (compressed)
 * chunks at least 1/1032 of them, deflate's largest expansion. Sets *bytes (may be NULL) to the
 * values' size in the file's type; what names the dataset in messages ("d.h5: dataset 'x'"). */
kl_status kl__h5_check_stored(hid_t ds, int64_t file_bytes, const char *what, int64_t *bytes,
                              kl_error *err);
/* A file's size on disk (0 when it cannot be read). */
int64_t kl__h5_file_bytes(const char *path);

/* Rank and dims of a dataset (up to 8 axes): 0 on success. */
int kl__h5_shape(hid_t loc, const char *name, int *ndim, int64_t *dims);
bool kl__h5_exists(hid_t loc, const char *path);

#endif
