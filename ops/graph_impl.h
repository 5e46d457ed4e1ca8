/* The graph's private structures and the op table's contract, shared by ops/graph.c (building,
 * planning, running) and the kernel files in ops/cpu/ (one file per family of ops).
 *
 * An op is a name in KL__OP_LIST (below), from which the kl__op enum, the row declarations and the
 * kl__ops[] table are made, and a row kl__op_<name> in its kernel file: a shape function that
 * checks its inputs and sets the output's shape (and how many saved or scratch floats it needs),
 * then its kernels per device, a column each (the CPU's, always built and the reference, are the
 * row's .cpu; the CUDA ones, in ops/cuda/, are the row's .cuda). Adding an op touches the list,
 * one kernel file per device, and the tests; a name in the list without its row, or in a CUDA
 * build without its CUDA kernels, does not link. */
#ifndef KILN_GRAPH_IMPL_H
#define KILN_GRAPH_IMPL_H

#include "kiln/graph.h"
#include "ops/par.h"

#define KL__MAX_IN 8

typedef enum kl__kind { KL__INPUT, KL__PARAM, KL__BUFFER, KL__OP } kl__kind;

/* Per-op attributes; each op uses its own member. */
typedef union kl__attr {
    struct {
        bool trans_a, trans_b;
    } matmul;
    struct {
        float alpha;
    } scale; /* scale, leaky_relu */
    struct {
        float p;
    } dropout;
    struct {
        float smoothing;
    } xent;
    struct {
        int stride, pad;
        bool relu; /* kl_conv2d_relu: a ReLU applied as the output is written */
    } conv;
    struct {
        int k, stride, pad;
    } pool;
    struct {
        float momentum, eps;
    } norm; /* batchnorm, layernorm (eps only) */
    struct {
        int axis;
    } concat;
    struct {
        kl_shape shape; /* per sample when the input is batched */
    } reshape;
    struct {
        float lo, hi;
    } clip;
    struct {
        int perm[KL_MAX_DIMS]; /* output axis i is input axis perm[i] */
    } transpose;
    struct {
        int top, bottom, left, right;
        float value; /* of the added elements; -INFINITY before a max pool */
    } pad;
} kl__attr;

/* What a kernel sees. Tensors carry the current batch's shapes. din[i] is NULL when input i
 * needs no gradient; backward kernels add into din[i] (the graph zeroes it first). */
typedef struct kl__ctx {
    const kl_tensor *in[KL__MAX_IN];
    int nin;
    kl_tensor *out;
    const kl_tensor *dout;
    kl_tensor *din[KL__MAX_IN];
    bool din_fresh[KL__MAX_IN]; /* din[i] holds no gradient yet (only with fresh_grads) */
    const kl__attr *attr;
    float *saved;   /* saved_n floats kept from forward to backward */
    float *scratch; /* scratch_n floats, shared by all ops, contents undefined on entry */
    bool train;
    uint64_t seed, step; /* for counter-based randomness */
    int64_t first_row;   /* this batch's first row within the global batch (rank slices) */
    uint32_t node;       /* this node's id: a stable stream for randomness */
    /* The CUDA kernels' stream (a cudaStream_t; NULL is the default stream). Every pointer above
     * is a device pointer when a CUDA kernel runs; shapes and attributes stay on the host. */
    void *stream;
    bool bf16; /* GEMMs with bf16 inputs (kl_graph_set_bf16) */
    /* The graph's thread pool for the CPU kernels' own loops (ops/par.h); NULL: one thread. */
    kl__par *par;
} kl__ctx;

typedef struct kl__node kl__node;

/* One device's kernels for an op. */
typedef struct kl__kernel {
    kl_status (*forward)(kl__ctx *c, kl_error *err);
    void (*backward)(kl__ctx *c); /* NULL: no gradient flows through this op */
    /* The backward kernel honours din_fresh: it writes (=) a fresh gradient instead of adding,
     * which saves the graph a zeroing pass over it. Without it the graph zeroes first. */
    bool fresh_grads;
} kl__kernel;

