/* Tests for the TPE sampler (tune/tpe.c, tune/tpe_parzen.c): Optuna's split and weight rules, the
 * normal quantile, the Parzen estimators against values worked by hand (mus, sigmas after the
 * magic clip, weights, densities of the truncated mixtures, the categorical rows), the sweep's
 * tpe settings and their errors, determinism by seed, the random start being the random
 * sampler's trials, BOHB's choice of rung with ASHA, the constant liar, and that TPE beats random
 * search on a synthetic objective over many seeds, sequentially and with 4 parallel workers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/sched.h"
#include "kiln/sweep.h"
#include "kiln/tpe.h"
#include "sweep_fixture.h"
#include "tune/tpe_impl.h"

static void test_rules(void)
{
    CHECK(kl__tpe_gamma(0) == 0 && kl__tpe_gamma(1) == 1 && kl__tpe_gamma(10) == 1);
    CHECK(kl__tpe_gamma(11) == 2 && kl__tpe_gamma(30) == 3 && kl__tpe_gamma(31) == 4);
    CHECK(kl__tpe_gamma(250) == 25 && kl__tpe_gamma(1000) == 25);
    double w[40];
    kl__tpe_weights(24, w);
    CHECK(w[0] == 1 && w[23] == 1);
    kl__tpe_weights(25, w);
    CHECK(w[0] == 1 && w[24] == 1);
    kl__tpe_weights(28, w); /* linspace(1/28, 1, 3), then 25 ones */
    CHECK_NEAR(w[0], 1.0 / 28, 1e-15);
    CHECK_NEAR(w[1], (1.0 / 28 + 1) / 2, 1e-15);
    CHECK(w[2] == 1 && w[3] == 1 && w[27] == 1);
    for (int i = 0; i < 28; i++)
        CHECK(kl__tpe_weight(28, i) == w[i]);
    kl__tpe_weights(26, w); /* a ramp of one: [1/26] */
    CHECK_NEAR(w[0], 1.0 / 26, 1e-15);
    CHECK(w[1] == 1);
}

static void test_ppf(void)
{
    CHECK(kl__norm_ppf(0.5) == 0);
    CHECK_NEAR(kl__norm_ppf(0.975), 1.959963984540054, 1e-13);
    CHECK_NEAR(kl__norm_ppf(0.3), -0.5244005127080407, 1e-13);
    CHECK(isinf(kl__norm_ppf(0)) && kl__norm_ppf(0) < 0 && isinf(kl__norm_ppf(1)));
    /* Round trips through the CDF, in both tails and the middle. */
    static const double ps[] = {1e-300, 1e-100, 1e-10, 1e-3, 0.02,
                                0.0243, 0.3,    0.7,   0.99, 0.999999};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) {
        double x = kl__norm_ppf(ps[i]);
        double back = 0.5 * erfc(-x / sqrt(2));
        CHECK_NEAR(back / ps[i], 1, 1e-12);
    }
    CHECK_NEAR(kl__log_gauss_mass(-INFINITY, INFINITY), 0, 1e-15);
    CHECK_NEAR(kl__log_gauss_mass(0, INFINITY), log(0.5), 1e-15);
    /* Far in the upper tail, where 1 - Phi would cancel: erfc keeps it. */
    CHECK_NEAR(kl__log_gauss_mass(10, 11), log(0.5 * (erfc(10 / sqrt(2)) - erfc(11 / sqrt(2)))),
               1e-9);
}

/* Observations 0.2 and 0.6 on [0, 1], weights 1: with the prior (mu 0.5) the sorted mus are 0.2,
 * 0.5, 0.6; the gaps give sigma 0.3 (the first end: its inner gap), 0.1 (the last end), both
 * clipped to at least 1 / min(100, 1 + 3) = 0.25; the prior's sigma is 1; weights 1/3 each. */
