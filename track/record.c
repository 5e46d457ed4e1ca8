/* The run recorder: run.json in a run folder (docs/runs.md, docs/formats.md), written when the run
 * starts (status running) and when it ends (finished, failed or killed), each time atomically
 * and then indexed. `kiln train` and the tune worker call it on rank 0. Recording is never a
 * reason to stop training: whatever fails is a warning, and what could be found is written. */
#define _XOPEN_SOURCE 700 /* realpath, nftw */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiln/buildinfo.h"
#include "kiln/clock.h"
#include "kiln/graph.h"
#include "kiln/launch.h"
#include "kiln/stop.h"
#include "kiln/version.h"
#include "runtime/yaml_tree.h"
#include "track/track_impl.h"

/* How long git may take to answer, and the most of a diff kept. */
#define GIT_TIMEOUT_S 10.0
#define DIFF_MAX      (16u << 20)

struct kl_run_recorder {
    char *dir, *root, *id;
    FILE *warn;
    json_t *doc;
    json_t *extra; /* metrics the caller adds (test_*) */
    double t0;     /* monotonic start */
    double cpu0;   /* process CPU seconds at start */
};

static void warn(kl_run_recorder *r, const char *what, const kl_error *e)
{
    fprintf(r->warn, "kiln: warning: run record %s: %s%s%s (training goes on)\n", r->dir, what,
            e ? ": " : "", e ? e->msg : "");
}

static void iso_now(char *buf, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return NAN;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* A plain YAML scalar typed as YAML would (numbers, booleans, null); quoted ones stay strings. */
static json_t *typed(const kl__ynode *n)
{
    if (!n->plain)
        return json_string(n->str);
    const char *s = n->str;
    if (!strcmp(s, "true") || !strcmp(s, "false"))
        return json_boolean(!strcmp(s, "true"));
    if (!*s || !strcmp(s, "null") || !strcmp(s, "~"))
        return json_null();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (!*end && !errno)
        return json_integer(i);
    double d = strtod(s, &end);
    if (!*end && isfinite(d))
        return json_real(d);
    return json_string(s);
}

static int flatten(const kl__ynode *n, char *key, size_t len, size_t cap, json_t *out)
{
    if (n->type == KL__YN_SCALAR)
        return json_object_set_new(out, key, typed(n));
    for (int i = 0; i < n->n; i++) {
        const kl__ynode *c = n->items[i];
        char part[32];
        const char *name = n->type == KL__YN_MAP ? c->key : part;
        snprintf(part, sizeof part, "%d", i);
        size_t add = strlen(name) + (len ? 1 : 0);
        if (len + add + 1 > cap)
            continue; /* a key over PATH_MAX: not a config kiln reads */
        snprintf(key + len, cap - len, "%s%s", len ? "." : "", name);
        if (flatten(c, key, len + add, cap, out) != 0)
            return -1;
        key[len] = '\0';
    }
    return 0;
}

/* The resolved config as kiln prints it, flattened to dotted keys. */
static json_t *params_of(const kl_config *cfg, kl_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) {
        kl_error_set(err, KL_ENOMEM, "out of memory");
        return NULL;
    }
    kl_config_print(cfg, f);
    fclose(f);
    kl__ynode *root = NULL;
    json_t *out = NULL;
    if (kl__yaml_parse("resolved config", text, len, 0, 0, &root, err) == KL_OK &&
        (out = json_object())) {
        char key[PATH_MAX] = "";
        if (root && flatten(root, key, 0, sizeof key, out) != 0) {
            json_decref(out);
            out = NULL;
            kl_error_set(err, KL_ENOMEM, "out of memory");
        }
    }
    kl__ynode_free(root);
    free(text);
    return out;
}

/* kl_buildinfo_print's "name: value" lines as an object. */
static json_t *build_info(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    json_t *o = json_object();
    if (!f || !o) {
        if (f)
            fclose(f);
        free(text);
        return o;
    }
    kl_buildinfo_print(f);
    fclose(f);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strstr(line, ": ");
        if (colon) {
            *colon = '\0';
            json_object_set_new(o, line, json_string(colon + 2));
        }
    }
    free(text);
    return o;
}

