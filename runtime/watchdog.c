/* The collective watchdog behind a communicator's timeout (runtime/comm.c): a thread that ends the
 * process when its rank has waited in one collective longer than the timeout. A rank that is
 * stopped or stuck cannot report itself, and the others would wait for it forever inside MPI;
 * exiting makes mpirun (or srun) end the whole job, and the message says which rank gave up, in
 * what, at which step, and who did not arrive when the collective could tell. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "kiln/comm.h"
#include "runtime/watchdog.h"

struct kl__watchdog {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
    int rank;
    /* The wait being watched, under lock. */
    int64_t deadline_ns; /* 0: not waiting */
    double timeout;
    const char *what;
    int64_t step;
    char missing[160]; /* "rank 1 did not arrive"; "" when unknown */
};

static void give_up(const kl__watchdog *w)
{
    char step[48] = "";
    if (w->step >= 0)
        snprintf(step, sizeof step, " at step %lld", (long long)w->step);
    fprintf(stderr,
            "kiln: rank %d waited more than %.0f s in the %s%s (dist.timeout): %s; ending the "
            "job\n",
            w->rank, w->timeout, w->what, step,
            w->missing[0] ? w->missing : "another rank is stuck or gone");
    fflush(stderr);
    _exit(KL_COMM_EXIT_TIMEOUT);
}

static void *watch(void *arg)
{
    kl__watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        struct timespec until = kl_wall_deadline(0.2); /* look five times a second */
        pthread_cond_timedwait(&w->wake, &w->lock, &until);
        if (!w->stop && w->deadline_ns && kl_now_ns() > w->deadline_ns)
            give_up(w);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

kl__watchdog *kl__watchdog_start(int rank)
{
    kl__watchdog *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->rank = rank;
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

void kl__watchdog_enter(kl__watchdog *w, double timeout, double grace, const char *what,
                        int64_t step)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->timeout = timeout;
    w->what = what;
    w->step = step;
    w->missing[0] = '\0';
    w->deadline_ns = kl_now_ns() + (int64_t)((timeout + grace) * 1e9);
    pthread_mutex_unlock(&w->lock);
}

void kl__watchdog_missing(kl__watchdog *w, const char *who)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    snprintf(w->missing, sizeof w->missing, "%s", who ? who : "");
    pthread_mutex_unlock(&w->lock);
}

void kl__watchdog_leave(kl__watchdog *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->deadline_ns = 0;
    pthread_mutex_unlock(&w->lock);
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
