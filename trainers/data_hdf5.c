/* HDF5 data sets: reading x and y from any HDF5 file (kl_dataset_load via trainers/data.c) and
 * writing the kiln-dataset layout (kl_dataset_save_hdf5, behind `kiln data convert`): x f32
 * (N, ...), y i32 (N) or f32 (N, targets), root attributes format="kiln-dataset",
 * format_version=1 and classes. HDF5's own error printing is off while kiln calls it, so errors
 * reach the user once, through kl_error. */
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/h5.h"
#include "trainers/data_impl.h"

#define KILN_DATASET_FORMAT  "kiln-dataset"
#define KILN_DATASET_VERSION 1

/* Index of the first value of v[0..n) that is NaN or infinite, or -1. */
static int64_t first_nonfinite(const float *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return i;
    return -1;
}

/* Reads an integer attribute of the root group, if it exists: 1 when read, 0 when absent, -1 when
 * it is not one number that fits an int (an array, a string, a huge value). */
static int read_int_attr(hid_t file, const char *name, int *v)
{
    int64_t x = 0;
    int rc = kl__h5_get_i64(file, name, &x);
    if (rc == 1 && (x < INT_MIN || x > INT_MAX))
        rc = -1;
    if (rc == 1)
        *v = (int)x;
    return rc;
}

/* A file that says it is a kiln-dataset must be a version this kiln reads. */
static kl_status check_format(hid_t file, const char *path, kl_error *err)
{
    if (H5Aexists(file, "format") <= 0)
        return KL_OK;
    int version = 0;
    if (read_int_attr(file, "format_version", &version) == 1 && version > KILN_DATASET_VERSION)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: kiln-dataset format_version %d is newer than this kiln reads "
                            "(version %d); upgrade kiln",
                            path, version, KILN_DATASET_VERSION);
    return KL_OK;
}

/* A dataset as opened: its handle, extent, type, and the rows of one chunk (0: not chunked). */
typedef struct h5_data {
    hid_t ds;
    int rank;
    int64_t dims[KL_MAX_DIMS];
    H5T_class_t cls;
    int64_t chunk_rows;
} h5_data;

/* Opens dataset name and gives its rank, dims, type class and chunking. */
static kl_status open_dataset(hid_t file, const char *path, const char *name, const char *which,
                              h5_data *d, kl_error *err)
{
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0 || (d->ds = H5Dopen2(file, name, H5P_DEFAULT)) < 0)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: no dataset '%s' (the %s); name it with data.*.%s_dataset or "
                            "--%s",
                            path, name, which, which, which);
    hid_t space = H5Dget_space(d->ds), type = H5Dget_type(d->ds), dcpl = H5Dget_create_plist(d->ds);
    hsize_t dims[KL_MAX_DIMS] = {0}, chunk[KL_MAX_DIMS] = {0};
    d->rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (d->rank >= 0 && d->rank <= KL_MAX_DIMS)
        H5Sget_simple_extent_dims(space, dims, NULL);
    for (int i = 0; i < KL_MAX_DIMS; i++)
        d->dims[i] = dims[i] > (hsize_t)INT64_MAX ? -1 : (int64_t)dims[i];
    d->cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    d->chunk_rows = 0;
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && d->rank >= 1 && d->rank <= KL_MAX_DIMS &&
        H5Pget_chunk(dcpl, d->rank, chunk) == d->rank)
        d->chunk_rows = (int64_t)chunk[0];
    kl__h5_close(space, H5Sclose);
    kl__h5_close(type, H5Tclose);
    kl__h5_close(dcpl, H5Pclose);
    if (d->cls != H5T_INTEGER && d->cls != H5T_FLOAT)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: dataset '%s' holds neither integers nor floating-point numbers",
                            path, name);
    return KL_OK;
}

/* The dataset's values must be in the file (kl__h5_check_stored), and there must be some. */
static kl_status check_stored(const h5_data *d, const char *path, const char *name,
                              int64_t file_bytes, kl_error *err)
{
    char what[300];
    snprintf(what, sizeof what, "%s: dataset '%s'", path, name);
    int64_t bytes = 0;
    kl_status st = kl__h5_check_stored(d->ds, file_bytes, what, &bytes, err);
    if (st == KL_OK && bytes == 0)
        st = kl_error_set(err, KL_ESHAPE, "%s is empty (a dimension of 0)", what);
    return st;
}

/* Reads the whole dataset as mem_type (elem bytes a value) into out, in blocks of whole rows of
 * about KL__DATA_BLOCK_BYTES, a multiple of a chunk's rows so that each chunk is decompressed
 * once, with a stop check between blocks; with finite, a block holding NaN or Inf stops it. */
