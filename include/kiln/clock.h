/* The clocks every layer times with. The monotonic one is for durations, deadlines, rates and
 * checkpoint intervals: it never jumps with the wall clock (NTP, a changed date), so a difference
 * of two readings is always the time that passed. The wall clock (CLOCK_REALTIME) is for
 * timestamps people read and for the deadlines pthread_cond_timedwait takes. */
#ifndef KILN_CLOCK_H
#define KILN_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double kl_now(void);
/* The same clock in nanoseconds, for deadlines compared exactly. */
int64_t kl_now_ns(void);

/* Seconds since the Unix epoch (CLOCK_REALTIME), for timestamps in files and logs. */
double kl_wall_now(void);
/* The wall-clock time seconds (>= 0) from now, as pthread_cond_timedwait wants its deadline. */
struct timespec kl_wall_deadline(double seconds);

#endif
