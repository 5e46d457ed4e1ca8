/* Reading the runs index: --where conditions (FIELD OP VALUE) parsed into kl_runs_cond and turned
 * into SQL with bound values, listings, a RUN argument resolved to its id, and tags. */
#define _XOPEN_SOURCE 700 /* realpath, nftw */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "track/track_impl.h"

/* The run columns a condition may name as a bare field. */
static const char *const run_columns[] = {"status", "kind",  "name",      "start",
                                          "end",    "sweep", "git_commit"};

static bool is_run_column(const char *s)
{
    for (size_t i = 0; i < sizeof run_columns / sizeof *run_columns; i++)
        if (!strcmp(s, run_columns[i]))
            return true;
    return false;
}

static bool key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == '-';
}

/* FIELD at s: params.KEY, metrics.NAME, best.NAME, tags.KEY or a run column. */
static kl_status parse_field(const char *opt, const char *expr, const char *s, size_t n,
                             kl_runs_cond *c, kl_error *err)
{
    static const char *const tables[] = {"params", "metrics", "best", "tags"};
    for (size_t i = 0; i < sizeof tables / sizeof *tables; i++) {
        size_t t = strlen(tables[i]);
        if (n > t + 1 && !strncmp(s, tables[i], t) && s[t] == '.') {
            if (n - t - 1 >= sizeof c->key)
                return kl_error_set(err, KL_EINVAL, "%s '%s': the key is too long", opt, expr);
            snprintf(c->table, sizeof c->table, "%s", tables[i]);
            memcpy(c->key, s + t + 1, n - t - 1);
            c->key[n - t - 1] = '\0';
            return KL_OK;
        }
    }
    if (n < sizeof c->key) {
        memcpy(c->key, s, n);
        c->key[n] = '\0';
        if (is_run_column(c->key)) {
            snprintf(c->table, sizeof c->table, "run");
            return KL_OK;
        }
    }
    return kl_error_set(err, KL_EINVAL,
                        "%s '%s': unknown field '%.*s': use params.KEY, metrics.NAME (final "
                        "value), best.NAME, tags.KEY, status, kind, name, start, end, sweep or "
                        "git_commit",
                        opt, expr, (int)n, s);
}

kl_status kl_runs_cond_parse(const char *expr, kl_runs_cond *c, kl_error *err)
{
    memset(c, 0, sizeof *c);
    const char *s = expr;
    while (isspace((unsigned char)*s))
        s++;
    const char *f = s;
    while (key_char(*s))
        s++;
    if (s == f)
        return kl_error_set(err, KL_EINVAL,
                            "--where '%s': expected a field at column %d, e.g. "
                            "'params.optimizer.lr<1e-3'",
                            expr, (int)(f - expr) + 1);
    kl_status st = parse_field("--where", expr, f, (size_t)(s - f), c, err);
    if (st != KL_OK)
        return st;
    while (isspace((unsigned char)*s))
        s++;
    static const struct {
        const char *text;
        kl_runs_op op;
    } ops[] = {{"<=", KL_RUNS_LE}, {">=", KL_RUNS_GE}, {"!=", KL_RUNS_NE}, {"==", KL_RUNS_EQ},
               {"<", KL_RUNS_LT},  {">", KL_RUNS_GT},  {"=", KL_RUNS_EQ}};
    size_t k = 0;
    for (; k < sizeof ops / sizeof *ops; k++)
        if (!strncmp(s, ops[k].text, strlen(ops[k].text)))
            break;
    if (k == sizeof ops / sizeof *ops)
        return kl_error_set(err, KL_EINVAL,
                            "--where '%s': expected a comparison (<, <=, >, >=, =, !=) at column "
                            "%d",
                            expr, (int)(s - expr) + 1);
    c->op = ops[k].op;
    s += strlen(ops[k].text);
    while (isspace((unsigned char)*s))
        s++;
    const char *v = s;
    size_t n = strlen(v);
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    if (n >= 2 && (v[0] == '\'' || v[0] == '"') && v[n - 1] == v[0]) {
        v++;
        n -= 2;
    } else if (n == 0) {
        return kl_error_set(err, KL_EINVAL, "--where '%s': expected a value at column %d", expr,
                            (int)(s - expr) + 1);
    } else if (strchr("<>=!", v[0])) {
        return kl_error_set(err, KL_EINVAL, "--where '%s': unexpected '%c' at column %d", expr,
                            v[0], (int)(s - expr) + 1);
    } else {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (end == v + n && !errno && isfinite(d)) {
            c->numeric = true;
            c->num = d;
        }
    }
    if (n >= sizeof c->text)
        return kl_error_set(err, KL_EINVAL, "--where '%s': the value is too long", expr);
    memcpy(c->text, v, n);
    c->text[n] = '\0';
    if (!c->numeric && (!strcmp(c->table, "metrics") || !strcmp(c->table, "best")))
        return kl_error_set(err, KL_EINVAL, "--where '%s': %s.%s is a number; '%s' is not", expr,
                            c->table, c->key, c->text);
    return KL_OK;
}

