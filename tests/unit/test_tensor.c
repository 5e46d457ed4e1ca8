/* Tests for ops/tensor.c: building shapes (kl_shape_make, KL_SHAPE), counting and comparing them,
 * formatting them for messages (including a 0-D shape and a buffer too small), dtype sizes and
 * names, and owned tensors: zero-filled, freed, and refused with a message for a dimension that is
 * not positive or a size that overflows; kl_dims_check, the overflow gate for untrusted shapes. */
#include <string.h>

#include "check.h"
#include "kiln/tensor.h"

static void test_shape_make(void)
{
    kl_shape s = KL_SHAPE(2, 3);
    CHECK(s.ndim == 2 && s.d[0] == 2 && s.d[1] == 3);
    kl_shape s4 = KL_SHAPE(7, 1, 28, 5);
    CHECK(s4.ndim == 4 && s4.d[0] == 7 && s4.d[1] == 1 && s4.d[2] == 28 && s4.d[3] == 5);
    kl_shape s1 = KL_SHAPE(9);
    CHECK(s1.ndim == 1 && s1.d[0] == 9);

    const int64_t dims[] = {4, 5, 6};
    kl_shape m = kl_shape_make(3, dims);
    CHECK(m.ndim == 3 && m.d[0] == 4 && m.d[1] == 5 && m.d[2] == 6);
    CHECK(m.d[3] == 0); /* unused axes are zero, so shapes compare and copy cleanly */
    kl_shape z = kl_shape_make(0, NULL);
    CHECK(z.ndim == 0);
}

static void test_numel(void)
{
    kl_shape a = KL_SHAPE(2, 3), b = KL_SHAPE(7, 1, 28, 5), c = KL_SHAPE(1);
    kl_shape z = kl_shape_make(0, NULL);
    CHECK(kl_shape_numel(&a) == 6);
    CHECK(kl_shape_numel(&b) == 980);
    CHECK(kl_shape_numel(&c) == 1);
    CHECK(kl_shape_numel(&z) == 1); /* a 0-D tensor is one scalar */
    /* Large dimensions multiply in 64 bits: 2^20 * 2^20 * 4 = 2^42. */
    kl_shape big = KL_SHAPE(1 << 20, 1 << 20, 4);
    CHECK(kl_shape_numel(&big) == (int64_t)1 << 42);
}

static void test_eq(void)
{
    kl_shape a = KL_SHAPE(2, 3), b = KL_SHAPE(2, 3), c = KL_SHAPE(3, 2), d = KL_SHAPE(2, 3, 1);
    kl_shape e = KL_SHAPE(6);
    CHECK(kl_shape_eq(&a, &b));
    CHECK(kl_shape_eq(&a, &a));
    CHECK(!kl_shape_eq(&a, &c));
    CHECK(!kl_shape_eq(&a, &d)); /* same numel, an extra axis */
    CHECK(!kl_shape_eq(&a, &e));
    kl_shape z1 = kl_shape_make(0, NULL), z2 = kl_shape_make(0, NULL);
    CHECK(kl_shape_eq(&z1, &z2));
    CHECK(!kl_shape_eq(&z1, &e));
}

static void test_shape_str(void)
{
    char buf[64];
    kl_shape a = KL_SHAPE(2, 3), b = KL_SHAPE(2, 3, 28, 28), c = KL_SHAPE(5);
    kl_shape z = kl_shape_make(0, NULL), big = KL_SHAPE(10000000000LL, 1);
    CHECK(strcmp(kl_shape_str(&a, buf, sizeof buf), "[2, 3]") == 0);
    CHECK(kl_shape_str(&a, buf, sizeof buf) == buf);
    CHECK(strcmp(kl_shape_str(&b, buf, sizeof buf), "[2, 3, 28, 28]") == 0);
    CHECK(strcmp(kl_shape_str(&c, buf, sizeof buf), "[5]") == 0);
    CHECK(strcmp(kl_shape_str(&z, buf, sizeof buf), "[]") == 0);
    CHECK(strcmp(kl_shape_str(&big, buf, sizeof buf), "[10000000000, 1]") == 0);
    kl_shape neg = KL_SHAPE(2, -1);
    CHECK(strcmp(kl_shape_str(&neg, buf, sizeof buf), "[2, -1]") == 0);

    /* A buffer too small gets a terminated prefix and nothing past its end. */
    char small[8];
    memset(small, 'x', sizeof small);
    kl_shape_str(&b, small, 5);
    CHECK(strcmp(small, "[2, ") == 0);
    CHECK(small[5] == 'x' && small[7] == 'x');
    memset(small, 'x', sizeof small);
    kl_shape_str(&a, small, 1);
    CHECK(small[0] == '\0' && small[1] == 'x');
}