static kl_status read_blocks(const h5_data *d, const char *path, const char *name, hid_t mem_type,
                             size_t elem, bool finite, void *out, kl_error *err)
{
    int64_t row = 1, n = d->dims[0];
    for (int i = 1; i < d->rank; i++)
        row *= d->dims[i];
    int64_t per = KL__DATA_BLOCK_BYTES / (row * (int64_t)elem);
    per = per > 0 ? per : 1;
    if (d->chunk_rows > 0)
        per = per > d->chunk_rows ? per / d->chunk_rows * d->chunk_rows : d->chunk_rows;
    hid_t fs = H5Dget_space(d->ds);
    kl_status st =
        fs >= 0 ? KL_OK : kl_error_set(err, KL_EIO, "%s: cannot read dataset '%s'", path, name);
    for (int64_t r0 = 0; st == KL_OK && r0 < n; r0 += per) {
        char doing[300];
        snprintf(doing, sizeof doing, "dataset '%s' of %s", name, path);
        if ((st = kl__data_stop_check(doing, err)) != KL_OK)
            break;
        hsize_t start[KL_MAX_DIMS] = {(hsize_t)r0}, count[KL_MAX_DIMS];
        count[0] = (hsize_t)(n - r0 < per ? n - r0 : per);
        for (int i = 1; i < d->rank; i++)
            count[i] = (hsize_t)d->dims[i];
        hsize_t m = count[0] * (hsize_t)row;
        hid_t ms = H5Screate_simple(1, &m, NULL);
        char *dst = (char *)out + (size_t)(r0 * row) * elem;
        if (ms < 0 || H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(d->ds, mem_type, ms, fs, H5P_DEFAULT, dst) < 0)
            st = kl_error_set(err, KL_EIO, "%s: could not read dataset '%s'", path, name);
        kl__h5_close(ms, H5Sclose);
        int64_t bad = st == KL_OK && finite ? first_nonfinite((const float *)dst, (int64_t)m) : -1;
        if (bad >= 0)
            st = kl_error_set(err, KL_EFORMAT,
                              "%s: dataset '%s': sample %lld (counting from 0) holds %g; NaN and "
                              "Inf are refused",
                              path, name, (long long)(r0 + bad / row), (double)((float *)dst)[bad]);
    }
    kl__h5_close(fs, H5Sclose);
    return st;
}

/* Opens x and checks its rank and storage: what every reader of x does first. */
static kl_status open_x(hid_t file, const char *path, const char *name, int64_t file_bytes,
                        h5_data *d, kl_error *err)
{
    kl_status st = open_dataset(file, path, name, "x", d, err);
    if (st == KL_OK && (d->rank < 2 || d->rank > 4))
        st = kl_error_set(err, KL_ESHAPE,
                          "%s: dataset '%s' has %d axes; x must have 2 to 4 (samples first)", path,
                          name, d->rank);
    if (st == KL_OK)
        st = check_stored(d, path, name, file_bytes, err);
    return st;
}

static kl_status read_x(hid_t file, const char *path, const char *name, int64_t file_bytes,
                        kl_tensor **out, kl_error *err)
{
    h5_data d = {.ds = -1};
    kl_status st = open_x(file, path, name, file_bytes, &d, err);
    kl_tensor *x = NULL;
    if (st == KL_OK && !(x = kl_tensor_new(KL_F32, kl_shape_make(d.rank, d.dims), err)))
        st = err ? err->status : KL_ENOMEM;
    if (st == KL_OK)
        st = read_blocks(&d, path, name, H5T_NATIVE_FLOAT, sizeof(float), true, x->data, err);
    kl__h5_close(d.ds, H5Dclose);
    if (st != KL_OK)
        kl_tensor_free(x);
    else
        *out = x;
    return st;
}

static kl_status read_y(hid_t file, const char *path, const char *name, kl_task task,
                        int64_t file_bytes, kl_dataset *out, kl_error *err)
{
    h5_data d = {.ds = -1};
    bool classify = task == KL_TASK_CLASSIFICATION;
    kl_status st = open_dataset(file, path, name, "y", &d, err);
    if (st == KL_OK && classify && d.cls != H5T_INTEGER)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: dataset '%s' holds floating-point numbers; classification needs "
                          "integer labels (or set task: regression)",
                          path, name);
    if (st == KL_OK && (d.rank < 1 || d.rank > 2 || (classify && d.rank == 2 && d.dims[1] != 1)))
        st = kl_error_set(err, KL_ESHAPE,
                          "%s: dataset '%s' has %d axes; y must be (N) labels or (N, targets)",
                          path, name, d.rank);
    if (st == KL_OK)
        st = check_stored(&d, path, name, file_bytes, err);
    if (st == KL_OK) {
        int64_t n = d.dims[0], t = d.rank == 2 ? d.dims[1] : 1;
        out->y = classify ? kl_tensor_new(KL_I32, KL_SHAPE(n), err)
                          : kl_tensor_new(KL_F32, KL_SHAPE(n, t), err);
        if (!out->y)
            st = err ? err->status : KL_ENOMEM;
    }
    if (st == KL_OK)
        st = read_blocks(&d, path, name, classify ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, 4,
                         !classify, out->y->data, err);
    kl__h5_close(d.ds, H5Dclose);
    return st;
}

