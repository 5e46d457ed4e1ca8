/* The training loop behind `kiln train` (and, later, every tune trial): shuffled full batches,
 * augmentation, forward, backward, clipping, the optimizer step on the flat buffers, evaluation,
 * early stopping with the best weights restored, and a final test evaluation. It reports only
 * through kl_train_hooks. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "kiln/launch.h"
#include "kiln/step.h"
#include "kiln/stop.h"
#include "kiln/train.h"
#include "trainers/train_impl.h"

/* OpenBLAS's thread control; kiln links OpenBLAS (see CMakeLists.txt). */
void openblas_set_num_threads(int n);

kl_model_options kl_train_model_options(const kl_config *cfg, const kl_data_splits *data)
{
    const kl_tensor *x = data->train.x, *y = data->train.y;
    kl_model_options o = {.task = cfg->data.task,
                          .label_smoothing = cfg->train.label_smoothing,
                          .batch = cfg->train.batch_size,
                          .seed = cfg->train.seed,
                          .trainable = true};
    o.input.ndim = x->shape.ndim - 1;
    for (int i = 1; i < x->shape.ndim; i++)
        o.input.d[i - 1] = x->shape.d[i];
    o.outputs = cfg->data.task == KL_TASK_CLASSIFICATION ? data->train.classes
                                                         : (int)(kl_numel(y) / y->shape.d[0]);
    return o;
}

/* Per-batch statistics: the loss weighted by the batch size, and correct predictions or the
 * absolute error. */
void kl__train_batch_stats(kl_model *m, int64_t b, double *loss, double *hits, double *abs_err)
{
    const kl_tensor *out = kl_graph_value(m->g, m->output), *y = kl_graph_value(m->g, m->y);
    int64_t k = out->shape.d[1];
    *loss += (double)kl_f32(kl_graph_value(m->g, m->loss))[0] * (double)b;
    for (int64_t i = 0; i < b; i++) {
        const float *row = kl_f32(out) + i * k;
        if (m->opts.task == KL_TASK_CLASSIFICATION) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                best = row[j] > row[best] ? j : best;
            *hits += best == kl_i32(y)[i];
        } else {
            for (int64_t j = 0; j < k; j++)
                *abs_err += fabs((double)row[j] - kl_f32(y)[i * k + j]);
        }
    }
}

static kl_status load(kl_model *m, const kl_dataset *d, const int64_t *idx, int64_t b,
                      kl_error *err)
{
    return kl_data_gather(d, idx, b, kl_f32(kl_graph_value(m->g, m->x)),
                          kl_graph_value(m->g, m->y)->data, err);
}

kl_status kl__train_load(kl__train_state *r, int epoch, const int64_t *batch, int64_t b,
                         kl_error *err)
{
    const kl_config *cfg = r->cfg;
    const kl_tensor *xs = r->data->train.x;
    kl_model *m = r->m;
    kl_status st = load(m, &r->data->train, batch, b, err);
    if (st == KL_OK && (cfg->data.flip || cfg->data.crop_padding > 0))
        kl_data_augment(kl_f32(kl_graph_value(m->g, m->x)), b, xs->shape.d[1], xs->shape.d[2],
                        xs->shape.d[3], batch, cfg->data.crop_padding, cfg->data.flip,
                        cfg->train.seed, (uint64_t)epoch);
    return st;
}

/* Sums over samples [lo, hi) of d in eval mode: the loss weighted by batch size, correct
 * predictions and absolute errors, into sums[0..3). A stoppable evaluation (the trainer's) looks
 * for a stop request before every batch and returns KL_ESTOPPED. */
static kl_status eval_sums(kl_model *m, const kl_dataset *d, int64_t lo, int64_t hi, bool stoppable,
                           double *sums, kl_error *err)
{
    int64_t max_b = kl_graph_max_batch(m->g);
    int64_t *idx = malloc((size_t)max_b * sizeof *idx);
    kl_status st = KL_OK;
    sums[0] = sums[1] = sums[2] = 0;
    if (!idx)
        return kl_error_set(err, KL_ENOMEM, "out of memory evaluating");
    kl_graph_set_mode(m->g, KL_MODE_EVAL);
    for (int64_t s = lo; s < hi && st == KL_OK; s += max_b) {
        int64_t b = s + max_b <= hi ? max_b : hi - s;
        if (stoppable && s > lo)
            kl_stop_test_point("eval", 0, -1);
        if (stoppable && kl_stop_signal()) {
            st =
                kl_error_set(err, KL_ESTOPPED, "evaluation stopped by signal %d", kl_stop_signal());
            break;
        }
        for (int64_t i = 0; i < b; i++)
            idx[i] = s + i;
        if ((st = kl_graph_set_batch(m->g, b, err)) != KL_OK)
            break;
        if ((st = load(m, d, idx, b, err)) != KL_OK)
            break;
        if ((st = kl_graph_forward(m->g, err)) == KL_OK)
            kl__train_batch_stats(m, b, &sums[0], &sums[1], &sums[2]);
    }
    free(idx);
    kl_graph_set_mode(m->g, KL_MODE_TRAIN);
    if (st == KL_OK)
        st = kl_graph_set_batch(m->g, max_b, err);
    return st;
}

static void eval_means(const kl_model *m, const double *sums, int64_t n, double *loss,
                       double *accuracy, double *mae)
{
    int64_t outputs = kl_graph_shape(m->g, m->output).d[1];
    *loss = sums[0] / (double)n;
    *accuracy = m->opts.task == KL_TASK_CLASSIFICATION ? sums[1] / (double)n : NAN;
    *mae = m->opts.task == KL_TASK_REGRESSION ? sums[2] / ((double)n * (double)outputs) : NAN;
}

kl_status kl_evaluate(kl_model *m, const kl_dataset *d, double *loss, double *accuracy, double *mae,
                      kl_error *err)
{
    double sums[3];
    int64_t n = d->x->shape.d[0];
    kl_status st = eval_sums(m, d, 0, n, false, sums, err);
    eval_means(m, sums, n, loss, accuracy, mae);
    return st;
}

static kl_status make_buckets(kl__train_state *r, kl_error *err);
static kl_status sync_buffers(kl__train_state *r, kl_error *err);
static void grad_ready(void *ctx, int param);

