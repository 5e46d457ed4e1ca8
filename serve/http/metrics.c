/* What kiln serve tells about itself: GET /metrics in the Prometheus text exposition format
 * (0.0.4), and the access log. The routes count each answer as it is queued; the rest is read at
 * scrape time from what the server keeps (serve/README.md, "A request in http/"). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kiln/version.h"
#include "serve/http/http_impl.h"
#include "serve/patterns/patterns.h"

static const unsigned codes[KL__CODES - 1] = {200, 201, 204, 400, 401, 403, 404, 405, 408,
                                              409, 413, 414, 422, 429, 500, 503, 504};

static const char *const endpoints[KL__EP_COUNT] = {
    [KL__EP_OTHER] = "other",    [KL__EP_INFER] = "infer",   [KL__EP_METADATA] = "metadata",
    [KL__EP_READY] = "ready",    [KL__EP_STATS] = "stats",   [KL__EP_FEEDBACK] = "feedback",
    [KL__EP_HEALTH] = "health",  [KL__EP_SERVER] = "server", [KL__EP_REPOSITORY] = "repository",
    [KL__EP_METRICS] = "metrics"};

/* Upper bounds of the latency buckets, in seconds, and as the le labels say them. */
static const double latency_le[KL__LATENCY_BUCKETS] = {
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const char *const latency_le_text[KL__LATENCY_BUCKETS] = {
    "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
    "0.05",   "0.1",     "0.25",   "0.5",   "1",      "2.5",   "5",    "10"};

/* Batch-size buckets: powers of two up to the first at or above max_batch_size (65536 at most). */
#define BATCH_BUCKETS 17

static int code_slot(unsigned code)
{
    for (int i = 0; i < KL__CODES - 1; i++)
        if (codes[i] == code)
            return i;
    return KL__CODES - 1;
}

static void observe(kl__histogram *h, double seconds)
{
    if (!(seconds > 0))
        seconds = 0;
    int b = 0;
    while (b < KL__LATENCY_BUCKETS && seconds > latency_le[b])
        b++;
    atomic_fetch_add(&h->n[b], 1);
    atomic_fetch_add(&h->sum_ns, (uint64_t)(seconds * 1e9));
}

void kl__metrics_count(kl_server *s, kl__version *v, kl__endpoint ep, unsigned code, double seconds)
{
    kl__req_counts *c = v ? &v->metrics.requests : &s->unrouted;
    atomic_fetch_add(&c->n[ep][code_slot(code)], 1);
    if (v && ep == KL__EP_INFER && code == 200)
        observe(&v->metrics.total, seconds);
}

void kl__metrics_observe_job(kl__version *v, const kl__job *job)
{
    observe(&v->metrics.queue, job->t_started - job->t_queued);
    observe(&v->metrics.compute, job->t_done - job->t_started);
}

/* ---- rendering ---- */

/* What one version's series show, read once per scrape. */
typedef struct vsnap {
    kl__version *v;
    char labels[160]; /* model="...",version="..." */
    int queued, busy;
    uint64_t samples, executions;
    int nbatch;                       /* batch-size buckets before +Inf */
    uint64_t batch_le[BATCH_BUCKETS]; /* their bounds */
    uint64_t batch_cum[BATCH_BUCKETS + 1], batch_sum;
    bool drift;
    kl__drift_summary d;
} vsnap;

/* A label value: backslash, double quote and newline escaped. */
static void put_label_value(kl__buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            kl__buf_printf(b, "\\%c", *s);
        else if (*s == '\n')
            kl__buf_puts(b, "\\n");
        else
            kl__buf_put(b, s, 1);
    }
}

