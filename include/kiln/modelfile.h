/* The exported model (`format = "kiln-model"`, docs/formats.md): the inference artifact that
 * `kiln export` writes from a training checkpoint, and the one object `kiln predict` and
 * `kiln serve` score with. It holds the model spec and weights, the standardisation of the
 * training split, the input/output signature, class labels and reference statistics of the
 * training inputs and outputs for drift monitoring.
 *
 * Load a file once with kl_modelfile_load, then call kl_modelfile_predict on raw inputs (as a
 * client sends them): the stored standardisation is applied inside, so training, batch
 * prediction and serving cannot disagree on preprocessing. A kl_modelfile runs one call at a
 * time (it owns one compiled graph); a server keeps one per worker thread.
 *
 * This header is the format alone, read (runtime/modelfile.c) and written (kl_modelfile_save,
 * runtime/modelfile_write.c), below both trainers and serving. Making one from a checkpoint is
 * kiln/modelfile_export.h (trainers/), `kiln predict`'s input and prediction files
 * kiln/predict_io.h (trainers/). */
#ifndef KILN_MODELFILE_H
#define KILN_MODELFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/config.h"
#include "kiln/device.h"
#include "kiln/model.h"
#include "kiln/status.h"

/* Quantile bins of the reference statistics: deciles, so 11 edges and 10 proportions. */
#define KL_MODELFILE_BINS 10

typedef struct kl_modelfile kl_modelfile;

/* What a client sends and gets back (Open Inference Protocol v2 names and datatypes). */
typedef struct kl_modelfile_signature {
    const char *input_name;  /* "input" */
    const char *output_name; /* "probabilities" (classification) or "predictions" (regression) */
    const char *datatype;    /* "FP32", of both */
    kl_shape input;          /* per sample, e.g. (1, 28, 28); the batch axis is -1 in the file */
    int64_t features;        /* floats per input sample (the product of input) */
    int outputs;             /* classes, or regression targets */
    kl_task task;
    int64_t nstats; /* standardisation: 0 none, 1 global, features per feature */
} kl_modelfile_signature;

/* Reference statistics of the training split (/reference), computed at export over a seeded
 * subsample of the raw training inputs. Bin b of a feature holds the values v with
 * edges[b] <= v < edges[b + 1], the last bin also v == edges[BINS], values below edges[0] falling
 * in bin 0 and above edges[BINS] in the last bin: kl_modelfile_bin is that rule. */
typedef struct kl_modelfile_reference {
    int64_t samples;                /* the training samples they describe */
    uint64_t seed;                  /* of the subsample (train.seed) */
    const float *input_edges;       /* (features, BINS + 1): min, deciles, max of the raw inputs */
    const float *input_proportions; /* (features, BINS) */
    /* classification: (outputs) proportions of the training labels and of the predicted classes;
     * regression: NULL. */
    const float *label_proportions, *predicted_proportions;
    /* regression: (outputs, BINS + 1) edges and (outputs, BINS) proportions of the training
     * targets and of the model's predictions on the same samples; classification: NULL. */
    const float *target_edges, *target_proportions;
    const float *prediction_edges, *prediction_proportions;
} kl_modelfile_reference;

/* Loads a kiln-model file and builds its model for batches of up to max_batch samples. Refuses
 * anything else with the reason (a checkpoint: "export it first"). A path ending in .onnx is an
 * ONNX model (docs/onnx.md): imported as a kiln graph with the signature of its one input and one
 * output, task regression (its output is returned as it is; a classifier kiln exported is a
 * classifier again, with the class names of its metadata), no standardisation, class names,
 * reference statistics or config; a fixed batch in the file caps max_batch. A path ending in .json
 * or .ubj is an XGBoost model (docs/serve.md), scored through libxgboost. */
kl_status kl_modelfile_load(const char *path, int64_t max_batch, kl_modelfile **out, kl_error *err);
/* The same, with the model on a device (kl_device_pick); predictions and scores are the same
 * calls, the device's outputs copied back after each forward. NULL: the CPU. */
kl_status kl_modelfile_load_on(const char *path, int64_t max_batch, const kl_device_choice *dev,
                               kl_modelfile **out, kl_error *err);
