/* What the server answers with: inference responses (JSON tensors, or Triton's binary tensor
 * data after a JSON header), model metadata, Triton-style statistics and the repository index.
 * Answers are built into a kl__buf by hand: they are small and regular, and the inference
 * response is on every request's path. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/serve/infer.h"
#include "runtime/serve/serve_impl.h"

static bool buf_reserve(kl__buf *b, size_t more)
{
    if (b->failed)
        return false;
    if (b->n + more + 1 <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->n + more + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void kl__buf_put(kl__buf *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void kl__buf_puts(kl__buf *b, const char *s)
{
    kl__buf_put(b, s, strlen(s));
}

void kl__buf_printf(kl__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void kl__buf_json_string(kl__buf *b, const char *s)
{
    kl__buf_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            kl__buf_put(b, e, 2);
        } else if (*p < 0x20) {
            kl__buf_printf(b, "\\u%04x", *p);
        } else {
            kl__buf_put(b, (const char *)p, 1);
        }
    }
    kl__buf_put(b, "\"", 1);
}

void kl__buf_free(kl__buf *b)
{
    free(b->p);
    *b = (kl__buf){0};
}

/* The shortest "%.*g" that reads back as the same float (at most 9 digits). */
static void put_float(kl__buf *b, float f)
{
    char s[32];
    if (!isfinite(f)) {
        kl__buf_puts(b, "null");
        return;
    }
    for (int p = 6; p <= 9; p++) {
        snprintf(s, sizeof s, "%.*g", p, (double)f);
        if (p == 9 || strtof(s, NULL) == f)
            break;
    }
    kl__buf_puts(b, s);
}

/* The outputs a model answers with. */
typedef enum outkind { OUT_SCORES, OUT_LABEL, OUT_LABEL_NAME } outkind;

static int model_outputs(const kl_modelfile_signature *sig, const char **names, outkind *kinds)
{
    names[0] = sig->output_name;
    kinds[0] = OUT_SCORES;
    if (sig->task != KL_TASK_CLASSIFICATION)
        return 1;
    names[1] = "label";
    kinds[1] = OUT_LABEL;
    names[2] = "label_name";
    kinds[2] = OUT_LABEL_NAME;
    return 3;
}

static void put_shape(kl__buf *b, int64_t n, int k)
{
    if (k > 0)
        kl__buf_printf(b, "[%lld,%d]", (long long)n, k);
    else
        kl__buf_printf(b, "[%lld]", (long long)n);
}

/* One output's tensor: JSON data, or its bytes appended to bin with binary_data_size. */
static void put_output(const kl__version *v, outkind kind, const char *name, bool binary,
                       const kl__job *job, kl__buf *b, kl__buf *bin)
{
    const kl_modelfile_signature *sig = v->sig;
    const kl_modelfile *mf = v->mf[0];
    int64_t n = job->n;
    kl__buf_puts(b, "{\"name\":");
    kl__buf_json_string(b, name);
    kl__buf_puts(b, ",\"datatype\":");
    kl__buf_puts(b, kind == OUT_SCORES  ? "\"FP32\""
                    : kind == OUT_LABEL ? "\"INT32\""
                                        : "\"BYTES\"");
    kl__buf_puts(b, ",\"shape\":");
    put_shape(b, n, kind == OUT_SCORES ? sig->outputs : 0);
    if (binary) {
        size_t before = bin->n;
        if (kind == OUT_SCORES) {
            kl__buf_put(bin, (const char *)job->out, (size_t)(n * sig->outputs) * sizeof(float));
        } else if (kind == OUT_LABEL) {
            kl__buf_put(bin, (const char *)job->classes, (size_t)n * sizeof(int32_t));
        } else {
            for (int64_t i = 0; i < n; i++) { /* Triton's BYTES: a 4-byte length, then bytes */
                const char *l = kl_modelfile_label(mf, job->classes[i]);
                uint32_t len = (uint32_t)strlen(l ? l : "");
                kl__buf_put(bin, (const char *)&len, 4);
                kl__buf_put(bin, l ? l : "", len);
            }
        }
        kl__buf_printf(b, ",\"parameters\":{\"binary_data_size\":%zu}}", bin->n - before);
        return;
    }
    kl__buf_puts(b, ",\"data\":[");
    if (kind == OUT_SCORES) {
        for (int64_t i = 0; i < n * sig->outputs; i++) {
            if (i)
                kl__buf_put(b, ",", 1);
            put_float(b, job->out[i]);
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            if (i)
                kl__buf_put(b, ",", 1);
            if (kind == OUT_LABEL) {
                kl__buf_printf(b, "%d", job->classes[i]);
            } else {
                const char *l = kl_modelfile_label(mf, job->classes[i]);
                kl__buf_json_string(b, l ? l : "");
            }
        }
    }
    kl__buf_puts(b, "]}");
}