static void family(kl__buf *b, const char *name, const char *type, const char *help)
{
    kl__buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void snapshot(vsnap *o, kl__version *v)
{
    kl__buf lb = {0};
    kl__buf_puts(&lb, "model=\"");
    put_label_value(&lb, v->model->name);
    kl__buf_printf(&lb, "\",version=\"%lld\"", (long long)v->number);
    snprintf(o->labels, sizeof o->labels, "%s", lb.p ? lb.p : "");
    kl__buf_free(&lb);
    o->v = v;
    o->busy = atomic_load(&v->busy);
    uint64_t le = 1;
    for (o->nbatch = 0; o->nbatch < BATCH_BUCKETS; le *= 2) {
        o->batch_le[o->nbatch++] = le;
        if (le >= (uint64_t)v->cfg.max_batch_size)
            break;
    }
    pthread_mutex_lock(&v->mu);
    o->queued = v->queued;
    o->samples = v->stats.inferences;
    o->executions = v->stats.executions;
    for (int k = 0; k <= v->cfg.max_batch_size; k++) {
        uint64_t n = v->stats.batches[k].count;
        int i = 0; /* batches[0] counts calls over max_batch_size: +Inf only */
        while (i < o->nbatch && (k == 0 || (uint64_t)k > o->batch_le[i]))
            i++;
        o->batch_cum[i] += n;
        o->batch_sum += (uint64_t)k * n;
    }
    pthread_mutex_unlock(&v->mu);
    for (int i = 1; i <= o->nbatch; i++)
        o->batch_cum[i] += o->batch_cum[i - 1];
    if ((o->drift = v->drift != NULL))
        kl__drift_read(v->drift, &o->d, NULL);
}

static void latency_histogram(kl__buf *b, const char *name, const vsnap *o, const kl__histogram *h)
{
    uint64_t cum = 0;
    for (int i = 0; i <= KL__LATENCY_BUCKETS; i++) {
        cum += atomic_load(&h->n[i]);
        kl__buf_printf(b, "%s_bucket{%s,le=\"%s\"} %llu\n", name, o->labels,
                       i < KL__LATENCY_BUCKETS ? latency_le_text[i] : "+Inf",
                       (unsigned long long)cum);
    }
    kl__buf_printf(b, "%s_sum{%s} %.9g\n%s_count{%s} %llu\n", name, o->labels,
                   (double)atomic_load(&h->sum_ns) * 1e-9, name, o->labels,
                   (unsigned long long)cum);
}

static void put_requests(kl__buf *b, const char *labels, const kl__req_counts *c, bool versioned)
{
    for (int ep = 0; ep < KL__EP_COUNT; ep++)
        for (int k = 0; k < KL__CODES; k++) {
            uint64_t n = atomic_load(&c->n[ep][k]);
            /* Every version has its successful inferences' series from the start. */
            if (!n && !(versioned && ep == KL__EP_INFER && k == 0))
                continue;
            kl__buf_printf(b, "kiln_requests_total{%s,endpoint=\"%s\",code=\"", labels,
                           endpoints[ep]);
            if (k < KL__CODES - 1)
                kl__buf_printf(b, "%u", codes[k]);
            else
                kl__buf_puts(b, "other");
            kl__buf_printf(b, "\"} %llu\n", (unsigned long long)n);
        }
}

static void process_metrics(kl_server *s, kl__buf *b)
{
    family(b, "kiln_build_info", "gauge", "The kiln version serving, as a label; always 1.");
    kl__buf_printf(b, "kiln_build_info{version=\"%s\"} 1\n", KL_VERSION);
    family(b, "process_start_time_seconds", "gauge",
           "When the server started, in seconds since the Unix epoch.");
    kl__buf_printf(b, "process_start_time_seconds %.3f\n", s->started_wall);
    family(b, "kiln_uptime_seconds", "gauge", "Seconds since the server started.");
    kl__buf_printf(b, "kiln_uptime_seconds %.3f\n", kl_now() - s->started);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        family(b, "process_cpu_seconds_total", "counter", "User and system CPU time, seconds.");
        kl__buf_printf(b, "process_cpu_seconds_total %.6f\n",
                       (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
    }
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%llu %llu", &pages, &rss) == 2) {
            family(b, "process_resident_memory_bytes", "gauge", "Resident memory, bytes.");
            kl__buf_printf(b, "process_resident_memory_bytes %llu\n",
                           rss * (unsigned long long)sysconf(_SC_PAGESIZE));
        }
        fclose(f);
    }
    family(b, "kiln_requests_in_flight", "gauge",
           "HTTP requests received and not yet answered (this scrape included).");
    kl__buf_printf(b, "kiln_requests_in_flight %d\n", atomic_load(&s->inflight));
    family(b, "kiln_repository_polls_total", "counter", "Repository polls done (--poll).");
    kl__buf_printf(b, "kiln_repository_polls_total %llu\n",
                   (unsigned long long)atomic_load(&s->polls));
    family(b, "kiln_http_connections", "gauge", "HTTP connections open (this scrape's included).");
    kl__buf_printf(b, "kiln_http_connections %d\n", kl__conn_count(s));
    family(b, "kiln_http_deadline_cuts_total", "counter",
           "Connections closed because a request's headers or body were not whole within "
           "--header-timeout or --body-timeout.");
    for (int k = 0; k < 2; k++)
        kl__buf_printf(b, "kiln_http_deadline_cuts_total{phase=\"%s\"} %llu\n",
                       k ? "body" : "headers", (unsigned long long)atomic_load(&s->conn_cuts[k]));
}

