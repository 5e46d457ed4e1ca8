/* Tests for serve/codec/decode.c, the Open Inference Protocol v2 request parser: flat and nested
 * data, FP32 numbers read bit for bit as strtof reads them (20,000 random decimal strings, through
 * the number reader, the scanned document and documents whose keys the scan must decode), INT32,
 * INT64 and FP64 conversion, Triton's binary tensor extension, and every class of malformed
 * request with the word its message must carry. It runs under AddressSanitizer, so a leak or a
 * huge allocation on an error path fails it as well. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "serve/codec/decode.h"

/* One input named x: the members of a request for the error cases, and the request itself. */
#define ONE_MEMBERS(dt, shape, data)                                             \
    "\"inputs\": [{\"name\": \"x\", \"datatype\": \"" dt "\", \"shape\": " shape \
    ", \"data\": " data "}]"
#define ONE(dt, shape, data) "{" ONE_MEMBERS(dt, shape, data) "}"

#define NTOKENS 20000
#define TOKMAX  200

/* splitmix64: a fixed sequence, so a failure reproduces. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int rng_int(rng *r, int lo, int hi)
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* A growing string for request bodies; the tests stop at once if memory runs out. */
typedef struct text {
    char *p;
    size_t len, cap;
} text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void text_add(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)n + 1 > t->cap) {
        t->cap = (t->len + (size_t)n + 1) * 2;
        if (!(t->p = realloc(t->p, t->cap))) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
    }
    va_start(ap, fmt);
    vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static kl_status parse_str(const char *json, kl__infer_request *req, kl_error *err)
{
    size_t n = strlen(json);
    return kl__infer_parse(json, n, n, req, err);
}

/* The request is refused as the client's fault, with want (or else want2) in the message. */
static void expect_error_(const char *body, size_t len, size_t json_len, const char *want,
                          const char *want2, int line)
{
    kl_error err = {0};
    kl__infer_request req;
    kl_status st = kl__infer_parse(body, len, json_len, &req, &err);
    kl__infer_request_free(&req);
    bool said = strstr(err.msg, want) || (want2 && strstr(err.msg, want2));
    if (!check_(st == KL_EINVAL && said, __FILE__, line, want))
        fprintf(stderr, "    status %d: %s\n", (int)st, err.msg);
}
#define expect_error(json, want) \
    expect_error_(json, strlen(json), strlen(json), want, NULL, __LINE__)
/* Tokens that are not JSON at all: the scan stops at them, and jansson names them. */
#define expect_bad_token(json) \
    expect_error_(json, strlen(json), strlen(json), "not a number", "invalid token", __LINE__)

static bool same_bits(const float *a, const float *b, int64_t n)
{
    return n == 0 || !memcmp(a, b, (size_t)n * sizeof *a);
}

static void check_pixels(const kl__infer_request *req)
{
    static const float want[6] = {1.5f, -2, 0.25f, 300, -0.0f, 7.125f};
    CHECK(req->id && strcmp(req->id, "req-7") == 0);
    CHECK(req->ninputs == 1);
    if (req->ninputs != 1)
        return;
    const kl__infer_input *x = &req->inputs[0];
    CHECK(strcmp(x->name, "pixels") == 0 && x->dtype == KL__DT_FP32);
    CHECK(x->rank == 2 && x->shape[0] == 2 && x->shape[1] == 3 && x->count == 6);
    CHECK(x->count == 6 && same_bits(x->data, want, 6));
    CHECK(req->noutputs == 2 && req->binary_all);
    if (req->noutputs == 2) {
        CHECK(strcmp(req->outputs[0].name, "probs") == 0 && req->outputs[0].binary);
        CHECK(strcmp(req->outputs[1].name, "logits") == 0 && !req->outputs[1].binary);
    }
}

