/* The autodiff graph: a model is a static graph of nodes built once, then compiled.
 *
 * Build with the kl_<op> functions below; each returns a node id, or KL_NONE after an error, which
 * the graph remembers (a later call with KL_NONE just passes it on) and kl_graph_compile reports.
 * Inputs are declared per sample; the batch is the leading dimension of every batched node and is
 * fixed at compile time as a maximum (kl_graph_set_batch runs smaller batches on the same plan).
 *
 * Compiling plans every activation, activation gradient and saved value into one arena (buffers
 * whose lifetimes do not overlap share memory), and parameters, gradients and non-trained
 * buffers (batchnorm running statistics) into one flat buffer each, with named views. */
#ifndef KILN_GRAPH_H
#define KILN_GRAPH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/status.h"
#include "kiln/tensor.h"

typedef struct kl_graph kl_graph;
typedef int32_t kl_node;
#define KL_NONE ((kl_node)-1)

typedef enum kl_init_kind {
    KL_INIT_ZEROS,
    KL_INIT_ONES,
    KL_INIT_CONSTANT,      /* a */
    KL_INIT_UNIFORM,       /* uniform in [a, b) */
    KL_INIT_NORMAL,        /* mean a, std b */
    KL_INIT_HE_NORMAL,     /* normal(0, sqrt(2 / fan_in)) */
    KL_INIT_HE_UNIFORM,    /* uniform(+-1/sqrt(fan_in)): PyTorch's default for Linear and Conv2d */
    KL_INIT_XAVIER_UNIFORM /* uniform(+-sqrt(6 / (fan_in + fan_out))) */
} kl_init_kind;

typedef struct kl_init {
    kl_init_kind kind;
    float a, b;
} kl_init;

/* Parameter flags. */
enum { KL_PARAM_NO_DECAY = 1u << 0 }; /* weight decay skips it (biases, norm scales) */

typedef enum kl_mode { KL_MODE_TRAIN = 0, KL_MODE_EVAL = 1 } kl_mode;

typedef struct kl_param_info {
    const char *name;
    kl_node node;
    kl_shape shape;
    size_t offset; /* in floats, into kl_graph_params / kl_graph_grads */
    size_t numel;
    unsigned flags;
} kl_param_info;

/* Called during backward as soon as parameter `param`'s gradient is final. */
typedef void (*kl_grad_ready_fn)(void *ctx, int param);

kl_graph *kl_graph_new(void);
void kl_graph_free(kl_graph *g);

/* Leaves. Names are copied; parameter and buffer names must be unique. */
kl_node kl_input(kl_graph *g, const char *name, kl_dtype dtype, kl_shape per_sample);
kl_node kl_param(kl_graph *g, const char *name, kl_shape shape, kl_init init, unsigned flags);
kl_node kl_buffer(kl_graph *g, const char *name, kl_shape shape, kl_init init);

/* Linear algebra. matmul takes 2-D a and b, optionally transposed; linear computes x W^T + b for
 * x (..., in), w (out, in) and b (out) or KL_NONE. */
kl_node kl_matmul(kl_graph *g, kl_node a, kl_node b, bool trans_a, bool trans_b);
kl_node kl_linear(kl_graph *g, kl_node x, kl_node w, kl_node b);
kl_node kl_bias_add(kl_graph *g, kl_node x, kl_node b); /* b (C) broadcast along axis 1 */

/* Elementwise. add and mul take equal shapes; kl_residual is add, named for skip connections. */
kl_node kl_add(kl_graph *g, kl_node a, kl_node b);
kl_node kl_residual(kl_graph *g, kl_node x, kl_node skip);
kl_node kl_mul(kl_graph *g, kl_node a, kl_node b);
kl_node kl_scale(kl_graph *g, kl_node x, float alpha);
kl_node kl_relu(kl_graph *g, kl_node x);
kl_node kl_leaky_relu(kl_graph *g, kl_node x, float alpha);
kl_node kl_gelu(kl_graph *g, kl_node x); /* exact: x * Phi(x) */
kl_node kl_tanh(kl_graph *g, kl_node x);
kl_node kl_sigmoid(kl_graph *g, kl_node x);
kl_node kl_softmax(kl_graph *g, kl_node x); /* over the last axis */
kl_node kl_dropout(kl_graph *g, kl_node x, float p);
/* a - b and a / b of equal shapes, x clipped to [lo, hi], log(softmax(x)) over the last axis. */
kl_node kl_sub(kl_graph *g, kl_node a, kl_node b);
kl_node kl_div(kl_graph *g, kl_node a, kl_node b);
kl_node kl_clip(kl_graph *g, kl_node x, float lo, float hi);
kl_node kl_log_softmax(kl_graph *g, kl_node x);

