/* Scheduler simulation (include/kiln/simulate.h): replays a table of learning curves through a
 * scheduler with W virtual workers in simulated time, an event queue of epoch ends, and times
 * every kl_sched_next and kl_sched_result call. `kiln tune --simulate` and bench/bench_sched.c
 * call it; the curve table itself is tune/curves.c's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/clock.h"
#include "kiln/simulate.h"
#include "kiln/tpe.h"
#include "runtime/csv.h"
#include "tune/curves_impl.h"

typedef struct sim_event {
    double time;
    uint64_t order; /* ties in time: the epoch started first ends first */
    int worker;
} sim_event;

typedef struct sim_worker {
    int64_t trial;
    int t; /* the epoch it is training */
} sim_worker;

/* Latencies of one kind of call, in nanoseconds. */
typedef struct lat_log {
    int64_t *ns;
    int64_t n, cap;
} lat_log;

typedef struct sim {
    const kl_sched_config *cfg;
    const kl_curves *c;
    kl_sched *s;
    int workers;
    sim_worker *w;
    sim_event *ev; /* min-heap by (time, order) */
    int nev;
    uint64_t order;
    int *idle; /* min-heap of idle workers */
    int nidle;
    lat_log next, result;
    bool *ran_out;
    bool maximize;
    kl_sim_point *trace;
    int64_t ntrace, trace_cap;
    double now;
    double budget;   /* the sweep's time_budget in simulated time, 0: none */
    bool budget_hit; /* a job was held back by it */
    int64_t epochs;
    double compute;
    bool oom;
    /* Tabular mode (kl_simulate_sweep): the sweep's sampler proposes each new trial, snapped to
     * the row whose curve it trains along (curve[trial]); else trial i trains along curve i. */
    const kl_sweep *sw;
    kl_tpe *tpe;
    kl__sim_table *tab;
    int64_t *curve;
    int64_t ntrials;
    kl_status st; /* the first proposal that failed stops the simulation */
    kl_error *err;
} sim;

static int64_t curve_of(const sim *m, int64_t trial)
{
    return m->curve ? m->curve[trial] : trial;
}

static bool ev_before(const sim_event *a, const sim_event *b)
{
    return a->time < b->time || (a->time == b->time && a->order < b->order);
}

static void ev_push(sim *m, double time, int worker)
{
    sim_event e = {time, m->order++, worker};
    int i = m->nev++;
    while (i > 0 && ev_before(&e, &m->ev[(i - 1) / 2])) {
        m->ev[i] = m->ev[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->ev[i] = e;
}

static sim_event ev_pop(sim *m)
{
    sim_event top = m->ev[0], x = m->ev[--m->nev];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= m->nev)
            break;
        if (c + 1 < m->nev && ev_before(&m->ev[c + 1], &m->ev[c]))
            c++;
        if (!ev_before(&m->ev[c], &x))
            break;
        m->ev[i] = m->ev[c];
        i = c;
    }
    if (m->nev > 0)
        m->ev[i] = x;
    return top;
}

static void idle_push(sim *m, int w)
{
    int i = m->nidle++;
    while (i > 0 && w < m->idle[(i - 1) / 2]) {
        m->idle[i] = m->idle[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    m->idle[i] = w;
}

static int idle_pop(sim *m)
{
    int top = m->idle[0], x = m->idle[--m->nidle], i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= m->nidle)
            break;
        if (c + 1 < m->nidle && m->idle[c + 1] < m->idle[c])
            c++;
        if (m->idle[c] >= x)
            break;
        m->idle[i] = m->idle[c];
        i = c;
    }
    if (m->nidle > 0)
        m->idle[i] = x;
    return top;
}

static void lat_add(sim *m, lat_log *l, int64_t ns)
{
    if (l->n == l->cap) {
        int64_t cap = l->cap ? 2 * l->cap : 1 << 16;
        int64_t *p = realloc(l->ns, (size_t)cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return;
        }
        l->ns = p;
        l->cap = cap;
    }
    l->ns[l->n++] = ns;
}

static double cost(const kl_curves *c, int64_t curve, int t)
{
    return c->seconds ? c->seconds[c->off[curve] + t - 1] : 1.0;
}

/* Starts worker w on epoch t of its trial, or fails the trial there when the table ends. */
static bool start_epoch(sim *m, int w, int64_t trial, int t)
{
    if (t > m->c->epochs[curve_of(m, trial)]) {
        kl_sched_failed(m->s, trial);
        m->ran_out[trial] = true;
        return false;
    }
    m->w[w].trial = trial;
    m->w[w].t = t;
    ev_push(m, m->now + cost(m->c, curve_of(m, trial), t), w);
    return true;
}