/* The same six numbers, flat and nested, give the same request. */
static void test_flat_and_nested(void)
{
#define PIXELS(data)                                                                     \
    "{\"id\": \"req-7\", \"inputs\": [{\"name\": \"pixels\", \"shape\": [2, 3], "        \
    "\"datatype\": \"FP32\", \"data\": " data "}], \"outputs\": [{\"name\": \"probs\", " \
    "\"parameters\": {\"binary_data\": true}}, {\"name\": \"logits\", \"parameters\": "  \
    "{\"binary_data\": false}}], \"parameters\": {\"binary_data_output\": true}}"
    static const char *const bodies[] = {
        PIXELS("[1.5, -2, 0.25, 3e2, -0.0, 7.125]"),
        PIXELS("[[1.5, -2, 0.25], [3e2, -0.0, 7.125]]"),
        PIXELS(" [ [ 1.5 ,-2,\n0.25 ] ,\t[ 300.0, -0e0, 7125e-3 ] ] "),
    };
#undef PIXELS
    float first[6] = {0};
    for (int b = 0; b < 3; b++) {
        kl_error err = {0};
        kl__infer_request req;
        CHECK_OK(parse_str(bodies[b], &req, &err), &err);
        check_pixels(&req);
        if (req.ninputs == 1 && req.inputs[0].count == 6) {
            if (b == 0)
                memcpy(first, req.inputs[0].data, sizeof first);
            CHECK(same_bits(req.inputs[0].data, first, 6));
        }
        kl__infer_request_free(&req);
    }

    /* No id, no outputs, no parameters: every output, as JSON. */
    kl_error err = {0};
    kl__infer_request req;
    CHECK_OK(parse_str(ONE("FP32", "[1]", "[4]"), &req, &err), &err);
    CHECK(req.id == NULL && req.noutputs == 0 && !req.binary_all);
    CHECK(req.ninputs == 1 && req.inputs[0].count == 1 && req.inputs[0].data[0] == 4.0f);
    kl__infer_request_free(&req);
}

/* Strings whose FP32 rounding is hard, ahead of the random ones, separated by spaces: signed
 * zeros, underflow to zero and to the smallest subnormal, FLT_MIN and FLT_MAX and just past them,
 * integers past 2^64, and float midpoints (16777217, 1 + 2^-24) written exactly and just off. */
static const char special_tokens[] =
    "0 -0 -0.0 0e0 -0e-5 0.0e+99999999 0.1 123.456e-7 1E+2 1e-0 1e-46 -1e-46 7e-46 7.1e-46 1e-45 "
    "1.401298464324817e-45 1.1754942e-38 1.17549435e-38 1.1754943508222875e-38 3.4028234e38 "
    "3.4028235e38 3.4028236e38 1e39 -1e39 1e400 1e-400 123456789012345678901234567890 16777217 "
    "16777219 -33554434 9007199254740993 18446744073709551616 1.000000059604644775390625 "
    "1.0000000596046447753906251 1.0000000596046447753906249 "
    "0.000000000000000000000000000000000000000000001 2.5e-1 1.00000000000000000000000000001";

/* A float midpoint, rounded to 8 to 41 digits, or written exactly (trailing zeros trimmed, cut
 * at 100 characters), or written so and then nudged just above it. */
static void midpoint_token(rng *r, char *buf)
{
    uint32_t bits = (uint32_t)rng_next(r) & 0x7f7fffffu; /* finite, positive */
    float f, g;
    memcpy(&f, &bits, sizeof f);
    g = nextafterf(f, INFINITY);
    double m = ((double)f + (double)g) / 2; /* exact: 25 bits */
    int kind = rng_int(r, 0, 2);
    if (kind == 0) {
        snprintf(buf, TOKMAX, "%s%.*e", rng_int(r, 0, 1) ? "-" : "", rng_int(r, 7, 40), m);
        return;
    }
    char tmp[TOKMAX];
    snprintf(tmp, sizeof tmp, "%.150e", m);
    char *e = strchr(tmp, 'e'), *z = e;
    while (z[-1] == '0' && z[-2] != '.')
        z--;
    if (z - tmp > 100) /* keep the token within TOKMAX: near-exact is hard enough */
        z = tmp + 100;
    snprintf(buf, TOKMAX, "%.*s%s%s", (int)(z - tmp), tmp, kind == 2 ? "000000000000000001" : "",
             e);
}

