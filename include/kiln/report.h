/* How a training run shows itself: a progress bar with samples/s and ETA on a terminal, plain
 * lines otherwise, one JSON object per epoch for tools (--json), and a run directory with the
 * resolved config, metrics.csv and log.txt. A kl_reporter turns kl_train_hooks into all of it. */
#ifndef KILN_REPORT_H
#define KILN_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "kiln/config.h"
#include "kiln/train.h"

typedef struct kl_report_options {
    bool quiet;      /* no progress and no epoch lines (errors and the final line stay) */
    bool json;       /* JSON lines on out instead of human lines */
    int tty;         /* progress bar: 1 yes, 0 no, -1 when err is a terminal */
    bool no_dir;     /* do not create a run directory */
    const char *dir; /* use this run directory (created if missing), appending to its
                        metrics.csv and log.txt: a resumed run continues its folder */
    bool lock;       /* lock the run directory (kiln.lock, kl_dir_lock) before writing in it,
                        until kl_reporter_free: a second process on it is refused (KL_EBUSY) */
    FILE *out;       /* epoch lines and JSON (default stdout) */
    FILE *err;       /* progress bar and notes (default stderr) */
} kl_report_options;

typedef struct kl_reporter kl_reporter;

/* Creates the run directory <runs_dir>/<name or timestamp> (with -2, -3... when it exists),
 * locks it when asked, and writes config.yaml into it. */
kl_reporter *kl_reporter_new(const kl_config *cfg, const kl_report_options *o, kl_error *err);
kl_train_hooks kl_reporter_hooks(kl_reporter *r);
const char *kl_reporter_dir(const kl_reporter *r); /* NULL with no_dir */
void kl_reporter_free(kl_reporter *r);

#endif
