/* The training loop: one trainer serves every caller. `kiln train` runs it once; a tune trial
 * will run it with the trial's overrides and a hook that asks the coordinator whether to go on.
 * The trainer does not print: it reports through hooks (trainers/report.c turns them into a
 * progress bar, plain lines, JSON and a run directory). */
#ifndef KILN_TRAIN_H
#define KILN_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/comm.h"
#include "kiln/config.h"
#include "kiln/data.h"
#include "kiln/device.h"
#include "kiln/model.h"

typedef struct kl_epoch_metrics {
    int epoch; /* 1-based */
    int epochs;
    int64_t step;                      /* optimizer steps so far */
    double train_loss, train_accuracy; /* over the epoch's batches (accuracy NAN for regression) */
    double val_loss, val_accuracy;     /* NAN when not evaluated this epoch */
    double val_mae;                    /* regression */
    double lr;                         /* at the epoch's last step */
    double seconds, samples_per_s;     /* training only, evaluation excluded */
    double comm_wait_s; /* of seconds: waiting for gradient all-reduces after backward */
    bool best;          /* the best validation metric so far */
} kl_epoch_metrics;

typedef struct kl_train_result {
    int epochs_run, best_epoch;
    bool early_stopped;
    double test_loss, test_accuracy, test_mae; /* NAN without a test set */
    double seconds;
    kl_epoch_metrics last;
} kl_train_result;

typedef struct kl_train_hooks {
    void *ctx;
    /* Every step: progress within the epoch. loss is the step's on the CPU; on a GPU, where the
     * loss is read every 20 steps, the mean loss of the last read (NaN before the first). */
    void (*on_step)(void *ctx, int epoch, int64_t step_in_epoch, int64_t steps_per_epoch,
                    double loss, double elapsed_s);
    /* Every epoch; returning false stops training (a tune scheduler's decision). */
    bool (*on_epoch)(void *ctx, const kl_epoch_metrics *m);
    void (*on_done)(void *ctx, const kl_train_result *r);
} kl_train_hooks;

/* Checkpointing and resume for one run. */
typedef struct kl_train_options {
    const char *ckpt_dir; /* rank 0 writes checkpoints here (checkpoint.every, a stop, the end);
                             NULL: none, and a config with checkpoint.every is refused */
    const char *resume;   /* a checkpoint to continue from exactly; NULL: a fresh start */
    bool weights_only;    /* take only resume's weights: a new run (the config may differ) */
    /* best.h5 in ckpt_dir: a checkpoint of the epoch whose best_metric (a kl_epoch_metric name)
     * is the best finite value so far (strictly: on a tie the earlier epoch stays), written when
     * it improves, before that epoch's periodic checkpoint. NULL: best.h5 follows early stopping
     * (the epochs that improve train.early_stop's metric by min_delta), and without early
     * stopping none is written. A resumed run takes the best so far from the checkpoint's
     * metric history. */
    const char *best_metric;
    bool best_maximize;
    /* Overrides ("key=value") applied to resume's stored config before it is compared with this
     * run's: keys this run may change from the checkpoint's (kiln tune's PBT passes the
     * hyperparameters it mutates, for a trial that continues a copied checkpoint). */
    const char *const *resume_changes;
    int nresume_changes;
    /* The GPU slot of this rank on its node, when the caller knows better than comm: kiln tune's
     * workers count themselves among the node's worker ranks (the coordinator trains nothing),
     * not among their group's. device_slots 0: comm's local rank and size. */
    int device_slot, device_slots;
} kl_train_options;

/* An epoch's metric by name: val_accuracy, val_loss, val_mae, train_accuracy or train_loss
 * (NAN: another name, or not measured this epoch). */
double kl_epoch_metric(const kl_epoch_metrics *m, const char *name);

/* A stop request (kl_stop_request, include/kiln/stop.h) makes every trainer in this process stop
 * after its current step, write a checkpoint and return KL_ESTOPPED (on every rank: the request
 * travels with the step's all-reduce). */

/* The device this process trains on: train.device and train.device_share, with the GPU of its
 * local rank in comm (NULL: one process). kl_train_run_dist makes the same choice; kiln train
 * calls this first to name the device in its first line. Errors as kl_device_choose's. */
kl_status kl_train_pick_device(const kl_config *cfg, kl_comm *comm, kl_device_choice *c,
                               kl_error *err);

/* Whether ranks on device dev all-reduce their gradients with NCCL: several ranks, each with a
 * CUDA device of its own, in a build with NCCL. Otherwise a GPU run's gradients go through host
 * memory and MPI (the MPI fallback). The trainer also checks that every rank agrees. */
bool kl_train_uses_nccl(const kl_device_choice *dev, int ranks);

/* Builds the model from cfg for data, trains it, evaluates on the test split, and leaves the
 * trained model in *model (free it with kl_model_free) when model is not NULL. */
kl_status kl_train_run(const kl_config *cfg, kl_data_splits *data, const kl_train_hooks *hooks,
                       kl_model *model, kl_train_result *result, kl_error *err);

/* The same, data parallel over the ranks of comm: the global train.batch_size is split evenly
 * (an error when it does not divide), each rank takes its slice of every batch of the shared
 * shuffle, parameters start from rank 0's, and gradients and losses are averaged across ranks so
 * that every rank takes the same step. Dropout masks follow the sample's row in the global
 * batch, so they do not depend on the rank count. Batch-norm running statistics are averaged
 * across ranks at every epoch's end. Validation and test are split over the ranks and their sums
 * all-reduced, so every rank sees the same metrics; hooks are called on every rank that passes
 * them, and rank 0's on_epoch decides for all. comm NULL is one process. */
kl_status kl_train_run_dist(const kl_config *cfg, kl_data_splits *data, kl_comm *comm,
                            const kl_train_options *opts, const kl_train_hooks *hooks,
                            kl_model *model, kl_train_result *result, kl_error *err);

/* Whether `ranks` ranks can split cfg's global batch: into ranks x train.accumulate equal
 * micro-batches, or, with dist.deterministic, into dist.shards shards shared equally by the ranks
 * and no larger than those micro-batches. KL_EINVAL with a message that says what to change. */
kl_status kl_train_check_split(const kl_config *cfg, int ranks, kl_error *err);

/* Where micro-batch `micro` of rank `rank` starts in step `step`'s share of the epoch's shuffled
 * order: each global batch of `global_batch` samples is cut into ranks x accumulate equal,
 * disjoint runs, so an epoch's full batches are covered exactly once across the ranks. */
int64_t kl_train_slice(int64_t step, int64_t global_batch, int rank, int ranks, int accumulate,
                       int micro);

/* The model options a config and its data imply (input shape, outputs, task, batch). */
kl_model_options kl_train_model_options(const kl_config *cfg, const kl_data_splits *data);

/* Mean loss and accuracy (classification) or MAE (regression) of a model on a data set, in eval
 * mode, in batches of the model's size. */
kl_status kl_evaluate(kl_model *m, const kl_dataset *d, double *loss, double *accuracy, double *mae,
                      kl_error *err);

#endif
