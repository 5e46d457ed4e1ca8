/* The feedback route, POST /v2/models/NAME[/versions/N]/feedback: labelled samples for online
 * learning (patterns/learn.c), rate-limited, queued on the model's learner, and answered once
 * the learner has taken their steps. */
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>

#include "serve/codec/codec.h"
#include "serve/http/http_impl.h"
#include "serve/patterns/patterns.h"
#include "serve/repo/repo.h"

/* The feedback route's state. */
typedef struct feedback_state {
    kl__route_state base;
    kl__infer_request req;
    kl__feedback *fb; /* the samples, once checked (learn.c) */
} feedback_state;

static void state_free(kl__route_state *base)
{
    feedback_state *fs = (feedback_state *)base;
    kl__feedback_free(fs->fb);
    kl__infer_request_free(&fs->req);
    free(fs);
}

static enum MHD_Result feedback_finish(req_ctx *r);

static void feedback_done(kl__feedback *fb)
{
    kl__http_resume(fb->ctx);
}

/* Checks and copies the samples and labels, queues them on the model's learner, and suspends
 * the connection until the learner has taken their steps. */
enum MHD_Result kl__http_feedback(req_ctx *r, const char *model, int64_t version)
{
    kl_server *s = r->s;
    kl_error err = {0};
    r->ep = KL__EP_FEEDBACK;
    if (!kl__http_authorized(r)) /* feedback retrains the model and publishes versions */
        return kl__http_send_unauthorized(r, "feedback (online learning)");
    feedback_state *fs = calloc(1, sizeof *fs);
    if (!fs)
        return kl__http_send_error(r, kl__http_status(KL_ENOMEM), "out of memory");
    fs->base.free = state_free;
    r->route = &fs->base;
    if (!(r->v = kl__serve_acquire(s, model, version, &err)))
        return kl__http_send_failure(r, &err);
    double retry_s = 0;
    kl_status st = kl__learn_admit(s, r->v, &retry_s, &err);
    if (st == KL_OK && retry_s > 0) { /* before the body is parsed: refusing costs little */
        r->retry_after_s = retry_s < 86400 ? (unsigned)ceil(retry_s) : 86400;
        return kl__http_send_error(r, MHD_HTTP_TOO_MANY_REQUESTS,
                                   "model %s takes %g feedback requests a second at most "
                                   "(online_learning.max_rate): try again in %u s",
                                   model, r->v->cfg.online.max_rate, r->retry_after_s);
    }
    if (st == KL_OK)
        st = kl__http_parse_body(r, &fs->req, &err);
    if (st == KL_OK)
        st = kl__feedback_new(r->v, &fs->req, &fs->fb, &err);
    if (st != KL_OK)
        return kl__http_send_failure(r, &err);
    fs->fb->done_fn = feedback_done;
    fs->fb->ctx = r;
    fs->base.resumed = feedback_finish;
    MHD_suspend_connection(r->conn);
    atomic_fetch_add(&s->pending, 1);
    if ((st = kl__learn_submit(s, fs->fb, &err)) != KL_OK) {
        atomic_fetch_sub(&s->pending, 1);
        fs->fb->status = st;
        snprintf(fs->fb->error, sizeof fs->fb->error, "%s", err.msg);
        atomic_store(&fs->fb->done, true);
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}

/* 200 with the learner's counts; else the learner's status (KL_EFULL: its queue was full) and
 * message. */
static enum MHD_Result feedback_finish(req_ctx *r)
{
    feedback_state *fs = (feedback_state *)r->route;
    kl__feedback *fb = fs->fb;
    if (!atomic_load(&fb->done))
        return MHD_YES;
    if (fb->status != KL_OK)
        return kl__http_send_error(r, kl__http_status(fb->status), "%s", fb->error);
    kl__buf b = {0};
    kl__buf_puts(&b, "{\"model_name\":");
    kl__buf_json_string(&b, r->v->model->name);
    kl__buf_printf(&b, ",\"model_version\":\"%lld\"", (long long)r->v->number);
    if (fs->req.id) {
        kl__buf_puts(&b, ",\"id\":");
        kl__buf_json_string(&b, fs->req.id);
    }
    kl__buf_printf(&b, ",\"accepted\":%lld,\"steps\":%lld,\"published_version\":", (long long)fb->n,
                   (long long)fb->steps);
    if (fb->published)
        kl__buf_printf(&b, "\"%lld\"}", (long long)fb->published);
    else
        kl__buf_puts(&b, "null}");
    return kl__http_send_json(r, MHD_HTTP_OK, &b);
}
