/* The monotonic clock every layer times with: durations, deadlines, rates and checkpoint
 * intervals. It never jumps with the wall clock (NTP, a changed date), so a difference of two
 * readings is always the time that passed. Wall-clock times (timestamps in files, condition
 * variable deadlines) are CLOCK_REALTIME and stay with their callers. */
#ifndef KILN_CLOCK_H
#define KILN_CLOCK_H

#include <stdint.h>

/* Seconds since an arbitrary fixed point (CLOCK_MONOTONIC). */
double kl_now(void);
/* The same clock in nanoseconds, for deadlines compared exactly. */
int64_t kl_now_ns(void);

#endif
