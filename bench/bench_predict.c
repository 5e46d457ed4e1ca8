/* bench_predict: the throughput of kl_modelfile_predict (what `kiln predict` and `kiln serve` run
 * per batch: the NaN check, standardisation into the graph's input, forward, softmax and argmax
 * out) against the pure forward pass of the same compiled graph at the same batch size (input
 * already standardised in place, kl_graph_forward alone). The goal: predict >= 90% of forward.
 *
 * The model is a config's (default: the Fashion-MNIST MLP of examples/), with its initial
 * weights: throughput does not depend on their values. It goes through a real checkpoint and
 * export, so the model file path is the one users run. Inputs are the raw Fashion-MNIST test
 * images when installed, else uniform noise of the same shape. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_stats.h"
#include "kiln/ckpt.h"
#include "kiln/clock.h"
#include "kiln/modelfile.h"
#include "kiln/modelfile_export.h"
#include "kiln/predict_io.h"

void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);

#define FMNIST_IMAGES "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
#define MAX_REPS      64
#ifndef BENCH_DEFAULT_CONFIG
#define BENCH_DEFAULT_CONFIG "examples/fashion-mnist/mlp.yaml"
#endif

typedef struct options {
    const char *config;
    int64_t batch, samples;
    int threads, reps;
    double min_rep_s;
    bool csv;
} options;

static int usage(FILE *f, int rc)
{
    fprintf(f,
            "usage: bench_predict [--config FILE] [--batch N] [--samples N] [--threads N]\n"
            "                     [--reps N] [--quick] [--csv]\n"
            "  --config FILE  the model (default: %s)\n"
            "  --batch N      samples per forward pass (default 256)\n"
            "  --samples N    samples per pass over the data, rounded down to whole batches\n"
            "                 (default 9984: the test set's full batches of 256)\n"
            "  --threads N    OpenBLAS threads (default: OpenBLAS's own default)\n"
            "  --reps N       interleaved repetitions of >= 0.3 s each path (default 7, at most\n"
            "                 %d)\n"
            "  --quick        3 repetitions of >= 0.05 s: a smoke run, too noisy for figures\n"
            "  --csv          one CSV row; header lines start with #\n",
            BENCH_DEFAULT_CONFIG, MAX_REPS);
    return rc;
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){
        .config = BENCH_DEFAULT_CONFIG, .batch = 256, .samples = 9984, .reps = 7, .min_rep_s = 0.3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool valued = !strcmp(a, "--config") || !strcmp(a, "--batch") || !strcmp(a, "--samples") ||
                      !strcmp(a, "--threads") || !strcmp(a, "--reps");
        if (valued && i + 1 >= argc)
            return usage(stderr, 2);
        long long v = valued && strcmp(a, "--config") ? atoll(argv[i + 1]) : 1;
        if (v < 1) {
            fprintf(stderr, "bench_predict: %s takes a positive number, not '%s'\n", a,
                    argv[i + 1]);
            return 2;
        }
        if (!strcmp(a, "--config"))
            o->config = argv[++i];
        else if (!strcmp(a, "--batch"))
            o->batch = v, i++;
        else if (!strcmp(a, "--samples"))
            o->samples = v, i++;
        else if (!strcmp(a, "--threads"))
            o->threads = (int)v, i++;
        else if (!strcmp(a, "--reps"))
            o->reps = (int)(v < MAX_REPS ? v : MAX_REPS), i++;
        else if (!strcmp(a, "--quick"))
            o->reps = 3, o->min_rep_s = 0.05;
        else if (!strcmp(a, "--csv"))
            o->csv = true;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return usage(stdout, -1);
        else
            return usage(stderr, 2);
    }
    return 0;
}

/* Writes a checkpoint of cfg's model (initial weights, Fashion-MNIST's global statistics) and
 * exports it without reference statistics to dir/model.h5. */
static kl_status make_model_file(const kl_config *cfg, const char *dir, char *path, size_t size,
                                 kl_error *err)
{
    kl_model_options mo = {.input = KL_SHAPE(1, 28, 28),
                           .task = KL_TASK_CLASSIFICATION,
                           .outputs = 10,
                           .batch = 1,
                           .seed = cfg->train.seed};
    kl_model m;
    kl_status st = kl_model_build(&cfg->model, &mo, &m, err);
    if (st != KL_OK)
        return st;
    char *text = NULL, ckpt[512];
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        kl_model_free(&m);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    kl_config_print(cfg, f);
    fclose(f);
    float mean = 0.2860f, std = 0.3530f;
    kl_ckpt_state s = {.best_metric = NAN, .mean = &mean, .std = &std, .nstats = 1};
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(path, size, "%s/model.h5", dir);
    st = kl_ckpt_save(ckpt, text, &m, &s, err);
    kl_modelfile_export_options xo = {.no_reference = true};
    if (st == KL_OK)
        st = kl_modelfile_export(ckpt, path, &xo, err);
    free(text);
    kl_model_free(&m);
    return st;
}