/* Losses: scalar means over the batch. labels are i32 (N); smoothing in [0, 1). */
kl_node kl_softmax_xent(kl_graph *g, kl_node logits, kl_node labels, float smoothing);
kl_node kl_mse(kl_graph *g, kl_node pred, kl_node target);
kl_node kl_sum(kl_graph *g, kl_node x); /* sum of every element, shape (1) */

/* Convolution and pooling on NCHW; w is (out, in, kh, kw). */
kl_node kl_conv2d(kl_graph *g, kl_node x, kl_node w, int stride, int pad);
/* kl_conv2d followed by kl_bias_add with b (O), as one op (the bias is added as the convolution's
 * output is written, and its gradient summed in the same order): the same values bit for bit, one
 * pass over the output fewer each way. CPU graphs only so far: a CUDA graph refuses it
 * (KL_EUNSUPPORTED at the first forward); use kl_conv2d and kl_bias_add there. */
kl_node kl_conv2d_bias(kl_graph *g, kl_node x, kl_node w, kl_node b, int stride, int pad);
/* kl_conv2d (then kl_bias_add with b, or no bias when b is KL_NONE) then kl_relu, as one op: the
 * ReLU is applied as the output is written, and its backward masks dy as the convolution reads
 * it, so the same values and gradients bit for bit with two passes over the output fewer each
 * way and no gradient buffer between them. CPU graphs only so far, as kl_conv2d_bias. */
kl_node kl_conv2d_relu(kl_graph *g, kl_node x, kl_node w, kl_node b, int stride, int pad);
kl_node kl_max_pool2d(kl_graph *g, kl_node x, int k, int stride, int pad);
kl_node kl_avg_pool2d(kl_graph *g, kl_node x, int k, int stride, int pad);
kl_node kl_global_avg_pool(kl_graph *g, kl_node x); /* (N, C, H, W) -> (N, C) */

/* Normalisation. batchnorm normalises over all axes but 1 of (N, C) or (N, C, H, W), with
 * gamma, beta (C) params and running_mean, running_var (C) buffers; layernorm over the last axis.
 */
kl_node kl_batchnorm(kl_graph *g, kl_node x, kl_node gamma, kl_node beta, kl_node running_mean,
                     kl_node running_var, float momentum, float eps);
kl_node kl_layernorm(kl_graph *g, kl_node x, kl_node gamma, kl_node beta, float eps);

/* Shapes. reshape takes the per-sample shape; flatten makes (N, rest). */
kl_node kl_reshape(kl_graph *g, kl_node x, kl_shape per_sample);
kl_node kl_flatten(kl_graph *g, kl_node x);
kl_node kl_concat(kl_graph *g, const kl_node *xs, int n, int axis);
kl_node kl_embedding(kl_graph *g, kl_node indices, kl_node table); /* i32 (N, ...) -> (N, ..., D) */
/* transpose: output axis i is x's axis perm[i] (ndim of x entries); a batched x keeps the batch
 * first (perm[0] == 0). broadcast: x repeated to like's shape, numpy's rule (x's axes aligned to
 * like's last ones, each equal or 1); the output is batched as like, and a batched x must have
 * like's rank. */
kl_node kl_transpose(kl_graph *g, kl_node x, const int *perm);
kl_node kl_broadcast(kl_graph *g, kl_node x, kl_node like);
/* pad2d: (N, C, H, W) -> (N, C, top + H + bottom, left + W + right), the new elements value (0
 * before a convolution, -INFINITY before a max pool); each pad at least 0. */
kl_node kl_pad2d(kl_graph *g, kl_node x, int top, int bottom, int left, int right, float value);

/* The first build error, if any (KL_OK otherwise); copies its message into err. */
kl_status kl_graph_status(const kl_graph *g, kl_error *err);

/* Naming, lookup and outputs. An output stays readable after backward. */
kl_node kl_graph_name(kl_graph *g, kl_node n, const char *name);
kl_node kl_graph_find(const kl_graph *g, const char *name);
void kl_graph_mark_output(kl_graph *g, kl_node n);
/* Makes backward also compute d(loss)/d(input) for an f32 input (saliency, gradient checks). */
void kl_graph_require_grad(kl_graph *g, kl_node input);

