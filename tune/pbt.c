/* kiln tune's population-based training beyond the scheduler: the hyperparameters an exploiting
 * trial continues with (explore, Ray Tune's rules) and the copy of its donor's checkpoint into
 * its own folder (exploit). The scheduler (tune/sched_pbt.c) decides who exploits whom when it
 * hands out a job; tune/coord.c calls kl__pbt_exploit then, and kl__pbt_replay for a journalled
 * one on --resume. The rules are in tune/README.md, "PBT". */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/ckpt.h"
#include "tune/pbt_impl.h"
#include "tune/sweep_impl.h"
#include "tune/tune_impl.h"

/* A list's index of text (equal as text, or as numbers when both read as one), -1: absent. */
static int list_index(const kl_sweep_param *m, const char *text)
{
    char *end;
    double x = strtod(text, &end);
    bool num = end != text && !*end;
    for (int i = 0; i < m->nvalues; i++) {
        if (!strcmp(m->values[i], text))
            return i;
        double y = strtod(m->values[i], &end);
        if (num && end != m->values[i] && !*end && x == y)
            return i;
    }
    return -1;
}

kl_status kl__pbt_explore_one(const kl_sweep_param *m, double resample, const char *cur,
                              const double u[2], char *out, size_t cap, kl_error *err)
{
    if (m->dist == KL_DIST_GRID) { /* a list: resample, or step to a neighbour */
        int i = list_index(m, cur);
        if (u[0] < resample || i < 0) {
            int k = (int)(u[1] * m->nvalues);
            i = k < m->nvalues ? k : m->nvalues - 1;
        } else {
            i = u[1] > 0.5 ? (i > 0 ? i - 1 : 0) : (i + 1 < m->nvalues ? i + 1 : i);
        }
        snprintf(out, cap, "%s", m->values[i]);
        return KL_OK;
    }
    if (u[0] < resample) { /* drawn afresh from the distribution */
        if (m->dist == KL_DIST_VALUES)
            snprintf(out, cap, "%s", m->values[kl__sweep_draw_index(m, u[1])]);
        else
            kl__sweep_format(m, kl__sweep_draw_range(m, u[1]), out, cap);
        return KL_OK;
    }
    char *end;
    double x = strtod(cur, &end);
    if (end == cur || *end || !isfinite(x))
        return kl_error_set(err, KL_EINVAL,
                            "pbt: %s is '%s', which is no number to perturb by 0.8 or 1.2: give "
                            "its mutation as a list",
                            m->path, cur);
    x *= u[1] > 0.5 ? 1.2 : 0.8;
    if (m->dist == KL_DIST_INT_UNIFORM)
        x = trunc(x);
    if (m->dist == KL_DIST_Q_UNIFORM)
        x = round(x / m->q) * m->q;
    if (m->dist != KL_DIST_VALUES) /* a range's values stay in it */
        x = x < m->min ? m->min : x > m->max ? m->max : x;
    kl__sweep_format(m, x, out, cap);
    return KL_OK;
}

kl_status kl__pbt_explore(const kl_sweep *sw, char *const *ov, int nov, int64_t trial, int t,
                          char ***out, kl_error *err)
{
    char **o = calloc((size_t)(nov > 0 ? nov : 1), sizeof *o);
    if (!o)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    kl_status st = KL_OK;
    for (int i = 0; st == KL_OK && i < nov; i++)
        if (!(o[i] = strdup(ov[i])))
            st = kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int k = 0; st == KL_OK && k < sw->nmutations; k++) {
        const kl_sweep_param *m = &sw->mutations[k];
        size_t len = strlen(m->path);
        int i = 0;
        while (i < nov && !(strncmp(o[i], m->path, len) == 0 && o[i][len] == '='))
            i++;
        if (i == nov) {
            st = kl_error_set(err, KL_EINTERNAL, "pbt: trial %lld has no value of %s",
                              (long long)trial, m->path);
            break;
        }
        double u[2] = {kl__pbt_unit(sw->sched.seed, trial, t, 1 + 2 * k),
                       kl__pbt_unit(sw->sched.seed, trial, t, 2 + 2 * k)};
        char value[256];
        st = kl__pbt_explore_one(m, sw->sched.resample_probability, o[i] + len + 1, u, value,
                                 sizeof value, err);
        char *text = st == KL_OK ? kl__sweep_override(m, value) : NULL;
        if (st == KL_OK && !text)
            st = kl_error_set(err, KL_ENOMEM, "out of memory");
        if (text) {
            free(o[i]);
            o[i] = text;
        }
    }
    if (st != KL_OK) {
        kl_sweep_overrides_free(o, nov);
        return st;
    }
    *out = o;
    return KL_OK;
}

