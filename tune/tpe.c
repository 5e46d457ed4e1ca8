/* The TPE sampler (include/kiln/tpe.h): which results it fits on (BOHB's rule on the rungs of
 * ASHA and Hyperband, Optuna's ranking of every trial that reported for fifo and the median
 * rule), the good/bad split with running trials as the constant liar, and each parameter's best
 * of n_ei_candidates draws from l by l(x) / g(x). The estimators are tune/tpe_parzen.c's; the
 * random start is the random sampler's own draws (tune/sweep_space.c). The coordinator calls it
 * when a new trial starts, and again for each such trial when it replays a journal. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/rng.h"
#include "kiln/tpe.h"
#include "tune/sweep_impl.h"
#include "tune/tpe_impl.h"

/* One trial's place in the good/bad split: sorted by (tier, loss, trial), smaller first. */
typedef struct tpe_obs {
    int32_t trial;
    double tier; /* 0 at a rung; -t for fifo and median (deeper ranks first); +inf: a liar */
    double loss; /* the value, negated when maximizing; +inf when not finite or failed */
} tpe_obs;

struct kl_tpe {
    const kl_sweep *sw;
    int np;
    int64_t n, cap; /* trials proposed, and the room in every array below */
    double *x;      /* [cap][np]: each trial's coordinates (NAN for a value parameter) */
    int budget;
    int64_t nresults;
    /* Scratch for one proposal. */
    tpe_obs *obs;
    int32_t *order, *ib, *ia; /* sort scratch; the good and bad groups' values or trials */
    uint8_t *good;
    int32_t *gpos;      /* [cap]: a trial's place in its group, in trial order */
    int64_t ngroup[3];  /* the groups' sizes (1: good, 2: bad) */
    int32_t **sorted;   /* [np]: a range parameter's trials by (coordinate, trial) */
    double *wt, *logwt; /* [cap]: a trial's weight in its group, and its log where not 1 */
    /* [np][cap]: by parameter and trial, the sigma its kernel was fitted with last, that
     * sigma's log and its log mass (kl__parzen_memo): most kernels keep their sigma from one
     * proposal to the next. */
    double **msig, **mlogs, **mlmass;
    double *xb, *xa, *wb, *wa;
    double *lmu, *lsigma, *lw, *llogc, *gmu, *gsigma, *gw, *glogc, *tmp, *tmp2, *llogs, *glogs;
    double *pl, *pg;      /* categorical pmfs, [the most values of any parameter] */
    double *cand, *score; /* [n_ei_candidates]: one parameter's draws and their scores */
};

static bool is_categorical(const kl_sweep_param *p)
{
    return p->dist == KL_DIST_VALUES || p->dist == KL_DIST_GRID;
}

/* A numeric parameter's space for the estimators: log space for log_uniform_values; the integer
 * (int_uniform) or the multiple's index k (q_uniform, value k * q) widened by 1/2 each side. */
static void space(const kl_sweep_param *p, double *low, double *high, bool *discrete)
{
    *discrete = p->dist == KL_DIST_INT_UNIFORM || p->dist == KL_DIST_Q_UNIFORM;
    if (p->dist == KL_DIST_LOG_UNIFORM) {
        *low = log(p->min);
        *high = log(p->max);
    } else if (p->dist == KL_DIST_Q_UNIFORM) {
        kl__sweep_q_range(p, low, high);
        *low -= 0.5;
        *high += 0.5;
    } else if (p->dist == KL_DIST_INT_UNIFORM) {
        *low = p->min - 0.5;
        *high = p->max + 0.5;
    } else {
        *low = p->min;
        *high = p->max;
    }
}

/* A value (as its override text reads back) as a coordinate, and a coordinate as a value. */
static double coord_of(const kl_sweep_param *p, double v)
{
    if (p->dist == KL_DIST_LOG_UNIFORM)
        return log(v);
    if (p->dist == KL_DIST_Q_UNIFORM)
        return nearbyint(v / p->q);
    return v;
}

