/* Private to serve/http/: a request's context, the answers, auth, limits and routes the route
 * files share, connections and their deadlines (conn.c), and the metrics and access log
 * (metrics.c). */
#ifndef KILN_SERVE_HTTP_IMPL_H
#define KILN_SERVE_HTTP_IMPL_H

#include <microhttpd.h>

#include "serve/codec/codec.h"
#include "serve/http/http.h"

/* An open connection, from libmicrohttpd's "started" notification to its "closed" one (conn.c).
 * Its owner, the HTTP thread that serves it, changes phase; the watchdog reads the deadline and
 * sets cut, all under the server's conn_mu. */
typedef struct kl__conn {
    struct kl__conn *prev, *next; /* the server's list */
    int fd;
    int phase;           /* conn.c's PHASE_* */
    int64_t deadline_ns; /* monotonic; 0: none */
    bool over;           /* opened past --max-connections: its request gets 503 */
    bool answered;       /* kiln queued an answer for the request being read */
    bool cut;            /* shut down at its deadline */
    int query_params;    /* in the request line being served */
} kl__conn;

/* A new connection on socket fd, its headers' deadline running (NULL: out of memory, not
 * guarded); kl__conn_close forgets it, before its socket is closed. */
kl__conn *kl__conn_open(kl_server *s, int fd);
void kl__conn_close(kl_server *s, kl__conn *c);
/* The phases of a request on c (c may be NULL): its request line read, its headers whole, its
 * body whole, an answer queued, its answer sent. */
void kl__conn_request_line(kl_server *s, kl__conn *c);
void kl__conn_headers_done(kl_server *s, kl__conn *c);
void kl__conn_body_done(kl_server *s, kl__conn *c);
void kl__conn_answered(kl_server *s, kl__conn *c);
void kl__conn_request_done(kl_server *s, kl__conn *c);
/* Whether the watchdog cut c at its deadline. */
bool kl__conn_was_cut(kl_server *s, kl__conn *c);
/* The watchdog thread, which cuts connections past their deadline. */
kl_status kl__conn_watch_start(kl_server *s, kl_error *err);
void kl__conn_watch_stop(kl_server *s);
int kl__conn_count(kl_server *s);

#define KL__METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Counts an answered request: on v's series, or on the server's (model="") when v is NULL; an
 * inference answered 200 also adds seconds (since it arrived) to the request histogram. */
void kl__metrics_count(kl_server *s, kl__version *v, kl__endpoint ep, unsigned code,
                       double seconds);
/* The queue and compute times of a job that ran. */
void kl__metrics_observe_job(kl__version *v, const kl__job *job);
/* Every metric in the Prometheus text exposition format 0.0.4. */
void kl__metrics_render(kl_server *s, kl__buf *b);

/* One access log line's fields. */
typedef struct kl__access {
    double arrived_wall; /* Unix time, seconds */
    const char *id, *method, *path;
    const kl__version *v; /* NULL: the request named no served version */
    unsigned code;        /* 0: no answer was sent */
    const char *ended;    /* NULL, or why the connection ended without a complete answer */
    double seconds;
    uint64_t bytes_in, bytes_out;
} kl__access;

/* Writes one JSON line (nothing without a log). */
void kl__access_log(kl_server *s, const kl__access *a);
/* A new server-generated request id into out (32 bytes or more). */
void kl__request_id_new(kl_server *s, char *out, size_t n);

typedef struct req_ctx req_ctx;

/* The state of a route that keeps any (inference, feedback): a struct of the route's own that
 * starts with this one, made by the route and freed with the request however it ends. */
typedef struct kl__route_state {
    /* Set when the route suspends the connection: called on each later call of the handler, it
     * answers once the work the connection waits on is done, and returns MHD_YES until then. */
    enum MHD_Result (*resumed)(req_ctx *r);
    void (*free)(struct kl__route_state *st);
} kl__route_state;

/* One request's context, from its headers to its end (route.c's completed frees it): what every
 * route shares; a route's own fields are in its route state. */
struct req_ctx {
    kl_server *s;
    struct MHD_Connection *conn;
    char *body; /* NUL-terminated */
    size_t len, cap;
    bool too_big;
    bool whole;             /* the body is read (the handler's last call has come) */
    kl__conn *guard;        /* the connection's (conn.c); NULL when it could not be made */
    kl__version *v;         /* the served version the request named (referenced): counted on it */
    kl__route_state *route; /* NULL: the route keeps no state */
    /* For the metrics and the access log. */
    kl__endpoint ep;
    unsigned code;      /* of the answer, once queued */
    double t0, t0_wall; /* arrival: monotonic, and Unix time */
    uint64_t bytes_in, bytes_out;
    unsigned retry_after_s; /* > 0: a Retry-After header with the answer */
    char rid[136];          /* the request id, once known */
    char method[16];        /* with an access log */
    char *path;             /* with an access log */
};

/* A suspended request's work is done (called from the worker that finished it): resumes its
 * connection, so that the route's finish runs, and counts it out of the server's pending work. */
void kl__http_resume(req_ctx *r);

/* Answers (request.c). Each counts the answer on r->v, or on the server when r->v is NULL, and
 * closes the connection when the body was not read or the server stops; header_len > 0 marks a
 * binary answer's JSON header. */
enum MHD_Result kl__http_send_buf(req_ctx *r, unsigned code, kl__buf *b, const char *type,
                                  size_t header_len);
enum MHD_Result kl__http_send_json(req_ctx *r, unsigned code, kl__buf *b);
enum MHD_Result kl__http_send_error(req_ctx *r, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A kiln call's failure, answered with the status kl__http_status gives it and its message. */
enum MHD_Result kl__http_send_failure(req_ctx *r, const kl_error *err);
/* The request's id: the inference request's "id" (kept by kl__http_parse_body), else the
 * client's X-Request-Id header (read only while headers is true: the request's headers are
 * there), else a new one. */
const char *kl__http_request_id(req_ctx *r, bool headers);
/* Parses the body as an inference request into q (JSON, or the binary extension with
 * Inference-Header-Content-Length), and keeps its "id" as the request's; KL_EINVAL for the
 * client. */
kl_status kl__http_parse_body(req_ctx *r, kl__infer_request *q, kl_error *err);

/* Whether the request carries the server's token (auth.c), and the 401 for one that does not;
 * what names the endpoint. */
bool kl__http_authorized(req_ctx *r);
enum MHD_Result kl__http_send_unauthorized(req_ctx *r, const char *what);

/* The refusals made once a request's headers are whole, before its body (limits.c): MHD_YES with
 * nothing queued lets it go on. */
enum MHD_Result kl__http_refuse_early(req_ctx *r, struct MHD_Connection *conn);
/* A piece of the body: kept, or only counted once it passed --max-body-mb. */
enum MHD_Result kl__http_body_part(req_ctx *r, const char *upload, size_t n);

/* The routes. Inference (infer_route.c) and feedback (feedback_route.c) suspend the connection
 * and answer through their route state's resumed. */
enum MHD_Result kl__http_infer(req_ctx *r, const char *model, int64_t version);
enum MHD_Result kl__http_feedback(req_ctx *r, const char *model, int64_t version);
/* A model's metadata (what NULL), "ready" or "stats" (model_route.c). */
enum MHD_Result kl__http_model(req_ctx *r, const char *model, int64_t version, const char *what);
/* POST /v2/repository/...: nseg segments of the path in seg. */
enum MHD_Result kl__http_repository(req_ctx *r, int nseg, char **seg);

#endif
