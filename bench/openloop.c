/* openloop: an open-loop HTTP load generator for bench/run_serve.sh. Requests are due at a fixed
 * rate on a schedule fixed before the run (request i at start + i / rate), and each one's latency
 * is measured from when it was due, not from when a free connection sent it: a server that falls
 * behind shows its queueing delay in the percentiles instead of slowing the client down
 * (coordinated omission, which closed-loop tools such as wrk hide). One thread, epoll, keep-alive
 * connections with one request in flight each; due requests wait in order for a free one.
 *
 *   openloop --port P [--host 127.0.0.1] [--path /] [--body FILE] [--content-type T]
 *            [--header 'K: V'] --rate R [--duration S] [--warmup S] [--conns C]
 *
 * Prints one line of key=value pairs: due, sent, answered, non2xx, errors, late (requests not
 * answered by the end of the grace period, counted with the latency they had reached), the
 * achieved rate, and p50/p90/p99/p99.9/max latencies in milliseconds over the requests due after
 * the warm-up. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define GRACE_S   2.0 /* after the last due time, how long answers are still waited for */
#define MAX_CONNS 4096

typedef struct conn {
    int fd;
    int64_t req; /* the request in flight, or -1 */
    size_t sent; /* bytes of it written */
    char *in;    /* the answer so far */
    size_t in_n, in_cap;
} conn;

typedef struct opts {
    const char *host, *path, *body_file, *content_type, *header;
    int port, conns;
    double rate, duration, warmup;
} opts;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what)
{
    fprintf(stderr, "openloop: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void usage(void)
{
    fprintf(stderr, "usage: openloop --port P --rate R [--host H] [--path P] [--body FILE]\n"
                    "                [--content-type T] [--header 'K: V'] [--duration S]\n"
                    "                [--warmup S] [--conns C]\n");
    exit(2);
}

static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    char *b = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap && !(b = realloc(b, cap = cap ? 2 * cap : 65536)))
            die("out of memory");
        size_t got = fread(b + *n, 1, cap - *n, f);
        if (!got)
            break;
        *n += got;
    }
    fclose(f);
    return b;
}

static void parse_args(int argc, char **argv, opts *o)
{
    *o = (opts){.host = "127.0.0.1",
                .path = "/",
                .content_type = "application/json",
                .conns = 16,
                .duration = 10,
                .warmup = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--host"))
            o->host = v;
        else if (!strcmp(a, "--port"))
            o->port = atoi(v);
        else if (!strcmp(a, "--path"))
            o->path = v;
        else if (!strcmp(a, "--body"))
            o->body_file = v;
        else if (!strcmp(a, "--content-type"))
            o->content_type = v;
        else if (!strcmp(a, "--header"))
            o->header = v;
        else if (!strcmp(a, "--rate"))
            o->rate = atof(v);
        else if (!strcmp(a, "--duration"))
            o->duration = atof(v);
        else if (!strcmp(a, "--warmup"))
            o->warmup = atof(v);
        else if (!strcmp(a, "--conns"))
            o->conns = atoi(v);
        else
            usage();
    }
    if (o->port <= 0 || o->port > 65535 || !(o->rate > 0) || !(o->duration > 0) ||
        !(o->warmup >= 0) || o->conns < 1 || o->conns > MAX_CONNS ||
        (o->rate * (o->duration + o->warmup)) > 1e8)
        usage();
}

static int connect_to(const opts *o)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host, &a.sin_addr) != 1) {
        fprintf(stderr, "openloop: --host %s: give an IPv4 address\n", o->host);
        exit(2);
    }
    /* A blocking connect (local servers answer at once), so that a refused one stops the run. */
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        die("socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect");
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0)
        die("fcntl");
    return fd;
}

/* The length of a complete answer at the start of c->in (headers and Content-Length bytes of
 * body), 0 while incomplete, or -1 for an answer this client cannot read (no Content-Length);
 * *status is its status code. */
