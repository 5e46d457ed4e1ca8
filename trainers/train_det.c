/* dist.deterministic: a training step whose result does not depend on the rank count or on
 * train.accumulate. Every global batch is cut into dist.shards fixed shards (the same samples in
 * the same order whatever the rank count); the graph is compiled for one shard, each rank runs
 * its contiguous share of them, one forward and backward each, and every shard's gradients go
 * into an exact fixed-point sum (ops/exact_sum.c) that the ranks add with an integer
 * all-reduce. Integer sums do not depend on their order, so every rank count and accumulation
 * gets the same bits. Batch-norm running statistics follow the same road: each shard starts from
 * the step's statistics, and the step keeps the mean of the shards' updated ones. The shard's
 * loss, its metrics and the step's stop and checkpoint flags travel in the same sum, so that one
 * collective per step carries everything. Called by trainers/train.c. */
#include <stdlib.h>
#include <string.h>

#include "ops/exact_sum.h"
#include "trainers/train_impl.h"

/* Accumulator elements after the gradients and the buffers. */
enum { X_LOSS, X_SUM_LOSS, X_SUM_HITS, X_SUM_ABS, X_STOP, X_CKPT, X_REFUSED, X_N };

struct kl__det {
    int shards, mine;            /* shards per global batch, and this rank's */
    int64_t shard;               /* samples per shard */
    size_t np, nb, n;            /* gradients, buffers, accumulator elements */
    int64_t *acc;                /* kl__exact_size(n) */
    float *buffers0, extra[X_N]; /* the step's starting buffers; the extras' sums */
    size_t refused;              /* addends out of range this step (this rank) */
};

kl_status kl__det_check(const kl_config *cfg, int ranks, kl_error *err)
{
    int shards = cfg->dist.shards;
    int acc = cfg->train.accumulate > 0 ? cfg->train.accumulate : 1;
    long long gb = (long long)cfg->train.batch_size;
    if (gb % shards != 0)
        return kl_error_set(err, KL_EINVAL,
                            "dist.deterministic cuts every batch into dist.shards %d equal "
                            "shards, but train.batch_size %lld does not divide by %d; use a "
                            "batch size that does, or other dist.shards",
                            shards, gb, shards);
    if (shards % ranks != 0)
        return kl_error_set(err, KL_EINVAL,
                            "dist.deterministic shares dist.shards %d shards equally among the "
                            "ranks, but %d ranks do not divide %d; set dist.shards to a multiple "
                            "of %d (and of every rank count whose results you will compare)",
                            shards, ranks, shards, ranks);
    if (shards < ranks * acc)
        return kl_error_set(err, KL_EINVAL,
                            "train.accumulate %d on %d rank%s asks for passes of %lld samples, "
                            "but dist.deterministic's passes are whole shards of %lld "
                            "(dist.shards %d); set dist.shards to at least %d",
                            acc, ranks, ranks == 1 ? "" : "s", gb / ranks / acc, gb / shards,
                            shards, ranks * acc);
    if (shards > KL__EXACT_ADDENDS)
        return kl_error_set(err, KL_EINVAL, "dist.shards %d: at most %d", shards,
                            KL__EXACT_ADDENDS);
    return KL_OK;
}

kl_status kl__det_init(kl__train_state *r, kl_error *err)
{
    kl_graph *g = r->m->g;
    if (r->dev.device != KL_DEVICE_CPU)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "dist.deterministic is not supported yet on a GPU: set "
                            "train.device: cpu, or turn dist.deterministic off");
    kl__det *d = calloc(1, sizeof *d);
    if (!(r->det = d))
        return kl_error_set(err, KL_ENOMEM, "out of memory starting dist.deterministic");
    d->shards = r->cfg->dist.shards;
    d->mine = d->shards / r->size;
    d->shard = r->cfg->train.batch_size / d->shards;
    d->np = kl_graph_param_count(g);
    d->nb = kl_graph_buffer_count(g);
    d->n = d->np + d->nb + X_N;
    size_t words = kl__exact_size(d->n);
    d->acc = words ? malloc(words * sizeof *d->acc) : NULL;
    d->buffers0 = malloc((d->nb + 1) * sizeof *d->buffers0);
    if (!d->acc || !d->buffers0)
        return kl_error_set(err, KL_ENOMEM,
                            "out of memory for dist.deterministic's sums (%zu parameters)", d->np);
    return KL_OK;
}

