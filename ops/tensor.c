/* Shapes and owned tensors. Most tensors in kiln are views into a graph's arena or flat buffers;
 * kl_tensor_new is for data a caller owns (a batch, a test's reference values). kl_dims_check is
 * the one place where a size computed from numbers a file or a client sent is checked for
 * overflow; the file readers, the model-file loader and the inference-request parser call it. */
#include <stdio.h>
#include <string.h>

#include "kiln/tensor.h"

kl_shape kl_shape_make(int ndim, const int64_t *dims)
{
    kl_shape s = {0};
    KL_ASSERT(ndim >= 0 && ndim <= KL_MAX_DIMS);
    s.ndim = ndim;
    for (int i = 0; i < ndim; i++)
        s.d[i] = dims[i];
    return s;
}

bool kl_shape_eq(const kl_shape *a, const kl_shape *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i])
            return false;
    return true;
}

/* "[2, 3, 28, 28]" for any number of axes (requests have up to 8). */
static const char *dims_str(int ndim, const int64_t *d, char *buf, size_t len)
{
    size_t used = 0;
    int n = snprintf(buf, len, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < len; i++) {
        n = snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)d[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
}

const char *kl_shape_str(const kl_shape *s, char *buf, size_t len)
{
    return dims_str(s->ndim, s->d, buf, len);
}

kl_status kl_dims_check(int ndim, const int64_t *d, size_t elem, const char *what, int64_t *bytes,
                        kl_error *err)
{
    KL_ASSERT(ndim >= 0 && elem >= 1);
    char buf[200];
    /* The running product is kept in bytes: an element count that fits while its bytes do not
     * would still overflow the first allocation or pointer offset made from it. A dimension of 0
     * makes the array empty, but the others must still multiply within range, so that no code
     * that sizes a row or a batch from them can overflow either. */
    uint64_t total = elem;
    bool over = elem > INT64_MAX, zero = false;
    for (int i = 0; i < ndim; i++) {
        if (d[i] < 0)
            return kl_error_set(err, KL_ESHAPE, "%s: shape %s has a negative dimension", what,
                                dims_str(ndim, d, buf, sizeof buf));
        zero |= d[i] == 0;
        if (d[i] > 0 && total > (uint64_t)INT64_MAX / (uint64_t)d[i])
            over = true;
        else if (d[i] > 0)
            total *= (uint64_t)d[i];
    }
    if (over)
        return kl_error_set(err, KL_ESHAPE,
                            "%s: shape %s is too large: its size in bytes overflows 64 bits", what,
                            dims_str(ndim, d, buf, sizeof buf));
    if (bytes)
        *bytes = zero ? 0 : (int64_t)total;
    return KL_OK;
}

kl_status kl_shape_check(const kl_shape *s, kl_dtype dtype, const char *what, int64_t *bytes,
                         kl_error *err)
{
    if (s->ndim < 0 || s->ndim > KL_MAX_DIMS)
        return kl_error_set(err, KL_ESHAPE, "%s: %d axes, kiln tensors have 0 to %d", what, s->ndim,
                            KL_MAX_DIMS);
    return kl_dims_check(s->ndim, s->d, kl_dtype_size(dtype), what, bytes, err);
}

size_t kl_dtype_size(kl_dtype t)
{
    return t == KL_I32 ? sizeof(int32_t) : sizeof(float);
}

const char *kl_dtype_name(kl_dtype t)
{
    return t == KL_I32 ? "i32" : "f32";
}

kl_tensor *kl_tensor_new(kl_dtype dtype, kl_shape shape, kl_error *err)
{
    int64_t bytes = 0;
    for (int i = 0; i < shape.ndim && i < KL_MAX_DIMS; i++) {
        if (shape.d[i] <= 0) {
            char buf[96];
            kl_error_set(err, KL_ESHAPE, "tensor shape %s has a dimension that is not positive",
                         kl_shape_str(&shape, buf, sizeof buf));
            return NULL;
        }
    }
    if (kl_shape_check(&shape, dtype, "tensor", &bytes, err) != KL_OK)
        return NULL;
    kl_tensor *t = calloc(1, sizeof *t);
    void *data = calloc(1, bytes ? (size_t)bytes : 1);
    if (!t || !data) {
        free(t);
        free(data);
        kl_error_set(err, KL_ENOMEM, "out of memory allocating a tensor of %lld bytes",
                     (long long)bytes);
        return NULL;
    }
    t->dtype = dtype;
    t->shape = shape;
    t->data = data;
    return t;
}

void kl_tensor_free(kl_tensor *t)
{
    if (t) {
        free(t->data);
        free(t);
    }
}