static double value_of(const kl_sweep_param *p, double x)
{
    if (p->dist == KL_DIST_LOG_UNIFORM)
        return fmin(fmax(exp(x), p->min), p->max);
    if (p->dist == KL_DIST_Q_UNIFORM)
        return x * p->q;
    return x;
}

kl_tpe *kl_tpe_new(const kl_sweep *sw, kl_error *err)
{
    kl_tpe *t = calloc(1, sizeof *t);
    int most = 1;
    for (int j = 0; j < sw->nparams; j++)
        if (is_categorical(&sw->params[j]) && sw->params[j].nvalues > most)
            most = sw->params[j].nvalues;
    if (t) {
        t->pl = calloc((size_t)most, sizeof *t->pl);
        t->pg = calloc((size_t)most, sizeof *t->pg);
        t->sorted = calloc((size_t)sw->nparams + 1, sizeof *t->sorted);
        t->msig = calloc((size_t)sw->nparams + 1, sizeof *t->msig);
        t->mlogs = calloc((size_t)sw->nparams + 1, sizeof *t->mlogs);
        t->mlmass = calloc((size_t)sw->nparams + 1, sizeof *t->mlmass);
        t->cand = calloc((size_t)sw->tpe.n_ei_candidates + 1, sizeof *t->cand);
        t->score = calloc((size_t)sw->tpe.n_ei_candidates + 1, sizeof *t->score);
    }
    if (!t || !t->pl || !t->pg || !t->sorted || !t->cand || !t->score || !t->msig || !t->mlogs ||
        !t->mlmass) {
        kl_tpe_free(t);
        kl_error_set(err, KL_ENOMEM, "out of memory making the TPE sampler");
        return NULL;
    }
    t->sw = sw;
    t->np = sw->nparams;
    return t;
}

void kl_tpe_free(kl_tpe *t)
{
    if (!t)
        return;
    void *arrays[] = {t->x,     t->obs,    t->order, t->ib,    t->ia,     t->good, t->xb,
                      t->xa,    t->wb,     t->wa,    t->lmu,   t->lsigma, t->lw,   t->llogc,
                      t->gmu,   t->gsigma, t->gw,    t->glogc, t->pl,     t->pg,   t->tmp,
                      t->llogs, t->glogs,  t->tmp2,  t->wt,    t->logwt};
    for (size_t i = 0; i < sizeof arrays / sizeof *arrays; i++)
        free(arrays[i]);
    for (int j = 0; j < t->np; j++) {
        free(t->sorted ? t->sorted[j] : NULL);
        free(t->msig ? t->msig[j] : NULL);
        free(t->mlogs ? t->mlogs[j] : NULL);
        free(t->mlmass ? t->mlmass[j] : NULL);
    }
    free(t->sorted);
    free(t->msig);
    free(t->mlogs);
    free(t->mlmass);
    free(t->gpos);
    free(t->cand);
    free(t->score);
    free(t);
}

int64_t kl_tpe_count(const kl_tpe *t)
{
    return t->n;
}

int kl_tpe_last_budget(const kl_tpe *t, int64_t *nresults)
{
    if (nresults)
        *nresults = t->nresults;
    return t->budget;
}

static bool grow1(void **p, int64_t n, size_t size)
{
    void *q = realloc(*p, (size_t)n * size);
    if (!q)
        return false;
    *p = q;
    return true;
}

