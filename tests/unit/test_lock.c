/* Tests for runtime/lock.c: a folder is locked once at a time, across processes and within one;
 * the refusal names the holder's pid and command; the lock goes with its holder, whether it
 * unlocks, exits or is killed with SIGKILL (the file stays, the lock does not); a folder that
 * cannot hold a lock file is an I/O error naming it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "kiln/lock.h"

/* Tries the lock in a child process: its exit status is the kl_status it got (0 when it got the
 * lock), and its message goes to msg. */
static int try_in_child(const char *dir, char *msg, size_t size)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        kl_lock *l = NULL;
        kl_error err = {0};
        kl_status st = kl_dir_lock(dir, "run", &l, &err);
        ssize_t w = write(fds[1], err.msg, strlen(err.msg));
        (void)w;
        kl_dir_unlock(l);
        _exit((int)st);
    }
    close(fds[1]);
    ssize_t n = read(fds[0], msg, size - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char dir[] = "/tmp/kiln-test-lock-XXXXXX";

static void test_exclusive(void)
{
    kl_lock *a = NULL, *b = NULL;
    kl_error err = {0};
    char msg[KL_ERROR_MSG_MAX], pid[32];
    snprintf(pid, sizeof pid, "pid %ld ", (long)getpid());
    CHECK_OK(kl_dir_lock(dir, "run", &a, &err), &err);
    CHECK(a != NULL);
    CHECK(try_in_child(dir, msg, sizeof msg) == KL_EBUSY);
    CHECK(strstr(msg, pid) != NULL);         /* the holder, by pid */
    CHECK(strstr(msg, "test_lock") != NULL); /* and by command line */
    CHECK(strstr(msg, "run folder") != NULL && strstr(msg, dir) != NULL);
    /* A second lock in the same process is refused too: it would be a second writer. */
    CHECK(kl_dir_lock(dir, "run", &b, &err) == KL_EBUSY && b == NULL);
    kl_dir_unlock(a);
    CHECK(try_in_child(dir, msg, sizeof msg) == KL_OK);
    CHECK_OK(kl_dir_lock(dir, "sweep", &b, &err), &err);
    kl_dir_unlock(b);
}

/* A holder killed with SIGKILL leaves its lock file, not its lock. */
static void test_holder_killed(void)
{
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        kl_lock *l = NULL;
        kl_status st = kl_dir_lock(dir, "run", &l, NULL);
        ssize_t w = write(ready[1], st == KL_OK ? "y" : "n", 1);
        (void)w;
        for (;;)
            pause();
    }
    char c = 0, msg[KL_ERROR_MSG_MAX];
    CHECK(read(ready[0], &c, 1) == 1 && c == 'y');
    CHECK(try_in_child(dir, msg, sizeof msg) == KL_EBUSY);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char path[512];
    struct stat sb;
    snprintf(path, sizeof path, "%s/%s", dir, KL_DIR_LOCK_FILE);
    CHECK(stat(path, &sb) == 0); /* left behind */
    kl_lock *l = NULL;
    kl_error err = {0};
    CHECK_OK(kl_dir_lock(dir, "run", &l, &err), &err);
    kl_dir_unlock(l);
    close(ready[0]);
    close(ready[1]);
}

static void test_no_folder(void)
{
    kl_lock *l = NULL;
    kl_error err = {0};
    CHECK(kl_dir_lock("/nonexistent/kiln-lock-test", "sweep", &l, &err) == KL_EIO && !l);
    CHECK(strstr(err.msg, "/nonexistent/kiln-lock-test/" KL_DIR_LOCK_FILE) != NULL);
}

static const check_case cases[] = {
    CHECK_CASE(test_exclusive),
    CHECK_CASE(test_holder_killed),
    CHECK_CASE(test_no_folder),
};

int main(int argc, char **argv)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = check_run("test_lock", cases, CHECK_NCASES(cases), argc, argv);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, KL_DIR_LOCK_FILE);
    unlink(path);
    rmdir(dir);
    return rc;
}
