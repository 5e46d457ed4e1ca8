/* The inference route, POST /v2/models/NAME[/versions/N]/infer: a single model's request is
 * checked and queued on its version (sched/), a patterned one gets its input from patterns/
 * first, and a pipeline's or ensemble's runs as a flow (patterns/flow.c). The connection is
 * suspended meanwhile; the job's or flow's end resumes it and kl__http_infer_finish answers. */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/codec/codec.h"
#include "serve/http/http_impl.h"
#include "serve/patterns/composite.h"
#include "serve/patterns/patterns.h"
#include "serve/repo/repo.h"
#include "serve/sched/sched.h"

/* The inference route's state. */
typedef struct infer_state {
    kl__route_state base;
    kl__infer_request req;
    kl__job job; /* a single model's; a flow's end sets its done too */
    bool queue_full;
    float *px;         /* the model's input when patterns made it (lookup, pre steps) */
    kl__flow *flow;    /* a pipeline's or ensemble's request */
    kl_status flow_st; /* a flow that could not start */
    char *flow_error;
} infer_state;

static infer_state *state_of(req_ctx *r)
{
    return (infer_state *)r->route;
}

static void state_free(kl__route_state *base)
{
    infer_state *in = (infer_state *)base;
    free(in->px);
    if (in->flow) {
        kl__flow_free(in->flow);
        free(in->flow);
    }
    free(in->flow_error);
    kl__infer_request_free(&in->req);
    free(in->job.out);
    free(in->job.classes);
    free(in);
}

static enum MHD_Result infer_finish(req_ctx *r);

static void job_done(kl__job *job)
{
    kl__http_resume(job->ctx);
}

static void flow_done(kl__flow *f)
{
    req_ctx *r = f->ctx;
    atomic_store(&state_of(r)->job.done, true);
    kl__http_resume(r);
}