/* One family with a sample per version snapshot o for which cond holds, valued expr. */
#define VERSION_GAUGES(b, name, type, help, vs, n, cond, fmt, expr)           \
    do {                                                                      \
        family(b, name, type, help);                                          \
        for (int i_ = 0; i_ < (n); i_++) {                                    \
            const vsnap *o = &(vs)[i_];                                       \
            if (cond)                                                         \
                kl__buf_printf(b, "%s{%s} " fmt "\n", name, o->labels, expr); \
        }                                                                     \
    } while (0)

static void version_metrics(kl__buf *b, const vsnap *vs, int n, const kl__req_counts *unrouted)
{
    family(b, "kiln_requests_total", "counter",
           "HTTP requests answered, by model version, endpoint and status code (model and "
           "version empty for requests that named no served version).");
    for (int i = 0; i < n; i++)
        put_requests(b, vs[i].labels, &vs[i].v->metrics.requests, true);
    put_requests(b, "model=\"\",version=\"\"", unrouted, false);
    VERSION_GAUGES(b, "kiln_inference_samples_total", "counter", "Samples scored.", vs, n, true,
                   "%llu", (unsigned long long)o->samples);
    VERSION_GAUGES(b, "kiln_inference_executions_total", "counter",
                   "Model calls (each a batch of one or more requests).", vs, n, true, "%llu",
                   (unsigned long long)o->executions);
    family(b, "kiln_inference_request_duration_seconds", "histogram",
           "Inference requests answered 200: from their arrival to their answer.");
    for (int i = 0; i < n; i++)
        latency_histogram(b, "kiln_inference_request_duration_seconds", &vs[i],
                          &vs[i].v->metrics.total);
    family(b, "kiln_inference_queue_duration_seconds", "histogram",
           "Inference requests: time waiting in the version's queue for an instance.");
    for (int i = 0; i < n; i++)
        latency_histogram(b, "kiln_inference_queue_duration_seconds", &vs[i],
                          &vs[i].v->metrics.queue);
    family(b, "kiln_inference_compute_duration_seconds", "histogram",
           "Inference requests: the model call that ran them (with the rest of its batch).");
    for (int i = 0; i < n; i++)
        latency_histogram(b, "kiln_inference_compute_duration_seconds", &vs[i],
                          &vs[i].v->metrics.compute);
    family(b, "kiln_inference_batch_size", "histogram", "Samples per model call.");
    for (int i = 0; i < n; i++) {
        const vsnap *o = &vs[i];
        for (int k = 0; k <= o->nbatch; k++) {
            kl__buf_printf(b, "kiln_inference_batch_size_bucket{%s,le=\"", o->labels);
            if (k < o->nbatch)
                kl__buf_printf(b, "%llu", (unsigned long long)o->batch_le[k]);
            else
                kl__buf_puts(b, "+Inf");
            kl__buf_printf(b, "\"} %llu\n", (unsigned long long)o->batch_cum[k]);
        }
        kl__buf_printf(b, "kiln_inference_batch_size_sum{%s} %llu\n", o->labels,
                       (unsigned long long)o->batch_sum);
        kl__buf_printf(b, "kiln_inference_batch_size_count{%s} %llu\n", o->labels,
                       (unsigned long long)o->batch_cum[o->nbatch]);
    }
    VERSION_GAUGES(b, "kiln_queue_depth", "gauge", "Requests waiting in the version's queue.", vs,
                   n, true, "%d", o->queued);
    VERSION_GAUGES(b, "kiln_instances", "gauge", "Instances (model threads) of the version.", vs, n,
                   true, "%d", o->v->instances);
    VERSION_GAUGES(b, "kiln_instances_busy", "gauge", "Instances inside a model call.", vs, n, true,
                   "%d", o->busy);
}

