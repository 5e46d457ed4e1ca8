/* The batch cap under a latency target: additive increase, multiplicative decrease against the
 * p99 of each window of requests (serve/sched/slo.h). Called by serve/sched/batch.c. */
#include <stdlib.h>
#include <string.h>

#include "serve/sched/slo.h"

void kl__slo_init(kl__slo *s, double target_ms, int max)
{
    memset(s, 0, sizeof *s);
    s->target_s = target_ms > 0 ? target_ms * 1e-3 : 0;
    s->max = max > 0 ? max : 1;
    s->cap = s->target_s > 0 && s->max > 1 ? s->max / 2 : s->max;
}

static int by_value(const void *pa, const void *pb)
{
    double a = *(const double *)pa, b = *(const double *)pb;
    return a < b ? -1 : a > b;
}

int kl__slo_observe(kl__slo *s, double seconds)
{
    if (s->target_s <= 0)
        return s->cap;
    s->lat[s->n++] = seconds;
    if (s->n < KL__SLO_WINDOW)
        return s->cap;
    qsort(s->lat, KL__SLO_WINDOW, sizeof s->lat[0], by_value);
    double p99 = s->lat[KL__SLO_WINDOW * 99 / 100];
    s->n = 0;
    if (p99 > s->target_s && s->cap > 1) {
        s->cap = s->cap * 3 / 4 > 0 ? s->cap * 3 / 4 : 1;
        s->lowered++;
    } else if (p99 <= s->target_s && s->cap < s->max) {
        s->cap++;
        s->raised++;
    }
    return s->cap;
}