/* One random decimal string of the kind k. */
static void random_token(rng *r, int k, char *buf)
{
    double mant = 1 + 9 * (double)(rng_next(r) >> 11) * 0x1p-53;
    double d = mant * pow(10, rng_int(r, -40, 38));
    const char *sign = rng_int(r, 0, 3) ? "" : "-";
    switch (k) {
    case 0: /* the shortest text that gives a float back, but for floats past FLT_MAX */
        snprintf(buf, TOKMAX, "%s%.9g", sign, (double)(d > FLT_MAX ? FLT_MAX : (float)d));
        break;
    case 1:
        snprintf(buf, TOKMAX, "%s%.17g", sign, d);
        break;
    case 2:
        snprintf(buf, TOKMAX, "%s%d.%0*de%d", sign, rng_int(r, 0, 99999), rng_int(r, 1, 4),
                 rng_int(r, 0, 999), rng_int(r, -12, 12));
        break;
    case 3: {
        int n = snprintf(buf, TOKMAX, "%s%d.", sign, rng_int(r, 1, 9));
        for (int i = 0; i < 24; i++)
            buf[n++] = (char)('0' + rng_int(r, 0, 9));
        snprintf(buf + n, (size_t)(TOKMAX - n), "e%d", rng_int(r, -46, 39));
        break;
    }
    case 4:
        midpoint_token(r, buf);
        break;
    case 5: { /* an odd 25-bit integer shifted: a float midpoint that Clinger's path meets */
        uint64_t m = ((uint64_t)1 << 24) | (rng_next(r) & 0xffffff) | 1;
        snprintf(buf, TOKMAX, "%s%llu%s", sign, (unsigned long long)(m << rng_int(r, 0, 28)),
                 rng_int(r, 0, 1) ? "" : ".0");
        break;
    }
    default:
        snprintf(buf, TOKMAX, "%s%.*f", sign, rng_int(r, 0, 12), mant * pow(10, rng_int(r, -6, 8)));
        break;
    }
}

static char (*make_tokens(void))[TOKMAX]
{
    char(*tok)[TOKMAX] = malloc(NTOKENS * sizeof *tok);
    if (!tok)
        exit(1);
    rng r = {20240611};
    int i = 0;
    for (const char *p = special_tokens; *p; i++) {
        size_t n = strcspn(p, " ");
        snprintf(tok[i], TOKMAX, "%.*s", (int)n, p);
        p += n + (p[n] == ' ');
    }
    for (; i < NTOKENS; i++)
        random_token(&r, i % 7, tok[i]);
    return tok;
}

/* Reads the tokens through a whole request (the data array, flat or in rows of four, spliced
 * between before and after) and counts the elements whose bits differ from want. */
static void check_document(const char *what, const char *before, const char *after, bool rows,
                           char (*tok)[TOKMAX], const float *want)
{
    text t = {0};
    text_add(&t, "%s[", before);
    for (int i = 0; i < NTOKENS; i++) {
        const char *sep = i == 0 ? "" : rows && i % 4 == 0 ? "], " : ", ";
        text_add(&t, "%s%s%s", sep, rows && i % 4 == 0 ? "[" : "", tok[i]);
    }
    text_add(&t, "%s]%s", rows ? "]" : "", after);
    kl_error err = {0};
    kl__infer_request req;
    kl_status st = kl__infer_parse(t.p, t.len, t.len, &req, &err);
    if (!check_(st == KL_OK && req.ninputs == 1 && req.inputs[0].count == NTOKENS, __FILE__,
                __LINE__, what)) {
        fprintf(stderr, "    status %d: %s\n", (int)st, err.msg);
    } else {
        int bad = 0;
        for (int i = 0; i < NTOKENS; i++)
            if (memcmp(&req.inputs[0].data[i], &want[i], sizeof *want) && bad++ < 3)
                fprintf(stderr, "    %s: %s read as %.9g, strtof gives %.9g\n", what, tok[i],
                        req.inputs[0].data[i], want[i]);
        if (!check_(bad == 0, __FILE__, __LINE__, what))
            fprintf(stderr, "    %d of %d numbers differ from strtof\n", bad, NTOKENS);
    }
    kl__infer_request_free(&req);
    free(t.p);
}

