/* Drift monitoring of a served version: sliding windows of its traffic's bin indices against the
 * reference statistics of its model file, read as PSI per feature and of the predictions, and a
 * window of labelled feedback (serve/README.md, "Drift"). metrics.c and the statistics endpoint
 * read the summaries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve/patterns/patterns.h"

#define BINS KL_MODELFILE_BINS

/* A window of 1000 samples unless its bin indices would pass this; then as many as fit. */
#define DEFAULT_WINDOW       1000
#define DEFAULT_WINDOW_BYTES (64ll << 20)

struct kl__drift {
    pthread_mutex_t mu;
    kl__drift_spec spec;
    const kl_modelfile_reference *ref;
    /* The reference's inner input edges (1 to BINS - 1) by edge, then feature: binning a sample
     * compares it with one row of edges at a time, which vectorises across features (9 scalar
     * comparisons per feature were most of the drift monitor's time, bench_serve_codec). */
    float *inner; /* (BINS - 1, features) */
    /* The input window: the ring's row head is the next to write; fill rows are in use. */
    uint8_t *bins;    /* (window, features) */
    uint32_t *counts; /* (features, BINS) */
    /* The predictions, in the same ring: a classifier's class (one column, outputs categories),
     * or each regression output's bin (outputs columns, BINS categories). */
    int32_t *pred;     /* (window, pcols) */
    uint32_t *pcounts; /* (pcols, pcats) */
    const float *pref; /* (pcols, pcats) reference proportions */
    int pcols, pcats;
    int64_t head, fill;
    uint64_t observed;
    /* The feedback window: 1 or 0 per sample (hit or miss), or its mean absolute error. */
    float *fb; /* (window) */
    int64_t fhead, ffill;
    double fsum;
    uint64_t labelled;
};

double kl__psi(const float *ref, const uint32_t *counts, int bins, int64_t n)
{
    if (n <= 0)
        return 0;
    double psi = 0;
    for (int b = 0; b < bins; b++) {
        double p = (double)counts[b] / (double)n, q = ref[b];
        if (p < KL__PSI_EPS)
            p = KL__PSI_EPS;
        if (q < KL__PSI_EPS)
            q = KL__PSI_EPS;
        psi += (p - q) * log(p / q);
    }
    return psi;
}

/* kl_modelfile_bin's rule, branch-free: with ascending edges, the bin is how many of the inner
 * edges are <= v. */
static inline int bin_of(const float *edges, float v)
{
    int b = 0;
    for (int k = 1; k < BINS; k++)
        b += edges[k] <= v;
    return b;
}

kl_status kl__drift_new(const kl__drift_spec *spec, kl__drift **out, kl_error *err)
{
    *out = NULL;
    KL_ASSERT(spec->window > 0 && spec->features > 0 && spec->outputs > 0);
    kl__drift *d = calloc(1, sizeof *d);
    if (!d)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    pthread_mutex_init(&d->mu, NULL);
    d->spec = *spec;
    if (d->spec.min_samples > d->spec.window)
        d->spec.min_samples = d->spec.window;
    const kl_modelfile_reference *r = spec->ref;
    size_t w = (size_t)spec->window, f = (size_t)spec->features;
    bool ok = (d->fb = calloc(w, sizeof *d->fb)) != NULL;
    if (ok && r) {
        d->ref = r;
        bool cls = spec->classification;
        d->pcols = cls ? 1 : spec->outputs;
        d->pcats = cls ? spec->outputs : BINS;
        d->pref = cls ? r->predicted_proportions : r->prediction_proportions;
        ok = (d->bins = calloc(w, f)) && (d->counts = calloc(f * BINS, sizeof *d->counts)) &&
             (d->pred = calloc(w * (size_t)d->pcols, sizeof *d->pred)) &&
             (d->pcounts = calloc((size_t)(d->pcols * d->pcats), sizeof *d->pcounts)) &&
             (d->inner = calloc(f * (BINS - 1), sizeof *d->inner));
        for (size_t k = 0; ok && k < BINS - 1; k++)
            for (size_t i = 0; i < f; i++)
                d->inner[k * f + i] = r->input_edges[i * (BINS + 1) + k + 1];
    }
    if (!ok) {
        kl__drift_free(d);
        return kl_error_set(err, KL_ENOMEM,
                            "out of memory for a drift window of %lld samples of %lld features: "
                            "lower monitoring.window in the model's config.yaml",
                            (long long)spec->window, (long long)spec->features);
    }
    *out = d;
    return KL_OK;
}

void kl__drift_free(kl__drift *d)
{
    if (!d)
        return;
    pthread_mutex_destroy(&d->mu);
    free(d->bins);
    free(d->counts);
    free(d->pred);
    free(d->pcounts);
    free(d->fb);
    free(d->inner);
    free(d);
}

