/* Private to serve/http/: connections and their deadlines (conn.c), and the metrics and access
 * log (metrics.c), as the routes use them. */
#ifndef KILN_SERVE_HTTP_IMPL_H
#define KILN_SERVE_HTTP_IMPL_H

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

#endif
