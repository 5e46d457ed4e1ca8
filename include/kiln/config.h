/* The training config: the typed form of a train.yaml (see docs/config.md), and how to load it.
 *
 * kl_config_load parses YAML with libyaml, applies `--set key.path=value` overrides, checks every
 * key against the schema (unknown keys are errors that suggest the nearest valid key; every error
 * names file:line:col, the dotted key and what was expected) and fills defaults. Sweeps and scripts
 * address keys by their dotted paths (`optimizer.lr`, `train.epochs`), so those paths are stable.
 * The model and data parts are plain structs that the model builder and the data loaders take. */
#ifndef KILN_CONFIG_H
#define KILN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/lr_schedule.h"
#include "kiln/optim.h"
#include "kiln/status.h"

/* Where a value came from, for error messages of later stages (the builder, the loaders). */
typedef struct kl_source_pos {
    const char *file; /* the config file, or "--set" for an override */
    int line, col;    /* 1-based; 0 when the value is a default */
} kl_source_pos;

/* Model: a sequence of layers (`model.layers`). */
typedef enum kl_layer_kind {
    KL_LAYER_DENSE,           /* units, activation, bias */
    KL_LAYER_CONV2D,          /* filters, kernel, stride, padding, activation, bias */
    KL_LAYER_MAX_POOL,        /* kernel (size), stride (default: kernel), padding */
    KL_LAYER_AVG_POOL,        /* as max_pool */
    KL_LAYER_GLOBAL_AVG_POOL, /* no fields */
    KL_LAYER_BATCHNORM,       /* momentum, eps */
    KL_LAYER_LAYERNORM,       /* eps */
    KL_LAYER_DROPOUT,         /* rate */
    KL_LAYER_ACTIVATION,      /* activation (relu, ...) as a layer of its own */
    KL_LAYER_FLATTEN,         /* no fields */
    KL_LAYER_RESIDUAL         /* layers: the block; output = block(x) + x, then activation */
} kl_layer_kind;

typedef enum kl_activation {
    KL_ACT_NONE,
    KL_ACT_RELU,
    KL_ACT_LEAKY_RELU, /* slope: alpha */
    KL_ACT_GELU,
    KL_ACT_TANH,
    KL_ACT_SIGMOID
} kl_activation;

typedef struct kl_layer_spec {
    kl_layer_kind kind;
    int units;                    /* dense */
    int filters;                  /* conv2d */
    int kernel;                   /* conv2d, pools */
    int stride;                   /* conv2d (default 1), pools (default: kernel) */
    int padding;                  /* conv2d, pools (default 0) */
    bool bias;                    /* dense, conv2d (default true) */
    kl_activation activation;     /* dense, conv2d, activation, residual (default none) */
    float alpha;                  /* leaky_relu slope (default 0.01) */
    float rate;                   /* dropout probability */
    float momentum, eps;          /* batchnorm (0.1, 1e-5), layernorm eps (1e-5) */
    struct kl_layer_spec *layers; /* residual: the block */
    int nlayers;
    kl_source_pos pos; /* of the layer's mapping in the config */
} kl_layer_spec;

typedef struct kl_model_spec {
    kl_layer_spec *layers;
    int nlayers;
} kl_model_spec;

/* Data: where the training, validation and test sets come from (`data.*`). */
typedef enum kl_data_format {
    KL_DATA_NONE = 0,
    KL_DATA_IDX,  /* images + labels files, gzip or raw (MNIST, Fashion-MNIST) */
    KL_DATA_HDF5, /* file + x and y dataset names */
    KL_DATA_CSV   /* file with a header row and a label column */
} kl_data_format;

typedef struct kl_data_source {
    kl_data_format format;
    char *path;         /* IDX images file; HDF5 file; CSV file */
    char *labels;       /* IDX labels file */
    char *x_dataset;    /* HDF5 (default "x") */
    char *y_dataset;    /* HDF5 (default "y") */
    char *label_column; /* CSV (default "label") */
    kl_source_pos pos;
} kl_data_source;

typedef enum kl_task { KL_TASK_CLASSIFICATION, KL_TASK_REGRESSION } kl_task;
typedef enum kl_standardize { KL_STD_NONE, KL_STD_GLOBAL, KL_STD_FEATURE } kl_standardize;

typedef struct kl_data_config {
    /* `data.dataset: fashion-mnist` (or mnist) fills train and test from data.dir, by default
     * /usr/share/datasets/<dataset>, Debian's dataset-fashion-mnist layout. */
    char *dataset;
    char *dir;
    kl_data_source train, val, test; /* val and test optional (format NONE) */
    float val_fraction;              /* held out of train when val is not given (default 0) */
    kl_task task;                    /* default classification */
    int classes;                     /* 0: from the labels */
    kl_standardize standardize;      /* statistics from the training split only (default global) */
    bool flip;                       /* augmentation: random horizontal flip (default false) */
    int crop_padding;                /* augmentation: random crop after zero padding (default 0) */
    int64_t limit;                   /* use at most this many training samples (0: all) */
    bool lazy; /* HDF5 sources: read each batch's rows from the file, not the set into memory */
} kl_data_config;

