/* kiln runs: lists, shows, compares, tags and deletes the recorded runs under a runs root
 * (docs/runs.md). The index (track/index.c) answers list; show and compare read the run.json files
 * themselves, the folders being the truth. */
#define _XOPEN_SOURCE 700 /* realpath, nftw */
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/lock.h"
#include "kiln/track.h"

static const char runs_help[] =
    "usage: kiln runs [--root DIR] COMMAND [options]\n"
    "\n"
    "Finds, compares and tidies the runs kiln train and kiln tune recorded (docs/runs.md). Each\n"
    "run folder holds a run.json: the resolved config flattened to dotted keys (params), final\n"
    "and best metrics, provenance (kiln version, git commit and dirty flag of the config's\n"
    "folder, host, ranks, Slurm job), data fingerprints and system metrics. An index\n"
    "(DIR/index.sqlite) is brought in line with the folders before each command.\n"
    "\n"
    "commands:\n"
    "  list [--where EXPR]... [--sort [-]FIELD] [--tag K=V]... [--limit N]\n"
    "                    a table of the runs matching every EXPR, FIELD OP VALUE with OP one\n"
    "                    of < <= > >= = !=, e.g. --where 'params.optimizer.lr<1e-3' --where\n"
    "                    'metrics.val_accuracy>0.9'. FIELD is params.KEY, metrics.NAME (final\n"
    "                    value), best.NAME, tags.KEY, status, kind, name, start, end, sweep or\n"
    "                    git_commit; --sort orders by one (descending with '-')\n"
    "  show RUN          everything recorded about a run\n"
    "  compare RUN RUN...\n"
    "                    the parameters that differ (--all: every one), final and best metrics\n"
    "                    side by side, and provenance\n"
    "  tag RUN K=V...    set tags (K= removes K)\n"
    "  delete RUN...     move runs to DIR/.trash/ (--purge: remove them for good)\n"
    "  export --mlflow DIR [RUN...] [--experiment NAME]\n"
    "                    write the runs (all of them without RUN) in MLflow's file-store\n"
    "                    layout under DIR, as experiment NAME (default: the root's folder\n"
    "                    name); MLflow 3.13 and later read it with MLFLOW_ALLOW_FILE_STORE=true\n"
    "  report RUN... -o compare.html [--metric NAME]\n"
    "                    one self-contained page: learning curves overlaid, parallel\n"
    "                    coordinates of the differing parameters against the final metric\n"
    "                    NAME (default: the first of val_loss, val_accuracy, val_mae,\n"
    "                    train_loss, train_accuracy the runs have), and the table of\n"
    "                    differing parameters, metrics and provenance\n"
    "\n"
    "RUN is a run's id under the root (mlp, or my-sweep/trials/trial-0003), its folder's path,\n"
    "its name, or the last part of its id when that is unique.\n"
    "\n"
    "options:\n"
    "  --root DIR        the runs root (default runs; a sweep's trials: the folder that holds\n"
    "                    the sweep folder, sweeps by default)\n"
    "\n"
    "exit status: 0 done, 1 error (no such run, a run in use), 2 usage error\n";

typedef struct runs_ctx {
    const char *root;
    kl_runs_index *ix;
} runs_ctx;

static int fail(const kl_error *err)
{
    fprintf(stderr, "kiln runs: %s\n", err->msg);
    return 1;
}

kl_runs_index *kl__cli_runs_open(const char *root)
{
    kl_error err = {0};
    int changed;
    kl_runs_index *ix = NULL;
    if (kl_runs_index_open(root, &ix, &err) != KL_OK ||
        kl_runs_index_sync(ix, &changed, &err) != KL_OK) {
        fail(&err);
        kl_runs_index_close(ix);
        return NULL;
    }
    return ix;
}

/* Opens and syncs the index of the root. */
static int open_root(runs_ctx *c)
{
    return (c->ix = kl__cli_runs_open(c->root)) ? 0 : 1;
}

/* --- list ------------------------------------------------------------------------------- */

static bool still_running(const char *root, const char *id);

typedef struct list_out {
    const char *root;
    const kl_runs_cond *cols;
    int *width; /* of each column: its header's */
    int ncols;
    long long limit, shown;
} list_out;

