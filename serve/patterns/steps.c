/* Business logic inside the server: the steps a model's config.yaml puts before a model (pre),
 * between the models of a pipeline, and after the last model (post, which add outputs), and the
 * named output tensors an answer is built from. The standardisation with the training
 * statistics is not a step: every kiln model file carries its own and applies it in the model
 * call, so training, `kiln predict` and serving cannot disagree on it. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/modelfile.h"
#include "runtime/schema.h"
#include "serve/patterns/flow.h"

/* ---- results ---- */

kl__output *kl__result_add(kl__result *r, const char *name, kl__odt dt, int64_t n, int64_t k)
{
    if (r->n >= KL__MAX_OUTPUTS)
        return NULL;
    kl__output *o = &r->out[r->n];
    *o = (kl__output){.dtype = dt, .n = n, .k = k};
    snprintf(o->name, sizeof o->name, "%s", name);
    size_t cnt = (size_t)(n * (k > 0 ? k : 1));
    if (dt == KL__O_FP32)
        o->f = malloc((cnt ? cnt : 1) * sizeof *o->f);
    else if (dt == KL__O_INT32)
        o->i = malloc((cnt ? cnt : 1) * sizeof *o->i);
    else
        o->s = calloc(cnt ? cnt : 1, sizeof *o->s);
    if (!o->f && !o->i && !o->s)
        return NULL;
    r->n++;
    return o;
}

void kl__result_free(kl__result *r)
{
    for (int i = 0; i < r->n; i++) {
        free(r->out[i].f);
        free(r->out[i].i);
        free((void *)r->out[i].s);
    }
    r->n = 0;
}

static const char *class_name(const kl_modelfile *names, int32_t k)
{
    const char *l = names ? kl_modelfile_label(names, k) : NULL;
    return l ? l : "";
}

kl_status kl__result_model(kl__result *r, const char *name, bool classify, const float *scores,
                           const int32_t *classes, int64_t n, int64_t k, const kl_modelfile *names,
                           kl_error *err)
{
    kl__output *o = kl__result_add(r, name, KL__O_FP32, n, k);
    if (!o)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    memcpy(o->f, scores, (size_t)(n * k) * sizeof *o->f);
    if (!classify)
        return KL_OK;
    kl__output *l = kl__result_add(r, "label", KL__O_INT32, n, 0);
    kl__output *ln = l ? kl__result_add(r, "label_name", KL__O_BYTES, n, 0) : NULL;
    if (!ln)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) {
        l->i[i] = classes[i];
        ln->s[i] = class_name(names, classes[i]);
    }
    return KL_OK;
}

/* ---- reading steps ---- */

static const char *const step_names[] = {"clip",   "scale",     "one_hot",
                                         "argmax", "threshold", "top_k"};
enum { NSTEPS = sizeof step_names / sizeof *step_names };

/* Step arguments: floats within float range, integers within [lo, hi] (a column past 65535 or
 * a k past 1024 is a typo, and would not fit the int it is kept in). */
#define MAX_COLUMN  65535
#define MAX_CLASSES 65536
#define MAX_K       1024

static kl_status num_arg(const kl__ynode *map, const char *key, bool need, bool integer, double lo,
                         double hi, double def, double *out, kl_error *err)
{
    const kl__ynode *v = kl__ynode_get(map, key);
    *out = def;
    if (!v)
        return need ? kl__yaml_error(err, KL_EINVAL, map->pos, "", "%s is required", key) : KL_OK;
    char *end = NULL;
    double x = v->type == KL__YN_SCALAR && v->plain ? strtod(v->str, &end) : NAN;
    if (!end || *end || !isfinite(x) || x < lo || x > hi || (integer && x != floor(x))) {
        if (integer)
            return kl__yaml_error(err, KL_EINVAL, v->pos, key, "expected an integer in [%g, %g]",
                                  lo, hi);
        return kl__yaml_error(err, KL_EINVAL, v->pos, key, "expected a number within float range");
    }
    *out = x;
    return KL_OK;
}

