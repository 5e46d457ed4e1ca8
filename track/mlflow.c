/* kiln runs export --mlflow: runs written in MLflow's file-store layout (docs/runs.md), the one
 * mlflow.store.tracking.file_store.FileStore reads: <dir>/<experiment id>/meta.yaml, and per run
 * <dir>/<experiment id>/<run id>/meta.yaml, params/<key> (the value), metrics/<name> (lines
 * "timestamp_ms value step"), tags/<key> (the value) and artifacts/ (copies of run.json,
 * config.yaml, metrics.csv, log.txt and git.diff). A run's MLflow id is derived from its folder's
 * absolute path, so exporting again overwrites the same runs instead of adding copies. */
#define _XOPEN_SOURCE   700 /* realpath, strptime */
#define _DEFAULT_SOURCE     /* timegm */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runtime/file.h"
#include "track/track_impl.h"

/* mlflow.entities.RunStatus and SourceType (mlflow/protos/service.proto). */
enum { MLFLOW_RUNNING = 1, MLFLOW_FINISHED = 3, MLFLOW_FAILED = 4, MLFLOW_KILLED = 5 };
enum { MLFLOW_SOURCE_LOCAL = 4 };

typedef struct exporter {
    const char *dir; /* absolute */
    char exp_id[32];
    kl_error *err;
} exporter;

static kl_status io_error(exporter *x, const char *path)
{
    return kl_error_set(x->err, KL_EIO, "cannot write %s: %s", path, strerror(errno));
}

/* fmt into buf as a path; false, with the error set, when it would not fit. */
static bool path_fmt(exporter *x, char *buf, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool path_fmt(exporter *x, char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < n)
        return true;
    kl_error_set(x->err, KL_EINVAL, "a path under %s is too long (%.64s...)", x->dir, buf);
    return false;
}

/* A YAML single-quoted scalar. */
static void yaml_str(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; s && *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputc('\'', f);
}

static kl_status write_text(exporter *x, const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) == EOF) {
        if (f)
            fclose(f);
        return io_error(x, path);
    }
    return fclose(f) == 0 ? KL_OK : io_error(x, path);
}