/* git's answer to args in dir, trimmed; NULL with the reason in err. */
static char *git(const char *dir, const char *const *args, size_t max, bool *truncated,
                 kl_error *err)
{
    const char *argv[12] = {"git", "--no-optional-locks", "-C", dir};
    int n = 4;
    for (int i = 0; args[i] && n < 11; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char *out;
    size_t len;
    int status;
    bool trunc = false;
    if (kl__track_run(argv, GIT_TIMEOUT_S, max, &out, &len, &trunc, &status, err) != KL_OK) {
        free(out);
        return NULL;
    }
    if (truncated)
        *truncated = trunc;
    while (len && (out[len - 1] == '\n' || out[len - 1] == ' '))
        out[--len] = '\0';
    return out;
}

/* The git commit of the config's folder, a dirty flag, and the uncommitted diff saved as
 * <run>/git.diff; {"available": false, "reason": ...} without git or outside a repository. */
static json_t *git_info(kl_run_recorder *r, const char *config_path)
{
    json_t *g = json_object();
    char *dir = kl__track_dirname(config_path ? config_path : ".");
    kl_error e = {0};
    const char *head[] = {"rev-parse", "HEAD", NULL};
    char *commit = dir ? git(dir, head, 4096, NULL, &e) : NULL;
    if (!commit) {
        json_object_set_new(g, "available", json_false());
        json_object_set_new(
            g, "reason",
            json_string(e.status == KL_ENOTFOUND ? "git is not installed"
                        : e.status == KL_EIO && strstr(e.msg, "status")
                            ? "the config's folder is not in a git repository (or has no commit)"
                            : e.msg));
        free(dir);
        return g;
    }
    json_object_set_new(g, "available", json_true());
    json_object_set_new(g, "commit", json_string(commit));
    free(commit);
    const char *top[] = {"rev-parse", "--show-toplevel", NULL};
    char *root = git(dir, top, PATH_MAX, NULL, &e);
    if (root)
        json_object_set_new(g, "repository", json_string(root));
    free(root);
    const char *status[] = {"status", "--porcelain", "--untracked-files=no", NULL};
    char *st = git(dir, status, 1u << 20, NULL, &e);
    if (!st) {
        warn(r, "git status", &e);
    } else {
        bool dirty = st[0] != '\0';
        json_object_set_new(g, "dirty", json_boolean(dirty));
        const char *diff[] = {"diff", "HEAD", "--no-color", "--no-ext-diff", NULL};
        bool trunc = false;
        char *d = dirty ? git(dir, diff, DIFF_MAX, &trunc, &e) : NULL;
        char *path = d ? kl__track_path(r->dir, "git.diff", NULL) : NULL;
        FILE *f = path ? fopen(path, "w") : NULL;
        if (f && fwrite(d, 1, strlen(d), f) == strlen(d) && fclose(f) == 0) {
            json_object_set_new(g, "diff", json_string("git.diff"));
            if (trunc)
                json_object_set_new(g, "diff_truncated_at_bytes", json_integer(DIFF_MAX));
        } else if (dirty) {
            if (f)
                fclose(f);
            warn(r, "saving the uncommitted diff", d ? NULL : &e);
        }
        free(path);
        free(d);
    }
    free(st);
    free(dir);
    return g;
}

/* Where the run ran; git's state of the config's folder when with_git (it may save git.diff in
 * the run folder). */
static json_t *provenance(kl_run_recorder *r, const kl_run_info *info, bool with_git)
{
    json_t *p = json_object();
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    kl_slurm_job job = kl_launch_slurm();
    const char *config = info->config_path ? info->config_path : info->cfg->path;
    char abs[PATH_MAX];
    json_object_set_new(p, "kiln_version", json_string(KL_VERSION));
    json_object_set_new(p, "build", build_info());
    json_object_set_new(p, "host", json_string(host));
    json_object_set_new(p, "pid", json_integer(getpid()));
    json_object_set_new(p, "ranks", json_integer(info->ranks));
    json_object_set_new(p, "slurm_job_id", job.job_id[0] ? json_string(job.job_id) : json_null());
    json_object_set_new(p, "config",
                        config ? json_string(realpath(config, abs) ? abs : config) : json_null());
    json_t *g = with_git ? git_info(r, config) : json_object();
    if (!with_git) {
        json_object_set_new(g, "available", json_false());
        json_object_set_new(g, "reason", json_string("not recorded for this kind of run"));
    }
    json_object_set_new(p, "git", g);
    return p;
}

static void add_source(kl_run_recorder *r, kl_runs_index *cache, json_t *list, const char *role,
                       const char *path)
{
    if (!path || !*path)
        return;
    kl_fingerprint fp;
    kl_error e = {0};
    json_t *o = json_object();
    char abs[PATH_MAX];
    json_object_set_new(o, "role", json_string(role));
    json_object_set_new(o, "path", json_string(realpath(path, abs) ? abs : path));
    if (kl_fingerprint_file(cache, path, &fp, &e) == KL_OK) {
        json_object_set_new(o, "size", json_integer(fp.size));
        json_object_set_new(o, "mtime_ns", json_integer(fp.mtime_ns));
        json_object_set_new(o, "sha256", json_string(fp.sha256));
    } else {
        json_object_set_new(o, "error", json_string(e.msg));
        warn(r, "data fingerprint", &e);
    }
    json_array_append_new(list, o);
}

/* Every data file the config names; a built-in data set is the files of its folder. */
static json_t *data_sources(kl_run_recorder *r, const kl_config *cfg, kl_runs_index *cache)
{
    json_t *list = json_array();
    const kl_data_config *d = &cfg->data;
    const kl_data_source *src[] = {&d->train, &d->val, &d->test};
    const char *roles[] = {"train", "val", "test"};
    for (int i = 0; i < 3; i++) {
        char role[32];
        add_source(r, cache, list, roles[i], src[i]->path);
        snprintf(role, sizeof role, "%s.labels", roles[i]);
        add_source(r, cache, list, role, src[i]->labels);
    }
    if (d->dataset && *d->dataset) {
        static const char *files[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                      "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
        char dir[PATH_MAX], path[PATH_MAX + 64];
        if (d->dir && *d->dir)
            snprintf(dir, sizeof dir, "%s", d->dir);
        else
            snprintf(dir, sizeof dir, "/usr/share/datasets/%s", d->dataset);
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            add_source(r, cache, list, d->dataset, path);
        }
    }
    return list;
}

static kl_runs_index *open_index(kl_run_recorder *r)
{
    kl_runs_index *ix = NULL;
    kl_error e = {0};
    if (kl_runs_index_open(r->root, &ix, &e) != KL_OK)
        warn(r, "opening the runs index", &e);
    return ix;
}

/* Writes run.json and indexes it. Tags set while the run trained (kiln runs tag) are kept. */
static void save(kl_run_recorder *r, kl_runs_index *ix)
{
    kl_error e = {0};
    char *path = kl__track_path(r->dir, "run.json", NULL);
    json_t *now = path && access(path, F_OK) == 0 ? kl__track_read_json(path, &e) : NULL;
    json_t *tags = now ? json_object_get(now, "tags") : NULL;
    if (json_is_object(tags))
        json_object_set(r->doc, "tags", tags);
    json_decref(now);
    if (!path || kl__track_write_json(r->doc, path, &e) != KL_OK) {
        warn(r, "writing run.json", path ? &e : NULL);
    } else if (ix && kl_runs_index_put(ix, r->id, &e) != KL_OK) {
        warn(r, "indexing", &e);
    }
    free(path);
}

/* The folder's id under the root: dir without "root/". */
static char *id_of(const char *root, const char *dir)
{
    /* A relative folder directly under the working directory ("--dir s"): its root is ".". */
    if (!strcmp(root, ".") && dir[0] != '/') {
        while (!strncmp(dir, "./", 2))
            dir += 2;
        return strdup(dir);
    }
    size_t n = strlen(root);
    if (!strncmp(dir, root, n) && dir[n] == '/')
        return strdup(dir + n + 1);
    const char *slash = strrchr(dir, '/');
    return strdup(slash ? slash + 1 : dir);
}

kl_run_recorder *kl_run_record_begin(const kl_run_info *info)
{
    kl_run_recorder *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->warn = info->warn ? info->warn : stderr;
    r->dir = strdup(info->dir);
    /* A trial's root is the folder holding its sweep: <root>/<sweep>/trials/<trial>. */
    r->root = info->root    ? strdup(info->root)
              : info->sweep ? kl__track_dirname(info->sweep)
                            : kl__track_dirname(info->dir);
    r->id = r->root ? id_of(r->root, info->dir) : NULL;
    r->extra = json_object();
    r->t0 = kl_now();
    r->cpu0 = cpu_seconds();
    char *prev_path = r->dir ? kl__track_path(r->dir, "run.json", NULL) : NULL;
    if (!r->dir || !r->root || !r->id || !r->extra || !prev_path) {
        free(prev_path);
        kl_run_record_end(r, KL_OK, NULL);
        return NULL;
    }
    /* A resumed run continues its record: the first start and its tags stay. */
    kl_error e = {0};
    json_t *prev = access(prev_path, F_OK) == 0 ? kl__track_read_json(prev_path, &e) : NULL;
    free(prev_path);
    kl_runs_index *ix = open_index(r);
    char now[32];
    iso_now(now, sizeof now);
    json_t *doc = r->doc = json_object();
    json_object_set_new(doc, "format", json_string(KL_RUN_FORMAT));
    json_object_set_new(doc, "format_version", json_integer(KL_RUN_FORMAT_VERSION));
    json_object_set_new(doc, "kind", json_string(info->kind));
    json_object_set_new(doc, "name",
                        json_string(info->cfg->name && *info->cfg->name ? info->cfg->name
                                    : strrchr(r->dir, '/')              ? strrchr(r->dir, '/') + 1
                                                                        : r->dir));
    json_object_set_new(doc, "status", json_string("running"));
    json_t *ps = prev ? json_object_get(prev, "start") : NULL;
    json_object_set_new(doc, "start", json_is_string(ps) ? json_incref(ps) : json_string(now));
    json_t *pa = prev ? json_object_get(prev, "attempts") : NULL;
    json_object_set_new(doc, "attempts",
                        json_integer(json_is_integer(pa) ? json_integer_value(pa) + 1 : 1));
    json_t *pt = prev ? json_object_get(prev, "tags") : NULL;
    json_object_set_new(doc, "tags", json_is_object(pt) ? json_incref(pt) : json_object());
    json_t *params = params_of(info->cfg, &e);
    if (!params)
        warn(r, "flattening the config", &e);
    json_object_set_new(doc, "params", params ? params : json_object());
    json_object_set_new(doc, "provenance", provenance(r, info, true));
    json_object_set_new(doc, "data", data_sources(r, info->cfg, ix));
    json_t *lineage = json_object();
    if (info->sweep) {
        char abs[PATH_MAX];
        json_object_set_new(lineage, "sweep",
                            json_string(realpath(info->sweep, abs) ? abs : info->sweep));
        json_object_set_new(lineage, "trial", json_integer(info->trial));
    }
    json_object_set_new(doc, "lineage", lineage);
    json_decref(prev);
    save(r, ix);
    kl_runs_index_close(ix);
    return r;
}

void kl_run_record_metric(kl_run_recorder *r, const char *name, double value)
{
    if (r && !isnan(value))
        json_object_set_new(r->extra, name, json_real(value));
}

/* A metric whose best is its largest value. */
static bool higher_is_better(const char *name)
{
    return strstr(name, "accuracy") != NULL;
}

/* Final and best of every metric column of metrics.csv (epochs and steps as the last row's),
 * and the mean samples/s over the epochs. */
static void metrics_of(kl_run_recorder *r, json_t *final, json_t *best, double *sps)
{
    char *path = kl__track_path(r->dir, "metrics.csv", NULL);
    FILE *f = path ? fopen(path, "r") : NULL;
    free(path);
    *sps = NAN;
    if (!f)
        return;
    char line[4096], *names[32];
    int ncol = 0;
    if (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        for (char *s = strtok(line, ","); s && ncol < 32; s = strtok(NULL, ","))
            names[ncol++] = strdup(s);
    }
    double sum = 0;
    int nsps = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        char *p = line;
        for (int c = 0; c < ncol && p; c++) {
            char *comma = strchr(p, ',');
            if (comma)
                *comma = '\0';
            char *end;
            double v = strtod(p, &end);
            if (names[c] && end != p && !*end && isfinite(v)) {
                if (!strcmp(names[c], "samples_per_s")) {
                    sum += v;
                    nsps++;
                } else if (!strcmp(names[c], "epoch") || !strcmp(names[c], "step")) {
                    json_object_set_new(final, names[c], json_integer((json_int_t)v));
                } else if (strcmp(names[c], "seconds") && strcmp(names[c], "lr")) {
                    json_object_set_new(final, names[c], json_real(v));
                    json_t *b = json_object_get(best, names[c]);
                    bool hi = higher_is_better(names[c]);
                    if (!b || (hi ? v > json_real_value(b) : v < json_real_value(b)))
                        json_object_set_new(best, names[c], json_real(v));
                }
            }
            p = comma ? comma + 1 : NULL;
        }
    }
    fclose(f);
    for (int c = 0; c < ncol; c++)
        free(names[c]);
    if (nsps)
        *sps = sum / nsps;
}

