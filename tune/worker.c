/* Running one trial: its config (the sweep's base with the trial's overrides, trained to the
 * scheduler's max_t), its folder under <sweep>/trials/, its data (cached while the data keys
 * are not tuned), and the trainer with a hook that asks for a decision after every epoch. The
 * trial resumes from its latest checkpoint whenever it has one: a promoted trial continues from
 * its rung, a requeued one from where it stopped. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kiln/ckpt.h"
#include "kiln/report.h"
#include "kiln/track.h"
#include "kiln/train.h"
#include "runtime/file.h"
#include "tune/tune_impl.h"

void kl__tune_trial_dir(const kl__tuner *tu, int64_t trial, char *buf, size_t size)
{
    snprintf(buf, size, "%s/trials/trial-%04lld", tu->dir, (long long)trial);
}

kl_status kl__tune_overrides(kl__tuner *tu, int64_t trial, kl_error *err)
{
    kl__trial *t = &tu->trials[trial];
    if (t->ov)
        return KL_OK;
    if (tu->tpe)
        return kl_tpe_suggest(tu->tpe, tu->sched, trial, &t->ov, &t->nov, err);
    if (tu->sw->tpe.on) /* a worker: its jobs carry the values (kl__tune_job_unpack) */
        return kl_error_set(err, KL_EINTERNAL, "trial %lld: no values came with its job",
                            (long long)trial);
    return kl_sweep_overrides(tu->sw, trial, &t->ov, &t->nov, err);
}

void kl__tune_free_data(kl__tuner *tu)
{
    if (tu->have_data)
        kl_data_splits_free(&tu->data);
    tu->have_data = false;
    free(tu->data_key);
    tu->data_key = NULL;
}

/* The part of a trial's overrides that changes its data: data.* and train.seed (which picks the
 * validation split). Trials with the same key share one load. */
static char *data_key(const kl__trial *t)
{
    size_t len = 1;
    for (int i = 0; i < t->nov; i++)
        len += strlen(t->ov[i]) + 1;
    char *k = calloc(len, 1);
    for (int i = 0; k && i < t->nov; i++)
        if (!strncmp(t->ov[i], "data.", 5) || !strncmp(t->ov[i], "train.seed=", 11)) {
            strcat(k, t->ov[i]);
            strcat(k, "\n");
        }
    return k;
}

static kl_status trial_data(kl__tuner *tu, const kl__trial *t, const kl_config *cfg, kl_comm *comm,
                            kl_error *err)
{
    char *key = data_key(t);
    if (!key)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    if (tu->have_data && !strcmp(key, tu->data_key)) {
        free(key);
        return KL_OK;
    }
    kl__tune_free_data(tu);
    kl_status st = kl_data_prepare_dist(&cfg->data, cfg->train.seed, comm, &tu->data, err);
    if (st != KL_OK) {
        free(key);
        return st;
    }
    tu->have_data = true;
    tu->data_key = key;
    return KL_OK;
}

typedef struct trial_ctx {
    kl__tuner *tu;
    int64_t trial;
    int until_t;
    kl__decide_fn decide;
    void *ctx;
    kl_train_hooks report; /* the trial folder's metrics.csv and log */
} trial_ctx;

static bool on_epoch(void *ctx, const kl_epoch_metrics *m)
{
    trial_ctx *c = ctx;
    if (c->report.on_epoch)
        c->report.on_epoch(c->report.ctx, m);
    kl_decision d = c->decide(c->ctx, c->trial, m->epoch, kl_epoch_metric(m, c->tu->sw->metric));
    return d == KL_DECIDE_CONTINUE && m->epoch < c->until_t;
}

