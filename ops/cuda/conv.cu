/* The CUDA kernels of conv2d (ops/cpu/conv.c): im2col + GEMM on cuBLAS, chunk for chunk as the
 * CPU, in the scratch the row's shape function sized (kl__conv_chunk). Why not cuDNN:
 * ops/cuda/README.md. col2im is a gather (each input element sums the taps that read it, in a
 * fixed order), not an atomicAdd scatter, so the gradient is deterministic. */
#include "ops/cuda/cuda_impl.h"

/* The sizes of one convolution, as the CPU file's conv_geom. */
typedef struct conv_geom {
    int64_t n, c, h, w;
    int64_t o, kh, kw;
    int64_t oh, ow;
    int64_t k, l;
    int stride, pad;
} conv_geom;

static conv_geom conv_geom_of(const kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape, *ws = &c->in[1]->shape, *ys = &c->out->shape;
    conv_geom g = {xs->d[0],         xs->d[1], xs->d[2], xs->d[3], ws->d[0], ws->d[2],
                   ws->d[3],         ys->d[2], ys->d[3], 0,        0,        c->attr->conv.stride,
                   c->attr->conv.pad};
    g.k = g.c * g.kh * g.kw;
    g.l = g.oh * g.ow;
    return g;
}

static bool conv_is_pointwise(const conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
}

/* col (K, cs*L) for samples x (cs, C, H, W): entry ((ch, i, j), q*L + oi*OW + oj) is the input
 * under tap (i, j) at output (oi, oj) of sample q, or 0 in the padding. */
static __global__ void im2col_kernel(float *col, const float *x, conv_geom g, int64_t cs)
{
    int64_t ld = cs * g.l;
    KL__CU_FOR (t, g.k * ld) {
        int64_t row = t / ld, pos = t % ld, q = pos / g.l, l = pos % g.l;
        int64_t ch = row / (g.kh * g.kw), i = row / g.kw % g.kh, j = row % g.kw;
        int64_t ih = l / g.ow * g.stride - g.pad + i, iw = l % g.ow * g.stride - g.pad + j;
        bool in = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
        col[t] = in ? x[((q * g.c + ch) * g.h + ih) * g.w + iw] : 0.0f;
    }
}

/* dx (cs, C, H, W) += the entries of dcol (K, cs*L) copied from each input element: for (ih, iw)
 * and tap (i, j), the output (oi, oj) with oi * stride - pad + i == ih, when there is one. */
static __global__ void col2im_kernel(float *dx, const float *dcol, conv_geom g, int64_t cs)
{
    int64_t ld = cs * g.l;
    KL__CU_FOR (t, cs * g.c * g.h * g.w) {
        int64_t iw = t % g.w, ih = t / g.w % g.h, ch = t / (g.w * g.h) % g.c,
                q = t / (g.w * g.h * g.c);
        float s = 0.0f;
        for (int64_t i = 0; i < g.kh; i++) {
            int64_t a = ih + g.pad - i;
            if (a < 0 || a % g.stride || a / g.stride >= g.oh)
                continue;
            for (int64_t j = 0; j < g.kw; j++) {
                int64_t b = iw + g.pad - j;
                if (b < 0 || b % g.stride || b / g.stride >= g.ow)
                    continue;
                s += dcol[((ch * g.kh + i) * g.kw + j) * ld + q * g.l + a / g.stride * g.ow +
                          b / g.stride];
            }
        }
        dx[t] += s;
    }
}

/* Between yt (O, cs*L), the GEMM's layout, and y (cs, O, L), the tensor's: to_tensor copies one
 * way (forward), and the other way (backward's dyt). */
static __global__ void permute_kernel(float *dst, const float *src, conv_geom g, int64_t cs,
                                      bool to_tensor)
{
    KL__CU_FOR (t, cs * g.o * g.l) {
        int64_t l = t % g.l, o = t / g.l % g.o, q = t / (g.l * g.o);
        int64_t gemm = o * cs * g.l + q * g.l + l;
        if (to_tensor)
            dst[t] = src[gemm];
        else
            dst[gemm] = src[t];
    }
}

/* Pointwise: each sample's column matrix is the sample (C, H*W), so y_s = W x_s is one strided
 * batched GEMM and no scratch is needed. */
static kl_status pointwise_forward(const kl__ctx *c, const conv_geom *g, const float *x,
                                   const float *w, float *y, kl_error *err)
{
    cublasHandle_t h = kl__cu_blas(kl__cu_stream(c));
    float one = 1.0f, zero = 0.0f;
    int o = (int)g->o, k = (int)g->k, l = (int)g->l;
    cublasStatus_t st = CUBLAS_STATUS_NOT_INITIALIZED;
    if (h && c->bf16)
        st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, l, o, k, &one, x, CUDA_R_32F,
                                        l, g->k * g->l, w, CUDA_R_32F, k, 0, &zero, y, CUDA_R_32F,
                                        l, g->o * g->l, (int)g->n, CUBLAS_COMPUTE_32F_FAST_16BF,
                                        CUBLAS_GEMM_DEFAULT);
    else if (h)
        st = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, l, o, k, &one, x, l,
                                       g->k * g->l, w, k, 0, &zero, y, l, g->o * g->l, (int)g->n);
    if (st != CUBLAS_STATUS_SUCCESS)
        return kl__cu_gemm_failed("conv2d", err);
    return KL_OK;
}

