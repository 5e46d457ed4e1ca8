/* The trainer's private state, shared by trainers/train.c (the loop) and trainers/train_ckpt.c
 * (checkpoints and resume). */
#ifndef KILN_TRAINERS_TRAIN_IMPL_H
#define KILN_TRAINERS_TRAIN_IMPL_H

#include "kiln/ckpt.h"
#include "kiln/step.h"
#include "kiln/train.h"

/* A bucket of gradients all-reduced together: a contiguous run [lo, hi) of the flat gradient
 * buffer holding whole parameters, started as soon as its last parameter's gradient is final. */
typedef struct kl__bucket {
    size_t lo, hi;
    int nparams, pending;
    kl_comm_request *req;
} kl__bucket;

/* dist.deterministic's sums and shards (trainers/train_det.c). */
typedef struct kl__det kl__det;

/* Everything one run holds besides the model. */
typedef struct kl__train_state {
    const kl_config *cfg;
    kl_comm *comm; /* NULL: one process */
    int rank, size;
    /* On a device (train.device), gradients, buffers and weights cross to the host where MPI or
     * a checkpoint needs them (kl_graph_to_host / to_device). */
    kl_device_choice dev;
    kl_comm *gcomm; /* NCCL over comm's ranks for the gradients (kl_train_uses_nccl), or NULL */
    kl__det *det;   /* dist.deterministic's step, or NULL */
    kl__bucket *buckets;
    int nbuckets;
    int *param_bucket; /* per parameter */
    kl_error comm_err; /* the first all-reduce failure inside backward's callback */
    bool reducing;     /* this backward is the step's last micro-batch: buckets all-reduce */
    kl_status comm_st;
    double comm_wait; /* seconds this epoch spent waiting for buckets after backward */
    kl_data_splits *data;
    const kl_train_hooks *hooks;
    kl_model *m;
    kl_step *train_step; /* the optimizer, the schedule and the clip of every step */
    int64_t *idx, steps_per_epoch, step;
    float *best_params, *best_buffers; /* early stopping keeps the best weights */
    double best_metric;
    int best_epoch, bad_epochs;
    double kept_best; /* opts->best_metric's best value in best.h5 (NAN: none yet) */
    /* Checkpoints and resume. */
    const kl_train_options *opts; /* never NULL inside the trainer */
    char *config_text;            /* the resolved config, as checkpoints store it */
    int start_epoch;              /* epochs already done (a resumed run) */
    int64_t start_step;           /* full batches of start_epoch already done */
    double sums[3];               /* the epoch's loss, hits, absolute errors so far (this rank) */
    /* On a device the batch statistics are summed there (kl_graph_stats_add) and read into sums
     * now and then (trainers/train.c, take_stats): the samples added since the last read, and
     * the mean loss that read found (what the step hook is told in between). */
    int64_t stats_samples;
    float stats_loss;
    double epoch_seconds; /* the epoch's training time before a resume */
    double last_ckpt;     /* when the last checkpoint was written (checkpoint.every s) */
    double *history;      /* KL__HISTORY_COLS doubles per finished epoch */
    int nhistory, cap_history;
} kl__train_state;

#define KL__HISTORY_COLS 10

/* What every rank must agree on after a step travels in one small all-reduce with the loss: a
 * stop request (a signal reached some rank) and a time-based checkpoint (rank 0's clock). */
enum { KL__CTL_LOSS, KL__CTL_STOP, KL__CTL_CKPT, KL__CTL_N };

/* Loads the global batch's samples batch[0..b) into the model's inputs, augmented as the config
 * says for this epoch (trainers/train.c). */
kl_status kl__train_load(kl__train_state *r, int epoch, const int64_t *batch, int64_t b,
                         kl_error *err);
/* Adds the batch in the model's outputs to the loss weighted by b, the correct predictions and
 * the absolute errors. */
void kl__train_batch_stats(kl_model *m, int64_t b, double *loss, double *hits, double *abs_err);

/* dist.deterministic (trainers/train_det.c). _check refuses a shard count that the batch, the
 * ranks or train.accumulate do not fit (before the model is built for one shard); _shards is
 * the shard count, 0 when it is off. _init allocates the sums (a CPU run only), _free releases
 * them. A step is kl_step_begin, then _passes (this rank's shards: forward, backward and their
 * exact sum), then _reduce (the ranks' sums added, with ctl's flags; the gradients, the buffers'
 * mean and ctl's loss as the step's mean loss written back; the step's metrics added to
 * r->sums), then kl_step_end. */
kl_status kl__det_check(const kl_config *cfg, int ranks, kl_error *err);
int kl__det_shards(const kl_config *cfg);
kl_status kl__det_init(kl__train_state *r, kl_error *err);
void kl__det_free(kl__det *d);
kl_status kl__det_passes(kl__train_state *r, int epoch, int64_t s, kl_error *err);
kl_status kl__det_reduce(kl__train_state *r, float *ctl, kl_error *err);

/* Names the collectives that follow (until the next call; NULL: none) in a dist.timeout message:
 * kl_comm_set_phase on the run's communicator. */
void kl__train_phase(kl__train_state *r, const char *what, int64_t step);

/* Checkpoints (trainers/train_ckpt.c). Rank 0 writes; every rank calls, so that the writes are
 * at the same point everywhere. `file` is a name inside opts->ckpt_dir; sums and seconds are
 * the unfinished epoch's (all ranks' sums), epochs_done and step_in_epoch where it stands. */
kl_status kl__train_save(kl__train_state *r, int epochs_done, int64_t step_in_epoch,
                         const double *sums, double seconds, const char *file, kl_error *err);
/* Periodic checkpoints: the name for step `step`, and the pruning to checkpoint.keep_last. */
void kl__train_ckpt_name(char *buf, size_t size, int64_t step);
void kl__train_prune(kl__train_state *r);
/* Removes the temporaries that writers killed mid-checkpoint left in the checkpoint folder (rank
 * 0; at the start of a run, and with every pruning). */
void kl__train_remove_stale(kl__train_state *r);
/* Loads opts->resume (rank 0 reads, every rank receives) into the model, optimizer and run. */
kl_status kl__train_resume(kl__train_state *r, kl_error *err);
/* Whether epoch em goes into best.h5 (trainers/train.c), noting its value as the best so far;
 * improved_es: it improved early stopping's metric. */
bool kl__train_is_best(kl__train_state *r, const kl_epoch_metrics *em, bool improved_es);
/* Appends a finished epoch to the history. */
kl_status kl__train_history_add(kl__train_state *r, const kl_epoch_metrics *m, kl_error *err);

#endif
