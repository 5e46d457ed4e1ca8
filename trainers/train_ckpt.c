/* The trainer's checkpoints: what goes into one (the run's state gathered into a kl_ckpt_state),
 * when old ones are pruned, and resuming, where rank 0 reads the file and broadcasts it so that
 * only rank 0 ever needs to see the checkpoint folder. Called from trainers/train.c. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "trainers/train_impl.h"

kl_status kl__train_history_add(kl__train_state *r, const kl_epoch_metrics *m, kl_error *err)
{
    if (r->nhistory == r->cap_history) {
        int cap = r->cap_history ? 2 * r->cap_history : 16;
        double *h = realloc(r->history, (size_t)cap * KL__HISTORY_COLS * sizeof *h);
        if (!h)
            return kl_error_set(err, KL_ENOMEM, "out of memory keeping the metric history");
        r->history = h;
        r->cap_history = cap;
    }
    double row[KL__HISTORY_COLS] = {m->epoch,    (double)m->step, m->train_loss, m->train_accuracy,
                                    m->val_loss, m->val_accuracy, m->val_mae,    m->lr,
                                    m->seconds,  m->samples_per_s};
    memcpy(r->history + (size_t)r->nhistory++ * KL__HISTORY_COLS, row, sizeof row);
    return KL_OK;
}

void kl__train_ckpt_name(char *buf, size_t size, int64_t step)
{
    snprintf(buf, size, "step-%010lld.h5", (long long)step);
}

kl_status kl__train_save(kl__train_state *r, int epochs_done, int64_t step_in_epoch,
                         const double *sums, double seconds, const char *file, kl_error *err)
{
    if (r->rank != 0 || !r->opts->ckpt_dir)
        return KL_OK;
    /* Checkpoints hold host copies, whatever the device: a run resumes on any device. */
    kl_status hs = kl_graph_to_host(r->m->g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err);
    if (hs == KL_OK)
        hs = kl_step_state_to_host(r->train_step, err);
    if (hs != KL_OK)
        return hs;
    bool early = r->cfg->train.early_stop.patience > 0 && r->best_epoch > 0;
    int ncols;
    const char *const *cols = kl_ckpt_history_columns(&ncols);
    KL_ASSERT(ncols == KL__HISTORY_COLS);
    kl_optim *opt = kl_step_optim(r->train_step);
    kl_ckpt_state st = {
        .step = r->step,
        .epoch = epochs_done,
        .step_in_epoch = step_in_epoch,
        .seed = r->cfg->train.seed,
        .epoch_sums = {sums[0], sums[1], sums[2]},
        .epoch_seconds = seconds,
        .best_metric = r->best_metric,
        .best_epoch = r->best_epoch,
        .bad_epochs = r->bad_epochs,
        .best_params = early ? r->best_params : NULL,
        .best_buffers = early ? r->best_buffers : NULL,
        .optim_kind = (int)r->cfg->optimizer.kind,
        .optim_steps = kl_optim_steps(opt),
        .optim_state = kl_optim_state(opt),
        .optim_state_size = kl_optim_state_size(opt),
        .mean = r->data->mean,
        .std = r->data->std,
        .nstats = r->data->nstats,
        .history = {r->nhistory, ncols, (const char **)cols, r->history},
    };
    size_t len = strlen(r->opts->ckpt_dir) + strlen(file) + 2;
    char *path = malloc(len);
    if (!path)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    snprintf(path, len, "%s/%s", r->opts->ckpt_dir, file);
    kl_status s = kl_ckpt_save(path, r->config_text, r->m, &st, err);
    free(path);
    r->last_ckpt = kl_now();
    return s;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void kl__train_remove_stale(kl__train_state *r)
{
    if (r->rank == 0 && r->opts->ckpt_dir)
        kl_ckpt_remove_stale(r->opts->ckpt_dir, NULL);
}

/* Keeps the newest checkpoint.keep_last periodic checkpoints (step-*.h5; their names sort by
 * step); final.h5 and best.h5 are never pruned. Temporaries of dead writers go too. */
