/* Lazy data sets (data.lazy): the inputs stay in their HDF5 file and each batch's rows are read
 * when gathered, so a rank reads only the rows of its share of each global batch and of its
 * share of the evaluation, and no rank holds a copy of the inputs. The labels are small and are
 * read whole.
 *
 * The standardisation statistics and the NaN check need one pass over the data. The rows are cut
 * into a fixed number of chunks; rank r reads chunks r, r + N, ...; each chunk's sums are taken
 * in row order, and the chunks' sums are added in chunk order after an all-gather. So every rank
 * reads 1/N of the file, and the statistics are the same bits whatever N is: N ranks still train
 * exactly like one process. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/comm.h"
#include "runtime/h5.h"
#include "trainers/data_impl.h"

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t travels as int64_t in data_impl.h");

/* Chunks of the statistics pass: fixed, so the summation order never depends on the rank count. */
#define SCAN_CHUNKS 64
/* Rows read at once by the pass: at most this many, and at most KL__DATA_BLOCK_BYTES of them, so
 * that wide samples do not make the buffer huge and a stop request is seen between reads. */
#define SCAN_BLOCK 1024
/* The file's chunk cache for random row reads. */
#define CHUNK_CACHE_BYTES (64u << 20)

struct kl__lazy {
    hid_t file, xset;
    int64_t features; /* floats per sample */
    int64_t *rows;    /* (n): the file row of each of the data set's rows */
    const float *mean, *std;
    int64_t nstats;
    int64_t rows_read;
    float *buf; /* (cap, features): one gather's rows as read */
    int64_t cap;
};

kl_status kl__lazy_attach(kl_dataset *d, int64_t file, int64_t xset, int64_t features, int64_t n,
                          kl_error *err)
{
    struct kl__lazy *z = calloc(1, sizeof *z);
    if (!z || !(z->rows = malloc((size_t)(n > 0 ? n : 1) * sizeof *z->rows))) {
        free(z);
        return kl_error_set(err, KL_ENOMEM, "out of memory opening a lazy data set");
    }
    z->file = (hid_t)file;
    z->xset = (hid_t)xset;
    z->features = features;
    for (int64_t i = 0; i < n; i++)
        z->rows[i] = i;
    d->lazy = z;
    return KL_OK;
}

void kl__lazy_free(struct kl__lazy *z)
{
    if (!z)
        return;
    /* Both handles may be shared with a split of the same file (kl__lazy_share): HDF5 counts
     * references, so each close drops one. */
    kl__h5_quiet q = kl__h5_quiet_begin();
    if (z->xset >= 0)
        H5Dclose(z->xset);
    if (z->file >= 0)
        H5Fclose(z->file);
    kl__h5_quiet_end(q);
    free(z->rows);
    free(z->buf);
    free(z);
}

kl_status kl__lazy_share(const kl_dataset *from, kl_dataset *to, const int64_t *rows, int64_t n,
                         kl_error *err)
{
    const struct kl__lazy *f = from->lazy;
    kl_status st = kl__lazy_attach(to, f->file, f->xset, f->features, n, err);
    if (st != KL_OK)
        return st;
    H5Iinc_ref(f->file);
    H5Iinc_ref(f->xset);
    memcpy(to->lazy->rows, rows, (size_t)n * sizeof *rows);
    return KL_OK;
}

void kl__lazy_set_rows(kl_dataset *d, const int64_t *rows, int64_t n)
{
    memmove(d->lazy->rows, rows, (size_t)n * sizeof *rows);
}

const int64_t *kl__lazy_rows(const kl_dataset *d)
{
    return d->lazy->rows;
}

int64_t kl_dataset_rows_read(const kl_dataset *d)
{
    return d->lazy ? d->lazy->rows_read : 0;
}

/* A position of a gather and the file row it wants, sorted by row. */
typedef struct wanted {
    int64_t row, pos;
} wanted;

static int by_row(const void *a, const void *b)
{
    int64_t x = ((const wanted *)a)->row, y = ((const wanted *)b)->row;
    return x < y ? -1 : x > y;
}

/* Reads file rows rows[0..n) (ascending, distinct) into out: one selection of runs of
 * consecutive rows, one read. */
