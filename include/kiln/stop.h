/* Stop requests: how a signal asks kiln to stop, and how each phase of a command honours it. A
 * process has one request (signals are per process). Phases with state worth keeping (the
 * training loop) poll kl_stop_signal() and save before they stop; phases that hold nothing a
 * later run needs (loading a config, building a model, a summary, export, predict) run between
 * kl_stop_quit_begin and kl_stop_quit_end, where a request ends the process at once from the
 * signal handler, so that neither a long library call (a compile, an HDF5 write) nor a loop
 * without a check can delay it. */
#ifndef KILN_STOP_H
#define KILN_STOP_H

#include <stdint.h>

/* The exit status of a command stopped by a signal (EX_TEMPFAIL: "try again"). */
#define KL_STOP_EXIT 75

/* Records a stop request from signal signo (0 counts as 1). Safe in a signal handler. Inside a
 * quit phase it ends the process instead: kl_stop_quit_begin says how. */
void kl_stop_request(int signo);
/* Makes SIGTERM, SIGINT and SIGUSR1 stop requests (kl_stop_request) for this process, as every
 * kiln command does: the trainers checkpoint and stop, a quit phase ends the process at once, and
 * a second SIGINT (an impatient Ctrl-C) ends it at once in any phase. */
void kl_stop_catch_signals(void);
/* The signal that asked for the stop (0: none), and forgetting it. */
int kl_stop_signal(void);
void kl_stop_clear(void);

/* A quit phase begins: until kl_stop_quit_end, a stop request removes the file registered with
 * kl_stop_remove_on_quit (if any), prints "<who>: stopped by signal N <what>; nothing was
 * saved" (who NULL: prints nothing, as on every rank but the one that reports) and exits with
 * KL_STOP_EXIT. A request already pending quits at once. who and what must outlive the phase
 * (literals). Phases do not nest: a new begin replaces the description. */
void kl_stop_quit_begin(const char *who, const char *what);
void kl_stop_quit_end(void);
/* The temporary file a quit removes: the newest one an atomic write created (kl_ckpt_create
 * registers every one). Paths longer than 4095 bytes are not registered. */
void kl_stop_remove_on_quit(const char *path);

/* The test hook behind tests that must signal a phase at a known point, never by racing a sleep:
 * with KILN_TEST_STOP_AT=POINT[:N][@RANK] in the environment, the first time this process (of
 * rank RANK, when given) reaches kl_stop_test_point(POINT, rank, n) with n equal to N (when
 * given) it says so on stderr, with its pid, and stops itself with SIGSTOP; the test then sends
 * its signals and SIGCONT (or leaves it stopped: a stuck rank). Points: config, data, build,
 * summary (after its first row), step (n: steps taken; before the next), eval (after the first
 * batch), write (an atomic write has created its temporary file), predict-read, predict-score
 * (after the first batch), result (kiln tune's coordinator; n: results journalled, right after
 * the nth). docs/architecture.md says the same for test writers. */
void kl_stop_test_point(const char *point, int rank, int64_t n);

#endif
