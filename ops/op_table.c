/* The op table: one row per op, indexed by kl__op. The rows live in the kernel files under
 * ops/cpu/; this file only collects them so that the graph can dispatch on an op's number. */
#include "ops/graph_impl.h"

const kl__op_def *const kl__ops[KL__OP_COUNT] = {
    [KL__OP_NONE] = NULL,
    [KL__OP_MATMUL] = &kl__op_matmul,
    [KL__OP_LINEAR] = &kl__op_linear,
    [KL__OP_BIAS_ADD] = &kl__op_bias_add,
    [KL__OP_ADD] = &kl__op_add,
    [KL__OP_MUL] = &kl__op_mul,
    [KL__OP_SCALE] = &kl__op_scale,
    [KL__OP_RELU] = &kl__op_relu,
    [KL__OP_LEAKY_RELU] = &kl__op_leaky_relu,
    [KL__OP_GELU] = &kl__op_gelu,
    [KL__OP_TANH] = &kl__op_tanh,
    [KL__OP_SIGMOID] = &kl__op_sigmoid,
    [KL__OP_SOFTMAX] = &kl__op_softmax,
    [KL__OP_DROPOUT] = &kl__op_dropout,
    [KL__OP_SOFTMAX_XENT] = &kl__op_softmax_xent,
    [KL__OP_MSE] = &kl__op_mse,
    [KL__OP_SUM] = &kl__op_sum,
    [KL__OP_CONV2D] = &kl__op_conv2d,
    [KL__OP_MAX_POOL2D] = &kl__op_max_pool2d,
    [KL__OP_AVG_POOL2D] = &kl__op_avg_pool2d,
    [KL__OP_GLOBAL_AVG_POOL] = &kl__op_global_avg_pool,
    [KL__OP_BATCHNORM] = &kl__op_batchnorm,
    [KL__OP_LAYERNORM] = &kl__op_layernorm,
    [KL__OP_RESHAPE] = &kl__op_reshape,
    [KL__OP_CONCAT] = &kl__op_concat,
    [KL__OP_EMBEDDING] = &kl__op_embedding,
};
