/* kiln demo: the end-to-end path kiln has today, on synthetic data that needs no files: build a
 * graph, train it with mini-batch SGD/Adam, evaluate on held-out samples. Parsing and printing
 * only; the models, data and loop are trainers/toy.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/toy.h"

static const char demo_help[] =
    "usage: kiln demo [--model mlp|cnn|all] [--epochs N] [--seed S] [--quiet]\n"
    "\n"
    "Trains two small models on synthetic data and reports held-out accuracy:\n"
    "  mlp  a 2-64-64-3 MLP on three interleaved spirals (Adam, cosine schedule)\n"
    "  cnn  a 2-conv CNN with batchnorm on 12x12 images of strokes (SGD, momentum)\n"
    "\n"
    "options:\n"
    "  --model M    which model to train (default: all)\n"
    "  --epochs N   epochs per model (default: 40 for mlp, 8 for cnn)\n"
    "  --seed S     seed for data, initial weights and batch order (default: 1)\n"
    "  --quiet      print only the final accuracies\n";

typedef struct demo_opts {
    bool mlp, cnn, quiet;
    int epochs; /* 0: each model's default */
    uint64_t seed;
} demo_opts;

static int run_mlp(const demo_opts *o)
{
    kl_error err = {0};
    kl_toy_data train = {0}, test = {0};
    kl_toy_model m = {0};
    const int hidden[] = {64, 64};
    kl_toy_fit_config cfg = {.epochs = o->epochs ? o->epochs : 40, .batch = 32, .seed = o->seed};
    cfg.optim = kl_optim_defaults(KL_OPTIM_ADAM);
    int steps = cfg.epochs * (1500 + 31) / 32;
    cfg.lr = (kl_lr_schedule){.kind = KL_LR_COSINE,
                              .base_lr = 0.01f,
                              .warmup_steps = 20,
                              .total_steps = steps,
                              .min_lr = 0.0005f};
    float acc = 0, loss = 0;
    int rc = 1;
    if (kl_toy_spirals(&train, 1500, 3, 0.03f, o->seed, &err) ||
        kl_toy_spirals(&test, 600, 3, 0.03f, o->seed + 1000, &err) ||
        kl_toy_mlp(&m, 2, hidden, 2, 3, 32, o->seed, &err))
        goto out;
    if (!o->quiet)
        printf("mlp: 3 spirals, 1500 training and 600 test points, %zu parameters\n",
               kl_graph_param_count(m.g));
    if (kl_toy_fit(&m, &train, &cfg, o->quiet ? NULL : stdout, &loss, &err) ||
        kl_toy_accuracy(&m, &test, &acc, &err))
        goto out;
    printf("mlp: test accuracy %.1f%% after %d epochs (final training loss %.4f)\n", 100.0 * acc,
           cfg.epochs, (double)loss);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "kiln demo: mlp: %s\n", err.msg);
    kl_toy_model_free(&m);
    kl_toy_data_free(&train);
    kl_toy_data_free(&test);
    return rc;
}

static int run_cnn(const demo_opts *o)
{
    kl_error err = {0};
    kl_toy_data train = {0}, test = {0};
    kl_toy_model m = {0};
    kl_toy_fit_config cfg = {.epochs = o->epochs ? o->epochs : 8, .batch = 32, .seed = o->seed};
    cfg.optim = kl_optim_defaults(KL_OPTIM_SGD);
    cfg.optim.momentum = 0.9f;
    cfg.optim.weight_decay = 5e-4f;
    cfg.lr = (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = 0.05f};
    float acc = 0, loss = 0;
    int rc = 1;
    if (kl_toy_strokes(&train, 2000, 12, 0.3f, o->seed, &err) ||
        kl_toy_strokes(&test, 800, 12, 0.3f, o->seed + 1000, &err) ||
        kl_toy_cnn(&m, 12, 4, 32, o->seed, &err))
        goto out;
    if (!o->quiet)
        printf("cnn: 4 stroke classes, 2000 training and 800 test 12x12 images, %zu parameters\n",
               kl_graph_param_count(m.g));
    if (kl_toy_fit(&m, &train, &cfg, o->quiet ? NULL : stdout, &loss, &err) ||
        kl_toy_accuracy(&m, &test, &acc, &err))
        goto out;
    printf("cnn: test accuracy %.1f%% after %d epochs (final training loss %.4f)\n", 100.0 * acc,
           cfg.epochs, (double)loss);
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "kiln demo: cnn: %s\n", err.msg);
    kl_toy_model_free(&m);
    kl_toy_data_free(&train);
    kl_toy_data_free(&test);
    return rc;
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out)
{
    long long v;
    if (!s || !kl__cli_int(s, lo, hi, &v))
        return kl__cli_usage_error("demo", "%s needs an integer in %ld..%ld, got '%s'", opt, lo, hi,
                                   s ? s : "");
    *out = (long)v;
    return 0;
}

int kl__cli_demo(int argc, char **argv)
{
    demo_opts o = {.mlp = true, .cnn = true, .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v = 0;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(demo_help, stdout);
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = true;
        } else if (!strcmp(a, "--model")) {
            const char *m = i + 1 < argc ? argv[++i] : "";
            o.mlp = !strcmp(m, "mlp") || !strcmp(m, "all");
            o.cnn = !strcmp(m, "cnn") || !strcmp(m, "all");
            if (!o.mlp && !o.cnn)
                return kl__cli_usage_error("demo", "--model must be mlp, cnn or all, got '%s'", m);
        } else if (!strcmp(a, "--epochs")) {
            if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, 1, 10000, &v))
                return 2;
            o.epochs = (int)v;
        } else if (!strcmp(a, "--seed")) {
            if (parse_int(a, i + 1 < argc ? argv[++i] : NULL, 0, 2147483647L, &v))
                return 2;
            o.seed = (uint64_t)v;
        } else {
            return kl__cli_usage_error("demo", "unknown option '%s'", a);
        }
    }
    int rc = 0;
    if (o.mlp)
        rc |= run_mlp(&o);
    if (o.cnn)
        rc |= run_cnn(&o);
    return rc;
}