static void test_parzen_continuous(void)
{
    double mu[3], sigma[3], w[3], logc[3], tmp[3], logs[3];
    int32_t order[3];
    kl__parzen p = {.mu = mu, .sigma = sigma, .w = w, .logc = logc, .tmp = tmp, .logs = logs};
    const double obs[] = {0.2, 0.6}, wobs[] = {1, 1};
    kl__parzen_fit(&p, obs, wobs, 2, 1.0, 0, 1, false, false, order);
    CHECK(p.n == 3 && mu[0] == 0.2 && mu[1] == 0.6 && mu[2] == 0.5);
    CHECK_NEAR(sigma[0], 0.3, 1e-15);
    CHECK_NEAR(sigma[1], 0.25, 1e-15);
    CHECK(sigma[2] == 1);
    CHECK_NEAR(w[0], 1.0 / 3, 1e-15);
    CHECK_NEAR(w[2], 1.0 / 3, 1e-15);
    /* sum_k w_k phi((x - mu_k) / s_k) / (s_k Z_k), worked out separately. */
    CHECK_NEAR(kl__parzen_log_pdf(&p, 0.4), 0.21111027381616995, 1e-12);
    CHECK_NEAR(kl__parzen_log_pdf(&p, 0.95), -0.5922465652109438, 1e-12);
    /* No observation: the prior alone, a normal truncated to [0, 1] with sigma 1. */
    kl__parzen_fit(&p, obs, wobs, 0, 1.0, 0, 1, false, false, order);
    CHECK(p.n == 1 && mu[0] == 0.5 && sigma[0] == 1 && w[0] == 1);
    double z = 0.5 * (erfc(-0.5 / sqrt(2)) - erfc(0.5 / sqrt(2)));
    CHECK_NEAR(kl__parzen_log_pdf(&p, 0.5), -0.5 * log(2 * 3.14159265358979323846) - log(z), 1e-12);
    /* Draws stay inside the bounds, whatever u. */
    kl__parzen_fit(&p, obs, wobs, 2, 1.0, 0, 1, false, false, order);
    for (double u = 0; u < 1; u += 0.0625) {
        double x = kl__parzen_sample(&p, u, u), y = kl__parzen_sample(&p, 1 - u / 2, u * u);
        CHECK(x >= 0 && x <= 1 && y >= 0 && y <= 1);
    }
    /* Observations given in sorted order (the sampler keeps them so) fit the same mixture, the
     * components in that order. */
    double mu2[4], sigma2[4], w2[4], logc2[4], tmp2[4], logs2[4];
    int32_t order2[4];
    kl__parzen q = {.mu = mu2, .sigma = sigma2, .w = w2, .logc = logc2, .tmp = tmp2, .logs = logs2};
    const double sorted_obs[] = {0.1, 0.5, 0.7}, w3[] = {1, 1, 1};
    kl__parzen_fit(&q, sorted_obs, w3, 3, 1.0, 0, 1, false, true, order2);
    double mu3[4], sigma3[4], w4[4], logc3[4], tmp3[4], logs3[4];
    kl__parzen r = {.mu = mu3, .sigma = sigma3, .w = w4, .logc = logc3, .tmp = tmp3, .logs = logs3};
    const double shuffled[] = {0.7, 0.1, 0.5};
    kl__parzen_fit(&r, shuffled, w3, 3, 1.0, 0, 1, false, false, order2);
    CHECK(sigma2[0] == sigma3[1] && sigma2[1] == sigma3[2] && sigma2[2] == sigma3[0]);
    CHECK(sigma2[3] == 1 && sigma3[3] == 1);
    CHECK_NEAR(kl__parzen_log_pdf(&q, 0.42), kl__parzen_log_pdf(&r, 0.42), 1e-13);
    kl__parzen_fit(&p, obs, wobs, 2, 1.0, 0, 1, false, false, order);
    /* u2 = 1/2 draws the component's median: the mean itself for the prior (symmetric in its
     * bounds), u1 = 0.9 picking the prior. */
    CHECK_NEAR(kl__parzen_sample(&p, 0.9, 0.5), 0.5, 1e-12);
}

/* int_uniform {min: 1, max: 3}: the range [0.5, 3.5], one observation at 1. Mus 1 and 2 (the
 * prior); both ends take the inner gap 1; the clip's floor is 3 / 3 = 1; the prior's sigma 3. A
 * value's probability is the mixture's mass in [x - 1/2, x + 1/2]. */
