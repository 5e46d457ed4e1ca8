/* Population-based training's side of the trial schedulers (include/kiln/sched.h), as Ray Tune's
 * PopulationBasedTraining: which paused trial runs next, whether it ranks in the bottom quantile
 * of the population, and which top-quantile trial it then exploits. tune/sched.c calls it from
 * kl_sched_next; the rules are in tune/README.md, "PBT". What the exploiting trial's new
 * hyperparameters are (explore) is tune/pbt.c's: the scheduler knows trials only by their scores.
 */
#include <math.h>
#include <stdlib.h>

#include "tune/pbt_impl.h"
#include "tune/sched_impl.h"

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

double kl__pbt_unit(uint64_t seed, int64_t trial, int t, int k)
{
    uint64_t h = mix64(seed ^ 0x7062742d6b696c6eull); /* "pbt-kiln" */
    h = mix64(h ^ (uint64_t)trial);
    h = mix64(h ^ (uint64_t)(uint32_t)t);
    h = mix64(h ^ (uint64_t)(uint32_t)k);
    return (double)(h >> 11) * 0x1.0p-53;
}

/* Ray ranks the trials that are not finished and have a last_score, ascending (the worst first;
 * a value that is not finite below every number), in the order trials were added on ties. */
typedef struct ranked {
    const kl__trial *tr;
    int64_t id;
} ranked;

static int ascending(const void *pa, const void *pb)
{
    const ranked *a = pa, *b = pb;
    if (a->tr->rec_worst != b->tr->rec_worst)
        return a->tr->rec_worst ? -1 : 1;
    if (!a->tr->rec_worst && a->tr->rec_score != b->tr->rec_score)
        return a->tr->rec_score < b->tr->rec_score ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static bool at_rest(const kl__trial *tr)
{
    return tr->state == KL_TRIAL_PAUSED && !tr->held && !tr->queued;
}

/* The donor for trial x, or -1: x must rank within the bottom ceil(n q) of the n ranked trials
 * (at most floor(n / 2), as Ray), and the donor is drawn uniformly from the top quantile's
 * trials at rest (paused, their checkpoint written), whose latest checkpoint is the one they
 * paused with. None at rest: no exploit this time (Ray skips a donor without a checkpoint). */
static int64_t pick_donor(kl_sched *s, int64_t x)
{
    int64_t n = 0;
    for (int64_t i = 0; i < s->created; i++) {
        const kl__trial *tr = &s->trials[i];
        n += (tr->state == KL_TRIAL_RUNNING || tr->state == KL_TRIAL_PAUSED) && tr->rec_t > 0;
    }
    int64_t nq = (int64_t)ceil((double)n * s->cfg.quantile_fraction);
    if ((double)nq > (double)n / 2)
        nq = n / 2;
    if (n <= 1 || nq == 0)
        return -1;
    ranked *r = malloc((size_t)n * sizeof *r);
    if (!r) {
        s->status = KL_ENOMEM;
        snprintf(s->msg, sizeof s->msg, "scheduler: out of memory ranking %lld pbt trials",
                 (long long)n);
        return -1;
    }
    int64_t m = 0;
    for (int64_t i = 0; i < s->created; i++) {
        const kl__trial *tr = &s->trials[i];
        if ((tr->state == KL_TRIAL_RUNNING || tr->state == KL_TRIAL_PAUSED) && tr->rec_t > 0)
            r[m++] = (ranked){tr, i};
    }
    qsort(r, (size_t)n, sizeof *r, ascending);
    bool lower = false;
    for (int64_t i = 0; i < nq; i++)
        lower = lower || r[i].id == x;
    int64_t rest = 0, donor = -1;
    for (int64_t i = n - nq; lower && i < n; i++)
        rest += at_rest(r[i].tr);
    if (rest > 0) {
        int64_t k = (int64_t)(kl__pbt_unit(s->cfg.seed, x, s->trials[x].rec_t, 0) * (double)rest);
        for (int64_t i = n - nq; donor < 0; i++)
            if (at_rest(r[i].tr) && k-- == 0)
                donor = r[i].id;
    }
    free(r);
    return donor;
}

bool kl__sched_pbt_next(kl_sched *s, kl_job *job)
{
    int64_t x = -1;
    for (int64_t i = 0; i < s->created; i++)
        if (at_rest(&s->trials[i]) && (x < 0 || s->trials[i].rec_t < s->trials[x].rec_t))
            x = i;
    if (x < 0)
        return false;
    kl__trial *tr = &s->trials[x];
    int64_t d = pick_donor(s, x);
    tr->donor = (int32_t)d;
    if (d >= 0) { /* its lineage is the donor's now: what it trained, and how well */
        const kl__trial *dt = &s->trials[d];
        tr->last_t = dt->last_t;
        tr->last = dt->last;
        tr->best = dt->best;
        tr->rec_t = dt->rec_t;
        tr->rec_score = dt->rec_score;
        tr->rec_worst = dt->rec_worst;
        tr->rec_seq = s->seq++;
    }
    int next = tr->rec_t + s->cfg.perturbation_interval;
    tr->until_t = next < s->cfg.max_t ? next : s->cfg.max_t;
    tr->state = KL_TRIAL_RUNNING;
    s->running++;
    *job = (kl_job){.kind = KL_JOB_PROMOTE, .trial = x, .rung = 0, .until_t = tr->until_t};
    return true;
}