/* Appends a trace point when value beats the best reported so far. */
static void trace_add(sim *m, int64_t trial, int t, double value)
{
    if (!isfinite(value))
        return;
    if (m->ntrace > 0) {
        double best = m->trace[m->ntrace - 1].value;
        if (m->maximize ? value <= best : value >= best)
            return;
    }
    if (m->ntrace == m->trace_cap) {
        int64_t cap = m->trace_cap ? 2 * m->trace_cap : 64;
        kl_sim_point *p = realloc(m->trace, (size_t)cap * sizeof *p);
        if (!p) {
            m->oom = true;
            return;
        }
        m->trace = p;
        m->trace_cap = cap;
    }
    m->trace[m->ntrace++] = (kl_sim_point){m->epochs, m->compute, m->now, value, trial, t};
}

/* Tabular mode: the new trial's values from the sweep's sampler, snapped to a row. */
static bool propose(sim *m, int64_t trial)
{
    char **ov = NULL;
    int n = 0;
    m->st = m->tpe ? kl_tpe_suggest(m->tpe, m->s, trial, &ov, &n, m->err)
                   : kl_sweep_overrides(m->sw, trial, &ov, &n, m->err);
    if (m->st == KL_OK && (m->curve[trial] = kl__sim_table_snap(m->tab, ov, trial, m->err)) < 0)
        m->st = m->err->status;
    kl_sweep_overrides_free(ov, n);
    return m->st == KL_OK;
}

/* Hands jobs to idle workers, lowest first, until the scheduler has none to give. */
static void dispatch(sim *m)
{
    while (m->nidle > 0) {
        /* After the time budget nothing new starts, as in the coordinator (tune/coord.c): the
         * trials running finish their jobs, and the scheduler is not asked. */
        if (m->budget > 0 && m->now >= m->budget) {
            m->budget_hit = true;
            return;
        }
        int64_t t0 = kl_now_ns();
        kl_job job = kl_sched_next(m->s);
        lat_add(m, &m->next, kl_now_ns() - t0);
        if (job.kind == KL_JOB_WAIT || job.kind == KL_JOB_NONE)
            return;
        if (m->tab && job.kind == KL_JOB_NEW && !propose(m, job.trial))
            return;
        int w = m->idle[0];
        if (start_epoch(m, w, job.trial, kl_sched_last_t(m->s, job.trial) + 1))
            idle_pop(m);
    }
}

