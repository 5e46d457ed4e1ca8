/* kiln train: parses the command line, loads the config and the data, and hands them to the
 * trainer with a reporter. Everything it does is a call into runtime/ or trainers/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "kiln/report.h"
#include "kiln/train.h"

static const char train_help[] =
    "usage: kiln train CONFIG.yaml [options]\n"
    "\n"
    "Trains the model a config describes on its data, evaluating every epoch, then on the test\n"
    "set. Writes the resolved config, metrics.csv and log.txt to runs/<name or timestamp>/.\n"
    "Under mpirun or srun the ranks train one model data-parallel: each takes its share of\n"
    "every global batch (train.batch_size must divide by the rank count) and rank 0 reports.\n"
    "See docs/config.md for the config keys.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE   override a config key, typed like YAML (repeatable), e.g.\n"
    "                    --set optimizer.lr=0.01 --set train.epochs=3\n"
    "  --name NAME       the run's name (its folder under runs/), same as --set name=NAME\n"
    "  --print-config    print the resolved config (defaults filled in) and exit\n"
    "  --summary         print the model's layers, output shapes, parameters and FLOPs and exit\n"
    "  --quiet           print only the final line\n"
    "  --json            print one JSON object per epoch, and a last one with the test metrics\n"
    "  --no-run-dir      do not write a run folder\n";

typedef struct train_opts {
    const char *config;
    const char **sets;
    int nsets;
    bool print_config, summary, quiet, json, no_dir;
} train_opts;

static int parse(int argc, char **argv, train_opts *o, char **name_set)
{
    o->sets = calloc((size_t)argc + 1, sizeof *o->sets);
    if (!o->sets)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(train_help, stdout);
            return -1;
        } else if (!strcmp(a, "--set") || !strcmp(a, "--name")) {
            if (i + 1 >= argc)
                return kl__cli_usage_error("train", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--set") && !strchr(v, '='))
                return kl__cli_usage_error("train", "--set needs KEY=VALUE, got '%s'", v);
            if (!strcmp(a, "--name")) {
                size_t n = strlen(v) + 6;
                char *s = malloc(n);
                if (!s)
                    return 1;
                snprintf(s, n, "name=%s", v);
                free(*name_set); /* the last --name wins, as with --set */
                *name_set = s;
                v = s;
            }
            o->sets[o->nsets++] = v;
        } else if (!strcmp(a, "--print-config")) {
            o->print_config = true;
        } else if (!strcmp(a, "--summary")) {
            o->summary = true;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o->quiet = true;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (!strcmp(a, "--no-run-dir")) {
            o->no_dir = true;
        } else if (a[0] == '-') {
            return kl__cli_usage_error("train", "unknown option '%s'", a);
        } else if (o->config) {
            return kl__cli_usage_error("train", "one config file please, got '%s' and '%s'",
                                       o->config, a);
        } else {
            o->config = a;
        }
    }
    if (!o->config)
        return kl__cli_usage_error("train", "which config? e.g. kiln train "
                                            "examples/fashion-mnist/mlp.yaml");
    return 0;
}

static int fail(const kl_error *err)
{
    fprintf(stderr, "kiln train: %s\n", err->msg);
    return 1;
}

/* Every rank loads the same config and data, so a mistake there is found by all of them at
 * once: the ranks compare outcomes and only the first failing rank prints, so a bad key is one
 * message and not one per rank. Returns 0 when every rank succeeded, 1 otherwise (every rank
 * then exits 1). */
static int agree(kl_comm *comm, kl_status st, const kl_error *err)
{
    int size = kl_comm_size(comm), mine = st, rank = kl_comm_rank(comm);
    int *all = size > 1 ? calloc((size_t)size, sizeof *all) : NULL;
    kl_error cerr = {0};
    if (size == 1 || !all || kl_comm_allgather(comm, &mine, all, sizeof mine, &cerr) != KL_OK) {
        free(all);
        return st == KL_OK ? (cerr.status ? fail(&cerr) : 0) : fail(err);
    }
    int first = -1;
    for (int k = 0; k < size && first < 0; k++)
        first = all[k] != KL_OK ? k : -1;
    free(all);
    if (first == rank && rank == 0)
        fail(err);
    else if (first == rank)
        fprintf(stderr, "kiln train: rank %d: %s\n", rank, err->msg);
    return first >= 0;
}