/* src to dst through a temporary file beside dst, synced, then renamed: a reader of dst sees
 * the old file or the whole new one. */
static kl_status copy_file(const char *src, const char *dst, kl_error *err)
{
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.pbt-tmp", dst);
    int in = open(src, O_RDONLY), out = -1;
    kl_status st = KL_OK;
    if (in < 0)
        return kl_error_set(err, KL_EIO, "pbt: cannot read %s: %s", src, strerror(errno));
    if ((out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644)) < 0)
        st = kl_error_set(err, KL_EIO, "pbt: cannot write %s: %s", tmp, strerror(errno));
    char buf[1 << 16];
    for (ssize_t n; st == KL_OK && (n = read(in, buf, sizeof buf)) != 0;) {
        if (n < 0 || write(out, buf, (size_t)n) != n)
            st = kl_error_set(err, KL_EIO, "pbt: copying %s to %s: %s", src, tmp, strerror(errno));
    }
    if (st == KL_OK && fsync(out) != 0)
        st = kl_error_set(err, KL_EIO, "pbt: cannot sync %s: %s", tmp, strerror(errno));
    close(in);
    if (out >= 0 && close(out) != 0 && st == KL_OK)
        st = kl_error_set(err, KL_EIO, "pbt: cannot write %s: %s", tmp, strerror(errno));
    if (st == KL_OK && rename(tmp, dst) != 0)
        st = kl_error_set(err, KL_EIO, "pbt: cannot rename %s: %s", tmp, strerror(errno));
    if (st != KL_OK)
        unlink(tmp);
    return st;
}

/* The trial's own checkpoints to resume from (step-*.h5, final.h5) other than keep. */
static void remove_steps(const char *dir, const char *keep)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        bool step = !strncmp(e->d_name, "step-", 5) && l >= 4 && !strcmp(e->d_name + l - 3, ".h5");
        if ((!step && strcmp(e->d_name, "final.h5")) || !strcmp(e->d_name, keep))
            continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

kl_status kl__pbt_copy_checkpoint(const char *from, const char *to, kl_error *err)
{
    char *latest = kl_ckpt_find_latest(from, err);
    if (!latest)
        return err->status;
    const char *name = strrchr(latest, '/') ? strrchr(latest, '/') + 1 : latest;
    char dst[4400], best[4400], dbest[4400];
    mkdir(to, 0755);
    snprintf(dst, sizeof dst, "%s/%s", to, name);
    kl_status st = copy_file(latest, dst, err);
    /* best.h5 goes with it: the best epoch of the lineage the trial continues. */
    snprintf(best, sizeof best, "%s/best.h5", from);
    snprintf(dbest, sizeof dbest, "%s/best.h5", to);
    if (st == KL_OK && access(best, F_OK) == 0)
        st = copy_file(best, dbest, err);
    else if (st == KL_OK)
        unlink(dbest);
    if (st == KL_OK)
        remove_steps(to, name);
    free(latest);
    return st;
}

/* The donor's values, explored, as the trial's own from now on; on replay (ev) they must be the
 * ones the journal recorded. */
