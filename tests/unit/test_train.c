/* The training loop and its reporting, end to end from YAML text: a Fashion-MNIST slice that
 * learns, bit-identical reruns (also with dropout, augmentation and batchnorm), early stopping that
 * keeps the best weights, a hook that stops training, the errors a user can cause, a regression
 * task from CSV, and the reporter's run directory, plain lines, progress bar and JSON lines.
 * The Fashion-MNIST cases are skipped when the dataset-fashion-mnist package is not installed. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef KILN_TEST_HAVE_JANSSON
#include <jansson.h>
#endif

#include "check.h"
#include "check_tmp.h"
#include "kiln/report.h"
#include "kiln/train.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static bool have_fmnist(void)
{
    struct stat sb;
    return stat(FMNIST "/train-images-idx3-ubyte.gz", &sb) == 0;
}

/* An MLP on a slice of Fashion-MNIST (2700 training, 300 validation and 10000 test images). */
static const char mlp_yaml[] = "model:\n"
                               "  layers:\n"
                               "    - dense: {units: 64, activation: relu}\n"
                               "data:\n"
                               "  dataset: fashion-mnist\n"
                               "  limit: 3000\n"
                               "  val_fraction: 0.1\n"
                               "optimizer: {name: adam, lr: 1e-3}\n"
                               "train: {epochs: 3, batch_size: 50, seed: 1, threads: 1}\n";

/* A small CNN with batchnorm and augmentation; no test set, so that it stays fast under ASan. */
static const char cnn_yaml[] =
    "model:\n"
    "  layers:\n"
    "    - conv2d: {filters: 4, kernel: 3, padding: 1, activation: relu}\n"
    "    - batchnorm\n"
    "    - max_pool: {kernel: 2}\n"
    "data:\n"
    "  train: {format: idx, path: " FMNIST "/train-images-idx3-ubyte.gz, labels: " FMNIST
    "/train-labels-idx1-ubyte.gz}\n"
    "  limit: 500\n"
    "  val_fraction: 0.1\n"
    "  flip: true\n"
    "  crop_padding: 2\n"
    "optimizer: {name: adam, lr: 1e-3}\n"
    "train: {epochs: 2, batch_size: 50, seed: 1, threads: 1}\n";

/* What the hooks saw. */
typedef struct trace {
    kl_epoch_metrics ep[32];
    int nepochs;
    int64_t steps;     /* on_step calls */
    bool steps_ok;     /* every on_step had a sane position */
    int stop_after;    /* on_epoch returns false at this epoch (0: never) */
    int done;          /* on_done calls */
    kl_train_result r; /* what on_done saw */
} trace;

static void on_step(void *ctx, int epoch, int64_t step, int64_t steps, double loss, double elapsed)
{
    trace *t = ctx;
    t->steps_ok = t->steps_ok && epoch == t->nepochs + 1 && step >= 1 && step <= steps &&
                  isfinite(loss) && elapsed >= 0;
    t->steps++;
}

static bool on_epoch(void *ctx, const kl_epoch_metrics *m)
{
    trace *t = ctx;
    if (t->nepochs < 32)
        t->ep[t->nepochs++] = *m;
    return t->stop_after == 0 || m->epoch < t->stop_after;
}

static void on_done(void *ctx, const kl_train_result *r)
{
    trace *t = ctx;
    t->done++;
    t->r = *r;
}

/* One training run from YAML text: the config, its data, the trained model and what was seen. */
typedef struct job {
    kl_config *cfg;
    kl_data_splits data;
    kl_model model; /* when st is KL_OK */
    kl_train_result res;
    trace t;
    kl_error err;
    kl_status st;
} job;

static void job_run(job *j, const char *yaml, const char *const *sets, int nsets, int stop_after)
{
    memset(j, 0, sizeof *j);
    j->t.steps_ok = true;
    j->t.stop_after = stop_after;
    if (!(j->cfg = kl_config_parse("test.yaml", yaml, strlen(yaml), sets, nsets, &j->err))) {
        j->st = j->err.status;
        return;
    }
    if ((j->st = kl_data_prepare(&j->cfg->data, j->cfg->train.seed, &j->data, &j->err)) != KL_OK)
        return;
    kl_train_hooks hooks = {
        .ctx = &j->t, .on_step = on_step, .on_epoch = on_epoch, .on_done = on_done};
    j->st = kl_train_run(j->cfg, &j->data, &hooks, &j->model, &j->res, &j->err);
}

static void job_free(job *j)
{
    if (j->st == KL_OK)
        kl_model_free(&j->model);
    kl_data_splits_free(&j->data);
    kl_config_free(j->cfg);
}

static bool same_floats(kl_graph *a, kl_graph *b, bool buffers)
{
    size_t n = buffers ? kl_graph_buffer_count(a) : kl_graph_param_count(a);
    size_t m = buffers ? kl_graph_buffer_count(b) : kl_graph_param_count(b);
    const float *pa = buffers ? kl_graph_buffers(a) : kl_graph_params(a);
    const float *pb = buffers ? kl_graph_buffers(b) : kl_graph_params(b);
    return n == m && (n == 0 || memcmp(pa, pb, n * sizeof(float)) == 0);
}