/* The trainer's own refusals of a config (KL_EINVAL, KL_EUNSUPPORTED) come before any step and
 * are the same on every rank, so rank 0 speaks for all; anything else is rank-local (a failed
 * collective, memory) and each rank that saw it says so. */
static int train_failed(kl_comm *comm, const kl_error *err)
{
    int rank = kl_comm_rank(comm);
    if (rank == 0)
        return fail(err);
    if (err->status != KL_EINVAL && err->status != KL_EUNSUPPORTED)
        fprintf(stderr, "kiln train: rank %d: %s\n", rank, err->msg);
    return 1;
}

static int summary(const kl_config *cfg, const kl_data_splits *data)
{
    kl_error err = {0};
    kl_model m;
    kl_model_options o = kl_train_model_options(cfg, data);
    o.trainable = false;
    if (kl_model_build(&cfg->model, &o, &m, &err) != KL_OK)
        return fail(&err);
    kl_model_summary(&m, stdout);
    kl_model_free(&m);
    return 0;
}

/* Rank 0 reports and writes the run folder; the other ranks train silently beside it. */
static int train(const kl_config *cfg, kl_data_splits *data, const train_opts *o, kl_comm *comm)
{
    kl_error err = {0};
    kl_reporter *rep = NULL;
    bool lead = kl_comm_rank(comm) == 0;
    if (lead) {
        kl_report_options ro = {.quiet = o->quiet, .json = o->json, .tty = -1, .no_dir = o->no_dir};
        if (!(rep = kl_reporter_new(cfg, &ro, &err)))
            return fail(&err);
    }
    if (lead && !o->quiet && !o->json) {
        const kl_tensor *x = data->train.x;
        fprintf(stderr, "training on %lld samples (%lld validation, %lld test)",
                (long long)x->shape.d[0], data->val.x ? (long long)data->val.x->shape.d[0] : 0LL,
                data->test.x ? (long long)data->test.x->shape.d[0] : 0LL);
        if (kl_comm_size(comm) > 1)
            fprintf(stderr, " on %d ranks (%s)", kl_comm_size(comm), kl_comm_backend(comm));
        if (kl_reporter_dir(rep))
            fprintf(stderr, ", run folder %s", kl_reporter_dir(rep));
        fprintf(stderr, "\n");
    }
    kl_train_hooks hooks = {0};
    if (rep)
        hooks = kl_reporter_hooks(rep);
    kl_status st = kl_train_run_dist(cfg, data, comm, rep ? &hooks : NULL, NULL, NULL, &err);
    kl_reporter_free(rep);
    return st == KL_OK ? 0 : train_failed(comm, &err);
}

int kl__cli_train(int argc, char **argv)
{
    train_opts o = {0};
    char *name_set = NULL;
    kl_error err = {0};
    int rc = parse(argc, argv, &o, &name_set);
    kl_config *cfg = NULL;
    kl_data_splits data = {0};
    kl_comm *comm = NULL;
    bool lead = true;
    if (rc != 0) {
        rc = rc < 0 ? 0 : rc;
        goto out;
    }
    if (kl_comm_world(NULL, NULL, &comm, &err) != KL_OK) {
        rc = fail(&err);
        goto out;
    }
    lead = kl_comm_rank(comm) == 0;
    cfg = kl_config_load(o.config, o.sets, o.nsets, &err);
    if ((rc = agree(comm, cfg ? KL_OK : err.status, &err)) != 0)
        goto out;
    if (o.print_config) {
        if (lead)
            kl_config_print(cfg, stdout);
        goto out;
    }
    if ((rc = agree(comm, kl_data_prepare(&cfg->data, cfg->train.seed, &data, &err), &err)) != 0)
        goto out;
    if (o.summary)
        rc = lead ? summary(cfg, &data) : 0;
    else
        rc = train(cfg, &data, &o, comm);
out:
    kl_comm_free(comm);
    kl_data_splits_free(&data);
    kl_config_free(cfg);
    free(o.sets);
    free(name_set);
    return rc;
}
