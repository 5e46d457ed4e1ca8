/* Curve tables for scheduler simulation (include/kiln/simulate.h): reads a CSV of (trial, t,
 * value[, seconds]) rows into one flat array of values per trial, checking that every trial's
 * rows cover t = 1, 2, ... exactly once. tune/simulate.c replays them; `kiln tune --simulate`
 * and bench/bench_sched.c load them. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/file.h"
#include "tune/curves_impl.h"

/* One CSV record split into NUL-terminated fields in buf. */
typedef struct csv_rec {
    char *buf;
    size_t cap;
    size_t *off; /* field i is buf + off[i] */
    int n, fcap;
} csv_rec;

/* Growable arrays of the rows as read, before they are placed by trial and t. */
typedef struct rows {
    int32_t *trial, *t;
    double *value, *seconds;
    int64_t *line;
    int64_t n, cap;
} rows;

/* Labels and the map from a label to its trial (open addressing, FNV-1a). */
typedef struct labels {
    char *text;
    size_t len, cap;
    int64_t *off;
    int64_t n, cap_n;
    int64_t *slot; /* trial + 1, 0: empty */
    uint64_t nslots;
} labels;

static bool grow(void **p, int64_t *cap, int64_t need, size_t size)
{
    if (need <= *cap)
        return true;
    int64_t c = *cap > 0 ? *cap : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, (size_t)c * size);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

static void trim(const char **a, const char **b)
{
    while (*a < *b && (**a == ' ' || **a == '\t'))
        (*a)++;
    while (*b > *a && ((*b)[-1] == ' ' || (*b)[-1] == '\t'))
        (*b)--;
}

/* Reads the record of the line starting at *pp; 1: read, 0: end of input, -1: a bad quote,
 * -2: out of memory. Blank lines are skipped (and counted in *line). */
static int read_record(csv_rec *r, const char **pp, const char *end, int64_t *line)
{
    const char *p = *pp, *eol;
    for (;;) {
        if (p >= end)
            return 0;
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        (*line)++;
        const char *e = eol;
        if (e > p && e[-1] == '\r')
            e--;
        const char *a = p, *b = e;
        trim(&a, &b);
        if (a < b)
            break;
        p = eol < end ? eol + 1 : end;
    }
    const char *e = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
    size_t need = 2 * (size_t)(e - p) + 2;
    if (need > r->cap) {
        char *buf = realloc(r->buf, need);
        if (!buf)
            return -2;
        r->buf = buf;
        r->cap = need;
    }
    *pp = eol < end ? eol + 1 : end;
    r->n = 0;
    size_t w = 0;
    const char *q = p;
    for (;;) {
        if (r->n == r->fcap) {
            int fcap = r->fcap ? 2 * r->fcap : 16;
            size_t *off = realloc(r->off, (size_t)fcap * sizeof *off);
            if (!off)
                return -2;
            r->off = off;
            r->fcap = fcap;
        }
        r->off[r->n++] = w;
        const char *a = q;
        while (a < e && (*a == ' ' || *a == '\t'))
            a++;
        if (a < e && *a == '"') {
            for (a++;; a++) {
                if (a >= e)
                    return -1; /* unterminated (quoted line breaks are not supported) */
                if (*a == '"') {
                    if (a + 1 < e && a[1] == '"') {
                        r->buf[w++] = '"';
                        a++;
                        continue;
                    }
                    break;
                }
                r->buf[w++] = *a;
            }
            a++;
            while (a < e && (*a == ' ' || *a == '\t'))
                a++;
            if (a < e && *a != ',')
                return -1;
            q = a;
        } else {
            const char *b = q < e ? memchr(q, ',', (size_t)(e - q)) : NULL;
            if (!b)
                b = e;
            const char *s = q, *t = b;
            trim(&s, &t);
            memcpy(r->buf + w, s, (size_t)(t - s));
            w += (size_t)(t - s);
            q = b;
        }
        r->buf[w++] = '\0';
        if (q >= e)
            break;
        q++; /* the comma */
    }
    return 1;
}