void kl__train_prune(kl__train_state *r)
{
    int keep = r->cfg->checkpoint.keep_last;
    kl__train_remove_stale(r);
    if (r->rank != 0 || keep <= 0 || !r->opts->ckpt_dir)
        return;
    DIR *d = opendir(r->opts->ckpt_dir);
    if (!d)
        return;
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "step-", 5) != 0 || l < 4 || strcmp(e->d_name + l - 3, ".h5"))
            continue;
        if (n == cap) {
            char **nn = realloc(names, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *nn);
            if (!nn)
                break;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (names)
        qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) {
        if (i < n - keep) {
            size_t len = strlen(r->opts->ckpt_dir) + strlen(names[i]) + 2;
            char *p = malloc(len);
            if (p) {
                snprintf(p, len, "%s/%s", r->opts->ckpt_dir, names[i]);
                unlink(p);
            }
            free(p);
        }
        free(names[i]);
    }
    free(names);
}

/* Prints cfg as checkpoints compare it: without the keys a resumed run may change (how long it
 * trains, its name and folders, threads, the device, and the dist and checkpoint sections):
 * checkpoints hold host copies, so a run may resume on another device. */
static char *comparable(const kl_config *cfg)
{
    kl_config c = *cfg;
    c.train.epochs = 1;
    c.train.threads = 0;
    c.train.device = KL_TRAIN_DEVICE_AUTO;
    c.train.device_share = false;
    c.train.cuda_graph = true; /* the same bits either way */
    c.name = NULL;
    c.runs_dir = NULL;
    c.path = NULL;
    c.dist = (kl_dist_section){0};
    c.checkpoint = (kl_checkpoint_section){0};
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    kl_config_print(&c, f);
    fclose(f);
    return text;
}

/* The sections around a line of printed YAML ("in optimizer: "): the keys of the lines above it
 * with less indentation, outermost first. */
static void section_of(const char *text, const char *line, char *out, size_t size)
{
    char keys[8][64];
    int n = 0, indent = (int)strspn(line, " ");
    for (const char *p = line; p > text && indent > 0 && n < 8;) {
        const char *start = p - 1; /* the previous line's newline */
        while (start > text && start[-1] != '\n')
            start--;
        int in = (int)strspn(start, " ");
        if (in < indent && start[in] != '-') {
            int k = (int)strcspn(start + in, ":\n");
            snprintf(keys[n++], sizeof keys[0], "%.*s", k, start + in);
            indent = in;
        }
        p = start;
    }
    size_t at = 0;
    out[0] = '\0';
    if (n > 0)
        at += (size_t)snprintf(out, size, "in ");
    for (int i = n - 1; i >= 0 && at < size; i--)
        at += (size_t)snprintf(out + at, size - at, "%s%s", keys[i], i ? "." : ": ");
}

/* The first line where the two configs differ, as "key: a" vs "key: b", for the message. */
static kl_status config_mismatch(const kl__train_state *r, const char *stored, kl_error *err)
{
    kl_error perr = {0};
    kl_config *old = kl_config_parse(r->opts->resume, stored, strlen(stored),
                                     r->opts->resume_changes, r->opts->nresume_changes, &perr);
    if (!old)
        return kl_error_set(err, KL_EFORMAT, "%s: its stored config does not parse: %s",
                            r->opts->resume, perr.msg);
    /* The stored total_steps is the one the run used; when that is the epochs' (the config
     * said 0) and this run says 0 too, both mean "from the epochs", which may change. */
    const kl_lr_schedule *ls = &old->schedule;
    if (r->cfg->schedule.total_steps == 0 &&
        (ls->kind == KL_LR_COSINE || ls->kind == KL_LR_ONECYCLE) &&
        ls->total_steps == r->steps_per_epoch * old->train.epochs)
        old->schedule.total_steps = 0;
    char *a = comparable(old), *b = comparable(r->cfg);
    kl_config_free(old);
    kl_status st = KL_OK;
    if (!a || !b) {
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    } else if (strcmp(a, b) != 0) {
        const char *p = a, *q = b;
        const char *line_a = a, *line_b = b;
        while (*p && *p == *q) {
            if (*p == '\n') {
                line_a = p + 1;
                line_b = q + 1;
            }
            p++;
            q++;
        }
        int la = (int)strcspn(line_a, "\n"), lb = (int)strcspn(line_b, "\n");
        char section[256];
        section_of(a, line_a, section, sizeof section);
        st = kl_error_set(
            err, KL_EINVAL,
            "%s was written with another config: %sit has '%.*s' where this run "
            "has '%.*s'. Resume with the config it was trained with (only train.epochs, "
            "train.threads, train.device, train.device_share, train.cuda_graph, name, dist and "
            "checkpoint "
            "may change), or start a new "
            "run from its weights with --resume-weights-only",
            r->opts->resume, section, la > 0 ? la : 1, la > 0 ? line_a : "?", lb > 0 ? lb : 1,
            lb > 0 ? line_b : "?");
    }
    free(a);
    free(b);
    return st;
}

