/* kl__par: the one thread pool that kiln's own CPU loops (the kernels of ops/cpu/ that are not
 * BLAS calls, the optimizer update, the gradient norm) run on. A graph owns one, sized by
 * kl_graph_set_threads (train.threads); the step borrows its graph's. BLAS keeps its own threads
 * for GEMMs (docs/config.md, train.threads, says how the two share the cores).
 *
 * Determinism: kl__par_for hands out [0, n) in contiguous ranges, and kernels only split work
 * whose results do not depend on where it is cut or which thread runs a piece
 * (each output written by one range; reductions partitioned over their outputs, or summed in
 * KL__PAR_SLICES fixed slices combined in slice order). So results are bit-identical for every
 * thread count, 1 included; tests/unit/test_par.c checks it kernel by kernel. */
#ifndef KILN_OPS_PAR_H
#define KILN_OPS_PAR_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/optim.h"
#include "kiln/status.h"

typedef struct kl__par kl__par;

/* The body of a parallel loop: handles [lo, hi) of the loop's range. */
typedef void (*kl__par_fn)(void *ctx, int64_t lo, int64_t hi);

/* Reductions that must not depend on the thread count cut their range into this many fixed
 * slices (kl__par_slice), sum each serially and add the slices' sums in slice order. */
#define KL__PAR_SLICES 64

/* A pool of threads - 1 workers (the caller is the last thread). threads <= 1 gives NULL with
 * KL_OK, which every function below accepts as "run on the calling thread". */
kl_status kl__par_new(int threads, kl__par **out, kl_error *err);
void kl__par_free(kl__par *p);
/* Threads, the caller included: 1 for NULL. */
int kl__par_threads(const kl__par *p);

/* Runs fn over [0, n), cut into ranges whose edges are multiples of grain (so a range holds
 * whole rows of grain elements): a fixed list of ranges for a given n, grain and thread count,
 * which the caller and the workers claim one by one. Loops of fewer than min_work elements, or
 * of one grain, run on the caller alone: waking workers costs more. Returns when every range is
 * done. fn must give the same results however [0, n) is cut and whichever thread runs a range.
 * Not reentrant: fn must not call kl__par_for on the same pool, and only one thread may use a
 * pool at a time. */
void kl__par_for(kl__par *p, int64_t n, int64_t grain, int64_t min_work, kl__par_fn fn, void *ctx);

/* The sum of x[i]^2 over [0, n) in double, in KL__PAR_SLICES slices summed in slice order: the
 * same bits for every thread count. */
double kl__par_sum_sq(kl__par *p, const float *x, size_t n);
/* x[i] *= s over [0, n). */
void kl__par_scale(kl__par *p, float *x, size_t n, float s);

/* The optimizer's update and the gradient clip (ops/optim.c) on a pool: kl_optim_step and
 * kl_clip_grad_norm are these with NULL, and give the same bits. */
void kl__optim_step(kl_optim *o, kl__par *par, float *params, const float *grads, float lr,
                    const kl_optim_segment *segs, int nsegs);
float kl__clip_grad_norm(kl__par *par, float *grads, size_t n, float max_norm);

#endif
