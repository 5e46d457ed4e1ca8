/* kl_server: starting (options checked, models loaded, then the HTTP daemon), the repository
 * poll thread, waiting for a stop, and the graceful stop: no new connections, the requests in
 * flight answered, then the instances joined and the models freed. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/stop.h"
#include "serve/http/http.h"
#include "serve/patterns/patterns.h"
#include "serve/repo/repo.h"

void openblas_set_num_threads(int n);

/* The address --host names (its first, which the server binds) into *addr. */
static kl_status resolve(const char *host, int port, struct sockaddr_storage *addr, kl_error *err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &ai);
    if (rc != 0)
        return kl_error_set(err, KL_EINVAL, "cannot resolve --host %s: %s", host, gai_strerror(rc));
    memcpy(addr, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    return KL_OK;
}

/* Whether the server would bind a loopback address, where no token is needed: 127.0.0.0/8,
 * ::1, or 127.0.0.0/8 mapped into IPv6. The address a name resolves to is what counts, so a
 * name such as localhost that resolves elsewhere needs a token too. */
static bool loopback(const struct sockaddr_storage *a)
{
    if (a->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss_family != AF_INET6)
        return false;
    const struct in6_addr *x = &((const struct sockaddr_in6 *)a)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
}

static void *poll_main(void *arg)
{
    kl_server *s = arg;
    pthread_mutex_lock(&s->poll_mu);
    while (!atomic_load(&s->stopping)) {
        struct timespec until = kl_wall_deadline(s->o.poll_s);
        pthread_cond_timedwait(&s->poll_cv, &s->poll_mu, &until);
        if (atomic_load(&s->stopping))
            break;
        pthread_mutex_unlock(&s->poll_mu);
        kl__serve_poll(s);
        pthread_mutex_lock(&s->poll_mu);
    }
    pthread_mutex_unlock(&s->poll_mu);
    return NULL;
}

static char *dup_or_null(const char *s, bool *ok)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    *ok &= d != NULL;
    return d;
}

kl_status kl_server_start(const kl_serve_options *o, kl_server **out, kl_error *err)
{
    *out = NULL;
    if (!o->model == !o->repository)
        return kl_error_set(err, KL_EINVAL, "serve one model file or one --repository");
    const char *host = o->host ? o->host : "127.0.0.1";
    if (o->port < 0 || o->port > 65535)
        return kl_error_set(err, KL_EINVAL, "port %d is not a TCP port", o->port);
    struct sockaddr_storage addr;
    kl_status st = resolve(host, o->port, &addr, err);
    if (st != KL_OK)
        return st;
    if (!loopback(&addr) && !(o->auth_token && o->auth_token[0]))
        return kl_error_set(err, KL_EINVAL,
                            "binding %s exposes the server beyond this machine: give "
                            "--auth-token to guard the endpoints that change state (the "
                            "repository's, and feedback)",
                            host);
    kl_server *s = calloc(1, sizeof *s);
    if (!s)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    s->o = *o;
    s->addr = addr;
    s->listen_fd = -1;
    bool ok = true;
    s->host = dup_or_null(host, &ok);
    s->repository = dup_or_null(o->repository, &ok);
    s->single = dup_or_null(o->model, &ok);
    s->single_name = dup_or_null(o->name, &ok);
    /* An empty token (KILN_AUTH_TOKEN='') is none, as the loopback check above takes it. */
    s->auth_token = dup_or_null(o->auth_token && o->auth_token[0] ? o->auth_token : NULL, &ok);
    s->log = o->log ? o->log : stderr;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    s->cores = cores > 0 ? (int)cores : 1;
    if (s->o.max_body <= 0)
        s->o.max_body = 64ll << 20;
    if (s->o.timeout_s <= 0)
        s->o.timeout_s = 30;
    if (s->o.queue_timeout_s <= 0)
        s->o.queue_timeout_s = 60;
    if (s->o.http_threads <= 0)
        s->o.http_threads = s->cores;
    if (s->o.max_connections <= 0)
        s->o.max_connections = 1000;
    if (s->o.max_per_client == 0)
        s->o.max_per_client = 128;
    if (s->o.header_timeout_s <= 0)
        s->o.header_timeout_s = 10;
    if (s->o.body_timeout_s <= 0)
        s->o.body_timeout_s = 60;
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->admin, NULL);
    pthread_mutex_init(&s->learn_mu, NULL);
    pthread_mutex_init(&s->poll_mu, NULL);
    pthread_cond_init(&s->poll_cv, NULL);
    pthread_mutex_init(&s->access_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_cond_init(&s->conn_cv, NULL);
    s->started = kl_now();
    s->started_wall = kl_wall_now();
    /* Generated request ids start with this, so that two runs' ids differ. */
    uint64_t wall_ns = (uint64_t)(s->started_wall * 1e9);
    s->id_prefix =
        (uint32_t)(wall_ns * 2654435761u ^ wall_ns / 1000000000 ^ ((uint64_t)getpid() << 16));
    if (!ok) {
        kl_server_free(s);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    st = kl__access_log_open(s, o->access_log, err);
    if (st != KL_OK) {
        kl_server_free(s);
        return st;
    }
    /* Parallelism comes from instances (and HTTP threads), so each model call runs on its
     * instance's thread alone. */
    openblas_set_num_threads(1);
    st = kl__http_listen(s, err); /* a port in use fails before minutes of loading */
    if (st == KL_OK)
        st = kl__serve_load_all(s, err);
    if (st == KL_OK)
        st = kl__http_start(s, err);
    if (st == KL_OK && s->repository && s->o.poll_s > 0) {
        if (pthread_create(&s->poller, NULL, poll_main, s) != 0)
            st = kl_error_set(err, KL_ENOMEM, "cannot start the repository poll thread");
        else
            s->polling = true;
    }
    if (st != KL_OK) {
        kl_server_free(s);
        return st;
    }
    *out = s;
    return KL_OK;
}

int kl_server_port(const kl_server *s)
{
    return s->port;
}

void kl_server_stop(kl_server *s)
{
    atomic_store(&s->stop_requested, true);
}

kl_status kl_server_wait(kl_server *s, kl_error *err)
{
    while (!atomic_load(&s->stop_requested) && !kl_stop_signal())
        kl__serve_sleep(0.05);
    kl__serve_log(s, "stopping: no new connections; answering the %d requests in flight",
                  atomic_load(&s->inflight));
    kl__http_stop(s, 30.0);
    return KL_OK;
}

void kl_server_free(kl_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, true);
    if (s->polling) {
        pthread_mutex_lock(&s->poll_mu);
        pthread_cond_broadcast(&s->poll_cv);
        pthread_mutex_unlock(&s->poll_mu);
        pthread_join(s->poller, NULL);
    }
    kl__http_stop(s, 30.0);
    kl__learn_stop_all(s); /* no feedback is in flight now */
    kl__serve_free_models(s);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->admin);
    pthread_mutex_destroy(&s->learn_mu);
    pthread_mutex_destroy(&s->poll_mu);
    pthread_cond_destroy(&s->poll_cv);
    kl__access_log_close(s);
    pthread_mutex_destroy(&s->access_mu);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_cond_destroy(&s->conn_cv);
    free(s->host);
    free(s->repository);
    free(s->single);
    free(s->single_name);
    free(s->auth_token);
    free(s);
}