static void cell(const kl_runs_row *r, int w, int i)
{
    if (r->texts[i])
        printf("  %*.*s", w, w, r->texts[i]);
    else if (isnan(r->values[i]))
        printf("  %*s", w, "-");
    else
        printf("  %*.6g", w, r->values[i]);
}

static bool list_row(void *ctx, const kl_runs_row *r)
{
    list_out *o = ctx;
    if (o->limit && o->shown >= o->limit)
        return false;
    const char *status = r->status ? r->status : "-";
    /* A record left at running by a process that ended without saying how (see show). */
    if (!strcmp(status, "running") && !still_running(o->root, r->id))
        status = "lost";
    printf("%-32s  %-8s  %-20s", r->id, status, r->start ? r->start : "-");
    for (int i = 0; i < o->ncols; i++)
        cell(r, o->width[i], i);
    printf("\n");
    o->shown++;
    return true;
}

static bool same_field(const kl_runs_cond *a, const kl_runs_cond *b)
{
    return !strcmp(a->table, b->table) && !strcmp(a->key, b->key);
}

static void add_col(kl_runs_cond *cols, int *n, const kl_runs_cond *c)
{
    for (int i = 0; i < *n; i++)
        if (same_field(&cols[i], c))
            return;
    cols[(*n)++] = *c;
}

static int list(runs_ctx *c, int argc, char **argv)
{
    kl_runs_cond *conds = calloc((size_t)argc + 1, sizeof *conds);
    kl_runs_cond *cols = calloc((size_t)argc + 3, sizeof *cols);
    kl_runs_cond sort;
    bool have_sort = false, desc = false;
    int nconds = 0, ncols = 0, rc = 0;
    list_out o = {.root = c->root};
    kl_error err = {0};
    o.width = calloc((size_t)argc + 3, sizeof *o.width);
    if (!conds || !cols || !o.width) {
        free(o.width);
        free(conds);
        free(cols);
        return 1;
    }
    for (int i = 1; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--where") && strcmp(a, "--sort") && strcmp(a, "--tag") &&
            strcmp(a, "--limit")) {
            rc = kl__cli_usage_error("runs", "list: unknown option '%s'", a);
        } else if (!v) {
            rc = kl__cli_usage_error("runs", "list: %s needs a value", a);
        } else if (!strcmp(a, "--where")) {
            if (kl_runs_cond_parse(v, &conds[nconds], &err) != KL_OK)
                rc = kl__cli_usage_error("runs", "%s", err.msg);
            else
                add_col(cols, &ncols, &conds[nconds++]);
        } else if (!strcmp(a, "--sort")) {
            if (kl_runs_sort_parse(v, &sort, &desc, &err) != KL_OK)
                rc = kl__cli_usage_error("runs", "%s", err.msg);
            have_sort = true;
        } else if (!strcmp(a, "--tag")) {
            const char *eq = strchr(v, '=');
            kl_runs_cond *t = &conds[nconds];
            if (!eq || eq == v || (size_t)(eq - v) >= sizeof t->key ||
                strlen(eq + 1) >= sizeof t->text) {
                rc = kl__cli_usage_error("runs", "list: --tag needs KEY=VALUE, got '%s'", v);
            } else {
                snprintf(t->table, sizeof t->table, "tags");
                snprintf(t->key, sizeof t->key, "%.*s", (int)(eq - v), v);
                snprintf(t->text, sizeof t->text, "%s", eq + 1);
                t->op = KL_RUNS_EQ;
                add_col(cols, &ncols, &conds[nconds++]);
            }
        } else if (!kl__cli_int(v, 1, 1000000000, &o.limit)) {
            rc = kl__cli_usage_error("runs", "list: --limit takes a positive number, got '%s'", v);
        }
        i++;
    }
    if (rc == 0 && have_sort)
        add_col(cols, &ncols, &sort);
    if (rc == 0 && ncols == 0) {
        kl_runs_cond dflt[2];
        kl_error e2 = {0};
        kl_runs_sort_parse("metrics.val_loss", &dflt[0], &desc, &e2);
        kl_runs_sort_parse("metrics.val_accuracy", &dflt[1], &desc, &e2);
        desc = false;
        add_col(cols, &ncols, &dflt[0]);
        add_col(cols, &ncols, &dflt[1]);
    }
    if (rc == 0 && (rc = open_root(c)) == 0) {
        printf("%-32s  %-8s  %-20s", "RUN", "STATUS", "START");
        for (int i = 0; i < ncols; i++) {
            char name[300];
            snprintf(name, sizeof name, "%s%s%s", strcmp(cols[i].table, "run") ? cols[i].table : "",
                     strcmp(cols[i].table, "run") ? "." : "", cols[i].key);
            int n = (int)strlen(name);
            o.width[i] = n < 12 ? 12 : n;
            printf("  %*s", o.width[i], name);
        }
        printf("\n");
        o.cols = cols;
        o.ncols = ncols;
        if (kl_runs_index_list(c->ix, conds, nconds, have_sort ? &sort : NULL, desc, cols, ncols,
                               list_row, &o, &err) != KL_OK)
            rc = fail(&err);
    }
    free(conds);
    free(cols);
    free(o.width);
    return rc;
}