/* Room for need trials in every array (+1 for the prior's component). */
static bool reserve(kl_tpe *t, int64_t need)
{
    if (need <= t->cap)
        return true;
    int64_t cap = t->cap ? t->cap * 2 : 64;
    if (cap < need)
        cap = need;
    if ((uint64_t)cap + 1 > SIZE_MAX / sizeof(double) / (size_t)(t->np + 1))
        return false;
    int64_t c1 = cap + 1;
    bool ok = grow1((void **)&t->x, cap * t->np, sizeof *t->x) &&
              grow1((void **)&t->obs, cap, sizeof *t->obs) &&
              grow1((void **)&t->order, c1, sizeof *t->order) &&
              grow1((void **)&t->ib, cap, sizeof *t->ib) &&
              grow1((void **)&t->ia, cap, sizeof *t->ia) &&
              grow1((void **)&t->good, cap, sizeof *t->good) &&
              grow1((void **)&t->gpos, cap, sizeof *t->gpos);
    for (int j = 0; ok && j < t->np; j++) {
        ok = grow1((void **)&t->sorted[j], cap, sizeof **t->sorted) &&
             grow1((void **)&t->msig[j], cap, sizeof **t->msig) &&
             grow1((void **)&t->mlogs[j], cap, sizeof **t->mlogs) &&
             grow1((void **)&t->mlmass[j], cap, sizeof **t->mlmass);
        for (int64_t i = t->cap; ok && i < cap; i++)
            t->msig[j][i] = NAN; /* nothing fitted there yet */
    }
    double **d[] = {&t->xb,  &t->xa,    &t->wb,    &t->wa,     &t->lmu, &t->lsigma,
                    &t->lw,  &t->llogc, &t->gmu,   &t->gsigma, &t->gw,  &t->glogc,
                    &t->tmp, &t->llogs, &t->glogs, &t->tmp2,   &t->wt,  &t->logwt};
    for (size_t i = 0; ok && i < sizeof d / sizeof *d; i++)
        ok = grow1((void **)d[i], c1, sizeof(double));
    if (ok)
        t->cap = cap;
    return ok;
}

/* Results needed before the model is fit: n_startup_trials, and BOHB's N_min + 2 = d + 3 for d
 * modelled parameters when that is more. */
static int64_t enough(const kl_tpe *t)
{
    int d = 0;
    for (int j = 0; j < t->np; j++)
        d += t->sw->params[j].dist != KL_DIST_VALUE;
    return t->sw->tpe.n_startup_trials > d + 3 ? t->sw->tpe.n_startup_trials : d + 3;
}

static double loss_of(const kl_tpe *t, double v)
{
    return isfinite(v) ? (t->sw->maximize ? -v : v) : INFINITY;
}

/* ASHA and Hyperband: the highest rung of bracket 0 (whose milestones every bracket's rungs
 * share) where at least enough() trials before `trial` recorded (BOHB's rule). Its results are
 * ranked; the trials that reported only below it (stopped or still paused there, so judged
 * worse at a lower rung, as Optuna ranks pruned trials below deeper ones) and failed ones rank
 * after them, and so do (constant liar) running trials. Returns the count at the rung. */
static int64_t gather_rungs(kl_tpe *t, const kl_sched *s, int64_t trial, int64_t *nobs)
{
    int64_t need = enough(t), count = 0;
    double v;
    t->budget = 0;
    for (int k = kl_sched_num_rungs(s) - 1; k >= 0 && !t->budget; k--) {
        int m = kl_sched_milestone(s, k);
        count = 0;
        for (int64_t j = 0; j < trial && count < need; j++)
            count += kl_sched_value_at(s, j, m, &v);
        if (count >= need)
            t->budget = m;
    }
    if (!t->budget)
        return 0;
    count = *nobs = 0;
    for (int64_t j = 0; j < trial; j++) {
        kl_trial_state st = kl_sched_state(s, j);
        if (kl_sched_value_at(s, j, t->budget, &v)) {
            t->obs[(*nobs)++] = (tpe_obs){(int32_t)j, 0, loss_of(t, v)};
            count++;
        } else if (st == KL_TRIAL_RUNNING ? t->sw->tpe.constant_liar
                                          : kl_sched_last_t(s, j) > 0 || st == KL_TRIAL_FAILED) {
            t->obs[(*nobs)++] = (tpe_obs){(int32_t)j, INFINITY, INFINITY};
        }
    }
    return count;
}

/* fifo and the median rule: every trial that reported, ranked as Optuna ranks pruned trials: the
 * more epochs the better, then by its last value; running (or requeued) trials are the liars. */
