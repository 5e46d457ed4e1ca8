/* Feature lookup: a request names entities by id and the server joins their features from a
 * CSV or HDF5 table, read again when its file changes (serve/README.md, "Steps and lookup"). */
#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/csv.h"
#include "runtime/file.h"
#include "runtime/h5.h"
#include "runtime/schema.h"
#include "serve/patterns/flow.h"
#include "serve/serve_impl.h"

typedef struct entry {
    int64_t id, row;
} entry;

typedef struct table {
    int64_t n, w;
    float *x;   /* (n, w) */
    entry *ids; /* (n), sorted by id */
} table;

struct kl__lookup {
    char *path, *key;
    pthread_mutex_t mu;
    table t;
    kl__file_id file, bad; /* the file read, and the last one that failed to read */
};

static void table_free(table *t)
{
    free(t->x);
    free(t->ids);
    *t = (table){0};
}

static int by_id(const void *a, const void *b)
{
    int64_t x = ((const entry *)a)->id, y = ((const entry *)b)->id;
    return x < y ? -1 : x > y;
}

/* Sorts the ids and refuses duplicates. */
static kl_status index_ids(table *t, const char *path, kl_error *err)
{
    qsort(t->ids, (size_t)t->n, sizeof *t->ids, by_id);
    for (int64_t i = 1; i < t->n; i++)
        if (t->ids[i].id == t->ids[i - 1].id)
            return kl_error_set(err, KL_EFORMAT, "%s: id %lld appears twice", path,
                                (long long)t->ids[i].id);
    return KL_OK;
}

static bool parse_i64(const char *s, int64_t *v)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    *v = x;
    return *s && end && !*end && errno == 0;
}

static kl_status read_csv(const char *path, const char *key, table *t, kl_error *err)
{
    size_t len = 0;
    char *text = kl__file_read(path, "the lookup table", &len, err);
    if (!text)
        return err ? err->status : KL_EIO;
    if (memchr(text, '\0', (size_t)len)) {
        free(text);
        return kl_error_set(err, KL_EFORMAT, "%s: holds a NUL byte; a table is text", path);
    }
    /* Rows: the lines after the header that are not blank, counted without cutting the text. */
    int64_t lines = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        lines += p != text && (size_t)(e - p) > strspn(p, " \t\r") ? 1 : 0;
        p = nl ? nl + 1 : end;
    }
    size_t pos = 0, nf = 0;
    char *line = kl__csv_next_line(text, (size_t)len, &pos);
    char **fields = NULL;
    kl_status st = KL_OK;
    int kcol = -1;
    if (!line || kl__csv_blank(line)) {
        st = kl_error_set(err, KL_EFORMAT, "%s: no header row", path);
    } else {
        nf = kl__csv_count_fields(line);
        fields = calloc(nf, sizeof *fields);
        if (!fields)
            st = kl_error_set(err, KL_ENOMEM, "out of memory");
        else
            kl__csv_split(line, fields, nf);
        for (size_t i = 0; st == KL_OK && i < nf; i++)
            if (!strcmp(fields[i], key))
                kcol = (int)i;
        if (st == KL_OK && (kcol < 0 || nf < 2))
            st = kl_error_set(err, KL_EFORMAT,
                              "%s: the header has no column '%s' (lookup.key) and at least one "
                              "feature column",
                              path, key);
    }
    t->w = (int64_t)nf - 1;
    t->x = st == KL_OK ? malloc((size_t)((lines ? lines : 1) * t->w) * sizeof *t->x) : NULL;
    t->ids = st == KL_OK ? malloc((size_t)(lines ? lines : 1) * sizeof *t->ids) : NULL;
    if (st == KL_OK && (!t->x || !t->ids))
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    int64_t lineno = 1;
    for (char *l; st == KL_OK && (l = kl__csv_next_line(text, (size_t)len, &pos));) {
        lineno++;
        if (kl__csv_blank(l))
            continue;
        if (t->n >= lines || kl__csv_count_fields(l) != nf) {
            st = kl_error_set(err, KL_EFORMAT, "%s:%lld: %zu fields, the header has %zu", path,
                              (long long)lineno, kl__csv_count_fields(l), nf);
            break;
        }
        kl__csv_split(l, fields, nf);
        entry *e = &t->ids[t->n];
        if (!parse_i64(fields[kcol], &e->id)) {
            st = kl_error_set(err, KL_EFORMAT, "%s:%lld: id '%s' is not an integer", path,
                              (long long)lineno, fields[kcol]);
            break;
        }
        e->row = t->n;
        float *row = t->x + t->n * t->w;
        for (size_t i = 0, j = 0; st == KL_OK && i < nf; i++) {
            if ((int)i == kcol)
                continue;
            char *end = NULL;
            float v = strtof(fields[i], &end);
            if (!*fields[i] || *end || !isfinite(v))
                st = kl_error_set(err, KL_EFORMAT, "%s:%lld: column %zu ('%s') is not a number",
                                  path, (long long)lineno, i + 1, fields[i]);
            row[j++] = v;
        }
        t->n++;
    }
    free(fields);
    free(text);
    return st == KL_OK ? index_ids(t, path, err) : st;
}

