/* Whole files read into memory (runtime/file.c): config and sweep files, curve tables, journals'
 * sweep copies, CSV data, ONNX models. One reader, so that every caller gets the same checks
 * (short reads, read errors, sizes that would overflow) and a message that names the file. And
 * the one mkdir -p, for run, trial and export folders. */
#ifndef KILN_RUNTIME_FILE_H
#define KILN_RUNTIME_FILE_H

#include <stddef.h>

#include "kiln/status.h"

/* Reads happen in blocks of at most this many bytes, with a poll between them. */
#define KL__FILE_BLOCK_BYTES ((size_t)16 << 20)

/* Asked before every block of a polled read; a status other than KL_OK ends the read with it
 * (data preparation's stop check, kl__data_stop_check, has this shape). */
typedef kl_status (*kl__file_poll_fn)(const char *path, kl_error *err);

/* The whole file at path: a malloc'd buffer holding its *len bytes and a NUL after them. NULL
 * with err set when it cannot be read: KL_EIO "cannot read <what> <path>: <reason>", what naming
 * the file for the user ("config", "sweep file"), or KL_ENOMEM. */
char *kl__file_read(const char *path, const char *what, size_t *len, kl_error *err);

/* kl__file_read, calling poll (unless NULL) before every block, so that a long read of a large
 * file can be ended between blocks; NULL with poll's error when it says stop. */
char *kl__file_read_polled(const char *path, const char *what, kl__file_poll_fn poll, size_t *len,
                           kl_error *err);

/* mkdir -p: path and every missing folder above it, mode 0755; one that exists already is no
 * error. 0, or -1 with errno set (ENOMEM when the path cannot be copied). */
int kl__mkdirs(const char *path);

#endif