static int64_t gather_all(kl_tpe *t, const kl_sched *s, int64_t trial, int64_t *nobs)
{
    int64_t count = 0;
    *nobs = 0;
    for (int64_t j = 0; j < trial; j++) {
        kl_trial_state st = kl_sched_state(s, j);
        if (st == KL_TRIAL_RUNNING || st == KL_TRIAL_PAUSED) {
            if (t->sw->tpe.constant_liar)
                t->obs[(*nobs)++] = (tpe_obs){(int32_t)j, INFINITY, INFINITY};
            continue;
        }
        double v = st == KL_TRIAL_FAILED ? NAN : kl_sched_last(s, j);
        t->obs[(*nobs)++] = (tpe_obs){(int32_t)j, -kl_sched_last_t(s, j), loss_of(t, v)};
        count++;
    }
    t->budget = count >= enough(t) ? t->sw->sched.max_t : 0;
    return count;
}

static int cmp_obs(const void *a, const void *b)
{
    const tpe_obs *x = a, *y = b;
    if (x->tier != y->tier)
        return x->tier < y->tier ? -1 : 1;
    if (x->loss != y->loss)
        return x->loss < y->loss ? -1 : 1;
    return (x->trial > y->trial) - (x->trial < y->trial);
}

/* Sorts the history and marks each trial's group in good[]: 1 for the best gamma(n) of the n
 * results, 2 for the others and the liars (which rank last), 0 for trials not in the history. */
static void split(kl_tpe *t, int64_t trial, int64_t nobs, int64_t nresults)
{
    int nbelow = kl__tpe_gamma(nresults), nbest = 0;
    if (trial > 0)
        memset(t->good, 0, (size_t)trial);
    /* Only the best nbelow (at most 25) need ranking: keep them sorted in a small buffer. */
    tpe_obs best[25];
    for (int64_t k = 0; k < nobs; k++) {
        t->good[t->obs[k].trial] = 2;
        if (nbest == nbelow && (nbelow == 0 || cmp_obs(&t->obs[k], &best[nbest - 1]) >= 0))
            continue;
        int i = nbest < nbelow ? nbest++ : nbest - 1;
        for (; i > 0 && cmp_obs(&t->obs[k], &best[i - 1]) < 0; i--)
            best[i] = best[i - 1];
        best[i] = t->obs[k];
    }
    for (int i = 0; i < nbest; i++)
        t->good[best[i].trial] = 1;
    t->ngroup[0] = t->ngroup[1] = t->ngroup[2] = 0;
    for (int64_t i = 0; i < trial; i++)
        t->gpos[i] = (int32_t)t->ngroup[t->good[i]]++;
    /* Each trial's weight in its group (Optuna's, by its place in the group in trial order),
     * and its log: once here for every parameter's fits. */
    for (int64_t i = 0; i < trial; i++)
        if (t->good[i]) {
            double w = kl__tpe_weight((int)t->ngroup[t->good[i]], t->gpos[i]);
            t->wt[i] = w;
            t->logwt[i] = w == 1 ? 0 : log(w);
        }
}

/* A range parameter's coordinates of one group (1: good, 2: bad) in ascending order (ties by
 * trial), with their weights and trials. */
static int collect_sorted(const kl_tpe *t, int64_t trial, int j, uint8_t group, double *x,
                          double *w, int32_t *id)
{
    int n = 0;
    for (int64_t k = 0; k < trial; k++) {
        int32_t i = t->sorted[j][k];
        if (t->good[i] != group)
            continue;
        x[n] = t->x[i * t->np + j];
        id[n] = i;
        w[n++] = t->wt[i];
    }
    return n;
}