/* --- show and compare -------------------------------------------------------------------- */

typedef struct run_doc {
    char *id;
    json_t *doc;
} run_doc;

json_t *kl__cli_run_load(kl_runs_index *ix, const char *run, char **id)
{
    kl_error err = {0};
    *id = kl_runs_resolve(ix, run, &err);
    if (!*id) {
        fail(&err);
        return NULL;
    }
    const char *root = kl_runs_index_root(ix);
    size_t n = strlen(root) + strlen(*id) + 16;
    char *path = malloc(n);
    if (!path)
        return NULL;
    snprintf(path, n, "%s/%s/run.json", root, *id);
    json_error_t je;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(doc)) {
        fprintf(stderr, "kiln runs: %s:%d: %s\n", path, je.line,
                doc ? "not a JSON object" : je.text);
        json_decref(doc);
        doc = NULL;
    }
    free(path);
    return doc;
}

static int load_run(runs_ctx *c, const char *run, run_doc *out)
{
    out->doc = kl__cli_run_load(c->ix, run, &out->id);
    return out->doc ? 0 : 1;
}

static void free_runs(run_doc *r, int n)
{
    for (int i = 0; i < n; i++) {
        free(r[i].id);
        json_decref(r[i].doc);
    }
    free(r);
}

/* A JSON value as text for a table cell (numbers in %g). */
static void text_of(const json_t *v, char *buf, size_t n)
{
    if (!v)
        snprintf(buf, n, "-");
    else if (json_is_string(v))
        snprintf(buf, n, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, n, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, n, "%.6g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
    else
        snprintf(buf, n, "null");
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static void print_git(const json_t *prov)
{
    const json_t *g = json_object_get(prov, "git");
    if (json_is_true(json_object_get(g, "available"))) {
        printf("git       %s%s", str(g, "commit"),
               json_is_true(json_object_get(g, "dirty")) ? " (dirty" : "");
        if (json_is_true(json_object_get(g, "dirty")))
            printf("%s%s)", json_object_get(g, "diff") ? ", uncommitted diff in " : "",
                   json_object_get(g, "diff") ? str(g, "diff") : "");
        printf("  %s\n", str(g, "repository"));
    } else {
        printf("git       not recorded: %s\n", str(g, "reason"));
    }
}

/* Whether a kiln process holds the run's folder (kiln.lock): a record that says running while
 * none does was left by a process that could not finish it. */
static bool still_running(const char *root, const char *id)
{
    size_t n = strlen(root) + strlen(id) + 2;
    char *dir = malloc(n);
    kl_lock *lock = NULL;
    kl_error err = {0};
    if (!dir)
        return true;
    snprintf(dir, n, "%s/%s", root, id);
    kl_status st = kl_dir_lock(dir, "run", &lock, &err);
    kl_dir_unlock(lock);
    free(dir);
    return st == KL_EBUSY;
}

static int show(runs_ctx *c, int argc, char **argv)
{
    if (argc != 2)
        return kl__cli_usage_error("runs", "show takes one RUN, got %d", argc - 1);
    int rc = open_root(c);
    run_doc r = {0};
    if (rc != 0 || (rc = load_run(c, argv[1], &r)) != 0) {
        free(r.id);
        json_decref(r.doc);
        return rc;
    }
    const json_t *d = r.doc, *prov = json_object_get(d, "provenance");
    char buf[512];
    printf("run       %s (%s/%s)\n", r.id, c->root, r.id);
    printf("name      %s\nkind      %s\n", str(d, "name"), str(d, "kind"));
    printf("status    %s", str(d, "status"));
    if (json_object_get(d, "exit_reason"))
        printf(" (%s)", str(d, "exit_reason"));
    else if (!strcmp(str(d, "status"), "running") && !still_running(c->root, r.id))
        printf(" (but no kiln holds its folder: the process ended without saying how, "
               "killed with SIGKILL or its machine lost)");
    printf("\nstart     %s\nend       %s\n", str(d, "start"), str(d, "end"));
    printf("kiln      %s\n", str(prov, "kiln_version"));
    print_git(prov);
    text_of(json_object_get(prov, "ranks"), buf, sizeof buf);
    printf("host      %s, %s rank%s, Slurm job %s\n", str(prov, "host"), buf,
           strcmp(buf, "1") ? "s" : "", str(prov, "slurm_job_id"));
    printf("config    %s\n", str(prov, "config"));
    const json_t *lin = json_object_get(d, "lineage");
    if (json_object_get(lin, "sweep")) {
        text_of(json_object_get(lin, "trial"), buf, sizeof buf);
        printf("sweep     %s, trial %s\n", str(lin, "sweep"), buf);
    }
    if (json_object_get(lin, "parent")) { /* a version online learning published */
        text_of(json_object_get(lin, "parent_version"), buf, sizeof buf);
        printf("parent    version %s, %s, run %s\n", buf, str(lin, "parent"),
               str(lin, "parent_run"));
    }
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(d, "data"), i, v)
    {
        text_of(json_object_get(v, "size"), buf, sizeof buf);
        printf("data      %-8s %s  %s bytes  sha256 %s\n", str(v, "role"), str(v, "path"), buf,
               str(v, "sha256"));
    }
    const char *key;
    json_t *val;
    printf("params\n");
    json_object_foreach(json_object_get(d, "params"), key, val)
    {
        text_of(val, buf, sizeof buf);
        printf("  %-40s %s\n", key, buf);
    }
    const json_t *m = json_object_get(d, "metrics");
    printf("metrics   %-28s %14s %14s\n", "", "final", "best");
    json_object_foreach(json_object_get(m, "final"), key, val)
    {
        char b2[64];
        text_of(val, buf, sizeof buf);
        text_of(json_object_get(json_object_get(m, "best"), key), b2, sizeof b2);
        printf("  %-36s %14s %14s\n", key, buf, b2);
    }
    printf("system\n");
    json_object_foreach(json_object_get(d, "system"), key, val)
    {
        text_of(val, buf, sizeof buf);
        printf("  %-40s %s\n", key, buf);
    }
    printf("tags\n");
    json_object_foreach(json_object_get(d, "tags"), key, val)
    {
        text_of(val, buf, sizeof buf);
        printf("  %s=%s\n", key, buf);
    }
    free(r.id);
    json_decref(r.doc);
    return 0;
}

/* Every key of object `field` (a dotted path of one or two parts) across the runs, once. */
static json_t *union_keys(const run_doc *r, int n, const char *field, const char *sub)
{
    json_t *keys = json_object();
    for (int i = 0; i < n; i++) {
        json_t *o = json_object_get(r[i].doc, field);
        if (sub)
            o = json_object_get(o, sub);
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) json_object_set_new(keys, k, json_true());
    }
    return keys;
}

