/* Experiment tracking (docs/runs.md): every training run and tune trial records a run.json in its
 * folder (the flattened resolved config, provenance, data fingerprints, system metrics, final and
 * best metrics, lineage, tags), and a SQLite index in the runs root lists them quickly. The
 * folders are the source of truth: the index is rebuilt from them when missing or stale. The
 * recorder is called by `kiln train` and the tune worker on rank 0; `kiln runs` reads the index. */
#ifndef KILN_TRACK_H
#define KILN_TRACK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/config.h"
#include "kiln/status.h"

#define KL_RUN_FORMAT         "kiln-run"
#define KL_RUN_FORMAT_VERSION 1
#define KL_RUNS_INDEX_NAME    "index.sqlite"

/* What the recorder is told about a run besides its config. */
typedef struct kl_run_info {
    const char *dir;         /* the run folder (it exists) */
    const char *root;        /* the runs root holding the index; NULL: the folder above dir
                                (above the sweep folder for a trial) */
    const char *kind;        /* "train" or "trial" */
    const kl_config *cfg;    /* the resolved config */
    const char *config_path; /* the config file (its folder's git commit is recorded); NULL:
                                cfg->path */
    int ranks;               /* processes training it */
    const char *sweep;       /* a trial: its sweep folder; NULL otherwise */
    int64_t trial;           /* a trial: its number; -1 otherwise */
    FILE *warn;              /* where recording failures are said (NULL: stderr) */
} kl_run_info;

typedef struct kl_run_recorder kl_run_recorder;

/* Writes run.json (status running) and indexes it. Never fails the run: a failure to record is a
 * warning on info->warn and a recorder that records what it can (NULL only out of memory). */
kl_run_recorder *kl_run_record_begin(const kl_run_info *info);
/* Writes the final run.json: status finished (KL_OK), killed (KL_ESTOPPED) or failed (anything
 * else, reason the error message), end time, system and final/best metrics (from metrics.csv);
 * indexes it and frees the recorder. NULL is a no-op. */
void kl_run_record_end(kl_run_recorder *r, kl_status st, const char *reason);

/* A version online learning published (kiln serve, docs/serve.md "Online learning"): its
 * folder gets a run.json of kind "online" whose lineage names the version it continued and that
 * version's run. */
typedef struct kl_online_run_info {
    const char *dir;        /* the version's folder: <repository>/<model>/<version> */
    const char *model;      /* the model's name */
    int64_t version;        /* the version's number */
    const kl_config *cfg;   /* the model file's config */
    const char *settings;   /* online_learning as YAML (recorded as params online_learning.*) */
    const char *parent;     /* the model file of the version it continued */
    int64_t parent_version; /* that version's number */
    const char *source_run; /* the training run of the first version (model file /lineage) */
    const char *source_checkpoint;
    int64_t steps;     /* the learner's steps since it started */
    int64_t new_steps; /* the steps this version adds to its parent */
    int64_t feedback;  /* the samples those steps learnt from */
    double loss;       /* their mean training loss; NAN: unknown */
    double start;      /* UNIX time of the first of those steps */
    FILE *warn;        /* where recording failures are said (NULL: stderr) */
} kl_online_run_info;

/* Writes <dir>/run.json (status finished). The model's folder is the runs root of its versions
 * (`kiln runs --root <repository>/<model> list`), not indexed until kiln runs reads it. Like the
 * recorder, a failure is a warning on info->warn and never stops serving. */
void kl_run_record_online(const kl_online_run_info *info);

/* A data file's fingerprint. The SHA-256 is computed once per (path, size, mtime) and cached in
 * the runs index (cache NULL: computed every time). */
typedef struct kl_fingerprint {
    int64_t size;
    int64_t mtime_ns;
    char sha256[65];
    bool cached; /* the hash came from the cache */
} kl_fingerprint;

typedef struct kl_runs_index kl_runs_index;

kl_status kl_fingerprint_file(kl_runs_index *cache, const char *path, kl_fingerprint *out,
                              kl_error *err);

/* Opens (creating it when missing) <root>/index.sqlite: WAL mode and a busy timeout, so that many
 * processes can write it at once. */
