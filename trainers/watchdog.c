/* The collective watchdog: a thread that ends the process when a data-parallel rank has waited in
 * one collective longer than dist.timeout. A rank that is stopped or stuck cannot report itself,
 * and the others would wait for it forever inside MPI; exiting makes mpirun (or srun) end the
 * whole job, and the message says which rank gave up, in what and at which step. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "trainers/watchdog.h"

struct kl__watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    int rank;
    double timeout;
    _Atomic int64_t deadline_ns; /* 0: not waiting */
    _Atomic int64_t step;
    const char *_Atomic what;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *watch(void *arg)
{
    kl__watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 200000000; /* look five times a second */
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
        int64_t deadline = atomic_load(&w->deadline_ns);
        if (!w->stop && deadline && now_ns() > deadline) {
            fprintf(stderr,
                    "kiln: rank %d waited more than %.0f s in the %s at step %lld "
                    "(dist.timeout): another rank is stuck or gone; ending the job\n",
                    w->rank, w->timeout, atomic_load(&w->what), (long long)atomic_load(&w->step));
            fflush(stderr);
            _exit(3);
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

kl__watchdog *kl__watchdog_start(int rank, double timeout)
{
    kl__watchdog *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->rank = rank;
    w->timeout = timeout;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, watch, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        free(w);
        return NULL;
    }
    return w;
}

void kl__watchdog_enter(kl__watchdog *w, const char *what, int64_t step)
{
    if (!w)
        return;
    atomic_store(&w->what, what);
    atomic_store(&w->step, step);
    atomic_store(&w->deadline_ns, now_ns() + (int64_t)(w->timeout * 1e9));
}

void kl__watchdog_leave(kl__watchdog *w)
{
    if (w)
        atomic_store(&w->deadline_ns, 0);
}

void kl__watchdog_stop(kl__watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    free(w);
}
