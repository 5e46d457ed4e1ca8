/* The runs index: <root>/index.sqlite, one row per run folder under the root (<root>/<run>/ and a
 * sweep's <root>/<sweep>/trials/<trial>/), with its params, final and best metrics and tags, for
 * `kiln runs` to filter and sort without reading every run.json. The folders are the truth: the
 * index is brought in line with them (kl_runs_index_sync) before it is read, and a missing or
 * damaged index file is rebuilt. Many processes may write at once (WAL, a busy timeout, every
 * change one IMMEDIATE transaction), as when the trials of a sweep end together. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "track/track_impl.h"

/* Bumped when the tables change: an index of another version is dropped and rebuilt. */
#define SCHEMA_VERSION  "1"
#define BUSY_TIMEOUT_MS 60000

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);"
    "CREATE TABLE IF NOT EXISTS runs(id TEXT PRIMARY KEY, name TEXT, kind TEXT, status TEXT,"
    " start TEXT, end TEXT, sweep TEXT, git_commit TEXT, json_size INTEGER,"
    " json_mtime_ns INTEGER);"
    "CREATE TABLE IF NOT EXISTS params(run TEXT, key TEXT, num REAL, text TEXT,"
    " PRIMARY KEY(run, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS metrics(run TEXT, key TEXT, final REAL, best REAL,"
    " PRIMARY KEY(run, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tags(run TEXT, key TEXT, value TEXT,"
    " PRIMARY KEY(run, key)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS fingerprints(path TEXT PRIMARY KEY, size INTEGER,"
    " mtime_ns INTEGER, sha256 TEXT);"
    "CREATE INDEX IF NOT EXISTS runs_start ON runs(start);"
    "INSERT OR IGNORE INTO meta VALUES('schema', '" SCHEMA_VERSION "');";

static kl_status db_error(kl_runs_index *ix, const char *what, kl_error *err)
{
    return kl_error_set(err, KL_EIO, "runs index %s/%s: %s: %s", ix->root, KL_RUNS_INDEX_NAME, what,
                        sqlite3_errmsg(ix->db));
}

static kl_status exec(kl_runs_index *ix, const char *sql, kl_error *err)
{
    return sqlite3_exec(ix->db, sql, NULL, NULL, NULL) == SQLITE_OK ? KL_OK
                                                                    : db_error(ix, sql, err);
}

static bool schema_current(kl_runs_index *ix)
{
    sqlite3_stmt *s = NULL;
    bool ok = sqlite3_prepare_v2(ix->db, "SELECT value FROM meta WHERE key='schema'", -1, &s,
                                 NULL) == SQLITE_OK &&
              sqlite3_step(s) == SQLITE_ROW &&
              !strcmp((const char *)sqlite3_column_text(s, 0), SCHEMA_VERSION);
    sqlite3_finalize(s);
    return ok;
}

