/* Status codes and error messages shared by every kiln subsystem.
 * Library calls that a user's input can make fail return a kl_status and, when given a kl_error,
 * fill it with a message that says what to change. KL_ASSERT is for broken invariants only. */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include <stdio.h>
#include <stdlib.h>

typedef enum kl_status {
    KL_OK = 0,
    KL_EINVAL,       /* a bad argument or configuration value */
    KL_ESHAPE,       /* tensor shapes that do not fit together */
    KL_ERANGE,       /* a value out of its allowed range (a label, an index) */
    KL_ENOMEM,       /* an allocation failed */
    KL_EIO,          /* a file could not be read or written */
    KL_EFORMAT,      /* a file or message that is not what it claims to be */
    KL_EUNSUPPORTED, /* a feature kiln does not have (yet) */
    KL_ECOMM,        /* a communicator (MPI, NCCL) failed */
    KL_EINTERNAL,    /* a bug in kiln: please report it */
    KL_ESTOPPED,     /* stopped on request (a signal) after saving a checkpoint */
    KL_EBUSY,        /* held by another process (a locked run or sweep folder) */
    KL_ENOTFOUND,    /* a model, version or other named thing that does not exist */
    KL_EFULL         /* over capacity (a queue, a rate or a connection limit): try again later */
} kl_status;

#define KL_ERROR_MSG_MAX 512

typedef struct kl_error {
    kl_status status;
    char msg[KL_ERROR_MSG_MAX];
} kl_error;

/* Records status and a printf-style message in err (which may be NULL) and returns status. */
kl_status kl_error_set(kl_error *err, kl_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A short name for a status, such as "invalid argument". */
const char *kl_status_str(kl_status status);

void kl__assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

#define KL_ASSERT(cond)                                 \
    do {                                                \
        if (!(cond))                                    \
            kl__assert_fail(#cond, __FILE__, __LINE__); \
    } while (0)

#endif