/* NCCL for the gradients when every rank can use it (each has a GPU of its own), else MPI. */
static kl_status start_nccl(kl__train_state *r, kl_error *err)
{
    float can = kl_train_uses_nccl(&r->dev, r->size);
    kl__train_phase(r, "device check", -1);
    kl_status st = kl_comm_allreduce(r->comm, &can, 1, err);
    kl__train_phase(r, NULL, -1);
    if (st != KL_OK || can < (float)r->size)
        return st;
    kl_graph *g = r->m->g;
    if ((st = kl_comm_nccl(r->comm, r->dev.index, kl_graph_stream(g), &r->gcomm, err)) != KL_OK)
        return st;
    return kl_comm_set_timeout(r->gcomm, r->cfg->dist.timeout, err);
}

bool kl_train_uses_nccl(const kl_device_choice *dev, int ranks)
{
    return ranks > 1 && dev->device == KL_DEVICE_CUDA && !dev->shared && kl_comm_have_nccl();
}

static kl_status run_init(kl__train_state *r, kl_error *err)
{
    const kl_config *cfg = r->cfg;
    int64_t n = r->data->train.x->shape.d[0];
    if (n < cfg->train.batch_size)
        return kl_error_set(err, KL_EINVAL,
                            "train.batch_size is %lld but the training set has only %lld samples",
                            (long long)cfg->train.batch_size, (long long)n);
    if (cfg->checkpoint.every_unit != KL_EVERY_OFF && !r->opts->ckpt_dir)
        return kl_error_set(err, KL_EINVAL,
                            "checkpoint.every needs a place for checkpoints: run with a run "
                            "folder (without --no-run-dir), or remove checkpoint.every");
    r->last_ckpt = kl_now();
    kl__train_remove_stale(r);
    if (cfg->train.early_stop.patience > 0 && !r->data->val.x)
        return kl_error_set(err, KL_EINVAL,
                            "train.early_stop needs validation data: set data.val_fraction or "
                            "data.val");
    if ((cfg->data.flip || cfg->data.crop_padding > 0) && r->data->train.x->shape.ndim != 4)
        return kl_error_set(err, KL_EINVAL,
                            "data.flip and data.crop_padding augment images (N, C, H, W), but "
                            "the training data has %d axes; remove them for this data",
                            r->data->train.x->shape.ndim);
    r->steps_per_epoch = n / cfg->train.batch_size;
    kl_step_config sc = {.optim = cfg->optimizer,
                         .lr = cfg->schedule,
                         .clip_norm = cfg->train.clip_norm > 0 ? cfg->train.clip_norm : 0};
    if ((sc.lr.kind == KL_LR_COSINE || sc.lr.kind == KL_LR_ONECYCLE) && sc.lr.total_steps == 0) {
        sc.lr.total_steps = r->steps_per_epoch * cfg->train.epochs;
        if (sc.lr.total_steps <= sc.lr.warmup_steps)
            return kl_error_set(err, KL_EINVAL,
                                "schedule.warmup_steps is %lld but this run has only %lld steps "
                                "(train.epochs %d x %lld full batches of train.batch_size %lld); "
                                "lower schedule.warmup_steps or train longer",
                                (long long)sc.lr.warmup_steps, (long long)sc.lr.total_steps,
                                cfg->train.epochs, (long long)r->steps_per_epoch,
                                (long long)cfg->train.batch_size);
        if (sc.lr.kind == KL_LR_ONECYCLE &&
            !((double)sc.lr.pct_start * (double)sc.lr.total_steps > 1.0))
            return kl_error_set(err, KL_EINVAL,
                                "schedule.pct_start %g of this run's %lld steps (train.epochs %d "
                                "x %lld full batches of train.batch_size %lld) leaves the "
                                "onecycle schedule no rise; raise schedule.pct_start or train "
                                "longer",
                                (double)sc.lr.pct_start, (long long)sc.lr.total_steps,
                                cfg->train.epochs, (long long)r->steps_per_epoch,
                                (long long)cfg->train.batch_size);
    }
    kl_status st = kl_lr_check(&sc.lr, err);
    if (st != KL_OK)
        return st;
    /* Checkpoints store the config with the schedule this run follows: a total_steps of 0 (from
     * the epochs) as the number of steps it stands for. */
    if (r->opts->ckpt_dir) {
        kl_config used = *cfg;
        used.schedule.total_steps = sc.lr.total_steps;
        size_t len = 0;
        FILE *f = open_memstream(&r->config_text, &len);
        if (!f)
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        kl_config_print(&used, f);
        fclose(f);
    }
    kl_graph *g = r->m->g;
    if (!(r->train_step = kl_step_new(g, &sc, err)))
        return err->status;
    r->idx = malloc((size_t)n * sizeof *r->idx);
    r->best_params = malloc((kl_graph_param_count(g) + 1) * sizeof(float));
    r->best_buffers = malloc((kl_graph_buffer_count(g) + 1) * sizeof(float));
    if (!r->idx || !r->best_params || !r->best_buffers)
        return kl_error_set(err, KL_ENOMEM, "out of memory starting training");
    r->best_metric = r->kept_best = NAN;
    if (r->cfg->dist.deterministic) /* its own sums instead of buckets */
        return kl__det_init(r, err);
    if (r->size > 1) {
        if ((st = make_buckets(r, err)) != KL_OK)
            return st;
        kl_graph_on_grad_ready(g, grad_ready, r);
    }
    return r->size > 1 ? start_nccl(r, err) : KL_OK;
}

static void run_free(kl__train_state *r)
{
    if (r->m->g) {
        kl_graph_on_grad_ready(r->m->g, NULL, NULL);
        kl_graph_set_loss_scale(r->m->g, 1.0f);
    }
    kl_comm_free(r->gcomm);
    kl__det_free(r->det);
    free(r->buckets);
    free(r->param_bucket);
    kl_step_free(r->train_step);
    free(r->idx);
    free(r->best_params);
    free(r->best_buffers);
    free(r->config_text);
    free(r->history);
}

/* Gradient buckets, made once: parameters are laid out in creation order and their gradients
 * become final in reverse, so walking them from the last one and cutting every dist.bucket_mb
 * gives contiguous ranges that complete one after another during backward. */
