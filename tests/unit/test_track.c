/* Tests for track/: the --where and --sort parser (fields, operators, values, and errors that name
 * the expression and the column), the fingerprint cache (hashed once per path, size and mtime;
 * a changed file hashed again), the recorder (run.json's params, metrics, status, git provenance
 * and diff), the index (sync with the folders, conditions, sorting, resolving a RUN, tags) and
 * many processes writing one index at once. */
#define _XOPEN_SOURCE 700
#include <fcntl.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "check_tmp.h"
#include "kiln/track.h"

static void test_where(void)
{
    kl_runs_cond c;
    kl_error err = {0};
    CHECK_OK(kl_runs_cond_parse("params.optimizer.lr<1e-3", &c, &err), &err);
    CHECK(!strcmp(c.table, "params") && !strcmp(c.key, "optimizer.lr") && c.op == KL_RUNS_LT &&
          c.numeric && c.num == 1e-3);
    CHECK_OK(kl_runs_cond_parse(" metrics.val_accuracy >= 0.9 ", &c, &err), &err);
    CHECK(!strcmp(c.table, "metrics") && !strcmp(c.key, "val_accuracy") && c.op == KL_RUNS_GE &&
          c.num == 0.9);
    CHECK_OK(kl_runs_cond_parse("status=finished", &c, &err), &err);
    CHECK(!strcmp(c.table, "run") && !strcmp(c.key, "status") && c.op == KL_RUNS_EQ && !c.numeric &&
          !strcmp(c.text, "finished"));
    CHECK_OK(kl_runs_cond_parse("tags.team!='a b'", &c, &err), &err);
    CHECK(!strcmp(c.table, "tags") && c.op == KL_RUNS_NE && !strcmp(c.text, "a b"));
    CHECK_OK(kl_runs_cond_parse("best.val_loss<=0.5", &c, &err), &err);
    CHECK(!strcmp(c.table, "best") && c.op == KL_RUNS_LE);
    CHECK_OK(kl_runs_cond_parse("params.optimizer.name==adam", &c, &err), &err);
    CHECK(c.op == KL_RUNS_EQ && !c.numeric && !strcmp(c.text, "adam"));
    CHECK_OK(kl_runs_cond_parse("params.train.epochs='3'", &c, &err), &err);
    CHECK(!c.numeric && !strcmp(c.text, "3")); /* quoted: text */

    struct {
        const char *expr, *msg;
    } bad[] = {
        {"params.x<<1", "--where 'params.x<<1': unexpected '<' at column 10"},
        {"foo<1", "unknown field 'foo'"},
        {"params.x", "expected a comparison (<, <=, >, >=, =, !=) at column 9"},
        {"params.x<", "expected a value at column 10"},
        {"<3", "expected a field at column 1"},
        {"metrics.val_loss<abc", "metrics.val_loss is a number; 'abc' is not"},
        {"params.<1", "unknown field 'params.'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err = (kl_error){0};
        CHECK(kl_runs_cond_parse(bad[i].expr, &c, &err) == KL_EINVAL);
        if (!CHECK(strstr(err.msg, bad[i].msg) != NULL))
            fprintf(stderr, "    %s: got '%s'\n", bad[i].expr, err.msg);
    }
    bool desc = false;
    CHECK_OK(kl_runs_sort_parse("-metrics.val_loss", &c, &desc, &err), &err);
    CHECK(desc && !strcmp(c.table, "metrics") && !strcmp(c.key, "val_loss"));
    CHECK_OK(kl_runs_sort_parse("params.optimizer.lr", &c, &desc, &err), &err);
    CHECK(!desc && !strcmp(c.table, "params"));
    CHECK(kl_runs_sort_parse("metrics.a<b", &c, &desc, &err) == KL_EINVAL &&
          strstr(err.msg, "--sort 'metrics.a<b': unexpected '<' at column 10"));
    CHECK(kl_runs_sort_parse("bogus", &c, &desc, &err) == KL_EINVAL &&
          strstr(err.msg, "--sort 'bogus': unknown field"));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    KL_ASSERT(f);
    fputs(text, f);
    fclose(f);
}

static void test_fingerprint(void)
{
    const char *root = in_tmp("fp");
    mkdir(root, 0755);
    kl_runs_index *ix = NULL;
    kl_error err = {0};
    CHECK_OK(kl_runs_index_open(root, &ix, &err), &err);
    char path[300];
    snprintf(path, sizeof path, "%s/data.txt", root);
    write_file(path, "hello\n");
    kl_fingerprint fp;
    CHECK_OK(kl_fingerprint_file(ix, path, &fp, &err), &err);
    CHECK(!fp.cached && fp.size == 6);
    CHECK(!strcmp(fp.sha256, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"));
    CHECK_OK(kl_fingerprint_file(ix, path, &fp, &err), &err);
    CHECK(fp.cached); /* the same path, size and mtime: from the cache */
    /* The same size, other bytes and another mtime: hashed again. */
    write_file(path, "world\n");
    struct timespec t[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    utimensat(AT_FDCWD, path, t, 0);
    CHECK_OK(kl_fingerprint_file(ix, path, &fp, &err), &err);
    CHECK(!fp.cached && fp.mtime_ns == 1000000000LL * 1000000000LL);
    CHECK(!strcmp(fp.sha256, "e258d248fda94c63753607f7c4494ee0fcbe92f1a76bfdac795c9d84101eb317"));
    /* The cache outlives the handle: it is in the index file. */
    kl_runs_index_close(ix);
    CHECK_OK(kl_runs_index_open(root, &ix, &err), &err);
    CHECK_OK(kl_fingerprint_file(ix, path, &fp, &err), &err);
    CHECK(fp.cached);
    CHECK_OK(kl_fingerprint_file(NULL, path, &fp, &err), &err);
    CHECK(!fp.cached);
    char missing[320];
    snprintf(missing, sizeof missing, "%s/missing.csv", root);
    CHECK(kl_fingerprint_file(ix, missing, &fp, &err) == KL_EIO && strstr(err.msg, "missing.csv"));
    kl_runs_index_close(ix);
}

/* A run folder <root>/<id> with a run.json of these params, final metrics and status. */
static void make_run(const char *root, const char *id, double lr, double acc, const char *status)
{
    char path[512], text[1024];
    snprintf(path, sizeof path, "mkdir -p '%s/%s'", root, id);
    KL_ASSERT(system(path) == 0);
    snprintf(path, sizeof path, "%s/%s/run.json", root, id);
    snprintf(text, sizeof text,
             "{\"format\": \"kiln-run\", \"format_version\": 1, \"kind\": \"train\", \"name\": "
             "\"%s\", \"status\": \"%s\", \"start\": \"2026-12-01T00:00:%02dZ\", \"params\": "
             "{\"optimizer.lr\": %g, \"optimizer.name\": \"adam\"}, \"metrics\": {\"final\": "
             "{\"val_accuracy\": %g}, \"best\": {\"val_accuracy\": %g}}, \"tags\": {}}\n",
             strrchr(id, '/') ? strrchr(id, '/') + 1 : id, status, (int)(acc * 50), lr, acc, acc);
    char tmp[520]; /* renamed into place, as the recorder writes: a sync never sees half */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    write_file(tmp, text);
    KL_ASSERT(rename(tmp, path) == 0);
}

typedef struct collected {
    char ids[16][64];
    double v[16];
    int n;
} collected;

static bool collect(void *ctx, const kl_runs_row *r)
{
    collected *c = ctx;
    if (c->n < 16) {
        snprintf(c->ids[c->n], sizeof c->ids[c->n], "%s", r->id);
        c->v[c->n++] = r->values[0];
    }
    return true;
}

static int list(kl_runs_index *ix, const char *where, const char *sort, collected *out)
{
    kl_runs_cond cond, srt, col;
    bool desc = false;
    kl_error err = {0};
    memset(out, 0, sizeof *out);
    KL_ASSERT(kl_runs_sort_parse("metrics.val_accuracy", &col, &desc, &err) == KL_OK);
    if (where)
        KL_ASSERT(kl_runs_cond_parse(where, &cond, &err) == KL_OK);
    if (sort)
        KL_ASSERT(kl_runs_sort_parse(sort, &srt, &desc, &err) == KL_OK);
    CHECK_OK(kl_runs_index_list(ix, where ? &cond : NULL, where ? 1 : 0, sort ? &srt : NULL, desc,
                                &col, 1, collect, out, &err),
             &err);
    return out->n;
}

static void test_index(void)
{
    const char *root = in_tmp("ix");
    mkdir(root, 0755);
    make_run(root, "a", 1e-2, 0.9, "finished");
    make_run(root, "b", 1e-4, 0.8, "finished");
    make_run(root, "sw/trials/trial-0000", 1e-3, 0.95, "running");
    make_run(root, "sw/trials/trial-0001", 1e-3, 0.7, "failed");
    kl_runs_index *ix = NULL;
    kl_error err = {0};
    int changed = 0;
    CHECK_OK(kl_runs_index_open(root, &ix, &err), &err);
    CHECK_OK(kl_runs_index_sync(ix, &changed, &err), &err);
    CHECK(changed == 4);
    CHECK_OK(kl_runs_index_sync(ix, &changed, &err), &err);
    CHECK(changed == 0); /* nothing changed on disk */
    collected c;
    CHECK(list(ix, NULL, NULL, &c) == 4);
    CHECK(list(ix, "params.optimizer.lr<5e-3", "-metrics.val_accuracy", &c) == 3);
    CHECK(!strcmp(c.ids[0], "sw/trials/trial-0000") && !strcmp(c.ids[1], "b") &&
          !strcmp(c.ids[2], "sw/trials/trial-0001") && c.v[0] == 0.95);
    CHECK(list(ix, "metrics.val_accuracy>0.85", "metrics.val_accuracy", &c) == 2);
    CHECK(!strcmp(c.ids[0], "a") && !strcmp(c.ids[1], "sw/trials/trial-0000"));
    CHECK(list(ix, "status=failed", NULL, &c) == 1 && !strcmp(c.ids[0], "sw/trials/trial-0001"));
    CHECK(list(ix, "params.optimizer.name=adam", NULL, &c) == 4);
    CHECK(list(ix, "params.nothing=1", NULL, &c) == 0);

    char *id = kl_runs_resolve(ix, "trial-0001", &err); /* a unique suffix */
    CHECK(id && !strcmp(id, "sw/trials/trial-0001"));
    free(id);
    char path[512];
    snprintf(path, sizeof path, "%s/b", root); /* a folder's path */
    CHECK((id = kl_runs_resolve(ix, path, &err)) && !strcmp(id, "b"));
    free(id);
    CHECK(!kl_runs_resolve(ix, "nope", &err) && err.status == KL_ENOTFOUND &&
          strstr(err.msg, "no run 'nope'"));
    make_run(root, "other/trials/trial-0001", 1, 0.1, "finished");
    CHECK_OK(kl_runs_index_sync(ix, &changed, &err), &err);
    CHECK(changed == 1);
    CHECK(!kl_runs_resolve(ix, "trial-0001", &err) && err.status == KL_EINVAL &&
          strstr(err.msg, "ambiguous"));

    /* Tags go to run.json (the truth) and the index. */
    CHECK_OK(kl_runs_tag(ix, "a", "team", "vision", &err), &err);
    CHECK(list(ix, "tags.team=vision", NULL, &c) == 1 && !strcmp(c.ids[0], "a"));
    snprintf(path, sizeof path, "%s/a/run.json", root);
    json_t *doc = json_load_file(path, 0, NULL);
    CHECK(doc && !strcmp(json_string_value(json_object_get(json_object_get(doc, "tags"), "team")),
                         "vision"));
    json_decref(doc);
    CHECK_OK(kl_runs_tag(ix, "a", "team", NULL, &err), &err);
    CHECK(list(ix, "tags.team=vision", NULL, &c) == 0);

    /* A folder gone and a damaged run.json: dropped from the index, the rest still listed. */
    snprintf(path, sizeof path, "rm -rf '%s/b'", root);
    KL_ASSERT(system(path) == 0);
    snprintf(path, sizeof path, "%s/a/run.json", root);
    write_file(path, "{\"format\": \"kiln-run\", \"params\": ");
    CHECK_OK(kl_runs_index_sync(ix, &changed, &err), &err);
    CHECK(changed == 2 && list(ix, NULL, NULL, &c) == 3);
    kl_runs_index_close(ix);

    /* The index file removed (or damaged): rebuilt from the folders. */
    snprintf(path, sizeof path, "%s/%s", root, KL_RUNS_INDEX_NAME);
    write_file(path, "this is not a database, only junk bytes that SQLite must refuse........");
    snprintf(path, sizeof path, "rm -f '%s/%s-wal' '%s/%s-shm'", root, KL_RUNS_INDEX_NAME, root,
             KL_RUNS_INDEX_NAME);
    KL_ASSERT(system(path) == 0);
    CHECK_OK(kl_runs_index_open(root, &ix, &err), &err);
    CHECK_OK(kl_runs_index_sync(ix, &changed, &err), &err);
    CHECK(list(ix, NULL, NULL, &c) == 3);
    kl_runs_index_close(ix);
}

/* WRITERS processes each record RUNS runs and sync at once; every run is indexed once and the
 * database is intact. */
static void test_concurrent(void)
{
    enum { WRITERS = 16, RUNS = 25 };
    const char *root = in_tmp("many");
    mkdir(root, 0755);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        if ((pids[w] = fork()) == 0) {
            int bad = 0;
            for (int k = 0; k < RUNS; k++) {
                char id[64];
                snprintf(id, sizeof id, "w%02d-r%02d", w, k);
                make_run(root, id, 1e-3 * (k + 1), 0.5, "finished");
                kl_runs_index *ix = NULL;
                kl_error err = {0};
                int changed;
                if (kl_runs_index_open(root, &ix, &err) != KL_OK ||
                    kl_runs_index_put(ix, id, &err) != KL_OK ||
                    (k % 5 == 0 && kl_runs_index_sync(ix, &changed, &err) != KL_OK)) {
                    fprintf(stderr, "writer %d: %s\n", w, err.msg);
                    bad = 1;
                }
                kl_runs_index_close(ix);
            }
            _exit(bad);
        }
    }
    int failed = 0;
    for (int w = 0; w < WRITERS; w++) {
        int st = 0;
        waitpid(pids[w], &st, 0);
        failed += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    CHECK(failed == 0);
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, KL_RUNS_INDEX_NAME);
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
          sqlite3_step(s) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(s, 0), "ok"));
    sqlite3_finalize(s);
    CHECK(sqlite3_prepare_v2(db, "SELECT COUNT(*), COUNT(DISTINCT id) FROM runs", -1, &s, NULL) ==
              SQLITE_OK &&
          sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == WRITERS * RUNS &&
          sqlite3_column_int(s, 1) == WRITERS * RUNS);
    sqlite3_finalize(s);
    CHECK(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM params", -1, &s, NULL) == SQLITE_OK &&
          sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int(s, 0) == 2 * WRITERS * RUNS);
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static json_t *load(const char *path)
{
    json_t *doc = json_load_file(path, 0, NULL);
    CHECK(doc != NULL);
    return doc;
}

static const char *jstr(json_t *doc, const char *a, const char *b)
{
    json_t *o = json_object_get(doc, a);
    return json_string_value(b ? json_object_get(o, b) : o);
}

static void test_record(void)
{
    char cmd[1024];
    const char *repo = in_tmp("repo");
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/runs/r1' && cd '%s' && printf 'a,label\\n1,0\\n' > d.csv && "
             "printf 'data: {train: {format: csv, path: d.csv}}\\noptimizer: {lr: 0.25}\\n' > "
             "c.yaml && git init -q && git add c.yaml && git -c user.email=t@t -c user.name=t "
             "commit -qm c && echo '# changed' >> c.yaml",
             repo, repo);
    KL_ASSERT(system(cmd) == 0);
    char cfgpath[300], dir[300], path[400];
    snprintf(cfgpath, sizeof cfgpath, "%s/c.yaml", repo);
    snprintf(dir, sizeof dir, "%s/runs/r1", repo);
    kl_error err = {0};
    KL_ASSERT(chdir(repo) == 0); /* data paths are relative to the working folder */
    kl_config *cfg = kl_config_load(cfgpath, NULL, 0, &err);
    CHECK(cfg != NULL);
    if (!cfg) {
        fprintf(stderr, "    %s\n", err.msg);
        return;
    }
    kl_run_info ri = {.dir = dir, .kind = "train", .cfg = cfg, .ranks = 2, .trial = -1};
    kl_run_recorder *r = kl_run_record_begin(&ri);
    CHECK(r != NULL);
    snprintf(path, sizeof path, "%s/run.json", dir);
    json_t *doc = load(path);
    CHECK(!strcmp(jstr(doc, "status", NULL), "running"));
    json_decref(doc);
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    write_file(path, "epoch,step,train_loss,train_accuracy,val_loss,val_accuracy,val_mae,lr,"
                     "samples_per_s,seconds\n1,10,0.9,0.5,0.8,0.6,,0.1,100,1\n"
                     "2,20,0.7,0.7,0.5,0.8,,0.1,300,1\n3,30,0.6,0.75,0.6,0.7,,0.1,200,1\n");
    kl_run_record_metric(r, "test_accuracy", 0.66);
    kl_run_record_end(r, KL_OK, NULL);
    snprintf(path, sizeof path, "%s/run.json", dir);
    doc = load(path);
    json_t *m = json_object_get(doc, "metrics"), *fin = json_object_get(m, "final"),
           *best = json_object_get(m, "best"), *params = json_object_get(doc, "params");
    CHECK(!strcmp(jstr(doc, "status", NULL), "finished"));
    CHECK(!strcmp(jstr(doc, "exit_reason", NULL), "trained 3 epochs"));
    CHECK(json_real_value(json_object_get(fin, "val_loss")) == 0.6);
    CHECK(json_real_value(json_object_get(best, "val_loss")) == 0.5);
    CHECK(json_real_value(json_object_get(best, "val_accuracy")) == 0.8);
    CHECK(json_real_value(json_object_get(fin, "test_accuracy")) == 0.66);
    CHECK(json_integer_value(json_object_get(fin, "epoch")) == 3);
    CHECK(!json_object_get(fin, "val_mae"));
    CHECK(json_real_value(json_object_get(params, "optimizer.lr")) == 0.25);
    CHECK(!strcmp(json_string_value(json_object_get(params, "data.train.format")), "csv"));
    CHECK(json_real_value(json_object_get(json_object_get(doc, "system"), "samples_per_s")) == 200);
    json_t *prov = json_object_get(doc, "provenance"), *git = json_object_get(prov, "git");
    CHECK(json_integer_value(json_object_get(prov, "ranks")) == 2);
    CHECK(json_is_true(json_object_get(git, "available")) &&
          json_is_true(json_object_get(git, "dirty")) &&
          strlen(json_string_value(json_object_get(git, "commit"))) == 40);
    json_t *data0 = json_array_get(json_object_get(doc, "data"), 0);
    CHECK(json_integer_value(json_object_get(data0, "size")) == 12 &&
          strlen(json_string_value(json_object_get(data0, "sha256"))) == 64);
    json_decref(doc);
    snprintf(path, sizeof path, "%s/git.diff", dir);
    FILE *f = fopen(path, "r");
    char diff[4096] = "";
    CHECK(f && fread(diff, 1, sizeof diff - 1, f) > 0 && strstr(diff, "+# changed"));
    if (f)
        fclose(f);

    /* A failed run says why; indexed with its status. */
    r = kl_run_record_begin(&ri);
    kl_run_record_end(r, KL_EIO, "disk full");
    snprintf(path, sizeof path, "%s/run.json", dir);
    doc = load(path);
    CHECK(!strcmp(jstr(doc, "status", NULL), "failed") &&
          !strcmp(jstr(doc, "exit_reason", NULL), "disk full") &&
          json_integer_value(json_object_get(doc, "attempts")) == 2);
    json_decref(doc);
    kl_config_free(cfg);

    /* Outside a repository, without git on PATH: said in the record, the run recorded. */
    snprintf(cmd, sizeof cmd, "rm -rf '%s/.git'", repo);
    KL_ASSERT(system(cmd) == 0);
    const char *old = getenv("PATH");
    char *saved = old ? strdup(old) : NULL;
    setenv("PATH", "/nonexistent", 1);
    cfg = kl_config_load(cfgpath, NULL, 0, &err);
    ri.cfg = cfg;
    r = kl_run_record_begin(&ri);
    kl_run_record_end(r, KL_ESTOPPED, "stopped");
    if (saved)
        setenv("PATH", saved, 1);
    free(saved);
    doc = load(path);
    git = json_object_get(json_object_get(doc, "provenance"), "git");
    CHECK(json_is_false(json_object_get(git, "available")) &&
          !strcmp(json_string_value(json_object_get(git, "reason")), "git is not installed"));
    CHECK(!strcmp(jstr(doc, "status", NULL), "killed"));
    json_decref(doc);
    kl_config_free(cfg);
}

static const check_case cases[] = {
    CHECK_CASE(test_where),      CHECK_CASE(test_fingerprint), CHECK_CASE(test_index),
    CHECK_CASE(test_concurrent), CHECK_CASE(test_record),
};

int main(int argc, char **argv)
{
    check_tmp_make("track");
    int rc = check_run("test_track", cases, CHECK_NCASES(cases), argc, argv);
    check_tmp_remove();
    return rc;
}