/* Equal as numbers, with NaN equal to NaN (metrics that were not computed). */
static bool same_num(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* The metrics two reruns must agree on: everything but the timings. */
static bool same_metrics(const trace *a, const trace *b)
{
    if (a->nepochs != b->nepochs || a->nepochs == 0)
        return false;
    for (int i = 0; i < a->nepochs; i++) {
        const kl_epoch_metrics *x = &a->ep[i], *y = &b->ep[i];
        if (x->epoch != y->epoch || x->step != y->step || x->best != y->best ||
            !same_num(x->train_loss, y->train_loss) ||
            !same_num(x->train_accuracy, y->train_accuracy) ||
            !same_num(x->val_loss, y->val_loss) || !same_num(x->val_accuracy, y->val_accuracy) ||
            !same_num(x->val_mae, y->val_mae) || !same_num(x->lr, y->lr))
            return false;
    }
    return true;
}

static bool same_results(const kl_train_result *a, const kl_train_result *b)
{
    return a->epochs_run == b->epochs_run && a->best_epoch == b->best_epoch &&
           a->early_stopped == b->early_stopped && same_num(a->test_loss, b->test_loss) &&
           same_num(a->test_accuracy, b->test_accuracy) && same_num(a->test_mae, b->test_mae);
}

/* A Fashion-MNIST slice learns: well above chance, with the training loss falling every epoch,
 * and every field of the result consistent with what the hooks saw. */
static void test_learns(void)
{
    job j;
    job_run(&j, mlp_yaml, NULL, 0, 0);
    CHECK_OK(j.st, &j.err);
    if (j.st != KL_OK) {
        job_free(&j);
        return;
    }
    const trace *t = &j.t;
    CHECK(j.res.epochs_run == 3 && !j.res.early_stopped);
    CHECK(t->nepochs == 3 && t->done == 1);
    CHECK(t->steps == 3 * 54 && t->steps_ok); /* 2700 training images in batches of 50 */
    for (int i = 0; i < t->nepochs; i++) {
        const kl_epoch_metrics *m = &t->ep[i];
        CHECK(m->epoch == i + 1 && m->epochs == 3 && m->step == 54 * (i + 1));
        CHECK(isfinite(m->train_loss) && m->train_accuracy >= 0 && m->train_accuracy <= 1);
        CHECK(isfinite(m->val_loss) && m->val_accuracy >= 0 && m->val_accuracy <= 1);
        CHECK(isnan(m->val_mae));
        CHECK(m->lr > 0 && m->seconds >= 0 && m->samples_per_s > 0);
        if (i > 0)
            CHECK(m->train_loss < t->ep[i - 1].train_loss);
    }
    CHECK(t->ep[0].best); /* the first evaluation is always the best so far */
    CHECK(isfinite(j.res.test_loss) && j.res.test_loss > 0);
    CHECK(j.res.test_accuracy > 0.70 && j.res.test_accuracy <= 1);
    CHECK(isnan(j.res.test_mae));
    CHECK(j.res.best_epoch >= 1 && j.res.best_epoch <= 3 && t->ep[j.res.best_epoch - 1].best);
    CHECK(j.res.seconds >= 0);
    CHECK(j.res.last.epoch == 3 && j.res.last.step == t->ep[2].step &&
          j.res.last.train_loss == t->ep[2].train_loss && j.res.last.val_loss == t->ep[2].val_loss);
    CHECK(same_results(&j.res, &t->r));

    /* The returned model is the one that was tested. */
    double loss, acc, mae;
    CHECK_OK(kl_evaluate(&j.model, &j.data.test, &loss, &acc, &mae, &j.err), &j.err);
    CHECK(loss == j.res.test_loss && acc == j.res.test_accuracy && isnan(mae));
    job_free(&j);
}

/* Runs yaml twice as it is and once with another train.seed (and once with `other`, when given,
 * a change that must change the result): the reruns are bit-identical in parameters, buffers
 * and metrics; the changed runs are not. */
static void check_reproducible(const char *what, const char *yaml, const char *const *sets,
                               int nsets, const char *other)
{
    const char *more[8];
    KL_ASSERT(nsets < 7);
    for (int i = 0; i < nsets; i++)
        more[i] = sets[i];
    job a, b, c, d;
    job_run(&a, yaml, sets, nsets, 0);
    job_run(&b, yaml, sets, nsets, 0);
    more[nsets] = "train.seed=2";
    job_run(&c, yaml, more, nsets + 1, 0);
    CHECK_OK(a.st, &a.err);
    CHECK_OK(b.st, &b.err);
    CHECK_OK(c.st, &c.err);
    if (a.st == KL_OK && b.st == KL_OK && c.st == KL_OK) {
        if (!CHECK(same_floats(a.model.g, b.model.g, false)))
            fprintf(stderr, "    %s: a rerun gave other parameters\n", what);
        CHECK(same_floats(a.model.g, b.model.g, true));
        CHECK(same_metrics(&a.t, &b.t));
        CHECK(same_results(&a.res, &b.res));
        if (!CHECK(!same_floats(a.model.g, c.model.g, false)))
            fprintf(stderr, "    %s: train.seed 2 gave the same parameters as seed 1\n", what);
        CHECK(!same_metrics(&a.t, &c.t));
    }
    if (other) {
        more[nsets] = other;
        job_run(&d, yaml, more, nsets + 1, 0);
        CHECK_OK(d.st, &d.err);
        if (a.st == KL_OK && d.st == KL_OK && !CHECK(!same_floats(a.model.g, d.model.g, false)))
            fprintf(stderr, "    %s: %s changed nothing\n", what, other);
        job_free(&d);
    }
    job_free(&a);
    job_free(&b);
    job_free(&c);
}

static void test_reproducible(void)
{
    const char *mlp[] = {"data.limit=1000", "train.epochs=2"};
    check_reproducible("mlp", mlp_yaml, mlp, 2, NULL);
    /* Dropout draws from (seed, step): a rerun drops the same units. */
    const char *dropout[] = {"data.limit=1000", "train.epochs=2",
                             "model.layers.1={dropout: {rate: 0.3}}"};
    check_reproducible("mlp with dropout", mlp_yaml, dropout, 3, "model.layers.1.rate=0.5");
    /* The same holds with OpenBLAS on two threads ("the same seed and thread count"). */
    const char *threads[] = {"data.limit=1000", "train.epochs=2", "train.threads=2"};
    check_reproducible("mlp on 2 threads", mlp_yaml, threads, 3, NULL);
    /* Augmentation draws from (seed, epoch, sample); turning it off must change the result, or it
     * was never applied. */
    check_reproducible("cnn with flip and crop", cnn_yaml, NULL, 0, "data.crop_padding=0");
    const char *flip_only[] = {"data.crop_padding=0"};
    check_reproducible("cnn with flip", cnn_yaml, flip_only, 1, "data.flip=false");
}

/* Early stopping: a min_delta no epoch can beat makes epoch 1 the best, so training stops
 * `patience` epochs later and the returned model (parameters and batchnorm statistics) is epoch
 * 1's: its validation loss is the one the hook saw at epoch 1, and the test metrics are its own. */
static void check_early_stop(const char *const *sets, int nsets, int want_epochs)
{
    job j;
    job_run(&j, mlp_yaml, sets, nsets, 0);
    CHECK_OK(j.st, &j.err);
    if (j.st != KL_OK) {
        job_free(&j);
        return;
    }
    CHECK(j.res.early_stopped);
    CHECK(j.res.epochs_run == want_epochs && j.t.nepochs == want_epochs);
    CHECK(j.res.best_epoch == 1 && j.t.ep[0].best);
    for (int i = 1; i < j.t.nepochs; i++)
        CHECK(!j.t.ep[i].best);
    double loss, acc, mae;
    CHECK_OK(kl_evaluate(&j.model, &j.data.val, &loss, &acc, &mae, &j.err), &j.err);
    CHECK_NEAR(loss, j.t.ep[0].val_loss, 1e-6);
    CHECK_NEAR(acc, j.t.ep[0].val_accuracy, 1e-9);
    CHECK(loss != j.t.ep[j.t.nepochs - 1].val_loss); /* not the last epoch's weights */
    CHECK_OK(kl_evaluate(&j.model, &j.data.test, &loss, &acc, &mae, &j.err), &j.err);
    CHECK(loss == j.res.test_loss && acc == j.res.test_accuracy);
    job_free(&j);
}

static void test_early_stop(void)
{
    if (!have_fmnist())
        return;
    const char *by_loss[] = {"data.limit=1000",
                             "train.epochs=4",
                             "model.layers.1=batchnorm",
                             "model.layers.2={activation: {activation: relu}}",
                             "train.early_stop.patience=1",
                             "train.early_stop.min_delta=10"};
    check_early_stop(by_loss, 6, 2);
    const char *by_acc[] = {"data.limit=1000", "train.epochs=5", "train.early_stop.patience=2",
                            "train.early_stop.metric=val_accuracy", "train.early_stop.min_delta=1"};
    check_early_stop(by_acc, 5, 3);
}

/* A hook that returns false stops training after that epoch; the test set is still evaluated. */
static void test_hook_stops(void)
{
    const char *sets[] = {"data.limit=1000", "train.epochs=5"};
    job j;
    job_run(&j, mlp_yaml, sets, 2, 2);
    CHECK_OK(j.st, &j.err);
    CHECK(j.res.epochs_run == 2 && j.t.nepochs == 2 && !j.res.early_stopped);
    CHECK(j.res.last.epoch == 2 && j.t.done == 1);
    CHECK(isfinite(j.res.test_loss) && isfinite(j.res.test_accuracy));
    job_free(&j);
}

/* Runs yaml with sets and checks that it fails with status want and a message holding each of
 * the NULL-terminated strings that follow. */
static void check_fails(int line, const char *yaml, const char *const *sets, int nsets,
                        kl_status want, ...)
{
    job j;
    job_run(&j, yaml, sets, nsets, 0);
    char what[64];
    snprintf(what, sizeof what, "fails with status %d", (int)want);
    if (!check_(j.st == want, __FILE__, line, what))
        fprintf(stderr, "    got status %d: %s\n", (int)j.st, j.err.msg);
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));) {
        snprintf(what, sizeof what, "the message names '%s'", s);
        if (!check_(j.st != KL_OK && strstr(j.err.msg, s) != NULL, __FILE__, line, what))
            fprintf(stderr, "    message: %s\n", j.err.msg);
    }
    va_end(ap);
    CHECK(j.t.nepochs == 0 || j.st == KL_ERANGE); /* refused before training, or diverged */
    CHECK(j.t.done == 0);
    job_free(&j);
}