typedef struct kl__op_def {
    const char *name;
    int min_in, max_in;
    /* Checks input shapes and dtypes (n->in[i] shapes are in in[]) and sets n->shape, n->batched,
     * n->saved_n and n->scratch_n (both in floats per max batch). Errors name the op. */
    kl_status (*shape)(kl__node *n, const kl__node *const *in, kl_error *err);
    bool alias;     /* output shares input 0's storage (reshape): no kernels */
    kl__kernel cpu; /* the CPU's kernels */
    /* The CUDA kernels (the .cu files of ops/cuda/), or NULL in a build without CUDA. A pointer
     * because the kernels are defined in another file: a C row cannot copy an object of another
     * translation unit into its initialiser, only take its address. Rows write .cuda =
     * KL__CUDA_KERNELS(name).
     */
    const kl__kernel *cuda;
} kl__op_def;

/* Every op, X(ENUM, name), in kl__op order: the enum is KL__OP_<ENUM>, the row kl__op_<name>. */
#define KL__OP_LIST(X)                  \
    X(MATMUL, matmul)                   \
    X(LINEAR, linear)                   \
    X(BIAS_ADD, bias_add)               \
    X(ADD, add)                         \
    X(MUL, mul)                         \
    X(SCALE, scale)                     \
    X(RELU, relu)                       \
    X(LEAKY_RELU, leaky_relu)           \
    X(GELU, gelu)                       \
    X(TANH, tanh)                       \
    X(SIGMOID, sigmoid)                 \
    X(SOFTMAX, softmax)                 \
    X(DROPOUT, dropout)                 \
    X(SOFTMAX_XENT, softmax_xent)       \
    X(MSE, mse)                         \
    X(SUM, sum)                         \
    X(CONV2D, conv2d)                   \
    X(MAX_POOL2D, max_pool2d)           \
    X(AVG_POOL2D, avg_pool2d)           \
    X(GLOBAL_AVG_POOL, global_avg_pool) \
    X(BATCHNORM, batchnorm)             \
    X(LAYERNORM, layernorm)             \
    X(RESHAPE, reshape)                 \
    X(CONCAT, concat)                   \
    X(EMBEDDING, embedding)             \
    X(SUB, sub)                         \
    X(DIV, div)                         \
    X(CLIP, clip)                       \
    X(LOG_SOFTMAX, log_softmax)         \
    X(TRANSPOSE, transpose)             \
    X(BROADCAST, broadcast)             \
    X(PAD2D, pad2d)

#define KL__OP_ENUM_(E, n) KL__OP_##E,
typedef enum kl__op {
    KL__OP_NONE = 0, /* leaves */
    KL__OP_LIST(KL__OP_ENUM_) KL__OP_COUNT
} kl__op;
#undef KL__OP_ENUM_

struct kl__node {
    kl__kind kind;
    kl__op op;
    char *name; /* owned; NULL if unnamed */
    int nin;
    kl_node in[KL__MAX_IN];
    kl__attr attr;
    kl_dtype dtype;
    kl_shape shape; /* at the compiled (maximum) batch */
    bool batched;   /* dim 0 is the batch */
    size_t saved_n, scratch_n;
    /* Set by compile. */
    bool needs_grad; /* a parameter is upstream */
    bool on_path;    /* the loss depends on it: backward visits it */
    bool output;
    bool live;          /* forward computes it: every node, or in an inference graph those an
                         * output depends on */
    bool requires_grad; /* an input whose gradient the caller asked for */
    kl_node root;       /* storage owner: itself, or what an alias op shares */
    int param;          /* index into params or buffers, else -1 */
    kl_init init;
    unsigned flags;
    size_t val_off, grad_off, saved_off; /* arena offsets in floats, or SIZE_MAX */
    kl_tensor val, grad;                 /* what kernels see: device memory on a device graph */
    /* A device graph's host view for callers (kl_graph_value): an input's or output's staging
     * buffer (host_owned), a parameter's or buffer's place in the host copies. */
    kl_tensor host;
    bool host_owned;
    /* A device graph's input: two page-locked host buffers (host.data is one of them) and its
     * device staging buffer, which the copy stream fills while the previous step runs. */
    void *pinned[2];
    void *stage;
    uint64_t grad_gen; /* backward pass whose zeroing this (root) grad has had */
};

/* The graph, shared by ops/graph.c (building, running) and ops/graph_compile.c. */
struct kl_graph {
    kl__node *nodes;
    int n, cap;
    kl_error err; /* the first build error, reported by compile */
    bool failed;
    bool compiled;
    int64_t max_batch, batch;
    kl_node loss;
    bool inference; /* kl_graph_compile_inference: outputs only, no gradients */
    kl_mode mode;
    uint64_t rng_seed, rng_step;
    int64_t rng_first_row;
    float loss_scale; /* d(loss) that backward starts from; 1 unless the trainer scales */