/* Devices. A graph runs on the CPU unless kl_graph_set_device, called before kl_graph_compile,
 * puts it on CUDA device `index` (an index among the devices CUDA_VISIBLE_DEVICES leaves
 * visible). Compiling a device graph initialises the parameters and buffers on the host exactly
 * as on the CPU (same seed, same values) and copies them up; parameters, gradients, buffers, the
 * planned arena and the scratch then live in device memory, and forward and backward queue the
 * device's kernels (kl__op_kernels: an op without a CUDA kernel fails compile, naming it) on a
 * stream of the graph's own. The host sees a device graph through copies:
 *   - kl_graph_value(input) is a host buffer that forward copies to the device first;
 *     kl_graph_value of an output, the loss, or a node nothing consumes (a loss the graph was not
 *     compiled with) is a host buffer that forward fills at its end
 *     (it waits for the device: the loss is read once per forward); that of a parameter or
 *     buffer is its place in the host copies below. Any other node's value, and kl_graph_grad
 *     of every node, is NULL on a device graph.
 *   - kl_graph_params, kl_graph_grads and kl_graph_buffers are host copies, current only after
 *     kl_graph_to_host; after writing them (loading a checkpoint, a broadcast) kl_graph_to_device
 *     puts them on the device.
 *   - kl_graph_on_grad_ready's callback comes when the gradient's work has been queued on the
 *     graph's stream (kl_graph_stream), not when it is done: a consumer orders itself after it
 *     on the device (an event recorded on that stream), as kl_comm_nccl's all-reduce does.
 * A build without CUDA refuses KL_DEVICE_CUDA with KL_EUNSUPPORTED, as does a build with it
 * where the device is not visible. On a CPU graph to_host and to_device do nothing. */
typedef enum kl_device { KL_DEVICE_CPU = 0, KL_DEVICE_CUDA = 1 } kl_device;
/* The most device memory kiln's own allocations (graphs' parameters, gradients, buffers, arena,
 * scratch and staging; steps' optimizer state) held at once in this process, over all its
 * devices, in bytes. False (and *bytes 0) when the process never allocated device memory, as on
 * the CPU. CUDA's context and the libraries' workspaces (cuBLAS, NCCL) are not counted. */
bool kl_device_memory_peak(int64_t *bytes);
kl_status kl_graph_set_device(kl_graph *g, kl_device device, int index, kl_error *err);
kl_device kl_graph_device(const kl_graph *g);
enum { KL_GRAPH_PARAMS = 1u << 0, KL_GRAPH_GRADS = 1u << 1, KL_GRAPH_BUFFERS = 1u << 2 };
/* Copies the flat buffers named in `what` (KL_GRAPH_* or-ed) between the device and the host
 * copies; waits for the device. KL_EIO naming the CUDA error on a failure. */
kl_status kl_graph_to_host(kl_graph *g, unsigned what, kl_error *err);
kl_status kl_graph_to_device(kl_graph *g, unsigned what, kl_error *err);
/* A device graph's stream (a cudaStream_t) and its flat gradient buffer in device memory, for a
 * device communicator (kl_comm_nccl); NULL on a CPU graph. */
void *kl_graph_stream(kl_graph *g);
float *kl_graph_device_grads(kl_graph *g);
/* A device graph's inputs go up through page-locked host memory: forward queues the copy on a
 * copy stream of the graph's own, where it overlaps the previous step's work, and the graph's
 * stream waits for it on the device. Training keeps the step on the device with
 * kl_graph_keep_outputs(g, true): forward then neither copies its outputs and loss down nor
 * waits, and kl_graph_value of an input, after forward, is the other of its two host buffers
 * (write every input before each forward; its previous contents are two batches old). The
 * statistics the trainer needs are summed on the device instead: kl_graph_stats_add, after a
 * forward, adds the loss times the batch, and the correct rows of output `out` against the i32
 * labels `y` (classification) or the absolute errors against the f32 targets `y`;
 * kl_graph_stats_take waits for the device, gives those three sums and the count of forwards
 * whose loss was not finite (bad) with the `step` of the first (first_bad, -1: none), and
 * starts them again from zero. keep false (the default) is the waiting forward described above.
 * On a CPU graph keep_outputs does nothing and the stats calls are KL_EINVAL. */
kl_status kl_graph_keep_outputs(kl_graph *g, bool keep, kl_error *err);
/* On a CUDA graph, every GEMM (linear, matmul, conv2d's) with bf16 inputs and fp32 accumulation
 * (cuBLAS's CUBLAS_COMPUTE_32F_FAST_16BF: the inputs are rounded to bf16 inside the GEMM); all
 * memory stays fp32. A CPU graph refuses on with KL_EUNSUPPORTED. */
kl_status kl_graph_set_bf16(kl_graph *g, bool on, kl_error *err);
/* Threads for the CPU kernels' own loops (im2col, pooling, activations, the optimizer update:
 * everything but the BLAS calls, whose threads BLAS sets); 1, the default, runs them on the
 * calling thread. Any time before a pass; results are the same bits for every count (ops/par.h).
 * KL_EINVAL below 1, KL_ENOMEM when a thread cannot be started. */