static kl_status make_buckets(kl__train_state *r, kl_error *err)
{
    kl_graph *g = r->m->g;
    int np = kl_graph_num_params(g);
    size_t cap = (size_t)(r->cfg->dist.bucket_mb * 1048576.0f / sizeof(float));
    size_t first_cap = 1048576 / sizeof(float);
    r->buckets = calloc((size_t)np + 1, sizeof *r->buckets);
    r->param_bucket = calloc((size_t)np + 1, sizeof *r->param_bucket);
    if (!r->buckets || !r->param_bucket)
        return kl_error_set(err, KL_ENOMEM, "out of memory making gradient buckets");
    kl__bucket *cur = NULL;
    for (int p = np - 1; p >= 0; p--) {
        const kl_param_info *info = kl_graph_param(g, p);
        /* The first bucket (the last layers) is capped at 1 MiB, as DDP does: it holds the first
         * gradients of backward, so its all-reduce starts early and overlaps the rest. */
        size_t limit = r->nbuckets == 1 && cap > first_cap ? first_cap : cap;
        if (!cur || cur->hi - cur->lo >= (limit ? limit : 1)) {
            cur = &r->buckets[r->nbuckets++];
            cur->hi = info->offset + info->numel;
        }
        cur->lo = info->offset;
        cur->nparams++;
        r->param_bucket[p] = (int)(cur - r->buckets);
    }
    return KL_OK;
}

static void start_bucket(kl__train_state *r, kl__bucket *b)
{
    if (r->comm_st != KL_OK || b->req)
        return;
    /* NCCL sums the device's gradients once the graph's stream has computed them. */
    float *grads = r->gcomm ? kl_graph_device_grads(r->m->g) : kl_graph_grads(r->m->g);
    r->comm_st = kl_comm_allreduce_start(r->gcomm ? r->gcomm : r->comm, grads + b->lo,
                                         b->hi - b->lo, &b->req, &r->comm_err);
}

/* Backward's gradient-ready callback: the bucket's all-reduce starts with its last gradient.
 * MPI advances a nonblocking collective only inside MPI calls, so every callback also tests the
 * buckets in flight: that is what lets them make progress while backward computes. */
static void grad_ready(void *ctx, int param)
{
    kl__train_state *r = ctx;
    if (!r->reducing || !r->cfg->dist.overlap) /* a micro-step, or buckets start after backward */
        return;
    /* On a device the callback means queued, not done: NCCL orders its all-reduce after the
     * gradient on the device; the MPI fallback must wait for the host copy after backward. */
    if (r->dev.device != KL_DEVICE_CPU && !r->gcomm)
        return;
    kl__bucket *b = &r->buckets[r->param_bucket[param]];
    if (--b->pending == 0)
        start_bucket(r, b);
    for (int i = 0; i < r->nbuckets; i++)
        if (r->buckets[i].req)
            kl_comm_test(r->gcomm ? r->gcomm : r->comm, r->buckets[i].req);
}

static void arm_buckets(kl__train_state *r)
{
    for (int i = 0; i < r->nbuckets; i++) {
        r->buckets[i].pending = r->buckets[i].nparams;
        r->buckets[i].req = NULL;
    }
    r->comm_st = KL_OK;
}

/* Waits for every bucket: each rank's gradients are its slice's mean already scaled by 1 / ranks
 * (the loss scale), so their sum is the global batch's mean. The loss is averaged too, so that
 * every rank sees the same value and a divergence stops all of them at the same step. */
static kl_status average(kl__train_state *r, float *ctl, kl_error *err)
{
    kl_status st = KL_OK;
    /* On a device the gradients go through host memory (the MPI fallback): backward has only
     * queued its work, so no bucket started during it; all start here, on the host copies. */
    bool staged = r->dev.device != KL_DEVICE_CPU && !r->gcomm;
    if (staged && (st = kl_graph_to_host(r->m->g, KL_GRAPH_GRADS, err)) != KL_OK)
        return st;
    for (int i = 0; i < r->nbuckets; i++)
        start_bucket(r, &r->buckets[i]); /* any the callback did not start */
    if (r->comm_st != KL_OK)
        st = kl_error_set(err, r->comm_st, "%s", r->comm_err.msg);
    kl__train_phase(r, "gradient all-reduce", r->step + 1);
    double t0 = kl_now();
    for (int i = 0; i < r->nbuckets; i++) {
        kl_comm *c = r->gcomm ? r->gcomm : r->comm;
        kl_status wst = r->buckets[i].req ? kl_comm_wait(c, r->buckets[i].req, err) : KL_OK;
        r->buckets[i].req = NULL;
        st = st == KL_OK ? wst : st;
    }
    r->comm_wait += kl_now() - t0;
    if (st == KL_OK && staged)
        st = kl_graph_to_device(r->m->g, KL_GRAPH_GRADS, err);
    if (st == KL_OK)
        st = kl_comm_allreduce(r->comm, ctl, KL__CTL_N, err);
    kl__train_phase(r, NULL, -1);
    if (st != KL_OK)
        return st;
    ctl[KL__CTL_LOSS] /= (float)r->size;
    return KL_OK;
}

/* The epoch's training sums over every rank's slices (every rank calls it). */
static kl_status reduce_sums(kl__train_state *r, double *sums, kl_error *err)
{
    if (r->size == 1 || r->det) /* dist.deterministic adds every rank's into sums each step */
        return KL_OK;
    float f[3] = {(float)sums[0], (float)sums[1], (float)sums[2]};
    kl__train_phase(r, "epoch metrics all-reduce", r->step);
    kl_status st = kl_comm_allreduce(r->comm, f, 3, err);
    kl__train_phase(r, NULL, -1);
    for (int i = 0; i < 3; i++)
        sums[i] = f[i];
    return st;
}

/* Whether a stop was requested on any rank, where no step's all-reduce carries the request (after
 * a checkpoint write): one small all-reduce, so that every rank decides the same. */
static kl_status stop_check(kl__train_state *r, bool *stop, kl_error *err)
{
    float f = kl_stop_signal() != 0;
    kl_status st = KL_OK;
    if (r->size > 1) {
        kl__train_phase(r, "stop check", r->step);
        st = kl_comm_allreduce(r->comm, &f, 1, err);
        kl__train_phase(r, NULL, -1);
    }
    *stop = f > 0;
    return st;
}

/* Ends the run for a stop request: KL_ESTOPPED, saying where it stopped (`where`: "at epoch 3,
 * step 40") and which checkpoint to continue from (name NULL: none was written). */
static kl_status stopped(kl__train_state *r, const char *where, const char *name, kl_error *err)
{
    /* The request travels with the all-reduce, so a rank may stop for another rank's signal. */
    char cause[48] = "a signal to another rank";
    if (kl_stop_signal())
        snprintf(cause, sizeof cause, "signal %d", kl_stop_signal());
    if (!name)
        return kl_error_set(err, KL_ESTOPPED,
                            "stopped by %s %s (no checkpoint: this run has no run folder)", cause,
                            where);
    return kl_error_set(err, KL_ESTOPPED,
                        "stopped by %s %s; checkpoint %s/%s written: continue with --resume", cause,
                        where, r->opts->ckpt_dir, name);
}