void kl_modelfile_free(kl_modelfile *mf);
/* Runs kiln's own loops of a CPU model (convolution's copies, pooling, activations: ops/par.h) on
 * threads threads, the caller's included; 1 after loading. BLAS's threads are the caller's to set
 * (openblas_set_num_threads). Results are the same bits for every count. An XGBoost model keeps
 * libxgboost's own threads; a model on a GPU ignores it. */
kl_status kl_modelfile_set_threads(kl_modelfile *mf, int threads, kl_error *err);

const kl_modelfile_signature *kl_modelfile_sig(const kl_modelfile *mf);
/* Class k's name (classification), else NULL. */
const char *kl_modelfile_label(const kl_modelfile *mf, int k);
/* Every class name (n of them, the signature's outputs), or NULL with n = 0 (regression). */
const char *const *kl_modelfile_labels(const kl_modelfile *mf, int *n);

/* Where a model file's weights came from (/lineage, docs/formats.md); NULL fields are unknown. */
typedef struct kl_modelfile_lineage {
    char *run;              /* the run folder that trained it (kiln export) */
    char *checkpoint;       /* the checkpoint it was exported from */
    char *parent;           /* online learning: the model file of the version it continued */
    int64_t parent_version; /* that version's number; 0 when none */
} kl_modelfile_lineage;

const kl_modelfile_lineage *kl_modelfile_lineage_of(const kl_modelfile *mf);
/* The training config the model was built from, as the file stores it; NULL for an ONNX model. */
const kl_config *kl_modelfile_config(const kl_modelfile *mf);
/* The reference statistics, or NULL when the file has none (exported with --no-reference). */
const kl_modelfile_reference *kl_modelfile_ref(const kl_modelfile *mf);
/* The built model (for its parameters and summary; NULL for an ONNX model) and the file it came
 * from. */
const kl_model *kl_modelfile_model(const kl_modelfile *mf);
const char *kl_modelfile_path(const kl_modelfile *mf);
int64_t kl_modelfile_max_batch(const kl_modelfile *mf);

/* Scores n raw samples x (n, features), writing out (n, outputs): class probabilities (softmax
 * of the logits) or regression predictions; and, for classification, classes (n): the argmax of
 * the logits (the class training's accuracy counts). out or classes may be NULL. Standardises
 * with the stored statistics on the way into the graph, in batches of up to max_batch, with the
 * graph in eval mode. A NaN or infinite input is refused with the sample and feature where it
 * is. */
kl_status kl_modelfile_predict(kl_modelfile *mf, const float *x, int64_t n, float *out,
                               int32_t *classes, kl_error *err);

/* Running sums of a scoring with known answers, the same that training's evaluation takes. */
typedef struct kl_modelfile_score {
    int64_t n;
    double loss_sum; /* the model's loss per batch, weighted by the batch size */
    double hits;     /* classification: argmax == label */
    double abs_err;  /* regression: sum of |prediction - target| */
} kl_modelfile_score;

/* kl_modelfile_predict with the answers y (i32 (n) labels, or f32 (n, outputs) targets), adding
 * to *score; the loss is the model's own (label smoothing included), so the means below equal
 * kl_evaluate's on the same data. */
kl_status kl_modelfile_evaluate(kl_modelfile *mf, const float *x, const void *y, int64_t n,
                                float *out, int32_t *classes, kl_modelfile_score *score,
                                kl_error *err);
/* Mean loss, accuracy (NAN for regression) and MAE (NAN for classification) of a score. */
void kl_modelfile_score_means(const kl_modelfile *mf, const kl_modelfile_score *s, double *loss,
                              double *accuracy, double *mae);

/* The bin of v among BINS + 1 ascending edges (the rule of kl_modelfile_reference). */
int kl_modelfile_bin(const float *edges, float v);

/* Writes mf to path as a model file, atomically, with other weights: params and buffers (the
 * non-trained state, batch normalisation's running statistics), kl_graph_param_count and
 * kl_graph_buffer_count floats laid out as in kl_modelfile_model(mf)'s graph, which every build
 * of mf's config shares (a trainable one too); NULL keeps mf's. Everything else is mf's: the
 * config, the standardisation, the signature, the class names and the reference statistics.
 * kiln serve's online learning publishes its versions with it. An ONNX model is refused. */
kl_status kl_modelfile_save(const kl_modelfile *mf, const float *params, const float *buffers,
                            const char *path, kl_error *err);

#endif