static kl_status open_db(kl_runs_index *ix, const char *path, kl_error *err)
{
    if (sqlite3_open_v2(path, &ix->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        return db_error(ix, "open", err);
    sqlite3_busy_timeout(ix->db, BUSY_TIMEOUT_MS);
    /* Reads through mmap: a listing touches pages all over the params and metrics tables. */
    kl_status st = exec(ix,
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                        "PRAGMA mmap_size=268435456; PRAGMA cache_size=-16384;",
                        err);
    if (st == KL_OK)
        st = exec(ix, "BEGIN IMMEDIATE", err);
    if (st == KL_OK) {
        st = exec(ix, schema, err);
        if (st == KL_OK && !schema_current(ix))
            st = exec(ix,
                      "DROP TABLE runs; DROP TABLE params; DROP TABLE metrics; DROP TABLE tags;"
                      "DROP TABLE fingerprints; DROP TABLE meta;",
                      err);
        if (st == KL_OK)
            st = exec(ix, schema, err);
        st = st == KL_OK ? exec(ix, "COMMIT", err) : (exec(ix, "ROLLBACK", NULL), st);
    }
    return st;
}

kl_status kl_runs_index_open(const char *root, kl_runs_index **out, kl_error *err)
{
    *out = NULL;
    kl_runs_index *ix = calloc(1, sizeof *ix);
    char *path = kl__track_path(root, KL_RUNS_INDEX_NAME, NULL);
    if (!ix || !path || !(ix->root = strdup(root))) {
        free(ix);
        free(path);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    struct stat sb;
    if (stat(root, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        kl_error_set(err, KL_ENOTFOUND, "runs root %s: %s", root,
                     errno == ENOENT ? "no such folder" : "not a folder");
        free(path);
        kl_runs_index_close(ix);
        return KL_ENOTFOUND;
    }
    kl_status st = open_db(ix, path, err);
    if (st != KL_OK && sqlite3_errcode(ix->db) != SQLITE_BUSY &&
        (sqlite3_errcode(ix->db) == SQLITE_CORRUPT || sqlite3_errcode(ix->db) == SQLITE_NOTADB)) {
        /* A damaged index is only a cache of the folders: start it again. */
        sqlite3_close(ix->db);
        ix->db = NULL;
        unlink(path);
        *err = (kl_error){0};
        st = open_db(ix, path, err);
    }
    free(path);
    if (st != KL_OK) {
        kl_runs_index_close(ix);
        return st;
    }
    *out = ix;
    return KL_OK;
}

void kl_runs_index_close(kl_runs_index *ix)
{
    if (!ix)
        return;
    sqlite3_close(ix->db);
    free(ix->root);
    free(ix);
}

const char *kl_runs_index_root(const kl_runs_index *ix)
{
    return ix->root;
}

static sqlite3_stmt *prep(kl_runs_index *ix, const char *sql, kl_error *err)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK) {
        db_error(ix, sql, err);
        return NULL;
    }
    return s;
}

static kl_status delete_rows(kl_runs_index *ix, const char *id, kl_error *err)
{
    static const char *const sql[] = {
        "DELETE FROM runs WHERE id=?1", "DELETE FROM params WHERE run=?1",
        "DELETE FROM metrics WHERE run=?1", "DELETE FROM tags WHERE run=?1"};
    for (size_t i = 0; i < sizeof sql / sizeof *sql; i++) {
        sqlite3_stmt *s = prep(ix, sql[i], err);
        if (!s)
            return err->status;
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return db_error(ix, sql[i], err);
    }
    return KL_OK;
}

static const char *str_of(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static kl_status put_params(kl_runs_index *ix, const char *id, json_t *params, kl_error *err)
{
    sqlite3_stmt *s = prep(ix, "INSERT INTO params VALUES(?1, ?2, ?3, ?4)", err);
    if (!s)
        return err->status;
    const char *key;
    json_t *v;
    kl_status st = KL_OK;
    json_object_foreach(params, key, v)
    {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        char buf[64];
        if (json_is_number(v)) {
            sqlite3_bind_double(s, 3, json_number_value(v));
            snprintf(buf, sizeof buf, "%.17g", json_number_value(v));
            sqlite3_bind_text(s, 4, buf, -1, SQLITE_TRANSIENT);
        } else {
            sqlite3_bind_null(s, 3);
            const char *t = json_is_string(v)  ? json_string_value(v)
                            : json_is_true(v)  ? "true"
                            : json_is_false(v) ? "false"
                                               : "null";
            sqlite3_bind_text(s, 4, t, -1, SQLITE_STATIC);
        }
        if (sqlite3_step(s) != SQLITE_DONE) {
            st = db_error(ix, "params", err);
            break;
        }
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    return st;
}

static kl_status put_metrics(kl_runs_index *ix, const char *id, json_t *metrics, kl_error *err)
{
    json_t *final = json_object_get(metrics, "final"), *best = json_object_get(metrics, "best");
    sqlite3_stmt *s = prep(ix, "INSERT INTO metrics VALUES(?1, ?2, ?3, ?4)", err);
    if (!s)
        return err->status;
    const char *key;
    json_t *v;
    kl_status st = KL_OK;
    json_object_foreach(final, key, v)
    {
        json_t *b = json_object_get(best, key);
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        if (json_is_number(v))
            sqlite3_bind_double(s, 3, json_number_value(v));
        else
            sqlite3_bind_null(s, 3);
        if (json_is_number(b))
            sqlite3_bind_double(s, 4, json_number_value(b));
        else
            sqlite3_bind_null(s, 4);
        if (sqlite3_step(s) != SQLITE_DONE) {
            st = db_error(ix, "metrics", err);
            break;
        }
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    return st;
}

static kl_status put_tags(kl_runs_index *ix, const char *id, json_t *tags, kl_error *err)
{
    sqlite3_stmt *s = prep(ix, "INSERT INTO tags VALUES(?1, ?2, ?3)", err);
    if (!s)
        return err->status;
    const char *key;
    json_t *v;
    kl_status st = KL_OK;
    json_object_foreach(tags, key, v)
    {
        sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, json_string_value(v) ? json_string_value(v) : "", -1,
                          SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE) {
            st = db_error(ix, "tags", err);
            break;
        }
        sqlite3_reset(s);
    }
    sqlite3_finalize(s);
    return st;
}

/* The rows of one run, inside the caller's transaction. A run.json that is not a kiln run is an
 * error naming it; the caller decides whether that stops it. */
static kl_status put_locked(kl_runs_index *ix, const char *id, kl_error *err)
{
    char *path = kl__track_path(ix->root, id, "run.json");
    if (!path)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    struct stat sb;
    json_t *doc = NULL;
    kl_status st = stat(path, &sb) != 0
                       ? kl_error_set(err, KL_ENOTFOUND, "%s: %s", path, strerror(errno))
                   : !(doc = kl__track_read_json(path, err)) ? err->status
                                                             : KL_OK;
    const char *fmt = doc ? str_of(doc, "format") : NULL;
    if (st == KL_OK && (!fmt || strcmp(fmt, KL_RUN_FORMAT) != 0))
        st = kl_error_set(err, KL_EFORMAT, "%s: not a kiln run record (format is not \"%s\")", path,
                          KL_RUN_FORMAT);
    free(path);
    if (st == KL_OK)
        st = delete_rows(ix, id, err);
    sqlite3_stmt *s = st == KL_OK
                          ? prep(ix, "INSERT INTO runs VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)", err)
                          : NULL;
    if (s) {
        json_t *lin = json_object_get(doc, "lineage");
        json_t *git = json_object_get(json_object_get(doc, "provenance"), "git");
        const char *cols[] = {id,
                              str_of(doc, "name"),
                              str_of(doc, "kind"),
                              str_of(doc, "status"),
                              str_of(doc, "start"),
                              str_of(doc, "end"),
                              str_of(lin, "sweep"),
                              str_of(git, "commit")};
        for (int i = 0; i < 8; i++)
            sqlite3_bind_text(s, i + 1, cols[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 9, (sqlite3_int64)sb.st_size);
        sqlite3_bind_int64(s, 10,
                           (sqlite3_int64)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
        if (sqlite3_step(s) != SQLITE_DONE)
            st = db_error(ix, "runs", err);
        sqlite3_finalize(s);
    } else if (st == KL_OK) {
        st = err->status;
    }
    if (st == KL_OK)
        st = put_params(ix, id, json_object_get(doc, "params"), err);
    if (st == KL_OK)
        st = put_metrics(ix, id, json_object_get(doc, "metrics"), err);
    if (st == KL_OK)
        st = put_tags(ix, id, json_object_get(doc, "tags"), err);
    json_decref(doc);
    return st;
}

/* Runs fn inside one IMMEDIATE transaction (the busy timeout waits for other writers). */
static kl_status in_transaction(kl_runs_index *ix,
                                kl_status (*fn)(kl_runs_index *, const char *, kl_error *),
                                const char *id, kl_error *err)
{
    kl_status st = exec(ix, "BEGIN IMMEDIATE", err);
    if (st != KL_OK)
        return st;
    st = fn(ix, id, err);
    if (st == KL_OK)
        return exec(ix, "COMMIT", err);
    exec(ix, "ROLLBACK", NULL);
    return st;
}

kl_status kl_runs_index_put(kl_runs_index *ix, const char *id, kl_error *err)
{
    return in_transaction(ix, put_locked, id, err);
}

kl_status kl_runs_index_remove(kl_runs_index *ix, const char *id, kl_error *err)
{
    return in_transaction(ix, delete_rows, id, err);
}

/* A run folder seen on disk or a row of the index. */
typedef struct seen {
    char *id;
    int64_t size, mtime_ns;
} seen;

typedef struct seen_list {
    seen *v;
    size_t n, cap;
} seen_list;

static bool seen_push(seen_list *l, const char *id, int64_t size, int64_t mtime_ns)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        seen *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n].id = strdup(id)))
        return false;
    l->v[l->n].size = size;
    l->v[l->n++].mtime_ns = mtime_ns;
    return true;
}

static void seen_free(seen_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].id);
    free(l->v);
}

