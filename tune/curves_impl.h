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
};

#endif