kl_status kl_runs_sort_parse(const char *expr, kl_runs_cond *c, bool *desc, kl_error *err)
{
    memset(c, 0, sizeof *c);
    *desc = expr[0] == '-';
    const char *s = expr + (*desc ? 1 : 0);
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!key_char(s[i]))
            return kl_error_set(err, KL_EINVAL, "--sort '%s': unexpected '%c' at column %d", expr,
                                s[i], (int)(i + (*desc ? 2 : 1)));
    if (n == 0)
        return kl_error_set(err, KL_EINVAL, "--sort '%s': which field?", expr);
    return parse_field("--sort", expr, s, n, c, err);
}

/* The SQL value of a field for run r.id; text columns where want_text. */
static void field_sql(const kl_runs_cond *c, bool want_text, char *buf, size_t n, int param)
{
    if (!strcmp(c->table, "params"))
        snprintf(buf, n, "(SELECT %s FROM params WHERE run=r.id AND key=?%d)",
                 want_text ? "text" : "num", param);
    else if (!strcmp(c->table, "metrics") || !strcmp(c->table, "best"))
        snprintf(buf, n, "(SELECT %s FROM metrics WHERE run=r.id AND key=?%d)",
                 !strcmp(c->table, "best") ? "best" : "final", param);
    else if (!strcmp(c->table, "tags"))
        snprintf(buf, n, "(SELECT value FROM tags WHERE run=r.id AND key=?%d)", param);
    else
        snprintf(buf, n, "r.%.32s", c->key); /* a whitelisted column: is_run_column */
}

/* A params column as a value: the number when it is one, else its text. */
static void column_sql(const kl_runs_cond *c, char *buf, size_t n, int param)
{
    if (!strcmp(c->table, "params"))
        snprintf(buf, n, "(SELECT COALESCE(num, text) FROM params WHERE run=r.id AND key=?%d)",
                 param);
    else
        field_sql(c, true, buf, n, param);
}

typedef struct sqlbuf {
    char *s;
    size_t len;
    FILE *f;
} sqlbuf;

static const char *op_sql(kl_runs_op op)
{
    static const char *const t[] = {"<", "<=", ">", ">=", "=", "!="};
    return t[op];
}

