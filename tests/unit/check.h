/* A minimal check harness for kiln's test programs: CHECK macros that print file:line and count,
 * and check_report() that prints "name: N passed, M failed" and gives the exit status.
 * Header-only so each test is one self-contained executable registered with ctest. */
#ifndef KILN_TEST_CHECK_H
#define KILN_TEST_CHECK_H

#include <math.h>
#include <stdio.h>

static int check_passed, check_failed;

static inline int check_(int ok, const char *file, int line, const char *what)
{
    if (ok) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    }
    return ok;
}

#define CHECK(cond) check_(!!(cond), __FILE__, __LINE__, #cond)

/* Passes when |a - b| <= tol (and neither is NaN); prints both values otherwise. */
#define CHECK_NEAR(a, b, tol)                                                                     \
    do {                                                                                          \
        double ca_ = (double)(a), cb_ = (double)(b), ct_ = (double)(tol);                         \
        if (!check_(fabs(ca_ - cb_) <= ct_, __FILE__, __LINE__, #a " ~= " #b))                    \
            fprintf(stderr, "    %s = %.9g, %s = %.9g, tolerance %.3g\n", #a, ca_, #b, cb_, ct_); \
    } while (0)

/* Passes when a call returned KL_OK; prints the error message otherwise. */
#define CHECK_OK(call, errp)                                               \
    do {                                                                   \
        kl_status cs_ = (call);                                            \
        if (!check_(cs_ == KL_OK, __FILE__, __LINE__, #call))              \
            fprintf(stderr, "    status %d: %s\n", (int)cs_, (errp)->msg); \
    } while (0)

static inline int check_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

#endif
