/* 2-D convolution on NCHW tensors: the conv2d op row, its builders kl_conv2d, kl_conv2d_bias and
 * kl_conv2d_relu and its CPU kernels. Each sample is unfolded into a column matrix (im2col) so
 * that forward and both gradients are cblas_sgemm calls over chunks of samples; an optional third
 * input, a bias, is added while the GEMM's output is copied out, saving bias_add's passes over the
 * output, and an optional ReLU is applied there too (its backward masks dy as it is gathered). */
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "ops/graph_impl.h"

/* Why im2col + GEMM: the multiply-adds, which are nearly all of a convolution's cost, then run at
 * BLAS speed, and the gradients reuse the same lowering. The columns of several samples sit side
 * by side so that each GEMM is wide; the block is capped (KL__CONV_BUDGET) so that the graph's
 * shared scratch stays bounded whatever the batch (kl__conv_chunk, ops/graph_impl.h). */

/* The sizes of one convolution, read from the tensors a kernel sees (the current batch). */
typedef struct conv_geom {
    int64_t n, c, h, w; /* x (N, C, H, W) */
    int64_t o, kh, kw;  /* w (O, C, KH, KW) */
    int64_t oh, ow;     /* y (N, O, OH, OW) */
    int64_t k, l;       /* the GEMM: K = C*KH*KW rows of col, L = OH*OW positions */
    int stride, pad;
} conv_geom;

/* A 1x1 kernel with stride 1 and no padding makes col equal to the sample itself, (C, H*W), so
 * the kernels use x in place and need no scratch (the pointwise convolutions of bottlenecks). */
static bool conv_is_pointwise(int64_t kh, int64_t kw, int stride, int pad)
{
    return kh == 1 && kw == 1 && stride == 1 && pad == 0;
}

static kl_status conv_shape(kl__node *n, const kl__node *const *in, kl_error *err)
{
    const kl__node *x = in[0], *w = in[1], *b = n->nin > 2 ? in[2] : NULL;
    int stride = n->attr.conv.stride, pad = n->attr.conv.pad;
    char sx[96], sw[96];
    kl_status st;
    if ((st = kl__expect_f32("conv2d", x, err)) || (st = kl__expect_f32("conv2d", w, err)))
        return st;
    kl_shape_str(&x->shape, sx, sizeof sx);
    kl_shape_str(&w->shape, sw, sizeof sw);
    if (x->shape.ndim != 4 || w->shape.ndim != 4 || w->batched)
        return kl_error_set(err, KL_ESHAPE,
                            "conv2d: expects x (N, C, H, W) and a weight w (O, C, KH, KW), got x "
                            "%s and w %s%s",
                            sx, sw, w->batched ? " (batched)" : "");
    if (stride < 1 || pad < 0)
        return kl_error_set(err, KL_EINVAL,
                            "conv2d: stride must be at least 1 and pad at least 0, got stride %d "
                            "and pad %d",
                            stride, pad);
    if (x->shape.d[1] != w->shape.d[1])
        return kl_error_set(err, KL_ESHAPE,
                            "conv2d: x %s has %lld channels but w %s (O, C, KH, KW) expects %lld",
                            sx, (long long)x->shape.d[1], sw, (long long)w->shape.d[1]);
    if (b && (kl__expect_f32("conv2d", b, err) || b->batched || b->shape.ndim != 1 ||
              b->shape.d[0] != w->shape.d[0])) {
        char sb[96];
        kl_shape_str(&b->shape, sb, sizeof sb);
        return kl_error_set(err, KL_ESHAPE,
                            "conv2d: the bias should be f32 (%lld), one per filter of w %s, got %s",
                            (long long)w->shape.d[0], sw, sb);
    }
    int64_t hp = x->shape.d[2] + 2 * (int64_t)pad, wp = x->shape.d[3] + 2 * (int64_t)pad;
    int64_t kh = w->shape.d[2], kw = w->shape.d[3];
    /* Checked before dividing: C division truncates toward zero, so (hp - kh) / stride + 1 can be
     * 1 for a kernel that does not fit. */
    if (kh > hp || kw > wp)
        return kl_error_set(err, KL_ESHAPE,
                            "conv2d: the %lldx%lld kernel of w %s is larger than x %s padded by "
                            "%d; use a smaller kernel, more padding or a larger input",
                            (long long)kh, (long long)kw, sw, sx, pad);
    int64_t oh = (hp - kh) / stride + 1, ow = (wp - kw) / stride + 1;
    int64_t k = w->shape.d[1] * kh * kw, l = oh * ow;
    if (k > INT_MAX || l > INT_MAX || w->shape.d[0] > INT_MAX)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "conv2d: x %s with w %s makes matrices larger than BLAS's int "
                            "dimensions allow",
                            sx, sw);
    n->shape = KL_SHAPE(x->shape.d[0], w->shape.d[0], oh, ow);
    n->batched = x->batched;
    n->saved_n = 0;
    int64_t chunk = kl__conv_chunk(x->shape.d[0], k, w->shape.d[0], l);
    /* A pointwise convolution with a ReLU masks one sample's dy at a time into its scratch. */
    n->scratch_n = !conv_is_pointwise(kh, kw, stride, pad)
                       ? (size_t)((k + w->shape.d[0]) * chunk * l)
                   : n->attr.conv.relu ? (size_t)(w->shape.d[0] * l)
                                       : 0;
    return KL_OK;
}

