/* The HDF5 helpers of runtime/h5.h: attributes, text and f32 datasets for kiln's file formats.
 * Callers bracket their HDF5 work with kl__h5_quiet_begin/end. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/tensor.h"
#include "runtime/h5.h"

/* Deflate's largest expansion (a 258-byte match in 2 bits, zlib's technical notes). */
#define DEFLATE_MAX_RATIO 1032

kl__h5_quiet kl__h5_quiet_begin(void)
{
    /* HDF5 1.10's exit handler crashes on a file whose close failed after a write error (a full
     * disk), and kiln closes every file it opens, so the handler is not wanted; this must come
     * before the library's first call, which every kiln HDF5 path makes through here. */
    static bool once;
    if (!once) {
        H5dont_atexit();
        once = true;
    }
    kl__h5_quiet q = {0};
    H5Eget_auto2(H5E_DEFAULT, &q.fn, &q.data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return q;
}

void kl__h5_quiet_end(kl__h5_quiet q)
{
    H5Eset_auto2(H5E_DEFAULT, q.fn, q.data);
}

void kl__h5_close(hid_t id, herr_t (*close)(hid_t))
{
    if (id >= 0)
        close(id);
}

static hid_t vstr_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0)) {
        H5Tclose(t);
        return -1;
    }
    return t;
}

static bool put_attr(hid_t obj, const char *name, hid_t type, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR), a = -1;
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    bool ok = sp >= 0 && (a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, type, v) >= 0;
    kl__h5_close(a, H5Aclose);
    kl__h5_close(sp, H5Sclose);
    return ok;
}

bool kl__h5_put_str(hid_t obj, const char *name, const char *v)
{
    hid_t t = vstr_type();
    bool ok = t >= 0 && put_attr(obj, name, t, &v);
    kl__h5_close(t, H5Tclose);
    return ok;
}

bool kl__h5_put_i64(hid_t obj, const char *name, int64_t v)
{
    return put_attr(obj, name, H5T_NATIVE_INT64, &v);
}

bool kl__h5_put_f64(hid_t obj, const char *name, double v)
{
    return put_attr(obj, name, H5T_NATIVE_DOUBLE, &v);
}

/* Opens attribute name of the class wanted: 1 with *a set, 0 when absent, -1 otherwise. */
static int open_attr(hid_t obj, const char *name, H5T_class_t want, hid_t *a)
{
    if (H5Aexists(obj, name) <= 0)
        return 0;
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0)
        return -1;
    hid_t t = H5Aget_type(*a), sp = H5Aget_space(*a);
    bool ok = t >= 0 && H5Tget_class(t) == want && sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    kl__h5_close(t, H5Tclose);
    kl__h5_close(sp, H5Sclose);
    if (!ok) {
        H5Aclose(*a);
        return -1;
    }
    return 1;
}

/* Reads a string attribute or dataset through its type: variable-length or fixed. */
static int read_string(hid_t obj, bool attr, char **v)
{
    hid_t t = attr ? H5Aget_type(obj) : H5Dget_type(obj);
    if (t < 0)
        return -1;
    int rc = -1;
    if (H5Tis_variable_str(t) > 0) {
        hid_t mt = vstr_type();
        char *s = NULL;
        herr_t r = mt < 0 ? -1
                   : attr ? H5Aread(obj, mt, &s)
                          : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s);
        if (r >= 0 && s) {
            *v = strdup(s);
            rc = *v ? 1 : -1;
        }
        if (r >= 0 && s) {
            hid_t sp = attr ? H5Aget_space(obj) : H5Dget_space(obj);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &s);
            kl__h5_close(sp, H5Sclose);
        }
        kl__h5_close(mt, H5Tclose);
    } else {
        size_t n = H5Tget_size(t);
        char *s = n > 0 && n < ((size_t)1 << 30) ? calloc(n + 1, 1) : NULL;
        if (s &&
            (attr ? H5Aread(obj, t, s) : H5Dread(obj, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s)) >= 0) {
            *v = s;
            rc = 1;
        } else {
            free(s);
        }
    }
    H5Tclose(t);
    return rc;
}

int kl__h5_get_str(hid_t obj, const char *name, char **v)
{
    hid_t a;
    int rc = open_attr(obj, name, H5T_STRING, &a);
    if (rc <= 0)
        return rc;
    rc = read_string(a, true, v);
    H5Aclose(a);
    return rc;
}