/* dW accumulates sample by sample, in the CPU's order; dx_s += W^T dy_s per sample. */
static void pointwise_backward(const kl__ctx *c, const conv_geom *g, const float *x, const float *w,
                               const float *dy, float *dx, float *dw)
{
    int o = (int)g->o, k = (int)g->k, l = (int)g->l;
    for (int64_t q = 0; q < g->n; q++) {
        const float *xn = x + q * g->k * g->l, *dyn = dy + q * g->o * g->l;
        if (dw)
            kl__cu_gemm(c, false, true, o, k, l, 1.0f, dyn, l, xn, l, 1.0f, dw, k);
        if (dx)
            kl__cu_gemm(c, true, false, k, l, o, 1.0f, w, k, dyn, l, 1.0f, dx + q * g->k * g->l, l);
    }
}

static kl_status conv_forward(kl__ctx *c, kl_error *err)
{
    conv_geom g = conv_geom_of(c);
    cudaStream_t s = kl__cu_stream(c);
    const float *x = kl_f32(c->in[0]), *w = kl_f32(c->in[1]);
    float *y = kl_f32(c->out);
    if (c->nin > 2)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "conv2d: a fused bias (kl_conv2d_bias) is not supported on CUDA yet; "
                            "use kl_conv2d and kl_bias_add");
    if (c->attr->conv.relu)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "conv2d: a fused ReLU (kl_conv2d_relu) is not supported on CUDA yet; "
                            "use kl_conv2d and kl_relu");
    if (conv_is_pointwise(&g)) {
        kl_status st = pointwise_forward(c, &g, x, w, y, err);
        return st ? st : kl__cu_launched("conv2d", err);
    }
    int64_t chunk = kl__conv_chunk(g.n, g.k, g.o, g.l), chw = g.c * g.h * g.w;
    float *col = c->scratch, *yt = c->scratch + g.k * chunk * g.l;
    for (int64_t s0 = 0; s0 < g.n; s0 += chunk) {
        int64_t cs = s0 + chunk <= g.n ? chunk : g.n - s0, ld = cs * g.l;
        im2col_kernel<<<kl__cu_blocks(g.k * ld), KL__CU_THREADS, 0, s>>>(col, x + s0 * chw, g, cs);
        if (!kl__cu_gemm(c, false, false, (int)g.o, (int)ld, (int)g.k, 1.0f, w, (int)g.k, col,
                         (int)ld, 0.0f, yt, (int)ld))
            return kl__cu_gemm_failed("conv2d", err);
        permute_kernel<<<kl__cu_blocks(cs * g.o * g.l), KL__CU_THREADS, 0, s>>>(y + s0 * g.o * g.l,
                                                                                yt, g, cs, true);
    }
    return kl__cu_launched("conv2d", err);
}

static void conv_backward(kl__ctx *c)
{
    conv_geom g = conv_geom_of(c);
    cudaStream_t s = kl__cu_stream(c);
    const float *x = kl_f32(c->in[0]), *w = kl_f32(c->in[1]), *dy = kl_f32(c->dout);
    float *dx = c->din[0] ? kl_f32(c->din[0]) : NULL, *dw = c->din[1] ? kl_f32(c->din[1]) : NULL;
    if (conv_is_pointwise(&g)) {
        pointwise_backward(c, &g, x, w, dy, dx, dw);
        return;
    }
    int64_t chunk = kl__conv_chunk(g.n, g.k, g.o, g.l), chw = g.c * g.h * g.w;
    float *col = c->scratch, *dyt = c->scratch + g.k * chunk * g.l;
    int o = (int)g.o, k = (int)g.k;
    for (int64_t s0 = 0; s0 < g.n; s0 += chunk) {
        int64_t cs = s0 + chunk <= g.n ? chunk : g.n - s0, ld = cs * g.l;
        permute_kernel<<<kl__cu_blocks(cs * g.o * g.l), KL__CU_THREADS, 0, s>>>(
            dyt, dy + s0 * g.o * g.l, g, cs, false);
        if (dw) {
            im2col_kernel<<<kl__cu_blocks(g.k * ld), KL__CU_THREADS, 0, s>>>(col, x + s0 * chw, g,
                                                                             cs);
            kl__cu_gemm(c, false, true, o, k, (int)ld, 1.0f, dyt, (int)ld, col, (int)ld, 1.0f, dw,
                        k);
        }
        if (dx) {
            kl__cu_gemm(c, true, false, k, (int)ld, o, 1.0f, w, k, dyt, (int)ld, 0.0f, col,
                        (int)ld);
            col2im_kernel<<<kl__cu_blocks(cs * chw), KL__CU_THREADS, 0, s>>>(dx + s0 * chw, col, g,
                                                                             cs);
        }
    }
}

extern "C" const kl__kernel kl__cuda_conv2d = {conv_forward, conv_backward, false};
