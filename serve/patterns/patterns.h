/* Private to serve/: drift monitoring (drift.c) and online learning (learn.c), the patterns
 * that watch and change a served model. The patterns a config.yaml puts around a model (steps,
 * lookup, pipelines, ensembles) are flow.h; a composite's request in flight is composite.h. */
#ifndef KILN_SERVE_PATTERNS_H
#define KILN_SERVE_PATTERNS_H

#include "serve/patterns/flow.h"
#include "serve/serve_impl.h"

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

#endif
