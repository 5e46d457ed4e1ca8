/* The sweep journal (include/kiln/journal.h): JSON lines appended with write() and fsync(), so
 * that an event the coordinator acted on is on disk first; reading tolerates a torn last line,
 * which is what a kill -9 in the middle of an append leaves. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "kiln/journal.h"

struct kl_journal {
    int fd;
    char *path;
};

/* Cuts a last line that has no newline (an append the kill interrupted). */
static kl_status cut_torn_tail(int fd, const char *path, kl_error *err)
{
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0)
        return KL_OK;
    char c;
    if (pread(fd, &c, 1, end - 1) != 1)
        return kl_error_set(err, KL_EIO, "cannot read %s: %s", path, strerror(errno));
    if (c == '\n')
        return KL_OK;
    off_t at = end - 1;
    while (at > 0) { /* back to the previous newline */
        if (pread(fd, &c, 1, at - 1) != 1)
            return kl_error_set(err, KL_EIO, "cannot read %s: %s", path, strerror(errno));
        if (c == '\n')
            break;
        at--;
    }
    if (ftruncate(fd, at) != 0 || fsync(fd) != 0)
        return kl_error_set(err, KL_EIO, "cannot repair %s: %s", path, strerror(errno));
    return KL_OK;
}

kl_journal *kl_journal_open(const char *path, kl_error *err)
{
    kl_journal *j = calloc(1, sizeof *j);
    if (!j || !(j->path = strdup(path))) {
        free(j);
        kl_error_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND, 0644);
    if (j->fd < 0) {
        kl_error_set(err, KL_EIO, "cannot open the journal %s: %s", path, strerror(errno));
        kl_journal_close(j);
        return NULL;
    }
    if (cut_torn_tail(j->fd, path, err) != KL_OK) {
        kl_journal_close(j);
        return NULL;
    }
    return j;
}

void kl_journal_close(kl_journal *j)
{
    if (!j)
        return;
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j);
}

kl_status kl_journal_append(kl_journal *j, json_t *ev, kl_error *err)
{
    if (!json_object_get(ev, "time"))
        json_object_set_new(ev, "time", json_real(kl_wall_now()));
    char *line = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(ev);
    if (!line)
        return kl_error_set(err, KL_ENOMEM, "out of memory writing the journal");
    size_t n = strlen(line);
    line[n] = '\n'; /* json_dumps leaves room for the terminator it wrote */
    const char *p = line;
    size_t left = n + 1;
    kl_status st = KL_OK;
    while (left > 0) {
        ssize_t w = write(j->fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            st = kl_error_set(err, KL_EIO, "cannot write the journal %s: %s", j->path,
                              strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    free(line);
    if (st == KL_OK && fsync(j->fd) != 0)
        st = kl_error_set(err, KL_EIO, "cannot sync the journal %s: %s", j->path, strerror(errno));
    return st;
}

json_t *kl_journal_read(const char *path, kl_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        kl_error_set(err, KL_EIO, "cannot read the journal %s: %s", path, strerror(errno));
        return NULL;
    }
    json_t *all = json_array();
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    while (all && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len == 0 || line[len - 1] != '\n') /* torn last line: the kill came mid-append */
            break;
        json_error_t je;
        json_t *ev = json_loadb(line, (size_t)len, 0, &je);
        if (!ev || !json_is_object(ev)) {
            kl_error_set(err, KL_EFORMAT, "%s:%d: not a journal event (%s)", path, lineno,
                         ev ? "not an object" : je.text);
            json_decref(ev);
            json_decref(all);
            all = NULL;
            break;
        }
        json_array_append_new(all, ev);
    }
    free(line);
    fclose(f);
    return all;
}