static conv_geom conv_geom_of(const kl__ctx *c)
{
    const kl_shape *xs = &c->in[0]->shape, *ws = &c->in[1]->shape, *ys = &c->out->shape;
    conv_geom g = {.n = xs->d[0],
                   .c = xs->d[1],
                   .h = xs->d[2],
                   .w = xs->d[3],
                   .o = ws->d[0],
                   .kh = ws->d[2],
                   .kw = ws->d[3],
                   .oh = ys->d[2],
                   .ow = ys->d[3],
                   .stride = c->attr->conv.stride,
                   .pad = c->attr->conv.pad};
    g.k = g.c * g.kh * g.kw;
    g.l = g.oh * g.ow;
    return g;
}

/* The output columns [*lo, *hi) whose input column oj * stride - pad + j lies inside the image;
 * the others read padding. Computing the range once per row keeps the inner loops branch-free
 * (a memcpy when stride is 1). */
static void valid_cols(const conv_geom *g, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t off = j - g->pad, s = g->stride;
    *lo = off >= 0 ? 0 : (-off + s - 1) / s;
    *hi = g->w - off > 0 ? (g->w - off + s - 1) / s : 0;
    if (*hi > g->ow)
        *hi = g->ow;
    if (*lo > *hi)
        *lo = *hi;
}

/* "Same" convolutions (stride 1, OW = W: a KW = 2 pad + 1 kernel) map output position
 * p = oi * OW + oj of tap (i, j) to input element p + (i - pad) * W + (j - pad) of the channel's
 * plane: one shift for the whole tap. So a tap's row of col is one span of the plane, copied
 * (or, for col2im, added) in one stretch, instead of a short copy per output row. Inside the span
 * the positions whose input column is in the padding, at most pad per row boundary, read a
 * pixel of the neighbouring row: im2col zeroes them after the copy, col2im zeroes them in dcol
 * before the add (they are padding, whose gradient is dropped). */
typedef struct tap_span {
    int64_t start, end; /* the span [start, end) of output positions, within [0, OH*OW) */
    int64_t r0, r1;     /* output rows whose input row is inside the image */
    int64_t lo, hi;     /* valid_cols of the tap */
    int64_t shift;      /* input element = output position + shift */
} tap_span;

static bool conv_is_same(const conv_geom *g)
{
    return g->stride == 1 && g->ow == g->w;
}

static tap_span tap_span_of(const conv_geom *g, int64_t i, int64_t j)
{
    tap_span t;
    valid_cols(g, j, &t.lo, &t.hi);
    t.r0 = g->pad - i > 0 ? g->pad - i : 0;
    t.r1 = g->h + g->pad - i < g->oh ? g->h + g->pad - i : g->oh;
    t.shift = (i - g->pad) * g->w + (j - g->pad);
    if (t.r1 <= t.r0 || t.hi <= t.lo) {
        t.start = t.end = 0;
        return t;
    }
    t.start = t.r0 * g->ow + t.lo;
    t.end = (t.r1 - 1) * g->ow + t.hi;
    return t;
}

/* Zeroes the span's positions that are padding: the gaps between its rows. */
static void zero_gaps(const conv_geom *g, const tap_span *t, float *row)
{
    for (int64_t oi = t->r0 + 1; oi < t->r1; oi++)
        for (int64_t p = (oi - 1) * g->ow + t->hi; p < oi * g->ow + t->lo; p++)
            row[p] = 0.0f;
}