/* A step's arguments: no key twice, none it does not take. */
static kl_status check_keys(const kl__ynode *map, const char *const *keys, int n, kl_error *err)
{
    if (map && n == 0 && map->n > 0)
        return kl__yaml_error(err, KL_EINVAL, map->items[0]->key_pos, map->items[0]->key,
                              "this step takes no arguments");
    return map ? kl__check_keys(map, keys, n, "", err) : KL_OK;
}

/* One step: a mapping of one key, the step's name, to its arguments. */
static kl_status read_step(const kl__ynode *node, const char *where, kl__step *s, kl_error *err)
{
    if (node->type != KL__YN_MAP || node->n != 1)
        return kl__yaml_error(err, KL_EINVAL, node->pos, where,
                              "a step is one key, its name, e.g. `- clip: {min: 0, max: 1}`");
    const kl__ynode *args = node->items[0];
    const char *name = args->key;
    int kind = -1;
    for (int i = 0; i < NSTEPS; i++)
        if (!strcmp(name, step_names[i]))
            kind = i;
    if (kind < 0) {
        const char *near = kl__suggest(name, step_names, NSTEPS);
        return kl__yaml_error(err, KL_EINVAL, args->key_pos, where,
                              "unknown step '%s'%s%s%s (steps: clip, scale, one_hot, argmax, "
                              "threshold, top_k; the standardisation is the model's own)",
                              name, near ? "; did you mean '" : "", near ? near : "",
                              near ? "'?" : "");
    }
    if (!(args->type == KL__YN_MAP || kl__ynode_is_empty(args)))
        return kl__yaml_error(err, KL_EINVAL, args->pos, name,
                              "expected a mapping of arguments (`{}` for none)");
    bool post = !strcmp(where, "post");
    if (kind == KL__STEP_TOP_K && !post)
        return kl__yaml_error(err, KL_EINVAL, args->key_pos, where,
                              "top_k adds outputs, so it is a post step");
    if (post && kind != KL__STEP_TOP_K && kind != KL__STEP_THRESHOLD)
        return kl__yaml_error(err, KL_EINVAL, args->key_pos, where,
                              "%s transforms inputs; post steps add outputs (threshold, "
                              "top_k; the label output is the argmax already)",
                              name);
    *s = (kl__step){
        .kind = (kl__step_kind)kind, .line = args->key_pos.line, .col = args->key_pos.col};
    const kl__ynode *m = args->type == KL__YN_MAP ? args : NULL;
    double a = 0, b = 0, c = 0;
    kl_status st = KL_OK;
    switch (s->kind) {
    case KL__STEP_CLIP: {
        static const char *const k[] = {"min", "max"};
        if ((st = check_keys(m, k, 2, err)) == KL_OK &&
            (st = num_arg(m ? m : args, "min", false, false, -FLT_MAX, FLT_MAX, -INFINITY, &a,
                          err)) == KL_OK &&
            (st = num_arg(m ? m : args, "max", false, false, -FLT_MAX, FLT_MAX, INFINITY, &b,
                          err)) == KL_OK &&
            a > b)
            st = kl__yaml_error(err, KL_EINVAL, args->pos, name, "min %g is above max %g", a, b);
        break;
    }
    case KL__STEP_SCALE: {
        static const char *const k[] = {"factor", "offset"};
        if ((st = check_keys(m, k, 2, err)) == KL_OK &&
            (st = num_arg(m ? m : args, "factor", false, false, -FLT_MAX, FLT_MAX, 1, &a, err)) ==
                KL_OK)
            st = num_arg(m ? m : args, "offset", false, false, -FLT_MAX, FLT_MAX, 0, &b, err);
        break;
    }
    case KL__STEP_ONE_HOT: {
        static const char *const k[] = {"column", "classes"};
        if (!m)
            return kl__yaml_error(err, KL_EINVAL, args->pos, name,
                                  "column and classes are "
                                  "required");
        if ((st = check_keys(m, k, 2, err)) == KL_OK &&
            (st = num_arg(m, "column", true, true, 0, MAX_COLUMN, 0, &c, err)) == KL_OK)
            st = num_arg(m, "classes", true, true, 2, MAX_CLASSES, 2, &b, err);
        s->column = (int)c;
        s->num = (int)b;
        break;
    }
    case KL__STEP_ARGMAX:
        st = check_keys(m, NULL, 0, err);
        break;
    case KL__STEP_THRESHOLD: {
        static const char *const k[] = {"value", "column"};
        if (!m)
            return kl__yaml_error(err, KL_EINVAL, args->pos, name, "value is required");
        if ((st = check_keys(m, k, 2, err)) == KL_OK &&
            (st = num_arg(m, "value", true, false, -FLT_MAX, FLT_MAX, 0, &a, err)) == KL_OK)
            st = num_arg(m, "column", false, true, 0, MAX_COLUMN, 1, &c, err);
        s->column = (int)c;
        break;
    }
    case KL__STEP_TOP_K: {
        static const char *const k[] = {"k"};
        if ((st = check_keys(m, k, 1, err)) == KL_OK)
            st = num_arg(m ? m : args, "k", false, true, 1, MAX_K, 3, &c, err);
        s->num = (int)c;
        break;
    }
    }
    s->a = (float)a;
    s->b = (float)b;
    return st;
}

