/* kiln train: parses the command line, loads the config and the data, and hands them to the
 * trainer with a reporter. Everything it does is a call into runtime/ or trainers/. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/ckpt.h"
#include "kiln/launch.h"
#include "kiln/report.h"
#include "kiln/stop.h"
#include "kiln/track.h"
#include "kiln/train.h"

static const char train_help[] =
    "usage: kiln train CONFIG.yaml [options]\n"
    "\n"
    "Trains the model a config describes on its data, evaluating every epoch, then on the test\n"
    "set. Writes the resolved config, metrics.csv and log.txt to runs/<name or timestamp>/;\n"
    "under Slurm an unnamed run is runs/<job name>-<job id>/, which a requeued job continues.\n"
    "Under mpirun or srun the ranks train one model data-parallel: each takes its share of\n"
    "every global batch (train.batch_size must divide by the rank count) and rank 0 reports.\n"
    "See docs/config.md for the config keys.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE   override a config key, typed like YAML (repeatable), e.g.\n"
    "                    --set optimizer.lr=0.01 --set train.epochs=3\n"
    "  --name NAME       the run's name: its folder runs/NAME, which must not exist yet\n"
    "                    (continue a run with --resume); same as --set name=NAME. A name\n"
    "                    from the config's name: key, or the timestamp used without one,\n"
    "                    gets -2, -3, ... appended when its folder exists\n"
    "  --print-config    print the resolved config (defaults filled in) and exit\n"
    "  --summary         print the model's layers, output shapes, parameters and FLOPs and exit\n"
    "  --quiet           print only the final line\n"
    "  --json            print one JSON object per epoch, and a last one with the test metrics\n"
    "  --no-run-dir      do not write a run folder (and so no checkpoints)\n"
    "  --resume [PATH]   continue a run exactly where its checkpoint left it. PATH is a\n"
    "                    checkpoint file, a run folder or a checkpoints folder (the newest\n"
    "                    checkpoint in it); without PATH, the run named by --name or the\n"
    "                    config's name. The run folder's metrics and log are appended to\n"
    "  --auto-resume     resume the named run if it has a checkpoint, else start it: what a\n"
    "                    job that may be requeued (Slurm) runs every time\n"
    "  --change KEY=VALUE\n"
    "                    with --resume: change KEY from the checkpoint's config, as a\n"
    "                    population-based training schedule does (the optimizer's numbers, a\n"
    "                    dropout rate); a change the checkpoint's weights or optimizer state\n"
    "                    cannot take is refused when it loads. Without --resume, as --set\n"
    "  --resume-weights-only PATH\n"
    "                    start a new run from a checkpoint's weights (its optimizer, step and\n"
    "                    history are left behind, and the config may differ)\n"
    "\n"
    "Checkpoints go to <run folder>/checkpoints/: step-N.h5 as checkpoint.every says, and\n"
    "final.h5 at the end; with train.early_stop, best.h5 too, rewritten whenever the watched\n"
    "metric improves (final.h5 then holds the same best weights). On SIGTERM, SIGINT or SIGUSR1 "
    "the ranks finish the current step,\n"
    "write a checkpoint and exit with status 75; a second SIGINT exits at once. A signal\n"
    "during evaluation checkpoints the epoch's training and stops; during a checkpoint write,\n"
    "that checkpoint is the last. While the data loads, the ranks stop loading and exit 75\n"
    "without a checkpoint; otherwise before training starts (building the model, --summary) a\n"
    "signal ends the run at once with status 75 and nothing saved. A run folder is locked\n"
    "(kiln.lock) while a run writes it: a second kiln on it is refused, naming the holder.\n"
    "Under mpirun a rank that waits longer than dist.timeout in any collective ends the job\n"
    "with status 3, naming the rank that did not arrive when it can tell.\n"
    "\n"
    "exit status: 0 done, 1 error, 2 usage error, 3 a rank waited past dist.timeout,\n"
    "4 the run folder is in use by another kiln, 75 stopped by a signal\n";

typedef struct train_opts {
    const char *config;
    const char **sets;
    int nsets;
    const char **changes; /* --change KEY=VALUE: also among sets */
    int nchanges;
    bool print_config, summary, quiet, json, no_dir;
    bool resume, auto_resume, weights_only;
    bool named;              /* --name NAME or --set name=NAME: the folder must be new */
    const char *resume_path; /* --resume PATH or --resume-weights-only PATH */
} train_opts;