/* x left in the file: its shape, and the open dataset handed to data_lazy.c. */
static kl_status open_x_lazy(hid_t file, const char *path, const char *name, int64_t file_bytes,
                             kl_dataset *out, kl_error *err)
{
    h5_data d = {.ds = -1};
    kl_status st = open_x(file, path, name, file_bytes, &d, err);
    kl__h5_close(d.ds, H5Dclose);
    if (st != KL_OK)
        return st;
    int64_t xset = -1;
    if ((st = kl__lazy_open_x(file, name, &xset, err)) != KL_OK)
        return st;
    out->x = calloc(1, sizeof *out->x);
    if (!out->x) {
        H5Dclose(xset);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    out->x->dtype = KL_F32;
    out->x->shape = kl_shape_make(d.rank, d.dims);
    int64_t features = kl_numel(out->x) / d.dims[0];
    /* The data set keeps its own reference on the file, as on the dataset. */
    H5Iinc_ref(file);
    st = kl__lazy_attach(out, file, xset, features, d.dims[0], err);
    if (st != KL_OK) {
        H5Dclose(xset);
        H5Idec_ref(file);
    }
    return st;
}

kl_status kl__hdf5_read_x(int64_t file, const char *path, const char *name, kl_tensor **out,
                          kl_error *err)
{
    return read_x((hid_t)file, path, name, kl__h5_file_bytes(path), out, err);
}

static kl_status load(const char *path, const char *x_name, const char *y_name, kl_task task,
                      bool lazy, kl_dataset *out, kl_error *err)
{
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return access(path, R_OK) != 0
                   ? kl_error_set(err, KL_EIO, "%s: cannot open: no such file or not readable",
                                  path)
                   : kl_error_set(err, KL_EFORMAT, "%s: not an HDF5 file", path);
    int64_t bytes = kl__h5_file_bytes(path);
    kl_status st = check_format(file, path, err);
    if (st == KL_OK)
        st = lazy ? open_x_lazy(file, path, x_name, bytes, out, err)
                  : read_x(file, path, x_name, bytes, &out->x, err);
    if (st == KL_OK)
        st = read_y(file, path, y_name, task, bytes, out, err);
    if (st == KL_OK && out->x->shape.d[0] != out->y->shape.d[0])
        st = kl_error_set(err, KL_ESHAPE,
                          "%s: '%s' has %lld samples but '%s' has %lld; they must have one row "
                          "per sample",
                          path, x_name, (long long)out->x->shape.d[0], y_name,
                          (long long)out->y->shape.d[0]);
    int classes = 0;
    if (st == KL_OK && task == KL_TASK_CLASSIFICATION) {
        int32_t max = 0;
        if (read_int_attr(file, "classes", &classes) != 1 || classes < 0)
            classes = 0;
        st = kl__check_labels(kl_i32(out->y), out->y->shape.d[0], classes, path, &max, err);
        out->classes = classes > 0 ? classes : max + 1;
    }
    H5Fclose(file);
    if (st == KL_OK)
        st = kl__dataset_set_name(out, path, err);
    return st;
}

static kl_status load_quietly(const char *path, const char *x_name, const char *y_name,
                              kl_task task, bool lazy, kl_dataset *out, kl_error *err)
{
    memset(out, 0, sizeof *out);
    kl__h5_quiet q = kl__h5_quiet_begin();
    kl_status st = load(path, x_name, y_name, task, lazy, out, err);
    kl__h5_quiet_end(q);
    if (st != KL_OK)
        kl_dataset_free(out);
    return st;
}

kl_status kl__hdf5_load(const char *path, const char *x_name, const char *y_name, kl_task task,
                        kl_dataset *out, kl_error *err)
{
    return load_quietly(path, x_name, y_name, task, false, out, err);
}

kl_status kl__hdf5_open_lazy(const char *path, const char *x_name, const char *y_name, kl_task task,
                             kl_dataset *out, kl_error *err)
{
    return load_quietly(path, x_name, y_name, task, true, out, err);
}

/* Writes t as dataset name: chunks of about 1 MiB of whole samples, shuffled and deflated
 * (images are mostly zeros), which any HDF5 reader with zlib reads. */
static herr_t write_tensor(hid_t file, const char *name, const kl_tensor *t)
{
    hsize_t dims[KL_MAX_DIMS], chunk[KL_MAX_DIMS];
    int64_t row = kl_numel(t) / t->shape.d[0];
    int64_t per = (int64_t)(1 << 20) / (row * 4) > 0 ? (int64_t)(1 << 20) / (row * 4) : 1;
    for (int i = 0; i < t->shape.ndim; i++)
        dims[i] = chunk[i] = (hsize_t)t->shape.d[i];
    chunk[0] = (hsize_t)(per < t->shape.d[0] ? per : t->shape.d[0]);
    bool i32 = t->dtype == KL_I32;
    hid_t space = H5Screate_simple(t->shape.ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    herr_t rc = space >= 0 && dcpl >= 0 ? 0 : -1;
    if (rc >= 0)
        rc = H5Pset_chunk(dcpl, t->shape.ndim, chunk);
    if (rc >= 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0)
        rc = H5Pset_shuffle(dcpl) < 0 ? -1 : H5Pset_deflate(dcpl, 1);
    hid_t ds = rc >= 0 ? H5Dcreate2(file, name, i32 ? H5T_STD_I32LE : H5T_IEEE_F32LE, space,
                                    H5P_DEFAULT, dcpl, H5P_DEFAULT)
                       : -1;
    if (ds < 0 || H5Dwrite(ds, i32 ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL,
                           H5P_DEFAULT, t->data) < 0)
        rc = -1;
    kl__h5_close(ds, H5Dclose);
    kl__h5_close(dcpl, H5Pclose);
    kl__h5_close(space, H5Sclose);
    return rc;
}

static herr_t write_int_attr(hid_t file, const char *name, int v)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a =
        space >= 0 ? H5Acreate2(file, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT) : -1;
    herr_t rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_INT, &v) : -1;
    kl__h5_close(a, H5Aclose);
    kl__h5_close(space, H5Sclose);
    return rc;
}