static json_t *system_metrics(kl_run_recorder *r, double sps)
{
    json_t *s = json_object();
    struct rusage ru;
    json_object_set_new(s, "wall_seconds", json_real(kl_now() - r->t0));
    double cpu = cpu_seconds();
    if (!isnan(cpu) && !isnan(r->cpu0))
        json_object_set_new(s, "cpu_seconds", json_real(cpu - r->cpu0));
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        json_object_set_new(s, "peak_rss_bytes", json_integer((json_int_t)ru.ru_maxrss * 1024));
    if (!isnan(sps))
        json_object_set_new(s, "samples_per_s", json_real(sps));
    int64_t dev;
    if (kl_device_memory_peak(&dev)) /* absent on the CPU */
        json_object_set_new(s, "device_memory_peak_bytes", json_integer(dev));
    return s;
}

void kl_run_record_end(kl_run_recorder *r, kl_status st, const char *reason)
{
    if (!r)
        return;
    if (r->doc) {
        char now[32], why[KL_ERROR_MSG_MAX + 64];
        iso_now(now, sizeof now);
        json_t *final = json_object(), *best = json_object();
        double sps;
        metrics_of(r, final, best, &sps);
        json_object_update(final, r->extra);
        const char *status = st == KL_OK ? "finished" : st == KL_ESTOPPED ? "killed" : "failed";
        if (st == KL_ESTOPPED && kl_stop_signal() > 0)
            snprintf(why, sizeof why, "stopped by signal %d%s%s", kl_stop_signal(),
                     reason ? ": " : "", reason ? reason : "");
        else if (st == KL_OK) {
            json_t *ep = json_object_get(final, "epoch");
            snprintf(why, sizeof why, "trained %d epoch%s", (int)json_number_value(ep),
                     json_number_value(ep) == 1 ? "" : "s");
        } else
            snprintf(why, sizeof why, "%s", reason ? reason : "unknown error");
        json_object_set_new(r->doc, "status", json_string(status));
        json_object_set_new(r->doc, "exit_reason", json_string(why));
        json_object_set_new(r->doc, "end", json_string(now));
        json_t *m = json_object();
        json_object_set_new(m, "final", final);
        json_object_set_new(m, "best", best);
        json_object_set_new(r->doc, "metrics", m);
        json_object_set_new(r->doc, "system", system_metrics(r, sps));
        kl_runs_index *ix = open_index(r);
        save(r, ix);
        kl_runs_index_close(ix);
    }
    json_decref(r->doc);
    json_decref(r->extra);
    free(r->dir);
    free(r->root);
    free(r->id);
    free(r);
}