static void test_errors(void)
{
    const char *big_batch[] = {"data.limit=100", "train.batch_size=100"}; /* 90 for training */
    check_fails(__LINE__, mlp_yaml, big_batch, 2, KL_EINVAL, "train.batch_size", "100", "90", NULL);
    /* checkpoint.every without a place to write checkpoints (kl_train_run has no folder). */
    const char *ckpt[] = {"data.limit=100", "checkpoint.every=2 epochs"};
    check_fails(__LINE__, mlp_yaml, ckpt, 2, KL_EINVAL, "checkpoint.every", "run folder", NULL);
    /* bf16 is a GPU's: the CPU refuses it before training, saying what to set. */
    const char *bf16[] = {"data.limit=100", "train.device=cpu", "train.precision=bf16"};
    check_fails(__LINE__, mlp_yaml, bf16, 3, KL_EUNSUPPORTED, "train.precision", "bf16", "GPU",
                "fp32", NULL);
    const char *no_val[] = {"data.limit=100", "data.val_fraction=0", "train.early_stop.patience=2"};
    check_fails(__LINE__, mlp_yaml, no_val, 3, KL_EINVAL, "train.early_stop", "val_fraction", NULL);
    const char *diverge[] = {"data.limit=500", "optimizer={name: sgd, lr: 1e6}"};
    job j;
    job_run(&j, mlp_yaml, diverge, 2, 0);
    CHECK(j.st == KL_ERANGE);
    CHECK(strstr(j.err.msg, "nan") || strstr(j.err.msg, "inf"));
    CHECK(strstr(j.err.msg, "epoch 1") && strstr(j.err.msg, "step "));
    CHECK(strstr(j.err.msg, "optimizer.lr"));
    CHECK(j.t.nepochs == 0 && j.t.done == 0);
    job_free(&j);

    /* A short run of a config with a long cosine warmup (the examples warm up for 200 steps):
     * total_steps is derived from train.epochs, so the message must name the keys a user can
     * change, not the internal "total_steps" alone. */
    const char *warmup[] = {"data.limit=600", "train.epochs=1",
                            "schedule={name: cosine, warmup_steps: 200}"};
    check_fails(__LINE__, mlp_yaml, warmup, 3, KL_EINVAL, "schedule.warmup_steps", "train.epochs",
                NULL);
    /* onecycle over the epochs' 10 steps (540 images, batches of 50) with pct_start 0.05: no
     * rise, said in the keys a user sets. */
    const char *short_cycle[] = {"data.limit=600", "train.epochs=1",
                                 "schedule={name: onecycle, pct_start: 0.05}"};
    check_fails(__LINE__, mlp_yaml, short_cycle, 3, KL_EINVAL, "schedule.pct_start", "10 steps",
                "train.epochs", NULL);
}