static void compare_row(const char *label, const run_doc *r, int n, const char *field,
                        const char *sub, const char *key, bool all)
{
    char first[256], buf[256];
    bool differ = false;
    for (int i = 0; i < n; i++) {
        json_t *o = json_object_get(r[i].doc, field);
        if (sub)
            o = json_object_get(o, sub);
        text_of(json_object_get(o, key), i ? buf : first, sizeof buf);
        differ |= i && strcmp(buf, first) != 0;
    }
    if (!differ && !all)
        return;
    printf("  %-34s", label);
    for (int i = 0; i < n; i++) {
        json_t *o = json_object_get(r[i].doc, field);
        if (sub)
            o = json_object_get(o, sub);
        text_of(json_object_get(o, key), buf, sizeof buf);
        printf(" %20.20s", buf);
    }
    printf("\n");
}

static void compare_provenance(const run_doc *r, int n)
{
    const char *rows[][3] = {{"status", NULL, "status"},
                             {"kiln", "provenance", "kiln_version"},
                             {"host", "provenance", "host"},
                             {"ranks", "provenance", "ranks"}};
    for (size_t k = 0; k < sizeof rows / sizeof *rows; k++) {
        printf("  %-34s", rows[k][0]);
        for (int i = 0; i < n; i++) {
            char buf[256];
            const json_t *o = rows[k][1] ? json_object_get(r[i].doc, rows[k][1]) : r[i].doc;
            text_of(json_object_get(o, rows[k][2]), buf, sizeof buf);
            printf(" %20.20s", buf);
        }
        printf("\n");
    }
    printf("  %-34s", "git commit");
    for (int i = 0; i < n; i++) {
        const json_t *g = json_object_get(json_object_get(r[i].doc, "provenance"), "git");
        char buf[64];
        snprintf(buf, sizeof buf, "%.12s%s",
                 json_object_get(g, "commit") ? str(g, "commit") : "none",
                 json_is_true(json_object_get(g, "dirty")) ? "+dirty" : "");
        printf(" %20.20s", buf);
    }
    printf("\n  %-34s", "data sha256");
    for (int i = 0; i < n; i++) {
        char buf[256] = "";
        size_t j;
        const json_t *v;
        json_array_foreach(json_object_get(r[i].doc, "data"), j, v)
        {
            size_t k = strlen(buf);
            snprintf(buf + k, sizeof buf - k, "%s%.8s", k ? "," : "", str(v, "sha256"));
        }
        printf(" %20.20s", buf[0] ? buf : "-");
    }
    printf("\n");
}

