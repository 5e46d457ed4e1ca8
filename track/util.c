/* The small tools the recorder and the index share: a subprocess with a deadline (git), atomic
 * JSON files and run paths. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "track/track_impl.h"

extern char **environ;

char *kl__track_path(const char *root, const char *id, const char *file)
{
    size_t n = strlen(root) + strlen(id) + (file ? strlen(file) : 0) + 3;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s%s%s", root, id, file ? "/" : "", file ? file : "");
    return p;
}

char *kl__track_dirname(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    while (n > 0 && path[n - 1] != '/')
        n--;
    while (n > 1 && path[n - 1] == '/')
        n--;
    return n == 0 ? strdup(".") : strndup(path, n);
}

/* Reads the child's stdout until it closes or the deadline passes. Returns false on timeout. */
static bool drain(int fd, double deadline, char **buf, size_t *len, size_t max, bool *truncated)
{
    size_t cap = 0;
    char chunk[65536];
    for (;;) {
        double left = deadline - kl_now();
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            continue;
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return true;
        size_t keep = (size_t)got;
        if (*len + keep > max) {
            keep = max - *len;
            *truncated = true;
        }
        if (keep && *len + keep + 1 > cap) {
            size_t ncap = (*len + keep + 1) * 2;
            char *nb = realloc(*buf, ncap);
            if (!nb)
                return true; /* what we have; the caller sees the truncation */
            *buf = nb;
            cap = ncap;
        }
        if (keep) {
            memcpy(*buf + *len, chunk, keep);
            *len += keep;
        }
    }
}

kl_status kl__track_run(const char *const *argv, double timeout_s, size_t max_out, char **out,
                        size_t *len, bool *truncated, int *status, kl_error *err)
{
    *out = NULL;
    *len = 0;
    *truncated = false;
    *status = -1;
    int fds[2];
    if (pipe(fds) != 0)
        return kl_error_set(err, KL_EIO, "%s: cannot make a pipe: %s", argv[0], strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return kl_error_set(err, rc == ENOENT ? KL_ENOTFOUND : KL_EIO, "%s: %s", argv[0],
                            rc == ENOENT ? "not installed (not found in PATH)" : strerror(rc));
    }
    bool done = drain(fds[0], kl_now() + timeout_s, out, len, max_out, truncated);
    close(fds[0]);
    if (!done)
        kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (!*out && !(*out = malloc(1)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    (*out)[*len] = '\0';
    if (!done)
        return kl_error_set(err, KL_EIO, "%s did not answer within %.0f s", argv[0], timeout_s);
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    if (*status != 0)
        return kl_error_set(err, KL_EIO, "%s exited with status %d", argv[0], *status);
    return KL_OK;
}

kl_status kl__track_write_json(const json_t *doc, const char *path, kl_error *err)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    bool ok = f &&
              json_dumpf(doc, f, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(15)) == 0 &&
              fputc('\n', f) != EOF && fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (f && fclose(f) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok)
        unlink(tmp);
    free(tmp);
    return ok ? KL_OK : kl_error_set(err, KL_EIO, "cannot write %s: %s", path, strerror(e));
}

json_t *kl__track_read_json(const char *path, kl_error *err)
{
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!doc) {
        kl_error_set(err, errno == ENOENT && je.line < 0 ? KL_ENOTFOUND : KL_EFORMAT, "%s:%d: %s",
                     path, je.line, je.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        kl_error_set(err, KL_EFORMAT, "%s: not a JSON object", path);
        return NULL;
    }
    return doc;
}
