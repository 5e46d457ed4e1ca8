/* Private to serve/: the server's objects and how the files share them.
 *   repo.c     models and versions: the repository scan, model config.yaml, loading (all
 *              instances ready before a version takes traffic), retiring, polling;
 *   batch.c    a version's request queue and its instance threads, which form batches;
 *   http.c     libmicrohttpd's handler: routes, bodies and limits, auth, JSON answers;
 *   conn.c     open connections, their count, and the whole-request deadlines' watchdog;
 *   respond.c  inference responses (JSON and binary tensor data) and model metadata;
 *   metrics.c  GET /metrics (Prometheus text format), request counts and latency histograms,
 *              the access log;
 *   drift.c    input, prediction and concept drift over a sliding window per version;
 *   learn.c    online learning: feedback requests, the learner thread of each model that learns,
 *              publishing its weights as new versions;
 *   server.c   kl_server_start/wait/stop/free;
 *   steps.c, lookup.c, flow.c, patterns.c  the serving patterns (flow.h): pre and post steps,
 *              feature lookup, pipelines and ensembles.
 * A request holds a reference on the version it runs on, so a version retired by a reload or an
 * unload is freed only when its last request has its answer. */
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
#include "serve/patterns/flow.h"

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

/* A feedback request's samples and labels, copied, queued on its model's learner (learn.c). The
 * learner takes its SGD steps, fills steps, published and status, then sets done and calls
 * done_fn (which resumes the HTTP connection). */
typedef struct kl__feedback {
    struct kl__feedback *next;
    struct kl__version *v; /* the version the request named; the request holds the reference */
    float *x;              /* (n, features), raw */
    void *y;               /* i32 (n) class labels, or f32 (n, targets) */
    int64_t n;
    int64_t steps;     /* the learner's SGD steps so far, this request's included */
    int64_t published; /* the version this request's steps published, or 0 */
    kl_status status;
    char error[KL_ERROR_MSG_MAX];
    atomic_bool done;
    void (*done_fn)(struct kl__feedback *fb);
    void *ctx;
} kl__feedback;

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

/* An open connection, from libmicrohttpd's "started" notification to its "closed" one (conn.c).
 * Its owner, the HTTP thread that serves it, changes phase; the watchdog reads the deadline and
 * sets cut, all under the server's conn_mu. */
typedef struct kl__conn {
    struct kl__conn *prev, *next; /* the server's list */
    int fd;
    int phase;           /* conn.c's PHASE_* */
    int64_t deadline_ns; /* monotonic; 0: none */
    bool over;           /* opened past --max-connections: its request gets 503 */
    bool answered;       /* kiln queued an answer for the request being read */
    bool cut;            /* shut down at its deadline */
    int query_params;    /* in the request line being served */
} kl__conn;

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
    kl__patterns *pat;              /* the model's, when this version was loaded (referenced) */
    kl_modelfile_signature own_sig; /* a composite's (sig points here) */
    char **labels;                  /* a composite classifier's class names (own_sig.outputs) */
    double queue_timeout_s;         /* the server's */
    kl_modelfile **mf;              /* (instances) */
    int instances;
    const kl_modelfile_signature *sig;
    pthread_t *threads;
    int nthreads;
    atomic_int refs; /* the model's list holds one; each request in flight one */

    pthread_mutex_t mu; /* the queue and the stats */
    pthread_cond_t cv;
    kl__job *head, *tail;
    int queued;
    int64_t queued_samples;
    bool closing;
    kl__version_stats stats;
    kl__file_id file; /* the model file as it was when loaded (a poll reloads a changed one) */

    atomic_int busy; /* instances inside a model call */
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
    kl__patterns *pat;      /* steps, lookup, composite (config.yaml); never NULL once loaded */
    kl__version **versions; /* served, ascending version numbers */
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
    int port;
    pthread_mutex_t conn_mu; /* the connections (conn.c) */
    pthread_cond_t conn_cv;
    kl__conn *conns;
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
};

/* ---- repo.c ---- */
/* The file online learning writes into each version folder it publishes (beside model.h5):
 * pruning removes no version without it, so never one a user put into the repository. */
#define KL__ONLINE_MARKER "online.json"

/* Loads what the options name (a file or the whole repository). */
kl_status kl__serve_load_all(kl_server *s, kl_error *err);
/* (Re)loads model name from the repository: KL_ENOTFOUND when it has no such model, KL_EINVAL
 * when the model cannot load as it is. Unloads it: KL_ENOTFOUND when none is loaded. */
kl_status kl__serve_load_model(kl_server *s, const char *name, kl_error *err);
kl_status kl__serve_unload_model(kl_server *s, const char *name, kl_error *err);
/* One pass of the repository poll: new versions, new models, retired versions. */
void kl__serve_poll(kl_server *s);
/* Brings model m in line with its folder (and its learner's publish_dir) as a poll does, after
 * its learner wrote version number there: KL_OK when that version serves then. Then prunes the
 * learner's versions past online_learning.keep_versions that nothing serves. */
