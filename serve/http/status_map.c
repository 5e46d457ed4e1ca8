/* The one place a kl_status becomes an HTTP status. Every route answers a failed kiln call with
 * kl__http_status(status); the codes the protocol itself decides (401 without the token, 405 a
 * wrong method, 413 and 414 over a limit, 429 a spent feedback rate, 404 for a path no route
 * takes) are answered by the routes directly. Where one caller needs another answer, the status it
 * gets says so (a model that cannot be loaded through the repository API is KL_EINVAL). */
#include <microhttpd.h>

#include "serve/http/http.h"

int kl__http_status(kl_status st)
{
    switch (st) {
    case KL_OK:
        return MHD_HTTP_OK;
    case KL_EINVAL: /* the client's request is wrong: it says what to change */
        return MHD_HTTP_BAD_REQUEST;
    case KL_ENOTFOUND: /* no such model or version */
        return MHD_HTTP_NOT_FOUND;
    case KL_EUNSUPPORTED: /* the model does not do what was asked (learn online) */
        return MHD_HTTP_CONFLICT;
    case KL_EFULL: /* a queue or the connection limit is full: try again later */
    case KL_EIO:   /* a model, or a file it needs, cannot be read now: not ready */
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case KL_ESHAPE:
    case KL_ERANGE:
    case KL_ENOMEM:
    case KL_EFORMAT:
    case KL_ECOMM:
    case KL_EINTERNAL:
    case KL_ESTOPPED:
    case KL_EBUSY:
        break;
    }
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
}
