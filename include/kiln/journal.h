/* The sweep journal: every event of a sweep (a trial created with its hyperparameters, started,
 * a result at t with the scheduler's decision, promoted, failed, errored, diverged) appended as
 * one JSON object per line to <sweep folder>/journal.jsonl and fsynced before the coordinator
 * acts on it. `kiln tune --resume` replays it to rebuild the scheduler; `kiln tune report` reads
 * it to draw the sweep. The format is documented in docs/tune.md. */
#ifndef KILN_JOURNAL_H
#define KILN_JOURNAL_H

#include <jansson.h>
#include <stdbool.h>

#include "kiln/status.h"

typedef struct kl_journal kl_journal;

/* Opens path for appending (created if missing). A torn last line (the process was killed in
 * the middle of a write) is cut off first, so that appends start on a clean line. */
kl_journal *kl_journal_open(const char *path, kl_error *err);
void kl_journal_close(kl_journal *j);

/* Appends ev (which gets a "time" member, seconds since the epoch, when it has none) and
 * fsyncs. The event is stolen (its reference is released). */
kl_status kl_journal_append(kl_journal *j, json_t *ev, kl_error *err);

/* Reads every complete event of path in order into a JSON array (a torn last line is
 * ignored); a line in the middle that is not JSON is an error naming its line number. */
json_t *kl_journal_read(const char *path, kl_error *err);

#endif