static int compare(runs_ctx *c, int argc, char **argv)
{
    bool all = false;
    int n = 0, rc = 0;
    run_doc *r = calloc((size_t)argc, sizeof *r);
    if (!r)
        return 1;
    for (int i = 1; i < argc && rc == 0; i++)
        if (!strcmp(argv[i], "--all"))
            all = true;
        else if (argv[i][0] == '-')
            rc = kl__cli_usage_error("runs", "compare: unknown option '%s'", argv[i]);
        else
            n++;
    if (rc == 0 && n < 2)
        rc = kl__cli_usage_error("runs", "compare needs two runs or more, got %d", n);
    if (rc == 0)
        rc = open_root(c);
    n = 0;
    for (int i = 1; i < argc && rc == 0; i++)
        if (argv[i][0] != '-')
            rc = load_run(c, argv[i], &r[n++]);
    if (rc != 0) {
        free_runs(r, n);
        return rc;
    }
    printf("  %-34s", "");
    for (int i = 0; i < n; i++) {
        size_t len = strlen(r[i].id);
        printf(" %20s", len > 20 ? r[i].id + len - 20 : r[i].id);
    }
    printf("\nparams%s\n", all ? "" : " (those that differ; --all for every one)");
    json_t *keys = union_keys(r, n, "params", NULL);
    const char *k;
    json_t *v;
    int differing = 0;
    json_object_foreach(keys, k, v)
    {
        compare_row(k, r, n, "params", NULL, k, all);
        differing++;
    }
    json_decref(keys);
    printf("metrics (final)\n");
    keys = union_keys(r, n, "metrics", "final");
    json_object_foreach(keys, k, v) compare_row(k, r, n, "metrics", "final", k, true);
    json_decref(keys);
    printf("metrics (best)\n");
    keys = union_keys(r, n, "metrics", "best");
    json_object_foreach(keys, k, v) compare_row(k, r, n, "metrics", "best", k, true);
    json_decref(keys);
    printf("system\n");
    keys = union_keys(r, n, "system", NULL);
    json_object_foreach(keys, k, v) compare_row(k, r, n, "system", NULL, k, true);
    json_decref(keys);
    printf("provenance\n");
    compare_provenance(r, n);
    (void)differing;
    free_runs(r, n);
    return 0;
}

