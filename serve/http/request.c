/* What every route does with its request: its id, its body parsed as an inference request, and
 * its answer (headers, the metrics count, errors as {"error": "..."}). The routes and the
 * callbacks in route.c call these. */
#include <microhttpd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "serve/codec/codec.h"
#include "serve/http/http_impl.h"

/* Whether a client's id can go into a header as it is: printable ASCII, no spaces, 1-128 bytes. */
static bool header_safe(const char *id)
{
    size_t n = 0;
    for (; id && id[n]; n++)
        if (id[n] < 0x21 || id[n] > 0x7e || n == 128)
            return false;
    return n > 0;
}

const char *kl__http_request_id(req_ctx *r, bool headers)
{
    if (r->rid[0])
        return r->rid;
    const char *id =
        headers ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id") : NULL;
    if (header_safe(id))
        snprintf(r->rid, sizeof r->rid, "%s", id);
    else
        kl__request_id_new(r->s, r->rid, sizeof r->rid);
    return r->rid;
}

enum MHD_Result kl__http_send_buf(req_ctx *r, unsigned code, kl__buf *b, const char *type,
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
    MHD_add_response_header(resp, "X-Request-Id", kl__http_request_id(r, true));
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

enum MHD_Result kl__http_send_json(req_ctx *r, unsigned code, kl__buf *b)
{
    return kl__http_send_buf(r, code, b, "application/json", 0);
}

enum MHD_Result kl__http_send_error(req_ctx *r, unsigned code, const char *fmt, ...)
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
    return kl__http_send_json(r, code, &b);
}

/* A kiln call's failure, answered with the status kl__http_status gives it and its message. */
enum MHD_Result kl__http_send_failure(req_ctx *r, const kl_error *err)
{
    return kl__http_send_error(r, kl__http_status(err->status), "%s", err->msg);
}

kl_status kl__http_parse_body(req_ctx *r, kl__infer_request *q, kl_error *err)
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
    kl_status st = kl__infer_decode(r->body ? r->body : "", r->len, json_len, q, err);
    if (header_safe(q->id)) /* the request's id from now on, even when the rest is refused */
        snprintf(r->rid, sizeof r->rid, "%s", q->id);
    return st;
}

void kl__http_resume(req_ctx *r)
{
    kl_server *s = r->s; /* read first: once resumed, the request may end and free r */
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&s->pending, 1);
}