/* Rank 0's part of a resume: everything read and checked into st and the model. */
static kl_status load_on_root(kl__train_state *r, kl_ckpt_state *st, kl_error *err)
{
    kl_ckpt *c = NULL;
    size_t state_size = kl_optim_state_size(kl_step_optim(r->train_step));
    kl_status s = kl_ckpt_open(r->opts->resume, false, &c, err);
    if (s == KL_OK && !r->opts->weights_only)
        s = config_mismatch(r, kl_ckpt_config_text(c), err);
    if (s == KL_OK)
        s = kl_ckpt_read_weights(c, r->m->g, err);
    if (s == KL_OK && !r->opts->weights_only) {
        s = kl_ckpt_read_state(c, r->m->g, st, err);
        if (s == KL_OK && st->optim_state_size != state_size)
            s = r->opts->nresume_changes > 0
                    ? kl_error_set(err, KL_EINVAL,
                                   "%s: the optimizer state holds %zu values, but the changed "
                                   "optimizer needs %zu: a change such as SGD's momentum to or "
                                   "from 0 cannot continue a checkpoint",
                                   r->opts->resume, st->optim_state_size, state_size)
                    : kl_error_set(err, KL_EFORMAT,
                                   "%s: the optimizer state holds %zu values, but this optimizer "
                                   "needs %zu: the file is damaged",
                                   r->opts->resume, st->optim_state_size, state_size);
        if (s == KL_OK && st->epoch > r->cfg->train.epochs)
            s = kl_error_set(err, KL_EINVAL,
                             "%s has already trained %d epochs, more than train.epochs %d: "
                             "raise train.epochs to train further",
                             r->opts->resume, st->epoch, r->cfg->train.epochs);
        if (s == KL_OK && st->step_in_epoch > r->steps_per_epoch)
            s = kl_error_set(err, KL_EFORMAT,
                             "%s stopped at batch %lld of an epoch that has only %lld: the data "
                             "changed since it was written",
                             r->opts->resume, (long long)st->step_in_epoch,
                             (long long)r->steps_per_epoch);
    }
    kl_ckpt_close(c);
    return s;
}

/* A broadcast from rank 0, nothing on one process. */
static kl_status bcast(kl__train_state *r, void *buf, size_t bytes, kl_error *err)
{
    return r->size > 1 ? kl_comm_bcast(r->comm, buf, bytes, 0, err) : KL_OK;
}

/* Broadcasts what rank 0 loaded and applies it; a failure on rank 0 travels first so that every
 * rank returns its message. */