/* The checkpoint of where the run stands (rank 0 writes, every rank calls): epochs_done and s
 * batches into the next, with the epoch's sums and seconds. At an epoch's end (synced) the sums
 * are every rank's already and the buffers averaged; mid-epoch both are done here. */
static kl_status checkpoint_here(kl__train_state *r, int epochs_done, int64_t s,
                                 const double *epoch_sums, bool synced, double seconds, char *name,
                                 size_t size, kl_error *err)
{
    double sums[3] = {epoch_sums[0], epoch_sums[1], epoch_sums[2]};
    kl__train_ckpt_name(name, size, r->step);
    /* Every rank resumes with rank 0's batch-norm statistics: make them everyone's now. */
    kl_status st = synced ? KL_OK : reduce_sums(r, sums, err);
    if (st == KL_OK && !synced)
        st = sync_buffers(r, err);
    if (st == KL_OK)
        st = kl__train_save(r, epochs_done, s, sums, seconds, name, err);
    if (st == KL_OK)
        kl__train_prune(r);
    return st;
}

/* On a device the step stays there: forward leaves its outputs on the device
 * (kl_graph_keep_outputs) and the batch statistics are summed there; they are read every
 * STATS_EVERY steps, at an epoch's last step and before a checkpoint. A non-finite loss is found
 * at that read, not at its own step: the steps in between were taken (on the CPU the loss is
 * checked every step and the bad step is not taken). A read step carries the mean loss since the
 * previous read in the step's all-reduce (NAN when some loss was not finite), so every rank
 * stops at the same step. */
#define STATS_EVERY 20

/* Adds the device's sums since the last read into sums; *loss: the mean loss over what was read
 * (NAN if some loss was not finite, *first_bad naming its step), else the previous read's. */
static kl_status take_stats(kl__train_state *r, double *sums, float *loss, int64_t *first_bad,
                            kl_error *err)
{
    double d[3];
    int64_t bad = 0;
    kl_status st = kl_graph_stats_take(r->m->g, d, &bad, first_bad, err);
    if (st != KL_OK)
        return st;
    for (int i = 0; i < 3; i++)
        sums[i] += d[i];
    if (r->stats_samples > 0)
        r->stats_loss = bad > 0 ? NAN : (float)(d[0] / (double)r->stats_samples);
    r->stats_samples = 0;
    *loss = r->stats_loss;
    return KL_OK;
}

/* Before a checkpoint on a device: the sums read, and no rank's loss gone non-finite since the
 * last read (a checkpoint never holds a diverged step). */
static kl_status stats_before_ckpt(kl__train_state *r, kl_error *err)
{
    float loss = 0;
    int64_t first_bad = -1;
    kl_status st = take_stats(r, r->sums, &loss, &first_bad, err);
    float bad = isfinite(loss) ? 0.0f : 1.0f;
    if (st == KL_OK && r->size > 1)
        st = kl_comm_allreduce(r->comm, &bad, 1, err);
    if (st == KL_OK && bad > 0)
        return kl_error_set(err, KL_ERANGE,
                            "the loss became non-finite by step %lld (on this rank first at step "
                            "%lld): training diverged, and no checkpoint was written; lower "
                            "optimizer.lr or set train.clip_norm",
                            (long long)r->step, (long long)first_bad + 1);
    return st;
}

/* After a step: a checkpoint when checkpoint.every says so or a stop was requested (then
 * KL_ESTOPPED). A request that comes during the write stops the run at that checkpoint. s is the
 * number of the epoch's batches done. */
static kl_status after_step(kl__train_state *r, int epoch, int64_t s, const float *ctl,
                            double seconds, kl_error *err)
{
    const kl_checkpoint_section *ck = &r->cfg->checkpoint;
    bool stop = ctl[KL__CTL_STOP] > 0;
    bool due = ctl[KL__CTL_CKPT] > 0 ||
               (ck->every_unit == KL_EVERY_STEPS && r->step % (int64_t)ck->every_n == 0);
    char where[64], name[64];
    snprintf(where, sizeof where, "at epoch %d, step %lld", epoch + 1, (long long)r->step);
    if (!r->opts->ckpt_dir || !(stop || due))
        return stop ? stopped(r, where, NULL, err) : KL_OK;
    if (r->dev.device != KL_DEVICE_CPU) {
        kl_status st = stats_before_ckpt(r, err);
        if (st != KL_OK)
            return st;
    }
    kl_status st = checkpoint_here(r, epoch, s, r->sums, false, seconds, name, sizeof name, err);
    if (st == KL_OK && !stop)
        st = stop_check(r, &stop, err);
    if (st != KL_OK)
        return st;
    return stop ? stopped(r, where, name, err) : KL_OK;
}

/* One pass over the shuffled training set in full batches (the shuffled remainder differs every
 * epoch, so every sample is used; equal batches also split evenly across ranks). A resumed run
 * starts its first epoch at the batch where the checkpoint left it. */
