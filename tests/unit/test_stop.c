/* Tests for runtime/stop.c's signal handler, kl_stop_catch_signals, which every kiln command
 * installs: SIGTERM, SIGUSR1 and a first SIGINT become stop requests and the process goes on; a
 * second SIGINT ends it as SIGINT would; in a quit phase a signal ends it with KL_STOP_EXIT.
 * Each runs in a process of its own, since the signals are the process's. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "kiln/stop.h"

/* The status of a child that ran fn. */
static int in_child(int (*fn)(void))
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn());
    int status = -1;
    waitpid(pid, &status, 0);
    return status;
}

/* 0 when each signal was recorded as the request and the process went on. */
static int requests(void)
{
    kl_stop_catch_signals();
    int bad = 0;
    int sigs[] = {SIGTERM, SIGUSR1, SIGINT};
    for (int i = 0; i < 3; i++) {
        kl_stop_clear();
        raise(sigs[i]);
        bad += kl_stop_signal() != sigs[i];
    }
    return bad;
}

static void test_requests(void)
{
    int status = in_child(requests);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int two_sigints(void)
{
    kl_stop_catch_signals();
    raise(SIGINT);
    if (kl_stop_signal() != SIGINT)
        return 1;
    raise(SIGINT); /* the impatient second Ctrl-C: does not come back */
    return 2;
}

static void test_second_sigint(void)
{
    int status = in_child(two_sigints);
    if (!CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGINT))
        fprintf(stderr, "    status %#x\n", (unsigned)status);
}

static int quit_phase(void)
{
    kl_stop_catch_signals();
    kl_stop_quit_begin(NULL, NULL);
    raise(SIGTERM);
    return 1;
}

static void test_quit_phase(void)
{
    int status = in_child(quit_phase);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == KL_STOP_EXIT);
}

static const check_case cases[] = {
    CHECK_CASE(test_requests),
    CHECK_CASE(test_second_sigint),
    CHECK_CASE(test_quit_phase),
};

int main(int argc, char **argv)
{
    return check_run("test_stop", cases, CHECK_NCASES(cases), argc, argv);
}
