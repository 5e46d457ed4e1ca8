/* Tests for serve/patterns/drift.c, kiln serve's drift monitoring: PSI against hand-computed values
 * (empty bins included), the binning rule against kl_modelfile_bin (ties and values outside the
 * edges), the sliding window's eviction (sample by sample and a request larger than the window),
 * prediction drift for classifiers and regression, windowed accuracy and mean absolute error from
 * feedback, the threshold flags and min_samples, a model without reference statistics, and the
 * statistics endpoint's JSON object. Reference statistics are made by hand here. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "serve/patterns/patterns.h"

#define B KL_MODELFILE_BINS

/* Edges 0, 1, ..., 10 for every feature (or output). */
static void unit_edges(float *e, int rows)
{
    for (int r = 0; r < rows; r++)
        for (int b = 0; b <= B; b++)
            e[r * (B + 1) + b] = (float)b;
}

static void uniform(float *p, int rows)
{
    for (int i = 0; i < rows * B; i++)
        p[i] = 1.0f / B;
}

static kl__drift *new_drift(const kl__drift_spec *spec)
{
    kl_error err = {0};
    kl__drift *d = NULL;
    CHECK_OK(kl__drift_new(spec, &d, &err), &err);
    if (!d)
        exit(1);
    return d;
}

static void test_psi_values(void)
{
    const double eps = KL__PSI_EPS;
    /* Equal proportions: 0. */
    float u[B];
    uniform(u, 1);
    uint32_t c[B];
    for (int b = 0; b < B; b++)
        c[b] = 7;
    CHECK_NEAR(kl__psi(u, c, B, 70), 0, 1e-12);
    /* Two bins, 3 and 1 of 4 against halves: 0.25 ln 1.5 + 0.25 ln 2. */
    float half[2] = {0.5f, 0.5f};
    uint32_t c31[2] = {3, 1};
    CHECK_NEAR(kl__psi(half, c31, 2, 4), 0.25 * log(1.5) + 0.25 * log(2.0), 1e-12);
    CHECK_NEAR(kl__psi(half, c31, 2, 4), 0.27465307216702745, 1e-12);
    /* Everything in bin 0 of a uniform reference: the 9 empty bins count at eps. */
    uint32_t one[B] = {100};
    double q = u[0]; /* 0.1 as a float */
    double want = (1 - q) * log(1 / q) + 9 * (eps - q) * log(eps / q);
    CHECK_NEAR(kl__psi(u, one, B, 100), want, 1e-12);
    CHECK_NEAR(kl__psi(u, one, B, 100), 8.28309, 1e-5);
    /* A reference bin that is empty. */
    float ref10[2] = {1.0f, 0.0f};
    uint32_t c11[2] = {1, 1};
    CHECK_NEAR(kl__psi(ref10, c11, 2, 2), -0.5 * log(0.5) + (0.5 - eps) * log(0.5 / eps), 1e-9);
    /* Both empty: no contribution. */
    uint32_t c20[2] = {2, 0};
    CHECK_NEAR(kl__psi(ref10, c20, 2, 2), 0, 1e-12);
    /* No samples: 0. */
    uint32_t none[B] = {0};
    CHECK(kl__psi(u, none, B, 0) == 0);
    /* Symmetric in p and q. */
    float q3[3] = {0.2f, 0.3f, 0.5f}, p3[3] = {0.5f, 0.3f, 0.2f};
    uint32_t cq[3] = {2, 3, 5}, cp[3] = {5, 3, 2};
    CHECK_NEAR(kl__psi(q3, cp, 3, 10), kl__psi(p3, cq, 3, 10), 1e-7);
}

/* The window's bins follow kl_modelfile_bin's rule: with a one-hot reference on the bin that
 * rule gives, the feature's PSI is 0 exactly when the sample landed there. */
