/* ONNX models imported as kiln graphs (docs/onnx.md): a .onnx file (protobuf, opsets 9 to 17 of
 * the default domain) becomes a compiled kl_graph of kiln's own ops, with the initializers as its
 * parameters and the shape-only parts of the graph (Constant, Shape, Gather, Unsqueeze, Concat
 * feeding a Reshape, ...) folded at load time. A model kiln cannot run is refused at load, naming
 * every node it cannot run and listing what it can.
 *
 * Dim 0 of every graph input is the batch (dynamic, or fixed when the file fixes it), as in kiln's
 * own graphs; with whole_tensors the inputs are instead whole tensors of their declared shapes
 * (ONNX's backend test cases, which need no batch). kl_onnx_run scores with the graph in eval
 * mode. A kl_onnx runs one call at a time. */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/graph.h"
#include "kiln/status.h"

typedef struct kl_onnx kl_onnx;

typedef struct kl_onnx_opts {
    /* Batches of up to max_batch samples; with a fixed batch in the file, at most that (0: the
     * file's fixed batch, or 1 for a dynamic one). */
    int64_t max_batch;
    /* Inputs are whole tensors of the fixed shapes the file declares, without a batch axis. */
    bool whole_tensors;
} kl_onnx_opts;

/* A graph input or output: its ONNX name and shape. With a batch, shape.d[0] is -1 when the batch
 * is dynamic; features is the floats per sample (per tensor with whole_tensors). */
typedef struct kl_onnx_io {
    const char *name;
    kl_shape shape;
    int64_t features;
} kl_onnx_io;

/* Reads and imports path; external data files are read from path's folder (and no other). */
kl_status kl_onnx_load(const char *path, const kl_onnx_opts *opts, kl_onnx **out, kl_error *err);
/* The same from n bytes in memory, named what in errors; a model with external data is refused. */
kl_status kl_onnx_load_buffer(const void *data, size_t n, const char *what,
                              const kl_onnx_opts *opts, kl_onnx **out, kl_error *err);
void kl_onnx_free(kl_onnx *m);

int kl_onnx_num_inputs(const kl_onnx *m);
const kl_onnx_io *kl_onnx_input(const kl_onnx *m, int i);
int kl_onnx_num_outputs(const kl_onnx *m);
const kl_onnx_io *kl_onnx_output(const kl_onnx *m, int i);
int64_t kl_onnx_max_batch(const kl_onnx *m);
/* Whether the batch is dynamic (false: the file fixes it, or whole tensors). */
bool kl_onnx_dynamic_batch(const kl_onnx *m);
/* The compiled graph (for its parameters, summary and node count). */
kl_graph *kl_onnx_graph(kl_onnx *m);

/* Runs n samples (1 <= n <= max batch; with whole tensors n is 1): x[i] holds input i's
 * (n, features) floats, y[j] receives output j's. */
kl_status kl_onnx_run(kl_onnx *m, const float *const *x, int64_t n, float *const *y, kl_error *err);

/* The ONNX operators kiln imports, comma-separated, in alphabetical order. */
const char *kl_onnx_supported_ops(void);

#endif