static void drift_metrics(kl__buf *b, const vsnap *vs, int n)
{
    VERSION_GAUGES(b, "kiln_drift_window_samples", "gauge",
                   "Samples in the input drift window (at most its size).", vs, n, o->drift, "%lld",
                   (long long)o->d.samples);
    VERSION_GAUGES(b, "kiln_drift_psi_threshold", "gauge",
                   "PSI at or above which a feature or the predictions count as drifted.", vs, n,
                   o->drift, "%.6g", o->d.threshold);
    VERSION_GAUGES(b, "kiln_input_drift_psi_max", "gauge",
                   "Largest population stability index over input features (window against "
                   "the model file's reference).",
                   vs, n, o->drift && o->d.reference, "%.6g", o->d.psi_max);
    VERSION_GAUGES(b, "kiln_input_drift_psi_mean", "gauge",
                   "Mean population stability index over input features.", vs, n,
                   o->drift && o->d.reference, "%.6g", o->d.psi_mean);
    VERSION_GAUGES(b, "kiln_input_drift_features", "gauge",
                   "Input features whose PSI is at or above the threshold.", vs, n,
                   o->drift && o->d.reference, "%lld", (long long)o->d.over);
    VERSION_GAUGES(b, "kiln_input_drift_detected", "gauge",
                   "1 when the largest feature PSI is at or above the threshold (and the window "
                   "holds min_samples), else 0.",
                   vs, n, o->drift && o->d.reference, "%d", o->d.input_drifted);
    VERSION_GAUGES(b, "kiln_prediction_drift_psi", "gauge",
                   "PSI of the predicted classes (regression: of the binned predictions, the "
                   "largest over outputs) against the predictions on the training data.",
                   vs, n, o->drift && o->d.reference, "%.6g", o->d.prediction_psi);
    VERSION_GAUGES(b, "kiln_prediction_drift_detected", "gauge",
                   "1 when the prediction PSI is at or above the threshold, else 0.", vs, n,
                   o->drift && o->d.reference, "%d", o->d.prediction_drifted);
    VERSION_GAUGES(b, "kiln_feedback_samples_total", "counter",
                   "Labelled samples received through the feedback endpoint.", vs, n, o->drift,
                   "%llu", (unsigned long long)o->d.labelled_ever);
    VERSION_GAUGES(b, "kiln_feedback_window_samples", "gauge",
                   "Labelled samples in the feedback window.", vs, n, o->drift, "%lld",
                   (long long)o->d.labelled);
    VERSION_GAUGES(b, "kiln_feedback_accuracy", "gauge",
                   "Accuracy over the feedback window (classification).", vs, n,
                   o->drift && o->d.labelled > 0 && o->d.classification, "%.6g", o->d.accuracy);
    VERSION_GAUGES(b, "kiln_feedback_mean_absolute_error", "gauge",
                   "Mean absolute error over the feedback window (regression).", vs, n,
                   o->drift && o->d.labelled > 0 && !o->d.classification, "%.6g", o->d.mae);
}

void kl__metrics_render(kl_server *s, kl__buf *b)
{
    process_metrics(s, b);
    pthread_rwlock_rdlock(&s->lock);
    int n = 0;
    for (int i = 0; i < s->nmodels; i++)
        n += s->models[i]->nversions;
    vsnap *vs = calloc((size_t)n + 1, sizeof *vs);
    if (!vs) {
        pthread_rwlock_unlock(&s->lock);
        b->failed = true;
        return;
    }
    n = 0;
    for (int i = 0; i < s->nmodels; i++)
        for (int k = 0; k < s->models[i]->nversions; k++)
            snapshot(&vs[n++], s->models[i]->versions[k]);
    version_metrics(b, vs, n, &s->unrouted);
    drift_metrics(b, vs, n);
    family(b, "kiln_model_load_failures_total", "counter",
           "Versions of the model that failed to load, and refusals of its config.yaml.");
    for (int i = 0; i < s->nmodels; i++) {
        kl__buf_puts(b, "kiln_model_load_failures_total{model=\"");
        put_label_value(b, s->models[i]->name);
        kl__buf_printf(b, "\"} %llu\n",
                       (unsigned long long)atomic_load(&s->models[i]->load_failures));
    }
    pthread_rwlock_unlock(&s->lock);
    free(vs);
}

/* ---- the access log ---- */