/* Adds the trial's coordinate to parameter j's order: after every equal one (lower trials). */
static void insert_sorted(kl_tpe *t, int64_t trial, int j)
{
    int32_t *a = t->sorted[j];
    double x = t->x[trial * t->np + j];
    int64_t lo = 0, hi = trial;
    while (lo < hi) {
        int64_t mid = (lo + hi) / 2;
        if (t->x[a[mid] * t->np + j] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(a + lo + 1, a + lo, (size_t)(trial - lo) * sizeof *a);
    a[lo] = (int32_t)trial;
}

static void draw(uint64_t seed, int64_t trial, uint64_t block, double *u1, double *u2)
{
    uint32_t w[4];
    kl_rng_block(seed, KL_RNG_TPE, (uint64_t)trial, block, w);
    *u1 = (double)(((uint64_t)w[0] << 21) | (w[1] >> 11)) * 0x1p-53;
    *u2 = (double)(((uint64_t)w[2] << 21) | (w[3] >> 11)) * 0x1p-53;
}

/* Parameter j's coordinates of the good (1) and bad (2) trials, in trial order. */
static int collect(const kl_tpe *t, int64_t trial, int j, uint8_t group, double *x)
{
    int n = 0;
    for (int64_t i = 0; i < trial; i++)
        if (t->good[i] == group)
            x[n++] = t->x[i * t->np + j];
    return n;
}

/* A categorical parameter's best candidate: an index into its values. */
static int propose_categorical(kl_tpe *t, const kl_sweep_param *p, int64_t trial, int j)
{
    int nb = collect(t, trial, j, 1, t->xb), na = collect(t, trial, j, 2, t->xa);
    double pw = t->sw->tpe.prior_weight;
    for (int i = 0; i < nb; i++)
        t->ib[i] = (int32_t)t->xb[i];
    for (int i = 0; i < na; i++)
        t->ia[i] = (int32_t)t->xa[i];
    kl__tpe_weights(nb, t->wb);
    kl__tpe_weights(na, t->wa);
    kl__parzen_categorical(t->ib, t->wb, nb, pw, p->nvalues, t->pl);
    kl__parzen_categorical(t->ia, t->wa, na, pw, p->nvalues, t->pg);
    /* l's normalised component weights, the prior's last, for drawing from it. */
    double sum = pw;
    for (int i = 0; i < nb; i++)
        sum += t->wb[i];
    for (int i = 0; i < nb; i++)
        t->lw[i] = t->wb[i] / sum;
    t->lw[nb] = pw / sum;
    int best = 0;
    double best_score = -INFINITY;
    for (int c = 0; c < t->sw->tpe.n_ei_candidates; c++) {
        double u1, u2;
        draw(t->sw->seed, trial, (uint64_t)j * (uint64_t)t->sw->tpe.n_ei_candidates + c, &u1, &u2);
        int k = kl__parzen_categorical_sample(t->ib, t->lw, nb, pw, p->nvalues, u1, u2);
        double score = log(t->pl[k]) - log(t->pg[k]);
        if (c == 0 || score > best_score) {
            best = k;
            best_score = score;
        }
    }
    return best;
}

/* A numeric parameter's best candidate, as a coordinate. */
static double propose_numeric(kl_tpe *t, const kl_sweep_param *p, int64_t trial, int j)
{
    double low, high;
    bool discrete;
    space(p, &low, &high, &discrete);
    int nb = collect_sorted(t, trial, j, 1, t->xb, t->wb, t->ib);
    int na = collect_sorted(t, trial, j, 2, t->xa, t->wa, t->ia);
    kl__parzen l = {.mu = t->lmu,
                    .sigma = t->lsigma,
                    .w = t->lw,
                    .logc = t->llogc,
                    .tmp = t->tmp,
                    .tmp2 = t->tmp2,
                    .logs = t->llogs};
    kl__parzen g = {.mu = t->gmu,
                    .sigma = t->gsigma,
                    .w = t->gw,
                    .logc = t->glogc,
                    .tmp = t->tmp,
                    .tmp2 = t->tmp2,
                    .logs = t->glogs};
    double pw = t->sw->tpe.prior_weight;
    kl__parzen_memo lm = {t->ib, t->logwt, t->msig[j], t->mlogs[j], t->mlmass[j]};
    kl__parzen_memo gm = {t->ia, t->logwt, t->msig[j], t->mlogs[j], t->mlmass[j]};
    kl__parzen_fit_memo(&l, t->xb, t->wb, nb, pw, low, high, discrete, true, t->order, &lm);
    kl__parzen_fit_memo(&g, t->xa, t->wa, na, pw, low, high, discrete, true, t->order, &gm);
    double best = 0, best_score = -INFINITY;
    for (int c = 0; c < t->sw->tpe.n_ei_candidates; c++) {
        double u1, u2;
        draw(t->sw->seed, trial, (uint64_t)j * (uint64_t)t->sw->tpe.n_ei_candidates + c, &u1, &u2);
        double x = kl__parzen_sample(&l, u1, u2), score = 0;
        int same = 0; /* a discrete draw may repeat one scored already */
        while (same < c && t->cand[same] != x)
            same++;
        score = same < c ? t->score[same] : kl__parzen_log_pdf(&l, x) - kl__parzen_log_pdf(&g, x);
        t->cand[c] = x;
        t->score[c] = score;
        if (c == 0 || score > best_score) {
            best = x;
            best_score = score;
        }
    }
    return best;
}

/* Parameter j's value for the trial as override text in buf (or one of p->values), its
 * coordinate stored: from the model when fitted, else the random sampler's draw. */
static const char *propose(kl_tpe *t, int64_t trial, int j, char *buf, size_t cap)
{
    const kl_sweep_param *p = &t->sw->params[j];
    double *x = &t->x[trial * t->np + j];
    if (p->dist == KL_DIST_VALUE) {
        *x = NAN;
        return p->values[0];
    }
    double u = kl__sweep_unit(t->sw->seed, trial, j);
    if (is_categorical(p)) {
        int k = t->budget ? propose_categorical(t, p, trial, j) : kl__sweep_draw_index(p, u);
        *x = k;
        return p->values[k];
    }
    double v =
        t->budget ? value_of(p, propose_numeric(t, p, trial, j)) : kl__sweep_draw_range(p, u);
    kl__sweep_format(p, v, buf, cap);
    *x = coord_of(p, strtod(buf, NULL));
    insert_sorted(t, trial, j);
    return buf;
}

kl_status kl_tpe_suggest(kl_tpe *t, const kl_sched *sched, int64_t trial, char ***out, int *n,
                         kl_error *err)
{
    *out = NULL;
    *n = 0;
    if (trial != t->n || trial >= kl_sweep_trials(t->sw))
        return kl_error_set(err, KL_ERANGE,
                            "%s: the TPE sampler proposes trials in order: trial %lld asked, "
                            "%lld is next (of %lld)",
                            t->sw->path, (long long)trial, (long long)t->n,
                            (long long)kl_sweep_trials(t->sw));
    if (!reserve(t, trial + 1))
        return kl_error_set(err, KL_ENOMEM, "out of memory proposing trial %lld", (long long)trial);
    int64_t nobs = 0;
    kl_sched_kind kind = t->sw->sched.kind;
    t->nresults = kind == KL_SCHED_ASHA || kind == KL_SCHED_HYPERBAND
                      ? gather_rungs(t, sched, trial, &nobs)
                      : gather_all(t, sched, trial, &nobs);
    if (t->budget)
        split(t, trial, nobs, t->nresults);
    char **o = calloc((size_t)t->np, sizeof *o);
    for (int j = 0; o && j < t->np; j++) {
        char buf[64];
        if (!(o[j] =
                  kl__sweep_override(&t->sw->params[j], propose(t, trial, j, buf, sizeof buf)))) {
            kl_sweep_overrides_free(o, t->np);
            o = NULL;
        }
    }
    if (!o)
        return kl_error_set(err, KL_ENOMEM, "out of memory proposing trial %lld", (long long)trial);
    t->n++;
    *out = o;
    *n = t->np;
    return KL_OK;
}
