/* Reading Open Inference Protocol v2 inference requests: a structural scan cuts out the number
 * arrays, reading them into floats as it steps over them (one pass), and jansson reads the rest
 * (serve/README.md, "Decoding a request"). The one finiteness check of served inputs is here. */
#include "serve/codec/decode.h"

#include <errno.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/tensor.h"

int kl__dtype_parse(const char *name)
{
    for (int i = KL__DT_FP32; i <= KL__DT_INT64; i++)
        if (name && !strcmp(name, kl__dtype_name((kl__dtype)i)))
            return i;
    return -1;
}

static size_t dtype_size(kl__dtype dt)
{
    return dt == KL__DT_FP64 || dt == KL__DT_INT64 ? 8 : 4;
}

/* ---- numbers ---- */

static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number token at s (strictly the JSON grammar), converted for dt. Returns the end of the
 * token, or NULL when s is not a number (or, for integers, not an integer in range). */
static const char *read_number(const char *s, const char *end, kl__dtype dt, float *out)
{
    const char *p = s;
    bool neg = p < end && *p == '-';
    p += neg;
    if (p >= end || *p < '0' || *p > '9')
        return NULL;
    uint64_t m = 0;
    int digits = 0, dropped = 0;
    bool inexact = false;
    if (*p == '0') {
        p++;
    } else {
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits += m > 0;
            } else {
                dropped++;
                inexact |= *p != '0';
            }
        }
    }
    int frac = 0;
    bool fraction = p < end && *p == '.';
    if (fraction) {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        for (; p < end && *p >= '0' && *p <= '9'; p++) {
            if (digits < 19) {
                m = m * 10 + (uint64_t)(*p - '0');
                digits += m > 0;
                frac++;
            } else {
                inexact |= *p != '0';
            }
        }
    }
    long e = 0;
    bool exponent = p < end && (*p == 'e' || *p == 'E');
    if (exponent) {
        p++;
        bool eneg = p < end && (*p == '-' || *p == '+') ? *p++ == '-' : false;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        for (; p < end && *p >= '0' && *p <= '9'; p++)
            if (e < 100000)
                e = e * 10 + (*p - '0');
        e = eneg ? -e : e;
    }
    if (dt == KL__DT_INT32 || dt == KL__DT_INT64) {
        if (fraction || exponent || dropped || inexact)
            return NULL;
        uint64_t lim = dt == KL__DT_INT32 ? (uint64_t)INT32_MAX + neg : (uint64_t)INT64_MAX + neg;
        if (m > lim)
            return NULL;
        /* -0 is the integer zero, as jansson reads it: +0.0f, not -0.0f. */
        *out = neg && m ? -(float)m : (float)m;
        return p;
    }
    long e10 = e + dropped - frac;
    double d;
    if (!inexact && m <= (1ull << 53) && e10 >= -22 && e10 <= 22) {
        /* Clinger: an exact integer times or over an exact power of ten, rounded once. */
        d = e10 < 0 ? (double)m / pow10_exact[-e10] : (double)m * pow10_exact[e10];
        d = neg ? -d : d;
        if (dt == KL__DT_FP64) {
            *out = (float)d;
            return p;
        }
        /* Rounding the double to float again is exact unless the double sits on a midpoint
         * between two floats (or the float would be subnormal): then strtof decides. */
        double a = fabs(d);
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        if (a == 0.0 ||
            (a >= FLT_MIN && a <= FLT_MAX && (bits & ((1ull << 29) - 1)) != (1ull << 28))) {
            *out = (float)d;
            return p;
        }
    }
    /* The token is valid JSON, which is a subset of what strtof/strtod read, and the character
     * after it cannot continue a number; the caller's buffer is NUL-terminated. */
    char *stop = NULL;
    errno = 0;
    float f = dt == KL__DT_FP64 ? (float)strtod(s, &stop) : strtof(s, &stop);
    if (stop != p)
        return NULL;
    *out = f;
    return p;
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

typedef struct numreader {
    const char *end;
    kl__dtype dt;
    float *out;
    int64_t count, n;
    size_t cap; /* > 0: out grows (the scan's read, which does not know the count yet) */
    kl_error *err;
} numreader;

static kl_status numbers_bad(numreader *r, const char *what)
{
    return kl_error_set(r->err, KL_EINVAL, "data: %s at element %lld", what, (long long)r->n);
}