/* A variable-length UTF-8 string attribute: what h5py reads back as a str. */
static herr_t write_str_attr(hid_t file, const char *name, const char *v)
{
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), a = -1;
    herr_t rc = type >= 0 && space >= 0 ? H5Tset_size(type, H5T_VARIABLE) : -1;
    if (rc >= 0)
        rc = H5Tset_cset(type, H5T_CSET_UTF8);
    if (rc >= 0)
        a = H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    rc = a >= 0 ? H5Awrite(a, type, &v) : -1;
    kl__h5_close(a, H5Aclose);
    kl__h5_close(space, H5Sclose);
    kl__h5_close(type, H5Tclose);
    return rc;
}

static kl_status save(const kl_dataset *d, const char *path, const char *tmp, kl_error *err)
{
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0)
        return kl_error_set(err, KL_EIO, "%s: cannot create %s (is the folder there and writable?)",
                            path, tmp);
    herr_t rc = write_tensor(file, "x", d->x);
    if (rc >= 0)
        rc = write_tensor(file, "y", d->y);
    if (rc >= 0)
        rc = write_str_attr(file, "format", KILN_DATASET_FORMAT);
    if (rc >= 0)
        rc = write_int_attr(file, "format_version", KILN_DATASET_VERSION);
    if (rc >= 0)
        rc = write_int_attr(file, "classes", d->y->dtype == KL_I32 ? d->classes : 0);
    if (H5Fclose(file) < 0)
        rc = -1;
    if (rc < 0)
        return kl_error_set(err, KL_EIO, "%s: could not write the data set (disk full?)", path);
    if (rename(tmp, path) != 0)
        return kl_error_set(err, KL_EIO, "%s: could not rename %s into place", path, tmp);
    return KL_OK;
}

kl_status kl_dataset_save_hdf5(const kl_dataset *d, const char *path, kl_error *err)
{
    if (!d->x || !d->y || d->x->dtype != KL_F32 || d->x->shape.d[0] != d->y->shape.d[0])
        return kl_error_set(err, KL_EINVAL, "%s: nothing to write: the data set is incomplete",
                            path);
    size_t len = strlen(path) + 32;
    char *tmp = malloc(len);
    if (!tmp)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    /* The same folder, so that the rename is atomic: a reader never sees a half-written file. */
    snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
    kl__h5_quiet q = kl__h5_quiet_begin();
    kl_status st = save(d, path, tmp, err);
    kl__h5_quiet_end(q);
    if (st != KL_OK)
        remove(tmp);
    free(tmp);
    return st;
}
