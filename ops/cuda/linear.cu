/* The CUDA kernels of matmul, linear and bias_add (ops/cpu/linear.c has the rows and the CPU
 * reference), and the row-major GEMM on cuBLAS that conv2d shares. Every product is one cuBLAS
 * call with the CPU's operands and flags; the bias sums are per-column loops in the CPU's order. */
#include "ops/cuda/cuda_impl.h"

/* One handle per thread and device: cuBLAS handles are not safe to share between threads that
 * set different streams, and a handle belongs to the device current when it was made. They live
 * as long as the thread (cuBLAS frees them at exit). */
enum { KL__CU_MAX_DEVICES = 64 };
static thread_local cublasHandle_t blas_handles[KL__CU_MAX_DEVICES];

cublasHandle_t kl__cu_blas(cudaStream_t stream)
{
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= KL__CU_MAX_DEVICES)
        return NULL;
    if (!blas_handles[dev]) {
        cublasHandle_t h;
        if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
            return NULL;
        cublasSetMathMode(h, CUBLAS_DEFAULT_MATH); /* FP32, never TF32 */
        cublasSetAtomicsMode(h, CUBLAS_ATOMICS_NOT_ALLOWED);
        blas_handles[dev] = h;
    }
    cublasSetStream(blas_handles[dev], stream);
    return blas_handles[dev];
}

/* Row-major C (m, n) = op(A) op(B) is column-major C^T (n, m) = op(B)^T op(A)^T: B and A swap
 * places, each keeping its own transpose flag, and the leading dimensions stay the row lengths. */
bool kl__cu_gemm(const kl__ctx *ctx, bool ta, bool tb, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    cublasHandle_t h = kl__cu_blas(kl__cu_stream(ctx));
    if (!h)
        return false;
    if (m == 0 || n == 0)
        return true;
    cublasOperation_t ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N, oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (ctx->bf16)
        return cublasGemmEx(h, ob, oa, n, m, k, &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda,
                            &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF,
                            CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    return cublasSgemm(h, ob, oa, n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc) ==
           CUBLAS_STATUS_SUCCESS;
}

kl_status kl__cu_gemm_failed(const char *op, kl_error *err)
{
    return kl_error_set(err, KL_EINTERNAL,
                        "%s: cuBLAS could not run a GEMM (no handle for this device, or out of "
                        "device memory)",
                        op);
}

static kl_status matmul_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *a = c->in[0], *b = c->in[1];
    bool ta = c->attr->matmul.trans_a, tb = c->attr->matmul.trans_b;
    int m = (int)c->out->shape.d[0], n = (int)c->out->shape.d[1];
    int k = (int)(ta ? a->shape.d[0] : a->shape.d[1]);
    if (!kl__cu_gemm(c, ta, tb, m, n, k, 1.0f, kl_f32(a), (int)a->shape.d[1], kl_f32(b),
                     (int)b->shape.d[1], 0.0f, kl_f32(c->out), n))
        return kl__cu_gemm_failed("matmul", err);
    return kl__cu_launched("matmul", err);
}

/* As the CPU: dA = dC op(B)^T (transposed back when A was), dB = op(A)^T dC. */
static void matmul_backward(kl__ctx *c)
{
    const kl_tensor *a = c->in[0], *b = c->in[1];
    cudaStream_t s = kl__cu_stream(c);
    bool ta = c->attr->matmul.trans_a, tb = c->attr->matmul.trans_b;
    int m = (int)c->out->shape.d[0], n = (int)c->out->shape.d[1];
    int k = (int)(ta ? a->shape.d[0] : a->shape.d[1]);
    int lda = (int)a->shape.d[1], ldb = (int)b->shape.d[1];
    const float *dc = kl_f32(c->dout);
    float beta0 = c->din_fresh[0] ? 0.0f : 1.0f, beta1 = c->din_fresh[1] ? 0.0f : 1.0f;
    if (c->din[0] && !ta)
        kl__cu_gemm(c, false, !tb, m, k, n, 1.0f, dc, n, kl_f32(b), ldb, beta0, kl_f32(c->din[0]),
                    lda);
    else if (c->din[0])
        kl__cu_gemm(c, tb, true, k, m, n, 1.0f, kl_f32(b), ldb, dc, n, beta0, kl_f32(c->din[0]),
                    lda);
    if (c->din[1] && !tb)
        kl__cu_gemm(c, !ta, false, k, n, m, 1.0f, kl_f32(a), lda, dc, n, beta1, kl_f32(c->din[1]),
                    ldb);
    else if (c->din[1])
        kl__cu_gemm(c, true, ta, n, k, m, 1.0f, dc, n, kl_f32(a), lda, beta1, kl_f32(c->din[1]),
                    ldb);
}

extern "C" const kl__kernel kl__cuda_matmul = {matmul_forward, matmul_backward, true};

/* y (rows, out) += b (out) per row. */
static __global__ void add_row_bias(float *y, const float *b, int64_t rows, int64_t out)
{
    KL__CU_FOR (i, rows * out)
        y[i] += b[i % out];
}

