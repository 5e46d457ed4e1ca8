/* Training output: the progress bar (terminal only, redrawn at most ten times a second), epoch
 * lines, JSON lines, and the run directory (config.yaml, metrics.csv, log.txt), which the
 * reporter can lock (kiln.lock) for as long as it writes there. The trainer calls these through
 * kl_train_hooks and never prints itself. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiln/clock.h"
#include "kiln/lock.h"
#include "kiln/report.h"
#include "runtime/file.h"

struct kl_reporter {
    kl_report_options o;
    int64_t batch; /* samples per step, for the progress bar's rate */
    bool bar;      /* drawing a progress bar */
    bool bar_shown;
    double last_draw;
    char *dir;
    kl_lock *lock; /* held on dir: one writer per run folder */
    FILE *csv, *log;
};

static kl_status make_run_dir(kl_reporter *r, const kl_config *cfg, kl_error *err)
{
    char stamp[32];
    const char *runs = cfg->runs_dir && *cfg->runs_dir ? cfg->runs_dir : "runs";
    const char *name = cfg->name && *cfg->name ? cfg->name : NULL;
    if (!name) {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        name = stamp;
    }
    if (strchr(name, '/'))
        return kl_error_set(err, KL_EINVAL, "name '%s': a run name cannot contain '/'", name);
    size_t len = strlen(runs) + strlen(name) + 16;
    if (!(r->dir = malloc(len)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    if (kl__mkdirs(runs) != 0)
        return kl_error_set(err, KL_EIO, "cannot create the runs folder '%s': %s", runs,
                            strerror(errno));
    for (int k = 1; k < 1000; k++) {
        if (k == 1)
            snprintf(r->dir, len, "%s/%s", runs, name);
        else
            snprintf(r->dir, len, "%s/%s-%d", runs, name, k);
        if (mkdir(r->dir, 0755) == 0)
            return KL_OK;
        if (errno != EEXIST)
            break;
    }
    return kl_error_set(err, KL_EIO, "cannot create a run folder in '%s': %s", runs,
                        strerror(errno));
}

/* An existing run folder (a resumed run), or that folder created. */
static kl_status use_run_dir(kl_reporter *r, const char *dir, kl_error *err)
{
    if (!(r->dir = strdup(dir)))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    return kl__mkdirs(dir) == 0 ? KL_OK
                                : kl_error_set(err, KL_EIO, "cannot create the run folder '%s': %s",
                                               dir, strerror(errno));
}

static FILE *open_in(kl_reporter *r, const char *file, const char *mode, kl_error *err)
{
    size_t len = strlen(r->dir) + strlen(file) + 2;
    char *path = malloc(len);
    if (!path) {
        kl_error_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(path, len, "%s/%s", r->dir, file);
    FILE *f = fopen(path, mode);
    if (!f)
        kl_error_set(err, KL_EIO, "cannot write '%s': %s", path, strerror(errno));
    free(path);
    return f;
}

kl_reporter *kl_reporter_new(const kl_config *cfg, const kl_report_options *o, kl_error *err)
{
    kl_reporter *r = calloc(1, sizeof *r);
    if (!r) {
        kl_error_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    r->o = *o;
    r->batch = cfg->train.batch_size;
    if (!r->o.out)
        r->o.out = stdout;
    if (!r->o.err)
        r->o.err = stderr;
    int tty = o->tty >= 0 ? o->tty : isatty(fileno(r->o.err));
    r->bar = tty && !o->quiet && !o->json;
    if (!o->no_dir) {
        FILE *conf = NULL;
        const char *mode = o->dir ? "a" : "w";
        /* Locked before anything in it is written: a second kiln on the same run (two
         * --auto-resume starts) is refused instead of interleaving metrics.csv. */
        if ((o->dir ? use_run_dir(r, o->dir, err) : make_run_dir(r, cfg, err)) != KL_OK ||
            (o->lock && kl_dir_lock(r->dir, "run", &r->lock, err) != KL_OK) ||
            !(conf = open_in(r, "config.yaml", "w", err)) ||
            !(r->csv = open_in(r, "metrics.csv", mode, err)) ||
            !(r->log = open_in(r, "log.txt", mode, err))) {
            if (conf)
                fclose(conf);
            kl_reporter_free(r);
            return NULL;
        }
        kl_config_print(cfg, conf);
        fclose(conf);
        if (ftell(r->csv) == 0) /* a new file, not a resumed run's */
            fprintf(r->csv, "epoch,step,train_loss,train_accuracy,val_loss,val_accuracy,val_mae,"
                            "lr,samples_per_s,seconds\n");
    }
    return r;
}

void kl_reporter_free(kl_reporter *r)
{
    if (!r)
        return;
    if (r->csv)
        fclose(r->csv);
    if (r->log)
        fclose(r->log);
    kl_dir_unlock(r->lock);
    free(r->dir);
    free(r);
}

const char *kl_reporter_dir(const kl_reporter *r)
{
    return r->dir;
}

static void rate(double v, char *buf, size_t n)
{
    if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

static void on_step(void *ctx, int epoch, int64_t step, int64_t steps, double loss, double elapsed)
{
    kl_reporter *r = ctx;
    double t = kl_now();
    if (!r->bar || (step < steps && t - r->last_draw < 0.1))
        return;
    r->last_draw = t;
    enum { WIDTH = 24 };
    int fill = (int)(WIDTH * step / steps);
    char bar[WIDTH + 1], sps[32], ls[32] = "-";
    for (int i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    double per_step = elapsed / (double)step;
    rate((double)(step * r->batch) / (elapsed > 0 ? elapsed : 1e-9), sps, sizeof sps);
    if (!isnan(loss)) /* NaN: not read yet (a GPU run reads its loss every few steps) */
        snprintf(ls, sizeof ls, "%.4f", loss);
    fprintf(r->o.err, "\r\033[Kepoch %d [%s] %lld/%lld  loss %s  %s samples/s  ETA %.0fs", epoch,
            bar, (long long)step, (long long)steps, ls, sps, per_step * (double)(steps - step));
    fflush(r->o.err);
    r->bar_shown = true;
}

static void json_num(FILE *f, const char *key, double v, bool comma)
{
    if (isnan(v) || isinf(v))
        fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
    else
        fprintf(f, "\"%s\": %.9g%s", key, v, comma ? ", " : "");
}

static void csv_num(FILE *f, double v, const char *sep)
{
    if (isnan(v))
        fprintf(f, "%s", sep);
    else
        fprintf(f, "%.9g%s", v, sep);
}

/* The human line of an epoch, as printed and as logged. */
static void epoch_line(const kl_epoch_metrics *m, char *buf, size_t n)
{
    char sps[32];
    int k = snprintf(buf, n, "epoch %3d/%d  train loss %.4f", m->epoch, m->epochs, m->train_loss);
    if (!isnan(m->train_accuracy))
        k += snprintf(buf + k, n - (size_t)k, " acc %.2f%%", 100 * m->train_accuracy);
    if (!isnan(m->val_loss))
        k += snprintf(buf + k, n - (size_t)k, "  val loss %.4f", m->val_loss);
    if (!isnan(m->val_accuracy))
        k += snprintf(buf + k, n - (size_t)k, " acc %.2f%%", 100 * m->val_accuracy);
    if (!isnan(m->val_mae))
        k += snprintf(buf + k, n - (size_t)k, " mae %.4f", m->val_mae);
    rate(m->samples_per_s, sps, sizeof sps);
    snprintf(buf + k, n - (size_t)k, "  lr %.3g  %s samples/s  %.1fs%s", m->lr, sps, m->seconds,
             m->best ? "  *" : "");
}

static bool on_epoch(void *ctx, const kl_epoch_metrics *m)
{
    kl_reporter *r = ctx;
    char line[512];
    epoch_line(m, line, sizeof line);
    if (r->bar_shown) {
        fprintf(r->o.err, "\r\033[K");
        fflush(r->o.err);
        r->bar_shown = false;
    }
    if (r->o.json) {
        FILE *f = r->o.out;
        fprintf(f, "{\"epoch\": %d, \"step\": %lld, ", m->epoch, (long long)m->step);
        json_num(f, "train_loss", m->train_loss, true);
        json_num(f, "train_accuracy", m->train_accuracy, true);
        json_num(f, "val_loss", m->val_loss, true);
        json_num(f, "val_accuracy", m->val_accuracy, true);
        json_num(f, "val_mae", m->val_mae, true);
        json_num(f, "lr", m->lr, true);
        json_num(f, "samples_per_s", m->samples_per_s, true);
        json_num(f, "comm_wait_s", m->comm_wait_s, true);
        json_num(f, "seconds", m->seconds, false);
        fprintf(f, "}\n");
        fflush(f);
    } else if (!r->o.quiet) {
        fprintf(r->o.out, "%s\n", line);
        fflush(r->o.out);
    }
    if (r->csv) {
        fprintf(r->csv, "%d,%lld,", m->epoch, (long long)m->step);
        csv_num(r->csv, m->train_loss, ",");
        csv_num(r->csv, m->train_accuracy, ",");
        csv_num(r->csv, m->val_loss, ",");
        csv_num(r->csv, m->val_accuracy, ",");
        csv_num(r->csv, m->val_mae, ",");
        csv_num(r->csv, m->lr, ",");
        csv_num(r->csv, m->samples_per_s, ",");
        csv_num(r->csv, m->seconds, "\n");
        fflush(r->csv);
        fprintf(r->log, "%s\n", line);
        fflush(r->log);
    }
    return true;
}

static void on_done(void *ctx, const kl_train_result *res)
{
    kl_reporter *r = ctx;
    char line[512];
    int k = snprintf(line, sizeof line, "done: %d epoch%s in %.1fs", res->epochs_run,
                     res->epochs_run == 1 ? "" : "s", res->seconds);
    if (res->early_stopped)
        k += snprintf(line + k, sizeof line - (size_t)k, " (early stop, best epoch %d)",
                      res->best_epoch);
    if (!isnan(res->test_loss))
        k += snprintf(line + k, sizeof line - (size_t)k, "  test loss %.4f", res->test_loss);
    if (!isnan(res->test_accuracy))
        k += snprintf(line + k, sizeof line - (size_t)k, " acc %.2f%%", 100 * res->test_accuracy);
    if (!isnan(res->test_mae))
        snprintf(line + k, sizeof line - (size_t)k, " mae %.4f", res->test_mae);
    if (r->o.json) {
        FILE *f = r->o.out;
        fprintf(f, "{\"done\": true, \"epochs\": %d, \"best_epoch\": %d, \"early_stopped\": %s, ",
                res->epochs_run, res->best_epoch, res->early_stopped ? "true" : "false");
        json_num(f, "test_loss", res->test_loss, true);
        json_num(f, "test_accuracy", res->test_accuracy, true);
        json_num(f, "test_mae", res->test_mae, true);
        json_num(f, "seconds", res->seconds, false);
        fprintf(f, "%s}\n", "");
        fflush(f);
    } else {
        fprintf(r->o.out, "%s\n", line);
        fflush(r->o.out);
    }
    if (r->log) {
        fprintf(r->log, "%s\n", line);
        fflush(r->log);
    }
}

kl_train_hooks kl_reporter_hooks(kl_reporter *r)
{
    return (kl_train_hooks){.ctx = r, .on_step = on_step, .on_epoch = on_epoch, .on_done = on_done};
}