static void test_dtype(void)
{
    CHECK(kl_dtype_size(KL_F32) == 4);
    CHECK(kl_dtype_size(KL_I32) == 4);
    CHECK(strcmp(kl_dtype_name(KL_F32), "f32") == 0);
    CHECK(strcmp(kl_dtype_name(KL_I32), "i32") == 0);
}

static void test_tensor_new(void)
{
    kl_error err = {0};
    kl_tensor *t = kl_tensor_new(KL_F32, KL_SHAPE(3, 5, 7), &err);
    if (CHECK(t != NULL)) {
        kl_shape want = KL_SHAPE(3, 5, 7);
        CHECK(t->dtype == KL_F32);
        CHECK(kl_shape_eq(&t->shape, &want));
        CHECK(kl_numel(t) == 105);
        int nonzero = 0;
        for (int i = 0; i < 105; i++)
            nonzero += kl_f32(t)[i] != 0.0f;
        CHECK(nonzero == 0);
        kl_f32(t)[104] = 1.5f; /* the whole extent is writable (ASan would say otherwise) */
        CHECK(kl_f32(t)[104] == 1.5f);
    }
    kl_tensor_free(t);

    t = kl_tensor_new(KL_I32, KL_SHAPE(4, 2), &err);
    if (CHECK(t != NULL)) {
        CHECK(t->dtype == KL_I32);
        int nonzero = 0;
        for (int i = 0; i < 8; i++)
            nonzero += kl_i32(t)[i] != 0;
        CHECK(nonzero == 0);
        kl_i32(t)[7] = -3;
        CHECK(kl_i32(t)[7] == -3);
    }
    kl_tensor_free(t);

    /* A 0-D tensor holds one scalar. */
    t = kl_tensor_new(KL_F32, kl_shape_make(0, NULL), &err);
    if (CHECK(t != NULL)) {
        CHECK(kl_numel(t) == 1);
        CHECK(kl_f32(t)[0] == 0.0f);
    }
    kl_tensor_free(t);
    kl_tensor_free(NULL); /* like free(NULL) */
}

static void test_tensor_new_rejects(void)
{
    const kl_shape bad[] = {KL_SHAPE(2, 0), KL_SHAPE(-1), KL_SHAPE(3, 4, -2, 5)};
    const char *shown[] = {"[2, 0]", "[-1]", "[3, 4, -2, 5]"};
    for (int i = 0; i < 3; i++) {
        kl_error err = {0};
        kl_tensor *t = kl_tensor_new(KL_F32, bad[i], &err);
        CHECK(t == NULL);
        if (!CHECK(err.status == KL_ESHAPE && strstr(err.msg, shown[i]) != NULL &&
                   strstr(err.msg, "not positive") != NULL))
            fprintf(stderr, "    status %d, message '%s'\n", (int)err.status, err.msg);
        kl_tensor_free(t);
    }
    /* kl_error is optional: with NULL the failure is still reported by the NULL tensor. */
    CHECK(kl_tensor_new(KL_I32, KL_SHAPE(0), NULL) == NULL);
}

/* The dimensions of a crafted HDF5 file: 2^30 x 1 x 65536 x 65536 floats are 2^64 bytes, which
 * wrapped to a 1-byte allocation that the reader then wrote gigabytes into. */
