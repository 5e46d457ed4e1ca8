/* What the server answers with: inference responses (JSON tensors, or Triton's binary tensor
 * data after a JSON header), model metadata, Triton-style statistics and the repository index.
 * Answers are built into a kl__buf by hand: they are small and regular, and the inference
 * response is on every request's path. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "serve/codec/codec.h"
#include "serve/codec/ftext.h"
#include "serve/patterns/patterns.h"
#include "serve/sched/slo.h"

/* A float as text that reads back as the same float: 8 significant digits when they do (and
 * %g drops trailing zeros, so 0.1f is "0.1"), else 9, which always do (serve/codec/ftext.c). */
static void put_float(kl__buf *b, float f)
{
    char s[KL__FLOAT_TEXT_MAX];
    if (!isfinite(f)) {
        kl__buf_puts(b, "null");
        return;
    }
    kl__buf_put(b, s, kl__float_text(f, s));
}

/* The names of the outputs v answers with, in order: the scores, then for a classifier label
 * and label_name, then what its post steps add. */
static int output_names(const kl__version *v, const char **names)
{
    const kl_modelfile_signature *sig = v->sig;
    int n = 0;
    names[n++] = sig->output_name;
    if (sig->task == KL_TASK_CLASSIFICATION) {
        names[n++] = "label";
        names[n++] = "label_name";
    }
    const kl__steps *post = v->pat ? &v->pat->post : NULL;
    for (int i = 0; post && i < post->n && n < KL__MAX_OUTPUTS - 3; i++) {
        if (post->v[i].kind == KL__STEP_THRESHOLD) {
            names[n++] = "decision";
        } else if (post->v[i].kind == KL__STEP_TOP_K) {
            names[n++] = "top_k_labels";
            names[n++] = "top_k_scores";
            names[n++] = "top_k_label_names";
        }
    }
    return n;
}

kl_status kl__respond_check_outputs(const kl__version *v, const kl__infer_request *req,
                                    kl_error *err)
{
    const char *names[KL__MAX_OUTPUTS];
    int nout = output_names(v, names);
    for (int i = 0; i < req->noutputs; i++) {
        bool known = false;
        for (int k = 0; k < nout; k++)
            known |= !strcmp(req->outputs[i].name, names[k]);
        if (known)
            continue;
        char list[512] = "";
        for (int k = 0; k < nout; k++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "",
                     names[k]);
        return kl_error_set(err, KL_EINVAL, "model %s has no output '%s' (it has %s)",
                            v->model->name, req->outputs[i].name, list);
    }
    return KL_OK;
}

static void put_output_shape(kl__buf *b, const kl__output *o)
{
    if (o->k > 0)
        kl__buf_printf(b, "[%lld,%lld]", (long long)o->n, (long long)o->k);
    else
        kl__buf_printf(b, "[%lld]", (long long)o->n);
}

/* One output tensor: JSON data, or its bytes appended to bin with binary_data_size. */
static void put_output(const kl__output *o, bool binary, kl__buf *b, kl__buf *bin)
{
    static const char *const dt[] = {"FP32", "INT32", "BYTES"};
    int64_t cnt = o->n * (o->k > 0 ? o->k : 1);
    kl__buf_puts(b, "{\"name\":");
    kl__buf_json_string(b, o->name);
    kl__buf_printf(b, ",\"datatype\":\"%s\",\"shape\":", dt[o->dtype]);
    put_output_shape(b, o);
    if (binary) {
        size_t before = bin->n;
        if (o->dtype == KL__O_FP32) {
            kl__buf_put(bin, (const char *)o->f, (size_t)cnt * sizeof(float));
        } else if (o->dtype == KL__O_INT32) {
            kl__buf_put(bin, (const char *)o->i, (size_t)cnt * sizeof(int32_t));
        } else {
            for (int64_t i = 0; i < cnt; i++) { /* Triton's BYTES: a 4-byte length, then bytes */
                uint32_t len = (uint32_t)strlen(o->s[i] ? o->s[i] : "");
                kl__buf_put(bin, (const char *)&len, 4);
                kl__buf_put(bin, o->s[i] ? o->s[i] : "", len);
            }
        }
        kl__buf_printf(b, ",\"parameters\":{\"binary_data_size\":%zu}}", bin->n - before);
        return;
    }
    kl__buf_puts(b, ",\"data\":[");
    for (int64_t i = 0; i < cnt; i++) {
        if (i)
            kl__buf_put(b, ",", 1);
        if (o->dtype == KL__O_FP32)
            put_float(b, o->f[i]);
        else if (o->dtype == KL__O_INT32)
            kl__buf_printf(b, "%d", o->i[i]);
        else
            kl__buf_json_string(b, o->s[i] ? o->s[i] : "");
    }
    kl__buf_puts(b, "]}");
}