static kl_status share(kl__train_state *r, kl_status s, kl_ckpt_state *st, kl_error *err)
{
    kl_graph *g = r->m->g;
    struct {
        int32_t status, epoch, best_epoch, bad_epochs, has_best;
        int64_t step, step_in_epoch, optim_steps;
        double sums[3], seconds, best_metric;
        char msg[KL_ERROR_MSG_MAX];
    } hdr = {.status = s};
    if (r->rank == 0) {
        if (s != KL_OK)
            snprintf(hdr.msg, sizeof hdr.msg, "%s", err->msg);
        hdr.epoch = st->epoch;
        hdr.best_epoch = st->best_epoch;
        hdr.bad_epochs = st->bad_epochs;
        hdr.has_best = st->best_params != NULL;
        hdr.step = st->step;
        hdr.step_in_epoch = st->step_in_epoch;
        hdr.optim_steps = st->optim_steps;
        memcpy(hdr.sums, st->epoch_sums, sizeof hdr.sums);
        hdr.seconds = st->epoch_seconds;
        hdr.best_metric = st->best_metric;
    }
    kl_status cs = bcast(r, &hdr, sizeof hdr, err);
    if (cs != KL_OK)
        return cs;
    if (hdr.status != KL_OK)
        return r->rank == 0 ? s : kl_error_set(err, (kl_status)hdr.status, "%s", hdr.msg);
    if ((cs = bcast(r, kl_graph_params(g), kl_graph_param_count(g) * sizeof(float), err)) !=
            KL_OK ||
        (cs = bcast(r, kl_graph_buffers(g), kl_graph_buffer_count(g) * sizeof(float), err)) !=
            KL_OK ||
        (cs = kl_graph_to_device(g, KL_GRAPH_PARAMS | KL_GRAPH_BUFFERS, err)) != KL_OK)
        return cs;
    if (r->opts->weights_only)
        return KL_OK;
    kl_optim *opt = kl_step_optim(r->train_step);
    float *state = kl_optim_state(opt);
    size_t n = kl_optim_state_size(opt);
    if (r->rank == 0 && n > 0)
        memcpy(state, st->optim_state, n * sizeof *state);
    if (n > 0 && (cs = bcast(r, state, n * sizeof *state, err)) != KL_OK)
        return cs;
    if ((cs = kl_step_state_to_device(r->train_step, err)) != KL_OK)
        return cs;
    if (hdr.has_best) {
        if (r->rank == 0) {
            memcpy(r->best_params, st->best_params, kl_graph_param_count(g) * sizeof(float));
            memcpy(r->best_buffers, st->best_buffers, kl_graph_buffer_count(g) * sizeof(float));
        }
        if ((cs = bcast(r, r->best_params, kl_graph_param_count(g) * sizeof(float), err)) !=
                KL_OK ||
            (cs = bcast(r, r->best_buffers, kl_graph_buffer_count(g) * sizeof(float), err)) !=
                KL_OK)
            return cs;
    }
    r->start_epoch = hdr.epoch;
    r->start_step = hdr.step_in_epoch;
    r->step = hdr.step;
    kl_optim_set_steps(opt, hdr.optim_steps);
    r->best_metric = hdr.best_metric;
    r->best_epoch = hdr.best_epoch;
    r->bad_epochs = hdr.bad_epochs;
    r->epoch_seconds = hdr.seconds;
    /* The epoch's sums so far are the whole job's: rank 0 carries them, the others start from
     * zero, and the epoch's all-reduce adds them up as if nothing had happened. */
    for (int i = 0; i < 3; i++)
        r->sums[i] = r->rank == 0 ? hdr.sums[i] : 0;
    return KL_OK;
}

static kl_status take_history(kl__train_state *r, const kl_ckpt_state *st, kl_error *err)
{
    const kl_ckpt_table *h = &st->history;
    for (int i = 0; i < h->nrows; i++) {
        const double *row = h->data + (size_t)i * (size_t)h->ncols;
        kl_epoch_metrics m = {.epoch = (int)row[0],
                              .step = (int64_t)row[1],
                              .train_loss = row[2],
                              .train_accuracy = row[3],
                              .val_loss = row[4],
                              .val_accuracy = row[5],
                              .val_mae = row[6],
                              .lr = row[7],
                              .seconds = row[8],
                              .samples_per_s = row[9]};
        /* best.h5's value so far, from the epochs the history holds: with early stopping the
         * checkpoint's own state carries it instead. */
        if (r->opts->best_metric)
            kl__train_is_best(r, &m, false);
        kl_status s = kl__train_history_add(r, &m, err);
        if (s != KL_OK)
            return s;
    }
    return KL_OK;
}

kl_status kl__train_resume(kl__train_state *r, kl_error *err)
{
    kl_ckpt_state st = {0};
    kl_status s = KL_OK;
    if (r->rank == 0)
        s = load_on_root(r, &st, err);
    kl__train_phase(r, "checkpoint broadcast", -1);
    s = share(r, s, &st, err);
    kl__train_phase(r, NULL, -1);
    if (s == KL_OK && r->rank == 0 && !r->opts->weights_only)
        s = take_history(r, &st, err);
    kl_ckpt_state_free(&st);
    return s;
}