/* ---- online learning's versions ---- */

/* The run of the version a published one continued: the parent's own folder when online learning
 * recorded it, else the training run the first version was exported from (NULL: unknown). */
static json_t *parent_run(const kl_online_run_info *info)
{
    char *dir = info->parent ? kl__track_dirname(info->parent) : NULL;
    char *rec = dir ? kl__track_path(dir, "run.json", NULL) : NULL;
    char abs[PATH_MAX];
    json_t *out = rec && access(rec, F_OK) == 0 ? json_string(realpath(dir, abs) ? abs : dir)
                  : info->source_run            ? json_string(info->source_run)
                                                : json_null();
    free(rec);
    free(dir);
    return out;
}

static json_t *online_lineage(const kl_online_run_info *info)
{
    json_t *l = json_object();
    char abs[PATH_MAX];
    const char *parent = info->parent && realpath(info->parent, abs) ? abs : info->parent;
    json_object_set_new(l, "parent", parent ? json_string(parent) : json_null());
    json_object_set_new(l, "parent_version", json_integer(info->parent_version));
    json_object_set_new(l, "parent_run", parent_run(info));
    json_object_set_new(l, "source_run",
                        info->source_run ? json_string(info->source_run) : json_null());
    json_object_set_new(l, "source_checkpoint",
                        info->source_checkpoint ? json_string(info->source_checkpoint)
                                                : json_null());
    return l;
}