/* A pipeline or ensemble: its stages run as jobs on its members' queues (flow.c). */
static enum MHD_Result flow_start(req_ctx *r, int64_t n)
{
    kl_server *s = r->s;
    infer_state *in = state_of(r);
    if (!(in->flow = calloc(1, sizeof *in->flow)))
        return kl__http_send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
    in->flow->done = flow_done;
    in->flow->ctx = r;
    float *x = in->px;
    in->px = NULL;
    in->base.resumed = infer_finish;
    MHD_suspend_connection(r->conn);
    atomic_fetch_add(&s->pending, 1);
    kl_error err = {0};
    kl_status st = kl__patterns_flow(s, r->v, in->flow, x, n, &err);
    if (st != KL_OK) { /* it did not start: answer from the handler, called again */
        in->flow_st = st;
        in->flow_error = strdup(err.msg);
        atomic_fetch_sub(&s->pending, 1);
        atomic_store(&in->job.done, true);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

static enum MHD_Result flow_finish(req_ctx *r)
{
    infer_state *in = state_of(r);
    kl__version *v = r->v;
    kl__flow *f = in->flow;
    kl_status st = in->flow_error ? in->flow_st : f->status;
    const char *msg = in->flow_error ? in->flow_error : f->error;
    if (st != KL_OK && st != KL_EINVAL) { /* a bad request is the client's, as for a model */
        pthread_mutex_lock(&v->mu);
        v->stats.fail.count++;
        v->stats.fail.ns += (uint64_t)((kl_now() - r->t0) * 1e9);
        pthread_mutex_unlock(&v->mu);
    }
    if (st != KL_OK)
        return kl__http_send_error(r, kl__http_status(st), "model %s: %s", v->model->name, msg);
    kl__buf b = {0};
    size_t header_len = 0;
    kl_error err = {0};
    const kl__version *final = f->shape.final;
    kl__result members = {0};
    kl_status rs = in->req.members ? kl__flow_member_outputs(f, &members, &err) : KL_OK;
    if (rs == KL_OK)
        rs = kl__respond_scores(v, &in->req, f->cur, f->classes, f->n, final ? final->mf[0] : NULL,
                                &members, &b, &header_len, &err);
    kl__result_free(&members);
    if (rs != KL_OK) {
        kl__buf_free(&b);
        return kl__http_send_failure(r, &err);
    }
    pthread_mutex_lock(&v->mu);
    v->stats.success.count++;
    v->stats.success.ns += (uint64_t)((kl_now() - r->t0) * 1e9);
    v->stats.inferences += (uint64_t)f->n;
    v->stats.last_ms = (uint64_t)time(NULL) * 1000;
    pthread_mutex_unlock(&v->mu);
    if (header_len < b.n)
        return kl__http_send_buf(r, MHD_HTTP_OK, &b, "application/octet-stream", header_len);
    return kl__http_send_json(r, MHD_HTTP_OK, &b);
}

/* The request's tensors against the model's signature. */
static bool check_input(const kl__infer_request *q, const kl__version *v, kl_error *err)
{
    const kl_modelfile_signature *sig = v->sig;
    char want[128];
    kl__want_shape(sig, want, sizeof want);
    if (q->ninputs != 1 || strcmp(q->inputs[0].name, sig->input_name)) {
        kl_error_set(
            err, KL_EINVAL, "model %s takes one input, '%s' (FP32 %s); the request has %d%s%s%s",
            v->model->name, sig->input_name, want, q->ninputs, q->ninputs == 1 ? ", named '" : "",
            q->ninputs == 1 ? q->inputs[0].name : "", q->ninputs == 1 ? "'" : "");
        return false;
    }
    return kl__check_input(v, &q->inputs[0], err) == KL_OK;
}

enum MHD_Result kl__http_infer(req_ctx *r, const char *model, int64_t version)
{
    kl_server *s = r->s;
    kl_error err = {0};
    r->ep = KL__EP_INFER;
    infer_state *in = calloc(1, sizeof *in);
    if (!in)
        return kl__http_send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
    in->base.free = state_free;
    r->route = &in->base;
    if (!(r->v = kl__serve_acquire(s, model, version, &err)))
        return kl__http_send_failure(r, &err);
    if (kl__http_parse_body(r, &in->req, &err) != KL_OK)
        return kl__http_send_failure(r, &err);
    int64_t n = 0;
    if (kl__patterned(r->v)) {
        if (kl__patterns_input(r->v, &in->req, &in->px, &n, &err) != KL_OK)
            return kl__http_send_failure(r, &err);
    } else if (!check_input(&in->req, r->v, &err)) {
        return kl__http_send_failure(r, &err);
    } else {
        n = in->req.inputs[0].shape[0];
    }
    if (kl__respond_check_outputs(r->v, &in->req, &err) != KL_OK)
        return kl__http_send_failure(r, &err);
    if (r->v->pat && r->v->pat->comp)
        return flow_start(r, n);
    const kl_modelfile_signature *sig = r->v->sig;
    in->job = (kl__job){
        .x = in->px ? in->px : in->req.inputs[0].data, .n = n, .done_fn = job_done, .ctx = r};
    in->job.out = malloc((size_t)(n * sig->outputs) * sizeof *in->job.out);
    in->job.classes = malloc((size_t)n * sizeof *in->job.classes);
    if (!in->job.out || !in->job.classes)
        return kl__http_send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
    /* Suspend before queueing: the instance may finish and resume at once. */
    in->base.resumed = infer_finish;
    MHD_suspend_connection(r->conn);
    atomic_fetch_add(&s->pending, 1);
    if (kl__version_submit(r->v, &in->job) != KL_OK) {
        atomic_fetch_sub(&s->pending, 1);
        in->queue_full = true;
        atomic_store(&in->job.done, true);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

static void count_outcome(kl__version *v, bool ok, double seconds)
{
    pthread_mutex_lock(&v->mu);
    kl__stat *st = ok ? &v->stats.success : &v->stats.fail;
    st->count++;
    st->ns += (uint64_t)(seconds > 0 ? seconds * 1e9 : 0);
    pthread_mutex_unlock(&v->mu);
}

/* Once the job or flow is done: its answer. */
static enum MHD_Result infer_finish(req_ctx *r)
{
    kl__version *v = r->v;
    infer_state *in = state_of(r);
    if (!atomic_load(&in->job.done))
        return MHD_YES;
    if (in->flow)
        return flow_finish(r);
    double took = kl_now() - in->job.t_queued;
    if (in->queue_full) {
        count_outcome(v, false, 0);
        return kl__http_send_error(r, kl__http_status(KL_EFULL),
                                   "model %s version %lld has %d requests waiting: try again later",
                                   v->model->name, (long long)v->number, v->cfg.max_queue);
    }
    if (in->job.expired) /* counted where it expired */
        return kl__http_send_error(r, kl__http_status(in->job.status), "model %s version %lld: %s",
                                   v->model->name, (long long)v->number, in->job.error);
    kl__metrics_observe_job(v, &in->job);
    if (in->job.status != KL_OK) {
        count_outcome(v, false, took);
        return kl__http_send_error(r, kl__http_status(in->job.status), "inference failed: %s",
                                   in->job.error);
    }
    kl__buf b = {0};
    size_t header_len = 0;
    kl_error err = {0};
    if (kl__respond_infer(v, &in->req, &in->job, &b, &header_len, &err) != KL_OK) {
        kl__buf_free(&b);
        count_outcome(v, false, took);
        return kl__http_send_failure(r, &err);
    }
    count_outcome(v, true, took);
    kl__drift_observe(v->drift, in->job.x, in->job.n, in->job.classes, in->job.out);
    if (header_len < b.n)
        return kl__http_send_buf(r, MHD_HTTP_OK, &b, "application/octet-stream", header_len);
    return kl__http_send_json(r, MHD_HTTP_OK, &b);
}