kl_status kl_graph_set_threads(kl_graph *g, int threads, kl_error *err);
/* CUDA Graphs (on a CUDA graph; nothing on the CPU, off by default): in training
 * (KL_MODE_TRAIN) at the full batch with the outputs kept on the device, forward's kernels and
 * backward's are each captured once, after two eager runs, and replayed every later pass, one
 * launch each instead of one per kernel. A pass at another batch (a partial last batch), in eval
 * mode, with a gradient-ready callback (kl_graph_on_grad_ready: a communicator) or in a graph
 * with dropout (whose kernel takes the step as an argument) runs eagerly; a capture that fails
 * turns them off for the graph, that pass running eagerly. The results are those of the eager
 * launches, bit for bit. kl_graph_cuda_graphs says how many of the two parts replay (0, 1, 2). */
kl_status kl_graph_set_cuda_graph(kl_graph *g, bool on, kl_error *err);
int kl_graph_cuda_graphs(const kl_graph *g);
kl_status kl_graph_stats_add(kl_graph *g, kl_node out, kl_node y, int64_t step, kl_error *err);
kl_status kl_graph_stats_take(kl_graph *g, double sums[3], int64_t *bad, int64_t *first_bad,
                              kl_error *err);

/* Plans memory for batches of up to max_batch. With loss != KL_NONE the graph is trainable:
 * kl_graph_backward computes d(loss)/d(every parameter). Parameters are initialised from seed. */
kl_status kl_graph_compile(kl_graph *g, int64_t max_batch, kl_node loss, uint64_t seed,
                           kl_error *err);
/* Plans memory for a graph that only ever computes its outputs (kl_graph_mark_output; at least
 * one): serving and prediction. Forward runs the nodes an output depends on and nothing else (a
 * loss and its labels are left out: kl_graph_value of such a node has no data), the arena holds
 * only their values, and there are no gradients (kl_graph_backward refuses). Outputs are those of
 * kl_graph_compile's forward, bit for bit. */
kl_status kl_graph_compile_inference(kl_graph *g, int64_t max_batch, uint64_t seed, kl_error *err);
/* The loss the graph was compiled with, or KL_NONE. */
kl_node kl_graph_loss(const kl_graph *g);

kl_status kl_graph_set_batch(kl_graph *g, int64_t batch, kl_error *err);
int64_t kl_graph_batch(const kl_graph *g);
int64_t kl_graph_max_batch(const kl_graph *g);
void kl_graph_set_mode(kl_graph *g, kl_mode mode);
/* Dropout masks are drawn from (seed, step, node, sample row); the trainer advances step and
 * says where this batch's rows sit in the global batch (first_row), so that a rank's slice or a
 * micro-batch draws exactly the masks those samples get in one undivided batch. */
void kl_graph_set_rng(kl_graph *g, uint64_t seed, uint64_t step, int64_t first_row);

kl_status kl_graph_forward(kl_graph *g, kl_error *err);
/* Adds this batch's gradients into the gradient buffer; call kl_graph_zero_grad between steps.
 * Each backward needs the forward just before it (the arena reuses what backward consumed). */
kl_status kl_graph_backward(kl_graph *g, kl_error *err);
void kl_graph_zero_grad(kl_graph *g);
/* Backward computes d(scale * loss): the data-parallel trainer passes 1 / (ranks x micro-batches)
 * so that summing the pieces gives the mean without another pass over the gradients. */
void kl_graph_set_loss_scale(kl_graph *g, float scale);
void kl_graph_on_grad_ready(kl_graph *g, kl_grad_ready_fn fn, void *ctx);

/* Views valid after compile. value(n) of an input is where the caller writes the batch. */
kl_tensor *kl_graph_value(kl_graph *g, kl_node n);
kl_tensor *kl_graph_grad(kl_graph *g, kl_node n);
kl_shape kl_graph_shape(const kl_graph *g, kl_node n);
bool kl_graph_batched(const kl_graph *g, kl_node n); /* dim 0 is the batch */

int kl_graph_num_params(const kl_graph *g);
const kl_param_info *kl_graph_param(const kl_graph *g, int i);
float *kl_graph_params(kl_graph *g); /* every parameter, one flat buffer */
float *kl_graph_grads(kl_graph *g);
size_t kl_graph_param_count(const kl_graph *g); /* floats in the flat buffers */
int kl_graph_num_buffers(const kl_graph *g);
const kl_param_info *kl_graph_buffer(const kl_graph *g, int i);
float *kl_graph_buffers(kl_graph *g);
size_t kl_graph_buffer_count(const kl_graph *g);

int kl_graph_num_nodes(const kl_graph *g);
const char *kl_graph_op_name(const kl_graph *g, kl_node n);
/* Bytes of the planned activation arena, and what it would take with no reuse. */
size_t kl_graph_arena_bytes(const kl_graph *g);
size_t kl_graph_arena_unplanned_bytes(const kl_graph *g);
/* One line per node: id, op, name, shape. */
void kl_graph_print(const kl_graph *g, FILE *f);

#endif