/* schedule.name: onecycle with total_steps 0 spans the run's steps (3 epochs x 54): each epoch
 * reports the rate of its last step, the last epoch the end rate, and the run learns. */
static void test_onecycle(void)
{
    const char *sets[] = {"schedule={name: onecycle, pct_start: 0.25}", "optimizer.lr=3e-3"};
    job j;
    job_run(&j, mlp_yaml, sets, 2, 0);
    CHECK_OK(j.st, &j.err);
    if (j.st == KL_OK && CHECK(j.t.nepochs == 3)) {
        kl_lr_schedule want = {.kind = KL_LR_ONECYCLE,
                               .base_lr = 3e-3f,
                               .total_steps = 3 * 54,
                               .pct_start = 0.25f,
                               .div_factor = 25.0f,
                               .final_div_factor = 1e4f};
        for (int i = 0; i < 3; i++)
            CHECK(j.t.ep[i].lr == kl_lr_at(&want, 54 * (i + 1) - 1));
        /* Past the peak (step 39.5) after the first epoch, falling, and at 3e-3 / 25 / 1e4. */
        CHECK(j.t.ep[0].lr < 3e-3 && j.t.ep[0].lr > j.t.ep[1].lr);
        CHECK(fabs(j.t.ep[2].lr - 1.2e-8) < 1e-12);
        CHECK(j.res.test_accuracy > 0.70);
    }
    job_free(&j);
}

/* y = 2a - b + 0.5 on a, b in [-1, 1], with a little noise. */
static void write_regression_csv(const char *path, int n, uint32_t seed)
{
    FILE *f = fopen(path, "w");
    KL_ASSERT(f);
    fprintf(f, "a,b,y\n");
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        float v[3];
        for (int k = 0; k < 3; k++) {
            s = s * 1664525u + 1013904223u;
            v[k] = (float)(s >> 8) / (float)(1u << 24) * 2 - 1;
        }
        fprintf(f, "%.6f,%.6f,%.6f\n", v[0], v[1], 2 * v[0] - v[1] + 0.5f + 0.01f * v[2]);
    }
    KL_ASSERT(fclose(f) == 0);
}