kl_status kl__tune_run_trial(kl__tuner *tu, kl_comm *comm, const kl__msg *job, kl__decide_fn decide,
                             void *ctx, kl_error *err)
{
    kl__trial *t = &tu->trials[job->trial];
    kl_status st = kl__tune_job_unpack(tu, job, err);
    if (st == KL_OK)
        st = kl__tune_overrides(tu, job->trial, err);
    if (st != KL_OK)
        return st;
    char dir[4096], ckdir[4200], epochs[64];
    kl__tune_trial_dir(tu, job->trial, dir, sizeof dir);
    snprintf(ckdir, sizeof ckdir, "%s/checkpoints", dir);
    /* Every trial trains toward max_t (so that schedules like cosine see the same horizon
     * whatever rung it stops at) and checkpoints every epoch, keeping one. */
    snprintf(epochs, sizeof epochs, "train.epochs=%d", tu->sw->sched.max_t);
    const char *extra[] = {epochs, "train.eval_every=1", "checkpoint.every=1 epochs",
                           "checkpoint.keep_last=1"};
    kl_config *cfg = kl_sweep_config(tu->sw, t->ov, t->nov, extra, 4, err);
    if (!cfg)
        return err->status;
    bool lead = kl_comm_rank(comm) == 0;
    if (lead && kl__mkdirs(ckdir) != 0) {
        kl_config_free(cfg);
        return kl_error_set(err, KL_EIO, "cannot create %s: %s", ckdir, strerror(errno));
    }
    if ((st = trial_data(tu, t, cfg, comm, err)) != KL_OK) {
        kl_config_free(cfg);
        return st;
    }
    /* Every rank of the group reads the folder (a shared filesystem, as for any MPI job's run
     * folder); only rank 0 of the group writes it. */
    kl_error none = {0};
    char *resume = kl_ckpt_find_latest(ckdir, &none);
    kl_reporter *rep = NULL;
    /* best.h5 holds the epoch whose value is the trial's best (kl_sched_best), the model
     * best.json names. */
    /* PBT: the mutated hyperparameters may differ from the checkpoint's (a copied one, or the
     * trial's own before it explored). */
    const char **changes = calloc((size_t)tu->sw->nmutations + 1, sizeof *changes);
    int nchanges = 0;
    if (!changes) {
        free(resume);
        kl_config_free(cfg);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    for (int k = 0; k < tu->sw->nmutations; k++)
        for (int i = 0; i < t->nov; i++) {
            size_t len = strlen(tu->sw->mutations[k].path);
            if (!strncmp(t->ov[i], tu->sw->mutations[k].path, len) && t->ov[i][len] == '=')
                changes[nchanges++] = t->ov[i];
        }
    kl_train_options to = {.ckpt_dir = ckdir,
                           .resume = resume,
                           .best_metric = tu->sw->metric,
                           .best_maximize = tu->sw->maximize,
                           .resume_changes = changes,
                           .nresume_changes = nchanges,
                           .device_slot = tu->device_slot,
                           .device_slots = tu->device_slots};
    trial_ctx c = {
        .tu = tu, .trial = job->trial, .until_t = job->until_t, .decide = decide, .ctx = ctx};
    if (lead) {
        /* The trial folder is locked while this group trains it: the coordinator hands a trial
         * to one worker at a time (tune/coord.c), and the lock makes that a checked fact. */
        kl_report_options ro = {.quiet = true, .tty = 0, .dir = dir, .lock = true};
        FILE *devnull = fopen("/dev/null", "w");
        ro.out = ro.err = devnull;
        rep = kl_reporter_new(cfg, &ro, err);
        if (!rep) {
            if (devnull)
                fclose(devnull);
            free(changes);
            free(resume);
            kl_config_free(cfg);
            return err->status;
        }
        c.report = kl_reporter_hooks(rep);
        c.report.on_done = NULL;
        c.report.on_step = NULL;
        /* The reporter writes to /dev/null for lines; its files are what we keep. */
        kl_train_hooks h = {.ctx = &c, .on_epoch = on_epoch};
        kl_data_splits d = tu->data;
        d.test = (kl_dataset){0}; /* a trial is judged on validation; the test set is for the
                                     best model, after the sweep */
        kl_run_info ri = {.dir = dir,
                          .kind = "trial",
                          .cfg = cfg,
                          .ranks = kl_comm_size(comm),
                          .sweep = tu->dir,
                          .trial = job->trial};
        kl_run_recorder *rec = kl_run_record_begin(&ri);
        st = kl_train_run_dist(cfg, &d, comm, &to, &h, NULL, NULL, err);
        kl_run_record_end(rec, st, err->msg);
        kl_reporter_free(rep);
        fclose(devnull);
    } else {
        kl_data_splits d = tu->data;
        d.test = (kl_dataset){0};
        st = kl_train_run_dist(cfg, &d, comm, &to, NULL, NULL, NULL, err);
    }
    free(changes);
    free(resume);
    kl_config_free(cfg);
    return st;
}