static void test_exact_rounding(void)
{
    char(*tok)[TOKMAX] = make_tokens();
    float *want = malloc(NTOKENS * sizeof *want);
    if (!want)
        exit(1);
    int bad = 0;
    for (int i = 0; i < NTOKENS; i++) {
        char *end, arr[TOKMAX + 4];
        want[i] = strtof(tok[i], &end);
        if (*end)
            fprintf(stderr, "    token %s is not all read by strtof\n", tok[i]);
        snprintf(arr, sizeof arr, "[%s]", tok[i]);
        kl_error err = {0};
        float got = NAN;
        kl_status st = kl__read_numbers(arr, strlen(arr), KL__DT_FP32, &got, 1, &err);
        if ((st != KL_OK || memcmp(&got, &want[i], sizeof got) || *end) && bad++ < 5)
            fprintf(stderr, "    %s read as %.9g (status %d: %s), strtof gives %.9g\n", tok[i], got,
                    (int)st, err.msg, want[i]);
    }
    if (!CHECK(bad == 0))
        fprintf(stderr, "    %d of %d numbers differ from strtof\n", bad, NTOKENS);

    check_document("flat",
                   "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", "
                   "\"shape\": [20000], \"data\": ",
                   "}]}", false, tok, want);
    check_document("nested",
                   "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", "
                   "\"shape\": [5000, 4], \"data\": ",
                   "}]}", true, tok, want);
    /* Keys the scan has to decode or find among others, and nesting elsewhere: jansson reads
     * these documents the same, so the numbers must come out the same. */
    check_document("escaped data key",
                   "{\"id\": \"r\", \"inputs\": [{\"shape\": [20000], \"datatype\": \"FP32\", "
                   "\"name\": \"x\", \"d\\u0061ta\": ",
                   "}]}", false, tok, want);
    check_document("escaped inputs key, odd spacing",
                   "{\n \"parameters\" : { \"a\" : [ 1 , { \"b\" : null } ] } ,\t"
                   "\"\\u0069nputs\"\r\n:\n[ { \"name\":\"x\" , \"datatype\" : \"FP32\" , "
                   "\"shape\" : [ 20000 ] , \"data\"\t:\n",
                   " } ] , \"outputs\" : [ ] }", false, tok, want);
    text deep = {0};
    text_add(&deep, "{\"parameters\": {\"deep\": ");
    for (int i = 0; i < 100; i++)
        text_add(&deep, "[");
    for (int i = 0; i < 100; i++)
        text_add(&deep, "]");
    text_add(&deep, "}, \"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", "
                    "\"shape\": [20000], \"data\": ");
    check_document("nested 100 deep elsewhere", deep.p, "}]}", false, tok, want);
    free(deep.p);
    free(want);
    free(tok);
}

/* Parses a one-input request that must succeed and compares its floats bit for bit. */
static void expect_floats_(const char *json, const float *want, int64_t n, int line)
{
    kl_error err = {0};
    kl__infer_request req;
    kl_status st = parse_str(json, &req, &err);
    if (!check_(st == KL_OK, __FILE__, line, json))
        fprintf(stderr, "    status %d: %s\n", (int)st, err.msg);
    else if (!check_(req.inputs[0].count == n && same_bits(req.inputs[0].data, want, n), __FILE__,
                     line, json))
        for (int64_t i = 0; i < req.inputs[0].count && i < n; i++)
            fprintf(stderr, "    [%lld] %.9g, want %.9g\n", (long long)i, req.inputs[0].data[i],
                    want[i]);
    kl__infer_request_free(&req);
}
#define expect_floats(json, ...)                       \
    expect_floats_(json, (const float[]){__VA_ARGS__}, \
                   (int64_t)(sizeof((const float[]){__VA_ARGS__}) / sizeof(float)), __LINE__)

