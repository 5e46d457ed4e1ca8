/* IDX files, the format of MNIST and Fashion-MNIST: a big-endian header (magic, then one u32 per
 * dimension) and u8 records. Read through zlib's gzread, which reads gzip and raw files alike, in
 * large chunks; images become f32 (N, 1, rows, cols) in [0, 1], labels i32 (N). Called by
 * kl_dataset_load (trainers/data.c), and for images alone by kiln predict (predict_io.c).
 * The header's size is checked against the file before anything is allocated. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "trainers/data_impl.h"

enum { IDX_IMAGES = 0x00000803, IDX_LABELS = 0x00000801, CHUNK = 1 << 20 };

/* Deflate's largest expansion (a 258-byte match in 2 bits, zlib's technical notes): a gzip file
 * of n bytes never holds more than n times this. */
#define DEFLATE_MAX_RATIO 1032

/* Reads up to len bytes; returns the count read, or -1 on a read error (message in err). */
static int64_t read_full(gzFile f, void *buf, size_t len, const char *path, kl_error *err)
{
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < CHUNK ? len - got : CHUNK;
        int r = gzread(f, (unsigned char *)buf + got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            kl_error_set(err, KL_EIO, "%s: could not read: %s", path,
                         zerr == Z_ERRNO ? strerror(errno) : msg);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (int64_t)got;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static const char *idx_kind(uint32_t magic)
{
    return magic == IDX_IMAGES ? "images" : "labels";
}

static kl_status truncated(const char *path, const char *what, int64_t at, int64_t n, kl_error *err)
{
    return kl_error_set(err, KL_EFORMAT,
                        "%s: truncated: the data ends at %s %lld (counting from 0) of the %lld "
                        "the header announces; the file is incomplete, download it again",
                        path, what, (long long)at, (long long)n);
}

/* The records the header announces (n of rec bytes) must fit in the file before any memory is
 * taken for them: a raw file must hold them all; a gzip file cannot expand more than deflate
 * allows. */
static kl_status check_size(gzFile f, int64_t file_bytes, const char *path, const char *what,
                            const int64_t *dims, int ndim, int64_t hlen, kl_error *err)
{
    int64_t bytes, rec = 1;
    char name[300];
    snprintf(name, sizeof name, "%s: the IDX header", path);
    kl_status st = kl_dims_check(ndim, dims, 1, name, &bytes, err);
    if (st != KL_OK)
        return st;
    for (int i = 1; i < ndim; i++)
        rec *= dims[i];
    if (gzdirect(f) && file_bytes - hlen < bytes)
        return truncated(path, what, (file_bytes - hlen) / rec, dims[0], err);
    if (!gzdirect(f) && bytes / DEFLATE_MAX_RATIO > file_bytes)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: the IDX header announces %lld %ss of %lld bytes, more than a "
                            "gzip file of %lld bytes can hold (deflate expands at most %d times); "
                            "the file is damaged",
                            path, (long long)dims[0], what, (long long)rec, (long long)file_bytes,
                            DEFLATE_MAX_RATIO);
    return KL_OK;
}

/* Opens path and reads its header: checks the magic and returns the ndim dimensions, after
 * checking that the file can hold what they announce. */
static kl_status open_idx(const char *path, uint32_t magic, int ndim, int64_t *dims, gzFile *out,
                          kl_error *err)
{
    int fd = open(path, O_RDONLY);
    struct stat sb;
    gzFile f = fd >= 0 && fstat(fd, &sb) == 0 ? gzdopen(fd, "rb") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return kl_error_set(err, KL_EIO, "%s: cannot open: %s", path,
                            e ? strerror(e) : "out of memory");
    }
    gzbuffer(f, 256 * 1024);
    unsigned char hdr[4 + 4 * 3];
    size_t hlen = 4 + 4 * (size_t)ndim;
    int64_t got = read_full(f, hdr, hlen, path, err);
    kl_status st = got < 0 ? (err ? err->status : KL_EIO) : KL_OK;
    uint32_t m = got >= 4 ? be32(hdr) : 0;
    char hint[64] = "";
    if (m == IDX_IMAGES || m == IDX_LABELS)
        snprintf(hint, sizeof hint, ": it is an IDX %s file, not %s", idx_kind(m), idx_kind(magic));
    if (st == KL_OK && m != magic)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: not an IDX %s file (magic 0x%08x, expected 0x%08x)%s", path,
                          idx_kind(magic), m, magic, hint);
    if (st == KL_OK && got < (int64_t)hlen)
        st = kl_error_set(err, KL_EFORMAT, "%s: truncated IDX header", path);
    for (int i = 0; st == KL_OK && i < ndim; i++) {
        dims[i] = be32(hdr + 4 + 4 * i);
        if (dims[i] == 0)
            st = kl_error_set(err, KL_EFORMAT, "%s: dimension %d of the IDX header is 0", path, i);
    }
    if (st == KL_OK)
        st = check_size(f, (int64_t)sb.st_size, path, magic == IDX_IMAGES ? "image" : "label", dims,
                        ndim, (int64_t)hlen, err);
    if (st != KL_OK) {
        gzclose(f);
        return st;
    }
    *out = f;
    return KL_OK;
}

