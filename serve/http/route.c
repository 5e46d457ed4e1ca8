/* The HTTP side of kiln serve, on libmicrohttpd: a thread pool polling with epoll, one request
 * context per request, the routes of the Open Inference Protocol v2 REST API, body limits and
 * auth. An inference request is parsed and checked in the HTTP thread, queued on its model
 * version, and its connection suspended; the instance that runs it resumes the connection, and
 * the handler, called again, answers. So a slow model call never holds an HTTP thread, and
 * thousands of connections can wait on a few threads. Every error is {"error": "..."} with the
 * status the protocol uses: 400 bad request, 401 no token, 404 unknown model or route, 405 wrong
 * method, 409 a model that does not learn, 413 body too large, 414 query too long, 429 feedback
 * rate spent, 503 queue full, not ready or too many connections (408, a request not whole in
 * time, comes from conn.c). */
#include <math.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kiln/version.h"
#include "serve/codec/codec.h"
#include "serve/http/http_impl.h"
#include "serve/patterns/composite.h"
#include "serve/patterns/patterns.h"
#include "serve/repo/repo.h"
#include "serve/sched/sched.h"

typedef struct req_ctx {
    kl_server *s;
    struct MHD_Connection *conn;
    char *body; /* NUL-terminated */
    size_t len, cap;
    bool too_big;
    bool whole;      /* the body is read (the handler's last call has come) */
    kl__conn *guard; /* the connection's (conn.c); NULL when it could not be made */
    kl__version *v;  /* the served version the request named (referenced): counted on it */
    kl__infer_request req;
    kl__job job;
    bool submitted;
    bool queue_full;
    float *px;         /* the model's input when patterns made it (lookup, pre steps) */
    kl__flow *flow;    /* a pipeline's or ensemble's request */
    kl_status flow_st; /* a flow that could not start */
    char *flow_error;
    kl__feedback *fb; /* a feedback request's samples, once checked (learn.c) */
    /* For the metrics and the access log. */
    kl__endpoint ep;
    unsigned code;      /* of the answer, once queued */
    double t0, t0_wall; /* arrival: monotonic, and Unix time */
    uint64_t bytes_in, bytes_out;
    unsigned retry_after_s; /* > 0: a Retry-After header with the answer */
    char rid[136];          /* the request id, once known */
    char method[16];        /* with an access log */
    char *path;             /* with an access log */
} req_ctx;

/* ---- answers ---- */

/* Whether a client's id can go into a header as it is: printable ASCII, no spaces, 1-128 bytes. */
static bool header_safe(const char *id)
{
    size_t n = 0;
    for (; id && id[n]; n++)
        if (id[n] < 0x21 || id[n] > 0x7e || n == 128)
            return false;
    return n > 0;
}

/* The request's id: the inference request's "id", else the client's X-Request-Id header (asked
 * only while the request's headers are there), else a new one. */
static const char *request_id(req_ctx *r, bool headers)
{
    if (r->rid[0])
        return r->rid;
    const char *id = r->req.id;
    if (!header_safe(id) && headers)
        id = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    if (header_safe(id))
        snprintf(r->rid, sizeof r->rid, "%s", id);
    else
        kl__request_id_new(r->s, r->rid, sizeof r->rid);
    return r->rid;
}