static void run(sim *m)
{
    for (int w = 0; w < m->workers; w++)
        idle_push(m, w);
    dispatch(m);
    while (m->nev > 0 && m->st == KL_OK) {
        sim_event e = ev_pop(m);
        m->now = e.time;
        sim_worker *w = &m->w[e.worker];
        const kl_curves *c = m->c;
        int64_t curve = curve_of(m, w->trial);
        double value = c->value[c->off[curve] + w->t - 1];
        int64_t t0 = kl_now_ns();
        kl_decision d = kl_sched_result(m->s, w->trial, w->t, value);
        lat_add(m, &m->result, kl_now_ns() - t0);
        m->epochs++;
        m->compute += cost(c, curve, w->t);
        trace_add(m, w->trial, w->t, value);
        if (d == KL_DECIDE_CONTINUE && start_epoch(m, e.worker, w->trial, w->t + 1))
            continue;
        idle_push(m, e.worker);
        dispatch(m);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile p (0 < p <= 1) of n sorted values. */
static double pct_us(const int64_t *v, int64_t n, double p)
{
    int64_t k = (int64_t)ceil(p * (double)n) - 1;
    if (k < 0)
        k = 0;
    return (double)v[k] / 1e3;
}

static kl_sim_latency latency(int64_t *v, int64_t n)
{
    kl_sim_latency l = {n, 0, 0, 0};
    if (n == 0)
        return l;
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    l.p50_us = pct_us(v, n, 0.50);
    l.p99_us = pct_us(v, n, 0.99);
    l.max_us = (double)v[n - 1] / 1e3;
    return l;
}

static double sum_s(const int64_t *v, int64_t n)
{
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++)
        s += v[i];
    return (double)s / 1e9;
}

static kl_status fill_result(sim *m, kl_sim_result *out, kl_error *err)
{
    const kl_curves *c = m->c;
    size_t text_len = 0;
    for (int64_t i = 0; i < c->n; i++)
        text_len += strlen(c->labels + c->label_off[i]) + 1;
    out->trial = calloc((size_t)m->ntrials + 1, sizeof *out->trial);
    out->label_text = malloc(text_len);
    int64_t *all = malloc((size_t)(m->next.n + m->result.n + 1) * sizeof *all);
    if (!out->trial || !out->label_text || !all) {
        free(all);
        return kl_error_set(err, KL_ENOMEM, "simulate: out of memory for the results");
    }
    memcpy(out->label_text, c->labels, text_len);
    out->ntrials = m->ntrials;
    for (int64_t i = 0; i < m->ntrials; i++) {
        kl_sim_trial *t = &out->trial[i];
        /* A trial never started (a sweep that ended early) has no row: NULL label. */
        t->label =
            m->curve && m->curve[i] < 0 ? NULL : out->label_text + c->label_off[curve_of(m, i)];
        t->state = kl_sched_state(m->s, i);
        t->bracket = kl_sched_bracket(m->s, i);
        t->rung = kl_sched_rung(m->s, i);
        t->epochs = kl_sched_last_t(m->s, i);
        t->last = kl_sched_last(m->s, i);
        t->best = kl_sched_best(m->s, i);
        t->ran_out = m->ran_out[i];
        out->n_done += t->state == KL_TRIAL_DONE;
        out->n_stopped += t->state == KL_TRIAL_STOPPED;
        out->n_paused += t->state == KL_TRIAL_PAUSED;
        out->n_failed += t->state == KL_TRIAL_FAILED;
        out->ran_out += t->ran_out;
    }
    out->best_trial = kl_sched_best_trial(m->s);
    out->best_value = out->best_trial >= 0 ? out->trial[out->best_trial].last : NAN;
    out->epochs = m->epochs;
    out->compute = m->compute;
    out->makespan = m->now;
    out->budget = m->budget;
    out->budget_hit = m->budget_hit;
    out->sched_s = sum_s(m->next.ns, m->next.n) + sum_s(m->result.ns, m->result.n);
    memcpy(all, m->next.ns, (size_t)m->next.n * sizeof *all);
    memcpy(all + m->next.n, m->result.ns, (size_t)m->result.n * sizeof *all);
    out->all = latency(all, m->next.n + m->result.n);
    out->next = latency(m->next.ns, m->next.n);
    out->result = latency(m->result.ns, m->result.n);
    free(all);
    return KL_OK;
}

/* Runs m (its cfg, c, maximize, and for tabular mode sw, tab, tpe set) with `workers` workers
 * over m->ntrials trials. */
static kl_status simulate(sim *m0, int workers, kl_sim_result *out, kl_error *err)
{
    /* A PBT exploit continues a trial from another one's weights with new hyperparameters: a
     * curve nobody recorded, which no table of curves can supply. */
    if (m0->cfg->kind == KL_SCHED_PBT)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "--simulate cannot run the pbt scheduler: its exploit continues a "
                            "trial from another trial's weights with explored hyperparameters, a "
                            "learning curve no table of recorded curves holds; not supported. "
                            "Simulate the initial population with scheduler type fifo, or run "
                            "the sweep");
    sim m = *m0;
    m.workers = workers;
    m.err = err;
    kl_status st = KL_OK;
    m.s = kl_sched_new(m.cfg, m.maximize, m.ntrials, err);
    if (!m.s)
        return err ? err->status : KL_EINVAL;
    m.w = calloc((size_t)workers, sizeof *m.w);
    m.ev = malloc((size_t)workers * sizeof *m.ev);
    m.idle = malloc((size_t)workers * sizeof *m.idle);
    m.ran_out = calloc((size_t)m.ntrials + 1, sizeof *m.ran_out);
    if (m.tab && (m.curve = malloc(((size_t)m.ntrials + 1) * sizeof *m.curve)))
        for (int64_t i = 0; i <= m.ntrials; i++)
            m.curve[i] = -1;
    if (!m.w || !m.ev || !m.idle || !m.ran_out || (m.tab && !m.curve)) {
        st = kl_error_set(err, KL_ENOMEM, "simulate: out of memory for %d workers", workers);
        goto done;
    }
    int64_t t0 = kl_now_ns();
    run(&m);
    out->loop_s = (double)(kl_now_ns() - t0) / 1e9;
    out->workers = workers;
    if ((st = m.st) != KL_OK)
        goto done;
    if (m.oom) {
        st = kl_error_set(err, KL_ENOMEM, "simulate: out of memory for the latency log or trace");
        goto done;
    }
    if ((st = kl_sched_status(m.s, err)) != KL_OK)
        goto done;
    if ((st = fill_result(&m, out, err)) == KL_OK) {
        out->trace = m.trace; /* the result owns it now */
        out->ntrace = m.ntrace;
        m.trace = NULL;
    }
done:
    if (st != KL_OK)
        kl_sim_result_free(out);
    kl_sched_free(m.s);
    free(m.curve);
    free(m.w);
    free(m.ev);
    free(m.idle);
    free(m.ran_out);
    free(m.trace);
    free(m.next.ns);
    free(m.result.ns);
    return st;
}