kl_status kl__steps_read(const kl__ynode *seq, const char *where, kl__steps *out, kl_error *err)
{
    *out = (kl__steps){0};
    if (seq->type != KL__YN_SEQ)
        return kl__yaml_error(err, KL_EINVAL, seq->pos, where, "expected a list of steps");
    if (!(out->v = calloc((size_t)seq->n + 1, sizeof *out->v)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int i = 0; i < seq->n; i++) {
        kl_status st = read_step(seq->items[i], where, &out->v[i], err);
        if (st != KL_OK) {
            kl__steps_free(out);
            return st;
        }
        out->n++;
    }
    return KL_OK;
}

void kl__steps_free(kl__steps *s)
{
    free(s->v);
    *s = (kl__steps){0};
}

/* ---- applying them ---- */

static int64_t step_width(const kl__step *s, int64_t w, kl_error *err)
{
    switch (s->kind) {
    case KL__STEP_ONE_HOT:
        if (s->column >= w)
            break;
        return w - 1 + s->num;
    case KL__STEP_ARGMAX:
        return 1;
    case KL__STEP_THRESHOLD:
        if (s->column >= w)
            break;
        return 1;
    case KL__STEP_TOP_K:
        return w;
    default:
        return w;
    }
    kl_error_set(err, KL_EINVAL, "step %s takes column %d, but its input has %lld per sample",
                 step_names[s->kind], s->column, (long long)w);
    return -1;
}

int64_t kl__steps_width(const kl__steps *s, int from, int to, int64_t w, kl_error *err)
{
    for (int i = from; i < to && w >= 0; i++)
        w = step_width(&s->v[i], w, err);
    return w;
}

/* One step from x (n, w) into y (n, step_width). */
static kl_status step_apply(const kl__step *s, const float *x, int64_t n, int64_t w, float *y,
                            kl_error *err)
{
    for (int64_t r = 0; r < n; r++) {
        const float *in = x + r * w;
        switch (s->kind) {
        case KL__STEP_CLIP:
            for (int64_t j = 0; j < w; j++)
                y[r * w + j] = in[j] < s->a ? s->a : in[j] > s->b ? s->b : in[j];
            break;
        case KL__STEP_SCALE:
            for (int64_t j = 0; j < w; j++)
                y[r * w + j] = in[j] * s->a + s->b;
            break;
        case KL__STEP_ONE_HOT: {
            int64_t wo = w - 1 + s->num;
            float v = in[s->column];
            if (!(v >= 0 && v < (float)s->num && v == floorf(v)))
                return kl_error_set(err, KL_EINVAL,
                                    "one_hot: sample %lld has %g in column %d, not a class in "
                                    "0..%d",
                                    (long long)r, (double)v, s->column, s->num - 1);
            float *o = y + r * wo;
            memcpy(o, in, (size_t)s->column * sizeof *o);
            for (int k = 0; k < s->num; k++)
                o[s->column + k] = k == (int)v ? 1.0f : 0.0f;
            memcpy(o + s->column + s->num, in + s->column + 1,
                   (size_t)(w - s->column - 1) * sizeof *o);
            break;
        }
        case KL__STEP_ARGMAX: {
            int64_t best = 0;
            for (int64_t j = 1; j < w; j++)
                best = in[j] > in[best] ? j : best;
            y[r] = (float)best;
            break;
        }
        case KL__STEP_THRESHOLD:
            y[r] = in[s->column] >= s->a ? 1.0f : 0.0f;
            break;
        case KL__STEP_TOP_K:
            memcpy(y + r * w, in, (size_t)w * sizeof *y);
            break;
        }
    }
    return KL_OK;
}

kl_status kl__steps_apply(const kl__steps *s, int from, int to, const float *x, int64_t n,
                          int64_t w, float **out, int64_t *wout, kl_error *err)
{
    float *cur = malloc((size_t)(n * w > 0 ? n * w : 1) * sizeof *cur);
    if (!cur)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    memcpy(cur, x, (size_t)(n * w) * sizeof *cur);
    for (int i = from; i < to; i++) {
        int64_t w2 = step_width(&s->v[i], w, err);
        float *next = w2 > 0 ? malloc((size_t)(n * w2 > 0 ? n * w2 : 1) * sizeof *next) : NULL;
        kl_status st = w2 < 0  ? KL_EINVAL
                       : !next ? kl_error_set(err, KL_ENOMEM, "out of memory")
                               : step_apply(&s->v[i], cur, n, w, next, err);
        free(cur);
        if (st != KL_OK) {
            free(next);
            return st;
        }
        cur = next;
        w = w2;
    }
    *out = cur;
    *wout = w;
    return KL_OK;
}

kl_status kl__steps_check_post(const kl__steps *s, int64_t k, const char *file, kl_error *err)
{
    for (int i = 0; i < s->n; i++)
        if (s->v[i].kind == KL__STEP_THRESHOLD && s->v[i].column >= k)
            return kl_error_set(err, KL_EINVAL,
                                "%s:%d:%d: post: threshold: column %d, but the model has %lld "
                                "outputs (columns 0..%lld)",
                                file, s->v[i].line, s->v[i].col, s->v[i].column, (long long)k,
                                (long long)k - 1);
    return KL_OK;
}

kl_status kl__steps_outputs(const kl__steps *s, const float *scores, int64_t n, int64_t k,
                            const kl_modelfile *names, kl__result *r, kl_error *err)
{
    for (int i = 0; i < s->n; i++) {
        const kl__step *p = &s->v[i];
        if (p->kind == KL__STEP_THRESHOLD) {
            if (p->column >= k)
                return kl_error_set(err, KL_EINVAL,
                                    "threshold on column %d, but the model has %lld outputs",
                                    p->column, (long long)k);
            kl__output *o = kl__result_add(r, "decision", KL__O_INT32, n, 0);
            if (!o)
                return kl_error_set(err, KL_ENOMEM, "out of memory");
            for (int64_t j = 0; j < n; j++)
                o->i[j] = scores[j * k + p->column] >= p->a;
        } else if (p->kind == KL__STEP_TOP_K) {
            int64_t kk = p->num < k ? p->num : k;
            kl__output *ol = kl__result_add(r, "top_k_labels", KL__O_INT32, n, kk);
            kl__output *os = ol ? kl__result_add(r, "top_k_scores", KL__O_FP32, n, kk) : NULL;
            kl__output *on = os ? kl__result_add(r, "top_k_label_names", KL__O_BYTES, n, kk) : NULL;
            if (!on)
                return kl_error_set(err, KL_ENOMEM, "out of memory");
            for (int64_t j = 0; j < n; j++) {
                const float *row = scores + j * k;
                /* Selection by repeated maximum: k is small. Ties go to the lower class. */
                for (int64_t t = 0; t < kk; t++) {
                    int64_t best = -1;
                    for (int64_t c = 0; c < k; c++) {
                        bool taken = false;
                        for (int64_t u = 0; u < t; u++)
                            taken |= ol->i[j * kk + u] == c;
                        if (!taken && (best < 0 || row[c] > row[best]))
                            best = c;
                    }
                    ol->i[j * kk + t] = (int32_t)best;
                    os->f[j * kk + t] = row[best];
                    on->s[j * kk + t] = class_name(names, (int32_t)best);
                }
            }
        }
    }
    return KL_OK;
}
