/* Trial schedulers (include/kiln/sched.h): fifo, ASHA in the paper's promote mode and in Ray
 * Tune's stop mode, Hyperband as brackets of ASHA, and the median stopping rule. The sweep
 * coordinator, kl_simulate (tune/simulate.c) and the tests drive it; it does no I/O. Rungs keep
 * their values in ranked sets (tune/sched_rank.c), so every call costs O(rungs x log trials). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/sched.h"
#include "tune/sched_impl.h"

/* Bytes of rung nodes reserved when the scheduler is made (fewer when the sweep needs fewer):
 * untouched pages cost no memory, and a sweep that fits never reallocates in kl_sched_next.
 * Beyond it storage doubles as trials are created. */
#define SCHED_RESERVE_BYTES ((int64_t)64 << 20)
/* At most this many rungs: grace >= 1 and eta >= 2 give at most 32 below INT_MAX. */
#define SCHED_MAX_RUNGS 40

static void set_oom(kl_sched *s, const char *what)
{
    s->status = KL_ENOMEM;
    snprintf(s->msg, sizeof s->msg,
             "the scheduler ran out of memory growing its %s (%lld trials created); free memory "
             "or run fewer trials",
             what, (long long)s->created);
}

static const char *kind_name(kl_sched_kind k)
{
    switch (k) {
    case KL_SCHED_FIFO:
        return "fifo";
    case KL_SCHED_ASHA:
        return "asha";
    case KL_SCHED_HYPERBAND:
        return "hyperband";
    case KL_SCHED_MEDIAN:
        return "median";
    case KL_SCHED_PBT:
        return "pbt";
    }
    return "unknown";
}

static kl_status check_config(const kl_sched_config *cfg, int64_t max_trials, kl_error *err)
{
    if (!cfg)
        return kl_error_set(err, KL_EINVAL, "scheduler: the config is NULL");
    if (cfg->kind != KL_SCHED_FIFO && cfg->kind != KL_SCHED_ASHA &&
        cfg->kind != KL_SCHED_HYPERBAND && cfg->kind != KL_SCHED_MEDIAN &&
        cfg->kind != KL_SCHED_PBT)
        return kl_error_set(err, KL_EINVAL,
                            "scheduler kind %d is not one of fifo, asha, hyperband, median, pbt",
                            (int)cfg->kind);
    if (cfg->max_t < 1)
        return kl_error_set(err, KL_EINVAL,
                            "scheduler max_t is %d; it must be at least 1 epoch (it defaults to "
                            "the base config's train.epochs)",
                            cfg->max_t);
    if (cfg->kind == KL_SCHED_PBT &&
        (cfg->perturbation_interval < 1 || !(cfg->quantile_fraction >= 0) ||
         cfg->quantile_fraction > 0.5 || !(cfg->resample_probability >= 0) ||
         cfg->resample_probability > 1))
        return kl_error_set(err, KL_EINVAL,
                            "scheduler pbt: perturbation_interval %d must be at least 1 epoch, "
                            "quantile_fraction %g in [0, 0.5], resample_probability %g in [0, 1]",
                            cfg->perturbation_interval, cfg->quantile_fraction,
                            cfg->resample_probability);
    if (cfg->kind != KL_SCHED_FIFO && cfg->kind != KL_SCHED_PBT) {
        if (cfg->grace_period < 1)
            return kl_error_set(err, KL_EINVAL,
                                "scheduler grace_period is %d; it must be at least 1 epoch",
                                cfg->grace_period);
        if (cfg->grace_period > cfg->max_t)
            return kl_error_set(err, KL_EINVAL,
                                "scheduler grace_period (%d) is larger than max_t (%d): lower "
                                "grace_period or raise max_t",
                                cfg->grace_period, cfg->max_t);
    }
    if ((cfg->kind == KL_SCHED_ASHA || cfg->kind == KL_SCHED_HYPERBAND) &&
        cfg->reduction_factor < 2)
        return kl_error_set(err, KL_EINVAL,
                            "scheduler reduction_factor is %d; %s needs at least 2 (3 is usual)",
                            cfg->reduction_factor, kind_name(cfg->kind));
    if (cfg->kind == KL_SCHED_HYPERBAND && cfg->brackets < 0)
        return kl_error_set(err, KL_EINVAL,
                            "scheduler brackets is %d; it must be at least 1 (0: as many as fit, "
                            "at most 4)",
                            cfg->brackets);
    if (max_trials < 0 || max_trials > INT32_MAX - 1)
        return kl_error_set(err, KL_EINVAL,
                            "scheduler: %lld trials is out of range; a sweep has 0 to %d trials",
                            (long long)max_trials, INT32_MAX - 1);
    return KL_OK;
}