static char *binary_body(const char *header, const void *bytes, size_t n, size_t *len);

static void test_integer_and_fp64(void)
{
    expect_floats(ONE("INT32", "[6]", "[0, -2147483648, 2147483647, 16777217, 7, -0]"), 0,
                  -2147483648.0f, 2147483648.0f, 16777216.0f, 7, 0.0f);
    /* The scan decodes the escaped key, so -0 is an integer zero here too. */
    expect_floats("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"INT32\", \"shape\": [2], "
                  "\"d\\u0061ta\": [-0, 3]}]}",
                  0.0f, 3);
    expect_floats(
        ONE("INT64", "[2, 2]", "[[9223372036854775807, -9223372036854775808], [123, -16777217]]"),
        9223372036854775807.0f, -9223372036854775808.0f, 123, -16777216.0f);
    static const char *const fp64[] = {
        "0.1",  "1.0000000596046448", "3.4028235677973366e38", "1e-320", "-2.5", "16777217",
        "1e400"};
    float want[7];
    for (int i = 0; i < 7; i++)
        want[i] = (float)strtod(fp64[i], NULL);
    expect_floats_(ONE("FP64", "[7]",
                       "[0.1, 1.0000000596046448, 3.4028235677973366e38, 1e-320, -2.5, 16777217, "
                       "1e400]"),
                   want, 7, __LINE__);
    expect_error(ONE("INT32", "[2]", "[1, 1.5]"), "integer");
    expect_error(ONE("INT32", "[1]", "[2147483648]"), "range");
    expect_error(ONE("INT32", "[1]", "[-2147483649]"), "range");
    expect_error(ONE("INT32", "[1]", "[1.0]"), "integer");
    expect_error(ONE("INT64", "[1]", "[1e3]"), "integer");
    expect_error(ONE("INT64", "[1]", "[9223372036854775808]"), "range");
    expect_error(ONE("INT64", "[1]", "[123456789012345678901]"), "range");
    /* Integers are also kept exactly (entity ids for a feature lookup), JSON nested or binary;
     * float inputs have none. */
    const char *ids = ONE("INT64", "[2, 2]",
                          "[[9007199254740993, -9223372036854775808], [7, 9223372036854775807]]");
    kl__infer_request q;
    kl_error err = {0};
    CHECK_OK(kl__infer_parse(ids, strlen(ids), strlen(ids), &q, &err), &err);
    if (CHECK(q.ninputs == 1 && q.inputs[0].ints != NULL))
        CHECK(q.inputs[0].ints[0] == 9007199254740993LL && q.inputs[0].ints[1] == INT64_MIN &&
              q.inputs[0].ints[2] == 7 && q.inputs[0].ints[3] == INT64_MAX);
    kl__infer_request_free(&q);
    const char *fl = ONE("FP32", "[1]", "[7]");
    CHECK_OK(kl__infer_parse(fl, strlen(fl), strlen(fl), &q, &err), &err);
    CHECK(q.ninputs == 1 && q.inputs[0].ints == NULL);
    kl__infer_request_free(&q);
    int32_t raw[3] = {-5, 0, 2147483647};
    size_t len = 0;
    char *bin = binary_body("{\"inputs\": [{\"name\": \"id\", \"datatype\": \"INT32\", "
                            "\"shape\": [3], \"parameters\": {\"binary_data_size\": 12}}]}",
                            raw, sizeof raw, &len);
    CHECK_OK(kl__infer_parse(bin, len, len - sizeof raw, &q, &err), &err);
    if (CHECK(q.ninputs == 1 && q.inputs[0].ints != NULL))
        CHECK(q.inputs[0].ints[0] == -5 && q.inputs[0].ints[2] == 2147483647);
    kl__infer_request_free(&q);
    free(bin);
}