static kl_status read_rows(struct kl__lazy *z, const int64_t *rows, int64_t n, float *out,
                           kl_error *err)
{
    kl__h5_quiet q = kl__h5_quiet_begin();
    hid_t fs = H5Dget_space(z->xset);
    int rank = fs >= 0 ? H5Sget_simple_extent_ndims(fs) : -1;
    hsize_t dims[8] = {0}, start[8] = {0}, count[8];
    if (rank > 0 && rank <= 8)
        H5Sget_simple_extent_dims(fs, dims, NULL);
    bool ok = fs >= 0 && rank > 0 && rank <= 8 && H5Sselect_none(fs) >= 0;
    for (int64_t i = 0; ok && i < n;) {
        int64_t j = i + 1;
        while (j < n && rows[j] == rows[j - 1] + 1)
            j++;
        start[0] = (hsize_t)rows[i];
        count[0] = (hsize_t)(j - i);
        for (int a = 1; a < rank; a++)
            count[a] = dims[a];
        ok = H5Sselect_hyperslab(fs, H5S_SELECT_OR, start, NULL, count, NULL) >= 0;
        i = j;
    }
    hsize_t mdim = (hsize_t)(n * z->features);
    hid_t ms = ok ? H5Screate_simple(1, &mdim, NULL) : -1;
    ok = ok && ms >= 0 && H5Dread(z->xset, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, out) >= 0;
    kl__h5_close(ms, H5Sclose);
    kl__h5_close(fs, H5Sclose);
    kl__h5_quiet_end(q);
    if (!ok)
        return kl_error_set(err, KL_EIO, "could not read %lld rows of the lazy data set's file",
                            (long long)n);
    z->rows_read += n;
    return KL_OK;
}

static kl_status grow(struct kl__lazy *z, int64_t n, kl_error *err)
{
    if (n <= z->cap)
        return KL_OK;
    float *b = realloc(z->buf, (size_t)(n * z->features) * sizeof *b);
    if (!b)
        return kl_error_set(err, KL_ENOMEM, "out of memory gathering a batch");
    z->buf = b;
    z->cap = n;
    return KL_OK;
}

/* Samples idx[0..n) as they are in the file (no standardisation). */
static kl_status gather_raw(struct kl__lazy *z, const int64_t *idx, int64_t n, float *x,
                            kl_error *err)
{
    kl_status st = grow(z, n, err);
    if (st != KL_OK)
        return st;
    /* Sorted by file row, duplicates read once; then every position takes its row. */
    wanted *w = malloc((size_t)(n > 0 ? n : 1) * sizeof *w);
    int64_t *uniq = malloc((size_t)(n > 0 ? n : 1) * sizeof *uniq), nu = 0;
    if (!w || !uniq) {
        free(w);
        free(uniq);
        return kl_error_set(err, KL_ENOMEM, "out of memory gathering a batch");
    }
    for (int64_t i = 0; i < n; i++)
        w[i] = (wanted){z->rows[idx[i]], i};
    qsort(w, (size_t)n, sizeof *w, by_row);
    for (int64_t i = 0; i < n; i++)
        if (nu == 0 || uniq[nu - 1] != w[i].row)
            uniq[nu++] = w[i].row;
    st = read_rows(z, uniq, nu, z->buf, err);
    size_t rb = (size_t)z->features * sizeof(float);
    for (int64_t i = 0, u = -1; st == KL_OK && i < n; i++) {
        if (u < 0 || uniq[u] != w[i].row)
            u++;
        memcpy(x + w[i].pos * z->features, z->buf + u * z->features, rb);
    }
    free(uniq);
    free(w);
    return st;
}

kl_status kl__lazy_gather(const kl_dataset *d, const int64_t *idx, int64_t n, float *x,
                          kl_error *err)
{
    struct kl__lazy *z = d->lazy;
    kl_status st = gather_raw(z, idx, n, x, err);
    if (st != KL_OK || z->nstats == 0)
        return st;
    /* The same arithmetic as kl_data_standardize applies to a data set in memory. */
    return kl__standardize(x, n, z->features, z->mean, z->std, z->nstats, d->name, idx, 0, err);
}

/* ---- the statistics pass ---- */

typedef struct scan {
    kl_comm *comm;
    int rank, size;
    int64_t k;    /* sums per chunk: 1 (global), features, or 0 (the NaN check only) */
    double *mean; /* pass 2: the mean to take deviations from; NULL in pass 1 */
} scan;