/* --- tag and delete ---------------------------------------------------------------------- */

static int tag(runs_ctx *c, int argc, char **argv)
{
    if (argc < 3)
        return kl__cli_usage_error("runs", "tag needs a RUN and KEY=VALUE");
    for (int i = 2; i < argc; i++)
        if (!strchr(argv[i], '=') || argv[i][0] == '=')
            return kl__cli_usage_error("runs", "tag: expected KEY=VALUE, got '%s'", argv[i]);
    int rc = open_root(c);
    kl_error err = {0};
    char *id = rc == 0 ? kl_runs_resolve(c->ix, argv[1], &err) : NULL;
    if (rc == 0 && !id)
        rc = fail(&err);
    for (int i = 2; i < argc && rc == 0; i++) {
        char *eq = strchr(argv[i], '=');
        *eq = '\0';
        if (kl_runs_tag(c->ix, id, argv[i], eq[1] ? eq + 1 : NULL, &err) != KL_OK)
            rc = fail(&err);
        else if (eq[1])
            printf("%s: tag %s=%s\n", id, argv[i], eq + 1);
        else
            printf("%s: tag %s removed\n", id, argv[i]);
        *eq = '=';
    }
    free(id);
    return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Moves (or with purge removes) one run folder, refusing one a kiln still writes. */
static int delete_one(runs_ctx *c, const char *run, bool purge)
{
    kl_error err = {0};
    char *id = kl_runs_resolve(c->ix, run, &err);
    if (!id)
        return fail(&err);
    size_t n = strlen(c->root) + strlen(id) * 2 + 64;
    char *dir = malloc(n), *to = malloc(n);
    kl_lock *lock = NULL;
    int rc = 0;
    if (!dir || !to) {
        rc = 1;
        goto out;
    }
    snprintf(dir, n, "%s/%s", c->root, id);
    if (kl_dir_lock(dir, "run", &lock, &err) != KL_OK) {
        rc = fail(&err);
        goto out;
    }
    if (purge) {
        if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
            fprintf(stderr, "kiln runs: cannot remove %s: %s\n", dir, strerror(errno));
            rc = 1;
        }
    } else {
        snprintf(to, n, "%s/.trash", c->root);
        mkdir(to, 0755);
        char stamp[32];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
        int k = snprintf(to, n, "%s/.trash/%s-%s", c->root, id, stamp);
        for (char *p = to + k - strlen(id) - strlen(stamp) - 1; *p; p++)
            if (*p == '/')
                *p = '_'; /* a trial's id: sweep/trials/trial-0001 */
        if (rename(dir, to) != 0) {
            fprintf(stderr, "kiln runs: cannot move %s to %s: %s\n", dir, to, strerror(errno));
            rc = 1;
        }
    }
    if (rc == 0 && kl_runs_index_remove(c->ix, id, &err) != KL_OK)
        rc = fail(&err);
    if (rc == 0)
        printf("%s %s%s%s\n", purge ? "removed" : "moved", dir, purge ? "" : " to ",
               purge ? "" : to);
out:
    kl_dir_unlock(lock);
    free(dir);
    free(to);
    free(id);
    return rc;
}

static int delete_runs(runs_ctx *c, int argc, char **argv)
{
    bool purge = false;
    int n = 0;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--purge"))
            purge = true;
        else if (argv[i][0] == '-')
            return kl__cli_usage_error("runs", "delete: unknown option '%s'", argv[i]);
        else
            n++;
    if (n == 0)
        return kl__cli_usage_error("runs", "delete needs a RUN");
    int rc = open_root(c);
    for (int i = 1; i < argc && rc == 0; i++)
        if (argv[i][0] != '-')
            rc = delete_one(c, argv[i], purge);
    return rc;
}

/* The ids of every run in the index, oldest first. */
typedef struct id_list {
    char **v;
    int n, cap;
} id_list;

static bool collect_id(void *ctx, const kl_runs_row *r)
{
    id_list *l = ctx;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        char **v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    return (l->v[l->n] = strdup(r->id)) && ++l->n;
}