static void regression_yaml(char *buf, size_t n, bool val_and_test)
{
    snprintf(buf, n,
             "model: {layers: [{dense: {units: 16, activation: tanh}}]}\n"
             "data:\n"
             "  task: regression\n"
             "  train: {format: csv, path: %s, label_column: y}\n"
             "%s%s%s"
             "optimizer: {name: adam, lr: 0.02}\n"
             "train: {epochs: 30, batch_size: 20, seed: 1, threads: 1}\n",
             in_tmp("reg_train.csv"),
             val_and_test ? "  val_fraction: 0.2\n  test: {format: csv, path: " : "",
             val_and_test ? in_tmp("reg_test.csv") : "",
             val_and_test ? ", label_column: y}\n" : "");
}

/* Regression from CSV: MSE loss, MAE reported, accuracy NaN everywhere. */
static void test_regression(void)
{
    char yaml[1024];
    regression_yaml(yaml, sizeof yaml, true);
    job j;
    job_run(&j, yaml, NULL, 0, 0);
    CHECK_OK(j.st, &j.err);
    if (j.st != KL_OK) {
        job_free(&j);
        return;
    }
    CHECK(j.res.epochs_run == 30 && j.t.nepochs == 30);
    for (int i = 0; i < j.t.nepochs; i++)
        CHECK(isnan(j.t.ep[i].train_accuracy) && isnan(j.t.ep[i].val_accuracy) &&
              isfinite(j.t.ep[i].val_mae) && isfinite(j.t.ep[i].val_loss));
    CHECK(isfinite(j.res.test_mae) && isfinite(j.res.test_loss) && isnan(j.res.test_accuracy));
    /* Predicting the mean would give an MAE near 0.9; a fitted model does far better. */
    CHECK(j.res.test_mae < 0.2);
    double loss, acc, mae;
    CHECK_OK(kl_evaluate(&j.model, &j.data.test, &loss, &acc, &mae, &j.err), &j.err);
    CHECK(loss == j.res.test_loss && mae == j.res.test_mae && isnan(acc));
    job_free(&j);

    /* Image augmentation on feature vectors is refused rather than silently skipped. */
    const char *flip[] = {"data.flip=true"};
    check_fails(__LINE__, yaml, flip, 1, KL_EINVAL, "data.flip", NULL);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = NULL;
    size_t n = 0, cap = 0;
    for (int c; (c = fgetc(f)) != EOF;) {
        if (n + 2 > cap) {
            cap = cap ? 2 * cap : 4096;
            char *t = realloc(s, cap);
            KL_ASSERT(t);
            s = t;
        }
        s[n++] = (char)c;
    }
    fclose(f);
    if (!s && !(s = malloc(1)))
        return NULL;
    s[n] = 0;
    return s;
}

/* The text written to a tmpfile so far. */
static char *slurp_file(FILE *f)
{
    long n = ftell(f);
    KL_ASSERT(n >= 0);
    char *s = malloc((size_t)n + 1);
    KL_ASSERT(s);
    rewind(f);
    KL_ASSERT(fread(s, 1, (size_t)n, f) == (size_t)n);
    s[n] = 0;
    return s;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s && *s != '\n'; s++)
        n += *s == c;
    return n;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Trains cfg (already parsed) with a reporter made from o; returns the reporter's folder (a copy,
 * NULL without one). */
static char *train_reported(const kl_config *cfg, const kl_report_options *o)
{
    kl_error err = {0};
    kl_data_splits data;
    kl_reporter *r = kl_reporter_new(cfg, o, &err);
    CHECK(r != NULL);
    if (!r) {
        fprintf(stderr, "    %s\n", err.msg);
        return NULL;
    }
    char *dir = kl_reporter_dir(r) ? strdup(kl_reporter_dir(r)) : NULL;
    CHECK_OK(kl_data_prepare(&cfg->data, cfg->train.seed, &data, &err), &err);
    if (data.train.x) {
        kl_train_hooks hooks = kl_reporter_hooks(r);
        CHECK_OK(kl_train_run(cfg, &data, &hooks, NULL, NULL, &err), &err);
    }
    kl_data_splits_free(&data);
    kl_reporter_free(r);
    return dir;
}

/* The run directory: config.yaml that reads back to the same config, metrics.csv with a row per
 * epoch, log.txt with the epoch and final lines; a second run of the same name gets "-2". */