/* bin_of for every feature of one sample x into row, an edge row at a time. */
static void bin_row(const float *inner, int64_t features, const float *x, uint8_t *row)
{
    memset(row, 0, (size_t)features);
    for (int k = 0; k < BINS - 1; k++) {
        const float *e = inner + k * features;
        for (int64_t f = 0; f < features; f++)
            row[f] += e[f] <= x[f];
    }
}

/* The prediction categories of sample i (pcols of them). */
static void pred_cats(const kl__drift *d, const int32_t *classes, const float *out, int64_t i,
                      int32_t *cat)
{
    if (d->spec.classification) {
        int32_t c = classes[i];
        cat[0] = c >= 0 && c < d->pcats ? c : 0;
        return;
    }
    for (int k = 0; k < d->pcols; k++)
        cat[k] = bin_of(d->ref->prediction_edges + k * (BINS + 1), out[i * d->pcols + k]);
}

void kl__drift_observe(kl__drift *d, const float *x, int64_t n, const int32_t *classes,
                       const float *out)
{
    if (!d || !d->ref || n <= 0)
        return;
    const int64_t F = d->spec.features, W = d->spec.window;
    /* Only the last W samples can stay in the window. Binning them, the bulk of the work, needs
     * no lock. */
    int64_t first = n > W ? n - W : 0, m = n - first;
    uint8_t *rows = malloc((size_t)(m * F));
    int32_t *cats = malloc((size_t)(m * d->pcols) * sizeof *cats);
    if (!rows || !cats) { /* a window that misses some samples is still a window */
        free(rows);
        free(cats);
        return;
    }
    for (int64_t i = 0; i < m; i++) {
        bin_row(d->inner, F, x + (first + i) * F, rows + i * F);
        pred_cats(d, classes, out, first + i, cats + i * d->pcols);
    }
    pthread_mutex_lock(&d->mu);
    for (int64_t i = 0; i < m; i++) {
        uint8_t *slot = d->bins + d->head * F;
        int32_t *pslot = d->pred + d->head * d->pcols;
        if (d->fill == W) { /* evict the oldest, which the head overwrites */
            for (int64_t f = 0; f < F; f++)
                d->counts[f * BINS + slot[f]]--;
            for (int k = 0; k < d->pcols; k++)
                d->pcounts[k * d->pcats + pslot[k]]--;
        } else {
            d->fill++;
        }
        const uint8_t *row = rows + i * F;
        memcpy(slot, row, (size_t)F);
        for (int64_t f = 0; f < F; f++)
            d->counts[f * BINS + row[f]]++;
        for (int k = 0; k < d->pcols; k++) {
            pslot[k] = cats[i * d->pcols + k];
            d->pcounts[k * d->pcats + pslot[k]]++;
        }
        d->head = (d->head + 1) % W;
    }
    d->observed += (uint64_t)n;
    pthread_mutex_unlock(&d->mu);
    free(rows);
    free(cats);
}

void kl__drift_label(kl__drift *d, const int32_t *predicted, const float *predicted_values,
                     const void *labels, int64_t n)
{
    if (!d || n <= 0)
        return;
    const int64_t W = d->spec.window;
    const int k = d->spec.outputs;
    pthread_mutex_lock(&d->mu);
    for (int64_t i = n > W ? n - W : 0; i < n; i++) {
        float e;
        if (d->spec.classification) {
            e = predicted[i] == ((const int32_t *)labels)[i] ? 1.0f : 0.0f;
        } else {
            const float *y = (const float *)labels + i * k, *p = predicted_values + i * k;
            double sum = 0;
            for (int j = 0; j < k; j++)
                sum += fabs((double)p[j] - (double)y[j]);
            e = (float)(sum / k);
        }
        if (d->ffill == W)
            d->fsum -= d->fb[d->fhead];
        else
            d->ffill++;
        d->fb[d->fhead] = e;
        d->fsum += e;
        d->fhead = (d->fhead + 1) % W;
        if (d->fhead == 0) { /* once a lap, the exact sum, so rounding never accumulates */
            d->fsum = 0;
            for (int64_t j = 0; j < d->ffill; j++)
                d->fsum += d->fb[j];
        }
    }
    d->labelled += (uint64_t)n;
    pthread_mutex_unlock(&d->mu);
}