static kl_status too_many(kl_error *err, int64_t count)
{
    return kl_error_set(err, KL_EINVAL, "data holds more elements than the shape's %lld",
                        (long long)count);
}

static kl_status wrong_count(kl_error *err, int64_t n, int64_t count)
{
    return kl_error_set(err, KL_EINVAL, "data holds %lld elements, but the shape says %lld",
                        (long long)n, (long long)count);
}

/* Room for one more value in a growing reader's out. */
static kl_status make_room(numreader *r)
{
    if ((size_t)r->n < r->cap)
        return KL_OK;
    float *o = r->cap <= SIZE_MAX / 2 / sizeof *o ? realloc(r->out, 2 * r->cap * sizeof *o) : NULL;
    if (!o)
        return kl_error_set(r->err, KL_ENOMEM, "out of memory");
    r->out = o;
    r->cap *= 2;
    return KL_OK;
}

/* One value of the array: a number or a nested array. */
static kl_status read_value(numreader *r, const char **pp, int depth)
{
    const char *p = skip_ws(*pp, r->end);
    if (p < r->end && *p == '[') {
        if (depth >= KL__INFER_MAX_RANK)
            return numbers_bad(r, "arrays nested too deep");
        p = skip_ws(p + 1, r->end);
        if (p < r->end && *p == ']') {
            *pp = p + 1;
            return KL_OK;
        }
        for (;;) {
            kl_status st = read_value(r, &p, depth + 1);
            if (st != KL_OK)
                return st;
            p = skip_ws(p, r->end);
            if (p < r->end && *p == ',') {
                p++;
                continue;
            }
            if (p < r->end && *p == ']') {
                *pp = p + 1;
                return KL_OK;
            }
            return numbers_bad(r, "expected ',' or ']'");
        }
    }
    /* The number is read before the count is checked, so that [1, 2, ] for two elements says
     * what is wrong (no number after the comma) rather than that there are too many. */
    float v;
    const char *q = read_number(p, r->end, r->dt, &v);
    if (!q)
        return numbers_bad(r, r->dt == KL__DT_INT32 || r->dt == KL__DT_INT64
                                  ? "not an integer in the datatype's range"
                                  : "not a number");
    if (r->n >= r->count)
        return too_many(r->err, r->count);
    if (r->cap && make_room(r) != KL_OK)
        return KL_ENOMEM;
    r->out[r->n++] = v;
    *pp = q;
    return KL_OK;
}

kl_status kl__read_numbers(const char *s, size_t n, kl__dtype dt, float *out, int64_t count,
                           kl_error *err)
{
    numreader r = {.end = s + n, .dt = dt, .out = out, .count = count, .err = err};
    const char *p = skip_ws(s, r.end);
    if (p >= r.end || *p != '[')
        return kl_error_set(err, KL_EINVAL, "data: expected an array");
    kl_status st = read_value(&r, &p, 0);
    if (st != KL_OK)
        return st;
    if (skip_ws(p, r.end) != r.end)
        return kl_error_set(err, KL_EINVAL, "data: text after the array");
    if (r.n != count)
        return wrong_count(err, r.n, count);
    return KL_OK;
}

/* ---- the structural scan ---- */

/* Past the string at p ('"'), or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
        else if ((unsigned char)*p < 0x20)
            return NULL;
    }
    return NULL;
}

/* Deeper than jansson reads (JSON_PARSER_MAX_DEPTH, 2048): a document the scan gives up on for
 * its depth is one jansson refuses too, so no valid request reaches the fallback through depth. */
#define SCAN_MAX_DEPTH 2100

/* Characters of numbers and of true/false/null. A range test, not strchr: the scan passes
 * every character of a request's number arrays (bench/RESULTS.md, "Serving"). */
static inline bool literal_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '-' || c == '+' ||
           c == 'E';
}