/* Both loops take each tap's span once and then every channel (its divisions were 3% of a CNN's
 * step when computed per channel); a dx element still gets its taps' adds in tap order. */
static void im2col_same(const conv_geom *g, const float *x, float *col0, int64_t ld)
{
    int64_t l = g->oh * g->ow;
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            tap_span t = tap_span_of(g, i, j);
            for (int64_t ch = 0; ch < g->c; ch++) {
                const float *xc = x + ch * g->h * g->w; /* (H, W) */
                float *row = col0 + ((ch * g->kh + i) * g->kw + j) * ld;
                memset(row, 0, (size_t)t.start * sizeof *row);
                if (t.end > t.start)
                    memcpy(row + t.start, xc + t.start + t.shift,
                           (size_t)(t.end - t.start) * sizeof *row);
                memset(row + t.end, 0, (size_t)(l - t.end) * sizeof *row);
                zero_gaps(g, &t, row);
            }
        }
}

/* dcol's padding positions are zeroed first, so the add is one stretch; they are scratch. */
static void col2im_same_add(const conv_geom *g, float *dcol0, int64_t ld, float *dx)
{
    for (int64_t i = 0; i < g->kh; i++)
        for (int64_t j = 0; j < g->kw; j++) {
            tap_span t = tap_span_of(g, i, j);
            if (t.end <= t.start)
                continue;
            for (int64_t ch = 0; ch < g->c; ch++) {
                float *dxc = dx + ch * g->h * g->w; /* (H, W) */
                float *row = dcol0 + ((ch * g->kh + i) * g->kw + j) * ld;
                zero_gaps(g, &t, row);
                float *restrict d = dxc + t.start + t.shift;
                const float *restrict r = row + t.start;
                for (int64_t p = 0; p < t.end - t.start; p++)
                    d[p] += r[p];
            }
        }
}

/* Unfolds one sample x (C, H, W) into col (C*KH*KW, OH*OW), rows ld floats apart: row (c, i, j)
 * holds, for every output position, the input under kernel tap (i, j) of channel c, or 0 where
 * that tap is in the padding. Each row is written left to right, so both buffers stream. */
static void im2col(const conv_geom *g, const float *x, float *col0, int64_t ld)
{
    for (int64_t ch = 0; ch < g->c; ch++) {
        const float *xc = x + ch * g->h * g->w; /* (H, W) */
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t lo, hi, off = j - g->pad;
                float *col = col0 + ((ch * g->kh + i) * g->kw + j) * ld;
                valid_cols(g, j, &lo, &hi);
                for (int64_t oi = 0; oi < g->oh; oi++, col += g->ow) {
                    int64_t ih = oi * g->stride - g->pad + i;
                    if (ih < 0 || ih >= g->h) {
                        memset(col, 0, (size_t)g->ow * sizeof *col);
                        continue;
                    }
                    const float *xr = xc + ih * g->w + off; /* xr[oj * stride] is the input */
                    /* Plain loops: rows are short (tens of floats) and lo and ow - hi are 0 or
                     * pad, where a libc call per piece cost more than the copy. */
                    for (int64_t oj = 0; oj < lo; oj++)
                        col[oj] = 0.0f;
                    if (g->stride == 1)
                        for (int64_t oj = lo; oj < hi; oj++)
                            col[oj] = xr[oj];
                    else
                        for (int64_t oj = lo; oj < hi; oj++)
                            col[oj] = xr[oj * g->stride];
                    for (int64_t oj = hi; oj < g->ow; oj++)
                        col[oj] = 0.0f;
                }
            }
    }
}

/* The adjoint of im2col: adds each entry of dcol (C*KH*KW, OH*OW; rows ld apart) into the input
 * position it was copied from, so taps that overlap (stride < kernel) accumulate; padding entries
 * are dropped. */