/* A request body: the JSON header, then n bytes, then the NUL kl__infer_parse wants at len. */
static char *binary_body(const char *header, const void *bytes, size_t n, size_t *len)
{
    size_t h = strlen(header);
    char *b = malloc(h + n + 1);
    if (!b)
        exit(1);
    memcpy(b, header, h);
    memcpy(b + h, bytes, n);
    b[h + n] = '\0';
    *len = h + n;
    return b;
}

static void test_binary(void)
{
    static const char header[] =
        "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FP32\", \"shape\": [3], "
        "\"parameters\": {\"binary_data_size\": 12}}, {\"name\": \"b\", \"datatype\": \"INT64\", "
        "\"shape\": [1, 2], \"parameters\": {\"binary_data_size\": 16}}, {\"name\": \"c\", "
        "\"datatype\": \"FP32\", \"shape\": [1], \"data\": [0.5]}]}";
    const float a[3] = {1.25f, -0.0f, 3e-40f};
    const int64_t b[2] = {-5, (int64_t)1 << 40};
    unsigned char bytes[29];
    memcpy(bytes, a, 12);
    memcpy(bytes + 12, b, 16);
    bytes[28] = 0xab;
    size_t len;
    char *body = binary_body(header, bytes, 28, &len);
    kl_error err = {0};
    kl__infer_request req;
    CHECK_OK(kl__infer_parse(body, len, strlen(header), &req, &err), &err);
    CHECK(req.ninputs == 3);
    if (req.ninputs == 3) {
        CHECK(req.inputs[0].count == 3 && same_bits(req.inputs[0].data, a, 3));
        CHECK(req.inputs[1].count == 2 && req.inputs[1].rank == 2);
        CHECK(req.inputs[1].data[0] == -5.0f && req.inputs[1].data[1] == 1099511627776.0f);
        CHECK(req.inputs[2].count == 1 && req.inputs[2].data[0] == 0.5f);
    }
    kl__infer_request_free(&req);
    free(body);

    body = binary_body(header, bytes, 24, &len); /* 4 bytes short */
    expect_error_(body, len, strlen(header), "truncated", NULL, __LINE__);
    free(body);
    body = binary_body(header, bytes, 29, &len); /* 1 byte over */
    expect_error_(body, len, strlen(header), "binary data", NULL, __LINE__);
    expect_error_(body, len, len + 1, "Inference-Header-Content-Length", NULL, __LINE__);
    free(body);

    static const char both[] = "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FP32\", "
                               "\"shape\": [1], \"data\": [1], "
                               "\"parameters\": {\"binary_data_size\": 4}}]}";
    body = binary_body(both, bytes, 4, &len);
    expect_error_(body, len, strlen(both), "both", NULL, __LINE__);
    free(body);
    static const char wrong_size[] = "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FP64\", "
                                     "\"shape\": [2], \"parameters\": {\"binary_data_size\": 8}}]}";
    body = binary_body(wrong_size, bytes, 8, &len);
    expect_error_(body, len, strlen(wrong_size), "binary_data_size", NULL, __LINE__);
    free(body);
    static const char huge[] = "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FP32\", \"shape\": "
                               "[1000000000, 1000000000], "
                               "\"parameters\": {\"binary_data_size\": 4000000000000000000}}]}";
    body = binary_body(huge, bytes, 8, &len);
    expect_error_(body, len, strlen(huge), "more than the request holds", NULL, __LINE__);
    free(body);
}