/* db (out) += the column sums of dy (rows, out): a thread per column, rows in order, in float as
 * the CPU adds them, so both give the same bits. */
static __global__ void add_column_sums(float *db, const float *dy, int64_t rows, int64_t out)
{
    KL__CU_FOR (j, out) {
        float s = db[j];
        for (int64_t r = 0; r < rows; r++)
            s += dy[r * out + j];
        db[j] = s;
    }
}

/* The CPU's GEMV path for a few rows is a CPU speed choice; one GEMM computes the same product. */
static kl_status linear_forward(kl__ctx *c, kl_error *err)
{
    const kl_tensor *x = c->in[0], *w = c->in[1];
    int out = (int)w->shape.d[0], inf = (int)w->shape.d[1], rows = (int)kl__rows(x);
    cudaStream_t s = kl__cu_stream(c);
    if (!kl__cu_gemm(c, false, true, rows, out, inf, 1.0f, kl_f32(x), inf, kl_f32(w), inf, 0.0f,
                     kl_f32(c->out), out))
        return kl__cu_gemm_failed("linear", err);
    if (c->nin == 3)
        add_row_bias<<<kl__cu_blocks((int64_t)rows * out), KL__CU_THREADS, 0, s>>>(
            kl_f32(c->out), kl_f32(c->in[2]), rows, out);
    return kl__cu_launched("linear", err);
}

static void linear_backward(kl__ctx *c)
{
    const kl_tensor *x = c->in[0], *w = c->in[1];
    int out = (int)w->shape.d[0], inf = (int)w->shape.d[1], rows = (int)kl__rows(x);
    cudaStream_t s = kl__cu_stream(c);
    const float *dy = kl_f32(c->dout);
    if (c->din[0]) /* dx (rows, in) += dy W */
        kl__cu_gemm(c, false, false, rows, inf, out, 1.0f, dy, out, kl_f32(w), inf,
                    c->din_fresh[0] ? 0.0f : 1.0f, kl_f32(c->din[0]), inf);
    if (c->din[1]) /* dW (out, in) += dy^T x */
        kl__cu_gemm(c, true, false, out, inf, rows, 1.0f, dy, out, kl_f32(x), inf, 1.0f,
                    kl_f32(c->din[1]), inf);
    if (c->nin == 3 && c->din[2])
        add_column_sums<<<kl__cu_blocks(out), KL__CU_THREADS, 0, s>>>(kl_f32(c->din[2]), dy, rows,
                                                                      out);
}

extern "C" const kl__kernel kl__cuda_linear = {linear_forward, linear_backward, true};

/* bias_add views x as (outer, ch, inner) and adds b along ch. */
static void bias_dims(const kl_tensor *x, int64_t *outer, int64_t *ch, int64_t *inner)
{
    *outer = x->shape.d[0];
    *ch = x->shape.d[1];
    *inner = kl_numel(x) / (*outer * *ch);
}

static __global__ void bias_add_kernel(float *y, const float *x, const float *b, int64_t n,
                                       int64_t ch, int64_t inner)
{
    KL__CU_FOR (i, n)
        y[i] = x[i] + b[(i / inner) % ch];
}

/* db[k] += the sum of dy over every (o, i) of channel k: a block per channel, in double. */
static __global__ void bias_grad_kernel(float *db, const float *dy, int64_t outer, int64_t ch,
                                        int64_t inner)
{
    int64_t k = blockIdx.x;
    double s = 0;
    for (int64_t t = threadIdx.x; t < outer * inner; t += blockDim.x)
        s += dy[((t / inner) * ch + k) * inner + t % inner];
    s = kl__cu_block_sum(s);
    if (threadIdx.x == 0)
        db[k] += (float)s;
}

static kl_status bias_add_forward(kl__ctx *c, kl_error *err)
{
    int64_t outer, ch, inner;
    bias_dims(c->in[0], &outer, &ch, &inner);
    int64_t n = kl_numel(c->out);
    bias_add_kernel<<<kl__cu_blocks(n), KL__CU_THREADS, 0, kl__cu_stream(c)>>>(
        kl_f32(c->out), kl_f32(c->in[0]), kl_f32(c->in[1]), n, ch, inner);
    return kl__cu_launched("bias_add", err);
}

static void bias_add_backward(kl__ctx *c)
{
    int64_t outer, ch, inner;
    bias_dims(c->in[0], &outer, &ch, &inner);
    cudaStream_t s = kl__cu_stream(c);
    if (c->din[0])
        kl__cu_accumulate(s, kl_f32(c->din[0]), kl_f32(c->dout), kl_numel(c->dout),
                          c->din_fresh[0]);
    if (c->din[1] && ch > 0)
        bias_grad_kernel<<<(unsigned)ch, KL__CU_THREADS, 0, s>>>(kl_f32(c->din[1]), kl_f32(c->dout),
                                                                 outer, ch, inner);
}

extern "C" const kl__kernel kl__cuda_bias_add = {bias_add_forward, bias_add_backward, true};