static long answer_len(const conn *c, int *status)
{
    const char *p = c->in, *end = c->in + c->in_n;
    const char *hdr_end = memmem(p, c->in_n, "\r\n\r\n", 4);
    if (!hdr_end)
        return 0;
    if (c->in_n < 12 || memcmp(p, "HTTP/1.", 7))
        return -1;
    *status = atoi(p + 9);
    if (*status == 100) /* 100 Continue: an interim answer, skipped whole */
        return (long)(hdr_end + 4 - p);
    long body = -1;
    for (const char *l = memchr(p, '\n', (size_t)(hdr_end - p)); l && l < hdr_end;
         l = memchr(l + 1, '\n', (size_t)(hdr_end - l))) {
        if ((size_t)(end - l) > 16 && !strncasecmp(l + 1, "content-length:", 15))
            body = atol(l + 16);
    }
    if (body < 0)
        return -1;
    long total = (long)(hdr_end + 4 - p) + body;
    return (long)c->in_n >= total ? total : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *v, size_t n, double q)
{
    if (!n)
        return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv)
{
    opts o;
    parse_args(argc, argv, &o);
    size_t body_n = 0;
    char *body = o.body_file ? read_file(o.body_file, &body_n) : NULL;
    char head[1024];
    int head_n = snprintf(head, sizeof head,
                          "%s %s HTTP/1.1\r\nHost: %s:%d\r\n%s%sContent-Type: %s\r\n"
                          "Content-Length: %zu\r\n\r\n",
                          body ? "POST" : "GET", o.path, o.host, o.port, o.header ? o.header : "",
                          o.header ? "\r\n" : "", o.content_type, body_n);
    if (head_n < 0 || head_n >= (int)sizeof head) {
        fprintf(stderr, "openloop: the request line and headers are too long\n");
        return 2;
    }
    size_t req_n = (size_t)head_n + body_n;
    char *req = malloc(req_n + 1);
    if (!req)
        die("out of memory");
    memcpy(req, head, (size_t)head_n);
    if (body_n)
        memcpy(req + head_n, body, body_n);

    int64_t total = (int64_t)(o.rate * (o.warmup + o.duration));
    double *done_at = malloc((size_t)total * sizeof *done_at); /* answer time, or -1 */
    conn *cs = calloc((size_t)o.conns, sizeof *cs);
    int *idle = malloc((size_t)o.conns * sizeof *idle);
    if (!done_at || !cs || !idle)
        die("out of memory");
    int ep = epoll_create1(0), tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (ep < 0 || tfd < 0)
        die("epoll");
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
    int nidle = 0;
    for (int i = 0; i < o.conns; i++) {
        cs[i] = (conn){.fd = connect_to(&o), .req = -1};
        ev = (struct epoll_event){.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
        idle[nidle++] = i;
    }
    for (int64_t i = 0; i < total; i++)
        done_at[i] = -1;
    int64_t next = 0, sent = 0, answered = 0, non2xx = 0, errors = 0;
    double t0 = now_s() + 0.05, end = t0 + (double)total / o.rate + GRACE_S;
    while (answered + errors < total) {
        double t = now_s();
        if (t > end)
            break;
        /* Every due request goes to a free connection, oldest first. */
        while (next < total && nidle > 0 && t0 + (double)next / o.rate <= t) {
            conn *c = &cs[idle[--nidle]];
            c->req = next++;
            c->sent = 0;
            c->in_n = 0;
            /* A failed send shows as the server's close, which counts the error. */
            ssize_t w = send(c->fd, req, req_n, MSG_NOSIGNAL);
            c->sent = w > 0 ? (size_t)w : 0;
            sent++;
        }
        double wake = next < total ? t0 + (double)next / o.rate : end;
        if (nidle == 0 || wake > end)
            wake = end;
        struct itimerspec its = {0};
        its.it_value.tv_sec = (time_t)wake;
        its.it_value.tv_nsec = (long)((wake - (double)(time_t)wake) * 1e9);
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u64 == UINT64_MAX) {
                uint64_t x;
                ssize_t r = read(tfd, &x, sizeof x);
                (void)r;
                continue;
            }
            int ci = (int)evs[k].data.u64;
            conn *c = &cs[ci];
            if (c->req >= 0 && c->sent < req_n && (evs[k].events & EPOLLOUT)) {
                ssize_t w = send(c->fd, req + c->sent, req_n - c->sent, MSG_NOSIGNAL);
                if (w > 0)
                    c->sent += (size_t)w;
            }
            bool closed = false;
            for (;;) {
                if (c->in_cap - c->in_n < 4096 &&
                    !(c->in = realloc(c->in, c->in_cap = c->in_cap * 2 + 65536)))
                    die("out of memory");
                ssize_t r = recv(c->fd, c->in + c->in_n, c->in_cap - c->in_n, 0);
                if (r > 0) {
                    c->in_n += (size_t)r;
                    continue;
                }
                closed = r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
                break;
            }
            int status = 0;
            long len;
            while (c->req >= 0 && (len = answer_len(c, &status)) != 0) {
                if (len < 0) {
                    fprintf(stderr, "openloop: an answer without Content-Length\n");
                    return 2;
                }
                memmove(c->in, c->in + len, c->in_n - (size_t)len);
                c->in_n -= (size_t)len;
                if (status == 100)
                    continue;
                done_at[c->req] = now_s();
                answered++;
                non2xx += status < 200 || status > 299;
                c->req = -1;
                idle[nidle++] = ci;
            }
            if (closed) {
                /* The server closed: a request in flight failed; the connection is replaced. */
                bool busy = c->req >= 0;
                errors += busy;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                *c = (conn){.fd = connect_to(&o), .req = -1, .in = c->in, .in_cap = c->in_cap};
                ev = (struct epoll_event){.events = EPOLLIN | EPOLLOUT | EPOLLET,
                                          .data.u64 = (uint64_t)ci};
                epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
                if (busy)
                    idle[nidle++] = ci;
            }
        }
    }
    /* Latencies from each request's due time; unanswered ones count with what they reached. */
    int64_t first = (int64_t)(o.rate * o.warmup), late = 0;
    double stop = now_s();
    size_t nl = 0;
    double *lat = malloc((size_t)(total - first + 1) * sizeof *lat);
    if (!lat)
        die("out of memory");
    for (int64_t i = first; i < total; i++) {
        double due = t0 + (double)i / o.rate;
        late += done_at[i] < 0;
        lat[nl++] = ((done_at[i] < 0 ? stop : done_at[i]) - due) * 1e3;
    }
    qsort(lat, nl, sizeof *lat, cmp_double);
    double span = (double)(total - first) / o.rate;
    printf("rate=%.0f conns=%d due=%lld sent=%lld answered=%lld non2xx=%lld errors=%lld late=%lld "
           "achieved=%.0f p50=%.3f p90=%.3f p99=%.3f p999=%.3f max=%.3f\n",
           o.rate, o.conns, (long long)(total - first), (long long)sent, (long long)answered,
           (long long)non2xx, (long long)errors, (long long)late,
           (double)(int64_t)(nl - (size_t)late) / span, pct(lat, nl, 0.50), pct(lat, nl, 0.90),
           pct(lat, nl, 0.99), pct(lat, nl, 0.999), nl ? lat[nl - 1] : 0.0);
    for (int i = 0; i < o.conns; i++) {
        close(cs[i].fd);
        free(cs[i].in);
    }
    free(cs);
    free(idle);
    free(lat);
    free(done_at);
    free(req);
    free(body);
    return late || errors || non2xx ? 1 : 0;
}