/* Reads n records of rec bytes each into dst via to (u8 -> f32 or i32), chunk by chunk. A short
 * file is an error naming the record where the data ran out; extra bytes at the end too. */
static kl_status read_records(gzFile f, const char *path, const char *what, int64_t n, int64_t rec,
                              void *dst,
                              void (*to)(void *, int64_t, const unsigned char *, int64_t),
                              kl_error *err)
{
    unsigned char *buf = malloc(CHUNK);
    if (!buf)
        return kl_error_set(err, KL_ENOMEM, "%s: out of memory reading", path);
    int64_t total = n * rec, done = 0;
    kl_status st = KL_OK;
    while (done < total && (st = kl__data_stop_check(path, err)) == KL_OK) {
        size_t want = (size_t)(total - done < CHUNK ? total - done : CHUNK);
        int64_t got = read_full(f, buf, want, path, err);
        if (got < 0) {
            st = err ? err->status : KL_EIO;
            break;
        }
        to(dst, done, buf, got);
        done += got;
        if ((size_t)got < want) {
            st = truncated(path, what, done / rec, n, err);
            break;
        }
    }
    if (st == KL_OK) {
        int64_t extra = read_full(f, buf, 1, path, err);
        if (extra < 0)
            st = err ? err->status : KL_EIO;
        else if (extra > 0)
            st = kl_error_set(err, KL_EFORMAT,
                              "%s: more data after the %lld %ss the header announces", path,
                              (long long)n, what);
    }
    free(buf);
    return st;
}

static void u8_to_unit(void *dst, int64_t at, const unsigned char *src, int64_t n)
{
    float *x = (float *)dst + at;
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)src[i] / 255.0f;
}

static void u8_to_i32(void *dst, int64_t at, const unsigned char *src, int64_t n)
{
    int32_t *y = (int32_t *)dst + at;
    for (int64_t i = 0; i < n; i++)
        y[i] = src[i];
}

static void u8_to_f32(void *dst, int64_t at, const unsigned char *src, int64_t n)
{
    float *y = (float *)dst + at;
    for (int64_t i = 0; i < n; i++)
        y[i] = src[i];
}

kl_status kl__idx_read_images(const char *path, kl_tensor **out, kl_error *err)
{
    int64_t d[3];
    gzFile f = NULL;
    kl_status st = open_idx(path, IDX_IMAGES, 3, d, &f, err);
    if (st != KL_OK)
        return st;
    kl_tensor *x = kl_tensor_new(KL_F32, KL_SHAPE(d[0], 1, d[1], d[2]), err);
    if (!x)
        st = err ? err->status : KL_ENOMEM;
    else
        st = read_records(f, path, "image", d[0], d[1] * d[2], x->data, u8_to_unit, err);
    gzclose(f);
    if (st != KL_OK)
        kl_tensor_free(x);
    else
        *out = x;
    return st;
}

static kl_status read_labels(const char *path, kl_task task, kl_tensor **out, kl_error *err)
{
    int64_t n;
    gzFile f = NULL;
    kl_status st = open_idx(path, IDX_LABELS, 1, &n, &f, err);
    if (st != KL_OK)
        return st;
    bool cls = task == KL_TASK_CLASSIFICATION;
    kl_tensor *y =
        cls ? kl_tensor_new(KL_I32, KL_SHAPE(n), err) : kl_tensor_new(KL_F32, KL_SHAPE(n, 1), err);
    if (!y)
        st = err ? err->status : KL_ENOMEM;
    else
        st = read_records(f, path, "label", n, 1, y->data, cls ? u8_to_i32 : u8_to_f32, err);
    gzclose(f);
    if (st != KL_OK)
        kl_tensor_free(y);
    else
        *out = y;
    return st;
}

kl_status kl__idx_load(const char *images, const char *labels, kl_task task, kl_dataset *out,
                       kl_error *err)
{
    memset(out, 0, sizeof *out);
    if (!labels || !*labels)
        return kl_error_set(err, KL_EINVAL,
                            "%s: an IDX images file needs its labels file (data.*.labels, or "
                            "--labels)",
                            images);
    kl_status st = kl__idx_read_images(images, &out->x, err);
    if (st == KL_OK)
        st = read_labels(labels, task, &out->y, err);
    if (st == KL_OK && out->x->shape.d[0] != out->y->shape.d[0])
        st = kl_error_set(
            err, KL_EFORMAT, "%s has %lld images but %s has %lld labels; they must belong together",
            images, (long long)out->x->shape.d[0], labels, (long long)out->y->shape.d[0]);
    int32_t max = 0;
    if (st == KL_OK && task == KL_TASK_CLASSIFICATION)
        st = kl__check_labels(kl_i32(out->y), out->y->shape.d[0], 0, labels, &max, err);
    if (st == KL_OK) {
        out->classes = task == KL_TASK_CLASSIFICATION ? max + 1 : 0;
        st = kl__dataset_set_name(out, images, err);
    }
    if (st != KL_OK)
        kl_dataset_free(out);
    return st;
}