/* The model's config flattened, and the online_learning settings under their own prefix. */
static json_t *online_params(kl_run_recorder *r, const kl_online_run_info *info)
{
    kl_error e = {0};
    json_t *params = params_of(info->cfg, &e);
    if (!params) {
        warn(r, "flattening the config", &e);
        params = json_object();
    }
    kl__ynode *root = NULL;
    const char *text = info->settings ? info->settings : "";
    if (kl__yaml_parse("online_learning", text, strlen(text), 0, 0, &root, &e) != KL_OK) {
        warn(r, "reading the online_learning settings", &e);
    } else if (root) {
        char key[PATH_MAX] = "online_learning";
        flatten(root, key, strlen(key), sizeof key, params);
    }
    kl__ynode_free(root);
    return params;
}

static json_t *online_metrics(const kl_online_run_info *info)
{
    json_t *m = json_object(), *final = json_object(), *best = json_object();
    json_object_set_new(final, "step", json_integer(info->steps));
    json_object_set_new(final, "new_steps", json_integer(info->new_steps));
    json_object_set_new(final, "feedback", json_integer(info->feedback));
    if (!isnan(info->loss)) {
        json_object_set_new(final, "train_loss", json_real(info->loss));
        json_object_set_new(best, "train_loss", json_real(info->loss));
    }
    json_object_set_new(m, "final", final);
    json_object_set_new(m, "best", best);
    return m;
}