static void test_document_errors(void)
{
    expect_error("{\"inputs\": [", "malformed");
    expect_error("", "malformed");
    expect_error("[1, 2]", "object");
    expect_error("{\"id\": \"a\"}", "inputs");
    expect_error("{\"inputs\": []}", "inputs");
    expect_error("{\"inputs\": {\"name\": \"x\"}}", "inputs");
    text many = {0};
    text_add(&many, "{\"inputs\": [");
    for (int i = 0; i <= KL__INFER_MAX_INPUTS; i++)
        text_add(&many,
                 "%s{\"name\": \"x%d\", \"datatype\": \"FP32\", \"shape\": [1], "
                 "\"data\": [1]}",
                 i ? ", " : "", i);
    text_add(&many, "]}");
    expect_error(many.p, "at most 16");
    free(many.p);
    expect_error("{\"inputs\": [{\"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}]}", "name");
    expect_error("{\"inputs\": [{\"name\": 7, \"datatype\": \"FP32\", \"shape\": [1], "
                 "\"data\": [1]}]}",
                 "name");
    expect_error("{\"inputs\": [{\"name\": \"x\", \"shape\": [1], \"data\": [1]}]}", "datatype");
    expect_error(ONE("FP16", "[1]", "[1]"), "FP16");
    expect_error("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"data\": [1]}]}",
                 "shape");
    expect_error(ONE("FP32", "[]", "[]"), "shape");
    expect_error(ONE("FP32", "[-1]", "[1]"), "non-negative");
    expect_error(ONE("FP32", "[1.0]", "[1]"), "integer");
    expect_error(ONE("FP32", "[\"1\"]", "[1]"), "integer");
    expect_error(ONE("FP32", "[1, 1, 1, 1, 1, 1, 1, 1, 1]", "[1]"), "dimensions");
    expect_error(ONE("FP32", "[1000000000, 1000000000, 1000000000]", "[1]"), "overflows");
    expect_error(ONE("FP32", "[1000000000, 1000000000]", "[1, 2]"), "more than the request");
    expect_error("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1]}]}",
                 "no data");
    expect_error("{\"id\": 7, " ONE_MEMBERS("FP32", "[1]", "[1]") "}", "id");
    expect_error("{\"id\": \"a\", \"id\": \"b\", " ONE_MEMBERS("FP32", "[1]", "[1]") "}",
                 "duplicate");
    expect_error("{\"inputs\": [{\"name\": \"x\", \"name\": \"y\", \"datatype\": \"FP32\", "
                 "\"shape\": [1], \"data\": [1]}]}",
                 "duplicate");
    expect_error("{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [1], "
                 "\"data\": [1], \"data\": [2]}]}",
                 "duplicate");
    expect_error("{\"outputs\": {\"name\": \"y\"}, " ONE_MEMBERS("FP32", "[1]", "[1]") "}",
                 "outputs");
    expect_error("{\"outputs\": [{\"binary\": 1}], " ONE_MEMBERS("FP32", "[1]", "[1]") "}",
                 "outputs");
    expect_error("{\"parameters\": [], " ONE_MEMBERS("FP32", "[1]", "[1]") "}", "parameters");
    expect_error(ONE("FP32", "[1]", "[1]") " x", "malformed");
    /* Deeper than jansson reads: refused by it, after a scan that goes as deep without harm. */
    text deep = {0};
    text_add(&deep, "{\"parameters\": {\"deep\": ");
    for (int i = 0; i < 2500; i++)
        text_add(&deep, "[");
    for (int i = 0; i < 2500; i++)
        text_add(&deep, "]");
    text_add(&deep, "}, %s}", ONE_MEMBERS("FP32", "[1]", "[1]"));
    expect_error(deep.p, "depth");
    free(deep.p);

    /* A caller without a kl_error still gets the status. */
    kl__infer_request req;
    CHECK(parse_str(ONE("FP32", "[2]", "[1, \"a\"]"), &req, NULL) == KL_EINVAL);
    kl__infer_request_free(&req);
}