/* Past any JSON value at p (structure only: jansson validates what it reads later), or NULL. */
static const char *skip_value(const char *p, const char *end, int depth)
{
    p = skip_ws(p, end);
    if (p >= end || depth > SCAN_MAX_DEPTH)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '[') {
        /* Arrays of numbers (the data arrays, thousands of values) in one tight loop: only
         * brackets, commas, blanks and literal characters; anything else takes the general
         * path below, which checks the structure (one call per element). */
        const char *q = p;
        int d = 0;
        for (; q < end; q++) {
            char c = *q;
            if (c == '[') {
                if (++d > SCAN_MAX_DEPTH - depth)
                    break;
            } else if (c == ']') {
                if (--d == 0)
                    return q + 1;
            } else if (c != ',' && c != ' ' && c != '\n' && c != '\r' && c != '\t' &&
                       !literal_char(c)) {
                break;
            }
        }
    }
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        p = skip_ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                if (p >= end || *p != '"' || !(p = skip_string(p, end)))
                    return NULL;
                p = skip_ws(p, end);
                if (p >= end || *p++ != ':')
                    return NULL;
            }
            if (!(p = skip_value(p, end, depth + 1)))
                return NULL;
            p = skip_ws(p, end);
            if (p < end && *p == ',') {
                p = skip_ws(p + 1, end);
                continue;
            }
            return p < end && *p == close ? p + 1 : NULL;
        }
    }
    while (p < end && literal_char(*p))
        p++;
    return p;
}

typedef struct span {
    size_t at, len;
    float *pre; /* the array read as FP32 by the scan (pre_n values), or NULL */
    int64_t pre_n;
} span;

/* The scan's one pass over a data array at v ('['): its numbers read as FP32 while the scan
 * steps over them, into sp->pre. Past the array, or NULL (nothing kept) when it is not an array
 * of numbers the reader takes: the scan then steps over it as over any value, and read_data
 * reads it again and says what is wrong. */
static const char *scan_numbers(const char *v, const char *end, span *sp)
{
    kl_error err = {0};
    numreader r = {.end = end, .dt = KL__DT_FP32, .count = INT64_MAX, .cap = 1024, .err = &err};
    const char *p = v;
    if (!(r.out = malloc(r.cap * sizeof *r.out)) || read_value(&r, &p, 0) != KL_OK) {
        free(r.out);
        return NULL;
    }
    free(sp->pre); /* a second data key: jansson refuses the document later */
    sp->pre = r.out;
    sp->pre_n = r.n;
    return p;
}

static void spans_free(span *spans)
{
    for (int i = 0; i < KL__INFER_MAX_INPUTS; i++) {
        free(spans[i].pre);
        spans[i].pre = NULL;
    }
}

/* Whether the string [p, q) (quotes included, escapes balanced by skip_string) is key once its
 * \uXXXX escapes are decoded: jansson reads "d\u0061ta" as "data", and the scan must too, since
 * the fallback reads numbers through jansson's doubles (double rounding for FP32, -0 read as 0,
 * 1e400 refused) and so would not give what the fast path gives. Keys are ASCII letters, so any
 * other escape is a mismatch. */
static bool key_is(const char *p, const char *q, const char *key)
{
    for (p++, q--; p < q; p++, key++) {
        unsigned c = (unsigned char)*p;
        if (c == '\\') {
            if (q - p < 6 || p[1] != 'u')
                return false;
            c = 0;
            for (int k = 2; k < 6; k++) {
                int h = p[k];
                int v = h >= '0' && h <= '9'   ? h - '0'
                        : h >= 'a' && h <= 'f' ? h - 'a' + 10
                        : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                               : -1;
                if (v < 0)
                    return false;
                c = c * 16 + (unsigned)v;
            }
            p += 5;
        }
        if (!*key || c != (unsigned char)*key)
            return false;
    }
    return !*key;
}

/* Finds $.inputs[i].data arrays: spans[i] (len 0 where not found). false when the document's
 * shape is not the usual one, and jansson should read it all. */
