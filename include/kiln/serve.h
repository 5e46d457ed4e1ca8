/* kiln serve: an HTTP server for exported models (kiln-model files) speaking the Open Inference
 * Protocol v2 (the REST API of KServe, Triton and MLServer), with Triton's binary tensor data,
 * model repository and statistics extensions. Requests to a model version queue for a pool of
 * instances (threads, each with its own copy of the model), which combine queued requests into
 * batches. See docs/serve.md. cli/serve.c is the command; tests drive it over HTTP. */
#ifndef KILN_SERVE_H
#define KILN_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/config.h"
#include "kiln/modelfile.h"
#include "kiln/optim.h"
#include "kiln/status.h"

/* online_learning in a model's config.yaml (docs/serve.md): SGD steps on the samples and labels
 * posted to the model's feedback endpoint, by a learner thread with its own copy of the model,
 * which publishes its weights as a new version every publish_every steps. */
typedef struct kl_serve_online_config {
    bool enabled;            /* the key is set; off by default */
    kl_optim_kind optimizer; /* KL_OPTIM_SGD (momentum 0) or KL_OPTIM_ADAM */
    float lr;                /* 0.01 */
    int batch_size;          /* samples per step at most (64): n samples take ceil(n / it) */
    int64_t publish_every;   /* steps between versions: 10 */
    bool persist;            /* write versions into the repository (else a temporary folder) */
    int max_queue;           /* feedback requests waiting for the learner before 503: 64 */
    int keep_versions;       /* the learner's newest published versions kept; older ones pruned */
    double max_rate;         /* feedback requests a second the model takes (bursts as many) */
} kl_serve_online_config;

/* How a model's versions are served and batched: the defaults for every model, which a model's
 * config.yaml in the repository overrides key by key. */
typedef struct kl_serve_model_config {
    int max_batch_size;         /* samples in one model call, and the most one request may carry */
    bool dynamic_batching;      /* combine queued requests into one call (else one at a time) */
    int64_t max_queue_delay_us; /* wait this long for more requests before a partial batch */
    double latency_slo_ms;      /* > 0: the batch cap adapts to keep the p99 of a model call's
                                   duration under this (serve/sched/slo.h); 0 (the default): the
                                   cap is max_batch_size */
    int instances;              /* threads, each with its own model copy; 0: one per core (on
                                   CUDA: one per GPU used) */
    kl_train_device device;     /* where instances compute: KL_TRAIN_DEVICE_CPU (the default),
                                   CUDA, or AUTO (CUDA when the build has it and a GPU is seen) */
    int gpu;                    /* on CUDA: every instance on this visible GPU; -1 (the default):
                                   instance i on GPU i mod the visible GPUs */
    int max_queue;              /* requests waiting per version before 503 */
    int latest;                 /* serve the latest N versions (0 with versions set, or all) */
    bool all_versions;
    int64_t *versions; /* these versions only (nversions > 0) */
    int nversions;
    kl_serve_online_config online; /* online_learning: off unless config.yaml sets it */
    /* Drift monitoring (monitoring: in config.yaml): samples in the sliding windows (0: off; -1:
     * 1000, fewer when 1000 samples of bin indices would pass 64 MiB), the PSI at or above which
     * a feature or the predictions count as drifted, and the samples a window needs before the
     * drift flags can rise. */
    int64_t drift_window;
    double psi_threshold;
    int64_t drift_min_samples;
} kl_serve_model_config;

/* The defaults above: 64, true, 0 us, 0 (cores), cpu, gpu -1, 1024, latest 1; drift windows of -1
 * (1000), PSI threshold 0.2, at least 100 samples. */
void kl_serve_model_config_defaults(kl_serve_model_config *c);

/* A version online learning published, as told to kl_serve_options' on_publish: what a run
 * record of it needs. Tracking (track/) is serving's peer, so the server does not record runs
 * itself; kiln serve's command passes a function that does. */
typedef struct kl_serve_publication {
    const char *model;                   /* the model's name */
    const char *dir;                     /* the new version's folder (model.h5, online.json) */
    int64_t version;                     /* its number */
    const kl_modelfile_lineage *lineage; /* parent and parent_version: the version it continued;
                                            run and checkpoint: where the first one came from */
    const kl_config *cfg;                /* the model file's config */
    const char *settings;                /* online_learning as YAML, every key resolved */
    int64_t steps;                       /* the learner's steps since it started */
    int64_t new_steps;                   /* of those, the ones this version adds to its parent */
    int64_t feedback;                    /* samples those steps learnt from */
    double loss;                         /* their mean training loss (per sample) */
    double start;                        /* UNIX time of the first of those steps */
} kl_serve_publication;

typedef void (*kl_serve_publish_fn)(void *ctx, const kl_serve_publication *p);

typedef struct kl_serve_options {
    const char *model;      /* one model file, served as its file name's stem, version 1 */
    const char *name;       /* the name to serve `model` under (NULL: the stem) */
    const char *repository; /* or a repository: DIR/<name>/<version>/model.h5 */
    const char *host;       /* NULL: 127.0.0.1 */
    int port;               /* 0: any free port (kl_server_port says which) */
    const char *auth_token; /* when set, required by the endpoints that change state */
    double poll_s;          /* > 0: rescan the repository this often */
    int64_t max_body;       /* bytes; 0: 64 MiB */
    int timeout_s;          /* idle connection timeout; 0: 30 s */
    int header_timeout_s;   /* a request's headers, whole, from its start; 0: 10 s */
    int body_timeout_s;     /* a request's body, whole, from its headers' end; 0: 60 s */
    double queue_timeout_s; /* a request waiting longer in a queue gets 503; 0: 60 s */
    int http_threads;       /* 0: one per core */
    int max_connections;    /* open at once; 0: 1000; up to an eighth more get 503 */
    int max_per_client;     /* connections from one client address; 0: 128; < 0: no limit */
    kl_serve_model_config defaults;
    FILE *log;              /* what the server says (loads, failures); NULL: stderr */
    const char *access_log; /* append one JSON line per request to this file ("-": stderr) */
    /* Called on the model's learner thread after each version online learning published and
     * the server loaded (NULL: none). */
    kl_serve_publish_fn on_publish;
    void *publish_ctx;
} kl_serve_options;

typedef struct kl_server kl_server;

/* Loads the models and starts listening. Refuses a host other than loopback without an auth
 * token, and a model or repository that cannot be loaded (with the reason). */
kl_status kl_server_start(const kl_serve_options *o, kl_server **out, kl_error *err);
int kl_server_port(const kl_server *s);
/* Serves until kl_server_stop or kl_stop_signal (SIGTERM, SIGINT), then stops accepting,
 * finishes the requests in flight and returns. */
kl_status kl_server_wait(kl_server *s, kl_error *err);
void kl_server_stop(kl_server *s);
void kl_server_free(kl_server *s);

#endif