void kl__det_free(kl__det *d)
{
    if (!d)
        return;
    free(d->acc);
    free(d->buffers0);
    free(d);
}

int kl__det_shards(const kl_config *cfg)
{
    return cfg->dist.deterministic ? cfg->dist.shards : 0;
}

kl_status kl__det_passes(kl__train_state *r, int epoch, int64_t s, kl_error *err)
{
    kl__det *d = r->det;
    kl_graph *g = r->m->g;
    float *grads = kl_graph_grads(g), *buffers = kl_graph_buffers(g);
    int64_t gb = r->cfg->train.batch_size;
    memset(d->acc, 0, kl__exact_size(d->n) * sizeof *d->acc);
    memcpy(d->buffers0, buffers, d->nb * sizeof *buffers);
    d->refused = 0;
    for (int j = 0; j < d->mine; j++) {
        int64_t first = (int64_t)(r->rank * d->mine + j) * d->shard; /* in the global batch */
        double stats[3] = {0, 0, 0};
        float loss;
        kl_graph_zero_grad(g);
        memcpy(buffers, d->buffers0, d->nb * sizeof *buffers);
        kl_status st = kl__train_load(r, epoch, r->idx + s * gb + first, d->shard, err);
        if (st == KL_OK)
            st = kl_step_pass(r->train_step, r->cfg->train.seed, r->step, first, &loss, err);
        if (st != KL_OK)
            return st;
        kl__train_batch_stats(r->m, d->shard, &stats[0], &stats[1], &stats[2]);
        float extra[X_STOP] = {loss, (float)stats[0], (float)stats[1], (float)stats[2]};
        d->refused += kl__exact_add(d->acc, d->n, 0, grads, d->np);
        d->refused += kl__exact_add(d->acc, d->n, d->np, buffers, d->nb);
        d->refused += kl__exact_add(d->acc, d->n, d->np + d->nb, extra, X_STOP);
    }
    return KL_OK;
}

kl_status kl__det_reduce(kl__train_state *r, float *ctl, kl_error *err)
{
    kl__det *d = r->det;
    kl_graph *g = r->m->g;
    size_t x = d->np + d->nb;
    float flags[3] = {ctl[KL__CTL_STOP], ctl[KL__CTL_CKPT], (float)d->refused};
    kl__exact_add(d->acc, d->n, x + X_STOP, flags, 3);
    kl__train_phase(r, "gradient all-reduce", r->step + 1);
    kl_status st =
        r->size > 1 ? kl_comm_allreduce_i64(r->comm, d->acc, kl__exact_size(d->n), err) : KL_OK;
    kl__train_phase(r, NULL, -1);
    if (st != KL_OK)
        return st;
    kl__exact_get(d->acc, d->n, x, X_N, 1.0f, d->extra);
    if (d->extra[X_REFUSED] > 0)
        return kl_error_set(err, KL_ERANGE,
                            "at step %lld a shard's loss, gradient or batch-norm statistic was "
                            "not finite or beyond %g, what dist.deterministic's exact sum holds: "
                            "training diverged; lower optimizer.lr or set train.clip_norm",
                            (long long)r->step + 1, (double)KL__EXACT_MAX);
    kl__exact_get(d->acc, d->n, 0, d->np, 1.0f, kl_graph_grads(g));
    kl__exact_get(d->acc, d->n, d->np, d->nb, 1.0f / (float)d->shards, kl_graph_buffers(g));
    ctl[KL__CTL_LOSS] = d->extra[X_LOSS] / (float)d->shards;
    ctl[KL__CTL_STOP] = d->extra[X_STOP];
    ctl[KL__CTL_CKPT] = d->extra[X_CKPT];
    r->sums[0] += d->extra[X_SUM_LOSS];
    r->sums[1] += d->extra[X_SUM_HITS];
    r->sums[2] += d->extra[X_SUM_ABS];
    return KL_OK;
}
