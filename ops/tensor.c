/* Shapes and owned tensors. Most tensors in kiln are views into a graph's arena or flat buffers;
 * kl_tensor_new is for data a caller owns (a batch, a test's reference values). */
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

const char *kl_shape_str(const kl_shape *s, char *buf, size_t len)
{
    size_t used = 0;
    int n = snprintf(buf, len, "[");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < s->ndim && used < len; i++) {
        n = snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)s->d[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (used < len)
        snprintf(buf + used, len - used, "]");
    return buf;
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
    if (shape.ndim < 0 || shape.ndim > KL_MAX_DIMS) {
        kl_error_set(err, KL_ESHAPE, "tensor: %d axes, kiln tensors have 0 to %d", shape.ndim,
                     KL_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < shape.ndim; i++) {
        if (shape.d[i] <= 0) {
            char buf[96];
            kl_error_set(err, KL_ESHAPE, "tensor shape %s has a dimension that is not positive",
                         kl_shape_str(&shape, buf, sizeof buf));
            return NULL;
        }
    }
    kl_tensor *t = calloc(1, sizeof *t);
    size_t bytes = (size_t)kl_shape_numel(&shape) * kl_dtype_size(dtype);
    void *data = calloc(1, bytes ? bytes : 1);
    if (!t || !data) {
        free(t);
        free(data);
        kl_error_set(err, KL_ENOMEM, "out of memory allocating a tensor of %zu bytes", bytes);
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