static kl_status take_values(kl__tuner *tu, int64_t trial, int64_t donor, int from_t, json_t *ev,
                             size_t eventno, kl_error *err)
{
    kl_status st = kl__tune_overrides(tu, donor, err);
    if (st != KL_OK)
        return st;
    kl__trial *t = &tu->trials[trial];
    const kl__trial *d = &tu->trials[donor];
    char **ov = NULL;
    /* The draws are keyed by the epochs the trial was checked at, which grow from one check of
     * it to the next (its donor is never behind it), and which a resumed sweep replays. */
    if ((st = kl__pbt_explore(tu->sw, d->ov, d->nov, trial, from_t, &ov, err)) != KL_OK)
        return st;
    json_t *was = json_object_get(ev, "overrides");
    for (int i = 0; ev && st == KL_OK && i < d->nov; i++) {
        const char *eq = strchr(ov[i], '=');
        char key[256];
        snprintf(key, sizeof key, "%.*s", eq ? (int)(eq - ov[i]) : 0, ov[i]);
        const char *j = json_string_value(json_object_get(was, key));
        if (!eq || !j || strcmp(j, eq + 1) != 0)
            st = kl_error_set(err, KL_EFORMAT,
                              "%s/journal.jsonl: event %zu: trial %lld exploited trial %lld with "
                              "%s=%s, but pbt explores %s on replay: the sweep file or kiln's "
                              "pbt changed since the sweep began",
                              tu->dir, eventno, (long long)trial, (long long)donor, key,
                              j ? j : "(none)", ov[i]);
    }
    if (st != KL_OK) {
        kl_sweep_overrides_free(ov, d->nov);
        return st;
    }
    kl_sweep_overrides_free(t->ov, t->nov);
    t->ov = ov;
    t->nov = d->nov;
    t->last_t = kl_sched_last_t(tu->sched, trial);
    return KL_OK;
}

kl_status kl__tune_pbt_exploit(kl__tuner *tu, int64_t trial, int64_t donor, int from_t,
                               kl_error *err)
{
    char from[4200], to[4200];
    kl__tune_trial_dir(tu, donor, from, sizeof from);
    kl__tune_trial_dir(tu, trial, to, sizeof to);
    strcat(from, "/checkpoints");
    strcat(to, "/checkpoints");
    kl_status st = kl__pbt_copy_checkpoint(from, to, err);
    if (st == KL_OK)
        st = take_values(tu, trial, donor, from_t, NULL, 0, err);
    if (st == KL_OK)
        kl__tune_line(tu, "trial %lld exploits trial %lld at t=%d", (long long)trial,
                      (long long)donor, kl_sched_last_t(tu->sched, trial));
    return st;
}

kl_status kl__tune_pbt_replay(kl__tuner *tu, int64_t trial, json_t *ev, size_t eventno,
                              kl_error *err)
{
    int64_t donor = kl_sched_donor(tu->sched, trial);
    json_t *j = json_object_get(ev, "donor");
    int64_t was = json_is_integer(j) ? json_integer_value(j) : -1;
    if (was != donor)
        return kl_error_set(err, KL_EFORMAT,
                            "%s/journal.jsonl: event %zu started trial %lld exploiting trial "
                            "%lld (-1: none), but the scheduler replays %lld there: the sweep "
                            "file or kiln's pbt changed since the sweep began",
                            tu->dir, eventno, (long long)trial, (long long)was, (long long)donor);
    int from_t = tu->trials[trial].last_t;
    return donor >= 0 ? take_values(tu, trial, donor, from_t, ev, eventno, err) : KL_OK;
}