    kl_param_info *params, *bufs;
    int nparams, nbufs;
    size_t param_total, buf_total;
    float *param_data, *grad_data, *buf_data; /* on a device graph, the host copies */

    /* The device (kl_graph_set_device). On KL_DEVICE_CUDA the flat buffers below, the arena and
     * the scratch are device memory, and stream (a cudaStream_t) queues the graph's work. */
    kl_device device;
    int device_index;
    void *stream;
    float *dev_params, *dev_grads, *dev_bufs;
    /* The staged inputs (ops/graph_device.c): the copy stream, the event after slot k's copies
     * up, the event after forward took the staging buffers, the slot the host fills now; with
     * keep_outputs forward leaves its outputs and loss on the device, and stats (device memory,
     * KL__CUDA_STATS doubles) are the training statistics kl_graph_stats_add sums there. */
    void *copy_stream, *copied[2], *consumed;
    int slot;
    bool keep_outputs;
    bool bf16;    /* kl_graph_set_bf16: the GEMMs' inputs in bf16 */
    kl__par *par; /* kl_graph_set_threads: the CPU kernels' pool, NULL for one thread */
    /* CUDA Graphs (kl_graph_set_cuda_graph): forward's [0] and backward's [1] kernels, captured
     * at the full batch in training after two eager runs of each and then replayed; broken:
     * a capture failed, and every later pass runs eagerly. */
    bool cuda_graph, cuda_graph_broken;
    int graph_warm[2];
    void *graph_exec[2];
    double *stats;

    float *arena, *scratch;
    size_t arena_n, unplanned_n, scratch_n; /* floats */

    uint64_t pass;    /* backward passes so far: stamps grad zeroing */
    int *ready_first; /* per node: first param whose gradient is final after its backward */
    int *ready_next;  /* per param: the next one in that list */
    kl_grad_ready_fn ready_fn;
    void *ready_ctx;
};

/* The flat buffers kernels and the optimizer use: the device's on a device graph. */
static inline float *kl__graph_params_at(kl_graph *g)
{
    return g->device == KL_DEVICE_CUDA ? g->dev_params : g->param_data;
}
static inline float *kl__graph_grads_at(kl_graph *g)
{
    return g->device == KL_DEVICE_CUDA ? g->dev_grads : g->grad_data;
}

/* The graph's pool (ops/par.h), which the step borrows for the optimizer and the clip. */
static inline kl__par *kl__graph_par(const kl_graph *g)
{
    return g->par;
}

/* The device side of a graph (ops/graph_device.c); on the CPU each does nothing and returns
 * KL_OK. alloc gives floats of zeroed memory where the graph's kernels run (the host's is
 * 64-byte aligned, the device's 256); free releases what alloc and stage gave and the stream. */
kl_status kl__graph_alloc(kl_graph *g, float **p, size_t floats, const char *what, kl_error *err);
void kl__graph_release(kl_graph *g, float *p);
void kl__graph_device_free(kl_graph *g);
/* After the host copies of the flat buffers are initialised: device buffers, uploaded. */
kl_status kl__graph_device_flat(kl_graph *g, kl_error *err);
/* After bind: host staging for inputs, outputs and the loss, and the op kernels' check. */
kl_status kl__graph_device_stage(kl_graph *g, kl_error *err);
/* Forward's prologue (inputs up) and epilogue (outputs and loss down, waiting for the device);
 * backward's start (the loss gradient up) and its end (a launch error); zeroing gradients. */
kl_status kl__graph_device_inputs(kl_graph *g, kl_error *err);
kl_status kl__graph_device_outputs(kl_graph *g, kl_error *err);
kl_status kl__graph_device_seed_grad(kl_graph *g, float *at, kl_error *err);
kl_status kl__graph_device_check(kl_graph *g, const char *what, kl_error *err);
void kl__graph_device_zero(kl_graph *g, float *p, size_t floats);
/* Runs part (0: forward's kernels, 1: backward's) of a pass: run(g, err) eagerly, or captured as a
 * CUDA Graph and replayed (kl_graph_set_cuda_graph). run must be safe to call again after a
 * failed capture (the captured work never ran). */
