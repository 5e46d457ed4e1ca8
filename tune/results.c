/* What a sweep leaves behind when it ends (tune/coord.c calls kl__tune_write_outputs):
 * results.csv (one row per trial), best.yaml (a config `kiln train` runs as is) and best.json
 * (the best trial, its metric, its checkpoint). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/ckpt.h"
#include "runtime/csv.h"
#include "tune/pbt_impl.h"
#include "tune/tune_impl.h"

/* The value a trial was given for key (the text after "key="), or "". */
static const char *value_of(const kl__trial *t, const char *key)
{
    size_t n = strlen(key);
    for (int i = 0; t->ov && i < t->nov; i++)
        if (!strncmp(t->ov[i], key, n) && t->ov[i][n] == '=')
            return t->ov[i] + n + 1;
    return "";
}

static kl_status write_results(kl__tuner *tu, kl_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/results.csv", tu->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return kl_error_set(err, KL_EIO, "cannot write %s", path);
    fprintf(f, "trial,state,rung,t,%s_last,%s_best,failures", tu->sw->metric, tu->sw->metric);
    for (int p = 0; p < tu->sw->nparams; p++) {
        fputc(',', f);
        kl__csv_put_field(f, "", tu->sw->params[p].path);
    }
    fputc('\n', f);
    for (int64_t i = 0; i < tu->ntrials; i++) {
        kl_trial_state st = kl_sched_state(tu->sched, i);
        if (st == KL_TRIAL_PENDING)
            continue;
        kl__tune_overrides(tu, i, err);
        const kl__trial *t = &tu->trials[i];
        double last = kl_sched_last(tu->sched, i), best = kl_sched_best(tu->sched, i);
        fprintf(f, "%lld,%s,%d,%d,", (long long)i,
                t->diverged             ? "diverged"
                : st == KL_TRIAL_FAILED ? "errored"
                                        : kl_trial_state_name(st),
                kl_sched_rung(tu->sched, i), kl_sched_last_t(tu->sched, i));
        if (!isnan(last))
            fprintf(f, "%.9g", last);
        fputc(',', f);
        if (!isnan(best))
            fprintf(f, "%.9g", best);
        fprintf(f, ",%d", t->failures);
        for (int p = 0; p < tu->sw->nparams; p++) {
            fputc(',', f);
            kl__csv_put_field(f, "", value_of(t, tu->sw->params[p].path));
        }
        fputc('\n', f);
    }
    return fclose(f) == 0 ? KL_OK : kl_error_set(err, KL_EIO, "cannot write %s", path);
}

/* The model of the epoch whose value best.json gives: the trial's checkpoints/best.h5 (a sweep
 * begun by an older kiln has none; then its latest checkpoint). malloc'd, NULL: none. */
