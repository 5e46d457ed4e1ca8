/* Private to serve/: the core every part shares. The server, its models and their versions (the
 * objects the parts work on), a queued job, the answer buffer, the counters the metrics read,
 * the log and the name rules. A request holds a reference on the version it runs on, so a
 * version retired by a reload or an unload is freed only when its last request has its answer.
 * serve/README.md maps the parts and which way they call. */
#ifndef KILN_SERVE_IMPL_H
#define KILN_SERVE_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "kiln/clock.h"
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

/* ---- metrics.c: counters and histograms, updated with atomics from any thread ---- */

/* What a request asked for: the endpoint label of kiln_requests_total. */
typedef enum kl__endpoint {
    KL__EP_OTHER,
    KL__EP_INFER,
    KL__EP_METADATA,
    KL__EP_READY,
    KL__EP_STATS,
    KL__EP_FEEDBACK,
    KL__EP_HEALTH,
    KL__EP_SERVER,
    KL__EP_REPOSITORY,
    KL__EP_METRICS,
    KL__EP_COUNT
} kl__endpoint;

/* HTTP status codes counted one by one; any other lands in the last slot (code="other"). */
#define KL__CODES 18

typedef struct kl__req_counts {
    _Atomic uint64_t n[KL__EP_COUNT][KL__CODES];
} kl__req_counts;

/* Latency buckets from 100 us to 10 s (metrics.c has the bounds), and one past the last. */
#define KL__LATENCY_BUCKETS 16

typedef struct kl__histogram {
    _Atomic uint64_t n[KL__LATENCY_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_ns;
} kl__histogram;

typedef struct kl__version_metrics {
    kl__req_counts requests;
    kl__histogram queue, compute, total; /* per inference request */
} kl__version_metrics;

struct kl__drift;

/* Which file a path named when it was read: another file moved into place, or the same file
 * rewritten, differs in one of these. */
typedef struct kl__file_id {
    uint64_t dev, ino;
    int64_t mtime_ns, size;
} kl__file_id;

/* The identity of the file at path; false when it cannot be stat()ed. */
bool kl__file_id_of(const char *path, kl__file_id *id);
bool kl__file_same(const kl__file_id *a, const kl__file_id *b);

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
    kl_serve_model_config cfg;      /* the model's, when this version was loaded */
    struct kl__patterns *pat;       /* the model's, when this version was loaded (referenced) */
    kl_modelfile_signature own_sig; /* a composite's (sig points here) */
    char **labels;                  /* a composite classifier's class names (own_sig.outputs) */
    double queue_timeout_s;         /* the server's */
    kl_modelfile **mf;              /* (instances) */
    int instances;
    char device[160]; /* where the instances compute, for the log: "CPU", "CUDA device 0 (...)" */
    const kl_modelfile_signature *sig;
    pthread_t *threads;
    int nthreads;
    atomic_int refs; /* the model's list holds one; each request in flight one */
    void (*free)(struct kl__version *v); /* its maker's (repo/), when the last reference goes */

    pthread_mutex_t mu; /* the queue and the stats */
    pthread_cond_t cv;
    kl__job *head, *tail;
    int queued;
    int64_t queued_samples;
    bool closing;
    kl__version_stats stats;
    kl__file_id file; /* the model file as it was when loaded (a poll reloads a changed one) */

    struct kl__slo *slo; /* the batch cap under latency_slo_ms (sched/slo.h; under mu): made by
                            kl__version_start, NULL for a composite */
    atomic_int busy;     /* instances inside a model call */
    kl__version_metrics metrics;
    struct kl__drift *drift; /* NULL when drift monitoring is off */

} kl__version;

/* A version the repository has but does not serve, with why (for the index). */
typedef struct kl__version_note {
    int64_t number;
    char *reason;
    kl__file_id file; /* the model file that failed, so a poll retries only another one */
} kl__version_note;

