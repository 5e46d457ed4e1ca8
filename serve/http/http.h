/* Private to serve/: the HTTP front (serve/http/) as the server starts and stops it, and the one
 * map from a kl_status to an HTTP status. */
#ifndef KILN_SERVE_HTTP_H
#define KILN_SERVE_HTTP_H

#include "serve/serve_impl.h"

/* The HTTP status that answers a failed kiln call (status_map.c). */
int kl__http_status(kl_status st);
/* Binds s->addr and listens (s->listen_fd, s->port), before anything is loaded: a port in use
 * is refused at once, suggesting --port 0. kl__http_start then serves on that socket. */
kl_status kl__http_listen(kl_server *s, kl_error *err);
kl_status kl__http_start(kl_server *s, kl_error *err);
/* Stops accepting, waits for the requests in flight (up to grace_s), stops the daemon. */
void kl__http_stop(kl_server *s, double grace_s);
/* Opens path for appending ("-": stderr); NULL: no log. */
kl_status kl__access_log_open(kl_server *s, const char *path, kl_error *err);
void kl__access_log_close(kl_server *s);

#endif