static bool scan_inputs(const char *doc, size_t n, span *spans)
{
    const char *p = doc, *end = doc + n;
    p = skip_ws(p, end);
    if (p >= end || *p++ != '{')
        return false;
    for (;;) {
        p = skip_ws(p, end);
        if (p >= end || *p != '"')
            return false;
        const char *k = p;
        if (!(p = skip_string(p, end)))
            return false;
        bool inputs = key_is(k, p, "inputs");
        p = skip_ws(p, end);
        if (p >= end || *p++ != ':')
            return false;
        p = skip_ws(p, end);
        if (inputs && p < end && *p == '[') {
            p = skip_ws(p + 1, end);
            for (int i = 0; p < end && *p != ']'; i++) {
                if (i >= KL__INFER_MAX_INPUTS || *p != '{')
                    return false;
                p = skip_ws(p + 1, end);
                while (p < end && *p != '}') {
                    const char *ik = p;
                    if (*p != '"' || !(p = skip_string(p, end)))
                        return false;
                    bool is_data = key_is(ik, p, "data");
                    p = skip_ws(p, end);
                    if (p >= end || *p++ != ':')
                        return false;
                    const char *v = skip_ws(p, end);
                    const char *q =
                        is_data && v < end && *v == '[' ? scan_numbers(v, end, &spans[i]) : NULL;
                    if (!(p = q ? q : skip_value(v, end, 2)))
                        return false;
                    if (is_data && v < end && *v == '[') {
                        spans[i].at = (size_t)(v - doc);
                        spans[i].len = (size_t)(p - v);
                        if (!q) { /* this data array is read later; an earlier one's values go */
                            free(spans[i].pre);
                            spans[i].pre = NULL;
                        }
                    }
                    p = skip_ws(p, end);
                    if (p < end && *p == ',')
                        p = skip_ws(p + 1, end);
                }
                if (p >= end)
                    return false;
                p = skip_ws(p + 1, end);
                if (p < end && *p == ',')
                    p = skip_ws(p + 1, end);
            }
            if (p >= end)
                return false;
            p++;
        } else if (!(p = skip_value(p, end, 1))) {
            return false;
        }
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        return p < end && *p == '}';
    }
}

/* ---- the document ---- */

static kl_status read_shape(json_t *in, int i, kl__infer_input *x, kl_error *err)
{
    json_t *shape = json_object_get(in, "shape");
    if (!json_is_array(shape) || json_array_size(shape) == 0)
        return kl_error_set(err, KL_EINVAL, "inputs[%d]: shape must be a non-empty array", i);
    if (json_array_size(shape) > KL__INFER_MAX_RANK)
        return kl_error_set(err, KL_EINVAL, "inputs[%d]: shape has %zu dimensions, at most %d", i,
                            json_array_size(shape), KL__INFER_MAX_RANK);
    x->rank = (int)json_array_size(shape);
    for (int d = 0; d < x->rank; d++) {
        json_t *v = json_array_get(shape, (size_t)d);
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return kl_error_set(err, KL_EINVAL,
                                "inputs[%d]: shape[%d] must be a non-negative integer", i, d);
        x->shape[d] = json_integer_value(v);
    }
    /* Sized for 8 bytes a value, the widest datatype a request carries (INT64, FP64), so that
     * every buffer and byte count made from count stays in range. */
    char what[32];
    snprintf(what, sizeof what, "inputs[%d]", i);
    kl_error e = {0};
    int64_t bytes = 0;
    if (kl_dims_check(x->rank, x->shape, 8, what, &bytes, &e) != KL_OK)
        return kl_error_set(err, KL_EINVAL, "%s", e.msg);
    x->count = bytes / 8;
    return KL_OK;
}

/* x's elements fit in a request of room bytes at per bytes each (2 for JSON: a digit and a
 * comma): a shape that claims more than the body can hold is refused before any allocation. */
static kl_status check_room(const kl__infer_input *x, int i, size_t room, size_t per, kl_error *err)
{
    if ((uint64_t)x->count > room / per + 1)
        return kl_error_set(err, KL_EINVAL,
                            "inputs[%d]: the shape has %lld elements, more than the request holds",
                            i, (long long)x->count);
    return KL_OK;
}

static kl_status alloc_data(kl__infer_input *x, int i, size_t room, size_t per, kl_error *err)
{
    kl_status st = check_room(x, i, room, per, err);
    if (st != KL_OK)
        return st;
    x->data = malloc((size_t)(x->count ? x->count : 1) * sizeof *x->data);
    bool ints = x->dtype == KL__DT_INT32 || x->dtype == KL__DT_INT64;
    if (ints)
        x->ints = malloc((size_t)(x->count ? x->count : 1) * sizeof *x->ints);
    return x->data && (!ints || x->ints) ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
}