static kl_status train_epoch(kl__train_state *r, int epoch, kl_epoch_metrics *em, kl_error *err)
{
    kl_model *m = r->m;
    const kl_config *cfg = r->cfg;
    const kl_dataset *d = &r->data->train;
    int acc = cfg->train.accumulate > 0 ? cfg->train.accumulate : 1;
    int64_t gb = cfg->train.batch_size, b = gb / r->size / acc, n = d->x->shape.d[0];
    bool resumed = epoch == r->start_epoch && r->start_step > 0;
    int64_t first = resumed ? r->start_step : 0;
    double t0 = kl_now() - (resumed ? r->epoch_seconds : 0);
    double *sums = r->sums; /* restored by a resume, else zero */
    kl_status st;
    bool kept = r->dev.device != KL_DEVICE_CPU;
    if (!resumed)
        sums[0] = sums[1] = sums[2] = 0;
    if (kept && (st = kl_graph_keep_outputs(m->g, true, err)) != KL_OK)
        return st;
    r->stats_samples = 0;
    if (epoch == r->start_epoch)
        r->stats_loss = NAN; /* the step hook's loss until the first read */
    kl_data_shuffle(r->idx, n, cfg->train.seed, (uint64_t)epoch);
    r->comm_wait = 0;
    kl_graph_set_mode(m->g, KL_MODE_TRAIN);
    /* Gradients come out as this micro-batch's (or shard's) share of the global mean: summing
     * them over the micro-batches and the ranks is all that is left to do. */
    int parts = r->det ? kl__det_shards(cfg) : r->size * acc;
    kl_graph_set_loss_scale(m->g, 1.0f / (float)parts);
    for (int64_t s = first; s < r->steps_per_epoch; s++) {
        float ctl[KL__CTL_N] = {0};
        kl_stop_test_point("step", r->rank, r->step);
        kl_step_begin(r->train_step);
        if (r->det && (st = kl__det_passes(r, epoch, s, err)) != KL_OK)
            return st;
        /* This rank's share of the global batch, in acc micro-batches whose gradients add up
         * (under dist.deterministic its shards ran above instead). */
        for (int a = 0; a < (r->det ? 0 : acc); a++) {
            int64_t at = kl_train_slice(s, gb, r->rank, r->size, acc, a);
            const int64_t *batch = r->idx + at;
            float loss;
            if ((st = kl__train_load(r, epoch, batch, b, err)) != KL_OK)
                return st;
            r->reducing = r->size > 1 && a == acc - 1;
            if (r->reducing)
                arm_buckets(r);
            if ((st = kl_step_pass(r->train_step, cfg->train.seed, r->step, at - s * gb, &loss,
                                   err)) != KL_OK)
                return st;
            ctl[KL__CTL_LOSS] += loss;
            if (!kept)
                kl__train_batch_stats(m, b, &sums[0], &sums[1], &sums[2]);
            else if ((st = kl_graph_stats_add(m->g, m->output, m->y, r->step, err)) != KL_OK)
                return st;
            r->stats_samples += b;
        }
        int64_t first_bad = -1;
        bool read = kept && ((r->step + 1) % STATS_EVERY == 0 || s + 1 == r->steps_per_epoch);
        if (read && (st = take_stats(r, sums, &ctl[KL__CTL_LOSS], &first_bad, err)) != KL_OK)
            return st;
        if (read)
            ctl[KL__CTL_LOSS] *= (float)acc; /* a mean already: undo the division below */
        ctl[KL__CTL_STOP] = kl_stop_signal() != 0;
        ctl[KL__CTL_CKPT] = r->rank == 0 && cfg->checkpoint.every_unit == KL_EVERY_SECONDS &&
                            kl_now() - r->last_ckpt >= cfg->checkpoint.every_n;
        /* Averaging over ranks waits for the buckets, whose all-reduces the last micro-batch's
         * backward started on this buffer: only then may it be scaled. */
        st = r->det ? kl__det_reduce(r, ctl, err) : r->size > 1 ? average(r, ctl, err) : KL_OK;
        if (st != KL_OK)
            return st;
        /* gradients: scaled by the loss scale; dist.deterministic's loss is the step's mean */
        float step_loss = r->det ? ctl[KL__CTL_LOSS] : ctl[KL__CTL_LOSS] / (float)acc;
        if (kept && read)
            r->stats_loss = step_loss; /* every rank's mean: what the hook is told until the next */
        else if (kept)
            step_loss = r->stats_loss; /* nothing was read this step */
        if (kept && read && !isfinite(step_loss))
            return kl_error_set(err, KL_ERANGE,
                                "the loss became non-finite by epoch %d, step %lld (on this rank "
                                "first at step %lld; on a GPU the loss is read every %d steps, "
                                "and the steps before that read were taken): training diverged; "
                                "lower optimizer.lr or set train.clip_norm",
                                epoch + 1, (long long)r->step + 1,
                                first_bad >= 0 ? (long long)first_bad + 1 : (long long)r->step + 1,
                                STATS_EVERY);
        if (kl_step_end(r->train_step, r->step, kept ? 0.0f : step_loss, err) != KL_OK)
            return kl_error_set(err, KL_ERANGE,
                                "the loss became %g at epoch %d, step %lld: training diverged; "
                                "lower optimizer.lr or set train.clip_norm",
                                (double)step_loss, epoch + 1, (long long)r->step + 1);
        em->lr = kl_step_lr(r->train_step, r->step);
        r->step++;
        if (r->hooks && r->hooks->on_step)
            r->hooks->on_step(r->hooks->ctx, epoch + 1, s + 1, r->steps_per_epoch,
                              (double)step_loss, kl_now() - t0);
        if ((st = after_step(r, epoch, s + 1, ctl, kl_now() - t0, err)) != KL_OK)
            return st;
    }
    /* The epoch's last step's rate, also when a run resumed at its last batch took none here. */
    em->lr = kl_step_lr(r->train_step, r->step - 1);
    if (kept && (st = kl_graph_keep_outputs(m->g, false, err)) != KL_OK)
        return st;
    if ((st = reduce_sums(r, sums, err)) != KL_OK)
        return st;
    double seen = (double)(r->steps_per_epoch * gb);
    em->train_loss = sums[0] / seen;
    em->train_accuracy = m->opts.task == KL_TASK_CLASSIFICATION ? sums[1] / seen : NAN;
    em->seconds = kl_now() - t0;
    em->samples_per_s = (double)((r->steps_per_epoch - first) * gb) /
                        (em->seconds - (resumed ? r->epoch_seconds : 0) > 0
                             ? em->seconds - (resumed ? r->epoch_seconds : 0)
                             : 1e-9);
    em->comm_wait_s = r->comm_wait;
    em->step = r->step;
    /* sums stay: every rank's totals now, what a checkpoint during evaluation stores. */
    return KL_OK;
}

/* Evaluation split over the ranks: each takes a contiguous share of d and the sums are
 * all-reduced, so every rank gets the whole set's metrics for 1/N of the work. A stop request
 * abandons it (KL_ESTOPPED on every rank: it travels with the sums). */