static void test_data_errors(void)
{
    expect_error(ONE("FP32", "[2]", "[1, 2, 3]"), "more elements");
    expect_error(ONE("FP32", "[2, 2]", "[[1, 2], [3]]"), "elements");
    expect_error(ONE("FP32", "[2]", "[1]"), "elements");
    expect_error(ONE("FP32", "[2]", "[1, \"2\"]"), "not a number");
    expect_error(ONE("FP32", "[2]", "[1, null]"), "not a number");
    expect_error(ONE("FP32", "[2]", "[true, 1]"), "not a number");
    expect_error(ONE("FP32", "[2]", "[1, 2, ]"), "not a number");
    expect_error(ONE("FP32", "[2]", "[, 1, 2]"), "not a number");
    expect_error(ONE("FP32", "[2]", "[01, 2]"), "expected");
    expect_bad_token(ONE("FP32", "[1]", "[NaN]"));
    expect_bad_token(ONE("FP32", "[1]", "[Infinity]"));
    expect_bad_token(ONE("FP32", "[1]", "[-Infinity]"));
    expect_error(ONE("FP32", "[1]", "[+1]"), "not a number");
    expect_error(ONE("FP32", "[1]", "[.5]"), "not a number");
    expect_error(ONE("FP32", "[1]", "[1.]"), "not a number");
    expect_error(ONE("FP32", "[1]", "[1e]"), "not a number");
    expect_error(ONE("FP32", "[1]", "[-]"), "not a number");
    expect_error(ONE("FP32", "[1]", "[0x10]"), "expected");
    expect_error(ONE("FP32", "[2]", "[1 2]"), "expected");
    expect_error(ONE("FP32", "[1]", "1"), "array");
    expect_error(ONE("FP32", "[1]", "{\"a\": 1}"), "array");
    expect_error(ONE("FP32", "[1]", "[[[[[[[[[1]]]]]]]]]"), "too deep");
    expect_floats(ONE("FP32", "[1]", "[[[[[[[[1]]]]]]]]"), 1.0f);

    /* The reader on its own: text after the array, blanks around it, a text cut short. */
    float out[2];
    kl_error err = {0};
    CHECK(kl__read_numbers("[1, 2] x", 8, KL__DT_FP32, out, 2, &err) == KL_EINVAL &&
          strstr(err.msg, "after the array"));
    CHECK(kl__read_numbers(" [1, 2]\n", 8, KL__DT_FP32, out, 2, &err) == KL_OK && out[1] == 2);
    CHECK(kl__read_numbers("[1, 2]", 5, KL__DT_FP32, out, 2, &err) == KL_EINVAL);
    CHECK(kl__read_numbers("[1, 2.5]", 7, KL__DT_FP32, out, 2, &err) == KL_EINVAL);
    CHECK(kl__read_numbers("", 0, KL__DT_FP32, out, 0, &err) == KL_EINVAL);
    CHECK(kl__read_numbers("[]", 2, KL__DT_INT64, NULL, 0, &err) == KL_OK);
}

/* An empty batch is the server's to refuse, not the parser's. */
static void test_empty_batch(void)
{
    kl_error err = {0};
    kl__infer_request req;
    CHECK_OK(parse_str(ONE("FP32", "[0, 784]", "[]"), &req, &err), &err);
    CHECK(req.ninputs == 1 && req.inputs[0].count == 0 && req.inputs[0].rank == 2);
    CHECK(req.ninputs == 1 && req.inputs[0].shape[0] == 0 && req.inputs[0].shape[1] == 784);
    kl__infer_request_free(&req);
    CHECK(kl__dtype_parse("INT64") == KL__DT_INT64 && kl__dtype_parse("fp32") == -1);
    CHECK(strcmp(kl__dtype_name(KL__DT_FP64), "FP64") == 0);
}

static const check_case cases[] = {
    CHECK_CASE(test_flat_and_nested),  CHECK_CASE(test_exact_rounding),
    CHECK_CASE(test_integer_and_fp64), CHECK_CASE(test_binary),
    CHECK_CASE(test_document_errors),  CHECK_CASE(test_data_errors),
    CHECK_CASE(test_empty_batch),
};

int main(int argc, char **argv)
{
    return check_run("test_serve_infer", cases, CHECK_NCASES(cases), argc, argv);
}
