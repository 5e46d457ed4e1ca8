/* The HTTP front's entry, on libmicrohttpd: its callbacks, a request's context from its headers
 * to its end however it ends, the dispatch of a path to its route, and the server's own routes
 * (metadata, health, metrics). serve/README.md, "A request in http/", has a request's life:
 * suspended while its work is queued, answered when the handler is called again. */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "kiln/version.h"
#include "serve/http/http_impl.h"
#include "serve/repo/repo.h"

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
    return kl__http_send_error(r, MHD_HTTP_METHOD_NOT_ALLOWED, "use %s here", allow);
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
        return kl__http_send_error(r, MHD_HTTP_NOT_FOUND, "no route for a path that long");
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
        return kl__http_send_buf(r, MHD_HTTP_OK, &m, KL__METRICS_CONTENT_TYPE, 0);
    }
    if (n < 1 || strcmp(seg[0], "v2"))
        return kl__http_send_error(r, MHD_HTTP_NOT_FOUND, "no route for %s %s", method, url);
    kl__buf b = {0};
    if (n == 1) {
        r->ep = KL__EP_SERVER;
        if (!get)
            return method_not_allowed(r, "GET");
        kl__buf_printf(&b,
                       "{\"name\":\"kiln\",\"version\":\"%s\",\"extensions\":[\"binary_tensor_"
                       "data\",\"model_repository\",\"statistics\"]}",
                       KL_VERSION);
        return kl__http_send_json(r, MHD_HTTP_OK, &b);
    }
    if (n == 3 && !strcmp(seg[1], "health") &&
        (!strcmp(seg[2], "live") || !strcmp(seg[2], "ready"))) {
        r->ep = KL__EP_HEALTH;
        if (!get)
            return method_not_allowed(r, "GET");
        bool live = !strcmp(seg[2], "live");
        bool ok = live || server_ready(r->s);
        kl__buf_printf(&b, "{\"%s\":%s}", seg[2], ok ? "true" : "false");
        return kl__http_send_json(r, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, &b);
    }
    if (!strcmp(seg[1], "repository")) {
        r->ep = KL__EP_REPOSITORY;
        if (!post)
            return method_not_allowed(r, "POST");
        return kl__http_repository(r, n, seg);
    }
    if (n < 3 || strcmp(seg[1], "models"))
        return kl__http_send_error(r, MHD_HTTP_NOT_FOUND, "no route for %s %s", method, url);
    const char *model = seg[2];
    if (!kl__serve_name_ok(model))
        return kl__http_send_error(r, kl__http_status(KL_EINVAL),
                                   "'%s' is not a model name (letters, digits, '_', '-', '.')",
                                   model);
    int64_t version = -1;
    int at = 3;
    if (n >= 5 && !strcmp(seg[3], "versions")) {
        char *end = NULL;
        long long v = strtoll(seg[4], &end, 10);
        if (*end || v <= 0 || seg[4][0] == '+' || seg[4][0] == ' ')
            return kl__http_send_error(r, kl__http_status(KL_ENOTFOUND),
                                       "model '%s' has no version '%s'", model, seg[4]);
        version = v;
        at = 5;
    }
    const char *what = at < n ? seg[at] : NULL;
    if (at + 1 < n || (what && strcmp(what, "ready") && strcmp(what, "infer") &&
                       strcmp(what, "stats") && strcmp(what, "feedback")))
        return kl__http_send_error(r, MHD_HTTP_NOT_FOUND, "no route for %s %s", method, url);
    if (what && !strcmp(what, "feedback")) {
        if (!post)
            return method_not_allowed(r, "POST");
        return kl__http_feedback(r, model, version);
    }
    if (what && !strcmp(what, "infer")) {
        if (!post)
            return method_not_allowed(r, "POST");
        return kl__http_infer(r, model, version);
    }
    if (!get)
        return method_not_allowed(r, "GET");
    return kl__http_model(r, model, version, what);
}

/* The connection guard (conn.c) of conn, or NULL. */
static kl__conn *conn_guard(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *i =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
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
        r->t0_wall = kl_wall_now();
        snprintf(r->method, sizeof r->method, "%s", method);
        r->path = strdup(url);
    }
    kl__conn_headers_done(s, r->guard);
    return kl__http_refuse_early(r, conn);
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
        return kl__http_body_part(r, upload, n);
    }
    if (!r->whole) {
        r->whole = true;
        kl__conn_body_done(s, r->guard);
    }
    if (r->route && r->route->resumed)
        return r->route->resumed(r);
    if (r->too_big)
        return kl__http_send_error(r, MHD_HTTP_CONTENT_TOO_LARGE,
                                   "the body is larger than the server's limit of %lld bytes",
                                   (long long)s->o.max_body);
    return route(r, url, method);
}

/* libmicrohttpd's first look at a request, its request line read, before it parses the query:
 * a kept-alive connection's next request starts its clock, and the query's parameters are
 * counted for kl__http_refuse_early. libmicrohttpd keeps each parameter in its per-connection
 * memory and cannot answer a request whose parameters do not fit: it holds the connection instead.
 * kiln's routes take no query, so the query is cut off here, in libmicrohttpd's own buffer of the
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
                        .id = kl__http_request_id(r, false),
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
    if (r->route) /* before the version it may hold */
        r->route->free(r->route);
    free(r->body);
    kl__version_release(r->v);
    free(r);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

kl_status kl__http_listen(kl_server *s, kl_error *err)
{
    int fam = s->addr.ss_family, one = 1;
    socklen_t len = fam == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return kl_error_set(err, KL_EIO, "cannot open a socket: %s", strerror(errno));
    /* As libmicrohttpd's own listening sockets: a restart binds a port whose old connections
     * linger in TIME_WAIT, and an IPv6 address is IPv6 only. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fam == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&s->addr, len) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        if (e == EADDRINUSE)
            return kl_error_set(err, KL_EIO,
                                "cannot listen on %s:%d: the port is in use (another kiln "
                                "serve?); stop what holds it, choose another --port, or give "
                                "--port 0 for any free one (kiln serve prints it)",
                                s->host, s->o.port);
        return kl_error_set(err, KL_EIO, "cannot listen on %s:%d: %s", s->host, s->o.port,
                            strerror(e));
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) == 0)
        s->port = ntohs(fam == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                        : ((struct sockaddr_in *)&bound)->sin_port);
    s->listen_fd = fd;
    return KL_OK;
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
        flags, (uint16_t)s->port, NULL, NULL, handle, s, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)s->listen_fd, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.http_threads,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout_s, MHD_OPTION_CONNECTION_LIMIT, most,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_client, MHD_OPTION_NOTIFY_CONNECTION,
        connection_event, s, MHD_OPTION_URI_LOG_CALLBACK, request_line, s,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_END);
    if (!s->daemon)
        return kl_error_set(err, KL_EIO, "cannot start the HTTP server on %s:%d", s->host, s->port);
    s->listen_fd = -1; /* the daemon's now: MHD_quiesce_daemon hands it back to close */
    kl_status st = kl__conn_watch_start(s, err);
    if (st != KL_OK) {
        MHD_stop_daemon(s->daemon);
        s->daemon = NULL;
        return st;
    }
    return KL_OK;
}

void kl__http_stop(kl_server *s, double grace_s)
{
    if (s->listen_fd >= 0) /* listening, but the daemon never started */
        close(s->listen_fd);
    s->listen_fd = -1;
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