static void test_binning_rule(void)
{
    float edges[B + 1] = {0, 0, 0, 1, 2, 2, 3, 4, 5, 5, 5}; /* ties, as deciles of ties give */
    float values[] = {-5, 0, 0.5f, 1, 1.5f, 2, 2.5f, 3, 4, 4.99f, 5, 7};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        int want = kl_modelfile_bin(edges, values[i]);
        float props[B] = {0};
        props[want] = 1;
        kl_modelfile_reference ref = {
            .samples = 1, .input_edges = edges, .input_proportions = props};
        float pred[2] = {0.5f, 0.5f};
        ref.predicted_proportions = pred;
        kl__drift_spec spec = {.features = 1,
                               .outputs = 2,
                               .classification = true,
                               .ref = &ref,
                               .window = 10,
                               .min_samples = 1,
                               .threshold = 0.2};
        kl__drift *d = new_drift(&spec);
        int32_t cls = 0;
        kl__drift_observe(d, &values[i], 1, &cls, NULL);
        kl__drift_summary s;
        double psi = -1;
        kl__drift_read(d, &s, &psi);
        if (!CHECK(psi == 0 && s.psi_max == 0))
            fprintf(stderr, "    value %g: kl_modelfile_bin says bin %d, PSI %g\n",
                    (double)values[i], want, psi);
        kl__drift_free(d);
    }
}

/* The same rule for many features at once, each with edges of its own (ties among them): every
 * feature's sample lands in the bin kl_modelfile_bin gives for that feature's edges, so a
 * feature whose edges were mixed up with another's, or shifted by one, has a PSI above 0. */
static void test_binning_many_features(void)
{
    enum { F = 37 };
    static float edges[F * (B + 1)], props[F * B];
    float x[F];
    for (int f = 0; f < F; f++) {
        float *e = edges + f * (B + 1);
        for (int b = 0; b <= B; b++) /* ascending, with a tie at b = 4, 5 on odd features */
            e[b] = (float)(f * 100 + b * (f % 5 + 1)) - (f % 2 && b == 5 ? (float)(f % 5 + 1) : 0);
        x[f] = e[0] + (float)((f * 7) % 12) * (float)(f % 5 + 1) * 0.9f - 1.0f;
        for (int b = 0; b < B; b++)
            props[f * B + b] = 0;
        props[f * B + kl_modelfile_bin(e, x[f])] = 1;
    }
    float pred[2] = {0.5f, 0.5f};
    kl_modelfile_reference ref = {.samples = 1,
                                  .input_edges = edges,
                                  .input_proportions = props,
                                  .predicted_proportions = pred};
    kl__drift_spec spec = {.features = F,
                           .outputs = 2,
                           .classification = true,
                           .ref = &ref,
                           .window = 4,
                           .min_samples = 1,
                           .threshold = 0.2};
    kl__drift *d = new_drift(&spec);
    int32_t cls = 0;
    kl__drift_observe(d, x, 1, &cls, NULL);
    kl__drift_summary s;
    double psi[F];
    kl__drift_read(d, &s, psi);
    int bad = 0;
    for (int f = 0; f < F; f++)
        if (psi[f] != 0 && bad++ < 3)
            fprintf(stderr, "    feature %d: value %g in bin %d by kl_modelfile_bin, PSI %g\n", f,
                    (double)x[f], kl_modelfile_bin(edges + f * (B + 1), x[f]), psi[f]);
    CHECK(bad == 0 && s.psi_max == 0);
    kl__drift_free(d);
}

/* A 2-feature classifier with unit edges and uniform reference proportions. */
typedef struct fixture {
    float edges[2 * (B + 1)], props[2 * B], pred[3];
    kl_modelfile_reference ref;
} fixture;

static void fixture_init(fixture *f)
{
    unit_edges(f->edges, 2);
    uniform(f->props, 2);
    f->pred[0] = 0.5f;
    f->pred[1] = 0.3f;
    f->pred[2] = 0.2f;
    f->ref = (kl_modelfile_reference){.samples = 100,
                                      .input_edges = f->edges,
                                      .input_proportions = f->props,
                                      .predicted_proportions = f->pred};
}

