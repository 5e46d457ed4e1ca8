/* Private interface of the kiln command, shared by the files in cli/.
 * cli/main.c parses the top-level options and dispatches through a table of kl__cli_cmd rows; each
 * subcommand lives in its own file, owns its options and reports bad ones with
 * kl__cli_usage_error. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>

/* Exit status of the kiln command when the command line itself is wrong (or names a subcommand this
 * version does not have). Failures of the work itself exit with 1. */
#define KL__CLI_EXIT_USAGE 2

/* Runs a subcommand. argv[0] is the subcommand's name ("demo"), its options follow and argv[argc]
 * is NULL, as for main. Returns the process exit status: 0 on success, 1 when the work failed and
 * KL__CLI_EXIT_USAGE for a bad command line. */
typedef int (*kl__cli_run_fn)(int argc, char **argv);

/* One row of the subcommand table in cli/main.c. */
typedef struct kl__cli_cmd {
    const char *name;
    const char *summary; /* one line, shown by 'kiln --help' */
    kl__cli_run_fn run;  /* NULL for a subcommand that is planned but not in this version */
    const char *help;    /* shown by 'kiln <name> --help'; NULL when run handles --help itself */
} kl__cli_cmd;

/* kiln demo (cli/demo.c): trains a small MLP and a small CNN on synthetic data, printing progress.
 * It handles its own --help. */
int kl__cli_demo(int argc, char **argv);

/* kiln data (cli/data.c): `info` and `convert` on IDX, HDF5 and CSV data sets. It handles its own
 * --help. */
int kl__cli_data(int argc, char **argv);

/* kiln train (cli/train.c): trains from a YAML config; handles its own --help. */
int kl__cli_train(int argc, char **argv);

/* kiln tune (cli/tune.c): runs, resumes, reports or simulates a sweep; handles its own --help. */
int kl__cli_tune(int argc, char **argv);

/* kiln export (cli/export.c): writes a model file from a checkpoint; handles its own --help. */
int kl__cli_export(int argc, char **argv);

/* kiln predict (cli/predict.c): scores a file of inputs with a model file; handles its own
 * --help. */
int kl__cli_predict(int argc, char **argv);

/* kiln serve (cli/serve.c): serves exported models over HTTP until SIGTERM; handles its own
 * --help. */
int kl__cli_serve(int argc, char **argv);

/* kiln slurm (cli/slurm.c): `script train|tune CONFIG` prints an sbatch script from the
 * templates in slurm/, embedded at build time; handles its own --help. */
int kl__cli_slurm(int argc, char **argv);

/* kiln runs (cli/runs.c): lists, shows, compares, tags and deletes recorded runs; handles its own
 * --help. */
int kl__cli_runs(int argc, char **argv);

struct json_t;
struct kl_runs_index;
/* kiln runs report (cli/runs_report.c): the HTML page comparing runs under root; argv[0] is
 * "report". */
int kl__cli_runs_report(const char *root, int argc, char **argv);
/* Opens the runs index of root and syncs it with the folders (cli/runs.c); NULL after saying
 * why on stderr. */
struct kl_runs_index *kl__cli_runs_open(const char *root);
/* The run.json of the run RUN names (cli/runs.c), its id in *id (malloc'd); NULL after saying
 * why on stderr. */
struct json_t *kl__cli_run_load(struct kl_runs_index *ix, const char *run, char **id);

/* Reports a bad command line uniformly and returns KL__CLI_EXIT_USAGE, so that a subcommand can
 * write `return kl__cli_usage_error("demo", "unknown option '%s'", arg);`. It prints two lines to
 * stderr, "kiln <cmd>: <message>" and "run 'kiln <cmd> --help' for usage"; when cmd is NULL they
 * name the top-level 'kiln' instead. */
int kl__cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Whether v is a whole number from lo to hi, written as decimal digits with an optional leading
 * minus (no blanks, no plus, nothing after), and that number in *out. Every integer option of
 * every subcommand is read with it; the caller's usage error says what the option takes. */
bool kl__cli_int(const char *v, long long lo, long long hi, long long *out);

#endif
