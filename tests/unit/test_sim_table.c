/* Tests for tabular simulation (tune/sim_table.c, kl_simulate_sweep in tune/simulate.c): a
 * small synthetic table whose rows carry their configuration; a proposal snaps to the nearest
 * row in the sweep's normalised space (log space for log distributions, where linear distance
 * would pick another row; exact for listed values), a grid sweep trains along exactly its
 * points, random and TPE sweeps run deterministically, and the table's errors: a missing
 * parameter column, a cell that is not a number, a configuration that changes within a trial,
 * a proposal whose listed values no row has. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/simulate.h"
#include "kiln/sweep.h"
#include "tune/curves_impl.h"

static char dir[64], sweep_path[128], base_path[128];

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!check_(f != NULL, __FILE__, __LINE__, "temporary file opens"))
        return;
    fputs(text, f);
    fclose(f);
}

static kl_sweep *sweep(const char *method, const char *lr, int run_cap)
{
    char text[1024];
    snprintf(text, sizeof text,
             "base: base.yaml\nmetric: {name: val_accuracy}\nmethod: %s\nrun_cap: %d\nseed: 4\n"
             "parameters:\n"
             "  optimizer.lr: %s\n"
             "  model.layers.1.rate: {uniform: {min: 0, max: 0.5}}\n"
             "  optimizer.name: {values: [adam, sgd]}\n"
             "  data.limit: {value: 500}\n"
             "scheduler: {type: asha, max_t: 4, grace_period: 1, reduction_factor: 2}\n",
             method, run_cap, lr);
    write_file(sweep_path, text);
    kl_error err = {0};
    kl_sweep *s = kl_sweep_load(sweep_path, &err);
    if (!check_(s != NULL, __FILE__, __LINE__, "sweep loads"))
        fprintf(stderr, "    %s\n", err.msg);
    return s;
}

#define LR_RANGE "{log_uniform_values: {min: 1e-4, max: 1e-2}}"

/* Six configurations: lr 1e-4, 1e-3, 1e-2 x name adam, sgd, rate 0.25; four epochs each. The
 * value at t is the row's quality q times t / 4, so a better row is better at every t. */
static char *table_text(void)
{
    static const char *lrs[] = {"1e-4", "1e-3", "1e-2"};
    static const char *names[] = {"adam", "sgd"};
    static char text[4096];
    size_t len = (size_t)snprintf(
        text, sizeof text, "trial,t,value,optimizer.lr,model.layers.1.rate,optimizer.name\n");
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++)
            for (int t = 1; t <= 4; t++) {
                double q = 0.5 + 0.1 * i + 0.05 * k;
                len += (size_t)snprintf(text + len, sizeof text - len, "%s-%s,%d,%.4f,%s,0.25,%s\n",
                                        lrs[i], names[k], t, q * t / 4, lrs[i], names[k]);
            }
    return text;
}

static kl_curves *table(const char *text)
{
    kl_error err = {0};
    kl_curves *c = kl_curves_parse(text, strlen(text), "table.csv", &err);
    if (!check_(c != NULL, __FILE__, __LINE__, "table parses"))
        fprintf(stderr, "    %s\n", err.msg);
    return c;
}

static int64_t snap(const kl__sim_table *t, const char *lr, const char *rate, const char *name)
{
    char a[64], b[64], c[64], d[] = "data.limit=500";
    snprintf(a, sizeof a, "optimizer.lr=%s", lr);
    snprintf(b, sizeof b, "model.layers.1.rate=%s", rate);
    snprintf(c, sizeof c, "optimizer.name=%s", name);
    char *ov[] = {a, b, c, d};
    kl_error err = {0};
    return kl__sim_table_snap(t, ov, 0, &err);
}

static void test_snap(void)
{
    kl_sweep *sw = sweep("random", LR_RANGE, 10);
    kl_curves *c = table(table_text());
    if (!sw || !c)
        goto out;
    CHECK(kl_curves_tabular(c, sw) && c->ncols == 3);
    kl__sim_table *t = NULL;
    kl_error err = {0};
    CHECK_OK(kl__sim_table_new(sw, c, "table.csv", &t, &err), &err);
    if (!t)
        goto out;
    /* Rows: 0 1e-4 adam, 1 1e-4 sgd, 2 1e-3 adam, 3 1e-3 sgd, 4 1e-2 adam, 5 1e-2 sgd. 4e-4 is
     * nearer 1e-3 in log space (log10 -3.4), nearer 1e-4 in linear space. */
    CHECK(snap(t, "0.0004", "0.25", "adam") == 2);
    CHECK(snap(t, "0.0002", "0.25", "adam") == 0);
    CHECK(snap(t, "0.0004", "0.25", "sgd") == 3);
    CHECK(snap(t, "0.01", "0", "sgd") == 5);
    /* The listed value decides first: sgd's rows only, however near an adam row is. */
    CHECK(snap(t, "0.001", "0.25", "sgd") == 3);
    char a[] = "optimizer.lr=0.001", b[] = "model.layers.1.rate=0.1", d[] = "data.limit=500";
    char e[] = "optimizer.name=adamw";
    char *ov[] = {a, b, e, d};
    CHECK(kl__sim_table_snap(t, ov, 7, &err) == -1);
    CHECK(strstr(err.msg, "trial 7's configuration matches no row of the table: no row has "
                          "optimizer.name=adamw") != NULL);
    kl__sim_table_free(t);
out:
    kl_curves_free(c);
    kl_sweep_free(sw);
}