typedef kl_status (*kl__graph_part_fn)(kl_graph *g, kl_error *err);
kl_status kl__graph_device_run(kl_graph *g, int part, kl__graph_part_fn run, kl_error *err);

/* Records the first build error (later ones are its consequences) and returns KL_NONE. */
kl_node kl__graph_fail(kl_graph *g, kl_status st, const char *msg);

/* Whether backward runs this node's kernel: an op the loss depends on, downstream of a param. */
static inline bool kl__visited_in_backward(const kl_graph *g, const kl__node *n)
{
    return g->loss != KL_NONE && n->kind == KL__OP && n->on_path && n->needs_grad;
}

extern const kl__op_def *const kl__ops[KL__OP_COUNT];

/* Each kernel file defines its rows. */
#define KL__OP_DECLARE_(E, n) extern const kl__op_def kl__op_##n;
KL__OP_LIST(KL__OP_DECLARE_)
#undef KL__OP_DECLARE_

/* The CUDA column: ops/cuda/<family>.cu defines kl__cuda_<name> for every op of the list (alias
 * ops an empty kernel), so a name without its CUDA kernels does not link in a CUDA build. The rows
 * take the address under KILN_HAVE_CUDA and NULL otherwise; the C files never see CUDA. */
#ifdef KILN_HAVE_CUDA
#define KL__CUDA_DECLARE_(E, n) extern const kl__kernel kl__cuda_##n;
KL__OP_LIST(KL__CUDA_DECLARE_)
#undef KL__CUDA_DECLARE_
#define KL__CUDA_KERNELS(n) (&kl__cuda_##n)
#else
#define KL__CUDA_KERNELS(n) NULL
#endif

/* The kernels of op on the CPU or (cuda) on a CUDA device. A device without a kernel for the op
 * (a build without CUDA, or a kernel not written) is KL_EUNSUPPORTED naming the op and the
 * device: never a silent fallback to the CPU. Alias ops have no kernels and are never asked. */
const kl__kernel *kl__op_kernels(kl__op op, bool cuda, kl_error *err);

/* Adds an op node after checking its inputs with the op's shape function. Used by the kl_<op>
 * builders in the kernel files. */
kl_node kl__graph_add(kl_graph *g, kl__op op, const kl_node *in, int nin, const kl__attr *attr);

/* Shape helpers for shape functions. */
kl_status kl__expect_ndim(const char *op, const kl__node *n, int lo, int hi, kl_error *err);
kl_status kl__expect_same(const char *op, const kl__node *a, const kl__node *b, kl_error *err);
kl_status kl__expect_f32(const char *op, const kl__node *n, kl_error *err);

/* A per-channel bias's gradient, db (ch) += the sums of dy (outer, ch, inner) over outer and
 * inner, each channel's summed over outer in order (ops/cpu/linear.c): bias_add's and conv2d's
 * fused bias's, the same bits on any pool. */
void kl__bias_grad(kl__par *par, const float *dy, int64_t outer, int64_t ch, int64_t inner,
                   float *db);
/* The same for a ReLU's input gradient: dy where y > 0, else 0 (relu's backward), y the ReLU's
 * output laid out as dy; the same bits as kl__bias_grad of relu's backward output. */
void kl__bias_grad_relu(kl__par *par, const float *dy, const float *y, int64_t outer, int64_t ch,
                        int64_t inner, float *db);

/* For kernels: the rows of a tensor viewed as a matrix over its last axis. */
static inline int64_t kl__rows(const kl_tensor *t)
{
    return kl_numel(t) / t->shape.d[t->shape.ndim - 1];
}

/* conv2d's samples per GEMM: as many as keep the column block and the GEMM's output block within
 * KL__CONV_BUDGET floats (32 MiB). One GEMM over many samples is much wider than one per sample
 * (conv1 of a small CNN has K = 9), which BLAS runs faster and splits across threads. Here because
 * the shape function sizes the scratch with it and the kernels of every device cut their chunks
 * with it: they must agree. */
#define KL__CONV_BUDGET ((int64_t)8 << 20)

static inline int64_t kl__conv_chunk(int64_t n, int64_t k, int64_t o, int64_t l)
{
    int64_t chunk = KL__CONV_BUDGET / ((k + o) * l);
    chunk = chunk < 1 ? 1 : chunk;
    return chunk < n ? chunk : n;
}

#endif
