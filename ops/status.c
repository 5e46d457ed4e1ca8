/* kl_error and kl_status: how every kiln call reports what went wrong and what to change.
 * Lives in ops/ because ops/ is the bottom of the dependency graph and everything reports errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln/status.h"

kl_status kl_error_set(kl_error *err, kl_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = status;
    }
    return status;
}

const char *kl_status_str(kl_status status)
{
    switch (status) {
    case KL_OK:
        return "ok";
    case KL_EINVAL:
        return "invalid argument";
    case KL_ESHAPE:
        return "shape mismatch";
    case KL_ERANGE:
        return "value out of range";
    case KL_ENOMEM:
        return "out of memory";
    case KL_EIO:
        return "input/output error";
    case KL_EFORMAT:
        return "bad format";
    case KL_EUNSUPPORTED:
        return "not supported";
    case KL_ECOMM:
        return "communication error";
    case KL_ESTOPPED:
        return "stopped on request";
    case KL_EBUSY:
        return "in use by another process";
    case KL_EINTERNAL:
        return "internal error";
    case KL_ENOTFOUND:
        return "not found";
    case KL_EFULL:
        return "over capacity";
    }
    return "unknown status";
}

void kl__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "kiln: internal error: assertion '%s' failed at %s:%d; please report this\n",
            expr, file, line);
    abort();
}