static char *best_checkpoint(const kl__tuner *tu, int64_t trial)
{
    char dir[4096], path[4200];
    kl__tune_trial_dir(tu, trial, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/checkpoints/best.h5", dir);
    if (access(path, R_OK) == 0)
        return strdup(path);
    snprintf(path, sizeof path, "%s/checkpoints", dir);
    kl_error none = {0};
    return kl_ckpt_find_latest(path, &none);
}

/* PBT: the best trial's hyperparameters by epoch, from the journal (kl__pbt_schedule). */
static kl_status pbt_schedule(kl__tuner *tu, int64_t best, json_t **out, kl_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/journal.jsonl", tu->dir);
    json_t *events = kl_journal_read(path, err);
    if (!events)
        return err->status;
    *out = kl__pbt_schedule(events, best);
    json_decref(events);
    return *out ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
}

/* One segment's mutated values as options: "--set k=v" or "--change k=v" each. */
static void print_values(FILE *f, const kl__tuner *tu, json_t *ov, const char *opt)
{
    for (int k = 0; k < tu->sw->nmutations; k++) {
        const char *key = tu->sw->mutations[k].path;
        const char *v = json_string_value(json_object_get(ov, key));
        if (v)
            fprintf(f, " %s%s%s=%s", opt, *opt ? " " : "", key, v);
    }
}

/* best.yaml's PBT lines: the schedule the best trial's weights were trained with (the config
 * below holds its last values), and the kiln train commands that replay it. */
static void print_schedule(FILE *f, const kl__tuner *tu, json_t *schedule, const char *path)
{
    size_t i;
    json_t *seg;
    fprintf(f, "# PBT: its weights were trained with these values by epoch (its lineage):\n");
    json_array_foreach(schedule, i, seg)
    {
        fprintf(f, "#   epochs %lld-%lld (trial %lld):",
                (long long)json_integer_value(json_object_get(seg, "from_t")) + 1,
                (long long)json_integer_value(json_object_get(seg, "to_t")),
                (long long)json_integer_value(json_object_get(seg, "trial")));
        print_values(f, tu, json_object_get(seg, "overrides"), "");
        fputc('\n', f);
    }
    fprintf(f, "# Replay the schedule (docs/tune.md, \"Replaying a PBT schedule\"):\n");
    json_array_foreach(schedule, i, seg)
    {
        fprintf(f, "#   kiln train %s --name pbt-replay%s --set train.epochs=%lld", path,
                i ? " --resume" : "", (long long)json_integer_value(json_object_get(seg, "to_t")));
        print_values(f, tu, json_object_get(seg, "overrides"), i ? "--change" : "--set");
        fputc('\n', f);
    }
}

static kl_status write_best(kl__tuner *tu, int64_t best, kl_error *err)
{
    char path[4200];
    const kl__trial *t = &tu->trials[best];
    char epochs[64];
    snprintf(epochs, sizeof epochs, "train.epochs=%d", tu->sw->sched.max_t);
    const char *extra[] = {epochs};
    kl_config *cfg = kl_sweep_config(tu->sw, t->ov, t->nov, extra, 1, err);
    if (!cfg)
        return err->status;
    snprintf(path, sizeof path, "%s/best.yaml", tu->dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        kl_config_free(cfg);
        return kl_error_set(err, KL_EIO, "cannot write %s", path);
    }
    char *ckpt = best_checkpoint(tu, best);
    json_t *schedule = NULL;
    kl_status st =
        tu->sw->sched.kind == KL_SCHED_PBT ? pbt_schedule(tu, best, &schedule, err) : KL_OK;
    if (st != KL_OK) {
        fclose(f);
        free(ckpt);
        kl_config_free(cfg);
        return st;
    }
    fprintf(f,
            "# The best trial of sweep %s: trial %lld, %s %.6g at its best epoch.\n"
            "# That epoch's model: %s\n# Train it again: kiln train %s\n",
            tu->sw->path, (long long)best, tu->sw->metric, kl_sched_best(tu->sched, best),
            ckpt ? ckpt : "(none)", path);
    if (schedule)
        print_schedule(f, tu, schedule, path);
    kl_config_print(cfg, f);
    fclose(f);
    kl_config_free(cfg);
    json_t *j = json_pack("{s:I, s:s, s:f, s:f, s:i, s:s?, s:s, s:o}", "trial", (json_int_t)best,
                          "metric", tu->sw->metric, "value", kl_sched_best(tu->sched, best), "last",
                          kl_sched_last(tu->sched, best), "t", kl_sched_last_t(tu->sched, best),
                          "checkpoint", ckpt, "config", path, "overrides", json_object());
    for (int i = 0; j && i < t->nov; i++) {
        const char *eq = strchr(t->ov[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - t->ov[i]) : 0, t->ov[i]);
        json_object_set_new(json_object_get(j, "overrides"), key, json_string(eq ? eq + 1 : ""));
    }
    if (j && schedule)
        json_object_set_new(j, "schedule", schedule);
    else
        json_decref(schedule);
    snprintf(path, sizeof path, "%s/best.json", tu->dir);
    int rc = j ? json_dump_file(j, path, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : -1;
    json_decref(j);
    if (rc == 0)
        kl__tune_line(tu,
                      "best: trial %lld, %s %.4f, its best epoch's model %s; train it again: "
                      "kiln train %s/best.yaml",
                      (long long)best, tu->sw->metric, kl_sched_best(tu->sched, best),
                      ckpt ? ckpt : "(none)", tu->dir);
    free(ckpt);
    return rc == 0 ? KL_OK : kl_error_set(err, KL_EIO, "cannot write %s", path);
}

kl_status kl__tune_check_failed(const kl__tuner *tu, kl_error *err)
{
    int64_t created = kl_sched_created(tu->sched), first = -1, same = 0;
    if (created == 0 || kl_sched_best_trial(tu->sched) >= 0)
        return KL_OK;
    for (int64_t i = 0; i < created; i++) {
        const char *e = tu->trials[i].error;
        if (!e)
            continue;
        if (first < 0)
            first = i;
        same += !strcmp(e, tu->trials[first].error);
    }
    if (first < 0)
        return kl_error_set(err, KL_EINVAL,
                            "none of the %lld trials that ran reported a finite %s: nothing to "
                            "rank (val_* metrics need validation data)",
                            (long long)created, tu->sw->metric);
    return kl_error_set(err, KL_EINVAL,
                        "every one of the %lld trials failed, so there is no best trial; %lld of "
                        "them with the error of the first, trial %lld: %s",
                        (long long)created, (long long)same, (long long)first,
                        tu->trials[first].error);
}

kl_status kl__tune_write_outputs(kl__tuner *tu, kl_error *err)
{
    kl_status st = write_results(tu, err);
    int64_t best = kl_sched_best_trial(tu->sched);
    if (st == KL_OK && best >= 0)
        st = write_best(tu, best, err);
    return st;
}
