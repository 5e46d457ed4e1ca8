/* HDF5 checkpoints: everything a training run needs to continue exactly where it stopped (the
 * resolved config, parameters and buffers by name, optimizer state, the step, epoch and position
 * in the epoch's data order, the random seed every draw derives from, early-stopping state,
 * metric history and the standardisation statistics). Written atomically by kl_ckpt_save; read
 * back in stages through an open kl_ckpt, so that a caller can build the model from the stored
 * config before it loads the weights into it. The layout is documented in docs/formats.md.
 *
 * The same weights layout (`/params`, `/buffers`, `/config`, `/preprocessing`) is shared by the
 * exported model file (`format = "kiln-model"`), which kl_ckpt_open also opens. */
#ifndef KILN_CKPT_H
#define KILN_CKPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/graph.h"
#include "kiln/model.h"
#include "kiln/status.h"

/* The root `format` attribute of a checkpoint, and the newest layout this kiln writes and reads
 * (older ones it reads too). */
#define KL_CKPT_FORMAT         "kiln-checkpoint"
#define KL_CKPT_FORMAT_VERSION 1
/* The same for exported model files, versioned on their own. */
#define KL_MODEL_FORMAT         "kiln-model"
#define KL_MODEL_FORMAT_VERSION 1

/* A table of doubles by column (the metric history): ncols names, nrows x ncols values row by
 * row. Stored as one 1-D dataset per column under /history. */
typedef struct kl_ckpt_table {
    int nrows, ncols;
    const char **names;
    double *data;
} kl_ckpt_table;

/* The metric history's columns, in order: epoch, step, train_loss, train_accuracy, val_loss,
 * val_accuracy, val_mae, lr, seconds, samples_per_s. */
const char *const *kl_ckpt_history_columns(int *n);

/* Where a run stands and what it carries besides the weights. In a loaded state every pointer is
 * owned by the state (kl_ckpt_state_free); in a state given to kl_ckpt_save they are borrowed. */
typedef struct kl_ckpt_state {
    int64_t step;          /* optimizer steps taken */
    int epoch;             /* epochs completed */
    int64_t step_in_epoch; /* full batches of the next epoch already taken (a mid-epoch stop) */
    uint64_t seed;         /* train.seed: the shuffle, dropout and augmentation draws are keyed
                              by (seed, epoch or step, position), so this is all the RNG state */
    double epoch_sums[3];  /* the unfinished epoch's loss, hits and absolute-error sums */
    double epoch_seconds;  /* and its training time so far */
    double best_metric;    /* early stopping (NAN: none yet) */
    int best_epoch, bad_epochs;
    float *best_params, *best_buffers; /* the best weights so far; NULL when not kept */
    int optim_kind;                    /* kl_optim_kind */
    int64_t optim_steps;
    float *optim_state;
    size_t optim_state_size;
    float *mean, *std; /* standardisation statistics of the training split */
    int64_t nstats;
    kl_ckpt_table history;
} kl_ckpt_state;

/* Writes g's parameters and buffers, config_text and st to path atomically: a temporary file in
 * the same folder is written, fsynced and renamed over path, and the folder is fsynced, so path
 * holds either the old file or the complete new one, never a torn one. */
kl_status kl_ckpt_save(const char *path, const char *config_text, const kl_model *m,
                       const kl_ckpt_state *st, kl_error *err);

typedef struct kl_ckpt kl_ckpt;

/* Opens a checkpoint (or, with model true, an exported model file) and checks that it is one:
 * an HDF5 file whose root `format` attribute is "kiln-checkpoint" ("kiln-model") and whose
 * `format_version` this kiln reads. Anything else is refused with the reason, never a crash. */
kl_status kl_ckpt_open(const char *path, bool model, kl_ckpt **out, kl_error *err);
void kl_ckpt_close(kl_ckpt *c);
/* The resolved config the file was written with (YAML text, owned by c). */
const char *kl_ckpt_config_text(const kl_ckpt *c);
const char *kl_ckpt_path(const kl_ckpt *c);
/* The epochs done when the checkpoint was written (its state's epoch), without the model. */
kl_status kl_ckpt_read_epoch(kl_ckpt *c, int64_t *epoch, kl_error *err);
/* Low-level access for files that extend the layout (the model file): the HDF5 file id. */
int64_t kl_ckpt_hid(const kl_ckpt *c);

/* The model options the weights were trained with (/model: input shape per sample, outputs,
 * task, label smoothing, seed), so that the model can be rebuilt from the stored config without
 * the training data; batch is set to 1 and trainable to false (change them before building). */
kl_status kl_ckpt_read_model_options(kl_ckpt *c, kl_model_options *o, kl_error *err);

/* Loads every parameter and buffer of g by name. A missing one, or one of another shape or type,
 * is refused (naming it and both shapes) before anything in g changes; an error while reading
 * the data itself (a damaged file) leaves g's weights undefined. */
kl_status kl_ckpt_read_weights(kl_ckpt *c, kl_graph *g, kl_error *err);
/* Loads the standardisation statistics alone (what export and predict need). */
kl_status kl_ckpt_read_stats(kl_ckpt *c, float **mean, float **std, int64_t *nstats, kl_error *err);
/* Loads the training state; g gives the expected sizes of the optimizer and best weights. */
kl_status kl_ckpt_read_state(kl_ckpt *c, const kl_graph *g, kl_ckpt_state *st, kl_error *err);
void kl_ckpt_state_free(kl_ckpt_state *st);

/* The checkpoint in folder dir with the most steps (files that are not readable checkpoints are
 * skipped, and so is best.h5, the best epoch's; on equal steps final.h5 wins). Returns a malloc'd
 * path, or NULL with err set: KL_EIO when dir cannot be read, KL_EINVAL when it holds no
 * checkpoint. */
char *kl_ckpt_find_latest(const char *dir, kl_error *err);

/* Writes the weights layout (/config, /model, /params, /buffers, /preprocessing) into an open
 * HDF5 file id: shared by the checkpoint and the model file. */
kl_status kl_ckpt_write_weights(int64_t file, const char *config_text, const kl_model *m,
                                const float *mean, const float *std, int64_t nstats, kl_error *err);

/* Creates path's temporary sibling for an atomic write, returning its HDF5 file id (or < 0 with
 * err set) and the temporary name in tmp; kl_ckpt_commit closes the id, fsyncs and renames tmp
 * over path (or, with ok false, removes tmp). Root attributes format, format_version (version:
 * each file kind has its own), kiln_version and created are written here. */
int64_t kl_ckpt_create(const char *path, const char *format, int version, char *tmp,
                       size_t tmp_size, kl_error *err);
kl_status kl_ckpt_commit(int64_t file, const char *tmp, const char *path, bool ok, kl_error *err);

/* Removes from folder dir the temporaries of atomic writes whose writer is dead: files named as
 * kl_ckpt_create names them ("<name>.h5.tmp.<pid>") whose pid no process on this host has (a
 * writer killed mid-write leaves one). A live writer's file, and every other file, stays. Returns
 * how many it removed, or -1 with err set when dir cannot be read. */
int kl_ckpt_remove_stale(const char *dir, kl_error *err);

#endif