/* The exit statuses a job script can tell apart: a run stopped by a signal (KL_STOP_EXIT, 75,
 * EX_TEMPFAIL: "try again"), and one refused because another kiln holds its run folder, which
 * trying again at once would not help. A collective timeout exits KL_COMM_EXIT_TIMEOUT (3). */
enum { EXIT_STOPPED = KL_STOP_EXIT, EXIT_LOCKED = 4 };

static int parse(int argc, char **argv, train_opts *o, char **name_set)
{
    o->sets = calloc((size_t)argc + 1, sizeof *o->sets);
    o->changes = calloc((size_t)argc + 1, sizeof *o->changes);
    if (!o->sets || !o->changes)
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
            o->named = o->named || !strcmp(a, "--name") || !strncmp(v, "name=", 5);
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
        } else if (!strcmp(a, "--change")) {
            if (i + 1 >= argc || !strchr(argv[i + 1], '='))
                return kl__cli_usage_error("train", "--change needs KEY=VALUE");
            o->sets[o->nsets++] = o->changes[o->nchanges++] = argv[++i];
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
        } else if (!strcmp(a, "--resume")) {
            o->resume = true;
            if (i + 1 < argc && argv[i + 1][0] != '-' && o->config) /* PATH is optional */
                o->resume_path = argv[++i];
        } else if (!strcmp(a, "--auto-resume")) {
            o->auto_resume = true;
        } else if (!strcmp(a, "--resume-weights-only")) {
            if (i + 1 >= argc)
                return kl__cli_usage_error("train", "--resume-weights-only needs a checkpoint");
            o->weights_only = true;
            o->resume_path = argv[++i];
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
    if (o->resume + o->auto_resume + o->weights_only > 1)
        return kl__cli_usage_error("train", "use one of --resume, --auto-resume and "
                                            "--resume-weights-only");
    if ((o->resume || o->auto_resume) && o->no_dir)
        return kl__cli_usage_error("train", "resuming continues a run folder: drop --no-run-dir");
    return 0;
}

static int fail(const kl_error *err)
{
    fprintf(stderr, "kiln train: %s\n", err->msg);
    return 1;
}

/* Every rank loads the same config and data, so a mistake there is found by all of them at
 * once: the ranks compare outcomes and only the first failing rank prints, so a bad key is one
 * message and not one per rank. This is the job's first collective and runs under the
 * communicator's timeout: the all-gather goes through rank 0, which names a rank that never comes
 * (stopped or stuck while loading). Returns 0 when every rank succeeded, else the exit status
 * every rank returns: EXIT_STOPPED when the first failure was a stop request, 1 otherwise. */