static int export_runs(runs_ctx *c, int argc, char **argv)
{
    const char *dir = NULL, *name = NULL;
    id_list ids = {0};
    int rc = 0;
    kl_error err = {0};
    for (int i = 1; i < argc && rc == 0; i++) {
        if (!strcmp(argv[i], "--mlflow") || !strcmp(argv[i], "--experiment")) {
            if (i + 1 >= argc)
                rc = kl__cli_usage_error("runs", "export: %s needs a value", argv[i]);
            else if (!strcmp(argv[i], "--mlflow"))
                dir = argv[++i];
            else
                name = argv[++i];
        } else if (argv[i][0] == '-') {
            rc = kl__cli_usage_error("runs", "export: unknown option '%s'", argv[i]);
        }
    }
    if (rc == 0 && !dir)
        rc = kl__cli_usage_error("runs", "export: which format? --mlflow DIR (the only one so "
                                         "far)");
    if (rc == 0)
        rc = open_root(c);
    for (int i = 1; i < argc && rc == 0; i++) { /* RUN...; none: every run */
        if (!strcmp(argv[i], "--mlflow") || !strcmp(argv[i], "--experiment"))
            i++;
        else {
            char *id = kl_runs_resolve(c->ix, argv[i], &err);
            if (!id)
                rc = fail(&err);
            else if (!collect_id(&ids, &(kl_runs_row){.id = id}))
                rc = 1;
            free(id);
        }
    }
    bool all = rc == 0 && ids.n == 0;
    if (all &&
        kl_runs_index_list(c->ix, NULL, 0, NULL, false, NULL, 0, collect_id, &ids, &err) != KL_OK)
        rc = fail(&err);
    char base[PATH_MAX];
    if (rc == 0 && !name) { /* the root's folder name */
        const char *r = realpath(c->root, base) ? base : c->root;
        name = strrchr(r, '/') && strrchr(r, '/')[1] ? strrchr(r, '/') + 1 : r;
    }
    if (rc == 0 &&
        kl_runs_export_mlflow(c->ix, (const char *const *)ids.v, ids.n, dir, name, &err) != KL_OK)
        rc = fail(&err);
    if (rc == 0)
        printf("exported %d run%s to %s (MLflow file store, experiment '%s')\n", ids.n,
               ids.n == 1 ? "" : "s", dir, name);
    for (int i = 0; i < ids.n; i++)
        free(ids.v[i]);
    free(ids.v);
    return rc;
}

static int report(runs_ctx *c, int argc, char **argv)
{
    return kl__cli_runs_report(c->root, argc, argv);
}

/* --- dispatch ---------------------------------------------------------------------------- */

static const struct {
    const char *name;
    int (*run)(runs_ctx *c, int argc, char **argv);
} subcommands[] = {{"list", list},         {"show", show},          {"compare", compare},
                   {"tag", tag},           {"delete", delete_runs}, {"report", report},
                   {"export", export_runs}};

int kl__cli_runs(int argc, char **argv)
{
    runs_ctx c = {.root = "runs"};
    /* --root may come before or after the command: take it out of argv either way. */
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int n = 0, rc = -1;
    if (!args)
        return 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(runs_help, stdout);
            rc = 0;
        } else if (!strcmp(argv[i], "--root")) {
            if (i + 1 >= argc)
                rc = kl__cli_usage_error("runs", "--root needs a folder");
            else
                c.root = argv[++i];
        } else {
            args[n++] = argv[i];
        }
        if (rc >= 0)
            break;
    }
    if (rc < 0 && n == 0)
        rc = kl__cli_usage_error(
            "runs", "which command? list, show, compare, tag, delete, report or export");
    for (size_t k = 0; rc < 0 && k < sizeof subcommands / sizeof *subcommands; k++)
        if (!strcmp(args[0], subcommands[k].name))
            rc = subcommands[k].run(&c, n, args);
    if (rc < 0)
        rc = kl__cli_usage_error(
            "runs", "unknown command '%s': use list, show, compare, tag, delete, report or export",
            args[0]);
    kl_runs_index_close(c.ix);
    free(args);
    return rc;
}