kl_status kl_simulate_curves_within(const kl_sched_config *cfg, bool maximize, const kl_curves *c,
                                    int workers, double budget, kl_sim_result *out, kl_error *err)
{
    memset(out, 0, sizeof *out);
    if (workers < 1)
        return kl_error_set(err, KL_EINVAL, "simulate: %d workers; it needs at least 1", workers);
    sim m = {.cfg = cfg, .c = c, .maximize = maximize, .budget = budget, .ntrials = c->n};
    return simulate(&m, workers, out, err);
}

kl_status kl_simulate_curves(const kl_sched_config *cfg, bool maximize, const kl_curves *c,
                             int workers, kl_sim_result *out, kl_error *err)
{
    return kl_simulate_curves_within(cfg, maximize, c, workers, 0, out, err);
}

kl_status kl_simulate_sweep(const kl_sweep *sw, const kl_curves *c, const char *name, int workers,
                            kl_sim_result *out, kl_error *err)
{
    memset(out, 0, sizeof *out);
    if (workers < 1)
        return kl_error_set(err, KL_EINVAL, "simulate: %d workers; it needs at least 1", workers);
    sim m = {.cfg = &sw->sched,
             .c = c,
             .maximize = sw->maximize,
             .budget = sw->time_budget,
             .sw = sw,
             .ntrials = kl_sweep_trials(sw)};
    kl_status st = kl__sim_table_new(sw, c, name, &m.tab, err);
    if (st == KL_OK && sw->tpe.on && !(m.tpe = kl_tpe_new(sw, err)))
        st = err->status;
    if (st == KL_OK)
        st = simulate(&m, workers, out, err);
    kl_tpe_free(m.tpe);
    kl__sim_table_free(m.tab);
    return st;
}

kl_status kl_simulate(const kl_sched_config *cfg, bool maximize, const char *curves_csv,
                      int workers, kl_sim_result *out, kl_error *err)
{
    memset(out, 0, sizeof *out);
    int64_t t0 = kl_now_ns();
    kl_curves *c = kl_curves_load(curves_csv, err);
    if (!c)
        return err ? err->status : KL_EIO;
    double load_s = (double)(kl_now_ns() - t0) / 1e9;
    kl_status st = kl_simulate_curves(cfg, maximize, c, workers, out, err);
    out->load_s = load_s;
    kl_curves_free(c);
    return st;
}

void kl_sim_result_free(kl_sim_result *r)
{
    if (!r)
        return;
    free(r->trial);
    free(r->label_text);
    free(r->trace);
    memset(r, 0, sizeof *r);
}

const kl_sim_point *kl_sim_first_reaching(const kl_sim_result *r, bool maximize, double target)
{
    for (int64_t i = 0; i < r->ntrace; i++)
        if (maximize ? r->trace[i].value >= target : r->trace[i].value <= target)
            return &r->trace[i];
    return NULL;
}

static void put_value(FILE *f, double v)
{
    if (!isnan(v))
        fprintf(f, "%.17g", v);
}

kl_status kl_sim_write_trials(const kl_sim_result *r, FILE *f, kl_error *err)
{
    fputs("trial,label,state,bracket,rung,epochs,last,best\n", f);
    for (int64_t i = 0; i < r->ntrials; i++) {
        const kl_sim_trial *t = &r->trial[i];
        fprintf(f, "%lld,", (long long)i);
        kl__csv_put_field(f, "", t->label ? t->label : "");
        fprintf(f, ",%s,%d,%d,%d,", kl_trial_state_name(t->state), t->bracket, t->rung, t->epochs);
        put_value(f, t->last);
        fputc(',', f);
        put_value(f, t->best);
        fputc('\n', f);
    }
    if (ferror(f))
        return kl_error_set(err, KL_EIO, "simulate: writing the per-trial table failed");
    return KL_OK;
}