/* Milliseconds since the epoch of an ISO 8601 UTC time as run.json writes it; -1 without one. */
static long long ms_of(const char *iso)
{
    struct tm tm = {0};
    if (!iso || !strptime(iso, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return -1;
    time_t t = timegm(&tm);
    return t < 0 ? -1 : (long long)t * 1000;
}

/* The experiment: an existing one of that name, else the next free numeric id, with a default
 * experiment 0 and the .trash folder MLflow makes for a new store. */
static kl_status experiment(exporter *x, const char *name)
{
    char path[PATH_MAX + 64];
    long long next = 1;
    char *want = NULL; /* the meta.yaml line naming it */
    size_t wn = 0;
    FILE *m = open_memstream(&want, &wn);
    if (!m)
        return kl_error_set(x->err, KL_ENOMEM, "out of memory");
    fputs("name: ", m);
    yaml_str(m, name);
    fputc('\n', m);
    fclose(m);
    DIR *d = opendir(x->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end;
        long long id = strtoll(e->d_name, &end, 10);
        if (end == e->d_name || *end)
            continue;
        next = id >= next ? id + 1 : next;
        kl_error skip = {0};
        exporter y = {.dir = x->dir, .err = &skip};
        FILE *f = path_fmt(&y, path, sizeof path, "%s/%s/meta.yaml", x->dir, e->d_name)
                      ? fopen(path, "r")
                      : NULL;
        char line[4096];
        bool same = false;
        while (f && fgets(line, sizeof line, f))
            same = same || !strcmp(line, want);
        if (f)
            fclose(f);
        if (same && id > 0) {
            snprintf(x->exp_id, sizeof x->exp_id, "%lld", id);
            closedir(d);
            free(want);
            return KL_OK;
        }
    }
    free(want);
    if (d)
        closedir(d);
    long long now = (long long)time(NULL) * 1000;
    const char *names[] = {"Default", name};
    long long ids[] = {0, next};
    for (int k = 0; k < 2; k++) {
        if (!path_fmt(x, path, sizeof path, "%s/%lld", x->dir, ids[k]))
            return x->err->status;
        if (k == 0 && access(path, F_OK) == 0)
            continue;
        if (kl__mkdirs(path) != 0)
            return io_error(x, path);
        if (!path_fmt(x, path, sizeof path, "%s/%lld/meta.yaml", x->dir, ids[k]))
            return x->err->status;
        FILE *f = fopen(path, "w");
        if (!f)
            return io_error(x, path);
        fprintf(f, "artifact_location: ");
        char uri[PATH_MAX + 64];
        if (!path_fmt(x, uri, sizeof uri, "file://%s/%lld", x->dir, ids[k])) {
            fclose(f);
            return x->err->status;
        }
        yaml_str(f, uri);
        fprintf(f,
                "\ncreation_time: %lld\nexperiment_id: '%lld'\nlast_update_time: %lld\n"
                "lifecycle_stage: active\nname: ",
                now, ids[k], now);
        yaml_str(f, names[k]);
        fputc('\n', f);
        if (fclose(f) != 0)
            return io_error(x, path);
    }
    if (path_fmt(x, path, sizeof path, "%s/.trash", x->dir))
        mkdir(path, 0755);
    snprintf(x->exp_id, sizeof x->exp_id, "%lld", next);
    return KL_OK;
}

/* The run's MLflow id: 32 hex digits of the SHA-256 of its folder's absolute path. */
static void run_uuid(const char *folder, char out[33])
{
    struct sha256_ctx c;
    uint8_t d[SHA256_DIGEST_SIZE];
    sha256_init(&c);
    sha256_update(&c, strlen(folder), (const uint8_t *)folder);
    sha256_digest(&c, sizeof d, d);
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static kl_status put_kv(exporter *x, const char *run_dir, const char *sub, const char *key,
                        const char *value)
{
    char path[PATH_MAX * 2];
    if (strchr(key, '/') || !strcmp(key, ".") || !strcmp(key, ".."))
        return KL_OK; /* not a name MLflow stores as one file; run.json has it */
    return path_fmt(x, path, sizeof path, "%s/%s/%s", run_dir, sub, key)
               ? write_text(x, path, value)
               : x->err->status;
}

static void value_text(const json_t *v, char *buf, size_t n)
{
    if (json_is_string(v))
        snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, n, "%.15g", json_real_value(v)); /* as run.json writes them */
    else
        snprintf(buf, n, "%s", json_is_true(v) ? "true" : json_is_false(v) ? "false" : "None");
}

/* metrics/<column> from metrics.csv: one line per epoch, its time the start plus the training
 * seconds so far, its step the epoch; and the final metrics metrics.csv lacks (test_*) at the
 * end. */
static kl_status put_metrics(exporter *x, const char *src, const char *run_dir, const json_t *doc,
                             long long t0, long long t1)
{
    char path[PATH_MAX * 2], line[4096], *names[32];
    int ncol = 0, epoch_col = -1, secs_col = -1;
    if (!path_fmt(x, path, sizeof path, "%s/metrics.csv", src))
        return x->err->status;
    FILE *in = fopen(path, "r");
    FILE *out[32] = {0};
    kl_status st = KL_OK;
    if (in && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = '\0';
        for (char *c = strtok(line, ","); c && ncol < 32; c = strtok(NULL, ","), ncol++) {
            names[ncol] = strdup(c);
            epoch_col = !strcmp(c, "epoch") ? ncol : epoch_col;
            secs_col = !strcmp(c, "seconds") ? ncol : secs_col;
        }
    }
    double elapsed = 0;
    while (in && st == KL_OK && epoch_col >= 0 && fgets(line, sizeof line, in)) {
        double v[32];
        int c = 0;
        for (char *p = line; p && c < ncol; c++) {
            char *comma = strchr(p, ','), *end;
            if (comma)
                *comma = '\0';
            v[c] = strtod(p, &end);
            if (end == p || !isfinite(v[c]))
                v[c] = NAN;
            p = comma ? comma + 1 : NULL;
        }
        if (secs_col >= 0 && secs_col < c && !isnan(v[secs_col]))
            elapsed += v[secs_col];
        long long ts = t0 >= 0 ? t0 + (long long)llround(elapsed * 1000) : 0;
        for (int k = 0; k < c && st == KL_OK; k++) {
            if (k == epoch_col || k == secs_col || isnan(v[k]) || !names[k])
                continue;
            if (!out[k]) {
                if (!path_fmt(x, path, sizeof path, "%s/metrics/%s", run_dir, names[k]))
                    st = x->err->status;
                else if (!(out[k] = fopen(path, "w")))
                    st = io_error(x, path);
            }
            if (out[k])
                fprintf(out[k], "%lld %.9g %lld\n", ts, v[k], (long long)v[epoch_col]);
        }
    }
    json_t *fin = json_object_get(json_object_get(doc, "metrics"), "final");
    json_t *ep = json_object_get(fin, "epoch");
    const char *k;
    json_t *v;
    json_object_foreach(fin, k, v)
    {
        if (strncmp(k, "test_", 5) || !json_is_number(v) || st != KL_OK)
            continue;
        if (!path_fmt(x, path, sizeof path, "%s/metrics/%s", run_dir, k)) {
            st = x->err->status;
            break;
        }
        char text[128];
        snprintf(text, sizeof text, "%lld %.17g %lld\n", t1 >= 0 ? t1 : 0, json_number_value(v),
                 json_is_integer(ep) ? (long long)json_integer_value(ep) : 0LL);
        st = write_text(x, path, text);
    }
    for (int i = 0; i < 32; i++)
        if (out[i] && fclose(out[i]) != 0 && st == KL_OK)
            st = io_error(x, run_dir);
    for (int i = 0; i < ncol; i++)
        free(names[i]);
    if (in)
        fclose(in);
    return st;
}

static kl_status put_tags(exporter *x, const char *run_dir, const char *id, const json_t *doc)
{
    const json_t *prov = json_object_get(doc, "provenance");
    const json_t *git = json_object_get(prov, "git");
    const char *user = getenv("USER");
    const char *tags[][2] = {
        {"mlflow.runName", id},
        {"mlflow.source.type", "LOCAL"},
        {"mlflow.source.name", json_string_value(json_object_get(prov, "config"))},
        {"mlflow.source.git.commit", json_string_value(json_object_get(git, "commit"))},
        {"mlflow.source.git.repoURL", json_string_value(json_object_get(git, "repository"))},
        {"mlflow.user", user},
        {"kiln.kind", json_string_value(json_object_get(doc, "kind"))},
        {"kiln.exit_reason", json_string_value(json_object_get(doc, "exit_reason"))},
        {"kiln.host", json_string_value(json_object_get(prov, "host"))},
        {"kiln.version", json_string_value(json_object_get(prov, "kiln_version"))},
        {"kiln.git.dirty", json_is_true(json_object_get(git, "dirty"))    ? "true"
                           : json_is_false(json_object_get(git, "dirty")) ? "false"
                                                                          : NULL},
        {"kiln.sweep",
         json_string_value(json_object_get(json_object_get(doc, "lineage"), "sweep"))},
    };
    kl_status st = KL_OK;
    for (size_t i = 0; i < sizeof tags / sizeof *tags && st == KL_OK; i++)
        if (tags[i][1])
            st = put_kv(x, run_dir, "tags", tags[i][0], tags[i][1]);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(doc, "tags"), k, v)
    {
        if (st == KL_OK && json_is_string(v))
            st = put_kv(x, run_dir, "tags", k, json_string_value(v));
    }
    return st;
}

static kl_status copy_file(exporter *x, const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return KL_OK; /* a run without that file */
    FILE *out = fopen(to, "wb");
    char buf[65536];
    size_t n;
    bool ok = out != NULL;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    fclose(in);
    if (out && fclose(out) != 0)
        ok = false;
    return ok ? KL_OK : io_error(x, to);
}

static kl_status put_meta(exporter *x, const char *run_dir, const char *uuid, const char *id,
                          const json_t *doc, long long t0, long long t1)
{
    const char *status = json_string_value(json_object_get(doc, "status"));
    int code = !status                       ? MLFLOW_RUNNING
               : !strcmp(status, "finished") ? MLFLOW_FINISHED
               : !strcmp(status, "failed")   ? MLFLOW_FAILED
               : !strcmp(status, "killed")   ? MLFLOW_KILLED
                                             : MLFLOW_RUNNING;
    char path[PATH_MAX * 2], uri[PATH_MAX * 2];
    if (!path_fmt(x, path, sizeof path, "%s/meta.yaml", run_dir) ||
        !path_fmt(x, uri, sizeof uri, "file://%s/artifacts", run_dir))
        return x->err->status;
    FILE *f = fopen(path, "w");
    if (!f)
        return io_error(x, path);
    fprintf(f, "artifact_uri: ");
    yaml_str(f, uri);
    if (t1 >= 0 && code != MLFLOW_RUNNING)
        fprintf(f, "\nend_time: %lld\n", t1);
    else
        fprintf(f, "\nend_time: null\n");
    fprintf(f, "entry_point_name: ''\nexperiment_id: '%s'\nlifecycle_stage: active\nrun_id: %s\n",
            x->exp_id, uuid);
    fprintf(f, "run_name: ");
    yaml_str(f, id);
    fprintf(f, "\nrun_uuid: %s\nsource_name: ''\nsource_type: %d\nsource_version: ''\n", uuid,
            MLFLOW_SOURCE_LOCAL);
    fprintf(f, "start_time: %lld\nstatus: %d\ntags: []\nuser_id: ", t0 >= 0 ? t0 : 0, code);
    yaml_str(f, getenv("USER") ? getenv("USER") : "");
    fputc('\n', f);
    return fclose(f) == 0 ? KL_OK : io_error(x, path);
}

static kl_status export_run(exporter *x, const char *root, const char *id)
{
    char src[PATH_MAX], abs[PATH_MAX], uuid[33], run_dir[PATH_MAX * 2], path[PATH_MAX * 3];
    snprintf(src, sizeof src, "%s/%s", root, id);
    if (!realpath(src, abs))
        return kl_error_set(x->err, KL_EIO, "%s: %s", src, strerror(errno));
    if (!path_fmt(x, path, sizeof path, "%s/run.json", abs))
        return x->err->status;
    json_t *doc = kl__track_read_json(path, x->err);
    if (!doc)
        return x->err->status;
    run_uuid(abs, uuid);
    if (!path_fmt(x, run_dir, sizeof run_dir, "%s/%s/%s", x->dir, x->exp_id, uuid)) {
        json_decref(doc);
        return x->err->status;
    }
    long long t0 = ms_of(json_string_value(json_object_get(doc, "start")));
    long long t1 = ms_of(json_string_value(json_object_get(doc, "end")));
    kl_status st = KL_OK;
    const char *subs[] = {"params", "metrics", "tags", "artifacts"};
    for (int i = 0; i < 4 && st == KL_OK; i++) {
        if (!path_fmt(x, path, sizeof path, "%s/%s", run_dir, subs[i]))
            st = x->err->status;
        else if (kl__mkdirs(path) != 0)
            st = io_error(x, path);
    }
    if (st == KL_OK)
        st = put_meta(x, run_dir, uuid, id, doc, t0, t1);
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(doc, "params"), k, v)
    {
        char text[1024];
        value_text(v, text, sizeof text);
        if (st == KL_OK)
            st = put_kv(x, run_dir, "params", k, text);
    }
    if (st == KL_OK)
        st = put_metrics(x, abs, run_dir, doc, t0, t1);
    if (st == KL_OK)
        st = put_tags(x, run_dir, id, doc);
    const char *files[] = {"run.json", "config.yaml", "metrics.csv", "log.txt", "git.diff"};
    for (int i = 0; i < 5 && st == KL_OK; i++) {
        char from[PATH_MAX + 32];
        st = path_fmt(x, from, sizeof from, "%s/%s", abs, files[i]) &&
                     path_fmt(x, path, sizeof path, "%s/artifacts/%s", run_dir, files[i])
                 ? copy_file(x, from, path)
                 : x->err->status;
    }
    json_decref(doc);
    return st;
}

kl_status kl_runs_export_mlflow(kl_runs_index *ix, const char *const *ids, int n, const char *dir,
                                const char *experiment_name, kl_error *err)
{
    char abs[PATH_MAX];
    if (kl__mkdirs(dir) != 0 || !realpath(dir, abs))
        return kl_error_set(err, KL_EIO, "cannot create %s: %s", dir, strerror(errno));
    exporter x = {.dir = abs, .err = err};
    kl_status st = experiment(&x, experiment_name);
    for (int i = 0; i < n && st == KL_OK; i++)
        st = export_run(&x, ix->root, ids[i]);
    return st;
}