static int seen_cmp(const void *a, const void *b)
{
    return strcmp(((const seen *)a)->id, ((const seen *)b)->id);
}

/* Adds <root>/<id> when it holds a run.json; says whether it did. */
static bool scan_run(const char *root, const char *id, seen_list *l, bool *oom)
{
    char path[8192];
    if ((size_t)snprintf(path, sizeof path, "%s/%s/run.json", root, id) >= sizeof path)
        return false;
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    if (!seen_push(l, id, (int64_t)sb.st_size,
                   (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec))
        *oom = true;
    return true;
}

/* The run folders under root: <root>/<run>/run.json and <root>/<sweep>/trials/<trial>/run.json.
 * Hidden entries (the trash) are not runs. */
static kl_status scan(const char *root, seen_list *l, kl_error *err)
{
    DIR *d = opendir(root);
    if (!d)
        return kl_error_set(err, KL_EIO, "cannot list %s: %s", root, strerror(errno));
    bool oom = false;
    struct dirent *e;
    while (!oom && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (scan_run(root, e->d_name, l, &oom))
            continue;
        char trials[8192];
        if ((size_t)snprintf(trials, sizeof trials, "%s/%s/trials", root, e->d_name) >=
            sizeof trials)
            continue;
        DIR *t = opendir(trials);
        struct dirent *te;
        while (t && !oom && (te = readdir(t))) {
            char id[8192];
            if (te->d_name[0] == '.' ||
                (size_t)snprintf(id, sizeof id, "%s/trials/%s", e->d_name, te->d_name) >= sizeof id)
                continue;
            scan_run(root, id, l, &oom);
        }
        if (t)
            closedir(t);
    }
    closedir(d);
    return oom ? kl_error_set(err, KL_ENOMEM, "out of memory") : KL_OK;
}

static kl_status indexed(kl_runs_index *ix, seen_list *l, kl_error *err)
{
    sqlite3_stmt *s = prep(ix, "SELECT id, json_size, json_mtime_ns FROM runs", err);
    if (!s)
        return err->status;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (!seen_push(l, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
                       sqlite3_column_int64(s, 2))) {
            sqlite3_finalize(s);
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? KL_OK : db_error(ix, "reading runs", err);
}

static bool run_json_exists(const char *root, const char *id)
{
    char path[8192];
    struct stat sb;
    return (size_t)snprintf(path, sizeof path, "%s/%s/run.json", root, id) < sizeof path &&
           stat(path, &sb) == 0;
}

/* Applies the differences between disk and index (both sorted by id) in one transaction. A
 * run.json that cannot be read is left out with a warning rather than failing the listing. */
static kl_status apply(kl_runs_index *ix, const seen_list *disk, const seen_list *rows,
                       int *changed, kl_error *err)
{
    size_t i = 0, j = 0;
    kl_status st = KL_OK;
    bool begun = false;
    while (st == KL_OK && (i < disk->n || j < rows->n)) {
        int c = i == disk->n ? 1 : j == rows->n ? -1 : strcmp(disk->v[i].id, rows->v[j].id);
        const char *put = NULL, *del = NULL;
        if (c < 0)
            put = disk->v[i++].id;
        else if (c > 0)
            del = rows->v[j++].id;
        else {
            if (disk->v[i].size != rows->v[j].size || disk->v[i].mtime_ns != rows->v[j].mtime_ns)
                put = disk->v[i].id;
            i++;
            j++;
        }
        if (!put && !del)
            continue;
        if (!begun && (st = exec(ix, "BEGIN IMMEDIATE", err)) != KL_OK)
            return st;
        begun = true;
        kl_error e = {0};
        /* The folders were listed before this transaction began: a run another process has
         * made and indexed since is not gone. Only a record that is still missing is dropped. */
        const char *id = put ? put : del;
        if (del && !run_json_exists(ix->root, del))
            st = delete_rows(ix, del, err);
        else if (put_locked(ix, id, &e) != KL_OK) {
            if (e.status == KL_EIO && strstr(e.msg, "runs index"))
                st = (*err = e).status;
            else
                fprintf(stderr, "kiln runs: warning: %s (left out of the index)\n", e.msg);
            delete_rows(ix, id, NULL);
        }
        (*changed)++;
    }
    if (!begun)
        return st;
    if (st == KL_OK)
        return exec(ix, "COMMIT", err);
    exec(ix, "ROLLBACK", NULL);
    return st;
}

kl_status kl_runs_index_sync(kl_runs_index *ix, int *changed, kl_error *err)
{
    seen_list disk = {0}, rows = {0};
    *changed = 0;
    kl_status st = scan(ix->root, &disk, err);
    if (st == KL_OK)
        st = indexed(ix, &rows, err);
    if (st == KL_OK) {
        if (disk.n)
            qsort(disk.v, disk.n, sizeof *disk.v, seen_cmp);
        if (rows.n)
            qsort(rows.v, rows.n, sizeof *rows.v, seen_cmp);
        st = apply(ix, &disk, &rows, changed, err);
    }
    seen_free(&disk);
    seen_free(&rows);
    return st;
}
