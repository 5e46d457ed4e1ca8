/* The process's stop request (include/kiln/stop.h): the flag the training loop polls, the quit
 * phases in which a request ends the process from the signal handler, and the test hook that
 * stops a process at a named point; and the signal handler every command installs
 * (kl_stop_catch_signals). The handler calls kl_stop_request, so everything it reaches is
 * async-signal-safe: write, unlink, raise and _exit on static data. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/stop.h"

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t quitting;
static const char *volatile quit_who, *volatile quit_what;
/* The temporary file a quit removes; valid only while remove_set is 1, so that a signal in the
 * middle of kl_stop_remove_on_quit never sees half a path. */
static char remove_path[4096];
static volatile sig_atomic_t remove_set;

static void put(const char *s)
{
    ssize_t n = write(STDERR_FILENO, s, strlen(s));
    (void)n;
}

/* Ends the process for signal signo inside a quit phase; only async-signal-safe calls. */
static void quit(int signo)
{
    if (remove_set)
        unlink(remove_path);
    const char *who = quit_who, *what = quit_what;
    if (who) {
        char num[12], *p = num + sizeof num - 1;
        *p = '\0';
        unsigned v = signo > 0 ? (unsigned)signo : 0;
        do
            *--p = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        put(who);
        put(": stopped by signal ");
        put(p);
        put(" ");
        put(what ? what : "");
        put("; nothing was saved\n");
    }
    _exit(KL_STOP_EXIT);
}

void kl_stop_request(int signo)
{
    stop_signal = signo > 0 ? signo : 1;
    if (quitting)
        quit(stop_signal);
}

int kl_stop_signal(void)
{
    return stop_signal;
}

void kl_stop_clear(void)
{
    stop_signal = 0;
}

/* A second SIGINT while the first is pending ends the process as SIGINT would. */
static void on_signal(int signo)
{
    if (signo == SIGINT && stop_signal == SIGINT) {
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    kl_stop_request(signo);
}

void kl_stop_catch_signals(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &sa, NULL);
}

void kl_stop_quit_begin(const char *who, const char *what)
{
    quit_who = who;
    quit_what = what;
    quitting = 1;
    if (stop_signal) /* asked for while a phase that saves could not honour it yet */
        quit(stop_signal);
}

void kl_stop_quit_end(void)
{
    quitting = 0;
}

void kl_stop_remove_on_quit(const char *path)
{
    remove_set = 0;
    if (path && strlen(path) < sizeof remove_path) {
        memcpy(remove_path, path, strlen(path) + 1);
        remove_set = 1;
    }
}

void kl_stop_test_point(const char *point, int rank, int64_t n)
{
    static int fired;
    const char *spec = getenv("KILN_TEST_STOP_AT");
    size_t len = strlen(point);
    if (fired || !spec || strncmp(spec, point, len) != 0)
        return;
    const char *rest = spec + len, *at = strchr(rest, '@');
    if (*rest != '\0' && *rest != ':' && *rest != '@') /* another point whose name starts so */
        return;
    if ((*rest == ':' && strtoll(rest + 1, NULL, 10) != n) || (at && atoi(at + 1) != rank))
        return;
    fired = 1;
    fprintf(stderr, "kiln: KILN_TEST_STOP_AT=%s: rank %d stops itself at %s (pid %ld)\n", spec,
            rank, point, (long)getpid());
    fflush(stderr);
    raise(SIGSTOP);
}