static void iso_of(double t, char *buf, size_t n)
{
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void kl_run_record_online(const kl_online_run_info *info)
{
    kl_run_recorder r = {.warn = info->warn ? info->warn : stderr};
    r.dir = strdup(info->dir);
    r.root = kl__track_dirname(info->dir);
    r.id = r.root ? id_of(r.root, info->dir) : NULL;
    json_t *doc = r.doc = json_object();
    if (!r.dir || !r.root || !r.id || !doc) {
        fprintf(r.warn, "kiln: warning: run record %s: out of memory\n", info->dir);
    } else {
        char start[32], end[32], name[300], why[128];
        double now = kl_wall_now();
        iso_of(info->start > 0 ? info->start : now, start, sizeof start);
        iso_now(end, sizeof end);
        snprintf(name, sizeof name, "%s/%lld", info->model, (long long)info->version);
        snprintf(why, sizeof why, "published version %lld after %lld steps",
                 (long long)info->version, (long long)info->steps);
        json_object_set_new(doc, "format", json_string(KL_RUN_FORMAT));
        json_object_set_new(doc, "format_version", json_integer(KL_RUN_FORMAT_VERSION));
        json_object_set_new(doc, "kind", json_string("online"));
        json_object_set_new(doc, "name", json_string(name));
        json_object_set_new(doc, "status", json_string("finished"));
        json_object_set_new(doc, "exit_reason", json_string(why));
        json_object_set_new(doc, "start", json_string(start));
        json_object_set_new(doc, "end", json_string(end));
        json_object_set_new(doc, "attempts", json_integer(1));
        json_object_set_new(doc, "tags", json_object());
        json_object_set_new(doc, "params", online_params(&r, info));
        kl_run_info pi = {.dir = info->dir,
                          .kind = "online",
                          .cfg = info->cfg,
                          .config_path = info->parent,
                          .ranks = 1};
        /* No git: the server asks no subprocess, and a version folder gets no git.diff. */
        json_object_set_new(doc, "provenance", provenance(&r, &pi, false));
        json_object_set_new(doc, "data", json_array());
        json_object_set_new(doc, "lineage", online_lineage(info));
        json_object_set_new(doc, "metrics", online_metrics(info));
        json_t *sys = json_object();
        struct rusage ru;
        json_object_set_new(sys, "wall_seconds",
                            json_real(info->start > 0 ? now - info->start : 0.0));
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            json_object_set_new(sys, "peak_rss_bytes",
                                json_integer((json_int_t)ru.ru_maxrss * 1024));
        json_object_set_new(doc, "system", sys);
        save(&r, NULL); /* the repository gets no index until `kiln runs` makes one */
    }
    json_decref(doc);
    free(r.dir);
    free(r.root);
    free(r.id);
}