/* The milestones grace * eta^k < max_t and then max_t, in integer arithmetic (never
 * floor(log(x) / log(eta)), which loses a rung at exact powers). Returns how many. */
static int milestones(int grace, int eta, int max_t, int out[SCHED_MAX_RUNGS])
{
    int n = 0;
    for (int64_t r = grace; r < max_t; r *= eta)
        out[n++] = (int)r;
    out[n++] = max_t;
    return n;
}

/* Grows every per-trial array to hold `need` trials. On failure the arrays already grown stay
 * valid and s->cap is unchanged, so the scheduler is as it was. */
static bool reserve(kl_sched *s, int64_t need)
{
    if (need <= s->cap)
        return true;
    int64_t cap = s->cap > 0 ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > s->max_trials)
        cap = s->max_trials;

    kl__trial *trials = realloc(s->trials, (size_t)cap * sizeof *trials);
    if (!trials)
        return false;
    s->trials = trials;

    int64_t ncap = cap * s->max_rungs;
    if (ncap > INT32_MAX)
        return false;
    kl__rank_node *nodes = realloc(s->nodes, (size_t)ncap * sizeof *nodes);
    if (!nodes)
        return false;
    s->nodes = nodes;
    s->nodes_cap = (int32_t)ncap;

    if (s->promote) {
        for (int b = 0; b < s->nbrackets; b++) {
            for (int k = 0; k < s->brackets[b].nrungs; k++) {
                kl__rung *r = &s->brackets[b].rungs[k];
                int32_t *cand = realloc(r->cand, (size_t)cap * sizeof *cand);
                if (!cand)
                    return false;
                r->cand = cand;
            }
        }
    }

    /* The queue is a ring: copy it out in order. */
    int32_t *queue = malloc((size_t)cap * sizeof *queue);
    if (!queue)
        return false;
    for (int64_t i = 0; i < s->qlen; i++)
        queue[i] = s->queue[(s->qhead + i) % s->cap];
    free(s->queue);
    s->queue = queue;
    s->qhead = 0;
    s->cap = cap;
    return true;
}

static int rung_milestone(const kl_sched *s, int b, int k)
{
    return s->brackets[b].rungs[k].milestone;
}

/* Promotions are looked for from the highest milestone down (the closest to max_t first), and
 * between brackets at the same milestone in bracket order. */
static void order_promotions(kl_sched *s)
{
    s->npromote = 0;
    for (int b = 0; b < s->nbrackets; b++) {
        for (int k = 0; k + 1 < s->brackets[b].nrungs; k++) {
            int32_t v = (int32_t)(b << 8 | k);
            int i = s->npromote++;
            /* Insertion sort: milestone descending, then bracket ascending (stable). */
            while (i > 0) {
                int32_t u = s->promote_order[i - 1];
                if (rung_milestone(s, u >> 8, u & 0xff) >= rung_milestone(s, b, k))
                    break;
                s->promote_order[i] = u;
                i--;
            }
            s->promote_order[i] = v;
        }
    }
}