static void col2im_add(const conv_geom *g, const float *dcol0, int64_t ld, float *dx)
{
    for (int64_t ch = 0; ch < g->c; ch++) {
        float *dxc = dx + ch * g->h * g->w; /* (H, W) */
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t lo, hi, off = j - g->pad;
                const float *dcol = dcol0 + ((ch * g->kh + i) * g->kw + j) * ld;
                valid_cols(g, j, &lo, &hi);
                for (int64_t oi = 0; oi < g->oh; oi++, dcol += g->ow) {
                    int64_t ih = oi * g->stride - g->pad + i;
                    if (ih < 0 || ih >= g->h)
                        continue;
                    float *dxr = dxc + ih * g->w + off;
                    if (g->stride == 1)
                        for (int64_t oj = lo; oj < hi; oj++)
                            dxr[oj] += dcol[oj];
                    else
                        for (int64_t oj = lo; oj < hi; oj++)
                            dxr[oj * g->stride] += dcol[oj];
                }
            }
    }
}

/* Pointwise (1x1, stride 1, no padding): each sample is its own column matrix (C, H*W), so the
 * GEMMs run per sample on x and dx in place and need no scratch. */
static void pointwise_forward(const conv_geom *g, const float *x, const float *w, float *y)
{
    int o = (int)g->o, k = (int)g->k, l = (int)g->l;
    for (int64_t s = 0; s < g->n; s++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, o, l, k, 1.0f, w, k,
                    x + s * g->k * g->l, l, 0.0f, y + s * g->o * g->l, l);
}

/* relu: y, the ReLU's output, masks each sample's dy into masked (O, L) first. */
static void pointwise_backward(const conv_geom *g, const float *x, const float *w, const float *dy,
                               const float *relu, float *masked, float *dx, float *dw)
{
    int o = (int)g->o, k = (int)g->k, l = (int)g->l;
    for (int64_t s = 0; s < g->n; s++) {
        const float *xn = x + s * g->k * g->l, *dyn = dy + s * g->o * g->l;
        if (relu) {
            const float *yn = relu + s * g->o * g->l;
            for (int64_t i = 0; i < g->o * g->l; i++) {
                float v = dyn[i];
                masked[i] = yn[i] > 0.0f ? v : 0.0f;
            }
            dyn = masked;
        }
        if (dw)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o, k, l, 1.0f, dyn, l, xn, l, 1.0f,
                        dw, k);
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, l, o, 1.0f, w, k, dyn, l, 1.0f,
                        dx + s * g->k * g->l, l);
    }
}

/* The per-sample loops around the GEMMs, run on the graph's pool (ops/par.h) over the samples of
 * a chunk: each sample reads and writes its own block, so every split gives the same bits. */
typedef struct conv_job {
    const conv_geom *g;
    const float *x, *dy, *b; /* b: the fused bias (O), or NULL */
    bool relu;               /* the fused ReLU: forward clamps y; backward masks dy by y */
    float *y, *dx;
    float *col, *yt; /* (K, ld) and (O, ld): the chunk's columns and its GEMM output */
    int64_t s0, ld;  /* the chunk's first sample; its columns' row length cs * L */
} conv_job;

/* Samples below this many column floats per loop are not worth a wake-up. */
#define CONV_PAR_MIN 4096

static void conv_job_run(const conv_geom *g, kl__par *par, int64_t cs, kl__par_fn fn, conv_job *j)
{
    kl__par_for(par, cs, 1, CONV_PAR_MIN / (g->k * g->l) + 1, fn, j);
}

static void im2col_range(void *arg, int64_t lo, int64_t hi)
{
    const conv_job *j = arg;
    const conv_geom *g = j->g;
    bool same = conv_is_same(g);
    for (int64_t q = lo; q < hi; q++) {
        const float *x = j->x + (j->s0 + q) * g->c * g->h * g->w;
        if (same)
            im2col_same(g, x, j->col + q * g->l, j->ld);
        else
            im2col(g, x, j->col + q * g->l, j->ld);
    }
}

/* One row of y from src (in place when src is y): the bias added (the same float add as
 * bias_add's) and the ReLU applied (relu's select), as the job asks. */
static void finish_row(const conv_job *j, int64_t o, float *y, const float *src)
{
    int64_t l = j->g->l;
    float bo = j->b ? j->b[o] : 0.0f;
    if (j->b && j->relu) {
        for (int64_t i = 0; i < l; i++) {
            float v = src[i] + bo;
            y[i] = v > 0.0f ? v : 0.0f;
        }
    } else if (j->b) {
        for (int64_t i = 0; i < l; i++)
            y[i] = src[i] + bo;
    } else if (j->relu) {
        for (int64_t i = 0; i < l; i++)
            y[i] = src[i] > 0.0f ? src[i] : 0.0f;
    } else if (y != src) {
        memcpy(y, src, (size_t)l * sizeof *y);
    }
}