static kl_status evaluate_dist(kl__train_state *r, const kl_dataset *d, double *loss,
                               double *accuracy, double *mae, kl_error *err)
{
    int64_t n = d->x->shape.d[0];
    int64_t lo = n * r->rank / r->size, hi = n * (r->rank + 1) / r->size;
    double sums[3];
    kl_status st = eval_sums(r->m, d, lo, hi, true, sums, err);
    if (r->size == 1) {
        eval_means(r->m, sums, n, loss, accuracy, mae);
        return st;
    }
    float part[5] = {(float)sums[0], (float)sums[1], (float)sums[2],
                     st == KL_OK || st == KL_ESTOPPED ? 0.0f : 1.0f, st == KL_ESTOPPED};
    kl__train_phase(r, "evaluation all-reduce", r->step);
    kl_status cst = kl_comm_allreduce(r->comm, part, 5, err);
    kl__train_phase(r, NULL, -1);
    if ((st != KL_OK && st != KL_ESTOPPED) || cst != KL_OK)
        return cst != KL_OK ? cst : st;
    if (part[3] > 0)
        return kl_error_set(err, KL_ECOMM, "evaluation failed on another rank");
    if (part[4] > 0)
        return st == KL_ESTOPPED ? st : kl_error_set(err, KL_ESTOPPED, "evaluation stopped");
    sums[0] = part[0];
    sums[1] = part[1];
    sums[2] = part[2];
    eval_means(r->m, sums, n, loss, accuracy, mae);
    return KL_OK;
}

/* Batch-norm running statistics are updated from each rank's own slice (as in DDP without
 * SyncBatchNorm), so they drift apart; averaging them at every epoch's end gives every rank the
 * same model to evaluate, keep and save. */
static kl_status sync_buffers(kl__train_state *r, kl_error *err)
{
    kl_graph *g = r->m->g;
    size_t n = kl_graph_buffer_count(g);
    if (r->size == 1 || n == 0 || r->det) /* dist.deterministic's are the same everywhere */
        return KL_OK;
    float *b = kl_graph_buffers(g), inv = 1.0f / (float)r->size;
    kl_status st = kl_graph_to_host(g, KL_GRAPH_BUFFERS, err);
    if (st != KL_OK)
        return st;
    kl__train_phase(r, "buffer all-reduce", r->step);
    st = kl_comm_allreduce(r->comm, b, n, err);
    kl__train_phase(r, NULL, -1);
    for (size_t i = 0; st == KL_OK && i < n; i++)
        b[i] *= inv;
    return st == KL_OK ? kl_graph_to_device(g, KL_GRAPH_BUFFERS, err) : st;
}

/* Early stopping: whether this epoch improved the watched metric, keeping the best weights. */
static bool improved(kl__train_state *r, const kl_epoch_metrics *em)
{
    const kl_early_stop *es = &r->cfg->train.early_stop;
    bool acc = es->metric && !strcmp(es->metric, "val_accuracy");
    double v = acc ? em->val_accuracy : em->val_loss;
    if (isnan(v))
        return false;
    bool better = isnan(r->best_metric) ||
                  (acc ? v > r->best_metric + es->min_delta : v < r->best_metric - es->min_delta);
    if (better) {
        kl_graph *g = r->m->g;
        r->best_metric = v;
        r->best_epoch = em->epoch;
        r->bad_epochs = 0;
        memcpy(r->best_params, kl_graph_params(g), kl_graph_param_count(g) * sizeof(float));
        memcpy(r->best_buffers, kl_graph_buffers(g), kl_graph_buffer_count(g) * sizeof(float));
    } else {
        r->bad_epochs++;
    }
    return better;
}

double kl_epoch_metric(const kl_epoch_metrics *m, const char *name)
{
    return !strcmp(name, "val_accuracy")     ? m->val_accuracy
           : !strcmp(name, "val_loss")       ? m->val_loss
           : !strcmp(name, "val_mae")        ? m->val_mae
           : !strcmp(name, "train_accuracy") ? m->train_accuracy
           : !strcmp(name, "train_loss")     ? m->train_loss
                                             : NAN;
}

/* Whether this epoch is best.h5's (kl_train_options.best_metric); improved_es: it improved early
 * stopping's metric. Rank 0, which writes best.h5, is the one whose kept_best counts: after a
 * resume only it holds the history that value comes from. */
bool kl__train_is_best(kl__train_state *r, const kl_epoch_metrics *em, bool improved_es)
{
    const kl_train_options *o = r->opts;
    if (!o->best_metric)
        return improved_es && r->cfg->train.early_stop.patience > 0;
    double v = kl_epoch_metric(em, o->best_metric);
    if (!isfinite(v) ||
        !(isnan(r->kept_best) || (o->best_maximize ? v > r->kept_best : v < r->kept_best)))
        return false;
    r->kept_best = v;
    return true;
}

/* A stop during an epoch's evaluation: its training is kept in a checkpoint at the epoch's last
 * batch, from which a resumed run evaluates it again. */
static kl_status stop_in_eval(kl__train_state *r, int epoch, double seconds, kl_error *err)
{
    char where[80], name[64];
    snprintf(where, sizeof where, "during evaluation at epoch %d, step %lld", epoch + 1,
             (long long)r->step);
    if (!r->opts->ckpt_dir)
        return stopped(r, where, NULL, err);
    kl_status st = checkpoint_here(r, epoch, r->steps_per_epoch, r->sums, true, seconds, name,
                                   sizeof name, err);
    return st == KL_OK ? stopped(r, where, name, err) : st;
}

/* A stop during the test evaluation: every epoch is done, so the checkpoint resumes straight to
 * the test evaluation. */
static kl_status stop_in_test(kl__train_state *r, const kl_train_result *res, kl_error *err)
{
    char name[64];
    double zero[3] = {0};
    if (!r->opts->ckpt_dir)
        return stopped(r, "during the test evaluation", NULL, err);
    kl_status st = checkpoint_here(r, res->epochs_run, 0, zero, true, 0, name, sizeof name, err);
    return st == KL_OK ? stopped(r, "during the test evaluation", name, err) : st;
}