static kl_status make_brackets(kl_sched *s, kl_error *err)
{
    const kl_sched_config *c = &s->cfg;
    bool rungs = c->kind == KL_SCHED_ASHA || c->kind == KL_SCHED_HYPERBAND;
    int nb = 1;
    if (c->kind == KL_SCHED_HYPERBAND) {
        int fit = 0;
        for (int64_t g = c->grace_period; g <= c->max_t; g *= c->reduction_factor)
            fit++;
        nb = c->brackets > 0 ? c->brackets : 4;
        if (nb > fit)
            nb = fit;
    }
    s->cfg.brackets = nb;
    s->nbrackets = nb;
    s->brackets = calloc((size_t)nb, sizeof *s->brackets);
    s->promote_order = calloc((size_t)nb * SCHED_MAX_RUNGS, sizeof *s->promote_order);
    if (!s->brackets || !s->promote_order)
        return kl_error_set(err, KL_ENOMEM, "scheduler: out of memory");
    int64_t grace = c->grace_period;
    for (int b = 0; b < nb; b++, grace *= c->reduction_factor) {
        int ms[SCHED_MAX_RUNGS];
        int n = 1;
        ms[0] = c->max_t;
        if (rungs)
            n = milestones((int)grace, c->reduction_factor, c->max_t, ms);
        kl__bracket *br = &s->brackets[b];
        br->grace = ms[0];
        br->nrungs = n;
        br->rungs = calloc((size_t)n, sizeof *br->rungs);
        if (!br->rungs)
            return kl_error_set(err, KL_ENOMEM, "scheduler: out of memory");
        for (int k = 0; k < n; k++) {
            br->rungs[k].milestone = ms[k];
            br->rungs[k].root = -1;
        }
    }
    s->max_rungs = s->brackets[0].nrungs;
    order_promotions(s);
    return KL_OK;
}

