/* Reading a whole file into one NUL-terminated buffer (runtime/file.h). Config, sweep and CSV
 * files, curve tables, ONNX models and the coordinator's sweep copy all come through here. The
 * buffer starts small and doubles, so a file's size is never taken from fstat, which a pipe or a
 * file that is still growing would get wrong. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/file.h"

/* Where the buffer starts: most config and sweep files fit. */
#define FIRST_CAP ((size_t)1 << 16)

/* Doubles *buf's capacity *cap; false (buf untouched) when it cannot. */
static bool grow(char **buf, size_t *cap)
{
    char *bigger = *cap < SIZE_MAX / 2 ? realloc(*buf, *cap * 2) : NULL;
    if (!bigger)
        return false;
    *buf = bigger;
    *cap *= 2;
    return true;
}

/* Reads f to its end into *buf, polling before every block. */
static kl_status read_all(FILE *f, const char *path, const char *what, kl__file_poll_fn poll,
                          char **buf, size_t *len, kl_error *err)
{
    size_t cap = FIRST_CAP, n = 0;
    if (!(*buf = malloc(cap)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s %s", what, path);
    for (;;) {
        kl_status st = poll ? poll(path, err) : KL_OK;
        if (st != KL_OK)
            return st;
        size_t room = cap - n - 1, want = room < KL__FILE_BLOCK_BYTES ? room : KL__FILE_BLOCK_BYTES;
        size_t got = fread(*buf + n, 1, want, f);
        n += got;
        if (got < want)
            break;
        if (n + 1 == cap && !grow(buf, &cap))
            return kl_error_set(err, KL_ENOMEM, "out of memory reading %s %s", what, path);
    }
    if (ferror(f))
        return kl_error_set(err, KL_EIO, "cannot read %s %s: %s", what, path, strerror(errno));
    (*buf)[n] = '\0';
    *len = n;
    return KL_OK;
}

char *kl__file_read_polled(const char *path, const char *what, kl__file_poll_fn poll, size_t *len,
                           kl_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kl_error_set(err, KL_EIO, "cannot read %s %s: %s", what, path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    kl_status st = read_all(f, path, what, poll, &buf, len, err);
    fclose(f);
    if (st != KL_OK) {
        free(buf);
        return NULL;
    }
    return buf;
}

char *kl__file_read(const char *path, const char *what, size_t *len, kl_error *err)
{
    return kl__file_read_polled(path, what, NULL, len, err);
}

int kl__mkdirs(const char *path)
{
    char *buf = strdup(path);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    int rc = 0;
    for (char *p = buf; *p && rc == 0; p++)
        if (*p == '/' && p > buf) {
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                rc = -1;
            *p = '/';
        }
    if (rc == 0 && mkdir(buf, 0755) != 0 && errno != EEXIST)
        rc = -1;
    int saved = errno;
    free(buf);
    errno = saved;
    return rc;
}