kl_status kl__serve_publish(kl_server *s, kl__model *m, int64_t number, kl_error *err);
/* Removes a version folder: its model.h5 and online learning's marker, then the folder (which
 * stays when it holds anything else). */
void kl__serve_remove_version(const char *dir);
/* The served version v of model name (v < 0: the latest), with a reference the caller drops
 * with kl__version_release; NULL with a message otherwise: KL_ENOTFOUND for an unknown model or version, KL_EIO for one
 * with no version ready. */
kl__version *kl__serve_acquire(kl_server *s, const char *name, int64_t v, kl_error *err);
void kl__version_release(kl__version *v);
void kl__serve_free_models(kl_server *s);
/* Model names: letters, digits, '_', '-', '.', not starting with '.', at most 64 bytes. */
bool kl__serve_name_ok(const char *name);
void kl__serve_log(kl_server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kl__serve_sleep(double seconds);

/* ---- batch.c ---- */
/* Starts the version's instance threads. */
kl_status kl__version_start(kl__version *v, kl_error *err);
/* Stops them after the queue is empty. */
void kl__version_stop(kl__version *v);
/* Queues a job; KL_EFULL when the queue is full. */
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
/* The answer from a model's scores (n, outputs), labels (n) and class names: the model's
 * outputs and its post steps'. */
kl_status kl__respond_scores(const kl__version *v, const struct kl__infer_request *req,
                             const float *scores, const int32_t *classes, int64_t n,
                             const kl_modelfile *names, const kl__result *extra, kl__buf *b,
                             size_t *header_len, kl_error *err);
kl_status kl__respond_result(const kl__version *v, const struct kl__infer_request *req,
                             const kl__result *res, kl__buf *b, size_t *header_len, kl_error *err);
void kl__respond_model_metadata(const kl__model *m, const kl__version *v, kl__buf *b);
void kl__respond_stats(kl__version *const *vs, int n, kl__buf *b);
void kl__respond_index(kl_server *s, kl__buf *b);

/* ---- metrics.c ---- */
#define KL__METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Counts an answered request: on v's series, or on the server's (model="") when v is NULL; an
 * inference answered 200 also adds seconds (since it arrived) to the request histogram. */
void kl__metrics_count(kl_server *s, kl__version *v, kl__endpoint ep, unsigned code,
                       double seconds);
/* The queue and compute times of a job that ran. */
void kl__metrics_observe_job(kl__version *v, const kl__job *job);
/* Every metric in the Prometheus text exposition format 0.0.4. */
void kl__metrics_render(kl_server *s, kl__buf *b);

/* One access log line's fields. */
typedef struct kl__access {
    double arrived_wall; /* Unix time, seconds */
    const char *id, *method, *path;
    const kl__version *v; /* NULL: the request named no served version */
    unsigned code;        /* 0: no answer was sent */
    const char *ended;    /* NULL, or why the connection ended without a complete answer */
    double seconds;
    uint64_t bytes_in, bytes_out;
} kl__access;

/* Opens path for appending ("-": stderr); NULL: no log. */
kl_status kl__access_log_open(kl_server *s, const char *path, kl_error *err);
void kl__access_log_close(kl_server *s);
/* Writes one JSON line (nothing without a log). */
void kl__access_log(kl_server *s, const kl__access *a);
/* A new server-generated request id into out (32 bytes or more). */
void kl__request_id_new(kl_server *s, char *out, size_t n);

/* ---- drift.c ---- */
/* Drift of one version's traffic against its model file's reference statistics, over sliding
 * windows: input drift (PSI per feature), prediction drift (PSI of the predicted classes, or of
 * the binned predictions) and, from labelled feedback, windowed accuracy or mean absolute error.
 * PSI = sum over bins of (p - q) ln(p / q), p the window's proportion and q the reference's, each
 * raised to KL__PSI_EPS where smaller (an empty bin would make it infinite). */
#define KL__PSI_EPS 1e-4

typedef struct kl__drift kl__drift;

typedef struct kl__drift_spec {
    int64_t features;
    int outputs;
    bool classification;
    const kl_modelfile_reference *ref; /* NULL: only feedback is measured */
    int64_t window;                    /* samples in each window, > 0 */
    int64_t min_samples;               /* the flags stay 0 while the window holds fewer */
    double threshold;                  /* PSI at or above it counts as drift */
} kl__drift_spec;

typedef struct kl__drift_summary {
    bool reference; /* input and prediction drift are measured */
    bool classification;
    int64_t window, min_samples, features;
    double threshold;
    int64_t samples;   /* in the input window */
    uint64_t observed; /* samples ever observed */
    double psi_max, psi_mean;
    int64_t psi_max_feature; /* the feature of psi_max */
    int64_t over;            /* features with PSI >= threshold */
    bool input_drifted;
    /* classification: PSI of the predicted classes; regression: the largest over outputs of the
     * binned predictions' */
    double prediction_psi;
    bool prediction_drifted;
    int64_t labelled;       /* in the feedback window */
    uint64_t labelled_ever; /* labelled samples ever */
    double accuracy, mae;   /* over the feedback window; NAN when empty or not the task's */
} kl__drift_summary;

kl_status kl__drift_new(const kl__drift_spec *spec, kl__drift **out, kl_error *err);
void kl__drift_free(kl__drift *d);
/* Adds n samples x (n, features) and the model's answers to them, classes (n) for a classifier
 * or out (n, outputs) for regression, to the window, evicting the oldest. d may be NULL. */
void kl__drift_observe(kl__drift *d, const float *x, int64_t n, const int32_t *classes,
                       const float *out);
/* Adds n labelled samples to the feedback window: predicted (n) and int32 labels (n) for a
 * classifier, predicted_values (n, outputs) and float labels (n, outputs) for regression. */
void kl__drift_label(kl__drift *d, const int32_t *predicted, const float *predicted_values,
                     const void *labels, int64_t n);
/* The summary, and with psi (features) each feature's PSI. */
void kl__drift_read(kl__drift *d, kl__drift_summary *s, double *psi);
/* PSI of counts (bins, n in all) against the reference proportions ref (bins); 0 when n is 0. */
double kl__psi(const float *ref, const uint32_t *counts, int bins, int64_t n);
/* v's drift state from its config and model file; none when monitoring is off. */
kl_status kl__version_drift_init(kl__version *v, kl_error *err);
/* The feedback endpoint's hook: n labelled samples for v's concept drift (kl__drift_label's
 * arguments). */
void kl__drift_feedback(kl__version *v, const int32_t *predicted, const float *predicted_values,
                        const void *labels, int64_t n);
/* v's "drift" object for the statistics endpoint (null when monitoring is off). */
void kl__drift_json(kl__version *v, kl__buf *b);

/* ---- learn.c ---- */
typedef struct kl__learner kl__learner;
struct kl__infer_request;
/* online_learning in config.yaml: v the key's value (a mapping), errors at file:line:col. */
kl_status kl__online_config_read(const struct kl__ynode *v, kl_serve_online_config *c,
                                 kl_error *err);
/* A feedback request for version v: checks it (the input as inference takes it, and the labels
 * as an input named "label") and copies it into *out. KL_EUNSUPPORTED when the model does not
 * learn online (409), KL_EINVAL for a bad request (400). */
kl_status kl__feedback_new(kl__version *v, const struct kl__infer_request *q, kl__feedback **out,
                           kl_error *err);
void kl__feedback_free(kl__feedback *fb);
/* Whether v's model takes one more feedback request now: KL_EUNSUPPORTED (409) when it does not
 * learn online; else KL_OK, with *retry_s 0, or the seconds until its rate (online_learning.
 * max_rate) lets the next request in (429). A request let in takes its share of the rate. */
kl_status kl__learn_admit(kl_server *s, kl__version *v, double *retry_s, kl_error *err);
/* Queues fb on its model's learner, which the model's first feedback starts; KL_EFULL when the
 * learner's queue is full. */
kl_status kl__learn_submit(kl_server *s, kl__feedback *fb, kl_error *err);
/* Stops every learner (after the HTTP daemon, so that no feedback is in flight) and frees it. */
void kl__learn_stop_all(kl_server *s);

/* ---- conn.c: connection counts and request deadlines ---- */
/* A new connection on socket fd, its headers' deadline running (NULL: out of memory, not
 * guarded); kl__conn_close forgets it, before its socket is closed. */
kl__conn *kl__conn_open(kl_server *s, int fd);
void kl__conn_close(kl_server *s, kl__conn *c);
/* The phases of a request on c (c may be NULL): its request line read, its headers whole, its
 * body whole, an answer queued, its answer sent. */
void kl__conn_request_line(kl_server *s, kl__conn *c);
void kl__conn_headers_done(kl_server *s, kl__conn *c);
void kl__conn_body_done(kl_server *s, kl__conn *c);
void kl__conn_answered(kl_server *s, kl__conn *c);
void kl__conn_request_done(kl_server *s, kl__conn *c);
/* Whether the watchdog cut c at its deadline. */
bool kl__conn_was_cut(kl_server *s, kl__conn *c);
/* The watchdog thread, which cuts connections past their deadline. */
kl_status kl__conn_watch_start(kl_server *s, kl_error *err);
void kl__conn_watch_stop(kl_server *s);
int kl__conn_count(kl_server *s);

/* ---- http.c ---- */
/* The HTTP status that answers a failed kiln call (status_map.c). */
int kl__http_status(kl_status st);
/* One input tensor of a request against v's signature (shape, sample count within
 * max_batch_size, finite values), as inference checks it. */
struct kl__infer_input;
kl_status kl__serve_check_input(const kl__version *v, const struct kl__infer_input *x,
                                kl_error *err);
kl_status kl__http_start(kl_server *s, kl_error *err);
/* Stops accepting, waits for the requests in flight (up to grace_s), stops the daemon. */
void kl__http_stop(kl_server *s, double grace_s);

#endif