/* A grid over the tabulated values trains along exactly its points, in grid order. */
static void test_grid(void)
{
    kl_curves *c = table(table_text());
    kl_sim_result r = {0};
    kl_error err = {0};
    kl_sweep *sw = NULL;
    if (!c)
        goto out;
    write_file(sweep_path, "base: base.yaml\nmetric: {name: val_accuracy}\nmethod: grid\n"
                           "parameters:\n"
                           "  optimizer.lr: {values: [1e-4, 1e-3, 1e-2]}\n"
                           "  model.layers.1.rate: {values: [0.25]}\n"
                           "  optimizer.name: {values: [adam, sgd]}\n"
                           "scheduler: {type: fifo, max_t: 4}\n");
    sw = kl_sweep_load(sweep_path, &err);
    if (!check_(sw != NULL, __FILE__, __LINE__, err.msg))
        goto out;
    CHECK_OK(kl_simulate_sweep(sw, c, "table.csv", 2, &r, &err), &err);
    static const char *want[] = {"1e-4-adam", "1e-4-sgd",  "1e-3-adam",
                                 "1e-3-sgd",  "1e-2-adam", "1e-2-sgd"};
    CHECK(r.ntrials == 6 && r.n_done == 6 && r.epochs == 24);
    for (int i = 0; i < 6 && r.ntrials == 6; i++)
        CHECK(r.trial[i].label && !strcmp(r.trial[i].label, want[i]));
    CHECK(r.best_trial == 5);
    CHECK_NEAR(r.best_value, 0.75, 1e-12);
    kl_sim_result_free(&r);
out:
    kl_curves_free(c);
    kl_sweep_free(sw);
}

/* The sweep's time_budget, in simulated time (one unit an epoch without a seconds column): the
 * grid's six 4-epoch trials on 2 workers start in pairs at 0, 4 and 8; a budget of 5 lets the
 * pair at 4 start and not the one at 8, whose trials stay unstarted, and says it held them back;
 * the same sweep without the key runs all six. */
static void test_time_budget(void)
{
    kl_curves *c = table(table_text());
    kl_sweep *sw = NULL;
    kl_sim_result r = {0};
    kl_error err = {0};
    const char *grid = "base: base.yaml\nmetric: {name: val_accuracy}\nmethod: grid\n"
                       "parameters:\n"
                       "  optimizer.lr: {values: [1e-4, 1e-3, 1e-2]}\n"
                       "  model.layers.1.rate: {values: [0.25]}\n"
                       "  optimizer.name: {values: [adam, sgd]}\n"
                       "scheduler: {type: fifo, max_t: 4}\n";
    char text[1024];
    snprintf(text, sizeof text, "%stime_budget: 5\n", grid);
    write_file(sweep_path, text);
    if (!c || !check_((sw = kl_sweep_load(sweep_path, &err)) != NULL, __FILE__, __LINE__, err.msg))
        goto out;
    CHECK_OK(kl_simulate_sweep(sw, c, "table.csv", 2, &r, &err), &err);
    CHECK(r.n_done == 4 && r.epochs == 16 && r.budget_hit && r.budget == 5);
    CHECK_NEAR(r.makespan, 8, 1e-12);
    kl_sim_result_free(&r);
    kl_sweep_free(sw);
    write_file(sweep_path, grid);
    if (!check_((sw = kl_sweep_load(sweep_path, &err)) != NULL, __FILE__, __LINE__, err.msg))
        goto out;
    CHECK_OK(kl_simulate_sweep(sw, c, "table.csv", 2, &r, &err), &err);
    CHECK(r.n_done == 6 && r.epochs == 24 && !r.budget_hit);
    kl_sim_result_free(&r);
out:
    kl_curves_free(c);
    kl_sweep_free(sw);
}

/* Random and TPE sweeps: every trial trains along a tabulated row; the same sweep simulates the
 * same way twice; TPE's proposals after its random start differ from random search's. */