static kl_status read_binary(json_t *bsize, int i, const char *bin, size_t binlen, size_t *binoff,
                             kl__infer_input *x, kl_error *err)
{
    if (!json_is_integer(bsize) || json_integer_value(bsize) < 0)
        return kl_error_set(err, KL_EINVAL,
                            "inputs[%d]: binary_data_size must be a non-negative integer", i);
    kl_status st = alloc_data(x, i, binlen - *binoff, dtype_size(x->dtype), err);
    if (st != KL_OK)
        return st;
    uint64_t want = (uint64_t)x->count * dtype_size(x->dtype);
    if ((uint64_t)json_integer_value(bsize) != want)
        return kl_error_set(err, KL_EINVAL,
                            "inputs[%d]: binary_data_size is %lld bytes, but %lld %s elements "
                            "take %llu",
                            i, (long long)json_integer_value(bsize), (long long)x->count,
                            kl__dtype_name(x->dtype), (unsigned long long)want);
    if (want > binlen - *binoff)
        return kl_error_set(err, KL_EINVAL,
                            "inputs[%d]: binary data is truncated: %llu bytes wanted, %zu left", i,
                            (unsigned long long)want, binlen - *binoff);
    const char *b = bin + *binoff;
    if (x->dtype == KL__DT_FP32) /* the common case: the bytes are the floats */
        memcpy(x->data, b, (size_t)want);
    for (int64_t k = 0; x->dtype != KL__DT_FP32 && k < x->count; k++) {
        switch (x->dtype) {
        case KL__DT_FP32:
            break;
        case KL__DT_FP64: {
            double v;
            memcpy(&v, b + 8 * k, 8);
            x->data[k] = (float)v;
            break;
        }
        case KL__DT_INT32: {
            int32_t v;
            memcpy(&v, b + 4 * k, 4);
            x->data[k] = (float)v;
            x->ints[k] = v;
            break;
        }
        case KL__DT_INT64: {
            int64_t v;
            memcpy(&v, b + 8 * k, 8);
            x->data[k] = (float)v;
            x->ints[k] = v;
            break;
        }
        }
    }
    *binoff += want;
    return KL_OK;
}

/* The exact values of an integer array kl__read_numbers accepted: its text holds only brackets,
 * commas, blanks and integer tokens, so every token is where a sign or a digit starts. */
static void read_ints(const char *s, size_t n, int64_t *out)
{
    int64_t k = 0;
    for (const char *p = s, *end = s + n; p < end;) {
        if (*p == '-' || (*p >= '0' && *p <= '9')) {
            char *stop = NULL;
            out[k++] = strtoll(p, &stop, 10);
            p = stop;
        } else {
            p++;
        }
    }
}

/* An FP32 input's values as the scan read them: x takes the scan's buffer, once the shape and
 * the count agree (the messages are kl__read_numbers's). */
static kl_status take_scanned(span *sp, int i, kl__infer_input *x, kl_error *err)
{
    kl_status st = check_room(x, i, sp->len, 2, err);
    if (st == KL_OK && sp->pre_n > x->count)
        st = too_many(err, x->count);
    else if (st == KL_OK && sp->pre_n < x->count)
        st = wrong_count(err, sp->pre_n, x->count);
    if (st == KL_OK) {
        x->data = sp->pre;
        sp->pre = NULL;
    }
    return st;
}

/* Reads the data of input i: binary bytes, the values the scan read, the scanned span, or the
 * array jansson read. */
static kl_status read_data(const char *doc, span *sp, json_t *in, int i, const char *bin,
                           size_t binlen, size_t *binoff, kl__infer_input *x, kl_error *err)
{
    json_t *params = json_object_get(in, "parameters");
    json_t *bsize = json_is_object(params) ? json_object_get(params, "binary_data_size") : NULL;
    json_t *data = json_object_get(in, "data");
    if (bsize && data)
        return kl_error_set(err, KL_EINVAL, "inputs[%d]: both data and binary_data_size are given",
                            i);
    if (bsize)
        return read_binary(bsize, i, bin, binlen, binoff, x, err);
    if (!data)
        return kl_error_set(err, KL_EINVAL, "inputs[%d]: no data (and no binary_data_size)", i);
    char *dumped = NULL;
    const char *text = doc + sp->at;
    size_t n = sp->len;
    if (!n) { /* jansson read the array */
        if (!(dumped = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY)))
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        text = dumped;
        n = strlen(dumped);
    }
    kl_status st;
    if (sp->pre && x->dtype == KL__DT_FP32) {
        st = take_scanned(sp, i, x, err);
    } else {
        st = alloc_data(x, i, n, 2, err);
        if (st == KL_OK)
            st = kl__read_numbers(text, n, x->dtype, x->data, x->count, err);
    }
    if (st == KL_OK && x->ints)
        read_ints(text, n, x->ints);
    free(dumped);
    if (st == KL_EINVAL && err && strncmp(err->msg, "inputs[", 7)) {
        char msg[KL_ERROR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        kl_error_set(err, KL_EINVAL, "inputs[%d].%s", i, msg);
    }
    return st;
}