static kl_status read_h5(const char *path, table *t, kl_error *err)
{
    kl__h5_quiet q = kl__h5_quiet_begin();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ids = f >= 0 ? H5Dopen2(f, "id", H5P_DEFAULT) : -1;
    hid_t xs = f >= 0 ? H5Dopen2(f, "x", H5P_DEFAULT) : -1;
    hid_t is = ids >= 0 ? H5Dget_space(ids) : -1, ss = xs >= 0 ? H5Dget_space(xs) : -1;
    hsize_t in[2] = {0}, xd[2] = {0};
    bool ok = is >= 0 && ss >= 0 && H5Sget_simple_extent_ndims(is) == 1 &&
              H5Sget_simple_extent_ndims(ss) == 2;
    if (ok) {
        H5Sget_simple_extent_dims(is, in, NULL);
        H5Sget_simple_extent_dims(ss, xd, NULL);
        ok = in[0] == xd[0] && xd[1] > 0;
    }
    int64_t *raw = NULL;
    if (ok) {
        t->n = (int64_t)in[0];
        t->w = (int64_t)xd[1];
        raw = malloc((size_t)(t->n ? t->n : 1) * sizeof *raw);
        t->x = malloc((size_t)(t->n * t->w > 0 ? t->n * t->w : 1) * sizeof *t->x);
        t->ids = malloc((size_t)(t->n ? t->n : 1) * sizeof *t->ids);
        ok = raw && t->x && t->ids &&
             H5Dread(ids, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) >= 0 &&
             H5Dread(xs, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->x) >= 0;
    }
    for (int64_t i = 0; ok && i < t->n; i++)
        t->ids[i] = (entry){raw[i], i};
    free(raw);
    kl__h5_close(is, H5Sclose);
    kl__h5_close(ss, H5Sclose);
    kl__h5_close(ids, H5Dclose);
    kl__h5_close(xs, H5Dclose);
    kl__h5_close(f, H5Fclose);
    kl__h5_quiet_end(q);
    if (!ok)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: expected an HDF5 file with datasets id (N integers) and x (N, F)",
                            path);
    return index_ids(t, path, err);
}

