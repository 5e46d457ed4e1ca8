/* What the ONNX importer's files share (runtime/onnx/): the import state, the values of the ONNX
 * graph as kiln sees them (host constants or graph nodes), the operator table and the constant
 * helpers. import.c reads the protobuf and walks the graph, tensor.c reads tensors, ops.c and
 * shape_ops.c map each operator onto kiln's ops, fold.c computes the shape-only operators on
 * constants at load time. */
#ifndef KILN_ONNX_IMPL_H
#define KILN_ONNX_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/onnx.h"
#include "onnx.pb-c.h"

/* Constants keep up to 8 axes (kiln's graph nodes up to KL_MAX_DIMS). */
#define OX_MAX_DIMS 8
/* A Shape element that stands for the batch: it may travel through Gather, Unsqueeze and Concat
 * into a Reshape's target, where it means "keep the batch"; any arithmetic on it is refused. */
#define OX_BATCH INT64_MIN

typedef enum ox_dtype { OX_F32, OX_I64 } ox_dtype;

/* A constant known at load time: an initializer, a Constant, or a folded value. */
typedef struct ox_const {
    ox_dtype dtype;
    int ndim;
    int64_t d[OX_MAX_DIMS];
    int64_t n;  /* elements */
    void *data; /* n floats or int64s, owned by the import's blob list */
} ox_const;

typedef struct ox_value {
    const char *name; /* the proto's */
    bool known;       /* produced so far */
    bool is_const;
    ox_const c;
    kl_node node; /* the graph node, or a parameter made for a float constant; KL_NONE if none */
} ox_value;

/* A parameter of the graph made from a constant: its values are copied in after compile. */
typedef struct ox_param {
    kl_node node;
    bool buffer; /* a kl_buffer (batch normalisation's running statistics) */
    const float *data;
    int64_t n;
} ox_param;

typedef struct ox_import {
    kl_graph *g;
    const char *what; /* the file, for errors */
    const char *dir;  /* external data's folder, or NULL (refused) */
    int opset;
    bool whole;
    int64_t batch; /* the fixed batch the file declares, or -1 (dynamic) */
    ox_value *vals;
    int nvals, capvals;
    int *slots; /* hash of value names: index + 1, 0 free */
    int nslots;
    ox_param *params;
    int nparams, capparams;
    void **blobs; /* every allocation constants point into */
    int nblobs, capblobs;
    int nnames; /* counter making parameter names unique */
    kl_error *err;
} ox_import;

/* The node being mapped: inputs (NULL for an omitted optional one) and outputs. */
typedef struct ox_node {
    const Onnx__NodeProto *p;
    ox_value *in[16];
    int nin;
    ox_value *out[4];
    int nout;
} ox_node;

typedef kl_status (*ox_map_fn)(ox_import *im, ox_node *n);

typedef struct ox_op {
    const char *name;
    ox_map_fn map;
} ox_op;

/* Every operator, sorted by name (ops.c). */
extern const ox_op kl__ox_ops[];
extern const int kl__ox_nops;
const ox_op *kl__ox_op_find(const char *name);

/* An error that names the node: "model.onnx: node 'name' (Op): ...". */
kl_status kl__ox_fail(ox_import *im, const ox_node *n, kl_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Allocations owned by the import (freed with it); NULL after setting an error. */
void *kl__ox_alloc(ox_import *im, int64_t count, size_t elem);

/* Attributes by name: NULL when absent. */
const Onnx__AttributeProto *kl__ox_attr(const ox_node *n, const char *name);
int64_t kl__ox_attr_int(const ox_node *n, const char *name, int64_t dflt);
float kl__ox_attr_float(const ox_node *n, const char *name, float dflt);

/* A tensor proto as a constant (raw_data, typed fields or external data), every size checked. */
kl_status kl__ox_tensor(ox_import *im, const Onnx__TensorProto *t, const char *what, ox_const *c);

/* The node of a value, making a parameter for a float constant (up to KL_MAX_DIMS axes). */
kl_status kl__ox_node_of(ox_import *im, const ox_node *n, ox_value *v, kl_node *out);
/* A kl_buffer holding a float constant (batchnorm's running statistics need one). */
kl_status kl__ox_buffer_of(ox_import *im, const ox_node *n, ox_value *v, kl_node *out);
/* Sets an output to a constant or a graph node. */
void kl__ox_set_const(ox_value *v, const ox_const *c);
void kl__ox_set_node(ox_value *v, kl_node node);

/* fold.c: a new constant of dtype and shape (every size checked), and the shape-only operators
 * computed on constants. */
kl_status kl__ox_const_new(ox_import *im, const ox_node *n, ox_dtype dtype, int ndim,
                           const int64_t *d, ox_const *c);
kl_status kl__ox_fold_gather(ox_import *im, ox_node *n, const ox_const *data, const ox_const *idx,
                             int64_t axis, ox_const *out);
kl_status kl__ox_fold_concat(ox_import *im, ox_node *n, int64_t axis, ox_const *out);
kl_status kl__ox_fold_cast(ox_import *im, ox_node *n, const ox_const *x, int64_t to, ox_const *out);
/* The shape (ONNX axes) of a value: a constant's, or the node's with dim 0 the batch (OX_BATCH). */
int kl__ox_shape(ox_import *im, const ox_value *v, int64_t *d, bool *batched);

/* ops.c's helpers, shared with shape_ops.c: input i present, and its node (a parameter made for a
 * float constant); output 0 set to a node (after the graph's status) or a constant; an INTS
 * attribute (the count, -1 when absent, max + 1 when longer); an axis in [-nd, nd); a view of node
 * x with the ONNX shape d (d[0] OX_BATCH for a batched node); and the identity. */
kl_status kl__ox_need_in(ox_import *im, ox_node *n, int i);
kl_status kl__ox_in_node(ox_import *im, ox_node *n, int i, kl_node *out);
kl_status kl__ox_set_out(ox_import *im, ox_node *n, kl_node node);
void kl__ox_set_out_const(ox_node *n, const ox_const *c);
int kl__ox_attr_ints(const ox_node *n, const char *name, int64_t *v, int max);
kl_status kl__ox_norm_axis(ox_import *im, ox_node *n, int64_t axis, int nd, int *out);
kl_status kl__ox_node_reshape(ox_import *im, ox_node *n, kl_node x, int nd, const int64_t *d,
                              kl_node *out);
kl_status kl__ox_map_identity(ox_import *im, ox_node *n);

/* shape_ops.c's operators. */
kl_status kl__ox_map_flatten(ox_import *im, ox_node *n);
kl_status kl__ox_map_reshape(ox_import *im, ox_node *n);
kl_status kl__ox_map_squeeze(ox_import *im, ox_node *n);
kl_status kl__ox_map_transpose(ox_import *im, ox_node *n);
kl_status kl__ox_map_concat(ox_import *im, ox_node *n);
kl_status kl__ox_map_pad(ox_import *im, ox_node *n);
kl_status kl__ox_map_cast(ox_import *im, ox_node *n);
kl_status kl__ox_map_constant(ox_import *im, ox_node *n);
kl_status kl__ox_map_shape(ox_import *im, ox_node *n);
kl_status kl__ox_map_gather(ox_import *im, ox_node *n);

#endif
