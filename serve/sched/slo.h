/* Private to serve/: the batch cap under a latency target (a model's latency_slo_ms), adjusted
 * by additive increase and multiplicative decrease as Clipper does: while the p99 of the recent
 * model calls' durations stays under the target the cap grows by one sample per window, and when
 * it passes the target the cap shrinks by a quarter. Model calls, not the requests' whole time
 * in the scheduler: under overload the queue wait passes any target whatever the batch, and a
 * controller fed with it shrinks batches exactly when they are needed most (at 256 connections
 * on 2 cores a 20 ms target drove the cap to 1). serve/sched/batch.c feeds it under the
 * version's lock; the unit test drives it with made-up durations. */
#ifndef KILN_SERVE_SLO_H
#define KILN_SERVE_SLO_H

#include <stdint.h>

/* Model calls per adjustment: the p99 is taken over the last window's durations. */
#define KL__SLO_WINDOW 128

typedef struct kl__slo {
    double target_s; /* 0: no target, the cap stays at max */
    int max;         /* max_batch_size */
    int cap;         /* samples a batch may take now, 1..max */
    int n;           /* latencies in lat */
    double lat[KL__SLO_WINDOW];
    uint64_t raised, lowered; /* adjustments so far, for the stats */
} kl__slo;

/* A controller for target_ms (0: none) and batches of up to max samples; it starts at half of
 * max (at least 1), so that a start under load neither overshoots nor waits long to batch. */
void kl__slo_init(kl__slo *s, double target_ms, int max);
/* Adds one model call's seconds; after every KL__SLO_WINDOW of them the cap moves. Returns the
 * cap. */
int kl__slo_observe(kl__slo *s, double seconds);

#endif