/* A numeric attribute of either class, converted by HDF5 to mem. */
static int get_num(hid_t obj, const char *name, hid_t mem, void *v)
{
    hid_t a;
    int rc = open_attr(obj, name, H5T_INTEGER, &a);
    if (rc < 0)
        rc = open_attr(obj, name, H5T_FLOAT, &a);
    if (rc <= 0)
        return rc;
    rc = H5Aread(a, mem, v) >= 0 ? 1 : -1;
    H5Aclose(a);
    return rc;
}

int kl__h5_get_i64(hid_t obj, const char *name, int64_t *v)
{
    return get_num(obj, name, H5T_NATIVE_INT64, v);
}

int kl__h5_get_f64(hid_t obj, const char *name, double *v)
{
    return get_num(obj, name, H5T_NATIVE_DOUBLE, v);
}

bool kl__h5_put_text(hid_t loc, const char *name, const char *text)
{
    hid_t t = vstr_type(), sp = H5Screate(H5S_SCALAR), d = -1;
    bool ok = t >= 0 && sp >= 0 &&
              (d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, &text) >= 0;
    kl__h5_close(d, H5Dclose);
    kl__h5_close(sp, H5Sclose);
    kl__h5_close(t, H5Tclose);
    return ok;
}

bool kl__h5_put_strings(hid_t loc, const char *name, const char *const *v, int n)
{
    hid_t t = vstr_type(), sp = -1, d = -1;
    hsize_t dims = (hsize_t)n;
    bool ok = t >= 0 && (sp = H5Screate_simple(1, &dims, NULL)) >= 0 &&
              (d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    kl__h5_close(d, H5Dclose);
    kl__h5_close(sp, H5Sclose);
    kl__h5_close(t, H5Tclose);
    return ok;
}

kl_status kl__h5_get_strings(hid_t loc, const char *name, char **v, int n, const char *file,
                             const char *what, kl_error *err)
{
    int nd;
    int64_t dims[8];
    hid_t d = -1, t = -1, mt = -1;
    kl_status st = KL_OK;
    if (kl__h5_shape(loc, name, &nd, dims) != 0 || nd != 1 || dims[0] != n)
        return kl_error_set(err, KL_EFORMAT, "%s: %s must be a list of %d strings", file, what, n);
    d = H5Dopen2(loc, name, H5P_DEFAULT);
    t = d >= 0 ? H5Dget_type(d) : -1;
    if (t < 0 || H5Tget_class(t) != H5T_STRING) {
        st = kl_error_set(err, KL_EFORMAT, "%s: %s does not hold strings", file, what);
    } else if (H5Tis_variable_str(t) > 0) {
        char **raw = calloc((size_t)n + 1, sizeof *raw);
        mt = H5Tcopy(H5T_C_S1);
        if (!raw || mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 ||
            H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0)
            st = kl_error_set(err, KL_EFORMAT, "%s: %s cannot be read", file, what);
        for (int i = 0; st == KL_OK && i < n; i++)
            if (!(v[i] = strdup(raw[i] ? raw[i] : "")))
                st = kl_error_set(err, KL_ENOMEM, "out of memory reading %s", what);
        if (raw && mt >= 0) {
            hid_t sp = H5Dget_space(d);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
            kl__h5_close(sp, H5Sclose);
        }
        free(raw);
    } else {
        size_t size = H5Tget_size(t);
        char *buf = size > 0 && size < 4096 ? calloc((size_t)n, size) : NULL;
        if (!buf || H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
            st = kl_error_set(err, KL_EFORMAT, "%s: %s cannot be read", file, what);
        for (int i = 0; st == KL_OK && i < n; i++)
            if (!(v[i] = strndup(buf + (size_t)i * size, size)))
                st = kl_error_set(err, KL_ENOMEM, "out of memory reading %s", what);
        free(buf);
    }
    kl__h5_close(mt, H5Tclose);
    kl__h5_close(t, H5Tclose);
    kl__h5_close(d, H5Dclose);
    return st;
}

int kl__h5_get_text(hid_t loc, const char *name, char **text)
{
    if (!kl__h5_exists(loc, name))
        return 0;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return -1;
    hid_t t = H5Dget_type(d);
    int rc = t >= 0 && H5Tget_class(t) == H5T_STRING ? read_string(d, false, text) : -1;
    kl__h5_close(t, H5Tclose);
    H5Dclose(d);
    return rc;
}

static bool put_data(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *v,
                     int ndim, const int64_t *dims, int64_t n)
{
    hsize_t hd[8];
    int rank = ndim > 0 ? ndim : 1;
    for (int i = 0; i < rank; i++)
        hd[i] = (hsize_t)(ndim > 0 ? dims[i] : n);
    hid_t sp = H5Screate_simple(rank, hd, NULL), d = -1;
    bool ok =
        sp >= 0 &&
        (d = H5Dcreate2(loc, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
        H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    kl__h5_close(d, H5Dclose);
    kl__h5_close(sp, H5Sclose);
    return ok;
}

bool kl__h5_put_f32(hid_t loc, const char *name, const float *v, int ndim, const int64_t *dims)
{
    return put_data(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v, ndim, dims, 0);
}

bool kl__h5_put_f64s(hid_t loc, const char *name, const double *v, int64_t n)
{
    return put_data(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, 0, NULL, n);
}

bool kl__h5_put_i32(hid_t loc, const char *name, const int32_t *v, int ndim, const int64_t *dims)
{
    return put_data(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT32, v, ndim, dims, 0);
}

bool kl__h5_exists(hid_t loc, const char *path)
{
    /* H5Lexists needs every intermediate group to exist: walk the path. */
    char buf[512];
    if (strlen(path) >= sizeof buf)
        return false;
    strcpy(buf, path);
    for (char *p = buf; (p = strchr(p + 1, '/')) != NULL;) {
        *p = '\0';
        if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0)
            return false;
        *p = '/';
    }
    return H5Lexists(loc, buf, H5P_DEFAULT) > 0 && H5Oexists_by_name(loc, buf, H5P_DEFAULT) > 0;
}

int kl__h5_shape(hid_t loc, const char *name, int *ndim, int64_t *dims)
{
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT), sp = d >= 0 ? H5Dget_space(d) : -1;
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    hsize_t hd[8];
    bool ok = rank >= 0 && rank <= 8 && H5Sget_simple_extent_dims(sp, hd, NULL) >= 0;
    for (int i = 0; ok && i < rank; i++)
        dims[i] = (int64_t)hd[i];
    if (ok)
        *ndim = rank;
    kl__h5_close(sp, H5Sclose);
    kl__h5_close(d, H5Dclose);
    return ok ? 0 : -1;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *dims);

int64_t kl__h5_file_bytes(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int64_t)sb.st_size : 0;
}

/* The rule is explained in docs/data.md ("Sizes from headers"). Only deflate compresses among the
 * filters kiln accepts, so deflate's limit bounds what a stored byte can expand to; other filters
 * (scale-offset, n-bit, szip, plugins) are refused, as kiln cannot bound them and HDF5 1.10's
 * scale-offset decoder misbehaves on crafted chunks. */
static kl_status check_filters(hid_t dcpl, int filters, const char *what, kl_error *err)
{
    for (int i = 0; i < filters; i++) {
        unsigned flags, config;
        size_t nvalues = 0;
        char name[64] = "";
        H5Z_filter_t id =
            H5Pget_filter2(dcpl, (unsigned)i, &flags, &nvalues, NULL, sizeof name, name, &config);
        if (id != H5Z_FILTER_DEFLATE && id != H5Z_FILTER_SHUFFLE && id != H5Z_FILTER_FLETCHER32)
            return kl_error_set(
                err, KL_EUNSUPPORTED,
                "%s is stored with the HDF5 filter '%s' (id %d); kiln reads data "
                "stored plain or with gzip (deflate), shuffle and fletcher32: write "
                "it with one of those (h5py: compression=\"gzip\")",
                what, name, (int)id);
    }
    return KL_OK;
}

/* The dataset's values are in the file itself, in a layout kiln reads, through filters it
 * accepts; *filters is their number. */
static kl_status check_layout(hid_t dcpl, const char *what, int *filters, kl_error *err)
{
    H5D_layout_t layout = H5Pget_layout(dcpl);
    *filters = layout == H5D_CHUNKED ? H5Pget_nfilters(dcpl) : 0;
    if ((layout != H5D_COMPACT && layout != H5D_CONTIGUOUS && layout != H5D_CHUNKED) ||
        H5Pget_external_count(dcpl) != 0 || *filters < 0)
        return kl_error_set(err, KL_EFORMAT,
                            "%s keeps its values outside the file (external or virtual storage) "
                            "or its layout cannot be read; kiln reads data stored in the file "
                            "itself",
                            what);
    return check_filters(dcpl, *filters, what, err);
}

kl_status kl__h5_check_stored(hid_t ds, int64_t file_bytes, const char *what, int64_t *bytes,
                              kl_error *err)
{
    hid_t sp = H5Dget_space(ds), type = H5Dget_type(ds), dcpl = H5Dget_create_plist(ds);
    int rank = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1, filters = 0;
    hsize_t hd[H5S_MAX_RANK];
    int64_t dims[H5S_MAX_RANK], need = 0;
    bool ok = rank >= 0 && H5Sget_simple_extent_dims(sp, hd, NULL) >= 0 && type >= 0 &&
              H5Tget_size(type) > 0 && dcpl >= 0;
    for (int i = 0; ok && i < rank; i++)
        dims[i] = hd[i] > (hsize_t)INT64_MAX ? -1 : (int64_t)hd[i];
    kl_status st =
        ok ? kl_dims_check(rank, dims, H5Tget_size(type), what, &need, err)
           : kl_error_set(err, KL_EFORMAT, "%s cannot be read: the file is damaged", what);
    if (st == KL_OK)
        st = check_layout(dcpl, what, &filters, err);
    kl__h5_close(sp, H5Sclose);
    kl__h5_close(type, H5Tclose);
    kl__h5_close(dcpl, H5Pclose);
    hsize_t stored = st == KL_OK ? H5Dget_storage_size(ds) : 0;
    int64_t room = stored < (hsize_t)file_bytes ? (int64_t)stored : file_bytes;
    if (st == KL_OK && (filters > 0 ? need / DEFLATE_MAX_RATIO > room : need > room)) {
        char shape[200];
        shape_str(shape, sizeof shape, rank, dims);
        st =
            kl_error_set(err, KL_EFORMAT,
                         "%s has shape %s (%lld bytes) but the file stores %lld bytes of it%s; the "
                         "file is truncated, damaged or was never completely written",
                         what, shape, (long long)need, (long long)room,
                         filters > 0 ? ", compressed, and deflate expands at most 1032 times" : "");
    }
    if (st == KL_OK && bytes)
        *bytes = need;
    return st;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *dims)
{
    size_t at = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (at < size)
        snprintf(buf + at, size - at, ")");
}

kl_status kl__h5_get_f32(hid_t loc, const char *name, float *v, int ndim, const int64_t *dims,
                         int64_t want, const char *file, const char *what, kl_error *err)
{
    if (!kl__h5_exists(loc, name))
        return kl_error_set(err, KL_EFORMAT, "%s: %s is missing (no dataset %s)", file, what, name);
    int have_ndim;
    int64_t have[8];
    if (kl__h5_shape(loc, name, &have_ndim, have) != 0)
        return kl_error_set(err, KL_EFORMAT, "%s: %s (%s) cannot be read: the file is damaged",
                            file, what, name);
    char full[400];
    snprintf(full, sizeof full, "%s: %s (%s)", file, what, name);
    int64_t n = 0;
    kl_status st = kl_dims_check(have_ndim, have, sizeof(float), full, &n, err);
    if (st != KL_OK)
        return st;
    n /= (int64_t)sizeof(float);
    bool same = ndim == 0 ? n == want : have_ndim == ndim;
    for (int i = 0; same && ndim > 0 && i < ndim; i++)
        same = have[i] == dims[i];
    if (!same) {
        char a[96], b[96];
        shape_str(a, sizeof a, have_ndim, have);
        if (ndim > 0)
            shape_str(b, sizeof b, ndim, dims);
        else
            snprintf(b, sizeof b, "%lld values", (long long)want);
        return kl_error_set(err, KL_ESHAPE,
                            "%s: %s has shape %s in the file, but the model needs %s", file, what,
                            a, b);
    }
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT), t = d >= 0 ? H5Dget_type(d) : -1;
    bool ok = t >= 0 && H5Tget_class(t) == H5T_FLOAT;
    kl__h5_close(t, H5Tclose);
    if (!ok) {
        kl__h5_close(d, H5Dclose);
        return kl_error_set(err, KL_EFORMAT, "%s: %s (%s) does not hold floating-point numbers",
                            file, what, name);
    }
    if ((st = kl__h5_check_stored(d, kl__h5_file_bytes(file), full, NULL, err)) != KL_OK) {
        H5Dclose(d);
        return st;
    }
    ok = want == 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0;
    H5Dclose(d);
    if (!ok)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: %s (%s) cannot be read: the file is truncated or damaged", file,
                            what, name);
    return KL_OK;
}