kl_status kl_runs_index_open(const char *root, kl_runs_index **out, kl_error *err);
void kl_runs_index_close(kl_runs_index *ix);
const char *kl_runs_index_root(const kl_runs_index *ix);
/* Reads <root>/<id>/run.json into the index, replacing what it held for id. */
kl_status kl_runs_index_put(kl_runs_index *ix, const char *id, kl_error *err);
kl_status kl_runs_index_remove(kl_runs_index *ix, const char *id, kl_error *err);
/* Brings the index in line with the folders: runs whose run.json changed (size or mtime) or that
 * the index lacks are read, rows of folders that are gone are dropped. *changed counts both. */
kl_status kl_runs_index_sync(kl_runs_index *ix, int *changed, kl_error *err);

/* One --where condition: FIELD OP VALUE, FIELD one of params.KEY, metrics.NAME (final),
 * best.NAME, tags.KEY, status, kind, name. */
typedef enum kl_runs_op {
    KL_RUNS_LT,
    KL_RUNS_LE,
    KL_RUNS_GT,
    KL_RUNS_GE,
    KL_RUNS_EQ,
    KL_RUNS_NE
} kl_runs_op;

typedef struct kl_runs_cond {
    char table[16]; /* "params", "metrics", "best", "tags" or "run" */
    char key[256];  /* the key within it (a run column for "run") */
    kl_runs_op op;
    bool numeric; /* value is a number: compared as one */
    double num;
    char text[256];
} kl_runs_cond;

/* Parses one --where expression; errors name the expression and the column of the fault. */
kl_status kl_runs_cond_parse(const char *expr, kl_runs_cond *out, kl_error *err);
/* Parses a --sort key: FIELD as above, a leading '-' for descending. */
kl_status kl_runs_sort_parse(const char *expr, kl_runs_cond *out, bool *desc, kl_error *err);

/* One row of a listing: its id, status, start, and the value of each column asked for (NAN when
 * the run has none; text values in texts). */
typedef struct kl_runs_row {
    const char *id, *status, *kind, *start;
    const double *values;
    const char *const *texts;
} kl_runs_row;

typedef bool (*kl_runs_row_fn)(void *ctx, const kl_runs_row *row);

/* Runs matching every condition, ordered by sort (NULL: by start), each handed to fn with the
 * values of cols (ncols of them). */
kl_status kl_runs_index_list(kl_runs_index *ix, const kl_runs_cond *conds, int nconds,
                             const kl_runs_cond *sort, bool desc, const kl_runs_cond *cols,
                             int ncols, kl_runs_row_fn fn, void *ctx, kl_error *err);

/* The id of a run named by RUN: an id under the root, a unique id suffix after a '/', or a path
 * to a run folder under root. Returns a malloc'd id; KL_ENOTFOUND or KL_EINVAL (ambiguous) with
 * the reason. */
char *kl_runs_resolve(kl_runs_index *ix, const char *run, kl_error *err);

/* Rewrites <root>/<id>/run.json with tags[key] = value (value NULL removes it), atomically, and
 * indexes it. */
kl_status kl_runs_tag(kl_runs_index *ix, const char *id, const char *key, const char *value,
                      kl_error *err);

/* Adds a metric that metrics.csv does not hold (test_loss, test_accuracy, test_mae) to the run's
 * final metrics. NAN is ignored. */
void kl_run_record_metric(kl_run_recorder *r, const char *name, double value);

/* Writes the runs ids (n of them) under MLflow's file-store layout in dir (created when missing)
 * as experiment experiment_name (reused when dir has one of that name): meta.yaml files,
 * params, metrics with timestamps and steps, tags (mlflow.runName, mlflow.source.git.commit,
 * ...) and run.json, config.yaml, metrics.csv, log.txt and git.diff as artifacts. A run's MLflow
 * id comes from its folder's path: exporting again replaces it. */
kl_status kl_runs_export_mlflow(kl_runs_index *ix, const char *const *ids, int n, const char *dir,
                                const char *experiment_name, kl_error *err);

#endif
