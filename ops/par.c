/* The thread pool of kiln's own CPU loops (ops/par.h): workers that wait for a loop, claim its
 * tasks and report back. A training step runs dozens of short kernels between GEMMs, so a worker
 * spins for a while (KL__PAR_SPIN_NS) before it sleeps on a condition variable: a futex wake per
 * kernel would cost about as much as the small kernels themselves, and sleeping soon leaves the
 * core to BLAS's threads during the GEMMs in between.
 *
 * A loop is cut into a fixed list of tasks (KL__PAR_TASKS per thread) that the caller and the
 * workers claim from one counter: on a shared machine a worker that has lost its core then
 * delays a loop by at most the task it holds, not by a whole static share. Which thread runs a
 * task varies; the kernels' results never depend on it (ops/par.h). */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "kiln/clock.h"
#include "ops/par.h"

/* How long an idle worker spins before it sleeps. */
#define KL__PAR_SPIN_NS 50000
/* Tasks per thread in a loop: enough to even out a late worker, few enough to keep each task
 * long against the claim's atomic. */
#define KL__PAR_TASKS 4

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct kl__par {
    int threads; /* workers + 1 */
    pthread_t *workers;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    /* The current loop; written by the caller before gen is bumped, read by workers after. */
    kl__par_fn fn;
    void *ctx;
    int64_t n, grain;
    atomic_int tasks; /* the current loop's; read by late workers while the next is set up */
    bool quit;
    atomic_uint_fast64_t gen; /* bumped once per loop */
    atomic_int sleepers;      /* workers inside (or entering) cond_wait */
    /* The next task to claim, with the loop's gen in the high 32 bits, so that a worker that
     * woke late cannot claim a task of a later loop with this one's pointers. */
    atomic_uint_fast64_t ticket;
    atomic_int done; /* tasks of the current loop finished */
};

typedef struct worker_arg {
    kl__par *p;
} worker_arg;

/* Task t of T over [0, n), edges on multiples of grain. */
static void range_of(int64_t n, int64_t grain, int t, int T, int64_t *lo, int64_t *hi)
{
    int64_t units = (n + grain - 1) / grain;
    int64_t a = units * t / T, b = units * (t + 1) / T;
    *lo = a * grain < n ? a * grain : n;
    *hi = b * grain < n ? b * grain : n;
}

