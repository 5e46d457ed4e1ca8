/* The collective watchdog (trainers/watchdog.c): enter before waiting in a collective, leave
 * after; a wait longer than the timeout ends the process with a message. */
#ifndef KILN_TRAINERS_WATCHDOG_H
#define KILN_TRAINERS_WATCHDOG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct kl__watchdog kl__watchdog;

kl__watchdog *kl__watchdog_start(int rank, double timeout); /* NULL if no thread could start */
void kl__watchdog_enter(kl__watchdog *w, const char *what, int64_t step);
void kl__watchdog_leave(kl__watchdog *w);
void kl__watchdog_stop(kl__watchdog *w);

#endif
