/* Tensors: f32 (or i32 for labels and indices), up to 4-D, row-major and contiguous.
 * A kl_tensor is a view: it never owns its data unless made by kl_tensor_new. */
#ifndef KILN_TENSOR_H
#define KILN_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KL_MAX_DIMS 4

typedef enum kl_dtype { KL_F32 = 0, KL_I32 = 1 } kl_dtype;

typedef struct kl_shape {
    int ndim;
    int64_t d[KL_MAX_DIMS];
} kl_shape;

typedef struct kl_tensor {
    kl_dtype dtype;
    kl_shape shape;
    void *data;
} kl_tensor;

/* Shape constructors: KL_SHAPE(2, 3) is the 2-D shape [2, 3]. */
kl_shape kl_shape_make(int ndim, const int64_t *dims);
#define KL_SHAPE(...)                                                        \
    kl_shape_make((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                  (const int64_t[]){__VA_ARGS__})

/* Inline: kernels test it in loop conditions, where a call per element would cost more than the
 * arithmetic (bench/RESULTS.md measured it). The product is unsigned, so a shape that never went
 * through kl_shape_check wraps instead of being undefined; one that did cannot wrap. */
static inline int64_t kl_shape_numel(const kl_shape *s)
{
    uint64_t n = 1;
    for (int i = 0; i < s->ndim; i++)
        n *= (uint64_t)s->d[i];
    return (int64_t)n;
}
/* The gate for every size computed from numbers kiln did not choose (a file's header, a model
 * file's input_shape, a request's shape): the ndim dims d (each >= 0) of values of elem bytes
 * must have an element count and a byte size that fit in int64_t. Sets *bytes (may be NULL) to
 * the size; otherwise KL_ESHAPE with a message that starts with what ("d.h5: dataset 'x'").
 * Checked before anything is allocated or indexed by such a shape, so that kl_shape_numel and
 * every offset computed from it stay inside 64 bits. */
kl_status kl_dims_check(int ndim, const int64_t *d, size_t elem, const char *what, int64_t *bytes,
                        kl_error *err);
/* The same for a tensor shape of dtype values (0 to KL_MAX_DIMS axes). */
kl_status kl_shape_check(const kl_shape *s, kl_dtype dtype, const char *what, int64_t *bytes,
                         kl_error *err);
bool kl_shape_eq(const kl_shape *a, const kl_shape *b);
/* Writes "[2, 3, 28, 28]" into buf and returns buf. */
const char *kl_shape_str(const kl_shape *s, char *buf, size_t len);
size_t kl_dtype_size(kl_dtype t);
const char *kl_dtype_name(kl_dtype t);

/* An owned, zero-filled tensor; free it with kl_tensor_free. Every dimension must be positive and
 * the shape must pass kl_shape_check. */
kl_tensor *kl_tensor_new(kl_dtype dtype, kl_shape shape, kl_error *err);
void kl_tensor_free(kl_tensor *t);

static inline float *kl_f32(const kl_tensor *t)
{
    return (float *)t->data;
}
static inline int32_t *kl_i32(const kl_tensor *t)
{
    return (int32_t *)t->data;
}
static inline int64_t kl_numel(const kl_tensor *t)
{
    return kl_shape_numel(&t->shape);
}

#endif