static void test_window_eviction(void)
{
    fixture fx;
    fixture_init(&fx);
    kl__drift_spec spec = {.features = 2,
                           .outputs = 3,
                           .classification = true,
                           .ref = &fx.ref,
                           .window = 4,
                           .min_samples = 1,
                           .threshold = 0.2};
    kl__drift *d = new_drift(&spec);
    kl__drift_summary s;
    double psi[2];
    kl__drift_read(d, &s, psi);
    CHECK(s.samples == 0 && s.observed == 0 && s.psi_max == 0 && !s.input_drifted);
    /* Feature 0 in bin 0 and feature 1 in bin 5, four times: a full window. */
    float x[8] = {0.5f, 5.5f, 0.5f, 5.5f, 0.5f, 5.5f, 0.5f, 5.5f};
    int32_t cls[4] = {0, 0, 0, 0};
    kl__drift_observe(d, x, 4, cls, NULL);
    uint32_t all_in_one[B] = {4};
    double one_bin = kl__psi(fx.props, all_in_one, B, 4);
    kl__drift_read(d, &s, psi);
    CHECK(s.samples == 4 && s.observed == 4);
    CHECK_NEAR(psi[0], one_bin, 1e-12);
    CHECK_NEAR(psi[1], one_bin, 1e-12);
    /* Two more samples with feature 0 in bin 9: the two oldest leave. */
    float y[4] = {9.5f, 5.5f, 9.5f, 5.5f};
    kl__drift_observe(d, y, 2, cls, NULL);
    kl__drift_read(d, &s, psi);
    uint32_t split[B] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    CHECK(s.samples == 4 && s.observed == 6);
    CHECK_NEAR(psi[0], kl__psi(fx.props, split, B, 4), 1e-12);
    CHECK_NEAR(psi[1], one_bin, 1e-12);
    CHECK(s.psi_max_feature == 1 && s.psi_max == psi[1]);
    CHECK_NEAR(s.psi_mean, (psi[0] + psi[1]) / 2, 1e-12);
    /* A request of 10 samples, one in each bin of feature 0: only its last 4 stay. */
    float z[20];
    int32_t zc[10] = {0};
    for (int i = 0; i < 10; i++) {
        z[2 * i] = (float)i + 0.5f;
        z[2 * i + 1] = 5.5f;
    }
    kl__drift_observe(d, z, 10, zc, NULL);
    kl__drift_read(d, &s, psi);
    uint32_t last4[B] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1};
    CHECK(s.samples == 4 && s.observed == 16);
    CHECK_NEAR(psi[0], kl__psi(fx.props, last4, B, 4), 1e-12);
    /* A sample at a time, around the ring many times: the counts stay exact. */
    for (int i = 0; i < 1001; i++) {
        float w[2] = {(float)(i % 10) + 0.5f, 5.5f};
        kl__drift_observe(d, w, 1, zc, NULL);
    }
    kl__drift_read(d, &s, psi);
    uint32_t ring[B] = {0}; /* samples 997..1000: bins 7, 8, 9, 0 */
    ring[7] = ring[8] = ring[9] = ring[0] = 1;
    CHECK(s.samples == 4 && s.observed == 1017);
    CHECK_NEAR(psi[0], kl__psi(fx.props, ring, B, 4), 1e-12);
    kl__drift_free(d);
}

static void test_prediction_drift(void)
{
    fixture fx;
    fixture_init(&fx);
    kl__drift_spec spec = {.features = 2,
                           .outputs = 3,
                           .classification = true,
                           .ref = &fx.ref,
                           .window = 10,
                           .min_samples = 10,
                           .threshold = 0.2};
    kl__drift *d = new_drift(&spec);
    float x[20];
    for (int i = 0; i < 20; i++)
        x[i] = (float)(i % 10) + 0.5f;
    /* Classes in the training proportions 5:3:2: no prediction drift. */
    int32_t same[10] = {0, 1, 2, 0, 1, 2, 0, 1, 0, 0};
    kl__drift_observe(d, x, 10, same, NULL);
    kl__drift_summary s;
    kl__drift_read(d, &s, NULL);
    CHECK_NEAR(s.prediction_psi, 0, 1e-6);
    CHECK(!s.prediction_drifted);
    /* All class 2: PSI of (0, 0, 1) against (0.5, 0.3, 0.2). */
    int32_t two[10] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
    kl__drift_observe(d, x, 10, two, NULL);
    kl__drift_read(d, &s, NULL);
    double eps = KL__PSI_EPS;
    double q0 = fx.pred[0], q1 = fx.pred[1], q2 = fx.pred[2];
    double want = (eps - q0) * log(eps / q0) + (eps - q1) * log(eps / q1) + (1 - q2) * log(1 / q2);
    CHECK_NEAR(s.prediction_psi, want, 1e-6);
    CHECK(s.prediction_drifted);
    kl__drift_free(d);

    /* Regression with 2 outputs: the largest output's PSI. */
    float pe[2 * (B + 1)], pp[2 * B], in_e[B + 1], in_p[B];
    unit_edges(pe, 2);
    uniform(pp, 2);
    unit_edges(in_e, 1);
    uniform(in_p, 1);
    kl_modelfile_reference rr = {.samples = 10,
                                 .input_edges = in_e,
                                 .input_proportions = in_p,
                                 .prediction_edges = pe,
                                 .prediction_proportions = pp};
    kl__drift_spec rs = {.features = 1,
                         .outputs = 2,
                         .classification = false,
                         .ref = &rr,
                         .window = 10,
                         .min_samples = 1,
                         .threshold = 0.2};
    d = new_drift(&rs);
    float xi[10], out[20];
    for (int i = 0; i < 10; i++) {
        xi[i] = (float)i + 0.5f;
        out[2 * i] = (float)i + 0.5f;          /* output 0: one per bin, as the reference */
        out[2 * i + 1] = i < 5 ? 3.5f : 20.0f; /* output 1: half in bin 3, half in bin 9 */
    }
    kl__drift_observe(d, xi, 10, NULL, out);
    kl__drift_read(d, &s, NULL);
    uint32_t c1[B] = {0, 0, 0, 5, 0, 0, 0, 0, 0, 5};
    CHECK_NEAR(s.psi_max, 0, 1e-6);
    CHECK_NEAR(s.prediction_psi, kl__psi(pp + B, c1, B, 10), 1e-12);
    CHECK(s.prediction_psi > 1 && s.prediction_drifted && !s.input_drifted);
    kl__drift_free(d);
}