static void test_run_dir(void)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml, "name: rep\nruns_dir: %s\n%s", in_tmp("runs"), mlp_yaml);
    const char *sets[] = {"data.limit=600", "train.epochs=2"};
    kl_error err = {0};
    kl_config *cfg = kl_config_parse("test.yaml", yaml, strlen(yaml), sets, 2, &err);
    CHECK(cfg != NULL);
    if (!cfg)
        return;
    FILE *out = tmpfile(), *errf = tmpfile();
    KL_ASSERT(out && errf);
    kl_report_options quiet = {.quiet = true, .tty = 0, .out = out, .err = errf};
    char *dir = train_reported(cfg, &quiet);
    CHECK(dir && !strcmp(dir, in_tmp("runs/rep")));

    char *text = slurp(in_tmp("runs/rep/metrics.csv"));
    CHECK(text && count_lines(text) == 3);
    if (text) {
        CHECK(!strncmp(text, "epoch,step,train_loss,train_accuracy,val_loss,val_accuracy", 58));
        char *row1 = strchr(text, '\n') + 1, *row2 = strchr(row1, '\n') + 1;
        CHECK(!strncmp(row1, "1,", 2) && !strncmp(row2, "2,", 2));
        CHECK(count_char(text, ',') == 9 && count_char(row1, ',') == 9 &&
              count_char(row2, ',') == 9);
    }
    free(text);
    text = slurp(in_tmp("runs/rep/log.txt"));
    CHECK(text && strstr(text, "epoch   1/2") && strstr(text, "epoch   2/2") &&
          strstr(text, "\ndone: 2 epochs"));
    free(text);
    kl_config *back = kl_config_load(in_tmp("runs/rep/config.yaml"), NULL, 0, &err);
    if (!CHECK(back != NULL))
        fprintf(stderr, "    %s\n", err.msg);
    CHECK(back && kl_config_hash(back) == kl_config_hash(cfg));
    CHECK(back && back->data.limit == 600 && back->train.epochs == 2 && !strcmp(back->name, "rep"));
    kl_config_free(back);

    /* --quiet: the final line only. */
    text = slurp_file(out);
    CHECK(count_lines(text) == 1 && !strncmp(text, "done: 2 epochs", 14));
    free(text);
    free(dir);

    /* The same name again: "rep-2", with plain epoch lines and a progress bar on a "terminal". */
    rewind(out);
    rewind(errf);
    KL_ASSERT(ftruncate(fileno(out), 0) == 0 && ftruncate(fileno(errf), 0) == 0);
    kl_report_options plain = {.tty = 1, .out = out, .err = errf};
    dir = train_reported(cfg, &plain);
    CHECK(dir && !strcmp(dir, in_tmp("runs/rep-2")));
    CHECK(is_dir(in_tmp("runs/rep-2")));
    text = slurp_file(out);
    CHECK(count_lines(text) == 3 && !strncmp(text, "epoch   1/2  train loss", 23) &&
          strstr(text, "\nepoch   2/2  train loss") && strstr(text, "\ndone: 2 epochs"));
    free(text);
    text = slurp_file(errf);
    CHECK(strstr(text, "epoch 1 [") && strstr(text, "ETA"));
    /* The issue asks for "a progress bar per epoch with samples/s and ETA". */
    if (!CHECK(strstr(text, "samples/s"))) {
        const char *bar = strstr(text, "epoch 1 [");
        fprintf(stderr, "    the bar shows: %.*s\n", bar ? (int)strcspn(bar, "\r") : 0, bar);
    }
    free(text);
    free(dir);
    fclose(out);
    fclose(errf);

    /* A long run name is kept whole, not cut to make another run's folder. */
    char longname[128];
    memset(longname, 'n', 100);
    longname[100] = 0;
    char set[160];
    snprintf(set, sizeof set, "name=%s", longname);
    const char *long_sets[] = {set}; /* reused below with other texts in set */
    kl_config *lc = kl_config_parse("test.yaml", yaml, strlen(yaml), long_sets, 1, &err);
    KL_ASSERT(lc);
    kl_report_options nothing = {.quiet = true, .tty = 0};
    kl_reporter *r = kl_reporter_new(lc, &nothing, &err);
    CHECK(r != NULL);
    if (r) {
        const char *d = kl_reporter_dir(r);
        const char *base = strrchr(d, '/') + 1;
        if (!CHECK(!strcmp(base, longname)))
            fprintf(stderr, "    a 100-character name made the folder '%s' (%zu characters)\n", d,
                    strlen(base));
    }
    kl_reporter_free(r);
    kl_config_free(lc);

    /* A runs folder that cannot be made is an error naming it. */
    FILE *f = fopen(in_tmp("afile"), "w");
    KL_ASSERT(f && fclose(f) == 0);
    snprintf(set, sizeof set, "runs_dir=%s", in_tmp("afile/runs"));
    kl_config *bc = kl_config_parse("test.yaml", yaml, strlen(yaml), long_sets, 1, &err);
    KL_ASSERT(bc);
    r = kl_reporter_new(bc, &nothing, &err);
    CHECK(r == NULL && err.status == KL_EIO && strstr(err.msg, "afile/runs"));
    kl_reporter_free(r);
    kl_config_free(bc);

    /* no_dir: no folder. */
    snprintf(set, sizeof set, "runs_dir=%s", in_tmp("none"));
    kl_config *nc = kl_config_parse("test.yaml", yaml, strlen(yaml), long_sets, 1, &err);
    KL_ASSERT(nc);
    kl_report_options no_dir = {.quiet = true, .tty = 0, .no_dir = true};
    r = kl_reporter_new(nc, &no_dir, &err);
    CHECK(r && kl_reporter_dir(r) == NULL && !is_dir(in_tmp("none")));
    kl_reporter_free(r);
    kl_config_free(nc);
    kl_config_free(cfg);
}

/* JSON lines: what a field of an object is. */
typedef enum json_kind { J_MISSING, J_NULL, J_NUMBER, J_OTHER } json_kind;

