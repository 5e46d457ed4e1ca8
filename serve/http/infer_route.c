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

static void job_done(kl__job *job)
{
    req_ctx *r = job->ctx;
    kl_server *s = r->s;
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&s->pending, 1);
}

static void flow_done(kl__flow *f)
{
    req_ctx *r = f->ctx;
    kl_server *s = r->s;
    atomic_store(&r->job.done, true);
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&s->pending, 1);
}

/* A pipeline or ensemble: its stages run as jobs on its members' queues (flow.c). */
static enum MHD_Result flow_start(req_ctx *r, int64_t n)
{
    kl_server *s = r->s;
    if (!(r->flow = calloc(1, sizeof *r->flow)))
        return kl__http_send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
    r->flow->done = flow_done;
    r->flow->ctx = r;
    float *x = r->px;
    r->px = NULL;
    r->submitted = true;
    MHD_suspend_connection(r->conn);
    atomic_fetch_add(&s->pending, 1);
    kl_error err = {0};
    kl_status st = kl__patterns_flow(s, r->v, r->flow, x, n, &err);
    if (st != KL_OK) { /* it did not start: answer from the handler, called again */
        r->flow_st = st;
        r->flow_error = strdup(err.msg);
        atomic_fetch_sub(&s->pending, 1);
        atomic_store(&r->job.done, true);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

static enum MHD_Result flow_finish(req_ctx *r)
{
    kl__version *v = r->v;
    kl__flow *f = r->flow;
    kl_status st = r->flow_error ? r->flow_st : f->status;
    const char *msg = r->flow_error ? r->flow_error : f->error;
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
    kl_status rs = r->req.members ? kl__flow_member_outputs(f, &members, &err) : KL_OK;
    if (rs == KL_OK)
        rs = kl__respond_scores(v, &r->req, f->cur, f->classes, f->n, final ? final->mf[0] : NULL,
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
static bool check_input(req_ctx *r, const kl__version *v, kl_error *err)
{
    const kl_modelfile_signature *sig = v->sig;
    const kl__infer_request *q = &r->req;
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
    if (!(r->v = kl__serve_acquire(s, model, version, &err)))
        return kl__http_send_failure(r, &err);
    if (kl__http_parse_body(r, &err) != KL_OK)
        return kl__http_send_failure(r, &err);
    int64_t n = 0;
    if (kl__patterned(r->v)) {
        if (kl__patterns_input(r->v, &r->req, &r->px, &n, &err) != KL_OK)
            return kl__http_send_failure(r, &err);
    } else if (!check_input(r, r->v, &err)) {
        return kl__http_send_failure(r, &err);
    } else {
        n = r->req.inputs[0].shape[0];
    }
    if (kl__respond_check_outputs(r->v, &r->req, &err) != KL_OK)
        return kl__http_send_failure(r, &err);
    if (r->v->pat && r->v->pat->comp)
        return flow_start(r, n);
    const kl_modelfile_signature *sig = r->v->sig;
    r->job = (kl__job){
        .x = r->px ? r->px : r->req.inputs[0].data, .n = n, .done_fn = job_done, .ctx = r};
    r->job.out = malloc((size_t)(n * sig->outputs) * sizeof *r->job.out);
    r->job.classes = malloc((size_t)n * sizeof *r->job.classes);
    if (!r->job.out || !r->job.classes)
        return kl__http_send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
    /* Suspend before queueing: the instance may finish and resume at once. */
    r->submitted = true;
    MHD_suspend_connection(r->conn);
    atomic_fetch_add(&s->pending, 1);
    if (kl__version_submit(r->v, &r->job) != KL_OK) {
        atomic_fetch_sub(&s->pending, 1);
        r->queue_full = true;
        atomic_store(&r->job.done, true);
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

enum MHD_Result kl__http_infer_finish(req_ctx *r)
{
    kl__version *v = r->v;
    if (r->flow)
        return flow_finish(r);
    double took = kl_now() - r->job.t_queued;
    if (r->queue_full) {
        count_outcome(v, false, 0);
        return kl__http_send_error(r, kl__http_status(KL_EFULL),
                                   "model %s version %lld has %d requests waiting: try again later",
                                   v->model->name, (long long)v->number, v->cfg.max_queue);
    }
    if (r->job.expired) /* counted where it expired */
        return kl__http_send_error(r, kl__http_status(r->job.status), "model %s version %lld: %s",
                                   v->model->name, (long long)v->number, r->job.error);
    kl__metrics_observe_job(v, &r->job);
    if (r->job.status != KL_OK) {
        count_outcome(v, false, took);
        return kl__http_send_error(r, kl__http_status(r->job.status), "inference failed: %s",
                                   r->job.error);
    }
    kl__buf b = {0};
    size_t header_len = 0;
    kl_error err = {0};
    if (kl__respond_infer(v, &r->req, &r->job, &b, &header_len, &err) != KL_OK) {
        kl__buf_free(&b);
        count_outcome(v, false, took);
        return kl__http_send_failure(r, &err);
    }
    count_outcome(v, true, took);
    kl__drift_observe(v->drift, r->job.x, r->job.n, r->job.classes, r->job.out);
    if (header_len < b.n)
        return kl__http_send_buf(r, MHD_HTTP_OK, &b, "application/octet-stream", header_len);
    return kl__http_send_json(r, MHD_HTTP_OK, &b);
}
