/* A minimal check harness for kiln's test programs: CHECK macros that print file:line and count,
 * and check_report() that prints "name: N passed, M failed" and gives the exit status.
 * Header-only so each test is one self-contained executable registered with ctest. */
#ifndef KILN_TEST_CHECK_H
#define KILN_TEST_CHECK_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_passed, check_failed;

static inline int check_(int ok, const char *file, int line, const char *what)
{
    if (ok) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    }
    return ok;
}

#define CHECK(cond) check_(!!(cond), __FILE__, __LINE__, #cond)

/* Passes when |a - b| <= tol (and neither is NaN); prints both values otherwise. */
#define CHECK_NEAR(a, b, tol)                                                                     \
    do {                                                                                          \
        double ca_ = (double)(a), cb_ = (double)(b), ct_ = (double)(tol);                         \
        if (!check_(fabs(ca_ - cb_) <= ct_, __FILE__, __LINE__, #a " ~= " #b))                    \
            fprintf(stderr, "    %s = %.9g, %s = %.9g, tolerance %.3g\n", #a, ca_, #b, cb_, ct_); \
    } while (0)

/* Passes when a call returned KL_OK; prints the error message otherwise. */
#define CHECK_OK(call, errp)                                               \
    do {                                                                   \
        kl_status cs_ = (call);                                            \
        if (!check_(cs_ == KL_OK, __FILE__, __LINE__, #call))              \
            fprintf(stderr, "    status %d: %s\n", (int)cs_, (errp)->msg); \
    } while (0)

/* A test, or a part of one, that needs what CI installs (scripts/install-deps.sh --with-data:
 * Fashion-MNIST, python3-h5py, ...) and does not find it: says it is skipped and returns 77 (the
 * skip status), or under CI=true counts a failure and returns 1, so that CI never turns green by
 * skipping what it installs. tests/skip.sh is the same for the scripts. */
static inline int check_missing(const char *test, const char *what)
{
    const char *ci = getenv("CI");
    if (ci && !strcmp(ci, "true")) {
        check_failed++;
        fprintf(stderr, "%s: FAILED under CI: %s (CI installs it)\n", test, what);
        return 1;
    }
    printf("%s: skipped: %s\n", test, what);
    return 77;
}

static inline int check_report(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed == 0 && check_passed > 0 ? 0 : 1;
}

/* A suite as a table of cases, as libuv's TEST_ENTRY: {"name", fn}. check_run runs each case in
 * a child process of its own, so that a crash, an abort or a sanitizer report names its case and
 * the other cases still run; what main set up before the call (a temporary folder, a path) every
 * case sees. `SUITE CASE...` runs only the named cases, and `SUITE --here CASE` runs one case in
 * this process (for a debugger). The exit status is 0 when every case ran and passed. */
typedef struct check_case {
    const char *name;
    void (*fn)(void);
} check_case;

#define CHECK_CASE(fn) \
    {                  \
#fn, fn        \
    }
#define CHECK_NCASES(table) (sizeof(table) / sizeof *(table))

/* One case in a child: its checks' counts come back through a pipe. */
static inline int check_run_case_(const check_case *c, int *passed, int *failed)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        c->fn();
        int counts[2] = {check_passed, check_failed};
        ssize_t w = write(fds[1], counts, sizeof counts);
        fflush(stdout);
        fflush(stderr);
        exit(w == (ssize_t)sizeof counts ? 0 : 3);
    }
    close(fds[1]);
    int counts[2] = {0, 0}, status = 0;
    ssize_t r = read(fds[0], counts, sizeof counts);
    close(fds[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    *passed = counts[0];
    *failed = counts[1];
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "%s: killed by signal %d (%s)\n", c->name, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
        return 1;
    }
    if (r != (ssize_t)sizeof counts || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: exited with status %d before reporting its checks\n", c->name,
                WEXITSTATUS(status));
        return 1;
    }
    return 0;
}

static inline bool check_selected_(const char *name, int argc, char **argv, int first)
{
    if (argc <= first)
        return true;
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static inline int check_run(const char *suite, const check_case *cases, size_t n, int argc,
                            char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "--here") == 0) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(cases[i].name, argv[2]) == 0) {
                cases[i].fn();
                return check_report(suite);
            }
        fprintf(stderr, "%s: no case named %s\n", suite, argv[2]);
        return 2;
    }
    int passed = 0, failed = 0, broken = 0, ran = 0;
    for (size_t i = 0; i < n; i++) {
        if (!check_selected_(cases[i].name, argc, argv, 1))
            continue;
        int p = 0, f = 0;
        int bad = check_run_case_(&cases[i], &p, &f);
        if (bad < 0) {
            perror("fork");
            return 1;
        }
        ran++;
        passed += p;
        failed += f;
        broken += bad;
        if (f > 0 && !bad)
            fprintf(stderr, "%s: %d check%s failed\n", cases[i].name, f, f == 1 ? "" : "s");
    }
    printf("%s: %d cases, %d passed checks, %d failed checks, %d cases crashed\n", suite, ran,
           passed, failed, broken);
    return ran > 0 && failed == 0 && broken == 0 && passed > 0 ? 0 : 1;
}

#endif