kl_status kl__access_log_open(kl_server *s, const char *path, kl_error *err)
{
    if (!path)
        return KL_OK;
    if (!strcmp(path, "-")) {
        s->access_log = stderr;
        return KL_OK;
    }
    if (!(s->access_log = fopen(path, "a")))
        return kl_error_set(err, KL_EIO, "cannot open the access log %s: %s", path,
                            strerror(errno));
    return KL_OK;
}

void kl__access_log_close(kl_server *s)
{
    if (s->access_log && s->access_log != stderr)
        fclose(s->access_log);
    s->access_log = NULL;
}

void kl__request_id_new(kl_server *s, char *out, size_t n)
{
    unsigned long long k = (unsigned long long)atomic_fetch_add(&s->next_id, 1) + 1;
    snprintf(out, n, "%08x-%llu", (unsigned)s->id_prefix, k);
}

/* The length of the UTF-8 sequence that starts with *p, from that byte alone; 0: none does. */
static int utf8_length(const unsigned char *p)
{
    if (*p < 0x80)
        return 1;
    if (*p >= 0xc2 && *p <= 0xdf)
        return 2;
    if ((*p & 0xf0) == 0xe0)
        return 3;
    if (*p >= 0xf0 && *p <= 0xf4)
        return 4;
    return 0;
}

/* Text as a JSON string: valid UTF-8 passes, any other byte becomes U+FFFD (a path is what the
 * client sent, percent-decoded). */
static void put_text(kl__buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    kl__buf_puts(b, "\"");
    while (*p) {
        int len = utf8_length(p);
        bool ok = len > 0;
        for (int i = 1; ok && i < len; i++)
            ok = (p[i] & 0xc0) == 0x80;
        /* No overlong forms, surrogates or code points past U+10FFFF. */
        if (ok && len > 2)
            ok = !(p[0] == 0xe0 && p[1] < 0xa0) && !(p[0] == 0xed && p[1] >= 0xa0) &&
                 !(p[0] == 0xf0 && p[1] < 0x90) && !(p[0] == 0xf4 && p[1] >= 0x90);
        if (!ok) {
            kl__buf_puts(b, "\\ufffd");
            p++;
        } else if (*p == '"' || *p == '\\') {
            kl__buf_printf(b, "\\%c", *p);
            p++;
        } else if (*p < 0x20) {
            kl__buf_printf(b, "\\u%04x", *p);
            p++;
        } else {
            kl__buf_put(b, (const char *)p, (size_t)len);
            p += len;
        }
    }
    kl__buf_puts(b, "\"");
}

void kl__access_log(kl_server *s, const kl__access *a)
{
    if (!s->access_log)
        return;
    time_t sec = (time_t)a->arrived_wall;
    int ms = (int)((a->arrived_wall - (double)sec) * 1000);
    struct tm tm;
    char stamp[48];
    gmtime_r(&sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    kl__buf b = {0};
    kl__buf_printf(&b, "{\"time\":\"%s.%03dZ\",\"id\":", stamp, ms < 0 ? 0 : ms > 999 ? 999 : ms);
    put_text(&b, a->id ? a->id : "");
    kl__buf_puts(&b, ",\"method\":");
    put_text(&b, a->method ? a->method : "");
    kl__buf_puts(&b, ",\"path\":");
    put_text(&b, a->path ? a->path : "");
    if (a->v) {
        kl__buf_puts(&b, ",\"model\":");
        put_text(&b, a->v->model->name);
        kl__buf_printf(&b, ",\"version\":\"%lld\"", (long long)a->v->number);
    } else {
        kl__buf_puts(&b, ",\"model\":null,\"version\":null");
    }
    kl__buf_printf(&b, ",\"status\":%u,\"latency_s\":%.6f,\"bytes_in\":%llu,\"bytes_out\":%llu",
                   a->code, a->seconds > 0 ? a->seconds : 0, (unsigned long long)a->bytes_in,
                   (unsigned long long)a->bytes_out);
    if (a->ended) {
        kl__buf_puts(&b, ",\"ended\":");
        put_text(&b, a->ended);
    }
    kl__buf_puts(&b, "}\n");
    if (!b.failed) {
        pthread_mutex_lock(&s->access_mu);
        fwrite(b.p, 1, b.n, s->access_log);
        fflush(s->access_log);
        pthread_mutex_unlock(&s->access_mu);
    }
    kl__buf_free(&b);
}