#ifdef KILN_TEST_HAVE_JANSSON
static json_kind json_field(const char *line, const char *key, double *v)
{
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    json_kind k = J_OTHER;
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return J_OTHER; /* not one JSON object */
    }
    json_t *f = json_object_get(o, key);
    if (!f)
        k = J_MISSING;
    else if (json_is_null(f))
        k = J_NULL;
    else if (json_is_number(f))
        k = J_NUMBER;
    if (k == J_NUMBER && v)
        *v = json_number_value(f);
    json_decref(o);
    return k;
}
#else
/* Without jansson: a minimal look at `"key": value` in a one-line object. */
static json_kind json_field(const char *line, const char *key, double *v)
{
    size_t n = strcspn(line, "\n");
    if (n < 2 || line[0] != '{' || line[n - 1] != '}')
        return J_OTHER;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    if (!p || p > line + n)
        return J_MISSING;
    p += strlen(pat);
    if (!strncmp(p, "null", 4))
        return J_NULL;
    char *end;
    double d = strtod(p, &end);
    if (end == p || (*end != ',' && *end != '}'))
        return J_OTHER;
    if (v)
        *v = d;
    return J_NUMBER;
}
#endif

/* The lines of text, each NUL-terminated in place; returns the count (at most max). */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *s = text; *s && n < max;) {
        char *e = strchr(s, '\n');
        lines[n++] = s;
        if (!e)
            break;
        *e = 0;
        s = e + 1;
    }
    return n;
}

/* --json: one object per epoch with the documented keys, then one with the test metrics; NaN
 * metrics are null. */
static void test_json(void)
{
    FILE *out = tmpfile();
    KL_ASSERT(out);
    kl_error err = {0};
    char *lines[8];
    double v;
    if (have_fmnist()) {
        const char *sets[] = {"data.limit=600", "train.epochs=2"};
        kl_config *cfg = kl_config_parse("test.yaml", mlp_yaml, strlen(mlp_yaml), sets, 2, &err);
        KL_ASSERT(cfg);
        kl_report_options o = {.json = true, .tty = 0, .no_dir = true, .out = out};
        free(train_reported(cfg, &o));
        kl_config_free(cfg);
        char *text = slurp_file(out);
        int n = split_lines(text, lines, 8);
        CHECK(n == 3);
        for (int i = 0; i < n && i < 2; i++) {
            CHECK(json_field(lines[i], "epoch", &v) == J_NUMBER && v == i + 1);
            const char *keys[] = {
                "train_loss", "val_loss", "val_accuracy", "samples_per_s", "seconds", "step", "lr"};
            for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
                if (!CHECK(json_field(lines[i], keys[k], NULL) == J_NUMBER))
                    fprintf(stderr, "    '%s' in: %s\n", keys[k], lines[i]);
            CHECK(json_field(lines[i], "val_accuracy", &v) == J_NUMBER && v >= 0 && v <= 1);
            CHECK(json_field(lines[i], "val_mae", NULL) == J_NULL);
        }
        if (n == 3) {
            CHECK(json_field(lines[2], "test_loss", &v) == J_NUMBER && v > 0);
            CHECK(json_field(lines[2], "test_accuracy", &v) == J_NUMBER && v > 0.1 && v <= 1);
            CHECK(json_field(lines[2], "test_mae", NULL) == J_NULL);
            CHECK(json_field(lines[2], "epochs", &v) == J_NUMBER && v == 2);
            CHECK(json_field(lines[2], "epoch", NULL) == J_MISSING);
        }
        free(text);
    }

    /* Regression without validation or test data: those metrics are null. */
    char yaml[1024];
    regression_yaml(yaml, sizeof yaml, false);
    const char *sets[] = {"train.epochs=2"};
    kl_config *cfg = kl_config_parse("test.yaml", yaml, strlen(yaml), sets, 1, &err);
    KL_ASSERT(cfg);
    rewind(out);
    KL_ASSERT(ftruncate(fileno(out), 0) == 0);
    kl_report_options o = {.json = true, .tty = 0, .no_dir = true, .out = out};
    free(train_reported(cfg, &o));
    kl_config_free(cfg);
    char *text = slurp_file(out);
    int n = split_lines(text, lines, 8);
    CHECK(n == 3);
    if (n == 3) {
        CHECK(json_field(lines[0], "train_loss", NULL) == J_NUMBER);
        CHECK(json_field(lines[0], "train_accuracy", NULL) == J_NULL);
        CHECK(json_field(lines[0], "val_loss", NULL) == J_NULL);
        CHECK(json_field(lines[0], "val_accuracy", NULL) == J_NULL);
        CHECK(json_field(lines[2], "test_loss", NULL) == J_NULL);
        CHECK(json_field(lines[2], "test_accuracy", NULL) == J_NULL);
        CHECK(json_field(lines[2], "test_mae", NULL) == J_NULL);
    }
    free(text);
    fclose(out);
}

/* The slices ranks take: in every epoch, the full batches of the shuffled order are covered
 * exactly once by (rank, micro-batch) slices that never overlap, for any rank count. */
