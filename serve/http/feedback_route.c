/* The feedback route, POST /v2/models/NAME[/versions/N]/feedback: labelled samples for online
 * learning (patterns/learn.c), rate-limited, queued on the model's learner, and answered once
 * the learner has taken their steps. */
#include <math.h>
#include <microhttpd.h>
#include <stdio.h>

#include "serve/codec/codec.h"
#include "serve/http/http_impl.h"
#include "serve/patterns/patterns.h"
#include "serve/repo/repo.h"

static void feedback_done(kl__feedback *fb)
{
    req_ctx *r = fb->ctx;
    kl_server *s = r->s;
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&s->pending, 1);
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
        st = kl__http_parse_body(r, &err);
    if (st == KL_OK)
        st = kl__feedback_new(r->v, &r->req, &r->fb, &err);
    if (st != KL_OK)
        return kl__http_send_failure(r, &err);
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
enum MHD_Result kl__http_feedback_finish(req_ctx *r)
{
    const kl__feedback *fb = r->fb;
    if (fb->status != KL_OK)
        return kl__http_send_error(r, kl__http_status(fb->status), "%s", fb->error);
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
    return kl__http_send_json(r, MHD_HTTP_OK, &b);
}