/* One chunk's sums (pass 1: values; pass 2: squared deviations) into out[0..k), and the first
 * non-finite value's data-set row into *bad (-1 if none). */
static kl_status scan_chunk(const kl_dataset *d, const scan *sc, int64_t lo, int64_t hi,
                            double *out, int64_t *bad, kl_error *err)
{
    struct kl__lazy *z = d->lazy;
    int64_t f = z->features, block = KL__DATA_BLOCK_BYTES / (f * (int64_t)sizeof(float));
    block = block < 1 ? 1 : block > SCAN_BLOCK ? SCAN_BLOCK : block;
    float *buf = malloc((size_t)(block * f) * sizeof *buf);
    int64_t *idx = malloc((size_t)block * sizeof *idx);
    kl_status st = buf && idx ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int64_t j = 0; j < sc->k; j++)
        out[j] = 0;
    *bad = -1;
    for (int64_t r0 = lo; st == KL_OK && r0 < hi; r0 += block) {
        if ((st = kl__data_stop_check(d->name, err)) != KL_OK)
            break;
        int64_t n = hi - r0 < block ? hi - r0 : block;
        for (int64_t i = 0; i < n; i++)
            idx[i] = r0 + i;
        if ((st = gather_raw(z, idx, n, buf, err)) != KL_OK)
            break;
        for (int64_t r = 0; r < n; r++)
            for (int64_t j = 0; j < f; j++) {
                float v = buf[r * f + j];
                if (!isfinite(v) && *bad < 0)
                    *bad = r0 + r;
                if (sc->k == 0)
                    continue;
                int64_t s = sc->k == 1 ? 0 : j;
                if (sc->mean) {
                    double dv = v - sc->mean[s];
                    out[s] += dv * dv;
                } else {
                    out[s] += v;
                }
            }
    }
    free(buf);
    free(idx);
    return st;
}

/* Runs the pass over d's rows on every rank and leaves every chunk's sums, in chunk order, in
 * all (SCAN_CHUNKS, k), and the first bad row in *bad. */
static kl_status scan_all(const kl_dataset *d, const scan *sc, double *all, int64_t *bad,
                          kl_error *err)
{
    int64_t n = d->x->shape.d[0], per = (SCAN_CHUNKS + sc->size - 1) / sc->size;
    /* A rank's block: per slot, k sums, the bad row and its status. */
    int64_t slot = sc->k + 2;
    size_t bytes = (size_t)(per * slot) * sizeof(double);
    double *mine = calloc(1, bytes), *every = calloc((size_t)sc->size, bytes);
    kl_status st = mine && every ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
    kl_error local = {0};
    for (int64_t s = 0; mine && every && s < per; s++) {
        int64_t c = sc->rank + s * sc->size;
        double *o = mine + s * slot;
        o[sc->k] = -1;
        if (c >= SCAN_CHUNKS)
            continue;
        int64_t b = -1;
        kl_status cs = local.status == KL_OK ? scan_chunk(d, sc, n * c / SCAN_CHUNKS,
                                                          n * (c + 1) / SCAN_CHUNKS, o, &b, &local)
                                             : local.status;
        o[sc->k] = (double)b;
        o[sc->k + 1] = cs;
    }
    /* Every rank takes part in the all-gather, also after its own failure, so none waits. */
    if (st == KL_OK) {
        st = sc->comm ? kl_comm_allgather(sc->comm, mine, every, bytes, err)
                      : (memcpy(every, mine, bytes), KL_OK);
    }
    *bad = -1;
    for (int64_t c = 0; st == KL_OK && c < SCAN_CHUNKS; c++) {
        const double *o = every + (size_t)((c % sc->size) * per + c / sc->size) * (size_t)slot;
        kl_status other = (kl_status)o[sc->k + 1];
        if (other != KL_OK)
            st =
                local.status != KL_OK ? kl_error_set(err, local.status, "%s", local.msg)
                : other == KL_ESTOPPED
                    ? kl_error_set(err, other, "another rank was stopped while reading %s", d->name)
                    : kl_error_set(err, KL_EIO, "another rank could not read its share of %s",
                                   d->name);
        if (o[sc->k] >= 0 && *bad < 0)
            *bad = (int64_t)o[sc->k];
        if (sc->k)
            memcpy(all + c * sc->k, o, (size_t)sc->k * sizeof *all);
    }
    free(mine);
    free(every);
    return st;
}