/* Reads the table when its file is new or changed (the lock held). */
static kl_status refresh(kl__lookup *l, kl_error *err)
{
    kl__file_id id;
    if (!kl__file_id_of(l->path, &id))
        return l->t.ids ? KL_OK /* keep serving the last good table */
                        : kl_error_set(err, KL_EIO, "%s: %s", l->path, strerror(errno));
    if (l->t.ids && kl__file_same(&id, &l->file))
        return KL_OK;
    if (l->t.ids && kl__file_same(&id, &l->bad))
        return KL_OK; /* failed before, unchanged since: keep the old table */
    l->bad = id;
    table t = {0};
    size_t n = strlen(l->path);
    bool h5 =
        (n > 3 && !strcmp(l->path + n - 3, ".h5")) || (n > 5 && !strcmp(l->path + n - 5, ".hdf5"));
    kl_status st = h5 ? read_h5(l->path, &t, err) : read_csv(l->path, l->key, &t, err);
    if (st != KL_OK) {
        table_free(&t);
        return st;
    }
    if (l->t.ids && t.w != l->t.w) {
        int64_t w = t.w;
        table_free(&t);
        return kl_error_set(err, KL_EFORMAT,
                            "%s now has %lld features, not %lld: keeping the old table", l->path,
                            (long long)w, (long long)l->t.w);
    }
    table_free(&l->t);
    l->t = t;
    l->file = id;
    return KL_OK;
}

kl_status kl__lookup_read(const kl__ynode *v, const char *dir, kl__lookup **out, kl_error *err)
{
    *out = NULL;
    if (v->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, v->pos, "lookup",
                              "expected {table: FILE, key: COLUMN}");
    static const char *const keys[] = {"table", "key"};
    kl_status st = kl__check_keys(v, keys, 2, "lookup", err);
    if (st != KL_OK)
        return st;
    const kl__ynode *file = kl__ynode_get(v, "table"), *key = kl__ynode_get(v, "key");
    if (!file || file->type != KL__YN_SCALAR || !*file->str)
        return kl__yaml_error(err, KL_EINVAL, v->pos, "lookup.table",
                              "the table file is "
                              "required");
    if (key && key->type != KL__YN_SCALAR)
        return kl__yaml_error(err, KL_EINVAL, key->pos, "lookup.key", "expected a column name");
    kl__lookup *l = calloc(1, sizeof *l);
    char full[PATH_MAX];
    snprintf(full, sizeof full, "%s%s%s", file->str[0] == '/' ? "" : dir,
             file->str[0] == '/' ? "" : "/", file->str);
    if (!l || !(l->path = strdup(full)) || !(l->key = strdup(key ? key->str : "id"))) {
        kl__lookup_free(l);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&l->mu, NULL);
    st = refresh(l, err);
    if (st != KL_OK) {
        kl__lookup_free(l);
        return st;
    }
    *out = l;
    return KL_OK;
}

void kl__lookup_free(kl__lookup *l)
{
    if (!l)
        return;
    if (l->path)
        pthread_mutex_destroy(&l->mu);
    table_free(&l->t);
    free(l->path);
    free(l->key);
    free(l);
}

int64_t kl__lookup_width(kl__lookup *l)
{
    pthread_mutex_lock(&l->mu);
    int64_t w = l->t.w;
    pthread_mutex_unlock(&l->mu);
    return w;
}

kl_status kl__lookup_rows(kl__lookup *l, const int64_t *ids, int64_t n, float **out, int64_t *w,
                          kl_error *err)
{
    pthread_mutex_lock(&l->mu);
    kl_error rerr = {0};
    kl_status st = refresh(l, &rerr);
    if (st != KL_OK && !l->t.ids) {
        pthread_mutex_unlock(&l->mu);
        return kl_error_set(err, st, "the feature table cannot be read: %s", rerr.msg);
    }
    *w = l->t.w;
    float *x = malloc((size_t)(n * l->t.w > 0 ? n * l->t.w : 1) * sizeof *x);
    st = x ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int64_t i = 0; st == KL_OK && i < n; i++) {
        entry key = {ids[i], 0};
        const entry *e = bsearch(&key, l->t.ids, (size_t)l->t.n, sizeof key, by_id);
        if (!e)
            st = kl_error_set(err, KL_EINVAL,
                              "unknown id %lld (sample %lld): the feature table "
                              "has no such entity",
                              (long long)ids[i], (long long)i);
        else
            memcpy(x + i * l->t.w, l->t.x + e->row * l->t.w, (size_t)l->t.w * sizeof *x);
    }
    pthread_mutex_unlock(&l->mu);
    if (st != KL_OK) {
        free(x);
        return st;
    }
    *out = x;
    return KL_OK;
}
