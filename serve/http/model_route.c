/* The routes about models rather than inference: a model's metadata, readiness and statistics
 * (GET /v2/models/NAME[/versions/N][/ready|/stats]), and the repository API (POST
 * /v2/repository/index, .../models/NAME/load|unload). */
#include <microhttpd.h>
#include <string.h>

#include "serve/codec/codec.h"
#include "serve/http/http_impl.h"
#include "serve/repo/repo.h"

enum MHD_Result kl__http_model(req_ctx *r, const char *model, int64_t version, const char *what)
{
    kl_server *s = r->s;
    kl_error err = {0};
    r->ep = !what ? KL__EP_METADATA : !strcmp(what, "ready") ? KL__EP_READY : KL__EP_STATS;
    kl__version *v = kl__serve_acquire(s, model, version, &err);
    if (!v)
        return kl__http_send_failure(r, &err);
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
    return kl__http_send_json(r, MHD_HTTP_OK, &b);
}

enum MHD_Result kl__http_repository(req_ctx *r, int nseg, char **seg)
{
    kl_server *s = r->s;
    if (!kl__http_authorized(r))
        return kl__http_send_unauthorized(r, "the repository endpoints");
    if (nseg == 3 && !strcmp(seg[2], "index")) {
        kl__buf b = {0};
        kl__respond_index(s, &b);
        return kl__http_send_json(r, MHD_HTTP_OK, &b);
    }
    if (nseg != 5 || strcmp(seg[2], "models") ||
        (strcmp(seg[4], "load") && strcmp(seg[4], "unload")))
        return kl__http_send_error(r, MHD_HTTP_NOT_FOUND, "no such repository endpoint");
    if (!kl__serve_name_ok(seg[3]))
        return kl__http_send_error(r, kl__http_status(KL_EINVAL),
                                   "'%s' is not a model name (letters, digits, '_', '-', '.')",
                                   seg[3]);
    kl_error err = {0};
    bool load = !strcmp(seg[4], "load");
    kl_status st =
        load ? kl__serve_load_model(s, seg[3], &err) : kl__serve_unload_model(s, seg[3], &err);
    if (st == KL_OK) {
        kl__serve_log(s, "model %s %s through the repository API", seg[3],
                      load ? "loaded" : "unloaded");
        kl__buf b = {0};
        kl__buf_puts(&b, "{}");
        return kl__http_send_json(r, MHD_HTTP_OK, &b);
    }
    return kl__http_send_failure(r, &err);
}
