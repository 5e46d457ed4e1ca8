/* Tabular simulation (kl_simulate_sweep in include/kiln/simulate.h): a curve table whose rows
 * carry their configuration, one column per sweep parameter path, matched to the sweep; each
 * configuration a sampler proposes is snapped to the nearest tabulated one in the sweep's
 * normalised space (log for log_uniform_values, exact for lists). tune/simulate.c calls it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tune/curves_impl.h"

static bool is_list(const kl_sweep_param *p)
{
    return p->dist == KL_DIST_VALUES || p->dist == KL_DIST_GRID;
}

/* A number of a range parameter in [0, 1] across its range (log space for log distributions). */
static double norm(const kl_sweep_param *p, double v)
{
    double lo = p->min, hi = p->max;
    if (p->dist == KL_DIST_LOG_UNIFORM) {
        v = log(v);
        lo = log(lo);
        hi = log(hi);
    }
    return hi > lo ? (v - lo) / (hi - lo) : 0;
}

/* A listed value's index, -1 when the text is none of them; a quoted value also matches its
 * text without the quotes (a CSV cell holds the string itself). */
static int list_index(const kl_sweep_param *p, const char *text)
{
    size_t len = strlen(text);
    for (int k = 0; k < p->nvalues; k++) {
        const char *v = p->values[k];
        size_t n = strlen(v);
        if (!strcmp(v, text) ||
            (n >= 2 && v[0] == '"' && n - 2 == len && !strncmp(v + 1, text, len)))
            return k;
    }
    return -1;
}

bool kl_curves_tabular(const kl_curves *c, const kl_sweep *sw)
{
    for (int j = 0; j < sw->nparams; j++)
        for (int k = 0; sw->params[j].dist != KL_DIST_VALUE && k < c->ncols; k++)
            if (!strcmp(c->col_name[k], sw->params[j].path))
                return true;
    return false;
}

void kl__sim_table_free(kl__sim_table *t)
{
    if (t)
        free(t->x);
    free(t);
}

/* Parameter j's coordinate of tabulated trial i from its cell. */
static kl_status cell_coord(const kl_sweep_param *p, const char *cell, const char *name,
                            const char *label, double *x, kl_error *err)
{
    if (is_list(p)) {
        *x = list_index(p, cell); /* -1: no proposal matches this row */
        return KL_OK;
    }
    char *end;
    double v = strtod(cell, &end);
    if (!*cell || *end || !isfinite(v) || (p->dist == KL_DIST_LOG_UNIFORM && v <= 0))
        return kl_error_set(err, KL_EFORMAT,
                            "%s: trial '%s': %s is '%s', not a %snumber as the sweep's %s "
                            "parameter needs",
                            name, label, p->path, cell,
                            p->dist == KL_DIST_LOG_UNIFORM ? "positive " : "", p->path);
    *x = norm(p, v);
    return KL_OK;
}

kl_status kl__sim_table_new(const kl_sweep *sw, const kl_curves *c, const char *name,
                            kl__sim_table **out, kl_error *err)
{
    *out = NULL;
    kl__sim_table *t = calloc(1, sizeof *t);
    if (!t || !(t->x = calloc((size_t)c->n * (size_t)sw->nparams + 1, sizeof *t->x))) {
        kl__sim_table_free(t);
        return kl_error_set(err, KL_ENOMEM, "%s: out of memory matching the table", name);
    }
    t->sw = sw;
    t->n = c->n;
    kl_status st = KL_OK;
    for (int j = 0; st == KL_OK && j < sw->nparams; j++) {
        const kl_sweep_param *p = &sw->params[j];
        if (p->dist == KL_DIST_VALUE)
            continue;
        int col = 0;
        while (col < c->ncols && strcmp(c->col_name[col], p->path) != 0)
            col++;
        if (col == c->ncols) {
            st = kl_error_set(err, KL_EFORMAT,
                              "%s: the table's rows carry configurations, but it has no column "
                              "%s; a tabulated configuration needs a column for each of the "
                              "sweep's parameters (value parameters excepted)",
                              name, p->path);
            break;
        }
        if (c->col_varies[col])
            st = kl_error_set(err, KL_EFORMAT,
                              "%s:%lld: %s differs from the trial's first row; a trial's "
                              "configuration is the same on all its rows",
                              name, (long long)c->col_varies[col], p->path);
        for (int64_t i = 0; st == KL_OK && i < c->n; i++)
            st = cell_coord(p, c->cell[i * c->ncols + col], name, c->labels + c->label_off[i],
                            &t->x[i * sw->nparams + j], err);
    }
    if (st != KL_OK) {
        kl__sim_table_free(t);
        return st;
    }
    *out = t;
    return KL_OK;
}

int64_t kl__sim_table_snap(const kl__sim_table *t, char *const *ov, int64_t trial, kl_error *err)
{
    const kl_sweep *sw = t->sw;
    double x[64];
    int np = sw->nparams < 64 ? sw->nparams : 64;
    if (sw->nparams > 64) {
        kl_error_set(err, KL_EUNSUPPORTED,
                     "simulate: a tabulated sweep of %d parameters; at most 64 are supported",
                     sw->nparams);
        return -1;
    }
    for (int j = 0; j < np; j++) {
        const kl_sweep_param *p = &sw->params[j];
        const char *v = strchr(ov[j], '=') + 1;
        x[j] = p->dist == KL_DIST_VALUE ? 0
               : is_list(p)             ? list_index(p, v)
                                        : norm(p, strtod(v, NULL));
    }
    int64_t best = -1;
    double best_d = INFINITY;
    for (int64_t i = 0; i < t->n; i++) {
        const double *row = &t->x[i * np];
        double d = 0;
        for (int j = 0; j < np && d < INFINITY; j++) {
            const kl_sweep_param *p = &sw->params[j];
            if (p->dist == KL_DIST_VALUE)
                continue;
            if (is_list(p))
                d = row[j] == x[j] ? d : INFINITY;
            else
                d += (row[j] - x[j]) * (row[j] - x[j]);
        }
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    if (best < 0) {
        size_t len = 0;
        char what[256] = "";
        for (int j = 0; j < np; j++)
            if (is_list(&sw->params[j]) && len < sizeof what - 1)
                len +=
                    (size_t)snprintf(what + len, sizeof what - len, "%s%s", len ? ", " : "", ov[j]);
        kl_error_set(err, KL_EINVAL,
                     "simulate: trial %lld's configuration matches no row of the table: no row "
                     "has %s; tabulate every combination of the listed values the sweep can "
                     "draw",
                     (long long)trial, what);
    }
    return best;
}