kl_sched *kl_sched_new(const kl_sched_config *cfg, bool maximize, int64_t max_trials, kl_error *err)
{
    if (check_config(cfg, max_trials, err) != KL_OK)
        return NULL;
    kl_sched *s = calloc(1, sizeof *s);
    if (!s) {
        kl_error_set(err, KL_ENOMEM, "scheduler: out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    if (cfg->kind != KL_SCHED_HYPERBAND)
        s->cfg.brackets = 1;
    s->maximize = maximize;
    s->max_trials = max_trials;
    s->promote = (cfg->kind == KL_SCHED_ASHA || cfg->kind == KL_SCHED_HYPERBAND) && !cfg->stop_mode;
    s->prio_state = 0x9e3779b9u;
    if (make_brackets(s, err) != KL_OK) {
        kl_sched_free(s);
        return NULL;
    }
    if (cfg->kind == KL_SCHED_MEDIAN) {
        s->median = calloc((size_t)cfg->max_t + 1, sizeof *s->median);
        if (!s->median) {
            kl_error_set(err, KL_ENOMEM, "scheduler: out of memory for max_t = %d epochs",
                         cfg->max_t);
            kl_sched_free(s);
            return NULL;
        }
    }
    int64_t first = SCHED_RESERVE_BYTES / ((int64_t)s->max_rungs * (int64_t)sizeof(kl__rank_node));
    if (!reserve(s, max_trials < first ? max_trials : first)) {
        kl_error_set(err, KL_ENOMEM, "scheduler: out of memory for %lld trials",
                     (long long)max_trials);
        kl_sched_free(s);
        return NULL;
    }
    return s;
}

void kl_sched_free(kl_sched *s)
{
    if (!s)
        return;
    for (int b = 0; b < s->nbrackets && s->brackets; b++) {
        for (int k = 0; k < s->brackets[b].nrungs && s->brackets[b].rungs; k++)
            free(s->brackets[b].rungs[k].cand);
        free(s->brackets[b].rungs);
    }
    if (s->median) {
        for (int t = 0; t <= s->cfg.max_t; t++) {
            free(s->median[t].lo);
            free(s->median[t].hi);
        }
        free(s->median);
    }
    free(s->brackets);
    free(s->promote_order);
    free(s->trials);
    free(s->nodes);
    free(s->queue);
    free(s);
}

kl_status kl_sched_status(const kl_sched *s, kl_error *err)
{
    if (s->status != KL_OK)
        return kl_error_set(err, s->status, "%s", s->msg);
    return KL_OK;
}

static kl_job make_job(kl_job_kind kind, int64_t trial, int rung, int until_t)
{
    kl_job j = {kind, trial, rung, until_t};
    return j;
}

static kl_job idle_job(const kl_sched *s)
{
    /* A held trial may be promoted once released: the sweep is not over while one is. */
    return make_job(s->running > 0 || s->held > 0 ? KL_JOB_WAIT : KL_JOB_NONE, -1, -1, 0);
}

static kl_job new_trial(kl_sched *s)
{
    int64_t id = s->created;
    if (!reserve(s, id + 1)) {
        set_oom(s, "trial tables");
        return idle_job(s);
    }
    kl__trial *tr = &s->trials[id];
    memset(tr, 0, sizeof *tr);
    tr->state = KL_TRIAL_RUNNING;
    tr->bracket = (uint8_t)(id % s->nbrackets);
    tr->rung = -1;
    tr->node = -1;
    tr->donor = -1;
    tr->last = tr->best = NAN;
    const kl__bracket *b = &s->brackets[tr->bracket];
    tr->target = (int8_t)(s->promote ? 0 : b->nrungs - 1);
    tr->until_t = s->promote ? b->rungs[0].milestone : s->cfg.max_t;
    if (s->cfg.kind == KL_SCHED_PBT && s->cfg.perturbation_interval < s->cfg.max_t)
        tr->until_t = s->cfg.perturbation_interval;
    s->created++;
    s->running++;
    return make_job(KL_JOB_NEW, id, tr->target, tr->until_t);
}

/* The paper's rule, rung by rung from the highest: the best trial paused at rung k that has not
 * been promoted goes up if it ranks within the top floor(count / eta) of rung k and its value
 * there is finite. */
static bool find_promotion(kl_sched *s, kl_job *job)
{
    int32_t eta = s->cfg.reduction_factor;
    for (int i = 0; i < s->npromote; i++) {
        int b = s->promote_order[i] >> 8, k = s->promote_order[i] & 0xff;
        kl__rung *r = &s->brackets[b].rungs[k];
        if (r->ncand == 0 || s->nodes[r->cand[0]].worst ||
            kl__rankset_rank(s->nodes, r->root, r->cand[0]) >= r->count / eta)
            continue;
        int32_t x = kl__candheap_pop(s->nodes, r->cand, &r->ncand);
        int64_t id = s->nodes[x].trial;
        kl__trial *tr = &s->trials[id];
        tr->state = KL_TRIAL_RUNNING;
        tr->target = (int8_t)(k + 1);
        tr->until_t = rung_milestone(s, b, k + 1);
        s->running++;
        *job = make_job(KL_JOB_PROMOTE, id, k + 1, tr->until_t);
        return true;
    }
    return false;
}

kl_job kl_sched_next(kl_sched *s)
{
    KL_ASSERT(s);
    if (s->qlen > 0) {
        int64_t id = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % s->cap;
        s->qlen--;
        kl__trial *tr = &s->trials[id];
        tr->queued = 0;
        tr->donor = -1;
        tr->state = KL_TRIAL_RUNNING;
        s->running++;
        return make_job(KL_JOB_PROMOTE, id, tr->target, tr->until_t);
    }
    kl_job job;
    if (s->cfg.kind == KL_SCHED_PBT) { /* Ray: pending trials first, then the least trained */
        if (s->created < s->max_trials && s->status == KL_OK)
            return new_trial(s);
        return kl__sched_pbt_next(s, &job) ? job : idle_job(s);
    }
    if (s->promote && find_promotion(s, &job))
        return job;
    if (s->created < s->max_trials && s->status == KL_OK)
        return new_trial(s);
    return idle_job(s);
}

static uint32_t next_prio(kl_sched *s)
{
    uint32_t x = s->prio_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return s->prio_state = x;
}

/* Records the trial's score at rung k of its bracket; returns the node. */
static int32_t record(kl_sched *s, int64_t id, int k, double score, bool worst)
{
    kl__trial *tr = &s->trials[id];
    kl__rung *r = &s->brackets[tr->bracket].rungs[k];
    KL_ASSERT(s->nnodes < s->nodes_cap && k > tr->rung);
    int32_t x = s->nnodes++;
    kl__rank_node *n = &s->nodes[x];
    n->score = score;
    n->seq = s->seq++;
    n->trial = (int32_t)id;
    n->next = tr->node;
    n->prio = next_prio(s);
    n->worst = worst;
    n->rung = (uint8_t)k;
    kl__rankset_insert(s->nodes, &r->root, x);
    r->count++;
    r->nworst += worst;
    tr->node = x;
    tr->rung = (int8_t)k;
    tr->rec_t = r->milestone;
    tr->rec_score = score;
    tr->rec_worst = worst;
    tr->rec_seq = n->seq;
    return x;
}

/* fifo and the median rule: every report counts for kl_sched_best_trial. */
static void note(kl_sched *s, kl__trial *tr, int t, double score, bool worst)
{
    tr->rec_t = t;
    tr->rec_score = score;
    tr->rec_worst = worst;
    tr->rec_seq = s->seq++;
}

static kl_decision end_trial(kl_sched *s, kl__trial *tr, kl_trial_state st, kl_decision d)
{
    tr->state = (uint8_t)st;
    s->running--;
    return d;
}

/* At max_t: recorded at the top rung and done. */
static kl_decision finish(kl_sched *s, int64_t id, double score, bool worst)
{
    kl__trial *tr = &s->trials[id];
    int top = s->brackets[tr->bracket].nrungs - 1;
    if (tr->rung < top)
        record(s, id, top, score, worst);
    return end_trial(s, tr, KL_TRIAL_DONE, KL_DECIDE_DONE);
}

static kl_decision promote_result(kl_sched *s, int64_t id, int t, double score, bool worst)
{
    kl__trial *tr = &s->trials[id];
    if (t < tr->until_t)
        return KL_DECIDE_CONTINUE;
    kl__bracket *b = &s->brackets[tr->bracket];
    if (tr->target == b->nrungs - 1)
        return finish(s, id, score, worst);
    int32_t x = record(s, id, tr->target, score, worst);
    if (s->holds) {
        tr->held = 1;
        s->held++;
    } else {
        kl__rung *r = &b->rungs[tr->target];
        kl__candheap_push(s->nodes, r->cand, &r->ncand, x);
    }
    return end_trial(s, tr, KL_TRIAL_PAUSED, KL_DECIDE_PAUSE);
}

/* The finite score at ascending position j (0: the lowest) of rung r, which has m of them. */
static double ascending(const kl_sched *s, const kl__rung *r, int32_t m, int32_t j)
{
    return s->nodes[kl__rankset_select(s->nodes, r->root, m - 1 - j)].score;
}

/* Ray Tune's cutoff, np.nanpercentile(scores, (1 - 1 / eta) * 100), over the m finite scores of
 * rung r, computed step by step as numpy 1.24 computes its default linear method so that the
 * two agree to the bit: q = p / 100, index (m - 1) q, and numpy's two-sided lerp. */
static double stop_cutoff(const kl_sched *s, const kl__rung *r, int32_t m)
{
    double q = (1.0 - 1.0 / (double)s->cfg.reduction_factor) * 100.0 / 100.0;
    double vi = (double)(m - 1) * q;
    if (vi >= (double)(m - 1))
        return ascending(s, r, m, m - 1);
    double lo = floor(vi), g = vi - lo;
    double a = ascending(s, r, m, (int32_t)lo), b = ascending(s, r, m, (int32_t)lo + 1);
    double d = b - a;
    return g >= 0.5 ? b - d * (1.0 - g) : a + d * g;
}

static kl_decision stop_result(kl_sched *s, int64_t id, int t, double score, bool worst)
{
    kl__trial *tr = &s->trials[id];
    if (t >= s->cfg.max_t)
        return finish(s, id, score, worst);
    kl__bracket *b = &s->brackets[tr->bracket];
    int k = b->nrungs - 2;
    while (k >= 0 && b->rungs[k].milestone > t)
        k--;
    if (k < 0 || tr->rung >= k)
        return KL_DECIDE_CONTINUE;
    kl__rung *r = &b->rungs[k];
    int32_t m = r->count - r->nworst;
    bool stop = worst || (m > 0 && score < stop_cutoff(s, r, m));
    record(s, id, k, score, worst);
    return stop ? end_trial(s, tr, KL_TRIAL_STOPPED, KL_DECIDE_STOP) : KL_DECIDE_CONTINUE;
}

static double median_of(const kl__median *m)
{
    return m->nlo > m->nhi ? m->lo[0] : (m->lo[0] + m->hi[0]) / 2.0;
}

/* Binary heaps of doubles: a max-heap when max, else a min-heap. */
static bool dheap_before(double a, double b, bool max)
{
    return max ? a > b : a < b;
}

static void dheap_push(double *h, int32_t *n, double x, bool max)
{
    int32_t i = (*n)++;
    while (i > 0 && dheap_before(x, h[(i - 1) / 2], max)) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static double dheap_pop(double *h, int32_t *n, bool max)
{
    double top = h[0], x = h[--*n];
    int32_t i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && dheap_before(h[c + 1], h[c], max))
            c++;
        if (!dheap_before(h[c], x, max))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = x;
    return top;
}

/* Adds one running average (-inf for the worst, never NaN) to epoch t's running median. */
static void median_add(kl_sched *s, kl__median *m, double x)
{
    if (m->nlo + 1 > m->cap || m->nhi + 1 > m->cap) {
        int32_t cap = m->cap ? 2 * m->cap : 16;
        double *lo = realloc(m->lo, (size_t)cap * sizeof *lo);
        if (!lo) {
            set_oom(s, "running medians");
            return;
        }
        m->lo = lo;
        double *hi = realloc(m->hi, (size_t)cap * sizeof *hi);
        if (!hi) {
            set_oom(s, "running medians");
            return;
        }
        m->hi = hi;
        m->cap = cap;
    }
    if (m->nlo == 0 || x <= m->lo[0])
        dheap_push(m->lo, &m->nlo, x, true);
    else
        dheap_push(m->hi, &m->nhi, x, false);
    if (m->nlo > m->nhi + 1)
        dheap_push(m->hi, &m->nhi, dheap_pop(m->lo, &m->nlo, true), false);
    else if (m->nhi > m->nlo)
        dheap_push(m->lo, &m->nlo, dheap_pop(m->hi, &m->nhi, false), true);
}

static double med_average(const kl__trial *tr)
{
    return tr->med_worst ? -INFINITY : tr->med_sum / tr->med_n;
}

/* Golovin et al.'s rule as Ray Tune's MedianStoppingRule applies it: from grace_period on, a
 * trial whose best score so far is strictly below the median of the other trials' running
 * averages at t (each the mean of its values for 1..t) stops, once at least
 * KL_SCHED_MEDIAN_MIN_SAMPLES other trials have reached t. */
static kl_decision median_result(kl_sched *s, int64_t id, int t, double score, bool worst)
{
    kl__trial *tr = &s->trials[id];
    note(s, tr, t, score, worst);
    if (t >= s->cfg.max_t)
        return finish(s, id, score, worst);
    if (t <= tr->med_t) /* again after a requeue: already counted */
        return KL_DECIDE_CONTINUE;
    bool stop = false;
    kl__median *m = &s->median[t];
    if (t >= s->cfg.grace_period && m->nlo + m->nhi >= KL_SCHED_MEDIAN_MIN_SAMPLES) {
        double best = isnan(tr->best) ? -INFINITY : s->maximize ? tr->best : -tr->best;
        stop = best < median_of(m);
    }
    /* Its running average at every epoch up to t it has not been counted at; epochs it did not
     * report (a sparse reporter) carry the average of the values before them. */
    for (int u = tr->med_t + 1; u <= t; u++) {
        if (u == t) {
            tr->med_n++;
            tr->med_sum += worst ? 0.0 : score;
            tr->med_worst |= worst;
        }
        if (u >= s->cfg.grace_period && tr->med_n > 0)
            median_add(s, &s->median[u], med_average(tr));
    }
    tr->med_t = t;
    return stop ? end_trial(s, tr, KL_TRIAL_STOPPED, KL_DECIDE_STOP) : KL_DECIDE_CONTINUE;
}

/* PBT: every perturbation_interval epochs the trial's score is its last_score (Ray's) and it
 * pauses, so that the least trained trial runs next and is checked then (kl__sched_pbt_next). */
static kl_decision pbt_result(kl_sched *s, int64_t id, int t, double score, bool worst)
{
    kl__trial *tr = &s->trials[id];
    if (t >= s->cfg.max_t)
        return finish(s, id, score, worst);
    if (t < tr->until_t)
        return KL_DECIDE_CONTINUE;
    note(s, tr, t, score, worst);
    if (s->holds) {
        tr->held = 1;
        s->held++;
    }
    return end_trial(s, tr, KL_TRIAL_PAUSED, KL_DECIDE_PAUSE);
}

kl_decision kl_sched_result(kl_sched *s, int64_t trial, int t, double value)
{
    KL_ASSERT(s && trial >= 0 && trial < s->created && t >= 1);
    kl__trial *tr = &s->trials[trial];
    KL_ASSERT(tr->state == KL_TRIAL_RUNNING);
    bool worst = !isfinite(value);
    double score = worst ? 0.0 : s->maximize ? value : -value;
    tr->last_t = t;
    tr->last = worst ? NAN : value;
    if (!worst && (isnan(tr->best) || (s->maximize ? value > tr->best : value < tr->best)))
        tr->best = value;
    switch (s->cfg.kind) {
    case KL_SCHED_FIFO:
        note(s, tr, t, score, worst);
        return t >= s->cfg.max_t ? finish(s, trial, score, worst) : KL_DECIDE_CONTINUE;
    case KL_SCHED_MEDIAN:
        return median_result(s, trial, t, score, worst);
    case KL_SCHED_PBT:
        return pbt_result(s, trial, t, score, worst);
    case KL_SCHED_ASHA:
    case KL_SCHED_HYPERBAND:
        break;
    }
    return s->promote ? promote_result(s, trial, t, score, worst)
                      : stop_result(s, trial, t, score, worst);
}

void kl_sched_failed(kl_sched *s, int64_t trial)
{
    KL_ASSERT(s && trial >= 0 && trial < s->created);
    kl__trial *tr = &s->trials[trial];
    KL_ASSERT(tr->state == KL_TRIAL_RUNNING);
    end_trial(s, tr, KL_TRIAL_FAILED, KL_DECIDE_STOP);
    tr->rec_worst = 1;
    for (int32_t x = tr->node; x >= 0; x = s->nodes[x].next) {
        if (s->nodes[x].worst)
            continue;
        kl__rung *r = &s->brackets[tr->bracket].rungs[s->nodes[x].rung];
        kl__rankset_erase(s->nodes, &r->root, x);
        s->nodes[x].worst = 1;
        kl__rankset_insert(s->nodes, &r->root, x);
        r->nworst++;
    }
}

void kl_sched_requeue(kl_sched *s, int64_t trial)
{
    KL_ASSERT(s && trial >= 0 && trial < s->created);
    kl__trial *tr = &s->trials[trial];
    KL_ASSERT(tr->state == KL_TRIAL_RUNNING && s->qlen < s->cap);
    end_trial(s, tr, KL_TRIAL_PAUSED, KL_DECIDE_PAUSE);
    tr->queued = 1;
    s->queue[(s->qhead + s->qlen) % s->cap] = (int32_t)trial;
    s->qlen++;
}

void kl_sched_set_holds(kl_sched *s, bool on)
{
    KL_ASSERT(s);
    s->holds = on;
}

bool kl_sched_held(const kl_sched *s, int64_t trial)
{
    return s && trial >= 0 && trial < s->created && s->trials[trial].held;
}

bool kl_sched_release(kl_sched *s, int64_t trial)
{
    if (!kl_sched_held(s, trial))
        return false;
    kl__trial *tr = &s->trials[trial];
    tr->held = 0;
    s->held--;
    if (s->cfg.kind == KL_SCHED_PBT)
        return true;
    KL_ASSERT(tr->state == KL_TRIAL_PAUSED && tr->node >= 0);
    kl__rung *r = &s->brackets[tr->bracket].rungs[tr->rung];
    kl__candheap_push(s->nodes, r->cand, &r->ncand, tr->node);
    return true;
}

static const kl__trial *trial_of(const kl_sched *s, int64_t trial)
{
    return s && trial >= 0 && trial < s->created ? &s->trials[trial] : NULL;
}

kl_trial_state kl_sched_state(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? (kl_trial_state)tr->state : KL_TRIAL_PENDING;
}

int kl_sched_rung(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? tr->rung : -1;
}

int kl_sched_last_t(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? tr->last_t : 0;
}

double kl_sched_last(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? tr->last : NAN;
}

int64_t kl_sched_donor(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? tr->donor : -1;
}

double kl_sched_best(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? tr->best : NAN;
}

bool kl_sched_value_at(const kl_sched *s, int64_t trial, int t, double *value)
{
    const kl__trial *tr = trial_of(s, trial);
    if (!tr || (s->cfg.kind != KL_SCHED_ASHA && s->cfg.kind != KL_SCHED_HYPERBAND))
        return false;
    for (int32_t x = tr->node; x >= 0; x = s->nodes[x].next) {
        const kl__rank_node *nd = &s->nodes[x];
        if (s->brackets[tr->bracket].rungs[nd->rung].milestone != t)
            continue;
        *value = nd->worst ? NAN : s->maximize ? nd->score : -nd->score;
        return true;
    }
    return false;
}

int kl_sched_bracket(const kl_sched *s, int64_t trial)
{
    const kl__trial *tr = trial_of(s, trial);
    return tr ? tr->bracket : -1;
}

int64_t kl_sched_best_trial(const kl_sched *s)
{
    int64_t best = -1;
    const kl__trial *b = NULL;
    for (int64_t i = 0; i < s->created; i++) {
        const kl__trial *tr = &s->trials[i];
        if (tr->rec_t == 0 || tr->rec_worst || tr->state == KL_TRIAL_FAILED)
            continue;
        if (b && (tr->rec_t < b->rec_t ||
                  (tr->rec_t == b->rec_t &&
                   (tr->rec_score < b->rec_score ||
                    (tr->rec_score == b->rec_score && tr->rec_seq > b->rec_seq)))))
            continue;
        best = i;
        b = tr;
    }
    return best;
}

int kl_sched_num_brackets(const kl_sched *s)
{
    return s->nbrackets;
}

int kl_sched_bracket_num_rungs(const kl_sched *s, int bracket)
{
    return bracket >= 0 && bracket < s->nbrackets ? s->brackets[bracket].nrungs : 0;
}

int kl_sched_bracket_milestone(const kl_sched *s, int bracket, int rung)
{
    if (rung < 0 || rung >= kl_sched_bracket_num_rungs(s, bracket))
        return -1;
    return s->brackets[bracket].rungs[rung].milestone;
}

int kl_sched_bracket_rung_count(const kl_sched *s, int bracket, int rung)
{
    if (rung < 0 || rung >= kl_sched_bracket_num_rungs(s, bracket))
        return 0;
    return s->brackets[bracket].rungs[rung].count;
}

int kl_sched_num_rungs(const kl_sched *s)
{
    return s->brackets[0].nrungs;
}

int kl_sched_milestone(const kl_sched *s, int rung)
{
    return kl_sched_bracket_milestone(s, 0, rung);
}

int kl_sched_rung_count(const kl_sched *s, int rung)
{
    return kl_sched_bracket_rung_count(s, 0, rung);
}

int64_t kl_sched_created(const kl_sched *s)
{
    return s->created;
}

const char *kl_trial_state_name(kl_trial_state st)
{
    switch (st) {
    case KL_TRIAL_PENDING:
        return "pending";
    case KL_TRIAL_RUNNING:
        return "running";
    case KL_TRIAL_PAUSED:
        return "paused";
    case KL_TRIAL_STOPPED:
        return "stopped";
    case KL_TRIAL_DONE:
        return "done";
    case KL_TRIAL_FAILED:
        return "failed";
    }
    return "unknown";
}

const char *kl_decision_name(kl_decision d)
{
    switch (d) {
    case KL_DECIDE_CONTINUE:
        return "continue";
    case KL_DECIDE_PAUSE:
        return "pause";
    case KL_DECIDE_STOP:
        return "stop";
    case KL_DECIDE_DONE:
        return "done";
    }
    return "unknown";
}
