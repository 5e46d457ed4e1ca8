/* The limits a request meets before a route sees it: connections past --max-connections, the
 * query's parameters, the body's transfer coding and its size (--max-body-mb). */
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "serve/http/http_impl.h"

/* The most query parameters a request may carry: kiln's routes read none. */
#define MAX_QUERY_PARAMS 64

static enum MHD_Result count_transfer_encoding(void *cls, enum MHD_ValueKind kind, const char *key,
                                               const char *value)
{
    *(int *)cls += !strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return MHD_YES;
}

/* Refusals that need no body, made as soon as a request's headers are whole: a connection past
 * --max-connections, a long query, a body in a form kiln cannot read, a body announced larger
 * than --max-body-mb. kl__http_send_buf closes the connection after any of them (the body is
 * unread). MHD_YES with nothing queued lets the request go on. */
enum MHD_Result kl__http_refuse_early(req_ctx *r, struct MHD_Connection *conn)
{
    kl_server *s = r->s;
    if (r->guard && r->guard->over) {
        r->retry_after_s = 1;
        return kl__http_send_error(
            r, kl__http_status(KL_EFULL),
            "the server holds its limit of %d connections (--max-connections): "
            "try again later",
            s->o.max_connections);
    }
    /* 414: the query is part of the target URI, longer than the server will interpret. */
    if (r->guard && r->guard->query_params > MAX_QUERY_PARAMS)
        return kl__http_send_error(
            r, MHD_HTTP_URI_TOO_LONG,
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
        return kl__http_send_error(
            r, MHD_HTTP_BAD_REQUEST,
            "Transfer-Encoding '%s'%s: the server reads a body sent as it is, with "
            "Content-Length, or with Transfer-Encoding: chunked alone",
            te, cl ? " with Content-Length" : "");
    if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->o.max_body)
        return kl__http_send_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
                                   "the body (%s bytes) is larger than the server's limit of %lld",
                                   cl, (long long)s->o.max_body);
    return MHD_YES;
}

/* A piece of the body: kept, or counted only once it passed --max-body-mb. */
enum MHD_Result kl__http_body_part(req_ctx *r, const char *upload, size_t n)
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
