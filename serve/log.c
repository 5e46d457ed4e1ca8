/* The server's log: one line per event, with the time of day, for every part of serve/; and the
 * sleeps of its polling loops. */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "serve/serve_impl.h"

void kl__serve_log(kl_server *s, const char *fmt, ...)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    flockfile(s->log);
    fprintf(s->log, "[%s] ", stamp);
    vfprintf(s->log, fmt, ap);
    fputc('\n', s->log);
    fflush(s->log);
    funlockfile(s->log);
    va_end(ap);
}

void kl__serve_sleep(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}