static enum MHD_Result send_buf(req_ctx *r, unsigned code, kl__buf *b, const char *type,
                                size_t header_len)
{
    if (b->failed || !b->p) {
        kl__buf_free(b);
        kl__buf_puts(b, "{\"error\":\"out of memory\"}");
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
        header_len = 0;
        type = "application/json";
        if (b->failed)
            return MHD_NO;
    }
    r->code = code;
    r->bytes_out = b->n;
    kl__metrics_count(r->s, r->v, r->ep, code, kl_now() - r->t0);
    struct MHD_Response *resp = MHD_create_response_from_buffer(b->n, b->p, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        kl__buf_free(b);
        return MHD_NO;
    }
    *b = (kl__buf){0}; /* the response owns the bytes */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(resp, "X-Request-Id", request_id(r, true));
    if (header_len) {
        char n[32];
        snprintf(n, sizeof n, "%zu", header_len);
        MHD_add_response_header(resp, "Inference-Header-Content-Length", n);
    }
    if (code == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    if (r->retry_after_s) {
        char secs[16];
        snprintf(secs, sizeof secs, "%u", r->retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    /* An answer before the body is read leaves the body unread: the connection closes. */
    if (atomic_load(&r->s->stopping) || !r->whole)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    kl__conn_answered(r->s, r->guard);
    enum MHD_Result ret = MHD_queue_response(r->conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result send_json(req_ctx *r, unsigned code, kl__buf *b)
{
    return send_buf(r, code, b, "application/json", 0);
}

static enum MHD_Result send_error(req_ctx *r, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum MHD_Result send_error(req_ctx *r, unsigned code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    kl__buf b = {0};
    kl__buf_puts(&b, "{\"error\":");
    kl__buf_json_string(&b, msg);
    kl__buf_puts(&b, "}");
    return send_json(r, code, &b);
}

/* A kiln call's failure, answered with the status kl__http_status gives it and its message. */
static enum MHD_Result send_failure(req_ctx *r, const kl_error *err)
{
    return send_error(r, kl__http_status(err->status), "%s", err->msg);
}

/* ---- inference ---- */

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
        return send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
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
        return send_error(r, kl__http_status(st), "model %s: %s", v->model->name, msg);
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
        return send_failure(r, &err);
    }
    pthread_mutex_lock(&v->mu);
    v->stats.success.count++;
    v->stats.success.ns += (uint64_t)((kl_now() - r->t0) * 1e9);
    v->stats.inferences += (uint64_t)f->n;
    v->stats.last_ms = (uint64_t)time(NULL) * 1000;
    pthread_mutex_unlock(&v->mu);
    if (header_len < b.n)
        return send_buf(r, MHD_HTTP_OK, &b, "application/octet-stream", header_len);
    return send_json(r, MHD_HTTP_OK, &b);
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

/* Parses the body as an inference request into r->req (JSON, or the binary extension with
 * Inference-Header-Content-Length); KL_EINVAL for the client. */
static kl_status parse_body(req_ctx *r, kl_error *err)
{
    size_t json_len = r->len;
    const char *hl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (hl) {
        char *end = NULL;
        unsigned long long x = strtoull(hl, &end, 10);
        if (!*hl || *end || hl[0] == '-' || x > r->len)
            return kl_error_set(err, KL_EINVAL,
                                "Inference-Header-Content-Length '%s' is not a length within "
                                "the body's %zu bytes",
                                hl, r->len);
        json_len = (size_t)x;
    }
    return kl__infer_decode(r->body ? r->body : "", r->len, json_len, &r->req, err);
}

static enum MHD_Result infer_start(req_ctx *r, const char *model, int64_t version)
{
    kl_server *s = r->s;
    kl_error err = {0};
    r->ep = KL__EP_INFER;
    if (!(r->v = kl__serve_acquire(s, model, version, &err)))
        return send_failure(r, &err);
    if (parse_body(r, &err) != KL_OK)
        return send_failure(r, &err);
    int64_t n = 0;
    if (kl__patterned(r->v)) {
        if (kl__patterns_input(r->v, &r->req, &r->px, &n, &err) != KL_OK)
            return send_failure(r, &err);
    } else if (!check_input(r, r->v, &err)) {
        return send_failure(r, &err);
    } else {
        n = r->req.inputs[0].shape[0];
    }
    if (kl__respond_check_outputs(r->v, &r->req, &err) != KL_OK)
        return send_failure(r, &err);
    if (r->v->pat && r->v->pat->comp)
        return flow_start(r, n);
    const kl_modelfile_signature *sig = r->v->sig;
    r->job = (kl__job){
        .x = r->px ? r->px : r->req.inputs[0].data, .n = n, .done_fn = job_done, .ctx = r};
    r->job.out = malloc((size_t)(n * sig->outputs) * sizeof *r->job.out);
    r->job.classes = malloc((size_t)n * sizeof *r->job.classes);
    if (!r->job.out || !r->job.classes)
        return send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
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

static enum MHD_Result infer_finish(req_ctx *r)
{
    kl__version *v = r->v;
    if (r->flow)
        return flow_finish(r);
    double took = kl_now() - r->job.t_queued;
    if (r->queue_full) {
        count_outcome(v, false, 0);
        return send_error(r, kl__http_status(KL_EFULL),
                          "model %s version %lld has %d requests waiting: try again later",
                          v->model->name, (long long)v->number, v->cfg.max_queue);
    }
    if (r->job.expired) /* counted where it expired */
        return send_error(r, kl__http_status(r->job.status), "model %s version %lld: %s",
                          v->model->name, (long long)v->number, r->job.error);
    kl__metrics_observe_job(v, &r->job);
    if (r->job.status != KL_OK) {
        count_outcome(v, false, took);
        return send_error(r, kl__http_status(r->job.status), "inference failed: %s", r->job.error);
    }
    kl__buf b = {0};
    size_t header_len = 0;
    kl_error err = {0};
    if (kl__respond_infer(v, &r->req, &r->job, &b, &header_len, &err) != KL_OK) {
        kl__buf_free(&b);
        count_outcome(v, false, took);
        return send_failure(r, &err);
    }
    count_outcome(v, true, took);
    kl__drift_observe(v->drift, r->job.x, r->job.n, r->job.classes, r->job.out);
    if (header_len < b.n)
        return send_buf(r, MHD_HTTP_OK, &b, "application/octet-stream", header_len);
    return send_json(r, MHD_HTTP_OK, &b);
}

/* ---- auth ---- */

/* Whether the request carries the server's token: "Authorization: Bearer TOKEN" with the scheme
 * in any case (RFC 7235 section 2.1 makes it case-insensitive) and one or more spaces before the
 * token. The comparison takes the same time wherever the token differs. */
static bool authorized(req_ctx *r)
{
    const char *tok = r->s->auth_token;
    if (!tok)
        return true;
    const char *h =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer", 6) || h[6] != ' ')
        return false;
    h += 6;
    while (*h == ' ')
        h++;
    size_t n = strlen(tok), m = strlen(h);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) /* the same time whatever matches */
        diff |= (unsigned char)(tok[i] ^ (i < m ? h[i] : 0));
    return diff == 0;
}

/* The answer to a request for an endpoint that changes what the server serves (or shows its
 * repository) without the server's token. */
static enum MHD_Result send_unauthorized(req_ctx *r, const char *what)
{
    return send_error(r, MHD_HTTP_UNAUTHORIZED,
                      "%s needs 'Authorization: Bearer <token>' with the token the server was "
                      "started with (--auth-token)",
                      what);
}

/* ---- feedback (online learning, learn.c) ---- */

static void feedback_done(kl__feedback *fb)
{
    req_ctx *r = fb->ctx;
    kl_server *s = r->s;
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&s->pending, 1);
}

/* Checks and copies the samples and labels, queues them on the model's learner, and suspends
 * the connection until the learner has taken their steps. */
static enum MHD_Result feedback_start(req_ctx *r, const char *model, int64_t version)
{
    kl_server *s = r->s;
    kl_error err = {0};
    r->ep = KL__EP_FEEDBACK;
    if (!authorized(r)) /* feedback retrains the model and publishes versions */
        return send_unauthorized(r, "feedback (online learning)");
    if (!(r->v = kl__serve_acquire(s, model, version, &err)))
        return send_failure(r, &err);
    double retry_s = 0;
    kl_status st = kl__learn_admit(s, r->v, &retry_s, &err);
    if (st == KL_OK && retry_s > 0) { /* before the body is parsed: refusing costs little */
        r->retry_after_s = retry_s < 86400 ? (unsigned)ceil(retry_s) : 86400;
        return send_error(r, MHD_HTTP_TOO_MANY_REQUESTS,
                          "model %s takes %g feedback requests a second at most "
                          "(online_learning.max_rate): try again in %u s",
                          model, r->v->cfg.online.max_rate, r->retry_after_s);
    }
    if (st == KL_OK)
        st = parse_body(r, &err);
    if (st == KL_OK)
        st = kl__feedback_new(r->v, &r->req, &r->fb, &err);
    if (st != KL_OK)
        return send_failure(r, &err);
    r->fb->done_fn = feedback_done;
    r->fb->ctx = r;
    MHD_suspend_connection(r->conn);
    atomic_fetch_add(&s->pending, 1);
    if ((st = kl__learn_submit(s, r->fb, &err)) != KL_OK) {
        atomic_fetch_sub(&s->pending, 1);
        r->fb->status = st;
        snprintf(r->fb->error, sizeof r->fb->error, "%s", err.msg);
        atomic_store(&r->fb->done, true);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* 200 with the learner's counts; else the learner's status (KL_EFULL: its queue was full) and
 * message. */
static enum MHD_Result feedback_finish(req_ctx *r)
{
    const kl__feedback *fb = r->fb;
    if (fb->status != KL_OK)
        return send_error(r, kl__http_status(fb->status), "%s", fb->error);
    kl__buf b = {0};
    kl__buf_puts(&b, "{\"model_name\":");
    kl__buf_json_string(&b, r->v->model->name);
    kl__buf_printf(&b, ",\"model_version\":\"%lld\"", (long long)r->v->number);
    if (r->req.id) {
        kl__buf_puts(&b, ",\"id\":");
        kl__buf_json_string(&b, r->req.id);
    }
    kl__buf_printf(&b, ",\"accepted\":%lld,\"steps\":%lld,\"published_version\":", (long long)fb->n,
                   (long long)fb->steps);
    if (fb->published)
        kl__buf_printf(&b, "\"%lld\"}", (long long)fb->published);
    else
        kl__buf_puts(&b, "null}");
    return send_json(r, MHD_HTTP_OK, &b);
}

/* ---- the other routes ---- */

static enum MHD_Result model_route(req_ctx *r, const char *model, int64_t version, const char *what)
{
    kl_server *s = r->s;
    kl_error err = {0};
    r->ep = !what ? KL__EP_METADATA : !strcmp(what, "ready") ? KL__EP_READY : KL__EP_STATS;
    kl__version *v = kl__serve_acquire(s, model, version, &err);
    if (!v)
        return send_failure(r, &err);
    r->v = v; /* the answer is counted on it; completed() releases it */
    kl__buf b = {0};
    if (!what) {
        pthread_rwlock_rdlock(&s->lock);
        kl__respond_model_metadata(v->model, v, &b);
        pthread_rwlock_unlock(&s->lock);
    } else if (!strcmp(what, "ready")) {
        kl__buf_puts(&b, "{\"name\":");
        kl__buf_json_string(&b, model);
        kl__buf_printf(&b, ",\"version\":\"%lld\",\"ready\":true}", (long long)v->number);
    } else { /* stats: of one version, or of every version served */
        pthread_rwlock_rdlock(&s->lock);
        kl__model *m = v->model;
        if (version >= 0)
            kl__respond_stats(&v, 1, &b);
        else
            kl__respond_stats(m->versions, m->nversions, &b);
        pthread_rwlock_unlock(&s->lock);
    }
    return send_json(r, MHD_HTTP_OK, &b);
}

static enum MHD_Result repository_route(req_ctx *r, int nseg, char **seg)
{
    kl_server *s = r->s;
    if (!authorized(r))
        return send_unauthorized(r, "the repository endpoints");
    if (nseg == 3 && !strcmp(seg[2], "index")) {
        kl__buf b = {0};
        kl__respond_index(s, &b);
        return send_json(r, MHD_HTTP_OK, &b);
    }
    if (nseg != 5 || strcmp(seg[2], "models") ||
        (strcmp(seg[4], "load") && strcmp(seg[4], "unload")))
        return send_error(r, MHD_HTTP_NOT_FOUND, "no such repository endpoint");
    if (!kl__serve_name_ok(seg[3]))
        return send_error(r, kl__http_status(KL_EINVAL),
                          "'%s' is not a model name (letters, digits, '_', '-', '.')", seg[3]);
    kl_error err = {0};
    bool load = !strcmp(seg[4], "load");
    kl_status st =
        load ? kl__serve_load_model(s, seg[3], &err) : kl__serve_unload_model(s, seg[3], &err);
    if (st == KL_OK) {
        kl__serve_log(s, "model %s %s through the repository API", seg[3],
                      load ? "loaded" : "unloaded");
        kl__buf b = {0};
        kl__buf_puts(&b, "{}");
        return send_json(r, MHD_HTTP_OK, &b);
    }
    return send_failure(r, &err);
}

static bool server_ready(kl_server *s)
{
    if (atomic_load(&s->stopping))
        return false;
    bool ready = true;
    pthread_rwlock_rdlock(&s->lock);
    for (int i = 0; i < s->nmodels; i++)
        /* A model whose config or files failed to load (m->error, or notes and no version) is in
         * the index, not a reason to take every other model out of service. */
        ready &= s->models[i]->unloaded || s->models[i]->removed || s->models[i]->error ||
                 s->models[i]->nnotes > 0 || s->models[i]->nversions > 0;
    pthread_rwlock_unlock(&s->lock);
    return ready;
}

static enum MHD_Result method_not_allowed(req_ctx *r, const char *allow)
{
    return send_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "use %s here", allow);
}

/* Splits "/a/b/c" into at most 8 segments (in place); -1 for more, or a path without a leading
 * slash. Empty segments ("//", a trailing slash) come back empty. */
static int split_path(char *path, char **seg)
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    for (char *p = path + 1;;) {
        if (n == 8)
            return -1;
        seg[n++] = p;
        char *q = strchr(p, '/');
        if (!q)
            return n;
        *q = '\0';
        p = q + 1;
    }
}

static enum MHD_Result route(req_ctx *r, const char *url, const char *method)
{
    bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    char path[512];
    if (strlen(url) >= sizeof path)
        return send_error(r, MHD_HTTP_NOT_FOUND, "no route for a path that long");
    snprintf(path, sizeof path, "%s", url);
    char *seg[8];
    int n = split_path(path, seg);
    for (int i = 0; i < n; i++)
        if (!seg[i][0])
            n = -1;
    if (n == 1 && !strcmp(seg[0], "metrics")) {
        r->ep = KL__EP_METRICS;
        if (!get)
            return method_not_allowed(r, "GET");
        kl__buf m = {0};
        kl__metrics_render(r->s, &m);
        return send_buf(r, MHD_HTTP_OK, &m, KL__METRICS_CONTENT_TYPE, 0);
    }
    if (n < 1 || strcmp(seg[0], "v2"))
        return send_error(r, MHD_HTTP_NOT_FOUND, "no route for %s %s", method, url);
    kl__buf b = {0};
    if (n == 1) {
        r->ep = KL__EP_SERVER;
        if (!get)
            return method_not_allowed(r, "GET");
        kl__buf_printf(&b,
                       "{\"name\":\"kiln\",\"version\":\"%s\",\"extensions\":[\"binary_tensor_"
                       "data\",\"model_repository\",\"statistics\"]}",
                       KL_VERSION);
        return send_json(r, MHD_HTTP_OK, &b);
    }
    if (n == 3 && !strcmp(seg[1], "health") &&
        (!strcmp(seg[2], "live") || !strcmp(seg[2], "ready"))) {
        r->ep = KL__EP_HEALTH;
        if (!get)
            return method_not_allowed(r, "GET");
        bool live = !strcmp(seg[2], "live");
        bool ok = live || server_ready(r->s);
        kl__buf_printf(&b, "{\"%s\":%s}", seg[2], ok ? "true" : "false");
        return send_json(r, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, &b);
    }
    if (!strcmp(seg[1], "repository")) {
        r->ep = KL__EP_REPOSITORY;
        if (!post)
            return method_not_allowed(r, "POST");
        return repository_route(r, n, seg);
    }
    if (n < 3 || strcmp(seg[1], "models"))
        return send_error(r, MHD_HTTP_NOT_FOUND, "no route for %s %s", method, url);
    const char *model = seg[2];
    if (!kl__serve_name_ok(model))
        return send_error(r, kl__http_status(KL_EINVAL),
                          "'%s' is not a model name (letters, digits, '_', '-', '.')", model);
    int64_t version = -1;
    int at = 3;
    if (n >= 5 && !strcmp(seg[3], "versions")) {
        char *end = NULL;
        long long v = strtoll(seg[4], &end, 10);
        if (*end || v <= 0 || seg[4][0] == '+' || seg[4][0] == ' ')
            return send_error(r, kl__http_status(KL_ENOTFOUND), "model '%s' has no version '%s'",
                              model, seg[4]);
        version = v;
        at = 5;
    }
    const char *what = at < n ? seg[at] : NULL;
    if (at + 1 < n || (what && strcmp(what, "ready") && strcmp(what, "infer") &&
                       strcmp(what, "stats") && strcmp(what, "feedback")))
        return send_error(r, MHD_HTTP_NOT_FOUND, "no route for %s %s", method, url);
    if (what && !strcmp(what, "feedback")) {
        if (!post)
            return method_not_allowed(r, "POST");
        return feedback_start(r, model, version);
    }
    if (what && !strcmp(what, "infer")) {
        if (!post)
            return method_not_allowed(r, "POST");
        return infer_start(r, model, version);
    }
    if (!get)
        return method_not_allowed(r, "GET");
    return model_route(r, model, version, what);
}

/* ---- libmicrohttpd's callbacks ---- */

/* The most query parameters a request may carry: kiln's routes read none. */
#define MAX_QUERY_PARAMS 64

/* The connection guard (conn.c) of conn, or NULL. */
static kl__conn *conn_guard(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

static enum MHD_Result count_transfer_encoding(void *cls, enum MHD_ValueKind kind, const char *key,
                                               const char *value)
{
    *(int *)cls += !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return MHD_YES;
}

/* Refusals that need no body, made as soon as a request's headers are whole: a connection past
 * --max-connections, a long query, a body in a form kiln cannot read, a body announced larger
 * than --max-body-mb. send_buf closes the connection after any of them (the body is unread).
 * MHD_YES with nothing queued lets the request go on. */
static enum MHD_Result refuse_early(req_ctx *r, struct MHD_Connection *conn)
{
    kl_server *s = r->s;
    if (r->guard && r->guard->over) {
        r->retry_after_s = 1;
        return send_error(r, kl__http_status(KL_EFULL),
                          "the server holds its limit of %d connections (--max-connections): "
                          "try again later",
                          s->o.max_connections);
    }
    /* 414: the query is part of the target URI, longer than the server will interpret. */
    if (r->guard && r->guard->query_params > MAX_QUERY_PARAMS)
        return send_error(r, MHD_HTTP_URI_TOO_LONG,
                          "the query has %d parameters; kiln's routes take none and it reads at "
                          "most %d: send the request without them",
                          r->guard->query_params, MAX_QUERY_PARAMS);
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    int nte = 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_transfer_encoding, &nte);
    /* chunked alone is the one transfer coding kiln reads. RFC 9112 section 6.3 wants 400 and
     * the connection closed when chunked is not the final coding (the body's length cannot be
     * known), and allows refusing, again closing, a request with both Transfer-Encoding and
     * Content-Length (a request smuggling vector). For a coding before chunked section 6.1
     * suggests 501, but a 5xx says the server failed; the client sent a body the API does not
     * take, and 415 is for content codings (Content-Encoding): so 400 for every case. */
    if (te && (nte > 1 || strcasecmp(te, "chunked") || cl))
        return send_error(r, MHD_HTTP_BAD_REQUEST,
                          "Transfer-Encoding '%s'%s: the server reads a body sent as it is, with "
                          "Content-Length, or with Transfer-Encoding: chunked alone",
                          te, cl ? " with Content-Length" : "");
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->o.max_body)
        return send_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
                          "the body (%s bytes) is larger than the server's limit of %lld", cl,
                          (long long)s->o.max_body);
    return MHD_YES;
}

/* The first call for a request, its headers whole and its body not yet read: its context. */
static enum MHD_Result request_begin(kl_server *s, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
    req_ctx *r = calloc(1, sizeof *r);
    if (!r)
        return MHD_NO;
    r->s = s;
    r->conn = conn;
    r->t0 = kl_now();
    r->guard = conn_guard(conn);
    atomic_fetch_add(&s->inflight, 1);
    *con_cls = r;
    if (s->access_log) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        r->t0_wall = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = strdup(url);
    }
    kl__conn_headers_done(s, r->guard);
    return refuse_early(r, conn);
}

/* A piece of the body: kept, or counted only once it passed --max-body-mb. */
static enum MHD_Result body_part(req_ctx *r, const char *upload, size_t n)
{
    size_t max = (size_t)r->s->o.max_body;
    r->bytes_in += n;
    if (r->too_big)
        return MHD_YES;
    if (r->len + n > max) {
        r->too_big = true;
        free(r->body);
        r->body = NULL;
        r->len = r->cap = 0;
        return MHD_YES;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (!p)
            return MHD_NO;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, upload, n);
    r->len += n;
    r->body[r->len] = '\0';
    return MHD_YES;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    kl_server *s = cls;
    req_ctx *r = *con_cls;
    if (!r)
        return request_begin(s, conn, url, method, con_cls);
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        return body_part(r, upload, n);
    }
    if (!r->whole) {
        r->whole = true;
        kl__conn_body_done(s, r->guard);
    }
    if (r->fb)
        return atomic_load(&r->fb->done) ? feedback_finish(r) : MHD_YES;
    if (r->submitted)
        return atomic_load(&r->job.done) ? infer_finish(r) : MHD_YES;
    if (r->too_big)
        return send_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
                          "the body is larger than the server's limit of %lld bytes",
                          (long long)s->o.max_body);
    return route(r, url, method);
}