static void test_samplers(void)
{
    kl_sweep *rs = sweep("random", LR_RANGE, 40), *ts = sweep("tpe", LR_RANGE, 40);
    kl_curves *c = table(table_text());
    kl_error err = {0};
    kl_sim_result a = {0}, b = {0}, t = {0};
    if (!rs || !ts || !c)
        goto out;
    CHECK_OK(kl_simulate_sweep(rs, c, "table.csv", 3, &a, &err), &err);
    CHECK_OK(kl_simulate_sweep(ts, c, "table.csv", 3, &t, &err), &err);
    CHECK_OK(kl_simulate_sweep(ts, c, "table.csv", 3, &b, &err), &err);
    CHECK(a.ntrials == 40 && t.ntrials == 40 && b.ntrials == 40);
    int same = 1, differ = 0, labelled = 1;
    for (int i = 0; i < 40 && t.ntrials == 40 && b.ntrials == 40 && a.ntrials == 40; i++) {
        labelled &= t.trial[i].label != NULL && a.trial[i].label != NULL;
        if (!t.trial[i].label || !b.trial[i].label || !a.trial[i].label)
            continue;
        same &= !strcmp(t.trial[i].label, b.trial[i].label);
        differ += strcmp(t.trial[i].label, a.trial[i].label) != 0;
    }
    CHECK(labelled && same && differ > 0);
    CHECK(t.epochs == b.epochs && t.best_value == b.best_value);
    kl_sim_result_free(&a);
    kl_sim_result_free(&b);
    kl_sim_result_free(&t);
out:
    kl_curves_free(c);
    kl_sweep_free(rs);
    kl_sweep_free(ts);
}

static void expect_table_error(const char *text, const char *want, int line)
{
    kl_sweep *sw = sweep("random", LR_RANGE, 10);
    kl_error err = {0};
    kl_curves *c = kl_curves_parse(text, strlen(text), "table.csv", &err);
    kl_sim_result r = {0};
    kl_status st = c ? kl_simulate_sweep(sw, c, "table.csv", 2, &r, &err) : err.status;
    if (!check_(st != KL_OK && strstr(err.msg, want) != NULL, __FILE__, line, want))
        fprintf(stderr, "    got: %s\n", err.msg);
    kl_sim_result_free(&r);
    kl_curves_free(c);
    kl_sweep_free(sw);
}

static void test_errors(void)
{
    expect_table_error("trial,t,value,optimizer.lr,optimizer.name\n"
                       "a,1,0.5,1e-3,adam\n",
                       "table.csv: the table's rows carry configurations, but it has no column "
                       "model.layers.1.rate",
                       __LINE__);
    expect_table_error("trial,t,value,optimizer.lr,model.layers.1.rate,optimizer.name\n"
                       "a,1,0.5,fast,0.1,adam\n",
                       "table.csv: trial 'a': optimizer.lr is 'fast', not a positive number",
                       __LINE__);
    expect_table_error("trial,t,value,optimizer.lr,model.layers.1.rate,optimizer.name\n"
                       "a,1,0.5,0,0.1,adam\n",
                       "optimizer.lr is '0', not a positive number", __LINE__);
    expect_table_error("trial,t,value,optimizer.lr,model.layers.1.rate,optimizer.name\n"
                       "a,1,0.5,1e-3,0.1,adam\n"
                       "a,2,0.6,1e-3,0.2,adam\n",
                       "table.csv:3: model.layers.1.rate differs from the trial's first row",
                       __LINE__);
    expect_table_error("trial,t,value,optimizer.lr,model.layers.1.rate,optimizer.name\n"
                       "a,1,0.5,1e-3,0.1,adam\n",
                       "configuration matches no row of the table: no row has optimizer.name=sgd",
                       __LINE__);
    /* Without configuration columns the table is not tabular. */
    kl_sweep *sw = sweep("random", LR_RANGE, 10);
    const char *plain = "trial,t,value,note\na,1,0.5,x\n";
    kl_error err = {0};
    kl_curves *c = kl_curves_parse(plain, strlen(plain), "plain.csv", &err);
    CHECK(c && sw && !kl_curves_tabular(c, sw));
    kl_curves_free(c);
    kl_sweep_free(sw);
}

static const check_case cases[] = {
    CHECK_CASE(test_snap),     CHECK_CASE(test_grid),   CHECK_CASE(test_time_budget),
    CHECK_CASE(test_samplers), CHECK_CASE(test_errors),
};

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "/tmp/kiln-simtab-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(sweep_path, sizeof sweep_path, "%s/sweep.yaml", dir);
    snprintf(base_path, sizeof base_path, "%s/base.yaml", dir);
    write_file(base_path, "data: {dataset: fashion-mnist, val_fraction: 0.1}\n"
                          "model:\n"
                          "  layers:\n"
                          "    - dense: {units: 64, activation: relu}\n"
                          "    - dropout: {rate: 0.2}\n"
                          "optimizer: {name: adam, lr: 1e-3}\n"
                          "train: {epochs: 4}\n");
    int rc = check_run("test_sim_table", cases, CHECK_NCASES(cases), argc, argv);
    unlink(sweep_path);
    unlink(base_path);
    rmdir(dir);
    return rc;
}