static kl_status read_outputs(json_t *doc, kl__infer_request *req, kl_error *err)
{
    json_t *params = json_object_get(doc, "parameters");
    if (params && !json_is_object(params))
        return kl_error_set(err, KL_EINVAL, "parameters must be an object");
    json_t *ball = params ? json_object_get(params, "binary_data_output") : NULL;
    req->binary_all = json_is_true(ball);
    req->members = params && json_is_true(json_object_get(params, "members"));
    json_t *outs = json_object_get(doc, "outputs");
    if (!outs)
        return KL_OK;
    if (!json_is_array(outs) || json_array_size(outs) > KL__INFER_MAX_OUTPUTS)
        return kl_error_set(err, KL_EINVAL, "outputs must be an array of at most %d objects",
                            KL__INFER_MAX_OUTPUTS);
    req->outputs = calloc(json_array_size(outs) + 1, sizeof *req->outputs);
    if (!req->outputs)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    size_t i;
    json_t *o;
    json_array_foreach(outs, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        if (!json_is_object(o) || !name)
            return kl_error_set(err, KL_EINVAL,
                                "outputs[%zu]: an object with a string name is required", i);
        json_t *op = json_object_get(o, "parameters");
        json_t *b = json_is_object(op) ? json_object_get(op, "binary_data") : NULL;
        req->outputs[i].binary = json_is_true(b);
        if (!(req->outputs[i].name = strdup(name)))
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        req->noutputs = (int)i + 1;
    }
    return KL_OK;
}