/* n raw samples of the model's input: Fashion-MNIST test images (repeated as needed) or noise. */
static float *inputs(kl_modelfile *mf, int64_t n, const char **what)
{
    int64_t f = kl_modelfile_sig(mf)->features;
    float *x = malloc((size_t)(n * f) * sizeof *x);
    kl_dataset d = {0};
    kl_data_source src = {.path = FMNIST_IMAGES};
    kl_error err = {0};
    if (!x)
        return NULL;
    if (access(FMNIST_IMAGES, R_OK) == 0 && kl_predict_read_input(mf, &src, &d, &err) == KL_OK) {
        int64_t have = d.x->shape.d[0];
        for (int64_t i = 0; i < n; i++)
            memcpy(x + i * f, kl_f32(d.x) + (i % have) * f, (size_t)f * sizeof *x);
        *what = "Fashion-MNIST test images";
        kl_dataset_free(&d);
        return x;
    }
    uint64_t s = 1;
    for (int64_t i = 0; i < n * f; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)(s >> 40) / (float)(1 << 24);
    }
    *what = "uniform noise";
    return x;
}

typedef struct run {
    kl_modelfile *mf;
    kl_graph *g;
    const float *x; /* (n, features) raw */
    float *out;     /* (n, outputs) */
    int32_t *classes;
    int64_t n, batch, f, k;
} run;

/* One pass of forward alone over n / batch batches; the input was standardised into the graph
 * once, before timing. */
static kl_status pass_forward(run *r, kl_error *err)
{
    for (int64_t s = 0; s < r->n; s += r->batch) {
        kl_status st = kl_graph_forward(r->g, err);
        if (st != KL_OK)
            return st;
    }
    return KL_OK;
}

/* One pass of the predict path, a call per batch as kiln predict makes them. */
static kl_status pass_predict(run *r, kl_error *err)
{
    for (int64_t s = 0; s < r->n; s += r->batch) {
        kl_status st = kl_modelfile_predict(r->mf, r->x + s * r->f, r->batch, r->out + s * r->k,
                                            r->classes + s, err);
        if (st != KL_OK)
            return st;
    }
    return KL_OK;
}

/* Samples per second of passes run for at least min_s. */
static double rate(run *r, kl_status (*pass)(run *, kl_error *), double min_s, kl_error *err)
{
    int64_t done = 0;
    double t0 = kl_now(), t;
    do {
        if (pass(r, err) != KL_OK)
            return -1;
        done += r->n;
    } while ((t = kl_now()) - t0 < min_s);
    return (double)done / (t - t0);
}

/* The forward-only path must compute what predict computes: the first batch's probabilities
 * from the graph's logits after standardising by hand equal predict's bit for bit. */
