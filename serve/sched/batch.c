/* A model version's request queue and its instances, threads that each hold their own model
 * copy and take dynamic batches off the queue (serve/README.md, "Dynamic batching"). The
 * repository starts and stops them; the inference route and flows queue jobs. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/sched/sched.h"
#include "serve/sched/slo.h"

typedef struct instance {
    kl__version *v;
    kl_modelfile *mf;
    float *x, *out; /* (max_batch, features), (max_batch, outputs) */
    int32_t *classes;
} instance;

static struct timespec deadline_after(double t_queued, int64_t delay_us)
{
    /* The condition variable waits on CLOCK_MONOTONIC (see kl__version_start). */
    double at = t_queued + (double)delay_us * 1e-6;
    struct timespec ts;
    ts.tv_sec = (time_t)at;
    ts.tv_nsec = (long)((at - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Takes the jobs of the next batch off the queue (the lock held): returns the first, linked by
 * next, with *samples in all; NULL when the version is closing and the queue is empty. */
/* Answers the jobs at the head of the queue that waited past the queue timeout (the lock held):
 * their clients have likely given up, and a queue that long only grows. */
static void expire(kl__version *v)
{
    double now = kl_now();
    while (v->head && now - v->head->t_queued > v->queue_timeout_s) {
        kl__job *j = v->head;
        v->head = j->next;
        if (!v->head)
            v->tail = NULL;
        v->queued--;
        v->queued_samples -= j->n;
        v->stats.fail.count++;
        j->status = KL_EIO;
        j->expired = true;
        snprintf(j->error, sizeof j->error,
                 "waited %.1f s in the queue, more than the %.0f s allowed", now - j->t_queued,
                 v->queue_timeout_s);
        atomic_store(&j->done, true);
        j->done_fn(j);
    }
}

static kl__job *take_batch(kl__version *v, int64_t *samples)
{
    const kl_serve_model_config *c = &v->cfg;
    for (;;) {
        while (!v->head && !v->closing)
            pthread_cond_wait(&v->cv, &v->mu);
        expire(v);
        if (!v->head && v->closing)
            return NULL;
        if (!v->head)
            continue;
        if (!c->dynamic_batching || c->max_queue_delay_us <= 0 || v->closing)
            break;
        /* Wait for the batch to fill, but not past the oldest job's deadline. Another instance
         * may take the jobs meanwhile: then start over. */
        int64_t queued = 0;
        for (kl__job *j = v->head; j && queued < v->slo->cap; j = j->next)
            queued += j->n;
        if (queued >= v->slo->cap)
            break;
        struct timespec dl = deadline_after(v->head->t_queued, c->max_queue_delay_us);
        if (pthread_cond_timedwait(&v->cv, &v->mu, &dl) == ETIMEDOUT && v->head)
            break;
    }
    kl__job *first = v->head, *last = first;
    int64_t n = first->n;
    while (c->dynamic_batching && last->next && n + last->next->n <= v->slo->cap) {
        last = last->next;
        n += last->n;
    }
    v->head = last->next;
    if (!v->head)
        v->tail = NULL;
    last->next = NULL;
    for (kl__job *j = first; j; j = j->next) {
        v->queued--;
        v->queued_samples -= j->n;
    }
    *samples = n;
    return first;
}

static void add_stat(kl__stat *s, double seconds)
{
    s->count++;
    s->ns += (uint64_t)(seconds > 0 ? seconds * 1e9 : 0);
}

static void run_batch(instance *in, kl__job *jobs, int64_t n)
{
    kl__version *v = in->v;
    const kl_modelfile_signature *sig = v->sig;
    bool cls = sig->task == KL_TASK_CLASSIFICATION;
    double t0 = kl_now();
    kl_error err = {0};
    kl_status st;
    atomic_fetch_add(&v->busy, 1);
    if (!jobs->next) { /* one job: straight from and into its buffers */
        st = kl_modelfile_predict(in->mf, jobs->x, jobs->n, jobs->out, cls ? jobs->classes : NULL,
                                  &err);
    } else {
        int64_t row = 0;
        for (kl__job *j = jobs; j; j = j->next) {
            memcpy(in->x + row * sig->features, j->x,
                   (size_t)(j->n * sig->features) * sizeof *in->x);
            row += j->n;
        }
        st = kl_modelfile_predict(in->mf, in->x, n, in->out, cls ? in->classes : NULL, &err);
        row = 0;
        for (kl__job *j = jobs; st == KL_OK && j; j = j->next) {
            memcpy(j->out, in->out + row * sig->outputs,
                   (size_t)(j->n * sig->outputs) * sizeof *j->out);
            if (cls)
                memcpy(j->classes, in->classes + row, (size_t)j->n * sizeof *j->classes);
            row += j->n;
        }
    }
    atomic_fetch_sub(&v->busy, 1);
    double t1 = kl_now();
    pthread_mutex_lock(&v->mu);
    kl__version_stats *s = &v->stats;
    s->executions++;
    if (st == KL_OK)
        s->inferences += (uint64_t)n;
    add_stat(&s->batches[n <= v->cfg.max_batch_size ? n : 0], t1 - t0);
    for (kl__job *j = jobs; j; j = j->next) {
        add_stat(&s->queue, t0 - j->t_queued);
        add_stat(&s->compute, t1 - t0);
    }
    kl__slo_observe(v->slo, t1 - t0);
    s->last_ms = (uint64_t)time(NULL) * 1000;
    pthread_mutex_unlock(&v->mu);
    for (kl__job *j = jobs, *next; j; j = next) {
        next = j->next; /* done_fn may free the job */
        j->status = st;
        if (st != KL_OK)
            snprintf(j->error, sizeof j->error, "%s", err.msg);
        j->t_started = t0;
        j->t_done = t1;
        atomic_store(&j->done, true);
        j->done_fn(j);
    }
}

static void *instance_main(void *arg)
{
    instance *in = arg;
    kl__version *v = in->v;
    pthread_mutex_lock(&v->mu);
    for (;;) {
        int64_t n = 0;
        kl__job *jobs = take_batch(v, &n);
        if (!jobs)
            break;
        pthread_mutex_unlock(&v->mu);
        run_batch(in, jobs, n);
        pthread_mutex_lock(&v->mu);
    }
    pthread_mutex_unlock(&v->mu);
    free(in->x);
    free(in->out);
    free(in->classes);
    free(in);
    return NULL;
}

kl_status kl__version_start(kl__version *v, kl_error *err)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, &ca);
    pthread_condattr_destroy(&ca);
    v->stats.batches = calloc((size_t)v->cfg.max_batch_size + 1, sizeof *v->stats.batches);
    v->threads = calloc((size_t)v->instances, sizeof *v->threads);
    v->slo = malloc(sizeof *v->slo);
    if (!v->stats.batches || !v->threads || !v->slo)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    kl__slo_init(v->slo, v->cfg.dynamic_batching ? v->cfg.latency_slo_ms : 0,
                 v->cfg.max_batch_size);
    const kl_modelfile_signature *sig = v->sig;
    size_t mb = (size_t)v->cfg.max_batch_size;
    for (int i = 0; i < v->instances; i++) {
        instance *in = calloc(1, sizeof *in);
        if (in) {
            *in = (instance){.v = v, .mf = v->mf[i]};
            in->x = malloc(mb * (size_t)sig->features * sizeof *in->x);
            in->out = malloc(mb * (size_t)sig->outputs * sizeof *in->out);
            in->classes = malloc(mb * sizeof *in->classes);
        }
        if (!in || !in->x || !in->out || !in->classes ||
            pthread_create(&v->threads[i], NULL, instance_main, in) != 0) {
            if (in) {
                free(in->x);
                free(in->out);
                free(in->classes);
            }
            free(in);
            return kl_error_set(err, KL_ENOMEM, "cannot start instance %d of %s version %lld", i,
                                v->model->name, (long long)v->number);
        }
        v->nthreads++;
    }
    return KL_OK;
}

void kl__version_stop(kl__version *v)
{
    if (!v->threads)
        return;
    pthread_mutex_lock(&v->mu);
    v->closing = true;
    pthread_cond_broadcast(&v->cv);
    pthread_mutex_unlock(&v->mu);
    for (int i = 0; i < v->nthreads; i++)
        pthread_join(v->threads[i], NULL);
    v->nthreads = 0;
}

kl_status kl__version_submit(kl__version *v, kl__job *job)
{
    pthread_mutex_lock(&v->mu);
    if (v->queued >= v->cfg.max_queue || v->closing) {
        pthread_mutex_unlock(&v->mu);
        return KL_EFULL;
    }
    job->next = NULL;
    job->t_queued = kl_now();
    if (v->tail)
        v->tail->next = job;
    else
        v->head = job;
    v->tail = job;
    v->queued++;
    v->queued_samples += job->n;
    /* Wake an instance when there is something new for one to do: a first job (an idle one
     * waits for work), a batch that just filled (one waits for it to fill), or any job without
     * batching. Waking the forming instance on every job only made it count the queue again
     * (20k context switches for 3.5k model calls in bench/run_serve.sh). */
    const kl_serve_model_config *c = &v->cfg;
    if (!c->dynamic_batching || v->queued == 1 || c->max_queue_delay_us <= 0 ||
        (v->queued_samples >= v->slo->cap && v->queued_samples - job->n < v->slo->cap))
        pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    return KL_OK;
}