static void test_parzen_discrete(void)
{
    double mu[2], sigma[2], w[2], logc[2], tmp[2], tmp2[2], logs[2];
    int32_t order[2];
    kl__parzen p = {
        .mu = mu, .sigma = sigma, .w = w, .logc = logc, .tmp = tmp, .tmp2 = tmp2, .logs = logs};
    const double obs[] = {1}, wobs[] = {1};
    kl__parzen_fit(&p, obs, wobs, 1, 1.0, 0.5, 3.5, true, false, order);
    CHECK(mu[0] == 1 && mu[1] == 2 && sigma[0] == 1 && sigma[1] == 3 && w[0] == 0.5);
    CHECK_NEAR(kl__parzen_log_pdf(&p, 1), -0.8142186482680835, 1e-12);
    CHECK_NEAR(kl__parzen_log_pdf(&p, 3), -1.5711953212878427, 1e-12);
    double total = 0;
    for (int x = 1; x <= 3; x++)
        total += exp(kl__parzen_log_pdf(&p, x));
    CHECK_NEAR(total, 1, 1e-12);
    for (double u = 0; u < 1; u += 0.03125) {
        double x = kl__parzen_sample(&p, u, 1 - u);
        CHECK(x == 1 || x == 2 || x == 3);
    }
    /* A wide integer range, where kernels are far wider than a value's interval and the masses
     * come by quadrature: against erfc, kernel by kernel. */
    enum { N = 40 };
    double bmu[N + 1], bsig[N + 1], bw[N + 1], blogc[N + 1], btmp[N + 1], btmp2[N + 1],
        blogs[N + 1], bobs[N], bwobs[N];
    int32_t border[N + 1];
    for (int i = 0; i < N; i++) {
        bobs[i] = 100 + (i * 37) % 400;
        bwobs[i] = 1;
    }
    kl__parzen b = {.mu = bmu,
                    .sigma = bsig,
                    .w = bw,
                    .logc = blogc,
                    .tmp = btmp,
                    .tmp2 = btmp2,
                    .logs = blogs};
    kl__parzen_fit(&b, bobs, bwobs, N, 1.0, 15.5, 1024.5, true, false, border);
    double worst = 0;
    for (int x = 16; x <= 1024; x += 7) {
        double m = 0;
        for (int k = 0; k <= N; k++) {
            double s = bsig[k], r = sqrt(0.5);
            double z = 0.5 * (erfc(-(15.5 - bmu[k]) / s * r) - erfc(-(1024.5 - bmu[k]) / s * r));
            m += bw[k] * 0.5 *
                 (erfc(-(x - 0.5 - bmu[k]) / s * r) - erfc(-(x + 0.5 - bmu[k]) / s * r)) / z;
        }
        double d = fabs(kl__parzen_log_pdf(&b, x) - log(m));
        worst = d > worst ? d : worst;
    }
    CHECK(worst < 1e-9);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Every bit of kl__parzen_log_pdf pinned, as it computed before a proposal was made faster (it
 * now skips the blocks of kernels whose terms are exactly 0): bad groups of 1,200 observations
 * packed about one point, as TPE packs its trials, sorted and weighted as the sampler gives them,
 * in a continuous range, a wide integer range (quadrature), and a narrow one (erfc for kernels
 * that are narrow against a value's interval); each scored at 97 points across its range, tails
 * included. The hash is FNV-1a of the densities' bits. */
static void test_parzen_pinned(void)
{
    enum { N = 1200 };
    static const struct {
        double low, high, center, spread;
        bool discrete;
        uint64_t hash;
    } mix[] = {
        {-11.512925464970229, 0, -5.8, 0.9, false, 0xd735a65304e57b60ull},
        {15.5, 1024.5, 400, 60, true, 0x2f4b9dc5cddcc122ull},
        {0.5, 8.5, 3, 1.5, true, 0x4f6065bdcaed6335ull},
    };
    double *buf = calloc(9 * (N + 1), sizeof *buf);
    int32_t *order = calloc(N + 1, sizeof *order);
    if (!CHECK(buf && order))
        goto out;
    double *obs = buf, *wobs = buf + (N + 1);
    kl__parzen p = {.mu = buf + 2 * (N + 1),
                    .sigma = buf + 3 * (N + 1),
                    .w = buf + 4 * (N + 1),
                    .logc = buf + 5 * (N + 1),
                    .tmp = buf + 6 * (N + 1),
                    .tmp2 = buf + 7 * (N + 1),
                    .logs = buf + 8 * (N + 1)};
    for (size_t m = 0; m < sizeof mix / sizeof *mix; m++) {
        for (int i = 0; i < N; i++) {
            double u = ((i * 7919) % N + 0.5) / N,
                   x = mix[m].center + mix[m].spread * kl__norm_ppf(u);
            x = fmin(fmax(x, mix[m].low), mix[m].high);
            obs[i] =
                mix[m].discrete ? fmin(fmax(nearbyint(x), mix[m].low + 0.5), mix[m].high - 0.5) : x;
        }
        qsort(obs, N, sizeof *obs, cmp_double);
        kl__tpe_weights(N, wobs);
        kl__parzen_fit(&p, obs, wobs, N, 1.0, mix[m].low, mix[m].high, mix[m].discrete, true,
                       order);
        uint64_t h = 0xcbf29ce484222325ull;
        for (int i = 0; i <= 96; i++) {
            double x = mix[m].low + (mix[m].high - mix[m].low) * i / 96;
            if (mix[m].discrete)
                x = fmin(fmax(nearbyint(x), mix[m].low + 0.5), mix[m].high - 0.5);
            double v = kl__parzen_log_pdf(&p, x);
            uint64_t bits;
            memcpy(&bits, &v, sizeof bits);
            for (int b = 0; b < 8; b++)
                h = (h ^ ((bits >> (8 * b)) & 0xff)) * 0x100000001b3ull;
        }
        if (!check_(h == mix[m].hash, __FILE__, __LINE__, "the densities are the pinned ones"))
            fprintf(stderr, "    mixture %zu: hash 0x%016llxull, pinned 0x%016llxull\n", m,
                    (unsigned long long)h, (unsigned long long)mix[m].hash);
    }
out:
    free(buf);
    free(order);
}

/* Three choices, observations 0, 0, 2 with weights 1, prior weight 1: each row is 1/4 for every
 * choice plus 1 at its own, over 7/4; the prior's row is 1/3 each; all four weigh 1/4. */
static void test_parzen_categorical(void)
{
    const int obs[] = {0, 0, 2};
    const double wobs[] = {1, 1, 1};
    double pmf[3];
    kl__parzen_categorical(obs, wobs, 3, 1.0, 3, pmf);
    CHECK_NEAR(pmf[0], 0.47619047619047616, 1e-15);
    CHECK_NEAR(pmf[1], 0.19047619047619047, 1e-15);
    CHECK_NEAR(pmf[2], 0.33333333333333337, 1e-15);
    const double w[] = {0.25, 0.25, 0.25, 0.25};
    /* u1 picks the component, u2 the choice in its row: row 0 is (5/7, 1/7, 1/7). */
    CHECK(kl__parzen_categorical_sample(obs, w, 3, 1.0, 3, 0.1, 0.7) == 0);
    CHECK(kl__parzen_categorical_sample(obs, w, 3, 1.0, 3, 0.1, 0.8) == 1);
    CHECK(kl__parzen_categorical_sample(obs, w, 3, 1.0, 3, 0.1, 0.9) == 2);
    CHECK(kl__parzen_categorical_sample(obs, w, 3, 1.0, 3, 0.9, 0.5) == 1); /* the prior's row */
}

#define HEAD                                                                           \
    "base: base.yaml\nmetric: {name: val_loss}\nrun_cap: %d\nseed: %d\nmethod: %s\n%s" \
    "parameters:\n"                                                                    \
    "  optimizer.lr: {log_uniform_values: {min: 1e-4, max: 1}}\n"                      \
    "  model.layers.1.rate: {distribution: uniform, min: 0, max: 0.9}\n"               \
    "  model.layers.0.units: {int_uniform: {min: 16, max: 512}}\n"                     \
    "  optimizer.name: {values: [adam, sgd, adamw]}\n"                                 \
    "  train.batch_size: {q_uniform: {min: 32, max: 256, q: 32}}\n"                    \
    "  data.limit: {value: 1000}\n"                                                    \
    "scheduler: %s\n"

static kl_sweep *make_sweep(int run_cap, int seed, const char *method, const char *extra,
                            const char *sched)
{
    char text[2048];
    snprintf(text, sizeof text, HEAD, run_cap, seed, method, extra, sched);
    kl_error err = {0};
    kl_sweep *s = load(text, &err);
    if (!check_(s != NULL, __FILE__, __LINE__, "sweep loads"))
        fprintf(stderr, "    %s\n", err.msg);
    return s;
}

/* The objective, smallest at lr 10^-2.2, rate 0.3, units 300, sgd and batch 96, plus 1/t: what a
 * trial "reports" at epoch t. */
static double objective(char **ov, int t)
{
    double lr = 0, rate = 0, units = 0, batch = 0, opt = 0.5;
    for (int i = 0; i < 6; i++) {
        const char *v = strchr(ov[i], '=') + 1;
        if (!strncmp(ov[i], "optimizer.lr=", 13))
            lr = strtod(v, NULL);
        else if (!strncmp(ov[i], "model.layers.1.rate=", 20))
            rate = strtod(v, NULL);
        else if (!strncmp(ov[i], "model.layers.0.units=", 21))
            units = strtod(v, NULL);
        else if (!strncmp(ov[i], "train.batch_size=", 17))
            batch = strtod(v, NULL);
        else if (!strcmp(v, "sgd"))
            opt = 0;
    }
    double a = log10(lr) + 2.2, b = (rate - 0.3) * 3, c = (units - 300) / 150,
           d = (batch - 96) / 64;
    return a * a + b * b + c * c + d * d + opt + 1.0 / t;
}

/* A sweep driven to its end with `workers` simulated workers that each train one epoch per
 * round, in worker order. Returns the best final (max_t) value; with d, keeps the first 200
 * trials' overrides, the rung each TPE proposal was fitted on, and a hash of every trial's. */
typedef struct drive {
    char **ov[200];
    int nov[200];
    int budget[200]; /* the rung each proposal was fitted on, 0: random */
    uint64_t hash;   /* FNV-1a of every trial's overrides in trial order, each ending in '\n' */
} drive;

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ '\n') * 0x100000001b3ull;
}

