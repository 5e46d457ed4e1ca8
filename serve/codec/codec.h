/* Private to serve/: the codec's answers (serve/codec/respond.c). The request decoder itself is
 * serve/codec/decode.h, which the fuzz target builds alone. */
#ifndef KILN_SERVE_CODEC_H
#define KILN_SERVE_CODEC_H

#include "serve/codec/decode.h"
#include "serve/patterns/flow.h"
#include "serve/serve_impl.h"

struct kl__infer_request;
/* The inference answer for req's job on version v: JSON, or a JSON header and binary data
 * (*header_len < b->n) when the client asked for binary outputs. KL_EINVAL for an unknown
 * output name. */
kl_status kl__respond_infer(const kl__version *v, const struct kl__infer_request *req,
                            const kl__job *job, kl__buf *b, size_t *header_len, kl_error *err);
/* KL_EINVAL when req asks for an output the model does not have. */
kl_status kl__respond_check_outputs(const kl__version *v, const struct kl__infer_request *req,
                                    kl_error *err);
/* The answer from a model's scores (n, outputs), labels (n) and class names: the model's
 * outputs and its post steps'. */
kl_status kl__respond_scores(const kl__version *v, const struct kl__infer_request *req,
                             const float *scores, const int32_t *classes, int64_t n,
                             const kl_modelfile *names, const kl__result *extra, kl__buf *b,
                             size_t *header_len, kl_error *err);
kl_status kl__respond_result(const kl__version *v, const struct kl__infer_request *req,
                             const kl__result *res, kl__buf *b, size_t *header_len, kl_error *err);
void kl__respond_model_metadata(const kl__model *m, const kl__version *v, kl__buf *b);
void kl__respond_stats(kl__version *const *vs, int n, kl__buf *b);
void kl__respond_index(kl_server *s, kl__buf *b);

#endif
