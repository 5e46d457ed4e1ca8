/* Pipelines and ensembles: composite models whose stages are other served models, run as jobs on
 * the members' own queues and chained by continuation, so no thread waits for another model
 * (serve/README.md, "Pipelines and ensembles"). Also resolves a composite's members. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/schema.h"
#include "serve/patterns/composite.h"
#include "serve/sched/sched.h"

/* ---- reading ---- */

static kl_status read_pipeline(const kl__ynode *v, kl__composite *c, kl_error *err)
{
    if (v->type != KL__YN_SEQ || v->n == 0)
        return kl__yaml_error(err, KL_EINVAL, v->pos, "pipeline",
                              "expected a list of stages: `- model: NAME` or a step");
    if (!(c->stages = calloc((size_t)v->n, sizeof *c->stages)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    if (v->n > KL__FLOW_MAX_MEMBERS)
        return kl__yaml_error(err, KL_EINVAL, v->pos, "pipeline", "at most %d stages",
                              KL__FLOW_MAX_MEMBERS);
    int models = 0;
    for (int i = 0; i < v->n; i++) {
        const kl__ynode *s = v->items[i];
        const kl__ynode *m = s->type == KL__YN_MAP && s->n == 1 ? kl__ynode_get(s, "model") : NULL;
        kl__stage *st = &c->stages[c->nstages];
        if (m) {
            if (m->type != KL__YN_SCALAR || !kl__serve_name_ok(m->str))
                return kl__yaml_error(err, KL_EINVAL, m->pos, "model",
                                      "expected the name of a model in the repository");
            if (!(st->model = strdup(m->str)))
                return kl_error_set(err, KL_ENOMEM, "out of memory");
            models++;
        } else if (i == 0) {
            return kl__yaml_error(err, KL_EINVAL, s->pos, "pipeline",
                                  "a pipeline starts with a model (`- model: NAME`); steps on "
                                  "the request's inputs go in pre");
        } else {
            /* A step: read it as a one-step list. */
            kl__ynode seq = {.type = KL__YN_SEQ, .pos = s->pos, .items = (kl__ynode **)&s, .n = 1};
            kl__steps one;
            kl_status rs = kl__steps_read(&seq, "pipeline", &one, err);
            if (rs != KL_OK)
                return rs;
            st->step = one.v[0];
            kl__steps_free(&one);
        }
        c->nstages++;
    }
    if (models == 0)
        return kl__yaml_error(err, KL_EINVAL, v->pos, "pipeline", "a pipeline needs a model");
    return KL_OK;
}

static kl_status read_ensemble(const kl__ynode *v, kl__composite *c, kl_error *err)
{
    static const char *const keys[] = {"members", "combine", "weights"};
    if (v->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, v->pos, "ensemble",
                              "expected {members: [A, B], combine: mean|weighted_mean|vote}");
    kl_status st = kl__check_keys(v, keys, 3, "ensemble", err);
    if (st != KL_OK)
        return st;
    const kl__ynode *mem = kl__ynode_get(v, "members"), *comb = kl__ynode_get(v, "combine");
    const kl__ynode *w = kl__ynode_get(v, "weights");
    if (!mem || mem->type != KL__YN_SEQ || mem->n < 2 || mem->n > KL__FLOW_MAX_MEMBERS)
        return kl__yaml_error(err, KL_EINVAL, mem ? mem->pos : v->pos, "ensemble.members",
                              "expected a list of 2 to %d model names", KL__FLOW_MAX_MEMBERS);
    c->combine = KL__COMBINE_MEAN;
    if (comb) {
        const char *n = comb->type == KL__YN_SCALAR ? comb->str : "";
        if (!strcmp(n, "mean"))
            c->combine = KL__COMBINE_MEAN;
        else if (!strcmp(n, "weighted_mean"))
            c->combine = KL__COMBINE_WEIGHTED;
        else if (!strcmp(n, "vote"))
            c->combine = KL__COMBINE_VOTE;
        else
            return kl__yaml_error(err, KL_EINVAL, comb->pos, "ensemble.combine",
                                  "expected mean, weighted_mean or vote");
    }
    if ((c->combine == KL__COMBINE_WEIGHTED) != (w != NULL))
        return kl__yaml_error(err, KL_EINVAL, w ? w->pos : v->pos, "ensemble.weights",
                              "weights go with combine: weighted_mean, one per member");
    c->members = calloc((size_t)mem->n, sizeof *c->members);
    c->weights = calloc((size_t)mem->n, sizeof *c->weights);
    if (!c->members || !c->weights)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    double total = 0;
    for (int i = 0; i < mem->n; i++) {
        const kl__ynode *m = mem->items[i];
        if (m->type != KL__YN_SCALAR || !kl__serve_name_ok(m->str))
            return kl__yaml_error(err, KL_EINVAL, m->pos, "ensemble.members",
                                  "expected the name of a model in the repository");
        if (!(c->members[i] = strdup(m->str)))
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        c->nmembers++;
        double x = 1;
        if (w) {
            const kl__ynode *wi = w->type == KL__YN_SEQ && w->n == mem->n ? w->items[i] : NULL;
            char *end = NULL;
            x = wi && wi->type == KL__YN_SCALAR ? strtod(wi->str, &end) : NAN;
            if (!wi || !end || *end || !(x >= 0 && isfinite(x)))
                return kl__yaml_error(err, KL_EINVAL, wi ? wi->pos : w->pos, "ensemble.weights",
                                      "expected %d non-negative numbers, one per member", mem->n);
        }
        c->weights[i] = (float)x;
        total += x;
    }
    if (!(total > 0))
        return kl__yaml_error(err, KL_EINVAL, w ? w->pos : v->pos, "ensemble.weights",
                              "the weights add up to 0");
    for (int i = 0; i < c->nmembers; i++)
        c->weights[i] = (float)(c->weights[i] / total);
    return KL_OK;
}

kl_status kl__composite_read(const kl__ynode *v, kl__composite **out, kl_error *err)
{
    kl__composite *c = calloc(1, sizeof *c);
    if (!c)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    c->kind = !strcmp(v->key, "pipeline") ? KL__COMP_PIPELINE : KL__COMP_ENSEMBLE;
    kl_status st =
        c->kind == KL__COMP_PIPELINE ? read_pipeline(v, c, err) : read_ensemble(v, c, err);
    if (st != KL_OK) {
        kl__composite_free(c);
        return st;
    }
    *out = c;
    return KL_OK;
}

void kl__composite_free(kl__composite *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->nstages; i++)
        free(c->stages[i].model);
    for (int i = 0; i < c->nmembers; i++)
        free(c->members[i]);
    free(c->stages);
    free(c->members);
    free(c->weights);
    free(c);
}

/* ---- patterns ---- */

kl__patterns *kl__patterns_new(void)
{
    kl__patterns *p = calloc(1, sizeof *p);
    if (p)
        atomic_init(&p->refs, 1);
    return p;
}

kl__patterns *kl__patterns_ref(kl__patterns *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void kl__patterns_release(kl__patterns *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    kl__steps_free(&p->pre);
    kl__steps_free(&p->post);
    kl__lookup_free(p->lookup);
    kl__composite_free(p->comp);
    free(p);
}

int kl__patterns_key(const kl__ynode *v, const char *dir, kl__patterns *p, kl_error *err)
{
    kl_status st;
    if (!strcmp(v->key, "pre"))
        st = kl__steps_read(v, "pre", &p->pre, err);
    else if (!strcmp(v->key, "post"))
        st = kl__steps_read(v, "post", &p->post, err);
    else if (!strcmp(v->key, "lookup"))
        st = kl__lookup_read(v, dir, &p->lookup, err);
    else if (!strcmp(v->key, "pipeline") || !strcmp(v->key, "ensemble"))
        st = p->comp ? kl__yaml_error(err, KL_EINVAL, v->key_pos, v->key,
                                      "a model is a pipeline or an ensemble, not both")
                     : kl__composite_read(v, &p->comp, err);
    else
        return 0;
    return st == KL_OK ? 1 : -1;
}

kl_status kl__patterns_check(const kl__patterns *p, const char *file, kl_error *err)
{
    if (p->comp && p->lookup)
        return kl_error_set(err, KL_EINVAL,
                            "%s: lookup joins features for one model; put it on the pipeline's "
                            "first model instead",
                            file);
    return KL_OK;
}

/* ---- resolving the members ---- */

static const char *member_name(const kl__composite *c, int i)
{
    return c->kind == KL__COMP_ENSEMBLE ? c->members[i] : c->stages[i].model;
}

static int member_count(const kl__composite *c)
{
    return c->kind == KL__COMP_ENSEMBLE ? c->nmembers : c->nstages;
}

void kl__flow_release(kl__version **vs, int n)
{
    for (int i = 0; i < n; i++)
        kl__version_release(vs[i]);
}

kl_status kl__flow_resolve(kl_server *s, const kl__composite *c, kl__version **vs,
                           kl__flow_shape *shape, kl_error *err)
{
    int n = member_count(c);
    memset(vs, 0, (size_t)n * sizeof *vs);
    kl_status st = KL_OK;
    for (int i = 0; st == KL_OK && i < n; i++) {
        const char *name = member_name(c, i);
        if (!name)
            continue; /* a step */
        kl_error e = {0};
        if (!(vs[i] = s->acquire(s, name, -1, &e)))
            st = kl_error_set(err, KL_EIO, "member model %s is not ready: %s", name, e.msg);
        else if (vs[i]->model->pat->comp)
            st = kl_error_set(err, KL_EINVAL, "member %s is itself a pipeline or ensemble", name);
    }
    /* The widths chain: every model stage takes what the stage before gives. */
    int64_t w = -1, k = 0;
    const kl__version *last = NULL;
    for (int i = 0; st == KL_OK && i < n; i++) {
        const kl__version *v = vs[i];
        if (!v) {
            kl_error e = {0};
            kl__steps one = {.v = &c->stages[i].step, .n = 1};
            if ((w = kl__steps_width(&one, 0, 1, w, &e)) < 0)
                st = kl_error_set(err, KL_EINVAL, "pipeline stage %d: %s", i + 1, e.msg);
            last = NULL;
            continue;
        }
        const kl_modelfile_signature *sig = v->sig;
        if (c->kind == KL__COMP_ENSEMBLE && last &&
            (sig->features != last->sig->features || sig->outputs != last->sig->outputs ||
             sig->task != last->sig->task))
            st = kl_error_set(err, KL_EINVAL,
                              "ensemble members %s and %s differ in inputs, outputs or task",
                              last->model->name, v->model->name);
        else if (c->kind == KL__COMP_PIPELINE && i > 0 && w != sig->features)
            st = kl_error_set(err, KL_EINVAL,
                              "pipeline stage %d (model %s) takes %lld values per sample, but "
                              "the stage before gives %lld",
                              i + 1, v->model->name, (long long)sig->features, (long long)w);
        if (i == 0 || c->kind == KL__COMP_ENSEMBLE)
            shape->input = *sig;
        w = sig->outputs;
        k = sig->outputs;
        last = v;
    }
    if (st == KL_OK && c->kind == KL__COMP_ENSEMBLE && c->combine == KL__COMBINE_VOTE &&
        last->sig->task != KL_TASK_CLASSIFICATION)
        st = kl_error_set(err, KL_EINVAL, "combine: vote needs classifiers");
    if (st == KL_OK) {
        shape->width = w;
        shape->final = last; /* NULL: the pipeline ends with a step */
        shape->classify = last && last->sig->task == KL_TASK_CLASSIFICATION;
        (void)k;
    }
    if (st != KL_OK)
        kl__flow_release(vs, n);
    return st;
}

/* ---- running ---- */

static void flow_finish(kl__flow *f)
{
    f->done(f);
}

static void fail(kl__flow *f, kl_status st, const char *msg)
{
    f->status = st;
    snprintf(f->error, sizeof f->error, "%s", msg);
}

static void pipeline_next(kl__flow *f);

/* A pipeline stage's job finished (in the instance's thread). */
static void stage_done(kl__job *job)
{
    kl__flow *f = job->ctx;
    if (job->status != KL_OK || job->expired) {
        fail(f, job->expired ? KL_EIO : job->status, job->error);
        flow_finish(f);
        return;
    }
    const kl__version *v = f->members[f->stage];
    free(f->cur);
    f->cur = job->out; /* the scores feed what follows */
    job->out = NULL;
    free(f->classes);
    f->classes = job->classes; /* the labels, if this is the last model */
    job->classes = NULL;
    f->w = v->sig->outputs;
    f->stage++;
    pipeline_next(f);
}

/* Runs steps from f->stage up to the next model stage, then queues that stage, or finishes. */
static void pipeline_next(kl__flow *f)
{
    const kl__composite *c = f->c;
    int from = f->stage;
    while (f->stage < c->nstages && !c->stages[f->stage].model)
        f->stage++;
    if (f->stage > from) {
        kl__steps s = {.n = f->stage - from};
        kl__step steps[64];
        for (int i = 0; i < s.n && i < 64; i++)
            steps[i] = c->stages[from + i].step;
        s.v = steps;
        float *y = NULL;
        int64_t w = 0;
        kl_error e = {0};
        kl_status st = kl__steps_apply(&s, 0, s.n, f->cur, f->n, f->w, &y, &w, &e);
        if (st != KL_OK) {
            fail(f, st, e.msg);
            flow_finish(f);
            return;
        }
        free(f->cur);
        f->cur = y;
        f->w = w;
    }
    if (f->stage == c->nstages) {
        flow_finish(f);
        return;
    }
    kl__version *v = f->members[f->stage];
    kl__job *j = &f->jobs[0];
    free(j->out);
    free(j->classes);
    *j = (kl__job){.x = f->cur, .n = f->n, .done_fn = stage_done, .ctx = f};
    j->out = malloc((size_t)(f->n * v->sig->outputs) * sizeof *j->out);
    j->classes = malloc((size_t)f->n * sizeof *j->classes);
    if (!j->out || !j->classes) {
        fail(f, KL_ENOMEM, "out of memory");
        flow_finish(f);
    } else if (kl__version_submit(v, j) != KL_OK) {
        fail(f, KL_EFULL, "a member's queue is full: try again later");
        flow_finish(f);
    }
}

/* Combines the members' outputs into f->cur (scores) and f->classes. */
static void ensemble_combine(kl__flow *f)
{
    const kl__composite *c = f->c;
    int64_t n = f->n, k = f->w;
    float *out = calloc((size_t)(n * k), sizeof *out);
    int32_t *cls = malloc((size_t)n * sizeof *cls);
    if (!out || !cls) {
        free(out);
        free(cls);
        fail(f, KL_ENOMEM, "out of memory");
        return;
    }
    for (int m = 0; m < c->nmembers; m++) {
        const kl__job *j = &f->jobs[m];
        for (int64_t i = 0; i < n; i++) {
            if (c->combine == KL__COMBINE_VOTE)
                out[i * k + j->classes[i]] += 1.0f / (float)c->nmembers;
            else
                for (int64_t q = 0; q < k; q++)
                    out[i * k + q] += c->weights[m] * j->out[i * k + q];
        }
    }
    /* The label: the class with the most votes (ties: the larger mean probability, then the
     * lower class), or the argmax of the combined probabilities. */
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t q = 1; q < k; q++) {
            float a = out[i * k + q], b = out[i * k + best];
            if (a > b)
                best = q;
            else if (a == b && c->combine == KL__COMBINE_VOTE) {
                double pa = 0, pb = 0;
                for (int m = 0; m < c->nmembers; m++) {
                    pa += f->jobs[m].out[i * k + q];
                    pb += f->jobs[m].out[i * k + best];
                }
                best = pa > pb ? q : best;
            }
        }
        cls[i] = (int32_t)best;
    }
    free(f->cur);
    f->cur = out;
    f->classes = cls;
}

