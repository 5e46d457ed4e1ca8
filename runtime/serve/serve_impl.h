/* Private to runtime/serve/: the server's objects and how the files share them.
 *   repo.c     models and versions: the repository scan, model config.yaml, loading (all
 *              instances ready before a version takes traffic), retiring, polling;
 *   batch.c    a version's request queue and its instance threads, which form batches;
 *   http.c     libmicrohttpd's handler: routes, bodies and limits, auth, JSON answers;
 *   respond.c  inference responses (JSON and binary tensor data) and model metadata;
 *   server.c   kl_server_start/wait/stop/free.
 * A request holds a reference on the version it runs on, so a version retired by a reload or an
 * unload is freed only when its last request has its answer. */
#ifndef KILN_SERVE_IMPL_H
#define KILN_SERVE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/modelfile.h"
#include "kiln/serve.h"

struct MHD_Connection;
struct MHD_Daemon;

/* A growable byte buffer for answers. */
typedef struct kl__buf {
    char *p;
    size_t n, cap;
    bool failed; /* an allocation failed: the contents are incomplete */
} kl__buf;

void kl__buf_put(kl__buf *b, const char *s, size_t n);
void kl__buf_puts(kl__buf *b, const char *s);
void kl__buf_printf(kl__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included. */
void kl__buf_json_string(kl__buf *b, const char *s);
void kl__buf_free(kl__buf *b);

/* One inference request's work, queued on a version. The instance thread fills out, classes and
 * status, then sets done and calls done_fn (which resumes the HTTP connection). */
typedef struct kl__job {
    struct kl__job *next;
    const float *x; /* (n, features) */
    int64_t n;
    float *out;       /* (n, outputs) */
    int32_t *classes; /* (n), classification */
    kl_status status;
    bool expired; /* answered without running: it waited past the queue timeout */
    char error[KL_ERROR_MSG_MAX];
    double t_queued, t_started, t_done; /* seconds, monotonic */
    atomic_bool done;
    void (*done_fn)(struct kl__job *job);
    void *ctx;
} kl__job;

/* Counts and total nanoseconds, as Triton's statistics extension reports them. */
typedef struct kl__stat {
    uint64_t count, ns;
} kl__stat;

typedef struct kl__version_stats {
    uint64_t inferences, executions; /* samples scored; model calls */
    uint64_t last_ms;                /* wall-clock time of the last inference, ms since epoch */
    kl__stat success, fail, queue, compute;
    kl__stat *batches; /* (max_batch_size + 1): model calls by batch size */
} kl__version_stats;

typedef struct kl__version {
    struct kl__model *model;
    int64_t number;
    char *path;
    kl_serve_model_config cfg; /* the model's, when this version was loaded */
    double queue_timeout_s;    /* the server's */
    kl_modelfile **mf;         /* (instances) */
    int instances;
    const kl_modelfile_signature *sig;
    pthread_t *threads;
    int nthreads;
    atomic_int refs; /* the model's list holds one; each request in flight one */

    pthread_mutex_t mu; /* the queue and the stats */
    pthread_cond_t cv;
    kl__job *head, *tail;
    int queued;
    bool closing;
    kl__version_stats stats;
} kl__version;

/* A version the repository has but does not serve, with why (for the index). */
typedef struct kl__version_note {
    int64_t number;
    char *reason;
    int64_t mtime, size; /* of the model file that failed, so a poll retries only a new file */
} kl__version_note;

typedef struct kl__model {
    char *name;
    char *dir; /* in the repository; NULL for a single model file */
    kl_serve_model_config cfg;
    kl__version **versions; /* served, ascending version numbers */
    int nversions;
    kl__version_note *notes;
    int nnotes;
    bool unloaded; /* by the repository API: a poll leaves it alone */
    char *error;   /* why the model itself (its config.yaml) could not load */
} kl__model;

struct kl_server {
    kl_serve_options o;
    char *repository, *host, *auth_token, *single, *single_name;
    FILE *log;
    int cores;

    pthread_rwlock_t lock; /* models and each model's versions */
    kl__model **models;
    int nmodels;
    pthread_mutex_t admin; /* one repository change at a time (poll, load, unload) */

    struct MHD_Daemon *daemon;
    int port;
    atomic_int inflight; /* requests received and not yet answered */
    atomic_int pending;  /* jobs queued or running: their connections are suspended */
    atomic_bool stopping, stop_requested;
    pthread_t poller;
    bool polling;
    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;
};

/* ---- repo.c ---- */
/* Loads what the options name (a file or the whole repository). */
kl_status kl__serve_load_all(kl_server *s, kl_error *err);
/* (Re)loads model name from the repository; unloads it. */
kl_status kl__serve_load_model(kl_server *s, const char *name, kl_error *err);
kl_status kl__serve_unload_model(kl_server *s, const char *name, kl_error *err);
/* One pass of the repository poll: new versions, new models, retired versions. */
void kl__serve_poll(kl_server *s);
/* The served version v of model name (v < 0: the latest), with a reference the caller drops
 * with kl__version_release; NULL with a message and 404-worthy status otherwise. */
kl__version *kl__serve_acquire(kl_server *s, const char *name, int64_t v, kl_error *err);
void kl__version_release(kl__version *v);
void kl__serve_free_models(kl_server *s);
/* Model names: letters, digits, '_', '-', '.', not starting with '.', at most 64 bytes. */
bool kl__serve_name_ok(const char *name);
void kl__serve_log(kl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double kl__serve_now(void);
void kl__serve_sleep(double seconds);

/* ---- batch.c ---- */
/* Starts the version's instance threads. */
kl_status kl__version_start(kl__version *v, kl_error *err);
/* Stops them after the queue is empty. */
void kl__version_stop(kl__version *v);
/* Queues a job; KL_ERANGE when the queue is full (a 503). */
kl_status kl__version_submit(kl__version *v, kl__job *job);

/* ---- respond.c ---- */
struct kl__infer_request;
/* The inference answer for req's job on version v: JSON, or a JSON header and binary data
 * (*header_len < b->n) when the client asked for binary outputs. KL_EINVAL for an unknown
 * output name. */
kl_status kl__respond_infer(const kl__version *v, const struct kl__infer_request *req,
                            const kl__job *job, kl__buf *b, size_t *header_len, kl_error *err);
/* KL_EINVAL when req asks for an output the model does not have. */
kl_status kl__respond_check_outputs(const kl__version *v, const struct kl__infer_request *req,
                                    kl_error *err);
void kl__respond_model_metadata(const kl__model *m, const kl__version *v, kl__buf *b);
void kl__respond_stats(kl__version *const *vs, int n, kl__buf *b);
void kl__respond_index(kl_server *s, kl__buf *b);

/* ---- http.c ---- */
kl_status kl__http_start(kl_server *s, kl_error *err);
/* Stops accepting, waits for the requests in flight (up to grace_s), stops the daemon. */
void kl__http_stop(kl_server *s, double grace_s);

#endif