void kl__drift_read(kl__drift *d, kl__drift_summary *s, double *psi)
{
    const kl__drift_spec *sp = &d->spec;
    *s = (kl__drift_summary){.reference = d->ref != NULL,
                             .classification = sp->classification,
                             .window = sp->window,
                             .min_samples = sp->min_samples,
                             .features = sp->features,
                             .threshold = sp->threshold,
                             .psi_max_feature = -1,
                             .accuracy = NAN,
                             .mae = NAN};
    pthread_mutex_lock(&d->mu);
    s->samples = d->fill;
    s->observed = d->observed;
    s->labelled = d->ffill;
    s->labelled_ever = d->labelled;
    if (d->ffill > 0) {
        double mean = d->fsum / (double)d->ffill;
        if (sp->classification)
            s->accuracy = mean;
        else
            s->mae = mean;
    }
    if (d->ref) {
        double sum = 0;
        for (int64_t f = 0; f < sp->features; f++) {
            double p =
                kl__psi(d->ref->input_proportions + f * BINS, d->counts + f * BINS, BINS, d->fill);
            if (psi)
                psi[f] = p;
            sum += p;
            if (s->psi_max_feature < 0 || p > s->psi_max) {
                s->psi_max = p;
                s->psi_max_feature = f;
            }
            s->over += p >= sp->threshold;
        }
        s->psi_mean = sum / (double)sp->features;
        for (int k = 0; k < d->pcols; k++) {
            double p =
                kl__psi(d->pref + k * d->pcats, d->pcounts + k * d->pcats, d->pcats, d->fill);
            if (p > s->prediction_psi)
                s->prediction_psi = p;
        }
        bool enough = d->fill > 0 && d->fill >= sp->min_samples;
        s->input_drifted = enough && s->psi_max >= sp->threshold;
        s->prediction_drifted = enough && s->prediction_psi >= sp->threshold;
    }
    pthread_mutex_unlock(&d->mu);
}

/* ---- per version ---- */

kl_status kl__version_drift_init(kl__version *v, kl_error *err)
{
    const kl_serve_model_config *c = &v->cfg;
    const kl_modelfile_signature *sig = v->sig;
    int64_t window = c->drift_window;
    if (window == 0)
        return KL_OK;
    if (window < 0) {
        window = DEFAULT_WINDOW_BYTES / sig->features;
        if (window > DEFAULT_WINDOW)
            window = DEFAULT_WINDOW;
        if (window < 1)
            window = 1;
    }
    kl__drift_spec spec = {.features = sig->features,
                           .outputs = sig->outputs,
                           .classification = sig->task == KL_TASK_CLASSIFICATION,
                           .ref = kl_modelfile_ref(v->mf[0]),
                           .window = window,
                           .min_samples = c->drift_min_samples,
                           .threshold = c->psi_threshold};
    kl_error e = {0};
    kl_status st = kl__drift_new(&spec, &v->drift, &e);
    if (st != KL_OK)
        return kl_error_set(err, st, "model %s version %lld: %s", v->model->name,
                            (long long)v->number, e.msg);
    return KL_OK;
}

void kl__drift_feedback(kl__version *v, const int32_t *predicted, const float *predicted_values,
                        const void *labels, int64_t n)
{
    kl__drift_label(v->drift, predicted, predicted_values, labels, n);
}

/* A finite number, or null. */
static void put_num(kl__buf *b, double x)
{
    if (isfinite(x))
        kl__buf_printf(b, "%.6g", x);
    else
        kl__buf_puts(b, "null");
}

void kl__drift_json(kl__version *v, kl__buf *b)
{
    kl__drift *d = v->drift;
    if (!d) {
        kl__buf_puts(b, "null");
        return;
    }
    double *psi = d->ref ? malloc((size_t)d->spec.features * sizeof *psi) : NULL;
    kl__drift_summary s;
    kl__drift_read(d, &s, psi);
    kl__buf_printf(b,
                   "{\"window\":%lld,\"min_samples\":%lld,\"psi_threshold\":%.6g,\"samples\":%lld,"
                   "\"observed\":%llu,\"reference\":%s",
                   (long long)s.window, (long long)s.min_samples, s.threshold, (long long)s.samples,
                   (unsigned long long)s.observed, s.reference ? "true" : "false");
    if (s.reference) {
        kl__buf_puts(b, ",\"input\":{\"psi_max\":");
        put_num(b, s.psi_max);
        kl__buf_printf(b, ",\"psi_max_feature\":%lld,\"psi_mean\":", (long long)s.psi_max_feature);
        put_num(b, s.psi_mean);
        kl__buf_printf(b, ",\"features_over_threshold\":%lld,\"drifted\":%s,\"psi\":",
                       (long long)s.over, s.input_drifted ? "true" : "false");
        if (psi) {
            kl__buf_puts(b, "[");
            for (int64_t f = 0; f < s.features; f++) {
                if (f)
                    kl__buf_puts(b, ",");
                put_num(b, psi[f]);
            }
            kl__buf_puts(b, "]");
        } else {
            kl__buf_puts(b, "null"); /* out of memory for the list */
        }
        kl__buf_puts(b, "},\"prediction\":{\"psi\":");
        put_num(b, s.prediction_psi);
        kl__buf_printf(b, ",\"drifted\":%s}", s.prediction_drifted ? "true" : "false");
    } else {
        kl__buf_puts(b, ",\"input\":null,\"prediction\":null");
    }
    kl__buf_printf(
        b, ",\"feedback\":{\"samples\":%lld,\"labelled\":%llu,\"%s\":", (long long)s.labelled,
        (unsigned long long)s.labelled_ever, s.classification ? "accuracy" : "mae");
    put_num(b, s.classification ? s.accuracy : s.mae);
    kl__buf_puts(b, "}}");
    free(psi);
}