typedef struct kl__model {
    char *name;
    char *dir; /* in the repository; NULL for a single model file */
    kl_serve_model_config cfg;
    struct kl__patterns *pat; /* steps, lookup, composite (config.yaml); never NULL once loaded */
    kl__version **versions;   /* served, ascending version numbers */
    int nversions;
    kl__version_note *notes;
    int nnotes;
    bool unloaded;               /* by the repository API: a poll leaves it alone */
    bool removed;                /* its folder left the repository: unknown until it comes back */
    char *error;                 /* why the model itself (its config.yaml) could not load */
    struct kl__learner *learner; /* online learning: started by the first feedback (learn.c) */
    const char *publish_dir;     /* versions its learner published unpersisted (admin held) */
    _Atomic uint64_t load_failures; /* versions that failed to load, and refused config.yaml */
    /* The feedback rate's token bucket (learn.c; under the server's learn_mu): tokens left, and
     * when they were counted (0: never, a full bucket). */
    double feedback_tokens, feedback_at;
} kl__model;

struct kl_server {
    kl_serve_options o;
    char *repository, *host, *auth_token, *single, *single_name;
    struct sockaddr_storage addr; /* --host resolved: what the daemon binds */
    FILE *log;
    int cores;

    pthread_rwlock_t lock; /* models and each model's versions */
    kl__model **models;
    int nmodels;
    pthread_mutex_t admin;    /* one repository change at a time (poll, load, unload) */
    bool deferring;           /* the first pass at start: composites wait for the second */
    pthread_mutex_t learn_mu; /* starting and stopping online learners */

    struct MHD_Daemon *daemon;
    int listen_fd; /* bound and listening before the models load, until the daemon takes it */
    int port;
    pthread_mutex_t conn_mu; /* the connections (conn.c) */
    pthread_cond_t conn_cv;
    struct kl__conn *conns;
    int nconns;
    pthread_t conn_watchdog;
    bool conn_watching, conn_stop;
    _Atomic uint64_t conn_cuts[2]; /* connections cut at their deadline: headers, body */
    atomic_int inflight;           /* requests received and not yet answered */
    atomic_int pending;            /* jobs queued or running: their connections are suspended */
    atomic_bool stopping, stop_requested;
    pthread_t poller;
    bool polling;
    _Atomic uint64_t polls; /* repository polls done */
    pthread_mutex_t poll_mu;
    pthread_cond_t poll_cv;

    double started, started_wall; /* monotonic and Unix time, seconds */
    kl__req_counts unrouted;      /* requests that named no served version */
    FILE *access_log;             /* NULL: none */
    pthread_mutex_t access_mu;
    _Atomic uint64_t next_id; /* of generated request ids */
    uint32_t id_prefix;

    /* What the repository (repo/, which calls the patterns) lends the patterns, which do not
     * call it: a served version with a reference (kl__serve_acquire), and a version online
     * learning wrote put into service (kl__serve_publish). kl__serve_load_all sets them. */
    kl__version *(*acquire)(kl_server *s, const char *name, int64_t v, kl_error *err);
    kl_status (*publish)(kl_server *s, kl__model *m, int64_t number, kl_error *err);
};

/* Drops a reference on v (NULL: nothing); the last one frees it with its maker's free. */
static inline void kl__version_release(kl__version *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1)
        v->free(v);
}

/* ---- log.c, names.c: what every part uses ---- */
/* A line of the server's log, with the time of day. */
void kl__serve_log(kl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kl__serve_sleep(double seconds);
/* Model names: letters, digits, '_', '-', '.', not starting with '.', at most 64 bytes. */
bool kl__serve_name_ok(const char *name);
/* The file online learning writes into each version folder it publishes (beside model.h5):
 * pruning removes no version without it, so never one a user put into the repository. */
#define KL__ONLINE_MARKER "online.json"
/* Removes a version folder: its model.h5, online learning's marker and run record, then the
 * folder (which stays when it holds anything else). */
void kl__serve_remove_version(const char *dir);

#endif
