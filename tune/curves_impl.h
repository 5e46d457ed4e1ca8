/* The loaded table of learning curves (include/kiln/simulate.h), private to tune/: read by
 * tune/curves.c, replayed by tune/simulate.c. */
#ifndef KILN_CURVES_IMPL_H
#define KILN_CURVES_IMPL_H

#include <stdint.h>

#include "kiln/simulate.h"

struct kl_curves {
    int64_t n;          /* trials */
    char *labels;       /* every label, NUL-terminated, back to back */
    int64_t *label_off; /* [n]: trial i's label is labels + label_off[i] */
    int32_t *epochs;    /* [n] */
    int64_t *off;       /* [n]: trial i's epoch t is at off[i] + t - 1 */
    double *value;      /* [rows] */
    double *seconds;    /* [rows], or NULL: every epoch costs 1 */
    /* The other columns (a tabulated configuration: kl_simulate_sweep): their names and each
     * trial's cells from its first row, [n * ncols]. */
    int ncols;
    char **col_name;
    int64_t *col_varies; /* [ncols]: the first line where a trial's cell differs from its first
                            row's, 0: none */
    char **cell;
    int64_t cap_cells; /* slots in cell (NULL beyond the trials read) */
};

/* tune/sim_table.c: the table's configurations matched to the sweep's parameters (x: each
 * tabulated trial's coordinates, [n][nparams]: numbers in [0, 1] across their range, log space
 * for log distributions; a listed value's index, -1 when not among the sweep's values). */
typedef struct kl__sim_table {
    const kl_sweep *sw;
    int64_t n;
    double *x;
} kl__sim_table;

kl_status kl__sim_table_new(const kl_sweep *sw, const kl_curves *c, const char *name,
                            kl__sim_table **out, kl_error *err);
void kl__sim_table_free(kl__sim_table *t);
/* The tabulated trial nearest to overrides ov (trial's, for messages): listed values equal,
 * the smallest sum of squared differences of the numbers, the first row on ties; -1 (err
 * set) when no row has the listed values. */
int64_t kl__sim_table_snap(const kl__sim_table *t, char *const *ov, int64_t trial, kl_error *err);

#endif