static bool paths_agree(run *r, kl_error *err)
{
    const kl_model *m = kl_modelfile_model(r->mf);
    float *in = kl_f32(kl_graph_value(r->g, m->x));
    float mean = 0.2860f, std = 0.3530f;
    if (kl_modelfile_predict(r->mf, r->x, r->batch, r->out, r->classes, err) != KL_OK)
        return false;
    for (int64_t i = 0; i < r->batch * r->f; i++)
        in[i] = (r->x[i] - mean) / std;
    if (kl_graph_forward(r->g, err) != KL_OK)
        return false;
    const float *logits = kl_f32(kl_graph_value(r->g, m->output));
    double worst = 0;
    for (int64_t i = 0; i < r->batch; i++) {
        const float *row = logits + i * r->k;
        float mx = row[0];
        for (int64_t j = 1; j < r->k; j++)
            mx = row[j] > mx ? row[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < r->k; j++)
            sum += exp((double)row[j] - mx);
        for (int64_t j = 0; j < r->k; j++) {
            double d = fabs((float)(exp((double)row[j] - mx) / sum) - r->out[i * r->k + j]);
            worst = d > worst ? d : worst;
        }
    }
    printf("# paths agree on the first batch: max |p_forward - p_predict| = %.3g\n", worst);
    return worst == 0;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (o.threads > 0)
        openblas_set_num_threads(o.threads);
    kl_error err = {0};
    kl_config *cfg = kl_config_load(o.config, NULL, 0, &err);
    char dir[] = "/tmp/bench-predict-XXXXXX", path[600];
    kl_modelfile *mf = NULL;
    run r = {0};
    const char *what = "";
    bool made = false;
    rc = 1;
    if (!cfg || !(made = mkdtemp(dir) != NULL) ||
        make_model_file(cfg, dir, path, sizeof path, &err) != KL_OK ||
        kl_modelfile_load(path, o.batch, &mf, &err) != KL_OK) {
        fprintf(stderr, "bench_predict: %s\n", err.msg[0] ? err.msg : "cannot make a folder");
        goto out;
    }
    r = (run){.mf = mf,
              .g = kl_modelfile_model(mf)->g,
              .batch = o.batch,
              .n = o.samples / o.batch * o.batch,
              .f = kl_modelfile_sig(mf)->features,
              .k = kl_modelfile_sig(mf)->outputs};
    if (r.n == 0)
        r.n = o.batch;
    r.x = inputs(mf, r.n, &what);
    r.out = malloc((size_t)(r.n * r.k) * sizeof *r.out);
    r.classes = malloc((size_t)r.n * sizeof *r.classes);
    if (!r.x || !r.out || !r.classes) {
        fprintf(stderr, "bench_predict: out of memory\n");
        goto out;
    }
    printf("# model %s (%.3f MFLOP per sample forward), batch %lld, %lld samples of %s per "
           "pass, OpenBLAS threads %d\n",
           o.config, 1e-6 * (double)kl_model_flops(kl_modelfile_model(mf)), (long long)o.batch,
           (long long)r.n, what, openblas_get_num_threads());
    if (!paths_agree(&r, &err)) {
        fprintf(stderr, "bench_predict: the paths disagree%s%s\n", err.msg[0] ? ": " : "", err.msg);
        goto out;
    }
    double fw[MAX_REPS], pr[MAX_REPS], ratio[MAX_REPS];
    rate(&r, pass_forward, 0.2, &err); /* warm-up */
    rate(&r, pass_predict, 0.2, &err);
    for (int i = 0; i < o.reps; i++) {
        bool fw_first = i % 2 == 0; /* alternate, so both share the machine's noise */
        if (fw_first)
            fw[i] = rate(&r, pass_forward, o.min_rep_s, &err);
        pr[i] = rate(&r, pass_predict, o.min_rep_s, &err);
        if (!fw_first)
            fw[i] = rate(&r, pass_forward, o.min_rep_s, &err);
        if (fw[i] < 0 || pr[i] < 0) {
            fprintf(stderr, "bench_predict: %s\n", err.msg);
            goto out;
        }
        ratio[i] = pr[i] / fw[i];
    }
    double lo = ratio[0], hi = ratio[0];
    for (int i = 1; i < o.reps; i++) {
        lo = ratio[i] < lo ? ratio[i] : lo;
        hi = ratio[i] > hi ? ratio[i] : hi;
    }
    /* The figure is the median of the per-repetition ratios: each pair ran back to back, so a
     * burst of load from another process moves both of its rates, not one median. */
    double mf_fw = bench_median(fw, o.reps), mf_pr = bench_median(pr, o.reps),
           q = bench_median(ratio, o.reps);
    if (o.csv) {
        printf("# batch,threads,forward_samples_per_s,predict_samples_per_s,ratio,ratio_min,"
               "ratio_max\n");
        printf("%lld,%d,%.0f,%.0f,%.4f,%.4f,%.4f\n", (long long)o.batch, openblas_get_num_threads(),
               mf_fw, mf_pr, q, lo, hi);
    } else {
        printf("forward only   %10.0f samples/s (median of %d)\n", mf_fw, o.reps);
        printf("predict path   %10.0f samples/s\n", mf_pr);
        printf("predict/forward %.1f%% (median of the repetitions' ratios; range %.1f%% to "
               "%.1f%%)  goal >= 90%%: %s\n",
               100 * q, 100 * lo, 100 * hi, q >= 0.9 ? "met" : "missed");
    }
    rc = 0;
out:
    free((void *)r.x);
    free(r.out);
    free(r.classes);
    kl_modelfile_free(mf);
    kl_config_free(cfg);
    if (made) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_predict: could not remove %s\n", dir);
    }
    return rc;
}
