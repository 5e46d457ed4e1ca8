/* Private to serve/: the Open Inference Protocol v2 inference request as kiln reads it,
 * from JSON (flat or nested data) or Triton's binary tensor extension, into FP32 tensors; and the
 * fast number-array reader that keeps JSON parsing off the critical path. The server
 * (serve/http/request.c) and the fuzz target (tests/fuzz/fuzz_infer.c) call it. */
#ifndef KILN_SERVE_INFER_H
#define KILN_SERVE_INFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/status.h"

#define KL__INFER_MAX_RANK    8
#define KL__INFER_MAX_INPUTS  16
#define KL__INFER_MAX_OUTPUTS 16

/* Input datatypes a request may use; kiln's models compute in FP32, so all are converted. */
typedef enum kl__dtype { KL__DT_FP32, KL__DT_FP64, KL__DT_INT32, KL__DT_INT64 } kl__dtype;

typedef struct kl__infer_input {
    char *name;
    kl__dtype dtype;
    int rank;
    int64_t shape[KL__INFER_MAX_RANK];
    int64_t count; /* the product of shape */
    float *data;   /* (count), converted to FP32 */
    int64_t *ints; /* (count) INT32 and INT64 inputs exactly (entity ids), else NULL */
} kl__infer_input;

typedef struct kl__infer_output {
    char *name;
    bool binary; /* parameters.binary_data */
} kl__infer_output;

typedef struct kl__infer_request {
    char *id; /* NULL when the client sent none */
    int ninputs;
    kl__infer_input *inputs;
    int noutputs;              /* 0: the client asked for none by name, so every output */
    kl__infer_output *outputs; /* (noutputs) */
    bool binary_all;           /* parameters.binary_data_output */
    bool members;              /* parameters.members: an ensemble answers each member's output */
} kl__infer_request;

/* Parses a request body of len bytes: the first json_len bytes are the JSON document, the rest
 * (json_len < len: the binary extension, whose Inference-Header-Content-Length json_len is) the
 * inputs' bytes in order. body[len] must be a NUL byte (numbers fall back to strtof). Fills *req
 * (free it with kl__infer_request_free, also after an error). A malformed request is KL_EINVAL with
 * a message for the client; KL_ENOMEM otherwise. */
kl_status kl__infer_parse(const char *body, size_t len, size_t json_len, kl__infer_request *req,
                          kl_error *err);
void kl__infer_request_free(kl__infer_request *req);
/* What the server decodes a request with: kl__infer_parse, then the one finiteness check of the
 * request's values (a NaN or an infinity is KL_EINVAL naming the input, sample and value).
 * Every stage of the server after it relies on the inputs being finite and does not check
 * again. (The model file's reader, below serving, keeps its own guard for kiln predict and other
 * callers: fused into the copy that standardises a batch, it costs no pass, and a served request
 * never reaches it with a NaN.) */
kl_status kl__infer_decode(const char *body, size_t len, size_t json_len, kl__infer_request *req,
                           kl_error *err);

/* Reads a JSON array of numbers, possibly nested ([1, 2] or [[1], [2]]), of exactly count
 * elements, from s[0, n) into out as FP32: correctly rounded for FP32 text (Clinger's fast path
 * with an exactness check, strtof otherwise), exact integers for INT32/INT64. KL_EINVAL names
 * the element that is wrong. */
kl_status kl__read_numbers(const char *s, size_t n, kl__dtype dt, float *out, int64_t count,
                           kl_error *err);

/* "FP32" and so on; -1 for a name kiln does not take. */
int kl__dtype_parse(const char *name);
/* The name of dt: inline, so that the patterns, which read decoded requests but call nothing in
 * the codec, can name a tensor's type. */
static inline const char *kl__dtype_name(kl__dtype dt)
{
    static const char *const names[] = {"FP32", "FP64", "INT32", "INT64"};
    return names[dt];
}

#endif