/* Early stopping on a validation metric. */
typedef struct kl_early_stop {
    char *metric;    /* val_loss (default) or val_accuracy; empty: off */
    int patience;    /* epochs without improvement (0: off) */
    float min_delta; /* what counts as an improvement */
} kl_early_stop;

/* Where a rank trains (`train.device`): AUTO is CUDA when the build has it and a device is
 * visible, else the CPU. */
typedef enum kl_train_device {
    KL_TRAIN_DEVICE_AUTO,
    KL_TRAIN_DEVICE_CPU,
    KL_TRAIN_DEVICE_CUDA
} kl_train_device;

/* How a GPU computes GEMMs and convolutions (`train.precision`): FP32 (the default), or BF16
 * (bf16 inputs, fp32 accumulation; weights, gradients and optimizer state stay fp32). BF16 needs
 * a CUDA device. */
typedef enum kl_train_precision {
    KL_TRAIN_PRECISION_FP32,
    KL_TRAIN_PRECISION_BF16
} kl_train_precision;

typedef struct kl_train_section {
    int epochs;
    int64_t batch_size; /* global: split across ranks */
    int eval_every;     /* epochs between evaluations (default 1) */
    uint64_t seed;
    int threads; /* op threads per rank (0: cores / local ranks) */
    kl_train_device device;
    bool device_share; /* more local ranks than CUDA devices: share them instead of refusing */
    kl_train_precision precision;
    bool cuda_graph; /* on a GPU, replay forward and backward as CUDA Graphs (default true) */
    float clip_norm; /* global gradient-norm clipping (0: off) */
    int accumulate;  /* micro-batches per optimizer step (default 1): same maths, less memory */
    float label_smoothing;
    kl_early_stop early_stop;
} kl_train_section;

/* Data parallelism (`dist.*`). */
/* dist.timeout's default: also the startup timeout of a rank whose config did not load. */
#define KL_DIST_TIMEOUT_DEFAULT 300.0f

typedef struct kl_dist_section {
    float bucket_mb; /* gradients are all-reduced in buckets of about this size (default 25) */
    float timeout;   /* seconds a rank may wait in one collective before it aborts the job (300) */
    bool overlap;    /* start buckets during backward (true) or only after it (for measuring) */
    /* Gradients summed exactly over dist.shards fixed shards of every batch, so that the weights
     * do not depend on the rank count or train.accumulate (trainers/train_det.c). */
    bool deterministic;
    int shards; /* with deterministic: shards per global batch (default 8) */
} kl_dist_section;

typedef enum kl_every_unit {
    KL_EVERY_OFF,
    KL_EVERY_EPOCHS,
    KL_EVERY_STEPS,
    KL_EVERY_SECONDS
} kl_every_unit;

typedef struct kl_checkpoint_section {
    char *every; /* "2 epochs", "500 steps", "600 s" (or "10 min"); NULL: at the end only */
    kl_every_unit every_unit; /* every, parsed */
    double every_n;           /* in that unit (minutes become seconds) */
    int keep_last;            /* periodic checkpoints kept (default 3; 0 keeps all) */
} kl_checkpoint_section;

typedef struct kl_config {
    char *path;     /* the file it was loaded from */
    char *name;     /* run name (default: a timestamp) */
    char *runs_dir; /* default "runs" */
    kl_model_spec model;
    kl_data_config data;
    kl_optim_config optimizer; /* `optimizer.name`: sgd, adam, adamw */
    kl_lr_schedule schedule;   /* `optimizer.lr` is schedule.base_lr */
    kl_train_section train;
    kl_dist_section dist;
    kl_checkpoint_section checkpoint;
} kl_config;

/* Loads path, applies the overrides ("key.path=value", typed like YAML) in order, validates and
 * fills defaults. Returns NULL with err set on any problem. */
kl_config *kl_config_load(const char *path, const char *const *overrides, int noverrides,
                          kl_error *err);
/* The same from YAML text in memory (name is used in messages). */
kl_config *kl_config_parse(const char *name, const char *text, size_t len,
                           const char *const *overrides, int noverrides, kl_error *err);
/* The config a model file stores (docs/formats.md, "Model file"): read as kl_config_parse reads
 * a config, except that only the model section is required. An absent data section leaves data
 * empty (no dataset, data.train of format none), so a file written by another tool need not name
 * the training data. */
kl_config *kl_config_parse_model(const char *name, const char *text, size_t len, kl_error *err);
void kl_config_free(kl_config *c);

/* Writes the resolved config (defaults filled) as YAML that kl_config_parse reads back to an equal
 * config. */
void kl_config_print(const kl_config *c, FILE *f);

/* A stable hash of the resolved config, for checking that ranks agree. */
uint64_t kl_config_hash(const kl_config *c);

const char *kl_layer_kind_name(kl_layer_kind k);
const char *kl_activation_name(kl_activation a);

#endif