kl_status kl__respond_check_outputs(const kl__version *v, const kl__infer_request *req,
                                    kl_error *err)
{
    const char *names[3];
    outkind kinds[3];
    int nout = model_outputs(v->sig, names, kinds);
    for (int i = 0; i < req->noutputs; i++) {
        bool known = false;
        for (int k = 0; k < nout; k++)
            known |= !strcmp(req->outputs[i].name, names[k]);
        if (!known)
            return kl_error_set(err, KL_EINVAL, "model %s has no output '%s' (it has %s%s%s%s%s)",
                                v->model->name, req->outputs[i].name, names[0],
                                nout > 1 ? ", " : "", nout > 1 ? names[1] : "",
                                nout > 2 ? ", " : "", nout > 2 ? names[2] : "");
    }
    return KL_OK;
}

kl_status kl__respond_infer(const kl__version *v, const kl__infer_request *req, const kl__job *job,
                            kl__buf *b, size_t *header_len, kl_error *err)
{
    const char *names[3];
    outkind kinds[3];
    int nout = model_outputs(v->sig, names, kinds);
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
    for (int k = 0; k < nout; k++) {
        bool want = req->noutputs == 0, binary = req->binary_all;
        for (int i = 0; i < req->noutputs; i++)
            if (!strcmp(req->outputs[i].name, names[k])) {
                want = true;
                binary |= req->outputs[i].binary;
            }
        if (!want)
            continue;
        if (put++)
            kl__buf_put(b, ",", 1);
        put_output(v, kinds[k], names[k], binary, job, b, &bin);
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

void kl__respond_model_metadata(const kl__model *m, const kl__version *v, kl__buf *b)
{
    const kl_modelfile_signature *sig = v->sig;
    kl__buf_puts(b, "{\"name\":");
    kl__buf_json_string(b, m->name);
    kl__buf_puts(b, ",\"versions\":[");
    for (int i = 0; i < m->nversions; i++)
        kl__buf_printf(b, "%s\"%lld\"", i ? "," : "", (long long)m->versions[i]->number);
    kl__buf_puts(b, "],\"platform\":\"kiln\",\"inputs\":[{\"name\":");
    kl__buf_json_string(b, sig->input_name);
    kl__buf_puts(b, ",\"datatype\":\"FP32\",\"shape\":[-1");
    for (int d = 0; d < sig->input.ndim; d++)
        kl__buf_printf(b, ",%lld", (long long)sig->input.d[d]);
    kl__buf_puts(b, "]}],\"outputs\":[{\"name\":");
    kl__buf_json_string(b, sig->output_name);
    kl__buf_printf(b, ",\"datatype\":\"FP32\",\"shape\":[-1,%d]}", sig->outputs);
    if (sig->task == KL_TASK_CLASSIFICATION) {
        kl__buf_puts(b, ",{\"name\":\"label\",\"datatype\":\"INT32\",\"shape\":[-1]}"
                        ",{\"name\":\"label_name\",\"datatype\":\"BYTES\",\"shape\":[-1]}");
    }
    kl__buf_printf(b, "],\"parameters\":{\"version\":\"%lld\",\"max_batch_size\":%d",
                   (long long)v->number, v->cfg.max_batch_size);
    if (sig->task == KL_TASK_CLASSIFICATION) {
        kl__buf_puts(b, ",\"labels\":[");
        for (int k = 0; k < sig->outputs; k++) {
            const char *l = kl_modelfile_label(v->mf[0], k);
            if (k)
                kl__buf_put(b, ",", 1);
            kl__buf_json_string(b, l ? l : "");
        }
        kl__buf_puts(b, "]");
    }
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
        kl__buf_puts(b, "]}");
    }
    kl__buf_puts(b, "]}");
}

void kl__respond_index(kl_server *s, kl__buf *b)
{
    kl__buf_puts(b, "[");
    int put = 0;
    pthread_rwlock_rdlock(&s->lock);
    for (int i = 0; i < s->nmodels; i++) {
        const kl__model *m = s->models[i];
        for (int k = 0; k < m->nversions; k++) {
            kl__buf_printf(b, "%s{\"name\":", put++ ? "," : "");
            kl__buf_json_string(b, m->name);
            kl__buf_printf(b, ",\"version\":\"%lld\",\"state\":\"READY\",\"reason\":\"\"}",
                           (long long)m->versions[k]->number);
        }
        for (int k = 0; k < m->nnotes; k++) {
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