kl_status kl__infer_parse(const char *body, size_t len, size_t json_len, kl__infer_request *req,
                          kl_error *err)
{
    *req = (kl__infer_request){0};
    if (json_len > len)
        return kl_error_set(err, KL_EINVAL,
                            "Inference-Header-Content-Length %zu is larger than the body (%zu)",
                            json_len, len);
    span spans[KL__INFER_MAX_INPUTS] = {{0}};
    bool scanned = scan_inputs(body, json_len, spans);
    /* jansson reads the document with the data arrays cut out (replaced by []). */
    char *cut = NULL;
    size_t cutlen = json_len;
    if (scanned) {
        if (!(cut = malloc(json_len + 1))) {
            spans_free(spans);
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        }
        size_t from = 0;
        cutlen = 0;
        for (int i = 0; i < KL__INFER_MAX_INPUTS; i++) {
            if (!spans[i].len)
                continue;
            memcpy(cut + cutlen, body + from, spans[i].at - from);
            cutlen += spans[i].at - from;
            memcpy(cut + cutlen, "[]", 2);
            cutlen += 2;
            from = spans[i].at + spans[i].len;
        }
        memcpy(cut + cutlen, body + from, json_len - from);
        cutlen += json_len - from;
    } else {
        spans_free(spans);
        memset(spans, 0, sizeof spans);
    }
    json_error_t je;
    json_t *doc = json_loadb(cut ? cut : body, cutlen, JSON_REJECT_DUPLICATES, &je);
    free(cut);
    if (!doc) {
        spans_free(spans);
        return kl_error_set(err, KL_EINVAL, "malformed JSON%s: %s (line %d, column %d)",
                            scanned ? "" : " request", je.text, je.line, je.column);
    }
    kl_status st = KL_OK;
    json_t *inputs = json_object_get(doc, "inputs");
    json_t *id = json_object_get(doc, "id");
    if (!json_is_object(doc)) {
        st = kl_error_set(err, KL_EINVAL, "the request must be a JSON object");
    } else if (id && !json_is_string(id)) {
        st = kl_error_set(err, KL_EINVAL, "id must be a string");
    } else if (id && !(req->id = strdup(json_string_value(id)))) {
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    } else if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
        st = kl_error_set(err, KL_EINVAL, "inputs must be a non-empty array");
    } else if (json_array_size(inputs) > KL__INFER_MAX_INPUTS) {
        st = kl_error_set(err, KL_EINVAL, "%zu inputs, at most %d", json_array_size(inputs),
                          KL__INFER_MAX_INPUTS);
    } else if (!(req->inputs = calloc(json_array_size(inputs), sizeof *req->inputs))) {
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    size_t binoff = 0;
    for (size_t i = 0; st == KL_OK && i < json_array_size(inputs); i++) {
        json_t *in = json_array_get(inputs, i);
        kl__infer_input *x = &req->inputs[i];
        req->ninputs = (int)i + 1;
        const char *name = json_string_value(json_object_get(in, "name"));
        const char *dt = json_string_value(json_object_get(in, "datatype"));
        if (!json_is_object(in) || !name) {
            st = kl_error_set(err, KL_EINVAL,
                              "inputs[%zu]: an object with a string name is required", i);
        } else if (!(x->name = strdup(name))) {
            st = kl_error_set(err, KL_ENOMEM, "out of memory");
        } else if (!dt) {
            st = kl_error_set(err, KL_EINVAL,
                              "inputs[%zu]: datatype is required (FP32, FP64, INT32 or INT64)", i);
        } else if (kl__dtype_parse(dt) < 0) {
            st = kl_error_set(err, KL_EINVAL,
                              "inputs[%d]: datatype %s is not supported: FP32, FP64, INT32 or "
                              "INT64",
                              (int)i, dt);
        } else {
            x->dtype = (kl__dtype)kl__dtype_parse(dt);
            if ((st = read_shape(in, (int)i, x, err)) == KL_OK)
                st = read_data(body, &spans[i], in, (int)i, body + json_len, len - json_len,
                               &binoff, x, err);
        }
    }
    if (st == KL_OK && binoff != len - json_len)
        st = kl_error_set(err, KL_EINVAL,
                          "%zu bytes of binary data after the JSON header, the inputs take %zu",
                          len - json_len, binoff);
    if (st == KL_OK)
        st = read_outputs(doc, req, err);
    json_decref(doc);
    spans_free(spans);
    return st;
}

/* The one finiteness check of a served request's values: every stage after the decoder (the
 * input checks, the lookup and pre steps, the model call, online learning's labels) relies on
 * the inputs being finite and does not look again. Values a stage computes itself (a pre step
 * that overflows) are that stage's to check. */
static kl_status check_finite(const kl__infer_input *x, kl_error *err)
{
    int64_t per = 1;
    for (int d = 1; d < x->rank; d++)
        per *= x->shape[d];
    per = per > 0 ? per : 1;
    /* One pass that vectorises (a test of the exponent bits, OR-ed), then, only when it found
     * one, a second that says where. */
    uint32_t bad = 0;
    for (int64_t i = 0; i < x->count; i++) {
        uint32_t u;
        memcpy(&u, &x->data[i], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    for (int64_t i = 0; bad && i < x->count; i++)
        if (!isfinite(x->data[i]))
            return kl_error_set(err, KL_EINVAL,
                                "input '%s': sample %lld, value %lld is %s: the model takes "
                                "finite numbers",
                                x->name, (long long)(i / per), (long long)(i % per),
                                isnan(x->data[i]) ? "NaN" : "infinite");
    return KL_OK;
}

kl_status kl__infer_decode(const char *body, size_t len, size_t json_len, kl__infer_request *req,
                           kl_error *err)
{
    kl_status st = kl__infer_parse(body, len, json_len, req, err);
    for (int i = 0; st == KL_OK && i < req->ninputs; i++)
        st = check_finite(&req->inputs[i], err);
    return st;
}

void kl__infer_request_free(kl__infer_request *req)
{
    for (int i = 0; i < req->ninputs; i++) {
        free(req->inputs[i].name);
        free(req->inputs[i].data);
        free(req->inputs[i].ints);
    }
    free(req->inputs);
    for (int i = 0; i < req->noutputs; i++)
        free(req->outputs[i].name);
    free(req->outputs);
    free(req->id);
    *req = (kl__infer_request){0};
}
