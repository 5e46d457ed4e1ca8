/* Folder locks (include/kiln/lock.h): flock(2) on DIR/kiln.lock, held for the life of the
 * process or until kl_dir_unlock. kiln train locks its run folder, kiln tune its sweep folder.
 * flock, not a lock file's mere existence, is what counts: the kernel drops it when its holder
 * dies, so a folder left by kill -9 or by a requeued Slurm job is free again at once. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "kiln/lock.h"

struct kl_lock {
    int fd;
};

/* This process's command line, arguments joined by spaces (Linux's /proc); "" elsewhere. */
static void command_line(char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    for (size_t i = 0; i + 1 < n; i++)
        if (buf[i] == '\0' || buf[i] == '\n')
            buf[i] = ' ';
}

/* What the lock file says about its holder: one "key value" line each. */
static void describe_self(char *buf, size_t size)
{
    char host[256] = "?", started[32], cmd[1024];
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    command_line(cmd, sizeof cmd);
    snprintf(buf, size, "pid %ld\nhost %s\nstarted %s\ncommand %s\n", (long)getpid(), host, started,
             cmd);
}

/* The value of line `key` in the holder's description, or "?". */
static void field(const char *text, const char *key, char *out, size_t size)
{
    size_t k = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, key, k) && p[k] == ' ') {
            snprintf(out, size, "%.*s", (int)strcspn(p + k + 1, "\n"), p + k + 1);
            return;
        }
    }
    snprintf(out, size, "?");
}

/* Whether a description names a process that is gone: one on this host whose pid is free. */
static bool names_dead(const char *text)
{
    char pid[32], host[256], mine[256] = "";
    field(text, "pid", pid, sizeof pid);
    field(text, "host", host, sizeof host);
    gethostname(mine, sizeof mine - 1);
    long p = strtol(pid, NULL, 10);
    return p > 0 && !strcmp(host, mine) && kill((pid_t)p, 0) != 0 && errno == ESRCH;
}

/* The holder writes its description just after taking the lock, so a refused process may read
 * before it is there, or read a dead holder's (after kill -9): it reads again for up to a second
 * until the file describes a live process. */
static void read_holder(int fd, char *buf, size_t size)
{
    for (int tries = 0; tries < 100; tries++) {
        ssize_t n = pread(fd, buf, size - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        if (n > 0 && strchr(buf, '\n') && !names_dead(buf))
            return;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
}

static kl_status refuse(int fd, const char *dir, const char *what, kl_error *err)
{
    char text[1536], pid[32], host[256], started[32], cmd[1024];
    read_holder(fd, text, sizeof text);
    field(text, "pid", pid, sizeof pid);
    field(text, "host", host, sizeof host);
    field(text, "started", started, sizeof started);
    field(text, "command", cmd, sizeof cmd);
    if (strlen(cmd) > 160) /* the message has room for the start of it */
        memcpy(cmd + 157, "...", 4);
    return kl_error_set(err, KL_EBUSY,
                        "the %s folder %s is in use by another kiln process: pid %s on host %s "
                        "since %s (%.160s). Wait for it to end, stop it (kill -TERM %s on %s), "
                        "or use another folder",
                        what, dir, pid, host, started, cmd, pid, host);
}

kl_status kl_dir_lock(const char *dir, const char *what, kl_lock **out, kl_error *err)
{
    *out = NULL;
    size_t len = strlen(dir) + sizeof KL_DIR_LOCK_FILE + 1;
    char *path = malloc(len);
    kl_lock *l = calloc(1, sizeof *l);
    if (!path || !l) {
        free(path);
        free(l);
        return kl_error_set(err, KL_ENOMEM, "out of memory locking %s", dir);
    }
    snprintf(path, len, "%s/%s", dir, KL_DIR_LOCK_FILE);
    kl_status st = KL_OK;
    l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (l->fd < 0) {
        st = kl_error_set(err, KL_EIO,
                          "cannot create the lock file %s: %s; kiln locks the %s "
                          "folder so that two processes cannot write it at once",
                          path, strerror(errno), what);
    } else if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
        st = errno == EWOULDBLOCK
                 ? refuse(l->fd, dir, what, err)
                 : kl_error_set(err, KL_EIO, "cannot lock %s: %s", path, strerror(errno));
    } else {
        char text[1536];
        describe_self(text, sizeof text);
        size_t n = strlen(text);
        if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, text, n, 0) != (ssize_t)n)
            st = kl_error_set(err, KL_EIO, "cannot write the lock file %s: %s", path,
                              strerror(errno));
    }
    free(path);
    if (st != KL_OK) {
        if (l->fd >= 0)
            close(l->fd);
        free(l);
        return st;
    }
    *out = l;
    return KL_OK;
}

void kl_dir_unlock(kl_lock *l)
{
    if (!l)
        return;
    /* Emptied first: a description left behind would name a process that no longer holds it. A
     * failure changes nothing that matters: the lock itself goes with the close. */
    int rc = ftruncate(l->fd, 0);
    (void)rc;
    close(l->fd);
    free(l);
}