static kl_status check_finite(const kl_dataset *d, const scan *sc, kl_error *err)
{
    int64_t bad;
    scan s = *sc;
    s.k = 0;
    s.mean = NULL;
    kl_status st = scan_all(d, &s, NULL, &bad, err);
    if (st == KL_OK && bad >= 0)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: sample %lld (counting from 0, file row %lld) holds NaN or Inf; "
                          "they are refused",
                          d->name, (long long)bad, (long long)d->lazy->rows[bad]);
    return st;
}

kl_status kl__lazy_prepare(kl_data_splits *s, kl_standardize mode, struct kl_comm *comm,
                           kl_error *err)
{
    scan sc = {
        .comm = comm, .rank = comm ? kl_comm_rank(comm) : 0, .size = comm ? kl_comm_size(comm) : 1};
    kl_dataset *sets[] = {&s->train, &s->val, &s->test};
    kl_status st = KL_OK;
    /* The NaN check of the splits not in the statistics pass. */
    for (int i = 1; st == KL_OK && i < 3; i++)
        if (sets[i]->lazy)
            st = check_finite(sets[i], &sc, err);
    if (st != KL_OK || !s->train.lazy)
        return st;
    if (mode == KL_STD_NONE)
        return check_finite(&s->train, &sc, err);
    int64_t n = s->train.x->shape.d[0], f = s->train.lazy->features;
    sc.k = mode == KL_STD_GLOBAL ? 1 : f;
    double *all = malloc((size_t)(SCAN_CHUNKS * sc.k) * sizeof *all);
    double *sum = calloc((size_t)sc.k, sizeof *sum), *sq = calloc((size_t)sc.k, sizeof *sq);
    s->mean = malloc((size_t)sc.k * sizeof *s->mean);
    s->std = malloc((size_t)sc.k * sizeof *s->std);
    if (!all || !sum || !sq || !s->mean || !s->std)
        st = kl_error_set(err, KL_ENOMEM, "out of memory computing standardisation statistics");
    int64_t bad = -1;
    if (st == KL_OK)
        st = scan_all(&s->train, &sc, all, &bad, err);
    if (st == KL_OK && bad >= 0)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: sample %lld (counting from 0, file row %lld) holds NaN or Inf; "
                          "they are refused",
                          s->train.name, (long long)bad, (long long)s->train.lazy->rows[bad]);
    int64_t per = sc.k == 1 ? n * f : n;
    for (int64_t c = 0; st == KL_OK && c < SCAN_CHUNKS; c++)
        for (int64_t j = 0; j < sc.k; j++)
            sum[j] += all[c * sc.k + j];
    for (int64_t j = 0; st == KL_OK && j < sc.k; j++)
        sum[j] /= (double)per;
    sc.mean = sum;
    if (st == KL_OK)
        st = scan_all(&s->train, &sc, all, &bad, err);
    for (int64_t c = 0; st == KL_OK && c < SCAN_CHUNKS; c++)
        for (int64_t j = 0; j < sc.k; j++)
            sq[j] += all[c * sc.k + j];
    for (int64_t j = 0; st == KL_OK && j < sc.k; j++) {
        double sd = sqrt(sq[j] / (double)per);
        s->mean[j] = (float)sum[j];
        s->std[j] = kl__std_scale(sd, sum[j]);
    }
    free(all);
    free(sum);
    free(sq);
    if (st != KL_OK)
        return st;
    s->nstats = sc.k;
    for (int i = 0; i < 3; i++)
        if (sets[i]->lazy) {
            sets[i]->lazy->mean = s->mean;
            sets[i]->lazy->std = s->std;
            sets[i]->lazy->nstats = s->nstats;
        }
    return KL_OK;
}

kl_status kl__lazy_open_x(int64_t file, const char *name, int64_t *xset, kl_error *err)
{
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0)
        H5Pset_chunk_cache(dapl, 12421, CHUNK_CACHE_BYTES, 1.0);
    hid_t ds = H5Dopen2((hid_t)file, name, dapl >= 0 ? dapl : H5P_DEFAULT);
    kl__h5_close(dapl, H5Pclose);
    *xset = ds;
    return ds >= 0 ? KL_OK : kl_error_set(err, KL_EFORMAT, "cannot open dataset '%s'", name);
}