static int agree(kl_comm *comm, const char *phase, kl_status st, const kl_error *err)
{
    int size = kl_comm_size(comm), mine = st, rank = kl_comm_rank(comm);
    int *all = size > 1 ? calloc((size_t)size, sizeof *all) : NULL;
    kl_error cerr = {0};
    kl_comm_set_phase(comm, phase, -1);
    kl_status cst =
        size > 1 && all ? kl_comm_allgather(comm, &mine, all, sizeof mine, &cerr) : KL_OK;
    kl_comm_set_phase(comm, NULL, -1);
    if (size == 1 || !all || cst != KL_OK) {
        free(all);
        if (st == KL_OK)
            return cerr.status ? fail(&cerr) : 0;
        return st == KL_ESTOPPED ? (fail(err), EXIT_STOPPED) : fail(err);
    }
    int first = -1;
    for (int k = 0; k < size && first < 0; k++)
        first = all[k] != KL_OK ? k : -1;
    int stopped = first >= 0 && all[first] == KL_ESTOPPED;
    free(all);
    if (first == rank && rank == 0)
        fail(err);
    else if (first == rank)
        fprintf(stderr, "kiln train: rank %d: %s\n", rank, err->msg);
    return first < 0 ? 0 : stopped ? EXIT_STOPPED : 1;
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

/* The summary needs shapes only: no weights are allocated, so a model too large for this machine
 * can still be described. */
static int summary(const kl_config *cfg, const kl_data_splits *data)
{
    kl_error err = {0};
    kl_model_options o = kl_train_model_options(cfg, data);
    o.trainable = false;
    if (kl_model_summarize(&cfg->model, &o, stdout, &err) != KL_OK)
        return fail(&err);
    return 0;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The folder above a `checkpoints` folder that holds path, or NULL. */
static char *run_dir_of(const char *path)
{
    char *copy = strdup(path);
    char *slash = copy ? strrchr(copy, '/') : NULL;
    if (!slash) {
        free(copy);
        return NULL;
    }
    *slash = '\0';
    const char *base = strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
    if (strcmp(base, "checkpoints") != 0) {
        free(copy);
        return NULL;
    }
    if (base == copy) { /* "checkpoints/x.h5": the run folder is "." */
        free(copy);
        return strdup(".");
    }
    copy[base - copy - 1] = '\0';
    return copy;
}

/* What to resume and which run folder to continue (rank 0 decides; see where). ckpt NULL: a
 * fresh start; dir NULL: a new run folder. */
typedef struct resume_plan {
    char ckpt[PATH_MAX], dir[PATH_MAX];
} resume_plan;

static kl_status plan_resume(const kl_config *cfg, const train_opts *o, resume_plan *p,
                             kl_error *err)
{
    char sub[PATH_MAX + 16], *found = NULL, *dir = NULL;
    p->ckpt[0] = p->dir[0] = '\0';
    if (o->weights_only) {
        snprintf(p->ckpt, sizeof p->ckpt, "%s", o->resume_path);
        return KL_OK;
    }
    if (!o->resume && !o->auto_resume)
        return KL_OK;
    if (o->resume_path) {
        const char *path = o->resume_path;
        snprintf(sub, sizeof sub, "%s/checkpoints", path);
        if (is_dir(sub)) { /* a run folder */
            dir = strdup(path);
            found = kl_ckpt_find_latest(sub, err);
        } else if (is_dir(path)) { /* a checkpoints folder */
            found = kl_ckpt_find_latest(path, err);
            snprintf(sub, sizeof sub, "%s/x", path);
            dir = run_dir_of(sub);
        } else if (access(path, R_OK) == 0) {
            found = strdup(path);
            dir = run_dir_of(path);
        } else {
            return kl_error_set(err, KL_EIO, "--resume %s: %s", path, strerror(errno));
        }
    } else {
        if (!cfg->name || !*cfg->name)
            return kl_error_set(
                err, KL_EINVAL,
                "%s without a path needs the run's name: give --name NAME (or name: "
                "in the config), or --resume PATH",
                o->auto_resume ? "--auto-resume" : "--resume");
        const char *runs = cfg->runs_dir && *cfg->runs_dir ? cfg->runs_dir : "runs";
        size_t len = strlen(runs) + strlen(cfg->name) + 2;
        if (!(dir = malloc(len)))
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        snprintf(dir, len, "%s/%s", runs, cfg->name);
        snprintf(sub, sizeof sub, "%s/checkpoints", dir);
        kl_error e = {0};
        found = is_dir(sub) ? kl_ckpt_find_latest(sub, &e) : NULL;
        if (!found && !o->auto_resume)
            kl_error_set(err, KL_EINVAL,
                         "--resume: run %s has no checkpoint to resume (%s); drop --resume to "
                         "start it, or use --auto-resume",
                         dir, is_dir(sub) ? e.msg : "no checkpoints folder");
    }
    if (found)
        snprintf(p->ckpt, sizeof p->ckpt, "%s", found);
    if (dir)
        snprintf(p->dir, sizeof p->dir, "%s", dir);
    bool ok = found || (o->auto_resume && !o->resume_path);
    free(found);
    free(dir);
    return ok ? KL_OK : (err->status ? err->status : KL_EINVAL);
}

/* A name given on the command line names the folder: an existing one is refused (rank 0 looks,
 * before the data loads) instead of silently becoming NAME-2, which names from the config or a
 * timestamp do, as --help says. */
static kl_status check_name(const kl_config *cfg, const train_opts *o, kl_error *err)
{
    if (o->resume || o->auto_resume || !o->named || o->no_dir || o->print_config || o->summary ||
        !cfg->name || !*cfg->name)
        return KL_OK;
    char dir[PATH_MAX];
    const char *runs = cfg->runs_dir && *cfg->runs_dir ? cfg->runs_dir : "runs";
    if ((size_t)snprintf(dir, sizeof dir, "%s/%s", runs, cfg->name) >= sizeof dir ||
        access(dir, F_OK) != 0)
        return KL_OK;
    return kl_error_set(err, KL_EINVAL,
                        "run %s exists already: continue it with --resume, or give another "
                        "--name",
                        dir);
}

/* Under Slurm a run without a name is named after the job ("<job name>-<job id>"), which a
 * requeued job keeps, so a requeued start (SLURM_RESTART_COUNT > 0) of such a run continues it as
 * --auto-resume would instead of starting over in a new folder. Returns 1 out of memory. */
static int slurm_defaults(kl_config *cfg, train_opts *o, bool lead)
{
    char name[128];
    if ((cfg->name && *cfg->name) || !kl_launch_run_name(name, sizeof name))
        return 0;
    free(cfg->name);
    if (!(cfg->name = strdup(name))) {
        fprintf(stderr, "kiln train: out of memory\n");
        return 1;
    }
    int restarts = kl_launch_slurm().restart_count;
    if (restarts > 0 && !o->resume && !o->auto_resume && !o->weights_only && !o->no_dir) {
        o->auto_resume = true;
        if (lead && !o->quiet && !o->json)
            fprintf(stderr, "Slurm restarted this job (%d time%s): continuing run %s\n", restarts,
                    restarts == 1 ? "" : "s", name);
    }
    return 0;
}

/* Rank 0 plans the resume and makes the run folder (it alone writes there); every rank then
 * learns the plan and the checkpoint folder from it, so the ranks never disagree on a path. */
typedef struct shared_plan {
    int32_t status;
    char msg[KL_ERROR_MSG_MAX];
    resume_plan p;
    char ckpt_dir[PATH_MAX + 16];
} shared_plan;

/* Rank 0 records the run in its folder (run.json, docs/runs.md); recording never stops it. */
static kl_run_recorder *record_begin(const kl_config *cfg, const train_opts *o, kl_comm *comm,
                                     kl_reporter *rep)
{
    if (!rep || !kl_reporter_dir(rep))
        return NULL;
    kl_run_info ri = {.dir = kl_reporter_dir(rep),
                      .kind = "train",
                      .cfg = cfg,
                      .config_path = o->config,
                      .ranks = kl_comm_size(comm),
                      .trial = -1};
    return kl_run_record_begin(&ri);
}

static void record_end(kl_run_recorder *rec, kl_status st, const kl_train_result *res,
                       const kl_error *err)
{
    if (st == KL_OK) {
        kl_run_record_metric(rec, "test_loss", res->test_loss);
        kl_run_record_metric(rec, "test_accuracy", res->test_accuracy);
        kl_run_record_metric(rec, "test_mae", res->test_mae);
    }
    kl_run_record_end(rec, st, err->msg);
}

/* Rank 0 reports and writes the run folder; the other ranks train silently beside it. */
static int train(const kl_config *cfg, kl_data_splits *data, const train_opts *o, kl_comm *comm)
{
    kl_error err = {0};
    kl_reporter *rep = NULL;
    bool lead = kl_comm_rank(comm) == 0;
    shared_plan *sp = calloc(1, sizeof *sp);
    if (!sp) {
        fprintf(stderr, "kiln train: out of memory\n");
        return 1;
    }
    if (lead) {
        kl_status st = plan_resume(cfg, o, &sp->p, &err);
        kl_report_options ro = {.quiet = o->quiet,
                                .json = o->json,
                                .tty = -1,
                                .no_dir = o->no_dir,
                                .dir = sp->p.dir[0] ? sp->p.dir : NULL,
                                .lock = true};
        if (st == KL_OK && !(rep = kl_reporter_new(cfg, &ro, &err)))
            st = err.status;
        if (st == KL_OK && kl_reporter_dir(rep)) {
            snprintf(sp->ckpt_dir, sizeof sp->ckpt_dir, "%s/checkpoints", kl_reporter_dir(rep));
            if (mkdir(sp->ckpt_dir, 0755) != 0 && errno != EEXIST)
                st = kl_error_set(&err, KL_EIO, "cannot create %s: %s", sp->ckpt_dir,
                                  strerror(errno));
        }
        sp->status = st;
        snprintf(sp->msg, sizeof sp->msg, "%s", err.msg);
    }
    kl_comm_set_phase(comm, "run folder broadcast", -1);
    kl_status bst = kl_comm_size(comm) > 1 ? kl_comm_bcast(comm, sp, sizeof *sp, 0, &err) : KL_OK;
    kl_comm_set_phase(comm, NULL, -1);
    if (bst != KL_OK) {
        free(sp);
        kl_reporter_free(rep);
        return fail(&err);
    }
    if (sp->status != KL_OK) { /* rank 0 says why; the others just stop */
        if (lead)
            fprintf(stderr, "kiln train: %s\n", sp->msg);
        int rc = sp->status == KL_EBUSY ? EXIT_LOCKED : 1;
        free(sp);
        kl_reporter_free(rep);
        return rc;
    }
    if (lead && !o->quiet && !o->json) {
        const kl_tensor *x = data->train.x;
        fprintf(stderr, "training on %lld samples (%lld validation, %lld test)",
                (long long)x->shape.d[0], data->val.x ? (long long)data->val.x->shape.d[0] : 0LL,
                data->test.x ? (long long)data->test.x->shape.d[0] : 0LL);
        if (kl_comm_size(comm) > 1)
            fprintf(stderr, " on %d ranks (%s)", kl_comm_size(comm), kl_comm_backend(comm));
        /* The device rank 0 takes; a refusal is the trainer's to report, just after this line. */
        kl_device_choice dev;
        kl_error derr = {0};
        if (kl_train_pick_device(cfg, comm, &dev, &derr) == KL_OK) {
            char what[320];
            kl_device_describe(&dev, what, sizeof what);
            fprintf(stderr, " on %s", what);
            if (kl_train_uses_nccl(&dev, kl_comm_size(comm)))
                fprintf(stderr, ", gradients all-reduced with NCCL");
            else if (dev.device != KL_DEVICE_CPU && kl_comm_size(comm) > 1)
                fprintf(stderr, ", gradients through host memory (MPI fallback)");
        }
        if (kl_reporter_dir(rep))
            fprintf(stderr, ", run folder %s", kl_reporter_dir(rep));
        fprintf(stderr, "\n");
        if (sp->p.ckpt[0])
            fprintf(stderr, "%s %s\n",
                    o->weights_only ? "starting from the weights of" : "resuming from", sp->p.ckpt);
        else if (o->auto_resume)
            fprintf(stderr, "no checkpoint yet: starting the run\n");
    }
    kl_train_hooks hooks = {0};
    if (rep)
        hooks = kl_reporter_hooks(rep);
    kl_train_options to = {.ckpt_dir = sp->ckpt_dir[0] ? sp->ckpt_dir : NULL,
                           .resume = sp->p.ckpt[0] ? sp->p.ckpt : NULL,
                           .weights_only = o->weights_only,
                           .resume_changes = o->changes,
                           .nresume_changes = o->nchanges};
    kl_run_recorder *rec = record_begin(cfg, o, comm, rep);
    kl_train_result res = {0};
    kl_status st = kl_train_run_dist(cfg, data, comm, &to, rep ? &hooks : NULL, NULL, &res, &err);
    record_end(rec, st, &res, &err);
    kl_reporter_free(rep);
    free(sp);
    if (st == KL_ESTOPPED) {
        if (lead)
            fprintf(stderr, "kiln train: %s\n", err.msg);
        return EXIT_STOPPED;
    }
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
    /* From the start: until training begins a stop ends the process at once (a quit phase),
     * except while the data loads, which honours it itself (KL_ESTOPPED). */
    kl_stop_catch_signals();
    if (kl_comm_world(NULL, NULL, &comm, &err) != KL_OK) {
        rc = fail(&err);
        goto out;
    }
    int rank = kl_comm_rank(comm);
    lead = rank == 0;
    const char *who = lead ? "kiln train" : NULL; /* rank 0 speaks for all */
    kl_launch_check_world(kl_comm_size(comm), rank, stderr);
    kl_stop_quit_begin(who, "while loading the config");
    kl_stop_test_point("config", rank, -1);
    cfg = kl_config_load(o.config, o.sets, o.nsets, &err);
    /* Every collective from here on is watched, the first one included: a rank stopped or stuck
     * while loading cannot hang the others. A rank whose config did not load uses the default. */
    kl_error terr = {0};
    double timeout = cfg ? cfg->dist.timeout : KL_DIST_TIMEOUT_DEFAULT;
    if (kl_comm_set_timeout(comm, timeout, &terr) != KL_OK) {
        rc = fail(&terr);
        goto out;
    }
    rc = agree(comm, "startup agreement after loading the config", cfg ? KL_OK : err.status, &err);
    /* A --set that does not apply is a bad command line: its errors point into the override
     * ("--set:N:col", runtime/config_override.c), and every rank loads the same one. */
    if (rc == 1 && !cfg && !strncmp(err.msg, "--set:", 6)) {
        if (lead)
            fprintf(stderr, "run 'kiln train --help' for usage\n");
        rc = KL__CLI_EXIT_USAGE;
    }
    if (rc != 0)
        goto out;
    if ((rc = slurm_defaults(cfg, &o, lead)) != 0)
        goto out;
    kl_status nst = lead ? check_name(cfg, &o, &err) : KL_OK;
    if ((rc = agree(comm, "startup agreement on the run's name", nst, &err)) != 0)
        goto out;
    if (o.print_config) {
        if (lead)
            kl_config_print(cfg, stdout);
        goto out;
    }
    kl_stop_quit_end();
    kl_stop_test_point("data", rank, -1);
    kl_comm_set_phase(comm, "data preparation", -1);
    kl_status st = kl_data_prepare_dist(&cfg->data, cfg->train.seed, comm, &data, &err);
    kl_comm_set_phase(comm, NULL, -1);
    if ((rc = agree(comm, "startup agreement after preparing the data", st, &err)) != 0)
        goto out; /* a stop while the data loaded: EXIT_STOPPED */
    /* The trainer ends this phase when its first step begins. */
    kl_stop_quit_begin(who, o.summary ? "while printing the model summary"
                                      : "before training started (building the model)");
    if (o.summary)
        rc = lead ? summary(cfg, &data) : 0;
    else
        rc = train(cfg, &data, &o, comm);
out:
    kl_stop_quit_end();
    kl_comm_free(comm);
    kl_data_splits_free(&data);
    kl_config_free(cfg);
    free(o.sets);
    free(o.changes);
    free(name_set);
    return rc;
}