static const char *field(const csv_rec *r, int i)
{
    return r->buf + r->off[i];
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool labels_rehash(labels *L, uint64_t nslots)
{
    int64_t *slot = calloc(nslots, sizeof *slot);
    if (!slot)
        return false;
    for (int64_t i = 0; i < L->n; i++) {
        uint64_t h = fnv1a(L->text + L->off[i]) & (nslots - 1);
        while (slot[h])
            h = (h + 1) & (nslots - 1);
        slot[h] = i + 1;
    }
    free(L->slot);
    L->slot = slot;
    L->nslots = nslots;
    return true;
}

/* The trial of a label, adding it when new; -1: out of memory. */
static int64_t labels_find(labels *L, const char *s)
{
    if ((uint64_t)(L->n + 1) * 2 > L->nslots && !labels_rehash(L, L->nslots ? 2 * L->nslots : 1024))
        return -1;
    uint64_t h = fnv1a(s) & (L->nslots - 1);
    for (; L->slot[h]; h = (h + 1) & (L->nslots - 1)) {
        if (strcmp(L->text + L->off[L->slot[h] - 1], s) == 0)
            return L->slot[h] - 1;
    }
    size_t len = strlen(s) + 1;
    if (L->len + len > L->cap) {
        size_t cap = L->cap ? L->cap : 4096;
        while (cap < L->len + len)
            cap *= 2;
        char *text = realloc(L->text, cap);
        if (!text)
            return -1;
        L->text = text;
        L->cap = cap;
    }
    if (!grow((void **)&L->off, &L->cap_n, L->n + 1, sizeof *L->off))
        return -1;
    memcpy(L->text + L->len, s, len);
    L->off[L->n] = (int64_t)L->len;
    L->len += len;
    L->slot[h] = L->n + 1;
    return L->n++;
}

static bool rows_push(rows *R, bool with_seconds)
{
    if (R->n < R->cap)
        return true;
    size_t cap = R->cap > 0 ? 2 * (size_t)R->cap : 4096;
    void *p;
    if (!(p = realloc(R->trial, cap * sizeof *R->trial)))
        return false;
    R->trial = p;
    if (!(p = realloc(R->t, cap * sizeof *R->t)))
        return false;
    R->t = p;
    if (!(p = realloc(R->value, cap * sizeof *R->value)))
        return false;
    R->value = p;
    if (!(p = realloc(R->line, cap * sizeof *R->line)))
        return false;
    R->line = p;
    if (with_seconds) {
        if (!(p = realloc(R->seconds, cap * sizeof *R->seconds)))
            return false;
        R->seconds = p;
    }
    R->cap = (int64_t)cap;
    return true;
}

typedef struct columns {
    int trial, t, value, seconds, n;
} columns;

static kl_status read_header(const csv_rec *r, const char *name, columns *c, kl_error *err)
{
    c->trial = c->t = c->value = c->seconds = -1;
    c->n = r->n;
    for (int i = 0; i < r->n; i++) {
        const char *f = field(r, i);
        int *slot = strcmp(f, "trial") == 0     ? &c->trial
                    : strcmp(f, "t") == 0       ? &c->t
                    : strcmp(f, "value") == 0   ? &c->value
                    : strcmp(f, "seconds") == 0 ? &c->seconds
                                                : NULL;
        if (!slot)
            continue;
        if (*slot >= 0)
            return kl_error_set(err, KL_EFORMAT, "%s:1: the header names column '%s' twice", name,
                                f);
        *slot = i;
    }
    const char *missing = c->trial < 0 ? "trial" : c->t < 0 ? "t" : c->value < 0 ? "value" : NULL;
    if (missing)
        return kl_error_set(err, KL_EFORMAT,
                            "%s:1: the header has no '%s' column; a curve table's header is "
                            "trial,t,value (and optionally seconds)",
                            name, missing);
    return KL_OK;
}

static kl_status parse_row(const csv_rec *r, const columns *c, const char *name, int64_t line,
                           int32_t *t, double *value, double *seconds, kl_error *err)
{
    if (r->n < c->n)
        return kl_error_set(err, KL_EFORMAT, "%s:%lld: %d fields, but the header has %d", name,
                            (long long)line, r->n, c->n);
    const char *f = field(r, c->t);
    char *e;
    errno = 0;
    long v = strtol(f, &e, 10);
    if (*f == '\0' || *e != '\0' || errno || v < 1 || v > INT_MAX)
        return kl_error_set(err, KL_EFORMAT,
                            "%s:%lld: t is '%s'; it must be an epoch count 1, 2, ...", name,
                            (long long)line, f);
    *t = (int32_t)v;
    f = field(r, c->value);
    *value = strtod(f, &e);
    if (*f == '\0' || *e != '\0')
        return kl_error_set(err, KL_EFORMAT,
                            "%s:%lld: value is '%s', not a number (write nan for a missing one)",
                            name, (long long)line, f);
    if (c->seconds >= 0) {
        f = field(r, c->seconds);
        *seconds = strtod(f, &e);
        if (*f == '\0' || *e != '\0' || !(*seconds >= 0.0 && isfinite(*seconds)))
            return kl_error_set(err, KL_EFORMAT,
                                "%s:%lld: seconds is '%s'; it must be a finite number >= 0", name,
                                (long long)line, f);
    }
    return KL_OK;
}

/* Places every row at its trial's epoch, refusing duplicates and gaps. */
static kl_status place_rows(kl_curves *c, const rows *R, const char *name, kl_error *err)
{
    kl_status st = KL_ENOMEM;
    int64_t total = 0;
    int64_t *first_line = NULL;
    for (int64_t i = 0; i < R->n; i++) {
        if (R->t[i] > c->epochs[R->trial[i]])
            c->epochs[R->trial[i]] = R->t[i];
    }
    for (int64_t i = 0; i < c->n; i++) {
        c->off[i] = total;
        total += c->epochs[i];
    }
    c->value = malloc((size_t)total * sizeof *c->value);
    first_line = calloc((size_t)total, sizeof *first_line);
    if (R->seconds)
        c->seconds = malloc((size_t)total * sizeof *c->seconds);
    if (!c->value || !first_line || (R->seconds && !c->seconds)) {
        kl_error_set(err, KL_ENOMEM, "%s: out of memory for %lld rows", name, (long long)total);
        goto done;
    }
    st = KL_EFORMAT;
    for (int64_t i = 0; i < R->n; i++) {
        int64_t k = c->off[R->trial[i]] + R->t[i] - 1;
        if (first_line[k]) {
            kl_error_set(
                err, st,
                "%s:%lld: trial '%s' has a second row for t = %d (the first is on line %lld)", name,
                (long long)R->line[i], c->labels + c->label_off[R->trial[i]], R->t[i],
                (long long)first_line[k]);
            goto done;
        }
        first_line[k] = R->line[i];
        c->value[k] = R->value[i];
        if (c->seconds)
            c->seconds[k] = R->seconds[i];
    }
    for (int64_t i = 0; i < c->n; i++) {
        for (int32_t t = 1; t <= c->epochs[i]; t++) {
            if (!first_line[c->off[i] + t - 1]) {
                kl_error_set(err, st,
                             "%s: trial '%s' has no row for t = %d but has one for t = %d; rows "
                             "must cover t = 1, 2, ... without gaps",
                             name, c->labels + c->label_off[i], t, c->epochs[i]);
                goto done;
            }
        }
    }
    st = KL_OK;
done:
    free(first_line);
    return st;
}

/* The columns besides trial, t, value and seconds, by name: a configuration per trial. */
static bool config_columns(kl_curves *c, const csv_rec *r, const columns *col)
{
    for (int i = 0; i < r->n; i++) {
        if (i == col->trial || i == col->t || i == col->value || i == col->seconds)
            continue;
        char **names = realloc(c->col_name, (size_t)(c->ncols + 1) * sizeof *names);
        if (!names)
            return false;
        c->col_name = names;
        int64_t *varies = realloc(c->col_varies, (size_t)(c->ncols + 1) * sizeof *varies);
        if (!varies)
            return false;
        c->col_varies = varies;
        varies[c->ncols] = 0;
        if (!(names[c->ncols] = strdup(r->buf + r->off[i])))
            return false;
        c->ncols++;
    }
    return true;
}

/* Row `line` of trial `trial`: its configuration cells are kept when it is the trial's first
 * row, else must equal them. */
static kl_status config_cells(kl_curves *c, const csv_rec *r, const columns *col, int64_t trial,
                              bool first, const char *name, int64_t line, kl_error *err)
{
    if (c->ncols == 0)
        return KL_OK;
    if (first && (trial + 1) * c->ncols > c->cap_cells) {
        int64_t n = c->cap_cells ? 2 * c->cap_cells : 256 * (int64_t)c->ncols;
        char **cell = realloc(c->cell, (size_t)n * sizeof *cell);
        if (!cell)
            return kl_error_set(err, KL_ENOMEM, "%s: out of memory reading the table", name);
        memset(cell + c->cap_cells, 0, (size_t)(n - c->cap_cells) * sizeof *cell);
        c->cell = cell;
        c->cap_cells = n;
    }
    for (int k = 0, i = 0; i < r->n; i++) {
        if (i == col->trial || i == col->t || i == col->value || i == col->seconds)
            continue;
        char **slot = &c->cell[trial * c->ncols + k++];
        const char *f = r->buf + r->off[i];
        if (first && !(*slot = strdup(f)))
            return kl_error_set(err, KL_ENOMEM, "%s: out of memory reading the table", name);
        /* Only a column that is a tabulated parameter must be constant: kl_simulate_sweep
         * refuses it then; for other uses other columns are ignored. */
        if (!first && !c->col_varies[k - 1] && strcmp(*slot, f) != 0)
            c->col_varies[k - 1] = line;
    }
    return KL_OK;
}

static void rows_free(rows *R)
{
    free(R->trial);
    free(R->t);
    free(R->value);
    free(R->seconds);
    free(R->line);
}

kl_curves *kl_curves_parse(const char *text, size_t len, const char *name, kl_error *err)
{
    kl_status st = KL_ENOMEM;
    csv_rec rec = {0};
    rows R = {0};
    labels L = {0};
    columns col;
    kl_curves *c = calloc(1, sizeof *c);
    const char *p = text, *end = text + len;
    int64_t line = 0;
    if (!c)
        goto oom;
    int got = read_record(&rec, &p, end, &line);
    if (got == 0) {
        st = kl_error_set(err, KL_EFORMAT,
                          "%s: the file is empty; a curve table starts with "
                          "the header trial,t,value",
                          name);
        goto fail;
    }
    if (got == -2)
        goto oom;
    if (got < 0) {
        st = kl_error_set(err, KL_EFORMAT, "%s:%lld: a quoted field is not closed", name,
                          (long long)line);
        goto fail;
    }
    if ((st = read_header(&rec, name, &col, err)) != KL_OK)
        goto fail;
    if (!config_columns(c, &rec, &col))
        goto oom;
    while ((got = read_record(&rec, &p, end, &line)) != 0) {
        if (got == -2)
            goto oom;
        if (got < 0) {
            st = kl_error_set(err, KL_EFORMAT, "%s:%lld: a quoted field is not closed", name,
                              (long long)line);
            goto fail;
        }
        int32_t t = 0;
        double value = 0.0, seconds = 1.0;
        if ((st = parse_row(&rec, &col, name, line, &t, &value, &seconds, err)) != KL_OK)
            goto fail;
        int64_t known = L.n, trial = labels_find(&L, field(&rec, col.trial));
        if (trial < 0 || !rows_push(&R, col.seconds >= 0))
            goto oom;
        if ((st = config_cells(c, &rec, &col, trial, trial == known, name, line, err)) != KL_OK)
            goto fail;
        if (trial >= INT32_MAX - 1) {
            st = kl_error_set(err, KL_EFORMAT, "%s:%lld: more than %d trials", name,
                              (long long)line, INT32_MAX - 2);
            goto fail;
        }
        R.trial[R.n] = (int32_t)trial;
        R.t[R.n] = t;
        R.value[R.n] = value;
        R.line[R.n] = line;
        if (R.seconds)
            R.seconds[R.n] = seconds;
        R.n++;
    }
    if (R.n == 0) {
        st = kl_error_set(err, KL_EFORMAT, "%s: the table has a header but no rows", name);
        goto fail;
    }
    c->n = L.n;
    c->labels = L.text;
    c->label_off = L.off;
    L.text = NULL;
    L.off = NULL;
    c->epochs = calloc((size_t)c->n, sizeof *c->epochs);
    c->off = calloc((size_t)c->n, sizeof *c->off);
    if (!c->epochs || !c->off)
        goto oom;
    if ((st = place_rows(c, &R, name, err)) != KL_OK)
        goto fail;
    free(rec.buf);
    free(rec.off);
    rows_free(&R);
    free(L.slot);
    return c;
oom:
    st = kl_error_set(err, KL_ENOMEM, "%s: out of memory reading the curve table", name);
fail:
    (void)st;
    free(rec.buf);
    free(rec.off);
    rows_free(&R);
    free(L.text);
    free(L.off);
    free(L.slot);
    kl_curves_free(c);
    return NULL;
}

kl_curves *kl_curves_load(const char *path, kl_error *err)
{
    size_t len = 0;
    char *text = kl__file_read(path, "the curve table", &len, err);
    if (!text)
        return NULL;
    kl_curves *c = kl_curves_parse(text, len, path, err);
    free(text);
    return c;
}

void kl_curves_free(kl_curves *c)
{
    if (!c)
        return;
    free(c->labels);
    free(c->label_off);
    free(c->epochs);
    free(c->off);
    free(c->value);
    free(c->seconds);
    for (int k = 0; k < c->ncols; k++)
        free(c->col_name[k]);
    for (int64_t i = 0; c->cell && i < c->cap_cells; i++)
        free(c->cell[i]);
    free(c->col_name);
    free(c->col_varies);
    free(c->cell);
    free(c);
}

int64_t kl_curves_trials(const kl_curves *c)
{
    return c->n;
}

void kl_curves_keep_first(kl_curves *c, int64_t n)
{
    if (n >= 0 && n < c->n)
        c->n = n;
}

const char *kl_curves_label(const kl_curves *c, int64_t trial)
{
    return trial >= 0 && trial < c->n ? c->labels + c->label_off[trial] : NULL;
}

int kl_curves_epochs(const kl_curves *c, int64_t trial)
{
    return trial >= 0 && trial < c->n ? c->epochs[trial] : 0;
}

bool kl_curves_have_seconds(const kl_curves *c)
{
    return c->seconds != NULL;
}