/* Claims and runs tasks of loop gen until none is left (or a later loop has begun). */
static void run_tasks(kl__par *p, uint64_t gen)
{
    uint64_t mine = (gen & 0xffffffffu) << 32;
    for (;;) {
        uint64_t t = atomic_load(&p->ticket);
        if ((t & ~(uint64_t)0xffffffffu) != mine ||
            (int64_t)(t & 0xffffffffu) >= atomic_load(&p->tasks))
            return;
        if (!atomic_compare_exchange_weak(&p->ticket, &t, t + 1))
            continue;
        int64_t lo, hi;
        range_of(p->n, p->grain, (int)(t & 0xffffffffu), atomic_load(&p->tasks), &lo, &hi);
        if (lo < hi)
            p->fn(p->ctx, lo, hi);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Waits for gen to move past seen: spins, then sleeps. The sleeper count and gen are both
 * sequentially consistent, so either the caller sees the sleeper and broadcasts, or the worker
 * sees the new gen before it waits. */
static uint64_t wait_gen(kl__par *p, uint64_t seen)
{
    int64_t t0 = kl_now_ns();
    for (unsigned i = 1;; i++) {
        uint64_t g = atomic_load(&p->gen);
        if (g != seen)
            return g;
        cpu_relax();
        if ((i & 63) == 0 && kl_now_ns() - t0 > KL__PAR_SPIN_NS)
            break;
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    uint64_t g;
    while ((g = atomic_load(&p->gen)) == seen)
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg)
{
    worker_arg *a = arg;
    kl__par *p = a->p;
    free(a);
    uint64_t seen = 0;
    for (;;) {
        seen = wait_gen(p, seen);
        if (p->quit)
            return NULL;
        run_tasks(p, seen);
    }
}

/* Bumps gen (publishing fn, ctx, n, grain or quit) and wakes sleepers. */
static void publish(kl__par *p)
{
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

kl_status kl__par_new(int threads, kl__par **out, kl_error *err)
{
    *out = NULL;
    if (threads <= 1)
        return KL_OK;
    kl__par *p = calloc(1, sizeof *p);
    if (!p || !(p->workers = calloc((size_t)threads - 1, sizeof *p->workers))) {
        free(p);
        return kl_error_set(err, KL_ENOMEM, "thread pool: out of memory for %d threads", threads);
    }
    p->threads = threads;
    atomic_init(&p->gen, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->ticket, 0);
    atomic_init(&p->tasks, 0);
    atomic_init(&p->done, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (int i = 0; i < threads - 1; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (a)
            *a = (worker_arg){p};
        if (!a || pthread_create(&p->workers[i], NULL, worker_main, a) != 0) {
            free(a);
            kl__par_free(p);
            return kl_error_set(err, KL_ENOMEM,
                                "thread pool: could not start thread %d of %d; lower "
                                "train.threads",
                                i + 2, threads);
        }
        p->started++;
    }
    *out = p;
    return KL_OK;
}

void kl__par_free(kl__par *p)
{
    if (!p)
        return;
    p->quit = true;
    publish(p);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->workers);
    free(p);
}

int kl__par_threads(const kl__par *p)
{
    return p ? p->threads : 1;
}

void kl__par_for(kl__par *p, int64_t n, int64_t grain, int64_t min_work, kl__par_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (!p || n < min_work || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    /* The new ticket first: it names the gen that publish will bump to, and it makes a claim
     * still in flight from a worker that read the previous loop's ticket fail its exchange,
     * before the fields below change under it. */
    uint64_t gen = atomic_load(&p->gen) + 1;
    atomic_store(&p->ticket, (gen & 0xffffffffu) << 32);
    int64_t units = (n + grain - 1) / grain, tasks = (int64_t)p->threads * KL__PAR_TASKS;
    int ntasks = (int)(units < tasks ? units : tasks);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->grain = grain;
    atomic_store(&p->tasks, ntasks);
    atomic_store(&p->done, 0);
    publish(p);
    run_tasks(p, gen);
    for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < ntasks; i++) {
        cpu_relax();
        /* A worker holding a task without its core (the machine is shared) gets it sooner. */
        if ((i & 1023) == 0)
            sched_yield();
    }
}

typedef struct sum_sq_ctx {
    const float *x;
    size_t n;
    double part[KL__PAR_SLICES];
} sum_sq_ctx;

static void sum_sq_slices(void *arg, int64_t lo, int64_t hi)
{
    sum_sq_ctx *c = arg;
    for (int64_t s = lo; s < hi; s++) {
        size_t a = c->n / KL__PAR_SLICES * (size_t)s, b = c->n / KL__PAR_SLICES * (size_t)(s + 1);
        if (s == KL__PAR_SLICES - 1)
            b = c->n;
        double acc = 0.0;
        for (size_t i = a; i < b; i++)
            acc += (double)c->x[i] * (double)c->x[i];
        c->part[s] = acc;
    }
}

double kl__par_sum_sq(kl__par *p, const float *x, size_t n)
{
    sum_sq_ctx c = {.x = x, .n = n};
    kl__par_for(p, KL__PAR_SLICES, 1, n < 16384 ? KL__PAR_SLICES + 1 : 0, sum_sq_slices, &c);
    double sum = 0.0;
    for (int s = 0; s < KL__PAR_SLICES; s++)
        sum += c.part[s];
    return sum;
}

typedef struct scale_ctx {
    float *x;
    float s;
} scale_ctx;

static void scale_range(void *arg, int64_t lo, int64_t hi)
{
    scale_ctx *c = arg;
    for (int64_t i = lo; i < hi; i++)
        c->x[i] *= c->s;
}

void kl__par_scale(kl__par *p, float *x, size_t n, float s)
{
    scale_ctx c = {x, s};
    kl__par_for(p, (int64_t)n, 1024, 16384, scale_range, &c);
}