static double run(const kl_sweep *sw, int workers, bool tpe, drive *d)
{
    kl_error err = {0};
    kl_sched *s = kl_sched_new(&sw->sched, sw->maximize, kl_sweep_trials(sw), &err);
    kl_tpe *t = tpe ? kl_tpe_new(sw, &err) : NULL;
    int64_t run_trial[8], until[8];
    int64_t ntrials = kl_sweep_trials(sw);
    char ***ovs = calloc((size_t)ntrials, sizeof *ovs);
    double best = INFINITY;
    for (int w = 0; w < workers; w++)
        run_trial[w] = -1;
    bool any = true;
    while (any && s && ovs) {
        any = false;
        for (int w = 0; w < workers; w++) {
            if (run_trial[w] < 0) {
                kl_job job = kl_sched_next(s);
                if (job.kind != KL_JOB_NEW && job.kind != KL_JOB_PROMOTE)
                    continue;
                if (job.kind == KL_JOB_NEW) {
                    int n = 0;
                    kl_status st =
                        tpe ? kl_tpe_suggest(t, s, job.trial, &ovs[job.trial], &n, &err)
                            : kl_sweep_overrides(sw, job.trial, &ovs[job.trial], &n, &err);
                    if (!check_(st == KL_OK && n == 6, __FILE__, __LINE__, "a trial is proposed"))
                        break;
                    if (d && job.trial < 200 && tpe)
                        d->budget[job.trial] = kl_tpe_last_budget(t, NULL);
                }
                run_trial[w] = job.trial;
                until[w] = job.until_t;
            }
            any = true;
            int64_t tr = run_trial[w];
            int ep = kl_sched_last_t(s, tr) + 1;
            double v = objective(ovs[tr], ep);
            kl_decision dec = kl_sched_result(s, tr, ep, v);
            if (ep == sw->sched.max_t && v < best)
                best = v;
            if (dec != KL_DECIDE_CONTINUE || ep >= until[w])
                run_trial[w] = -1;
        }
    }
    if (d)
        d->hash = 0xcbf29ce484222325ull;
    for (int64_t i = 0; ovs && i < ntrials; i++) {
        for (int j = 0; d && ovs[i] && j < 6; j++)
            d->hash = fnv1a(d->hash, ovs[i][j]);
        if (d && i < 200) {
            d->ov[i] = ovs[i];
            d->nov[i] = ovs[i] ? 6 : 0;
        } else {
            kl_sweep_overrides_free(ovs[i], 6);
        }
    }
    free(ovs);
    kl_tpe_free(t);
    kl_sched_free(s);
    return best;
}