/* libmicrohttpd's first look at a request, its request line read, before it parses the query:
 * a kept-alive connection's next request starts its clock, and the query's parameters are
 * counted for refuse_early. libmicrohttpd keeps each parameter in its per-connection memory and
 * cannot answer a request whose parameters do not fit: it holds the connection instead. kiln's
 * routes take no query, so the query is cut off here, in libmicrohttpd's own buffer of the
 * line, which this callback is given before libmicrohttpd parses or changes it. */
static void *request_line(void *cls, const char *uri, struct MHD_Connection *conn)
{
    kl__conn *c = conn_guard(conn);
    kl__conn_request_line(cls, c);
    char *q = strchr(uri, '?');
    if (q && q[1]) {
        int n = 1;
        for (const char *p = q + 1; *p; p++)
            n += *p == '&';
        if (c)
            c->query_params = n;
        q[1] = '\0';
    }
    return NULL;
}

/* A connection opens (its guard, with the headers' deadline running) or closes (before its
 * socket does). */
static void connection_event(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode what)
{
    kl_server *s = cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *i =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = i ? kl__conn_open(s, i->connect_fd) : NULL;
    } else {
        kl__conn_close(s, *socket_context);
        *socket_context = NULL;
    }
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    kl_server *s = cls;
    req_ctx *r = *con_cls;
    kl__conn *c = conn_guard(conn);
    bool cut = kl__conn_was_cut(s, c);
    kl__conn_request_done(s, c);
    if (!r)
        return;
    if (s->access_log) {
        static const char *const ended[] = {
            [MHD_REQUEST_TERMINATED_WITH_ERROR] = "error",
            [MHD_REQUEST_TERMINATED_TIMEOUT_REACHED] = "timeout",
            [MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN] = "server stopping",
            [MHD_REQUEST_TERMINATED_READ_ERROR] = "read error",
            [MHD_REQUEST_TERMINATED_CLIENT_ABORT] = "client closed"};
        kl__access a = {.arrived_wall = r->t0_wall,
                        .id = request_id(r, false),
                        .method = r->method,
                        .path = r->path,
                        .v = r->v,
                        .code = r->code,
                        .ended = cut                                            ? "deadline"
                                 : (unsigned)why < sizeof ended / sizeof *ended ? ended[why]
                                                                                : "?",
                        .seconds = kl_now() - r->t0,
                        .bytes_in = r->bytes_in,
                        .bytes_out = r->bytes_out};
        kl__access_log(s, &a);
    }
    free(r->path);
    free(r->px);
    if (r->flow) {
        kl__flow_free(r->flow);
        free(r->flow);
    }
    free(r->flow_error);
    kl__feedback_free(r->fb);
    kl__infer_request_free(&r->req);
    free(r->job.out);
    free(r->job.classes);
    free(r->body);
    kl__version_release(r->v);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

