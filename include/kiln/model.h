/* The model builder: turns a model spec (`model.layers` of a config) into a compiled graph with an
 * output head and a loss, names every parameter stably ("layers.2.weight", "head.bias") so that
 * checkpoints and exports can find them, and summarises the result (`kiln train --summary`).
 *
 * The layers describe the body; the builder adds the head: a dense layer to `outputs` units (the
 * class count, or the number of regression targets) and softmax cross-entropy or MSE. A dense
 * layer whose input has more than one axis per sample flattens it first. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include <stdio.h>

#include "kiln/config.h"
#include "kiln/graph.h"

typedef struct kl_model_options {
    kl_shape input; /* per sample, e.g. (1, 28, 28) */
    kl_task task;
    int outputs;           /* classes, or regression targets */
    float label_smoothing; /* classification */
    int64_t batch;         /* the largest batch the graph runs */
    uint64_t seed;         /* parameter initialisation */
    bool trainable;        /* compile with the loss for backward */
    bool inference;        /* not trainable: compile the output's forward alone (no loss) */
    kl_device device;      /* where the graph runs (kl_graph_set_device); 0 is the CPU */
    int device_index;      /* the CUDA device */
    bool bf16;             /* GEMMs with bf16 inputs on the device (kl_graph_set_bf16) */
    bool cuda_graph;       /* replay the training passes as CUDA Graphs (kl_graph_set_cuda_graph) */
} kl_model_options;

typedef struct kl_model {
    kl_graph *g;
    kl_node x;      /* input, f32 (N, input...) */
    kl_node y;      /* labels i32 (N), or targets f32 (N, outputs) */
    kl_node output; /* logits (N, classes) or predictions (N, outputs) */
    kl_node loss;   /* scalar */
    kl_model_options opts;
    int nlayers; /* summary rows */
    struct kl_model_row *rows;
} kl_model;

/* Builds and compiles. Errors name the layer: "train.yaml:12:5: model.layers[3] (conv2d): ...". */
kl_status kl_model_build(const kl_model_spec *spec, const kl_model_options *opts, kl_model *m,
                         kl_error *err);
void kl_model_free(kl_model *m);

/* One line per layer: index, type, output shape per sample, parameters, forward FLOPs per sample
 * (a multiply-add counts 2), then totals. */
void kl_model_summary(const kl_model *m, FILE *f);
/* The same summary from the spec alone, without building the model: shapes come from the ops'
 * shape functions, no weights are allocated and the time is linear in the layers, so a model too
 * large for this machine can still be described. Rows are printed as they are found; a bad layer
 * is refused as kl_model_build refuses it. */
kl_status kl_model_summarize(const kl_model_spec *spec, const kl_model_options *opts, FILE *f,
                             kl_error *err);
int64_t kl_model_flops(const kl_model *m); /* forward FLOPs per sample */

#endif
