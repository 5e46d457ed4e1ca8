/* What the patterns part exports about composite models (pipelines and ensembles) to the
 * routes (serve/http/infer_route.c) and the repository (serve/repo/repo.c): a composite's request
 * in flight, how its members are resolved, a patterned version's input, and the check of an
 * input against a version. */
#ifndef KILN_SERVE_COMPOSITE_H
#define KILN_SERVE_COMPOSITE_H

#include "serve/patterns/flow.h"
#include "serve/serve_impl.h"

struct kl__infer_request;

#define KL__FLOW_MAX_MEMBERS 16

/* "[-1,d1,d2...]": the input shape a model takes, for messages (check.c). */
void kl__want_shape(const kl_modelfile_signature *sig, char *want, size_t size);
/* One input tensor of a request against v's signature (shape, sample count within
 * max_batch_size), as inference checks it (check.c). */
struct kl__infer_input;
kl_status kl__check_input(const kl__version *v, const struct kl__infer_input *x, kl_error *err);

/* What a composite takes and gives, from its members' current versions. */
typedef struct kl__flow_shape {
    kl_modelfile_signature input; /* the first model's (an ensemble's members share it) */
    int64_t width;                /* values per sample out of the last stage */
    const kl__version *final;     /* the last stage's model (labels), or NULL after a step */
    bool classify;
} kl__flow_shape;

/* Acquires the latest version of every member (vs: one slot per stage or member, NULL for a
 * step) and checks that the widths chain; releases them on failure. */
kl_status kl__flow_resolve(kl_server *s, const kl__composite *c, kl__version **vs,
                           kl__flow_shape *shape, kl_error *err);
void kl__flow_release(kl__version **vs, int n);

typedef struct kl__flow {
    const kl__composite *c;
    kl__version *members[KL__FLOW_MAX_MEMBERS]; /* referenced for the request's life */
    kl__flow_shape shape;
    float *cur;       /* the data: the input, then each stage's output (n, w); owned */
    int32_t *classes; /* the last model's labels (n) */
    int64_t n, w;
    int stage;
    kl__job *jobs; /* one per stage (pipeline: the current one) or member */
    atomic_int remaining;
    pthread_mutex_t mu;
    kl_status status;
    char error[KL_ERROR_MSG_MAX];
    void (*done)(struct kl__flow *f); /* once, from whichever thread finishes */
    void *ctx;
} kl__flow;

/* Starts f (c, members, shape, cur, n, done and ctx filled in). done is called once at the end,
 * with f->status, f->cur (n, f->w) and f->classes. */
kl_status kl__flow_start(kl__flow *f, kl_error *err);
/* An ensemble's members' scores as outputs "<member>.probabilities" (or .predictions), always
 * answered: what parameters.members asks for. KL_EINVAL for a pipeline. */
kl_status kl__flow_member_outputs(const kl__flow *f, kl__result *r, kl_error *err);
/* Frees what f holds (not f) and releases its members. */
void kl__flow_free(kl__flow *f);

/* patterns.c. Whether v's config puts a lookup, pre steps or a composite before its model. */
bool kl__patterned(const kl__version *v);
/* The model input of a request to a patterned v: *out (malloc'd, (*n, features)), after the
 * lookup and the pre steps, with every check an inference gets; KL_EINVAL for the client. */
kl_status kl__patterns_input(const kl__version *v, const struct kl__infer_request *q, float **out,
                             int64_t *n, kl_error *err);
/* Starts composite v's flow f on x (n, features; f takes it, also on failure), f->done and
 * f->ctx set. On failure f holds nothing the caller must not free with kl__flow_free. */
kl_status kl__patterns_flow(kl_server *s, kl__version *v, kl__flow *f, float *x, int64_t n,
                            kl_error *err);

#endif