static kl_status run_epochs(kl__train_state *r, kl_train_result *res, kl_error *err)
{
    const kl_config *cfg = r->cfg;
    bool have_val = r->data->val.x != NULL;
    int patience = cfg->train.early_stop.patience;
    for (int epoch = r->start_epoch; epoch < cfg->train.epochs; epoch++) {
        /* A run resumed after early stopping had decided (a stop during its test evaluation)
         * trains no further. */
        if (patience > 0 && r->bad_epochs >= patience) {
            res->early_stopped = true;
            break;
        }
        kl_epoch_metrics em = {.epoch = epoch + 1, .epochs = cfg->train.epochs};
        em.val_loss = em.val_accuracy = em.val_mae = NAN;
        kl_status st = train_epoch(r, epoch, &em, err);
        if (st != KL_OK)
            return st;
        bool eval = have_val &&
                    ((epoch + 1) % cfg->train.eval_every == 0 || epoch + 1 == cfg->train.epochs);
        if ((st = sync_buffers(r, err)) != KL_OK)
            return st;
        if (eval && (st = evaluate_dist(r, &r->data->val, &em.val_loss, &em.val_accuracy,
                                        &em.val_mae, err)) != KL_OK)
            return st == KL_ESTOPPED ? stop_in_eval(r, epoch, em.seconds, err) : st;
        /* improved() keeps a copy of the weights: the host's must be current. */
        if (eval && patience > 0 &&
            (st = kl_graph_to_host(r->m->g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err)) != KL_OK)
            return st;
        em.best = eval && improved(r, &em);
        res->epochs_run = epoch + 1;
        res->last = em;
        if ((st = kl__train_history_add(r, &em, err)) != KL_OK)
            return st;
        bool go_on = !r->hooks || !r->hooks->on_epoch || r->hooks->on_epoch(r->hooks->ctx, &em);
        if (r->size > 1) { /* rank 0's hook decides for every rank */
            unsigned char flag = go_on;
            kl__train_phase(r, "end-of-epoch broadcast", r->step);
            st = kl_comm_bcast(r->comm, &flag, 1, 0, err);
            kl__train_phase(r, NULL, -1);
            if (st != KL_OK)
                return st;
            go_on = flag;
        }
        /* The checkpoints come after the hooks have seen the epoch: a tune coordinator journals
         * the result first, so a crash in between makes the resumed trial report it again
         * (which the coordinator recognises) instead of skipping it. best.h5 comes before the
         * periodic one, so that a run resumed from that one never lacks its best epoch. */
        bool best = kl__train_is_best(r, &em, em.best);
        if (best && r->opts->ckpt_dir) {
            double zero[3] = {0};
            if ((st = kl__train_save(r, epoch + 1, 0, zero, 0, "best.h5", err)) != KL_OK)
                return st;
        }
        const kl_checkpoint_section *ck = &cfg->checkpoint;
        if (r->opts->ckpt_dir && ck->every_unit == KL_EVERY_EPOCHS &&
            (epoch + 1) % (int)ck->every_n == 0) {
            char name[64], where[48];
            double zero[3] = {0};
            bool stop = false;
            st = checkpoint_here(r, epoch + 1, 0, zero, true, 0, name, sizeof name, err);
            if (st == KL_OK)
                st = stop_check(r, &stop, err);
            if (st != KL_OK)
                return st;
            snprintf(where, sizeof where, "at the end of epoch %d", epoch + 1);
            if (stop)
                return stopped(r, where, name, err);
        }
        if (!go_on)
            break;
        if (patience > 0 && r->bad_epochs >= patience && epoch + 1 < cfg->train.epochs) {
            res->early_stopped = true;
            break;
        }
    }
    /* With early stopping on, the model that is tested and kept is the best one. */
    if (patience > 0 && r->best_epoch > 0) {
        kl_graph *g = r->m->g;
        memcpy(kl_graph_params(g), r->best_params, kl_graph_param_count(g) * sizeof(float));
        memcpy(kl_graph_buffers(g), r->best_buffers, kl_graph_buffer_count(g) * sizeof(float));
        kl_status st = kl_graph_to_device(g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err);
        if (st != KL_OK)
            return st;
    }
    res->best_epoch = r->best_epoch;
    return KL_OK;
}

/* Every rank must train the same thing: the resolved configs and the parameter layouts (and so
 * the data shapes behind them) are compared through their hashes before any step. */
static kl_status check_same(kl__train_state *r, kl_error *err)
{
    kl_graph *g = r->m->g;
    uint64_t mine[3] = {kl_config_hash(r->cfg), kl_graph_param_count(g),
                        (uint64_t)kl_graph_num_params(g) << 32 |
                            (uint64_t)kl_graph_buffer_count(g)};
    uint64_t *all = malloc((size_t)r->size * sizeof mine);
    if (!all)
        return kl_error_set(err, KL_ENOMEM, "out of memory comparing ranks");
    kl__train_phase(r, "model check", -1);
    kl_status st = kl_comm_allgather(r->comm, mine, all, sizeof mine, err);
    kl__train_phase(r, NULL, -1);
    for (int k = 1; st == KL_OK && k < r->size; k++) {
        const uint64_t *a = all, *b = all + 3 * k;
        if (a[0] != b[0])
            st = kl_error_set(err, KL_EINVAL,
                              "rank %d's resolved config differs from rank 0's: every rank must "
                              "get the same config file and --set overrides",
                              k);
        else if (a[1] != b[1] || a[2] != b[2])
            st = kl_error_set(err, KL_EINVAL,
                              "rank %d built a different model than rank 0 (%llu parameters "
                              "against %llu): the ranks see different data shapes",
                              k, (unsigned long long)b[1], (unsigned long long)a[1]);
    }
    free(all);
    return st;
}

kl_status kl_train_check_split(const kl_config *cfg, int ranks, kl_error *err)
{
    int acc = cfg->train.accumulate > 0 ? cfg->train.accumulate : 1;
    if (cfg->dist.deterministic)
        return kl__det_check(cfg, ranks, err);
    if (cfg->train.batch_size % ((int64_t)ranks * acc) != 0)
        return kl_error_set(err, KL_EINVAL,
                            "train.batch_size %lld does not split evenly over %d rank%s x %d "
                            "micro-batches (train.accumulate); use a multiple of %d (the global "
                            "batch is what the config fixes)",
                            (long long)cfg->train.batch_size, ranks, ranks == 1 ? "" : "s", acc,
                            ranks * acc);
    return KL_OK;
}

int64_t kl_train_slice(int64_t step, int64_t global_batch, int rank, int ranks, int accumulate,
                       int micro)
{
    int64_t b = global_batch / ranks / accumulate;
    return step * global_batch + ((int64_t)rank * accumulate + micro) * b;
}

/* Rank 0's initial parameters and buffers for everyone, so that ranks start identical even if
 * initialisation ever depended on something rank-local. */
static kl_status share_weights(kl__train_state *r, kl_error *err)
{
    kl_graph *g = r->m->g;
    const unsigned both = KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS;
    kl_status st = kl_graph_to_host(g, both, err);
    if (st != KL_OK)
        return st;
    kl__train_phase(r, "initial weights broadcast", -1);
    st =
        kl_comm_bcast(r->comm, kl_graph_params(g), kl_graph_param_count(g) * sizeof(float), 0, err);
    if (st == KL_OK)
        st = kl_comm_bcast(r->comm, kl_graph_buffers(g), kl_graph_buffer_count(g) * sizeof(float),
                           0, err);
    kl__train_phase(r, NULL, -1);
    return st == KL_OK ? kl_graph_to_device(g, both, err) : st;
}