static void drive_free(drive *d, int n)
{
    for (int i = 0; i < n; i++)
        kl_sweep_overrides_free(d->ov[i], d->nov[i]);
}

static void test_settings(void)
{
    kl_sweep *s = make_sweep(20, 0, "bayes", "", "{type: fifo, max_t: 1}");
    if (s) {
        CHECK(s->tpe.on && !s->grid && s->tpe.n_startup_trials == 10);
        CHECK(s->tpe.n_ei_candidates == 24 && s->tpe.prior_weight == 1 && s->tpe.constant_liar);
    }
    kl_sweep_free(s);
    s = make_sweep(20, 0, "tpe",
                   "tpe: {n_startup_trials: 5, n_ei_candidates: 48, prior_weight: 2, "
                   "constant_liar: false}\n",
                   "{type: fifo, max_t: 1}");
    if (s)
        CHECK(s->tpe.n_startup_trials == 5 && s->tpe.n_ei_candidates == 48 &&
              s->tpe.prior_weight == 2 && !s->tpe.constant_liar);
    kl_sweep_free(s);
    static const struct {
        const char *method, *extra, *want;
    } bad[] = {
        {"random", "tpe: {n_startup_trials: 5}\n", "6:1: tpe: tpe settings need method: tpe"},
        {"tpe", "tpe: {n_startup: 5}\n",
         "tpe.n_startup: unknown key; valid keys: n_startup_trials"},
        {"tpe", "tpe: {n_ei_candidates: 0}\n", "tpe.n_ei_candidates: expected an integer >= 1"},
        {"tpe", "tpe: {n_ei_candidates: 5000}\n", "tpe.n_ei_candidates: 5000 is too large"},
        {"tpe", "tpe: {prior_weight: 0}\n", "tpe.prior_weight: expected a positive number, got 0"},
        {"tpe", "tpe: {constant_liar: maybe}\n", "tpe.constant_liar: expected one of"},
        {"tpes", "", "method: expected one of"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char text[2048];
        snprintf(text, sizeof text, HEAD, 20, 0, bad[i].method, bad[i].extra, "{type: fifo}");
        kl_error err = {0};
        kl_sweep *b = load(text, &err);
        if (!check_(!b && strstr(err.msg, bad[i].want), __FILE__, __LINE__, bad[i].want))
            fprintf(stderr, "    got: %s\n", err.msg);
        kl_sweep_free(b);
    }
    kl_error err = {0};
    kl_sweep *b = load("base: base.yaml\nmetric: {name: val_loss}\nmethod: tpe\n"
                       "parameters: {optimizer.lr: {values: [0.1]}}\n",
                       &err);
    CHECK(!b && strstr(err.msg, "run_cap: missing; method tpe needs run_cap"));
    kl_sweep_free(b);
}

/* Before a model is fit, trial i is the random sampler's trial i; the same seed gives the same
 * proposals, another seed others; proposals come in order only. */
static void test_determinism(void)
{
    kl_sweep *a = make_sweep(60, 7, "tpe", "", "{type: asha, max_t: 9, grace_period: 1}");
    kl_sweep *r = make_sweep(60, 7, "random", "", "{type: asha, max_t: 9, grace_period: 1}");
    kl_sweep *o = make_sweep(60, 8, "tpe", "", "{type: asha, max_t: 9, grace_period: 1}");
    if (!a || !r || !o)
        goto out;
    drive d1 = {0}, d2 = {0}, d3 = {0};
    run(a, 2, true, &d1);
    run(a, 2, true, &d2);
    run(o, 2, true, &d3);
    int same = 1, differ = 0, random_start = 1, fitted = 0;
    for (int i = 0; i < 60; i++) {
        for (int j = 0; j < 6; j++) {
            same &= !strcmp(d1.ov[i][j], d2.ov[i][j]);
            differ += strcmp(d1.ov[i][j], d3.ov[i][j]) != 0;
        }
        fitted += d1.budget[i] > 0;
        if (d1.budget[i] == 0) {
            char **ro;
            int rn;
            kl_error err = {0};
            CHECK(kl_sweep_overrides(r, i, &ro, &rn, &err) == KL_OK);
            for (int j = 0; j < 6; j++)
                random_start &= !strcmp(d1.ov[i][j], ro[j]);
            kl_sweep_overrides_free(ro, rn);
        }
    }
    CHECK(same);
    CHECK(differ > 60 * 4);
    CHECK(random_start);
    CHECK(fitted > 30 && d1.budget[0] == 0 && d1.budget[9] == 0);
    drive_free(&d1, 60);
    drive_free(&d2, 60);
    drive_free(&d3, 60);

    kl_error err = {0};
    kl_sched *s = kl_sched_new(&a->sched, false, 60, &err);
    kl_tpe *t = kl_tpe_new(a, &err);
    char **ov;
    int n;
    kl_sched_next(s);
    CHECK(kl_tpe_suggest(t, s, 1, &ov, &n, &err) == KL_ERANGE && strstr(err.msg, "in order"));
    CHECK(kl_tpe_suggest(t, s, 0, &ov, &n, &err) == KL_OK && kl_tpe_count(t) == 1);
    kl_sweep_overrides_free(ov, n);
    kl_tpe_free(t);
    kl_sched_free(s);
out:
    kl_sweep_free(a);
    kl_sweep_free(r);
    kl_sweep_free(o);
}

/* BOHB's rule: the highest rung with at least max(n_startup_trials, d + 3) results. Five
 * modelled parameters: max(4, 8) = 8. With ASHA (1, 3, 9 epochs) the model fits on rung 1 epoch
 * first, and on 3 epochs once eight trials reached it. */
static void test_rungs(void)
{
    kl_sweep *sw = make_sweep(60, 1, "tpe", "tpe: {n_startup_trials: 4}\n",
                              "{type: asha, max_t: 9, grace_period: 1, reduction_factor: 3}");
    if (!sw)
        return;
    drive d = {0};
    run(sw, 1, true, &d);
    int first1 = -1, first3 = -1;
    for (int i = 0; i < 60; i++) {
        if (d.budget[i] == 1 && first1 < 0)
            first1 = i;
        if (d.budget[i] == 3 && first3 < 0)
            first3 = i;
    }
    /* One worker: trial i starts after i trials reached rung 0 (promotions come first). */
    CHECK(first1 == 8);
    CHECK(first3 > first1);
    for (int i = 0; i < first1; i++)
        CHECK(d.budget[i] == 0);
    drive_free(&d, 60);
    kl_sweep_free(sw);
}

/* The constant liar: a running trial enters g at the worst value, so the next proposal differs
 * from the one made without the liar, and the results counted exclude it. */
static void test_liar(void)
{
    kl_sweep *on =
        make_sweep(30, 2, "tpe", "tpe: {n_startup_trials: 8}\n", "{type: fifo, max_t: 1}");
    kl_sweep *off = make_sweep(30, 2, "tpe", "tpe: {n_startup_trials: 8, constant_liar: false}\n",
                               "{type: fifo, max_t: 1}");
    if (!on || !off)
        goto out;
    kl_sweep *sws[2] = {on, off};
    char **last[2] = {NULL, NULL};
    int64_t counted[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        kl_error err = {0};
        kl_sched *s = kl_sched_new(&sws[k]->sched, false, 30, &err);
        kl_tpe *t = kl_tpe_new(sws[k], &err);
        int n;
        for (int i = 0; i < 12; i++) { /* 12 finished trials */
            char **ov;
            kl_job job = kl_sched_next(s);
            CHECK(kl_tpe_suggest(t, s, job.trial, &ov, &n, &err) == KL_OK);
            kl_sched_result(s, job.trial, 1, objective(ov, 1));
            kl_sweep_overrides_free(ov, n);
        }
        char **pending; /* trial 12 runs; trial 13 is proposed meanwhile */
        kl_job job = kl_sched_next(s);
        CHECK(kl_tpe_suggest(t, s, job.trial, &pending, &n, &err) == KL_OK);
        kl_sweep_overrides_free(pending, n);
        job = kl_sched_next(s);
        CHECK(kl_tpe_suggest(t, s, job.trial, &last[k], &n, &err) == KL_OK);
        kl_tpe_last_budget(t, &counted[k]);
        kl_tpe_free(t);
        kl_sched_free(s);
    }
    CHECK(counted[0] == 12 && counted[1] == 12);
    int differ = 0;
    for (int j = 0; last[0] && last[1] && j < 6; j++)
        differ += strcmp(last[0][j], last[1][j]) != 0;
    CHECK(differ > 0);
    kl_sweep_overrides_free(last[0], 6);
    kl_sweep_overrides_free(last[1], 6);
out:
    kl_sweep_free(on);
    kl_sweep_free(off);
}

/* Every proposal pinned, as the sampler made them before its suggest was made faster
 * (tune/tpe_parzen.c skipping the kernels that add exact zeros, tune/tpe.c's cached fits): a
 * resumed sweep replays its journal's trials by proposing them again, so any change to the
 * sampler's arithmetic that moves one proposal by one bit of its text must fail here. Two sweeps:
 * 400 trials one at a time under fifo (a bad group of hundreds of kernels, every numeric kind:
 * log, uniform, int and q), and 150 under ASHA with 4 workers (rungs and liars). The hashes are
 * of every trial's overrides; the last trial of the first is spelled out. */
static void test_pinned(void)
{
    static const struct {
        int trials, seed, workers;
        const char *sched;
        uint64_t hash;
    } pins[] = {
        {400, 11, 1, "{type: fifo, max_t: 1}", 0x5fc990041419d19eull},
        {150, 5, 4, "{type: asha, max_t: 9, grace_period: 1, reduction_factor: 3}",
         0x75da401e96a2e16dull},
    };
    /* The first sweep's trial 199, fitted on 199 results. */
    static const char *const trial199[6] = {
        "optimizer.lr=0.010310549", "model.layers.1.rate=0.22275057",
        "model.layers.0.units=295", "optimizer.name=sgd",
        "train.batch_size=96",      "data.limit=1000"};
    for (size_t k = 0; k < sizeof pins / sizeof *pins; k++) {
        kl_sweep *sw = make_sweep(pins[k].trials, pins[k].seed, "tpe", "", pins[k].sched);
        if (!sw)
            continue;
        drive d = {0};
        run(sw, pins[k].workers, true, &d);
        if (!check_(d.hash == pins[k].hash, __FILE__, __LINE__,
                    "the proposals are the pinned ones"))
            fprintf(stderr, "    %s: hash 0x%016llxull, pinned 0x%016llxull\n", pins[k].sched,
                    (unsigned long long)d.hash, (unsigned long long)pins[k].hash);
        for (int j = 0; k == 0 && d.ov[199] && j < 6; j++)
            if (!check_(!strcmp(d.ov[199][j], trial199[j]), __FILE__, __LINE__,
                        "trial 199's override is the pinned one"))
                fprintf(stderr, "    got %s, pinned %s\n", d.ov[199][j], trial199[j]);
        drive_free(&d, pins[k].trials < 200 ? pins[k].trials : 200);
        kl_sweep_free(sw);
    }
}

/* TPE against random search on the objective, the same seeds for both: the mean best value and
 * the number of seeds it wins. The figures are deterministic (Philox); the bounds leave room. */
static void quality(const char *sched, int workers, int trials, double *tpe_mean, double *rnd_mean,
                    int *wins)
{
    *tpe_mean = *rnd_mean = 0;
    *wins = 0;
    const int seeds = 40;
    for (int seed = 0; seed < seeds; seed++) {
        kl_sweep *t = make_sweep(trials, seed, "tpe", "", sched);
        kl_sweep *r = make_sweep(trials, seed, "random", "", sched);
        if (t && r) {
            double bt = run(t, workers, true, NULL), br = run(r, workers, false, NULL);
            *tpe_mean += bt / seeds;
            *rnd_mean += br / seeds;
            *wins += bt < br;
        }
        kl_sweep_free(t);
        kl_sweep_free(r);
    }
}

static void test_beats_random(void)
{
    double tm, rm;
    int wins;
    /* Values are the objective + 1/t: the best possible is 1 / max_t. */
    quality("{type: fifo, max_t: 1}", 1, 60, &tm, &rm, &wins);
    printf("fifo, 1 worker, 60 trials, 40 seeds: best %.3f (tpe) vs %.3f (random) above the "
           "optimum, tpe better in %d\n",
           tm - 1, rm - 1, wins);
    CHECK(tm - 1 < 0.5 * (rm - 1) && wins >= 30);
    quality("{type: asha, max_t: 9, grace_period: 1, reduction_factor: 3}", 4, 150, &tm, &rm,
            &wins);
    printf("asha, 4 workers, 150 trials, 40 seeds: best %.3f (tpe) vs %.3f (random) above the "
           "optimum, tpe better in %d\n",
           tm - 1.0 / 9, rm - 1.0 / 9, wins);
    CHECK(tm - 1.0 / 9 < 0.7 * (rm - 1.0 / 9) && wins >= 26);
}

static const check_case cases[] = {
    CHECK_CASE(test_rules),
    CHECK_CASE(test_ppf),
    CHECK_CASE(test_parzen_continuous),
    CHECK_CASE(test_parzen_discrete),
    CHECK_CASE(test_parzen_pinned),
    CHECK_CASE(test_parzen_categorical),
    CHECK_CASE(test_settings),
    CHECK_CASE(test_determinism),
    CHECK_CASE(test_rungs),
    CHECK_CASE(test_liar),
    CHECK_CASE(test_pinned),
    CHECK_CASE(test_beats_random),
};

int main(int argc, char **argv)
{
    return sweep_fixture_run("test_tpe", "tpe", cases, CHECK_NCASES(cases), argc, argv);
}