kl_status kl__http_start(kl_server *s, kl_error *err)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (s->addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* Past --max-connections a connection is still taken, up to an eighth more, so that it can
     * be answered 503 (conn.c marks it); past that libmicrohttpd closes new ones unanswered. A
     * client address past its own limit is closed unanswered at once. */
    unsigned most = (unsigned)s->o.max_connections + (unsigned)s->o.max_connections / 8 + 8;
    unsigned per_client = s->o.max_per_client > 0 ? (unsigned)s->o.max_per_client
                                                  : 0; /* libmicrohttpd's "no limit" */
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&s->addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s, MHD_OPTION_CONNECTION_LIMIT, most,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client, MHD_OPTION_NOTIFY_CONNECTION,
        connection_event, s, MHD_OPTION_URI_LOG_CALLBACK, request_line, s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->daemon)
        return kl_error_set(err, KL_EIO,
                            "cannot listen on %s:%d (in use, or not an address of this machine?)",
                            s->host, s->o.port);
    kl_status st = kl__conn_watch_start(s, err);
    if (st != KL_OK) {
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
        return st;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->o.port;
    return KL_OK;
}

void kl__http_stop(kl_server *s, double grace_s)
{
    if (!s->daemon)
        return;
    atomic_store(&s->stopping, true);
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    double until = kl_now() + grace_s;
    while (atomic_load(&s->inflight) > 0 && kl_now() < until)
        kl__serve_sleep(0.01);
    /* Past the grace period, requests still held are slow readers, or jobs still queued: the
     * daemon may close the first, but not a suspended connection whose job an instance will
     * resume (and whose context it still writes to). Jobs end: a model call is bounded, and the
     * queue times out. */
    while (atomic_load(&s->pending) > 0)
        kl__serve_sleep(0.01);
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    kl__conn_watch_stop(s); /* every connection is closed: none is left to cut */
}
