/* Private to serve/: the scheduler (serve/sched/batch.c). A version's request queue and its
 * instance threads, which take dynamic batches from it. The repository starts and stops them;
 * the inference route and pipelines queue jobs. */
#ifndef KILN_SERVE_SCHED_H
#define KILN_SERVE_SCHED_H

#include "serve/serve_impl.h"

/* Starts the version's instance threads. */
kl_status kl__version_start(kl__version *v, kl_error *err);
/* Stops them after the queue is empty. */
void kl__version_stop(kl__version *v);
/* Queues a job; KL_EFULL when the queue is full. */
kl_status kl__version_submit(kl__version *v, kl__job *job);

#endif