static void test_feedback(void)
{
    fixture fx;
    fixture_init(&fx);
    kl__drift_spec spec = {.features = 2,
                           .outputs = 3,
                           .classification = true,
                           .ref = &fx.ref,
                           .window = 4,
                           .min_samples = 1,
                           .threshold = 0.2};
    kl__version v = {0};
    v.drift = new_drift(&spec);
    kl__drift_summary s;
    kl__drift_read(v.drift, &s, NULL);
    CHECK(s.labelled == 0 && isnan(s.accuracy) && isnan(s.mae));
    int32_t pred[3] = {0, 1, 2}, lab[3] = {0, 1, 1};
    kl__drift_feedback(&v, pred, NULL, lab, 3);
    kl__drift_read(v.drift, &s, NULL);
    CHECK(s.labelled == 3 && s.labelled_ever == 3);
    CHECK_NEAR(s.accuracy, 2.0 / 3, 1e-12);
    CHECK(isnan(s.mae));
    /* Two misses: the window keeps the last 4 of 5 samples, one of them a hit. */
    int32_t p2[2] = {2, 2}, l2[2] = {0, 1};
    kl__drift_feedback(&v, p2, NULL, l2, 2);
    kl__drift_read(v.drift, &s, NULL);
    CHECK(s.labelled == 4 && s.labelled_ever == 5);
    CHECK_NEAR(s.accuracy, 1.0 / 4, 1e-12);
    /* Many laps of hits: exactly 1. */
    for (int i = 0; i < 103; i++)
        kl__drift_feedback(&v, pred, NULL, pred, 3);
    kl__drift_read(v.drift, &s, NULL);
    CHECK(s.accuracy == 1.0 && s.labelled == 4 && s.labelled_ever == 314);
    /* A batch larger than the window: its last 4 (2 hits of 4). */
    int32_t p6[6] = {0, 0, 0, 0, 1, 1}, l6[6] = {0, 0, 1, 1, 1, 1};
    kl__drift_feedback(&v, p6, NULL, l6, 6);
    kl__drift_read(v.drift, &s, NULL);
    CHECK_NEAR(s.accuracy, 0.5, 1e-12);
    kl__drift_free(v.drift);

    /* Regression: the mean over samples of the mean absolute error over outputs. */
    kl__drift_spec rs = {.features = 2,
                         .outputs = 2,
                         .classification = false,
                         .ref = NULL,
                         .window = 3,
                         .min_samples = 1,
                         .threshold = 0.2};
    v.drift = new_drift(&rs);
    float pv[8] = {1, 2, 3, 4, 0, 0, 10, 10}, y[8] = {1.5f, 2, 3, 2, 1, -1, 10, 10};
    kl__drift_feedback(&v, NULL, pv, y, 2); /* errors 0.25, 1 */
    kl__drift_read(v.drift, &s, NULL);
    CHECK_NEAR(s.mae, 0.625, 1e-12);
    CHECK(isnan(s.accuracy) && !s.reference);
    kl__drift_feedback(&v, NULL, pv + 4, y + 4, 2); /* errors 1, 0: the 0.25 leaves */
    kl__drift_read(v.drift, &s, NULL);
    CHECK(s.labelled == 3);
    CHECK_NEAR(s.mae, 2.0 / 3, 1e-12);
    /* Without a reference, observing does nothing and the input summary stays empty. */
    float x[2] = {1, 2};
    kl__drift_observe(v.drift, x, 1, NULL, pv);
    kl__drift_read(v.drift, &s, NULL);
    CHECK(s.samples == 0 && s.psi_max == 0 && !s.input_drifted);
    kl__drift_free(v.drift);
    /* Monitoring off: a version without drift state takes feedback and says null. */
    v.drift = NULL;
    kl__drift_feedback(&v, pred, NULL, lab, 3);
    kl__buf b = {0};
    kl__drift_json(&v, &b);
    CHECK(b.p && !strcmp(b.p, "null"));
    kl__buf_free(&b);
}