kl_status kl__respond_result(const kl__version *v, const kl__infer_request *req,
                             const kl__result *res, kl__buf *b, size_t *header_len, kl_error *err)
{
    kl_status st = kl__respond_check_outputs(v, req, err);
    if (st != KL_OK)
        return st;
    kl__buf bin = {0};
    kl__buf_puts(b, "{\"model_name\":");
    kl__buf_json_string(b, v->model->name);
    kl__buf_printf(b, ",\"model_version\":\"%lld\"", (long long)v->number);
    if (req->id) {
        kl__buf_puts(b, ",\"id\":");
        kl__buf_json_string(b, req->id);
    }
    kl__buf_puts(b, ",\"outputs\":[");
    int put = 0;
    for (int k = 0; k < res->n; k++) {
        const kl__output *o = &res->out[k];
        bool want = req->noutputs == 0 || o->always, binary = req->binary_all;
        for (int i = 0; i < req->noutputs; i++)
            if (!strcmp(req->outputs[i].name, o->name)) {
                want = true;
                binary |= req->outputs[i].binary;
            }
        if (!want)
            continue;
        if (put++)
            kl__buf_put(b, ",", 1);
        put_output(o, binary, b, &bin);
    }
    kl__buf_puts(b, "]}");
    *header_len = b->n;
    if (bin.n)
        kl__buf_put(b, bin.p, bin.n);
    bool failed = bin.failed;
    kl__buf_free(&bin);
    if (b->failed || failed)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    return KL_OK;
}

kl_status kl__respond_scores(const kl__version *v, const kl__infer_request *req,
                             const float *scores, const int32_t *classes, int64_t n,
                             const kl_modelfile *names, const kl__result *extra, kl__buf *b,
                             size_t *header_len, kl_error *err)
{
    const kl_modelfile_signature *sig = v->sig;
    bool cls = sig->task == KL_TASK_CLASSIFICATION;
    kl__result res = {0};
    kl_status st =
        kl__result_model(&res, sig->output_name, cls, scores, classes, n, sig->outputs, names, err);
    if (st == KL_OK && v->pat && v->pat->post.n)
        st = kl__steps_outputs(&v->pat->post, scores, n, sig->outputs, names, &res, err);
    for (int i = 0; st == KL_OK && extra && i < extra->n; i++) {
        const kl__output *e = &extra->out[i];
        kl__output *o = kl__result_add(&res, e->name, e->dtype, e->n, e->k);
        if (!o) {
            st = kl_error_set(err, KL_ENOMEM, "out of memory (or more than %d outputs)",
                              KL__MAX_OUTPUTS);
            break;
        }
        size_t cnt = (size_t)(e->n * (e->k > 0 ? e->k : 1));
        if (e->f)
            memcpy(o->f, e->f, cnt * sizeof *o->f);
        if (e->i)
            memcpy(o->i, e->i, cnt * sizeof *o->i);
        if (e->s)
            memcpy((void *)o->s, e->s, cnt * sizeof *o->s);
        o->always = e->always;
    }
    if (st == KL_OK)
        st = kl__respond_result(v, req, &res, b, header_len, err);
    kl__result_free(&res);
    return st;
}

kl_status kl__respond_infer(const kl__version *v, const kl__infer_request *req, const kl__job *job,
                            kl__buf *b, size_t *header_len, kl_error *err)
{
    return kl__respond_scores(v, req, job->out, job->classes, job->n, v->mf ? v->mf[0] : NULL, NULL,
                              b, header_len, err);
}

/* Where the served weights came from (the model file's /lineage), when it says. */
static void put_lineage(kl__buf *b, const kl_modelfile_lineage *l)
{
    if (!l->run && !l->checkpoint && !l->parent)
        return;
    kl__buf_puts(b, ",\"lineage\":{");
    const char *keys[] = {"run", "checkpoint", "parent"};
    const char *vals[] = {l->run, l->checkpoint, l->parent};
    bool first = true;
    for (int i = 0; i < 3; i++)
        if (vals[i]) {
            kl__buf_printf(b, "%s\"%s\":", first ? "" : ",", keys[i]);
            kl__buf_json_string(b, vals[i]);
            first = false;
        }
    if (l->parent_version)
        kl__buf_printf(b, ",\"parent_version\":\"%lld\"", (long long)l->parent_version);
    kl__buf_puts(b, "}");
}

