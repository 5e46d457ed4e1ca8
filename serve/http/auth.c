/* The bearer token that guards the endpoints which change what the server serves (the
 * repository API, feedback). */
#include <microhttpd.h>
#include <string.h>
#include <strings.h>

#include "serve/http/http_impl.h"

/* Whether the request carries the server's token: "Authorization: Bearer TOKEN" with the scheme
 * in any case (RFC 7235 section 2.1 makes it case-insensitive) and one or more spaces before the
 * token. The comparison takes the same time wherever the token differs. */
bool kl__http_authorized(req_ctx *r)
{
    const char *tok = r->s->auth_token;
    if (!tok)
        return true;
    const char *h =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer", 6) || h[6] != ' ')
        return false;
    h += 6;
    while (*h == ' ')
        h++;
    size_t n = strlen(tok), m = strlen(h);
    unsigned char diff = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) /* the same time whatever matches */
        diff |= (unsigned char)(tok[i] ^ (i < m ? h[i] : 0));
    return diff == 0;
}

/* The answer to a request for an endpoint that changes what the server serves (or shows its
 * repository) without the server's token. */
enum MHD_Result kl__http_send_unauthorized(req_ctx *r, const char *what)
{
    return kl__http_send_error(
        r, MHD_HTTP_UNAUTHORIZED,
        "%s needs 'Authorization: Bearer <token>' with the token the server was "
        "started with (--auth-token)",
        what);
}