/* y's blocks from yt, finished (bias, ReLU) on the way. */
static void scatter_y_range(void *arg, int64_t lo, int64_t hi)
{
    const conv_job *j = arg;
    const conv_geom *g = j->g;
    for (int64_t q = lo; q < hi; q++)
        for (int64_t o = 0; o < g->o; o++)
            finish_row(j, o, j->y + ((j->s0 + q) * g->o + o) * g->l, j->yt + o * j->ld + q * g->l);
}

/* The pointwise path's bias and ReLU, in place on y (N, O, L). */
static void finish_rows_range(void *arg, int64_t lo, int64_t hi)
{
    const conv_job *j = arg;
    for (int64_t r = lo; r < hi; r++) {
        float *y = j->y + r * j->g->l;
        finish_row(j, r % j->g->o, y, y);
    }
}

/* dy's blocks into yt; with the fused ReLU, relu's backward on the way (dy where y > 0). */
static void gather_dy_range(void *arg, int64_t lo, int64_t hi)
{
    const conv_job *j = arg;
    const conv_geom *g = j->g;
    for (int64_t q = lo; q < hi; q++)
        for (int64_t o = 0; o < g->o; o++) {
            size_t at = (size_t)(((j->s0 + q) * g->o + o) * g->l);
            float *restrict yt = j->yt + o * j->ld + q * g->l;
            if (!j->relu) {
                memcpy(yt, j->dy + at, (size_t)g->l * sizeof *yt);
                continue;
            }
            const float *restrict dy = j->dy + at, *restrict y = j->y + at;
            for (int64_t i = 0; i < g->l; i++) {
                float v = dy[i];
                yt[i] = y[i] > 0.0f ? v : 0.0f;
            }
        }
}

static void col2im_range(void *arg, int64_t lo, int64_t hi)
{
    const conv_job *j = arg;
    const conv_geom *g = j->g;
    bool same = conv_is_same(g);
    for (int64_t q = lo; q < hi; q++) {
        float *dx = j->dx + (j->s0 + q) * g->c * g->h * g->w;
        if (same)
            col2im_same_add(g, j->col + q * g->l, j->ld, dx);
        else
            col2im_add(g, j->col + q * g->l, j->ld, dx);
    }
}

/* Per chunk of cs samples: col (K, cs*L) holds their columns side by side, and
 * yt (O, cs*L) = W (O, K) col; yt's blocks are then copied to y (N, O, L). */
static kl_status conv_forward(kl__ctx *c, kl_error *err)
{
    conv_geom g = conv_geom_of(c);
    const float *x = kl_f32(c->in[0]);                     /* (N, C, H, W) */
    const float *w = kl_f32(c->in[1]);                     /* (O, K) */
    float *y = kl_f32(c->out);                             /* (N, O, L) */
    const float *b = c->nin > 2 ? kl_f32(c->in[2]) : NULL; /* (O) */
    int64_t chunk = kl__conv_chunk(g.n, g.k, g.o, g.l);
    conv_job j = {.g = &g, .x = x, .b = b, .relu = c->attr->conv.relu, .y = y};
    if (conv_is_pointwise(g.kh, g.kw, g.stride, g.pad)) {
        pointwise_forward(&g, x, w, y);
        if (b || j.relu)
            kl__par_for(c->par, g.n * g.o, 1, CONV_PAR_MIN / g.l + 1, finish_rows_range, &j);
        return KL_OK;
    }
    j.col = c->scratch;
    j.yt = c->scratch + g.k * chunk * g.l;
    for (j.s0 = 0; j.s0 < g.n; j.s0 += chunk) {
        int64_t cs = j.s0 + chunk <= g.n ? chunk : g.n - j.s0;
        j.ld = cs * g.l;
        conv_job_run(&g, c->par, cs, im2col_range, &j);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g.o, (int)j.ld, (int)g.k, 1.0f,
                    w, (int)g.k, j.col, (int)j.ld, 0.0f, j.yt, (int)j.ld);
        conv_job_run(&g, c->par, cs, scatter_y_range, &j);
    }
    return KL_OK;
}

/* Per chunk: yt (O, cs*L) gathers dy's blocks; dW (O, K) += yt col^T and
 * dcol = W^T yt (K, cs*L), which col2im adds into dx. The transposes are GEMM flags on the
 * stored matrices. col is rebuilt here rather than saved from forward, which would cost the
 * whole batch's columns in the arena; dcol then reuses col's scratch. */