kl_status kl__tune_pbt_behind(kl__tuner *tu, int64_t trial, bool *behind, kl_error *err)
{
    char dir[4200];
    kl__tune_trial_dir(tu, trial, dir, sizeof dir);
    strcat(dir, "/checkpoints");
    kl_error none = {0};
    char *latest = kl_ckpt_find_latest(dir, &none);
    int64_t epoch = 0;
    kl_ckpt *c = NULL;
    kl_status st = latest ? kl_ckpt_open(latest, false, &c, err) : KL_OK;
    if (st == KL_OK && c)
        st = kl_ckpt_read_epoch(c, &epoch, err);
    kl_ckpt_close(c);
    free(latest);
    *behind = epoch < kl_sched_last_t(tu->sched, trial);
    return st;
}

kl_status kl__tune_pbt_catch_up(kl__tuner *tu, kl_job *job, int64_t *lease, kl_error *err)
{
    int64_t x = tu->catchup[tu->catchup_next++];
    kl_status st = kl__tune_overrides(tu, x, err);
    if (st != KL_OK)
        return st;
    *lease = tu->trials[x].lease = ++tu->leases;
    *job = (kl_job){
        .kind = KL_JOB_PROMOTE, .trial = x, .rung = 0, .until_t = kl_sched_last_t(tu->sched, x)};
    kl__tune_line(tu, "trial %lld: catching up to its pause at t=%d", (long long)x, job->until_t);
    json_t *ev = json_pack("{s:s, s:I, s:i, s:I}", "event", "catch_up", "trial", (json_int_t)x,
                           "until_t", job->until_t, "lease", (json_int_t)*lease);
    return ev ? kl_journal_append(tu->journal, ev, err)
              : kl_error_set(err, KL_ENOMEM, "out of memory");
}

/* The segments of trial's lineage at this point of the journal. */
static json_t *lineage(json_t *by, int64_t trial)
{
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)trial);
    return json_object_get(by, key);
}

static void segment(json_t *list, int from_t, int64_t trial, json_t *ov)
{
    json_array_append_new(list, json_pack("{s:i, s:i, s:I, s:O}", "from_t", from_t, "to_t", from_t,
                                          "trial", (json_int_t)trial, "overrides", ov));
}

json_t *kl__pbt_schedule(json_t *events, int64_t trial)
{
    json_t *by = json_object(), *ev;
    size_t i;
    char key[32];
    json_array_foreach(events, i, ev)
    {
        const char *kind = json_string_value(json_object_get(ev, "event"));
        json_int_t tr = json_integer_value(json_object_get(ev, "trial"));
        json_t *ov = json_object_get(ev, "overrides"), *donor = json_object_get(ev, "donor");
        snprintf(key, sizeof key, "%lld", (long long)tr);
        if (kind && !strcmp(kind, "started") && json_is_object(ov)) {
            json_t *list = json_array();
            int at = (int)json_integer_value(json_object_get(ev, "donor_t"));
            json_t *from = json_is_integer(donor) ? lineage(by, json_integer_value(donor)) : NULL;
            size_t k;
            json_t *seg;
            json_array_foreach(from, k, seg) /* the donor's lineage up to the copy */
                if (json_integer_value(json_object_get(seg, "from_t")) < at)
                    json_array_append(list, seg);
            segment(list, from ? at : 0, tr, ov);
            json_object_set_new(by, key, list);
        } else if (kind && !strcmp(kind, "result")) {
            json_t *list = json_object_get(by, key);
            json_t *last = json_array_get(list, json_array_size(list) - 1);
            json_int_t t = json_integer_value(json_object_get(ev, "t"));
            if (last && t > json_integer_value(json_object_get(last, "to_t")))
                json_object_set_new(last, "to_t", json_integer(t));
        }
    }
    /* Copied segments are shared with the donor's list: each ends where the next begins. */
    json_t *list = json_deep_copy(lineage(by, trial));
    json_decref(by);
    for (size_t k = 0; k + 1 < json_array_size(list); k++)
        json_object_set(json_array_get(list, k), "to_t",
                        json_object_get(json_array_get(list, k + 1), "from_t"));
    return list ? list : json_array();
}