void kl__respond_model_metadata(const kl__model *m, const kl__version *v, kl__buf *b)
{
    const kl_modelfile_signature *sig = v->sig;
    kl__buf_puts(b, "{\"name\":");
    kl__buf_json_string(b, m->name);
    kl__buf_puts(b, ",\"versions\":[");
    for (int i = 0; i < m->nversions; i++)
        kl__buf_printf(b, "%s\"%lld\"", i ? "," : "", (long long)m->versions[i]->number);
    kl__buf_printf(
        b, "],\"platform\":\"%s\",\"inputs\":[{\"name\":",
        v->pat && v->pat->comp
            ? (v->pat->comp->kind == KL__COMP_PIPELINE ? "kiln-pipeline" : "kiln-ensemble")
            : "kiln");
    if (v->pat && v->pat->lookup) { /* entity ids, joined with the feature table */
        kl__buf_puts(b, "\"id\",\"datatype\":\"INT64\",\"shape\":[-1");
    } else {
        kl__buf_json_string(b, sig->input_name);
        kl__buf_puts(b, ",\"datatype\":\"FP32\",\"shape\":[-1");
        /* With pre steps the request's width can differ from the model's: leave it open. */
        if (v->pat && v->pat->pre.n)
            kl__buf_puts(b, ",-1");
        else
            for (int d = 0; d < sig->input.ndim; d++)
                kl__buf_printf(b, ",%lld", (long long)sig->input.d[d]);
    }
    kl__buf_puts(b, "]}],\"outputs\":[{\"name\":");
    kl__buf_json_string(b, sig->output_name);
    kl__buf_printf(b, ",\"datatype\":\"FP32\",\"shape\":[-1,%d]}", sig->outputs);
    if (sig->task == KL_TASK_CLASSIFICATION) {
        kl__buf_puts(b, ",{\"name\":\"label\",\"datatype\":\"INT32\",\"shape\":[-1]}"
                        ",{\"name\":\"label_name\",\"datatype\":\"BYTES\",\"shape\":[-1]}");
    }
    const kl__steps *post = v->pat ? &v->pat->post : NULL;
    for (int i = 0; post && i < post->n; i++) {
        const kl__step *p = &post->v[i];
        if (p->kind == KL__STEP_THRESHOLD) {
            kl__buf_puts(b, ",{\"name\":\"decision\",\"datatype\":\"INT32\",\"shape\":[-1]}");
        } else if (p->kind == KL__STEP_TOP_K) {
            int k = p->num < sig->outputs ? p->num : sig->outputs;
            kl__buf_printf(b,
                           ",{\"name\":\"top_k_labels\",\"datatype\":\"INT32\",\"shape\":[-1,%d]}"
                           ",{\"name\":\"top_k_scores\",\"datatype\":\"FP32\",\"shape\":[-1,%d]}"
                           ",{\"name\":\"top_k_label_names\",\"datatype\":\"BYTES\",\"shape\":["
                           "-1,%d]}",
                           k, k, k);
        }
    }
    kl__buf_printf(b, "],\"parameters\":{\"version\":\"%lld\",\"max_batch_size\":%d",
                   (long long)v->number, v->cfg.max_batch_size);
    if (sig->task == KL_TASK_CLASSIFICATION && (v->mf || v->labels)) {
        kl__buf_puts(b, ",\"labels\":[");
        for (int k = 0; k < sig->outputs; k++) {
            const char *l = v->mf ? kl_modelfile_label(v->mf[0], k) : v->labels[k];
            if (k)
                kl__buf_put(b, ",", 1);
            kl__buf_json_string(b, l ? l : "");
        }
        kl__buf_puts(b, "]");
    }
    if (v->mf)
        put_lineage(b, kl_modelfile_lineage_of(v->mf[0]));
    kl__buf_puts(b, "}}");
}

static void put_stat(kl__buf *b, const char *name, kl__stat s, bool comma)
{
    kl__buf_printf(b, "%s\"%s\":{\"count\":%llu,\"ns\":%llu}", comma ? "," : "", name,
                   (unsigned long long)s.count, (unsigned long long)s.ns);
}