static void test_slices(void)
{
    const int64_t n = 1000, gb = 48, steps = n / gb; /* 20 full batches, 40 samples left out */
    const int ranks_list[] = {1, 2, 3, 4, 6}, accs[] = {1, 2, 4};
    for (size_t ri = 0; ri < sizeof ranks_list / sizeof *ranks_list; ri++)
        for (size_t ai = 0; ai < sizeof accs / sizeof *accs; ai++) {
            int ranks = ranks_list[ri], acc = accs[ai];
            int64_t b = gb / ranks / acc;
            if (gb % ((int64_t)ranks * acc) != 0)
                continue;
            int hits[1000] = {0};
            for (int64_t s = 0; s < steps; s++)
                for (int r = 0; r < ranks; r++)
                    for (int a = 0; a < acc; a++) {
                        int64_t at = kl_train_slice(s, gb, r, ranks, acc, a);
                        for (int64_t k = at; k < at + b; k++)
                            hits[k]++;
                    }
            int bad = 0;
            for (int64_t k = 0; k < n; k++)
                bad += hits[k] != (k < steps * gb ? 1 : 0);
            CHECK(bad == 0);
        }
}

/* --summary from shapes alone (kl_model_summarize) prints what the built model's summary prints,
 * for every kind of layer, a residual block included, and for either head. */
static void test_summary_from_shapes(void)
{
    static const char yaml[] = "data: {dataset: mnist}\n"
                               "model:\n"
                               "  layers:\n"
                               "    - conv2d: {filters: 4, kernel: 3, padding: 1}\n"
                               "    - batchnorm\n"
                               "    - max_pool: {kernel: 2}\n"
                               "    - type: residual\n"
                               "      activation: relu\n"
                               "      layers:\n"
                               "        - conv2d: {filters: 4, kernel: 3, padding: 1, bias: no}\n"
                               "        - layernorm\n"
                               "    - avg_pool: {kernel: 2}\n"
                               "    - global_avg_pool\n"
                               "    - flatten\n"
                               "    - dropout: {rate: 0.5}\n"
                               "    - dense: {units: 6, activation: gelu}\n"
                               "    - activation: {activation: tanh}\n";
    kl_error err = {0};
    kl_config *cfg = kl_config_parse("summary.yaml", yaml, strlen(yaml), NULL, 0, &err);
    if (!CHECK(cfg != NULL))
        return;
    for (int task = 0; task < 2; task++) {
        kl_model_options o = {.input = KL_SHAPE(3, 8, 8),
                              .task = task ? KL_TASK_REGRESSION : KL_TASK_CLASSIFICATION,
                              .outputs = 5,
                              .batch = 2,
                              .seed = 1};
        char built[8192] = {0}, shapes[8192] = {0};
        kl_model m;
        FILE *f = fmemopen(built, sizeof built - 1, "w");
        CHECK_OK(kl_model_build(&cfg->model, &o, &m, &err), &err);
        kl_model_summary(&m, f);
        fclose(f);
        kl_model_free(&m);
        f = fmemopen(shapes, sizeof shapes - 1, "w");
        CHECK_OK(kl_model_summarize(&cfg->model, &o, f, &err), &err);
        fclose(f);
        if (!CHECK(strcmp(built, shapes) == 0))
            fprintf(stderr, "    built:\n%s    from shapes:\n%s", built, shapes);
        CHECK(strstr(shapes, "layers.3.1 ") != NULL && strstr(shapes, "total: ") != NULL);
    }
    /* A bad layer is refused as the build refuses it. */
    kl_model_options o = {.input = KL_SHAPE(10), .outputs = 3, .batch = 1};
    char out[4096];
    FILE *f = fmemopen(out, sizeof out, "w");
    CHECK(kl_model_summarize(&cfg->model, &o, f, &err) == KL_EINVAL &&
          strstr(err.msg, "model.layers.0 (conv2d)") != NULL);
    fclose(f);
    kl_config_free(cfg);
}

/* The cases that train on Fashion-MNIST say so and pass when it is not installed (and fail
 * under CI, which installs it). */
#define FMNIST_CASE(fn)                                                                      \
    static void fn##_fmnist(void)                                                            \
    {                                                                                        \
        if (have_fmnist())                                                                   \
            fn();                                                                            \
        else                                                                                 \
            check_missing(#fn, FMNIST " not found (apt-get install dataset-fashion-mnist)"); \
    }
FMNIST_CASE(test_errors)
FMNIST_CASE(test_learns)
FMNIST_CASE(test_onecycle)
FMNIST_CASE(test_reproducible)
FMNIST_CASE(test_early_stop)
FMNIST_CASE(test_hook_stops)
FMNIST_CASE(test_run_dir)

static const check_case cases[] = {
    CHECK_CASE(test_slices),
    CHECK_CASE(test_summary_from_shapes),
    CHECK_CASE(test_regression),
    CHECK_CASE(test_json),
    {"test_errors", test_errors_fmnist},
    {"test_learns", test_learns_fmnist},
    {"test_onecycle", test_onecycle_fmnist},
    {"test_reproducible", test_reproducible_fmnist},
    {"test_early_stop", test_early_stop_fmnist},
    {"test_hook_stops", test_hook_stops_fmnist},
    {"test_run_dir", test_run_dir_fmnist},
};

int main(int argc, char **argv)
{
    check_tmp_make("train");
    write_regression_csv(in_tmp("reg_train.csv"), 200, 1);
    write_regression_csv(in_tmp("reg_test.csv"), 60, 2);
    int rc = check_run("test_train", cases, CHECK_NCASES(cases), argc, argv);
    check_tmp_remove();
    return rc;
}