static void member_done(kl__job *job)
{
    kl__flow *f = job->ctx;
    if (job->status != KL_OK || job->expired) {
        pthread_mutex_lock(&f->mu);
        if (f->status == KL_OK)
            fail(f, job->expired ? KL_EIO : job->status, job->error);
        pthread_mutex_unlock(&f->mu);
    }
    if (atomic_fetch_sub(&f->remaining, 1) != 1)
        return;
    if (f->status == KL_OK)
        ensemble_combine(f);
    flow_finish(f);
}

kl_status kl__flow_start(kl__flow *f, kl_error *err)
{
    const kl__composite *c = f->c;
    f->status = KL_OK;
    pthread_mutex_init(&f->mu, NULL);
    int n = member_count(c);
    if (!(f->jobs = calloc((size_t)n, sizeof *f->jobs)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    if (c->kind == KL__COMP_PIPELINE) {
        f->stage = 0;
        pipeline_next(f);
        return KL_OK;
    }
    atomic_init(&f->remaining, n);
    f->w = f->members[0]->sig->outputs;
    for (int m = 0; m < n; m++) {
        kl__job *j = &f->jobs[m];
        *j = (kl__job){.x = f->cur, .n = f->n, .done_fn = member_done, .ctx = f};
        j->out = malloc((size_t)(f->n * f->w) * sizeof *j->out);
        j->classes = malloc((size_t)f->n * sizeof *j->classes);
        kl_status st = j->out && j->classes ? kl__version_submit(f->members[m], j) : KL_ENOMEM;
        if (st != KL_OK) {
            /* Counts as done: the members already queued finish and the last one ends it. */
            j->status = st;
            snprintf(j->error, sizeof j->error, "%s",
                     st == KL_ENOMEM ? "out of memory" : "a member's queue is full");
            member_done(j);
        }
    }
    return KL_OK;
}

kl_status kl__flow_member_outputs(const kl__flow *f, kl__result *r, kl_error *err)
{
    const kl__composite *c = f->c;
    if (c->kind != KL__COMP_ENSEMBLE)
        return kl_error_set(err, KL_EINVAL,
                            "parameters.members is for ensembles; this model is a pipeline");
    for (int m = 0; m < c->nmembers; m++) {
        const kl__version *v = f->members[m];
        char name[64];
        snprintf(name, sizeof name, "%s.%s", c->members[m], v->sig->output_name);
        kl__output *o = kl__result_add(r, name, KL__O_FP32, f->n, f->w);
        if (!o)
            return kl_error_set(err, KL_ENOMEM, "out of memory (or more than %d outputs)",
                                KL__MAX_OUTPUTS);
        memcpy(o->f, f->jobs[m].out, (size_t)(f->n * f->w) * sizeof *o->f);
        o->always = true;
    }
    return KL_OK;
}

void kl__flow_free(kl__flow *f)
{
    if (!f)
        return;
    int members = f->c ? member_count(f->c) : 0;
    for (int i = 0; f->jobs && i < members; i++) {
        free(f->jobs[i].out);
        free(f->jobs[i].classes);
    }
    free(f->jobs);
    free(f->cur);
    free(f->classes);
    if (f->jobs)
        pthread_mutex_destroy(&f->mu);
    kl__flow_release(f->members, members);
}