static void test_tensor_new_overflow(void)
{
    kl_error err = {0};
    kl_shape s = KL_SHAPE(INT64_C(1) << 30, 1, 65536, 65536);
    kl_tensor *t = kl_tensor_new(KL_F32, s, &err);
    CHECK(t == NULL);
    if (!CHECK(err.status == KL_ESHAPE && strstr(err.msg, "[1073741824, 1, 65536, 65536]") &&
               strstr(err.msg, "overflows")))
        fprintf(stderr, "    status %d, message '%s'\n", (int)err.status, err.msg);
    kl_tensor_free(t);
    /* The element count fits in 64 bits here, its bytes do not. */
    CHECK(kl_tensor_new(KL_I32, KL_SHAPE(INT64_C(1) << 31, INT64_C(1) << 31), &err) == NULL);
    CHECK(err.status == KL_ESHAPE && strstr(err.msg, "overflows"));
    /* kl_shape_numel on a shape no check has passed wraps instead of being undefined (UBSan
     * halts the test on a signed overflow): 2^93 elements wrap to 0. */
    kl_shape w = KL_SHAPE(INT64_C(1) << 31, INT64_C(1) << 31, INT64_C(1) << 31);
    CHECK(kl_shape_numel(&w) == 0);
}

/* kl_dims_check: the one gate, with the name of the thing in its message, any number of axes,
 * and empty arrays allowed as long as their other dimensions multiply within range. */
static void test_dims_check(void)
{
    kl_error err = {0};
    int64_t bytes = -1;
    const int64_t ok[] = {3, 5, 7};
    CHECK(kl_dims_check(3, ok, 4, "ok", &bytes, &err) == KL_OK && bytes == 3 * 5 * 7 * 4);
    CHECK(kl_dims_check(0, NULL, 8, "scalar", &bytes, &err) == KL_OK && bytes == 8);
    const int64_t edge[] = {INT64_MAX / 8};
    CHECK(kl_dims_check(1, edge, 8, "edge", &bytes, &err) == KL_OK && bytes == INT64_MAX / 8 * 8);
    CHECK(kl_dims_check(1, edge, 16, "past the edge", NULL, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "past the edge: shape [1152921504606846975] is too large") != NULL);
    const int64_t empty[] = {1 << 20, 0, 1 << 20, 2, 3, 4, 5, 6};
    CHECK(kl_dims_check(8, empty, 4, "empty", &bytes, &err) == KL_OK && bytes == 0);
    const int64_t empty_huge[] = {INT64_MAX, 0, 2};
    CHECK(kl_dims_check(3, empty_huge, 4, "empty but huge", &bytes, &err) == KL_ESHAPE);
    const int64_t big[] = {1000000000, 1000000000, 1000000000, 1, 1, 1, 1, 1};
    CHECK(kl_dims_check(8, big, 1, "inputs[0]", &bytes, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "inputs[0]: shape [1000000000, 1000000000, 1000000000, 1, 1, 1, 1, 1]"));
    const int64_t neg[] = {2, -3};
    CHECK(kl_dims_check(2, neg, 4, "d.h5: dataset 'x'", &bytes, &err) == KL_ESHAPE);
    CHECK(strstr(err.msg, "d.h5: dataset 'x': shape [2, -3] has a negative dimension") != NULL);
    kl_shape five = {.ndim = 5};
    CHECK(kl_shape_check(&five, KL_F32, "t", &bytes, &err) == KL_ESHAPE);
}

static const check_case cases[] = {
    CHECK_CASE(test_shape_make),
    CHECK_CASE(test_numel),
    CHECK_CASE(test_eq),
    CHECK_CASE(test_shape_str),
    CHECK_CASE(test_dtype),
    CHECK_CASE(test_tensor_new),
    CHECK_CASE(test_tensor_new_rejects),
    CHECK_CASE(test_tensor_new_overflow),
    CHECK_CASE(test_dims_check),
};

int main(int argc, char **argv)
{
    return check_run("test_tensor", cases, CHECK_NCASES(cases), argc, argv);
}
