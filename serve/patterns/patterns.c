/* From a request to a model's input when its config.yaml puts something in between: a feature
 * lookup (the request names entities by id, their rows come from the table), pre steps (which
 * may change the width), and the checks every inference request gets (one input of the right
 * name, a batch axis, the per-sample width the model takes, the batch size, finite values). A
 * model without patterns takes the request's data as it is (infer_route.c's check_input). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve/codec/decode.h"
#include "serve/patterns/composite.h"

bool kl__patterned(const kl__version *v)
{
    const kl__patterns *p = v->pat;
    return p && (p->comp || p->lookup || p->pre.n > 0);
}

/* The input a patterned model takes: "id" with a lookup, else the model's input name. */
static const char *input_name(const kl__version *v)
{
    return v->pat->lookup ? "id" : v->sig->input_name;
}

kl_status kl__patterns_input(const kl__version *v, const kl__infer_request *q, float **out,
                             int64_t *nout, kl_error *err)
{
    const kl__patterns *p = v->pat;
    const char *name = input_name(v);
    *out = NULL;
    if (q->ninputs != 1 || strcmp(q->inputs[0].name, name))
        return kl_error_set(err, KL_EINVAL, "model %s takes one input, '%s'%s; the request has %d",
                            v->model->name, name,
                            p->lookup ? " (INT32 or INT64 entity ids, shape [n])" : "", q->ninputs);
    const kl__infer_input *x = &q->inputs[0];
    int64_t n = x->shape[0], per = 1;
    for (int d = 1; d < x->rank; d++)
        per *= x->shape[d];
    if (n < 1)
        return kl_error_set(err, KL_EINVAL, "input '%s' holds no samples (shape[0] is 0)", x->name);
    if (n > v->cfg.max_batch_size)
        return kl_error_set(err, KL_EINVAL,
                            "a request of %lld samples is larger than model %s's max_batch_size "
                            "%d: split it",
                            (long long)n, v->model->name, v->cfg.max_batch_size);
    float *data = NULL;
    int64_t w = per;
    kl_status st = KL_OK;
    if (p->lookup) {
        if (!x->ints || per != 1)
            return kl_error_set(err, KL_EINVAL,
                                "input 'id' holds entity ids: INT32 or INT64, shape [n] or [n, 1]");
        if ((st = kl__lookup_rows(p->lookup, x->ints, n, &data, &w, err)) != KL_OK)
            return st;
    } else {
        if (x->rank < 2)
            return kl_error_set(err, KL_EINVAL,
                                "input '%s' needs a batch axis first: shape [n, values...]",
                                x->name);
        if (!(data = malloc((size_t)(n * w) * sizeof *data)))
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        memcpy(data, x->data, (size_t)(n * w) * sizeof *data);
    }
    /* The pre steps, and the width they must leave. */
    kl_error werr = {0};
    int64_t after = kl__steps_width(&p->pre, 0, p->pre.n, w, &werr);
    if (after < 0 || after != v->sig->features) {
        free(data);
        if (after < 0)
            return kl_error_set(err, KL_EINVAL, "input '%s' has %lld values per sample: %s",
                                x->name, (long long)w, werr.msg);
        return kl_error_set(err, KL_EINVAL,
                            "input '%s' has %lld values per sample%s, which make %lld after the "
                            "pre steps; model %s takes %lld",
                            x->name, (long long)w, p->lookup ? " (from the feature table)" : "",
                            (long long)after, v->model->name, (long long)v->sig->features);
    }
    if (p->pre.n) {
        float *y = NULL;
        st = kl__steps_apply(&p->pre, 0, p->pre.n, data, n, w, &y, &after, err);
        free(data);
        data = y;
    }
    if (st != KL_OK)
        return st;
    /* A table's values, or a scale step, can still make what the model gets not finite. */
    for (int64_t i = 0; i < n * after; i++)
        if (!isfinite(data[i])) {
            bool nan = isnan(data[i]);
            free(data);
            return kl_error_set(err, KL_EINVAL,
                                "sample %lld, value %lld is %s after the %s: the model takes "
                                "finite numbers",
                                (long long)(i / after), (long long)(i % after),
                                nan ? "NaN" : "infinite",
                                p->pre.n ? "pre steps" : "feature lookup");
        }
    *out = data;
    *nout = n;
    return KL_OK;
}

kl_status kl__patterns_flow(kl_server *s, kl__version *v, kl__flow *f, float *x, int64_t n,
                            kl_error *err)
{
    const kl__composite *c = v->pat->comp;
    kl_status st = kl__flow_resolve(s, c, f->members, &f->shape, err);
    if (st != KL_OK) {
        free(x);
        return st;
    }
    /* The members may have been reloaded since the composite was: their shapes now rule. */
    if (f->shape.input.features != v->sig->features || f->shape.width != v->sig->outputs) {
        kl__flow_release(f->members, c->kind == KL__COMP_ENSEMBLE ? c->nmembers : c->nstages);
        memset(f->members, 0, sizeof f->members);
        free(x);
        return kl_error_set(err, KL_EIO,
                            "model %s's members changed shape since it was loaded: reload it "
                            "(POST /v2/repository/models/%s/load)",
                            v->model->name, v->model->name);
    }
    for (int i = 0; i < KL__FLOW_MAX_MEMBERS; i++)
        if (f->members[i] && n > f->members[i]->cfg.max_batch_size) {
            int64_t mb = f->members[i]->cfg.max_batch_size;
            kl__flow_release(f->members, c->kind == KL__COMP_ENSEMBLE ? c->nmembers : c->nstages);
            memset(f->members, 0, sizeof f->members);
            free(x);
            return kl_error_set(err, KL_EINVAL,
                                "a request of %lld samples is larger than member %s's "
                                "max_batch_size %lld: split it",
                                (long long)n,
                                c->kind == KL__COMP_ENSEMBLE ? c->members[i] : c->stages[i].model,
                                (long long)mb);
        }
    f->c = c;
    f->cur = x;
    f->n = n;
    f->w = v->sig->features;
    return kl__flow_start(f, err);
}