void kl__respond_stats(kl__version *const *vs, int n, kl__buf *b)
{
    kl__buf_puts(b, "{\"model_stats\":[");
    for (int i = 0; i < n; i++) {
        kl__version *v = vs[i];
        pthread_mutex_lock(&v->mu);
        kl__version_stats s = v->stats;
        kl__buf_printf(b, "%s{\"name\":", i ? "," : "");
        kl__buf_json_string(b, v->model->name);
        kl__buf_printf(b,
                       ",\"version\":\"%lld\",\"last_inference\":%llu,\"inference_count\":%llu,"
                       "\"execution_count\":%llu,\"inference_stats\":{",
                       (long long)v->number, (unsigned long long)s.last_ms,
                       (unsigned long long)s.inferences, (unsigned long long)s.executions);
        put_stat(b, "success", s.success, false);
        put_stat(b, "fail", s.fail, true);
        put_stat(b, "queue", s.queue, true);
        put_stat(b, "compute_infer", s.compute, true);
        const kl__slo *slo = v->slo;
        if (slo && slo->target_s > 0)
            kl__buf_printf(b,
                           "},\"latency_slo\":{\"target_ms\":%g,\"batch_cap\":%d,\"raised\":%llu,"
                           "\"lowered\":%llu",
                           slo->target_s * 1e3, slo->cap, (unsigned long long)slo->raised,
                           (unsigned long long)slo->lowered);
        kl__buf_puts(b, "},\"batch_stats\":[");
        int put = 0;
        for (int k = 1; k <= v->cfg.max_batch_size; k++) {
            if (!s.batches[k].count)
                continue;
            kl__buf_printf(b, "%s{\"batch_size\":%d,", put++ ? "," : "", k);
            put_stat(b, "compute_infer", s.batches[k], false);
            kl__buf_puts(b, "}");
        }
        pthread_mutex_unlock(&v->mu);
        kl__buf_puts(b, "],\"drift\":");
        kl__drift_json(v, b);
        kl__buf_puts(b, "}");
    }
    kl__buf_puts(b, "]}");
}

/* The note of m's version number (a reload of it that failed, while it serves), or NULL. */
static const kl__version_note *note_of(const kl__model *m, int64_t number)
{
    for (int i = 0; i < m->nnotes; i++)
        if (m->notes[i].number == number)
            return &m->notes[i];
    return NULL;
}

static bool served_number(const kl__model *m, int64_t number)
{
    for (int i = 0; i < m->nversions; i++)
        if (m->versions[i]->number == number)
            return true;
    return false;
}

void kl__respond_index(kl_server *s, kl__buf *b)
{
    kl__buf_puts(b, "[");
    int put = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (int i = 0; i < s->nmodels; i++) {
        const kl__model *m = s->models[i];
        for (int k = 0; k < m->nversions; k++) {
            const kl__version_note *n = note_of(m, m->versions[k]->number);
            kl__buf_printf(b, "%s{\"name\":", put++ ? "," : "");
            kl__buf_json_string(b, m->name);
            kl__buf_printf(b, ",\"version\":\"%lld\",\"state\":\"READY\",\"reason\":",
                           (long long)m->versions[k]->number);
            kl__buf_json_string(b, n && n->reason ? n->reason : "");
            kl__buf_puts(b, "}");
        }
        for (int k = 0; k < m->nnotes; k++) {
            if (served_number(m, m->notes[k].number))
                continue; /* its reason is on the READY entry */
            kl__buf_printf(b, "%s{\"name\":", put++ ? "," : "");
            kl__buf_json_string(b, m->name);
            kl__buf_printf(b, ",\"version\":\"%lld\",\"state\":\"UNAVAILABLE\",\"reason\":",
                           (long long)m->notes[k].number);
            kl__buf_json_string(b, m->notes[k].reason ? m->notes[k].reason : "");
            kl__buf_puts(b, "}");
        }
        if (m->nversions == 0 && m->nnotes == 0) {
            kl__buf_printf(b, "%s{\"name\":", put++ ? "," : "");
            kl__buf_json_string(b, m->name);
            kl__buf_puts(b, ",\"state\":\"UNAVAILABLE\",\"reason\":");
            kl__buf_json_string(b, m->removed    ? "its folder left the repository"
                                   : m->unloaded ? "unloaded"
                                   : m->error    ? m->error
                                                 : "no version to serve");
            kl__buf_puts(b, "}");
        }
    }
    pthread_rwlock_unlock(&s->lock);
    kl__buf_puts(b, "]");
}