static void test_threshold(void)
{
    /* Feature 0 in its reference's proportions, feature 1 all in one bin, feature 2 at a PSI
     * that equals the threshold (>= flags it). */
    float edges[3 * (B + 1)], props[3 * B], pred[2] = {0.5f, 0.5f};
    unit_edges(edges, 3);
    uniform(props, 3);
    kl_modelfile_reference ref = {.samples = 10,
                                  .input_edges = edges,
                                  .input_proportions = props,
                                  .predicted_proportions = pred};
    uint32_t c2[B] = {2, 0, 1, 1, 1, 1, 1, 1, 1, 1}; /* feature 2's counts below */
    double psi2 = kl__psi(props, c2, B, 10);
    kl__drift_spec spec = {.features = 3,
                           .outputs = 2,
                           .classification = true,
                           .ref = &ref,
                           .window = 10,
                           .min_samples = 10,
                           .threshold = psi2};
    kl__drift *d = new_drift(&spec);
    float x[30];
    int32_t cls[10] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1};
    for (int i = 0; i < 10; i++) {
        x[3 * i] = (float)i + 0.5f;
        x[3 * i + 1] = 4.5f;
        x[3 * i + 2] = i == 1 ? 0.5f : (float)i + 0.5f;
    }
    /* Nine samples: under min_samples, no flag however large the PSI. */
    kl__drift_observe(d, x, 9, cls, NULL);
    kl__drift_summary s;
    kl__drift_read(d, &s, NULL);
    CHECK(s.psi_max > 1 && !s.input_drifted && s.samples == 9);
    kl__drift_observe(d, x + 27, 1, cls + 9, NULL);
    double psi[3];
    kl__drift_read(d, &s, psi);
    CHECK_NEAR(psi[0], 0, 1e-6);
    CHECK(psi[2] == psi2);
    CHECK(s.over == 2 && s.input_drifted && s.psi_max_feature == 1);
    CHECK_NEAR(s.prediction_psi, 0, 1e-6);
    CHECK(!s.prediction_drifted);
    /* The JSON object carries every feature's PSI. */
    kl__version v = {0};
    v.drift = d;
    kl__buf b = {0};
    kl__drift_json(&v, &b);
    CHECK(b.p && strstr(b.p, "\"window\":10,") && strstr(b.p, "\"samples\":10,") &&
          strstr(b.p, "\"features_over_threshold\":2,\"drifted\":true,\"psi\":[") &&
          strstr(b.p, "\"psi_max_feature\":1,") &&
          strstr(b.p, "\"feedback\":{\"samples\":0,\"labelled\":0,\"accuracy\":null}"));
    kl__buf_free(&b);
    kl__drift_free(d);
    /* min_samples above the window is the window. */
    spec.min_samples = 50;
    d = new_drift(&spec);
    kl__drift_observe(d, x, 10, cls, NULL);
    kl__drift_read(d, &s, NULL);
    CHECK(s.min_samples == 10 && s.input_drifted);
    kl__drift_free(d);
}

static const check_case cases[] = {
    CHECK_CASE(test_psi_values),
    CHECK_CASE(test_binning_rule),
    CHECK_CASE(test_window_eviction),
    CHECK_CASE(test_prediction_drift),
    CHECK_CASE(test_feedback),
    CHECK_CASE(test_threshold),
    CHECK_CASE(test_binning_many_features),
};

int main(int argc, char **argv)
{
    return check_run("test_serve_drift", cases, CHECK_NCASES(cases), argc, argv);
}
