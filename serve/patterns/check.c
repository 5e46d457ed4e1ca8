/* A decoded input tensor against the version it is sent to: its shape, and its sample count
 * within the model's max_batch_size. The inference route, the patterns and online learning check
 * a model's input with it; it is the patterns' because they decide what a model's input is.
 * Its values are finite already: the decoder refused any other. */
#include <stdio.h>

#include "serve/codec/decode.h"
#include "serve/patterns/composite.h"

/* "[-1,d1,d2...]": the input shape a model takes, for messages. */
void kl__want_shape(const kl_modelfile_signature *sig, char *want, size_t size)
{
    int n = snprintf(want, size, "[-1");
    for (int d = 0; d < sig->input.ndim && n < (int)size - 24; d++)
        n += snprintf(want + n, size - (size_t)n, ",%lld", (long long)sig->input.d[d]);
    snprintf(want + n, size - (size_t)n, "]");
}

kl_status kl__check_input(const kl__version *v, const kl__infer_input *x, kl_error *err)
{
    const kl_modelfile_signature *sig = v->sig;
    char want[128];
    kl__want_shape(sig, want, sizeof want);
    int64_t per = 1;
    for (int d = 1; d < x->rank; d++)
        per *= x->shape[d];
    if (x->rank < 2 || per != sig->features)
        return kl_error_set(err, KL_EINVAL,
                            "input '%s' has shape of rank %d with %lld values per sample; model "
                            "%s takes %s (a batch axis first, then %lld values per sample)",
                            x->name, x->rank, (long long)(x->rank < 2 ? x->count : per),
                            v->model->name, want, (long long)sig->features);
    if (x->shape[0] < 1)
        return kl_error_set(err, KL_EINVAL, "input '%s' holds no samples (shape[0] is 0)", x->name);
    if (x->shape[0] > v->cfg.max_batch_size)
        return kl_error_set(err, KL_EINVAL,
                            "a request of %lld samples is larger than model %s's max_batch_size "
                            "%d: split it",
                            (long long)x->shape[0], v->model->name, v->cfg.max_batch_size);
    return KL_OK;
}
