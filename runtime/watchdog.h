/* The collective watchdog (runtime/watchdog.c), used by runtime/comm.c: enter before waiting in a
 * collective, leave after; a wait longer than its timeout ends the process with exit status
 * KL_COMM_EXIT_TIMEOUT and a message. */
#ifndef KILN_RUNTIME_WATCHDOG_H
#define KILN_RUNTIME_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kl__watchdog kl__watchdog;

kl__watchdog *kl__watchdog_start(int rank); /* NULL if no thread could start */
/* A wait in `what` (a string that outlives it) at `step` (-1: none) begins now; it may last
 * timeout + grace seconds (grace: for a rank that leaves the naming of the missing to another). */
void kl__watchdog_enter(kl__watchdog *w, double timeout, double grace, const char *what,
                        int64_t step);
/* Who the wait is for, when the collective can tell ("rank 3 did not arrive"); NULL: unknown. */
void kl__watchdog_missing(kl__watchdog *w, const char *who);
void kl__watchdog_leave(kl__watchdog *w);
void kl__watchdog_stop(kl__watchdog *w);

#endif
