/* kiln tune report: one self-contained report.html for a sweep folder, drawn from its journal
 * (docs/tune.md): a summary (trials per state, the best trial, compute used against training
 * every trial fully, wall time), three inline SVG plots (the metric against epochs per trial,
 * how many trials reached each rung, parallel coordinates of the hyperparameters) and a table of
 * the trials. The page needs no scripts, fonts or style sheets from anywhere. */
#ifndef KILN_TUNE_REPORT_H
#define KILN_TUNE_REPORT_H

#include "kiln/status.h"

/* Bounds that keep the page a few megabytes for a sweep of any size: the plots draw at most
 * KL_TUNE_REPORT_MAX_LINES trials (the best ones) and the metric plot at most
 * KL_TUNE_REPORT_MAX_POINTS points, the table lists at most KL_TUNE_REPORT_MAX_ROWS trials; the
 * page says so when it leaves trials out. */
#define KL_TUNE_REPORT_MAX_LINES  2000
#define KL_TUNE_REPORT_MAX_POINTS 250000
#define KL_TUNE_REPORT_MAX_ROWS   5000

/* Reads <sweep_dir>/journal.jsonl and writes the report to out_path (NULL: <sweep_dir>/
 * report.html), replacing it. A sweep still running, or one with no results yet, gets a report
 * too; a missing or damaged journal is an error naming the file. */
kl_status kl_tune_report(const char *sweep_dir, const char *out_path, kl_error *err);

#endif