kl_status kl_runs_index_list(kl_runs_index *ix, const kl_runs_cond *conds, int nconds,
                             const kl_runs_cond *sort, bool desc, const kl_runs_cond *cols,
                             int ncols, kl_runs_row_fn fn, void *ctx, kl_error *err)
{
    sqlbuf q = {0};
    if (!(q.f = open_memstream(&q.s, &q.len)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    /* Parameters: ?1.. the columns' keys, then each condition's key and value, then sort's. */
    int p = 1;
    char f[256];
    fprintf(q.f, "SELECT r.id, r.status, r.kind, r.start");
    for (int i = 0; i < ncols; i++, p++) {
        column_sql(&cols[i], f, sizeof f, p);
        fprintf(q.f, ", %s", f);
    }
    fprintf(q.f, " FROM runs r WHERE 1");
    for (int i = 0; i < nconds; i++, p += 2) {
        field_sql(&conds[i], !conds[i].numeric, f, sizeof f, p);
        fprintf(q.f, " AND %s %s ?%d", f, op_sql(conds[i].op), p + 1);
    }
    if (sort) {
        field_sql(sort, !strcmp(sort->table, "tags") || !strcmp(sort->table, "run"), f, sizeof f,
                  p);
        fprintf(q.f, " ORDER BY %s IS NULL, %s %s, r.start, r.id", f, f, desc ? "DESC" : "ASC");
    } else {
        fprintf(q.f, " ORDER BY r.start, r.id");
    }
    fclose(q.f);
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(ix->db, q.s, -1, &s, NULL) != SQLITE_OK) {
        kl_status st = kl_error_set(err, KL_EIO, "runs index: %s", sqlite3_errmsg(ix->db));
        free(q.s);
        return st;
    }
    free(q.s);
    p = 1;
    for (int i = 0; i < ncols; i++)
        sqlite3_bind_text(s, p++, cols[i].key, -1, SQLITE_STATIC);
    for (int i = 0; i < nconds; i++, p += 2) {
        sqlite3_bind_text(s, p, conds[i].key, -1, SQLITE_STATIC);
        if (conds[i].numeric)
            sqlite3_bind_double(s, p + 1, conds[i].num);
        else
            sqlite3_bind_text(s, p + 1, conds[i].text, -1, SQLITE_STATIC);
    }
    if (sort)
        sqlite3_bind_text(s, p, sort->key, -1, SQLITE_STATIC);
    double *values = calloc((size_t)ncols + 1, sizeof *values);
    const char **texts = calloc((size_t)ncols + 1, sizeof *texts);
    kl_status st = values && texts ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
    int rc = SQLITE_DONE;
    while (st == KL_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < ncols; i++) {
            int t = sqlite3_column_type(s, 4 + i);
            values[i] =
                t == SQLITE_INTEGER || t == SQLITE_FLOAT ? sqlite3_column_double(s, 4 + i) : NAN;
            texts[i] = t == SQLITE_TEXT ? (const char *)sqlite3_column_text(s, 4 + i) : NULL;
        }
        kl_runs_row row = {.id = (const char *)sqlite3_column_text(s, 0),
                           .status = (const char *)sqlite3_column_text(s, 1),
                           .kind = (const char *)sqlite3_column_text(s, 2),
                           .start = (const char *)sqlite3_column_text(s, 3),
                           .values = values,
                           .texts = texts};
        if (!fn(ctx, &row))
            break;
    }
    if (st == KL_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        st = kl_error_set(err, KL_EIO, "runs index: %s", sqlite3_errmsg(ix->db));
    free(values);
    free(texts);
    sqlite3_finalize(s);
    return st;
}

/* The ids matching sql with ?1 = run: one is the answer, several are ambiguous. */
static char *match(kl_runs_index *ix, const char *sql, const char *arg, const char *run,
                   kl_error *err, bool *ambiguous)
{
    sqlite3_stmt *s = NULL;
    char *found = NULL;
    char names[256] = "";
    int n = 0;
    if (sqlite3_prepare_v2(ix->db, sql, -1, &s, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(s, 1, arg, -1, SQLITE_STATIC);
    while (sqlite3_step(s) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(s, 0);
        if (n++ == 0)
            found = strdup(id);
        size_t k = strlen(names);
        if (k < sizeof names - 64)
            snprintf(names + k, sizeof names - k, "%s%s", k ? ", " : "", id);
    }
    sqlite3_finalize(s);
    if (n > 1) {
        free(found);
        *ambiguous = true;
        kl_error_set(err, KL_EINVAL, "run '%s' is ambiguous: it names %d runs (%s%s)", run, n,
                     names, n > 4 ? ", ..." : "");
        return NULL;
    }
    return found;
}

char *kl_runs_resolve(kl_runs_index *ix, const char *run, kl_error *err)
{
    bool amb = false;
    char *id = match(ix, "SELECT id FROM runs WHERE id=?1", run, run, err, &amb);
    if (id)
        return id;
    /* A path to a folder under the root. */
    char abs[PATH_MAX], root[PATH_MAX];
    if (realpath(run, abs) && realpath(ix->root, root)) {
        size_t n = strlen(root);
        if (!strncmp(abs, root, n) && abs[n] == '/' &&
            (id = match(ix, "SELECT id FROM runs WHERE id=?1", abs + n + 1, run, err, &amb)))
            return id;
    }
    char suffix[PATH_MAX];
    snprintf(suffix, sizeof suffix, "*/%s", run);
    if ((id = match(ix, "SELECT id FROM runs WHERE id GLOB ?1 ORDER BY id", suffix, run, err,
                    &amb)) ||
        amb)
        return id;
    if ((id = match(ix, "SELECT id FROM runs WHERE name=?1 ORDER BY id", run, run, err, &amb)) ||
        amb)
        return id;
    kl_error_set(err, KL_ENOTFOUND,
                 "no run '%s' under %s (kiln runs list shows them; --root picks another folder)",
                 run, ix->root);
    return NULL;
}

kl_status kl_runs_tag(kl_runs_index *ix, const char *id, const char *key, const char *value,
                      kl_error *err)
{
    char *path = kl__track_path(ix->root, id, "run.json");
    if (!path)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    json_t *doc = kl__track_read_json(path, err);
    kl_status st = doc ? KL_OK : err->status;
    if (st == KL_OK) {
        json_t *tags = json_object_get(doc, "tags");
        if (!json_is_object(tags)) {
            tags = json_object();
            json_object_set_new(doc, "tags", tags);
        }
        if (value)
            json_object_set_new(tags, key, json_string(value));
        else
            json_object_del(tags, key);
        st = kl__track_write_json(doc, path, err);
    }
    json_decref(doc);
    free(path);
    return st == KL_OK ? kl_runs_index_put(ix, id, err) : st;
}