static void conv_backward(kl__ctx *c)
{
    conv_geom g = conv_geom_of(c);
    const float *x = kl_f32(c->in[0]);                              /* (N, C, H, W) */
    const float *w = kl_f32(c->in[1]);                              /* (O, K) */
    const float *dy = kl_f32(c->dout);                              /* (N, O, L) */
    float *dx = c->din[0] ? kl_f32(c->din[0]) : NULL;               /* (N, C, H, W) */
    float *dw = c->din[1] ? kl_f32(c->din[1]) : NULL;               /* (O, K) */
    const float *relu = c->attr->conv.relu ? kl_f32(c->out) : NULL; /* (N, O, L) */
    /* The fused bias: bias_add's gradient (of relu's backward, with the ReLU), the same bits. */
    if (c->nin > 2 && c->din[2] && relu)
        kl__bias_grad_relu(c->par, dy, relu, g.n, g.o, g.l, kl_f32(c->din[2]));
    else if (c->nin > 2 && c->din[2])
        kl__bias_grad(c->par, dy, g.n, g.o, g.l, kl_f32(c->din[2]));
    if (conv_is_pointwise(g.kh, g.kw, g.stride, g.pad)) {
        pointwise_backward(&g, x, w, dy, relu, c->scratch, dx, dw);
        return;
    }
    int64_t chunk = kl__conv_chunk(g.n, g.k, g.o, g.l);
    conv_job j = {.g = &g,
                  .x = x,
                  .dy = dy,
                  .relu = relu != NULL,
                  .y = kl_f32(c->out),
                  .dx = dx,
                  .col = c->scratch,
                  .yt = c->scratch + g.k * chunk * g.l}; /* yt: dy's blocks, (O, ld) */
    int o = (int)g.o, k = (int)g.k;
    for (j.s0 = 0; j.s0 < g.n; j.s0 += chunk) {
        int64_t cs = j.s0 + chunk <= g.n ? chunk : g.n - j.s0;
        int ld = (int)(j.ld = cs * g.l);
        conv_job_run(&g, c->par, cs, gather_dy_range, &j);
        if (dw) {
            conv_job_run(&g, c->par, cs, im2col_range, &j);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o, k, ld, 1.0f, j.yt, ld, j.col,
                        ld, 1.0f, dw, k);
        }
        if (dx) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, ld, o, 1.0f, w, k, j.yt, ld,
                        0.0f, j.col, ld);
            conv_job_run(&g, c->par, cs, col2im_range, &j);
        }
    }
}

const kl__op_def kl__op_conv2d = {.name = "conv2d",
                                  .min_in = 2,
                                  .max_in = 3,
                                  .shape = conv_shape,
                                  .cpu = {.forward = conv_forward, .backward = conv_backward},
                                  .cuda = KL__CUDA_KERNELS(conv2d)};

/* x (N, C, H, W) convolved with w (O, C, KH, KW), no bias: y (N, O, OH, OW) with
 * OH = (H + 2 pad - KH) / stride + 1 (floor), zero padding; add a bias with kl_bias_add. */
kl_node kl_conv2d(kl_graph *g, kl_node x, kl_node w, int stride, int pad)
{
    kl__attr at = {.conv = {stride, pad}};
    return kl__graph_add(g, KL__OP_CONV2D, (kl_node[]){x, w}, 2, &at);
}

/* kl_conv2d then kl_bias_add with b (O), as one op: the same values, bit for bit. */
kl_node kl_conv2d_bias(kl_graph *g, kl_node x, kl_node w, kl_node b, int stride, int pad)
{
    kl__attr at = {.conv = {stride, pad}};
    return kl__graph_add(g, KL__OP_CONV2D, (kl_node[]){x, w, b}, 3, &at);
}

/* kl_conv2d (then kl_bias_add with b, unless b is KL_NONE) then kl_relu, as one op: the same
 * values and gradients, bit for bit. */
kl_node kl_conv2d_relu(kl_graph *g, kl_node x, kl_node w, kl_node b, int stride, int pad)
{
    kl__attr at = {.conv = {stride, pad, true}};
    return kl__graph_add(g, KL__OP_CONV2D, (kl_node[]){x, w, b}, b == KL_NONE ? 2 : 3, &at);
}