void kl__train_phase(kl__train_state *r, const char *what, int64_t step)
{
    if (r->comm)
        kl_comm_set_phase(r->comm, what, step);
}

/* The run's end: the final checkpoint holds the model the run kept (the best epoch's under early
 * stopping) and the state to continue it with more epochs. */
static kl_status finish(kl__train_state *r, const kl_train_result *res, kl_error *err)
{
    if (!r->opts->ckpt_dir)
        return KL_OK;
    double zero[3] = {0};
    return kl__train_save(r, res->epochs_run, 0, zero, 0, "final.h5", err);
}

kl_status kl_train_run_dist(const kl_config *cfg, kl_data_splits *data, kl_comm *comm,
                            const kl_train_options *opts, const kl_train_hooks *hooks,
                            kl_model *model, kl_train_result *result, kl_error *err)
{
    static const kl_train_options none = {0};
    kl_error local;
    kl_model m;
    kl_train_result res = {.test_loss = NAN, .test_accuracy = NAN, .test_mae = NAN};
    kl__train_state r = {.cfg = cfg,
                         .comm = comm,
                         .data = data,
                         .hooks = hooks,
                         .m = &m,
                         .size = 1,
                         .opts = opts ? opts : &none};
    double t0 = kl_now();
    if (!err)
        err = &local;
    if (comm) {
        r.rank = kl_comm_rank(comm);
        r.size = kl_comm_size(comm);
    }
    int acc = cfg->train.accumulate > 0 ? cfg->train.accumulate : 1;
    if (kl_train_check_split(cfg, r.size, err) != KL_OK)
        return err->status;
    /* Set every run, so that a run in the same process (a tune trial) does not inherit the
     * previous one's count; by default each rank gets Slurm's cpus-per-task, or else the node's
     * cores are shared by its ranks. */
    int threads = cfg->train.threads > 0 ? cfg->train.threads
                                         : kl_launch_threads(comm ? kl_comm_local_size(comm) : 1);
    openblas_set_num_threads(threads);
    /* Every collective of the run is watched: a rank that waits past dist.timeout ends the job. */
    double caller_timeout = comm ? kl_comm_timeout(comm) : 0;
    if (comm && kl_comm_set_timeout(comm, cfg->dist.timeout, err) != KL_OK)
        return err->status;
    kl_model_options o = kl_train_model_options(cfg, data);
    /* dist.deterministic compiles for one shard, the same on every rank count. */
    o.batch = cfg->dist.deterministic ? cfg->train.batch_size / cfg->dist.shards
                                      : cfg->train.batch_size / r.size / acc;
    kl_stop_test_point("build", r.rank, -1);
    kl_status st = r.opts->device_slots > 0
                       ? kl_device_pick(cfg->train.device, r.opts->device_slot,
                                        r.opts->device_slots, cfg->train.device_share, &r.dev, err)
                       : kl_train_pick_device(cfg, comm, &r.dev, err);
    o.device = r.dev.device;
    o.device_index = r.dev.index;
    o.bf16 = cfg->train.precision == KL_TRAIN_PRECISION_BF16;
    o.cuda_graph = cfg->train.cuda_graph;
    if (st == KL_OK && o.bf16 && r.dev.device == KL_DEVICE_CPU)
        st = kl_error_set(err, KL_EUNSUPPORTED,
                          "train.precision: bf16 needs a GPU (train.device: cuda, or auto where "
                          "one is visible); this rank trains on the CPU, which computes in fp32 "
                          "only: use train.precision: fp32");
    if (st == KL_OK)
        st = kl_model_build(&cfg->model, &o, &m, err);
    /* kiln's own loops get the same threads as BLAS (ops/par.h; docs/config.md says how the two
     * share the cores). A GPU rank runs its kernels on the device. */
    if (st == KL_OK && r.dev.device == KL_DEVICE_CPU &&
        (st = kl_graph_set_threads(m.g, threads, err)) != KL_OK)
        kl_model_free(&m);
    if (st != KL_OK) {
        if (comm)
            kl_comm_set_timeout(comm, caller_timeout, NULL);
        return st;
    }
    if (r.size > 1 && (st = check_same(&r, err)) == KL_OK)
        st = share_weights(&r, err);
    if (st == KL_OK && (st = run_init(&r, err)) == KL_OK && r.opts->resume)
        st = kl__train_resume(&r, err);
    res.epochs_run = r.start_epoch;
    /* From the first step on, a stop request is honoured with a checkpoint: a caller's quit phase
     * (kiln train's, around loading and building) ends here. */
    kl_stop_quit_end();
    if (st == KL_OK && (st = run_epochs(&r, &res, err)) == KL_OK && data->test.x) {
        st = evaluate_dist(&r, &data->test, &res.test_loss, &res.test_accuracy, &res.test_mae, err);
        if (st == KL_ESTOPPED)
            st = stop_in_test(&r, &res, err);
    }
    if (st == KL_OK)
        st = finish(&r, &res, err);
    /* The model handed back (and exported from it) reads the host copies. */
    if (st == KL_OK && model)
        st = kl_graph_to_host(m.g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err);
    run_free(&r);
    if (comm)
        kl_comm_set_timeout(comm, caller_timeout, NULL);
    res.seconds = kl_now() - t0;
    if (st == KL_OK && hooks && hooks->on_done)
        hooks->on_done(hooks->ctx, &res);
    if (result)
        *result = res;
    if (st == KL_OK && model)
        *model = m;
    else
        kl_model_free(&m);
    return st;
}

kl_status kl_train_pick_device(const kl_config *cfg, kl_comm *comm, kl_device_choice *c,
                               kl_error *err)
{
    int local_rank = comm ? kl_comm_local_rank(comm) : 0;
    int local_size = comm ? kl_comm_local_size(comm) : 1;
    return kl_device_pick(cfg->train.device, local_rank, local_size, cfg->train.device_share, c,
                          err);
}

kl_status kl_train_run(const kl_config *cfg, kl_data_splits *data, const kl_train_hooks *hooks,
                       kl_model *model, kl_train_result *result, kl_error *err)
{
    return kl_train_run_dist(cfg, data, NULL, NULL, hooks, model, result, err);
}
