/* What the files of track/ share: the SQLite handle behind kl_runs_index, the subprocess runner
 * the recorder asks git with, and the atomic JSON writer. Nothing outside track/ includes it. */
#ifndef KILN_TRACK_IMPL_H
#define KILN_TRACK_IMPL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stddef.h>

#include "kiln/track.h"

struct kl_runs_index {
    sqlite3 *db;
    char *root;
};

/* Runs argv (argv[0] looked up in PATH) with stdin and stderr on /dev/null, collecting
 * at most max_out bytes of its stdout (*truncated says whether there was more) for at most
 * timeout_s seconds, after which it is killed. *out is malloc'd and NUL-terminated. Returns
 * KL_ENOTFOUND when the program is not installed, KL_EIO past the timeout (saying so) or when it
 * exited with a status other than 0 (in *status). */
kl_status kl__track_run(const char *const *argv, double timeout_s, size_t max_out, char **out,
                        size_t *len, bool *truncated, int *status, kl_error *err);

/* Writes doc to path atomically (a temporary file in the same folder, fsynced, renamed). */
kl_status kl__track_write_json(const json_t *doc, const char *path, kl_error *err);

/* Loads path as a JSON object, naming the file in errors. */
json_t *kl__track_read_json(const char *path, kl_error *err);

/* "<root>/<id>/<file>" into a malloc'd string. */
char *kl__track_path(const char *root, const char *id, const char *file);

/* The folder above path's last component (".", when it has none), malloc'd. */
char *kl__track_dirname(const char *path);

#endif
