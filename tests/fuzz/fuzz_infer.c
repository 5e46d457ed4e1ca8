/* A libFuzzer target for the inference-request parser (serve/codec/decode.c), which reads bytes
 * straight from HTTP clients: kl__infer_parse on the input as a pure JSON body or as a JSON header
 * followed by Triton's binary tensor data, and kl__read_numbers on the same bytes for every
 * datatype. Besides what the sanitizers catch, it traps when a parsed request breaks the
 * invariants the server relies on. tests/fuzz/run.sh builds and runs it. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/codec/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the server takes for granted in a request that parsed: every input named, a rank it can
 * index with, count the product of the shape, and count floats readable. */
static void check_request(const kl__infer_request *req)
{
    if (req->ninputs < 1 || req->ninputs > KL__INFER_MAX_INPUTS || !req->inputs)
        __builtin_trap();
    for (int i = 0; i < req->ninputs; i++) {
        const kl__infer_input *x = &req->inputs[i];
        int64_t count = 1;
        if (!x->name || !x->data || x->rank < 1 || x->rank > KL__INFER_MAX_RANK)
            __builtin_trap();
        for (int d = 0; d < x->rank; d++)
            count *= x->shape[d];
        if (count != x->count)
            __builtin_trap();
        volatile float sink = 0;
        for (int64_t k = 0; k < x->count; k++)
            sink += x->data[k];
        (void)sink;
    }
    if (req->noutputs < 0 || req->noutputs > KL__INFER_MAX_OUTPUTS)
        __builtin_trap();
    for (int i = 0; i < req->noutputs; i++)
        if (!req->outputs[i].name)
            __builtin_trap();
}

static void fuzz_parse(const char *body, size_t len, size_t json_len)
{
    kl__infer_request req;
    kl_error err = {0};
    kl_status st = kl__infer_parse(body, len, json_len, &req, &err);
    if (st == KL_OK)
        check_request(&req);
    else if ((st != KL_EINVAL && st != KL_ENOMEM) || err.status != st || !err.msg[0])
        __builtin_trap();
    kl__infer_request_free(&req);
}

/* The reader on its own, for each datatype: with room for as many numbers as the text could hold,
 * and with a small count taken from the last byte. A text the reader takes as FP32 must give the
 * same floats inside a whole request. */
static void fuzz_numbers(const char *s, size_t n)
{
    int64_t counts[2] = {(int64_t)(n / 2 + 1), n ? (int64_t)((unsigned char)s[n - 1] % 8) : 0};
    for (int c = 0; c < 2; c++) {
        float *out = malloc((size_t)(counts[c] ? counts[c] : 1) * sizeof *out);
        if (!out)
            return;
        for (int dt = KL__DT_FP32; dt <= KL__DT_INT64; dt++) {
            kl_error err = {0};
            kl_status st = kl__read_numbers(s, n, (kl__dtype)dt, out, counts[c], &err);
            if (st != KL_OK && (st != KL_EINVAL || !err.msg[0]))
                __builtin_trap();
            if (st != KL_OK || dt != KL__DT_FP32 || c != 1 || memchr(s, '\0', n))
                continue;
            char *doc = malloc(n + 128);
            if (!doc)
                break;
            int m = snprintf(doc, n + 128,
                             "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", "
                             "\"shape\": [%lld], \"data\": %s}]}",
                             (long long)counts[c], s);
            kl__infer_request req;
            if (kl__infer_parse(doc, (size_t)m, (size_t)m, &req, &err) != KL_OK ||
                req.inputs[0].count != counts[c] ||
                (counts[c] && memcmp(req.inputs[0].data, out, (size_t)counts[c] * sizeof *out)))
                __builtin_trap();
            kl__infer_request_free(&req);
            free(doc);
        }
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A first byte with its top bit set makes the first two bytes a prefix: json_len is their
     * low 15 bits, taken modulo len + 2, so that it lands inside the body, at its end, or one past
     * it. Other inputs (every plain JSON text) are a pure JSON body. */
    bool prefix = size >= 2 && (data[0] & 0x80);
    size_t len = prefix ? size - 2 : size;
    size_t json_len = prefix ? ((size_t)(data[0] & 0x7f) << 8 | data[1]) % (len + 2) : len;
    char *body = malloc(len + 1);
    if (!body)
        return 0;
    memcpy(body, data + (prefix ? 2 : 0), len);
    body[len] = '\0';
    fuzz_parse(body, len, json_len);
    fuzz_numbers(body, len);
    free(body);
    return 0;
}
