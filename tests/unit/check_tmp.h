/* A test program's temporary folder: made once in main, named paths in it, removed with all it
 * holds at the end. Header-only, like check.h. */
#ifndef KILN_TEST_CHECK_TMP_H
#define KILN_TEST_CHECK_TMP_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kiln/status.h"

static char check_tmp[128]; /* the folder, once check_tmp_make has made it */

/* Makes the folder /tmp/kiln-test-SUITE-XXXXXX. */
static inline void check_tmp_make(const char *suite)
{
    snprintf(check_tmp, sizeof check_tmp, "/tmp/kiln-test-%s-XXXXXX", suite);
    KL_ASSERT(mkdtemp(check_tmp));
}

/* The path of name in the folder. A ring of eight answers, so that one call (a config's text)
 * can take several paths. */
static inline const char *in_tmp(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", check_tmp, name);
    return buf[k];
}

/* Removes the folder and everything in it. */
static inline void check_tmp_remove(void)
{
    char cmd[sizeof check_tmp + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", check_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", check_tmp);
}

/* A small linear congruential generator for test data: the same numbers on every machine. */
static inline uint32_t check_lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

#endif
