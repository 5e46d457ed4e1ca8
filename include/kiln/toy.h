/* Small synthetic data sets and a minimal fit loop on them: the XOR table, interleaved spirals
 * and 12x12 images of strokes. They give `kiln demo` and the learning tests something real to
 * learn without files; the full trainer (config, loaders, checkpoints) is kiln train's. */
#ifndef KILN_TOY_H
#define KILN_TOY_H

#include <stdio.h>

#include "kiln/graph.h"
#include "kiln/lr_schedule.h"
#include "kiln/optim.h"

typedef struct kl_toy_data {
    kl_tensor *x; /* f32 (N, features...) */
    kl_tensor *y; /* i32 (N) class labels */
    int classes;
} kl_toy_data;

/* The four XOR points, labels 0/1. */
kl_status kl_toy_xor(kl_toy_data *d, kl_error *err);
/* n points on `classes` interleaved spiral arms in 2-D, with Gaussian noise. */
kl_status kl_toy_spirals(kl_toy_data *d, int n, int classes, float noise, uint64_t seed,
                         kl_error *err);
/* n single-channel size x size images of one stroke each: horizontal, vertical, diagonal or
 * anti-diagonal (4 classes), at a random place, with Gaussian pixel noise. */
kl_status kl_toy_strokes(kl_toy_data *d, int n, int size, float noise, uint64_t seed,
                         kl_error *err);
void kl_toy_data_free(kl_toy_data *d);

typedef struct kl_toy_model {
    kl_graph *g;
    kl_node x, y, logits, loss;
} kl_toy_model;

/* An MLP: in -> hidden[i] (relu) ... -> classes, softmax cross-entropy. */
kl_status kl_toy_mlp(kl_toy_model *m, int in, const int *hidden, int nhidden, int classes,
                     int64_t batch, uint64_t seed, kl_error *err);
/* A CNN for (1, size, size) images: conv 3x3 (8) + batchnorm + relu + max pool 2, conv 3x3 (16)
 * + relu, global average pool, linear to classes. */
kl_status kl_toy_cnn(kl_toy_model *m, int size, int classes, int64_t batch, uint64_t seed,
                     kl_error *err);
void kl_toy_model_free(kl_toy_model *m);

typedef struct kl_toy_fit_config {
    int epochs;
    int64_t batch; /* at most the batch the model was built for */
    kl_optim_config optim;
    kl_lr_schedule lr;
    uint64_t seed;
} kl_toy_fit_config;

/* Trains with shuffled mini-batches; prints one line per epoch to log (if not NULL).
 * *final_loss gets the last epoch's mean training loss. */
kl_status kl_toy_fit(kl_toy_model *m, const kl_toy_data *d, const kl_toy_fit_config *cfg, FILE *log,
                     float *final_loss, kl_error *err);
/* Top-1 accuracy in eval mode. */
kl_status kl_toy_accuracy(kl_toy_model *m, const kl_toy_data *d, float *acc, kl_error *err);

#endif
