/* Connection guards: the count of open connections, and a deadline on each request's reading
 * that a watchdog thread enforces with 408, since libmicrohttpd's own timeout is idle-based
 * (serve/README.md, "A request in http/"). route.c calls these from libmicrohttpd's callbacks;
 * this file knows sockets only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "serve/http/http_impl.h"

/* What a connection is doing, which says what its deadline bounds. */
enum {
    PHASE_HEADERS,   /* reading a request's headers: from the connection's start */
    PHASE_BODY,      /* reading a body: from the end of its headers */
    PHASE_ANSWERING, /* the request is whole: no deadline until its answer has gone */
    PHASE_WAITING    /* kept alive between requests: the idle timeout, then the headers' */
};

static int64_t secs_ns(double s)
{
    return (int64_t)(s * 1e9);
}

kl__conn *kl__conn_open(kl_server *s, int fd)
{
    kl__conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->phase = PHASE_HEADERS;
    c->deadline_ns = kl_now_ns() + secs_ns(s->o.header_timeout_s);
    pthread_mutex_lock(&s->conn_mu);
    c->next = s->conns;
    if (c->next)
        c->next->prev = c;
    s->conns = c;
    c->over = ++s->nconns > s->o.max_connections;
    pthread_mutex_unlock(&s->conn_mu);
    return c;
}

void kl__conn_close(kl_server *s, kl__conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->conn_mu);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    pthread_mutex_unlock(&s->conn_mu);
    free(c);
}

/* Moves c to phase, its deadline `after` seconds from now (0: none), under the list's lock so
 * that the watchdog sees the phase and the deadline together. */
static void set_phase(kl_server *s, kl__conn *c, int phase, double after, bool keep_sooner)
{
    if (!c)
        return;
    int64_t at = after > 0 ? kl_now_ns() + secs_ns(after) : 0;
    pthread_mutex_lock(&s->conn_mu);
    if (!(keep_sooner && c->deadline_ns && c->deadline_ns < at))
        c->deadline_ns = at;
    c->phase = phase;
    pthread_mutex_unlock(&s->conn_mu);
}

void kl__conn_request_line(kl_server *s, kl__conn *c)
{
    /* The first request's clock runs from the connection's start; a kept-alive connection's
     * next request starts its own, never later than the wait allowed. */
    if (c && c->phase == PHASE_WAITING)
        set_phase(s, c, PHASE_HEADERS, s->o.header_timeout_s, true);
}

void kl__conn_headers_done(kl_server *s, kl__conn *c)
{
    set_phase(s, c, PHASE_BODY, s->o.body_timeout_s, false);
}

void kl__conn_body_done(kl_server *s, kl__conn *c)
{
    set_phase(s, c, PHASE_ANSWERING, 0, false);
}

void kl__conn_answered(kl_server *s, kl__conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->conn_mu);
    c->answered = true;
    pthread_mutex_unlock(&s->conn_mu);
}

void kl__conn_request_done(kl_server *s, kl__conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->conn_mu);
    c->answered = false;
    c->query_params = 0;
    pthread_mutex_unlock(&s->conn_mu);
    /* libmicrohttpd closes a connection idle for --timeout; one that trickles its next request
     * line in meanwhile gets the headers' time after that, as a whole. */
    set_phase(s, c, PHASE_WAITING, s->o.timeout_s + s->o.header_timeout_s, false);
}

bool kl__conn_was_cut(kl_server *s, kl__conn *c)
{
    if (!c)
        return false;
    pthread_mutex_lock(&s->conn_mu);
    bool cut = c->cut;
    pthread_mutex_unlock(&s->conn_mu);
    return cut;
}

/* Answers 408 on c's socket and shuts it down (conn_mu held). The answer is written only when
 * kiln has queued none for the request: libmicrohttpd writes nothing on a socket while it reads
 * a request, but may be sending an answer kiln gave before the body was whole (a 413). */
static void cut(kl_server *s, kl__conn *c)
{
    static const char body[] = "{\"error\":\"the request was not received whole within the "
                               "server's deadline (--header-timeout, --body-timeout): send it "
                               "faster\"}";
    char answer[512];
    int n = snprintf(answer, sizeof answer,
                     "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     sizeof body - 1, body);
    if (!c->answered)
        (void)send(c->fd, answer, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    shutdown(c->fd, SHUT_RDWR);
    c->cut = true;
    c->deadline_ns = 0;
    atomic_fetch_add(&s->conn_cuts[c->phase == PHASE_BODY], 1);
}

static void *watchdog_main(void *arg)
{
    kl_server *s = arg;
    pthread_mutex_lock(&s->conn_mu);
    while (!s->conn_stop) {
        int64_t now = kl_now_ns();
        for (kl__conn *c = s->conns; c; c = c->next)
            if (c->deadline_ns && now >= c->deadline_ns && !c->cut)
                cut(s, c);
        /* A tenth of a second past a deadline at most, whatever the deadlines. */
        struct timespec until = kl_wall_deadline(0.1);
        pthread_cond_timedwait(&s->conn_cv, &s->conn_mu, &until);
    }
    pthread_mutex_unlock(&s->conn_mu);
    return NULL;
}

kl_status kl__conn_watch_start(kl_server *s, kl_error *err)
{
    if (pthread_create(&s->conn_watchdog, NULL, watchdog_main, s) != 0)
        return kl_error_set(err, KL_ENOMEM, "cannot start the connection watchdog thread");
    s->conn_watching = true;
    return KL_OK;
}

void kl__conn_watch_stop(kl_server *s)
{
    if (!s->conn_watching)
        return;
    pthread_mutex_lock(&s->conn_mu);
    s->conn_stop = true;
    pthread_cond_broadcast(&s->conn_cv);
    pthread_mutex_unlock(&s->conn_mu);
    pthread_join(s->conn_watchdog, NULL);
    s->conn_watching = false;
}

int kl__conn_count(kl_server *s)
{
    pthread_mutex_lock(&s->conn_mu);
    int n = s->nconns;
    pthread_mutex_unlock(&s->conn_mu);
    return n;
}
