/* kiln tune report: journals written here (a sweep with paused, stopped, diverged and errored
 * trials, one with no results, one with a single trial, one with thousands) turned into
 * report.html, whose plots, header, table and escaping are checked in the text; with xmllint on
 * the PATH the whole page is also checked to be well-formed XML. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kiln/journal.h"
#include "kiln/tune_report.h"

static char dir[] = "/tmp/kiln-test-report-XXXXXX";
static char path[512];

static const char *in_dir(const char *name)
{
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
        free(s);
        s = NULL;
    }
    if (s)
        s[n] = '\0';
    fclose(f);
    return s;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* xmllint, when there is one, on the page: 1 well-formed, 0 not, -1 no xmllint. CI installs it
 * (scripts/install-deps.sh), so there a missing xmllint is a failure (check_missing), and
 * elsewhere the run says what it skipped. */
static int well_formed(const char *p)
{
    if (system("command -v xmllint >/dev/null 2>&1") != 0) {
        check_missing("test_tune_report: the pages' XML check",
                      "no xmllint (libxml2-utils): pages not checked as XML");
        return -1;
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "xmllint --noout '%s'", p);
    return system(cmd) == 0;
}

/* The svg elements only: no NaN or infinity may reach coordinates or labels. */
static int svg_has(const char *html, const char *what)
{
    for (const char *p = html; (p = strstr(p, "<svg"));) {
        const char *e = strstr(p, "</svg>");
        if (!e)
            return 1;
        const char *q = strstr(p, what);
        if (q && q < e)
            return 1;
        p = e;
    }
    return 0;
}

static double clock_s = 1.7e9;

/* Appends an event with a time 60 s after the last one. */
static void put(kl_journal *j, json_t *ev)
{
    clock_s += 60;
    json_object_set_new(ev, "time", json_real(clock_s));
    kl_error err = {0};
    CHECK_OK(kl_journal_append(j, ev, &err), &err);
}

static void sweep_event(kl_journal *j, int trials)
{
    put(j, json_pack("{s:s, s:s, s:s, s:i, s:s, s:b, s:i}", "event", "sweep", "sweep",
                     "/work/sweeps/fmnist.yaml", "sweep_hash", "0123456789abcdef", "trials", trials,
                     "metric", "val_accuracy", "maximize", 1, "ranks", 1));
}

static void started(kl_journal *j, int trial, int rung, int until, const char *lr, const char *act,
                    const char *batch)
{
    json_t *ev = json_pack("{s:s, s:i, s:s, s:i, s:i}", "event", "started", "trial", trial, "job",
                           lr ? "new" : "promote", "rung", rung, "until_t", until);
    if (lr)
        json_object_set_new(ev, "overrides",
                            json_pack("{s:s, s:s, s:s}", "optimizer.lr", lr, "model.act", act,
                                      "train.batch_size", batch));
    put(j, ev);
}

static void result(kl_journal *j, int trial, int t, double v, const char *decision)
{
    json_t *ev = json_pack("{s:s, s:i, s:i, s:s}", "event", "result", "trial", trial, "t", t,
                           "decision", decision);
    json_object_set_new(ev, "value", isnan(v) ? json_null() : json_real(v));
    put(j, ev);
}

static void ended(kl_journal *j, const char *event, int trial, const char *why, int failures)
{
    put(j, json_pack("{s:s, s:i, s:s, s:i}", "event", event, "trial", trial, "error", why,
                     "failures", failures));
}

/* ASHA, promote mode: grace 1, eta 3, max_t 9, so the rungs are at t = 1, 3 and 9. */
static void write_sweep(void)
{
    kl_error err = {0};
    unlink(in_dir("journal.jsonl")); /* each case writes its own */
    kl_journal *j = kl_journal_open(in_dir("journal.jsonl"), &err);
    CHECK(j != NULL);
    if (!j)
        return;
    sweep_event(j, 8);
    started(j, 0, 0, 1, "0.1", "relu", "32");
    result(j, 0, 1, 0.5, "pause");
    started(j, 1, 0, 1, "0.001", "a<&>\"b", "64");
    result(j, 1, 1, 0.3, "pause");
    started(j, 2, 0, 1, "1", "tanh", "32");
    result(j, 2, 1, 0.55, "pause");
    started(j, 3, 0, 1, "0.0003", "relu", "64");
    ended(j, "failed", 3, "worker died", 1);
    started(j, 3, 0, 1, NULL, NULL, NULL);
    ended(j, "errored", 3, "worker died", 2);
    started(j, 4, 0, 1, "0.03", "relu", "32");
    result(j, 4, 1, 0.8, "pause");
    started(j, 0, 1, 3, NULL, NULL, NULL);
    result(j, 0, 2, 0.6, "continue");
    result(j, 0, 3, 0.7, "pause");
    started(j, 2, 1, 3, NULL, NULL, NULL);
    result(j, 2, 2, NAN, "continue");
    ended(j, "diverged", 2, "the loss became NaN", 0);
    started(j, 4, 1, 3, NULL, NULL, NULL);
    result(j, 4, 2, 0.85, "continue");
    result(j, 4, 3, 0.9, "pause");
    for (int trial = 0; trial <= 4; trial += 4) {
        started(j, trial, 2, 9, NULL, NULL, NULL);
        for (int t = 4; t <= 9; t++)
            result(j, trial, t, (trial ? 0.9 : 0.7) + 0.005 * (t - 3),
                   t == 9 ? "done" : "continue");
    }
    result(j, 4, 9, 0.1, "done"); /* again, as after a resume: changes nothing */
    started(j, 5, 0, 1, "0.01", "gelu", "64");
    kl_journal_close(j);
}

static void test_sweep(void)
{
    write_sweep();
    kl_error err = {0};
    CHECK_OK(kl_tune_report(dir, NULL, &err), &err);
    char *html = slurp(in_dir("report.html"));
    CHECK(html != NULL);
    if (!html)
        return;
    CHECK(strncmp(html, "<!DOCTYPE html>\n", 16) == 0);
    CHECK(count(html, "<svg") == 3);
    CHECK(count(html, "<polyline class=\"curve") == 4); /* trials 0, 1, 2 and 4 have results */
    CHECK(count(html, "<polyline class=\"curve best\"") == 1);
    CHECK(count(html, "<polyline class=\"pc") == 6); /* every trial that started */
    CHECK(count(html, "<rect class=\"bar\"") == 3);  /* t = 1, 3, 9 */
    CHECK(strstr(html, "<title>t &#8805; 1: 4 of 6 trials") != NULL);
    CHECK(strstr(html, "<title>t &#8805; 3: 2 of 6 trials") != NULL);
    char *first_svg = strstr(html, "<svg");
    if (first_svg)
        *first_svg = '\0'; /* the header, alone */
    CHECK(strstr(html, "id=\"best-trial\">trial 4<") != NULL);
    CHECK(strstr(html, "6 started of 8: 2 done, 1 paused, 1 running, 1 diverged, 1 failed") !=
          NULL);
    CHECK(strstr(html, "val_accuracy 0.93 (last 0.93 at t=9, done)") != NULL);
    CHECK(strstr(html, "21 epochs trained, 39% of the 54") != NULL); /* 9 + 1 + 2 + 9 of 6 x 9 */
    CHECK(strstr(html, "37 min 00 s") != NULL);                      /* 38 events, 60 s apart */
    CHECK(strstr(html, "not finished") != NULL);
    if (first_svg)
        *first_svg = '<';
    CHECK(strstr(html, "a&lt;&amp;&gt;&quot;b") != NULL);
    CHECK(strstr(html, "<&>") == NULL);
    CHECK(strstr(html, ">0.0001</text>") != NULL); /* optimizer.lr spans 0.0003..1: log axis */
    CHECK(!svg_has(html, "nan") && !svg_has(html, "inf"));
    /* The table: best first, the diverged and errored trials after the rest. */
    const char *t4 = strstr(html, "<tr class=\"best\"><td class=\"n\">4</td>");
    const char *t1 = strstr(html, "<td class=\"n\">1</td><td>paused</td>");
    const char *t2 =
        strstr(html, "<td class=\"n\">2</td><td title=\"the loss became NaN\">diverged</td>");
    CHECK(t4 && t1 && t2 && t4 < t1 && t1 < t2);
    CHECK(well_formed(in_dir("report.html")) != 0);
    free(html);
}

static void test_missing(void)
{
    kl_error err = {0};
    char sub[600];
    snprintf(sub, sizeof sub, "%s/no-such-sweep", dir);
    CHECK(kl_tune_report(sub, NULL, &err) == KL_EIO);
    CHECK(strstr(err.msg, "no-such-sweep/journal.jsonl") != NULL);
}

static void test_no_results(void)
{
    kl_error err = {0};
    unlink(in_dir("journal.jsonl")); /* each case writes its own */
    kl_journal *j = kl_journal_open(in_dir("journal.jsonl"), &err);
    CHECK(j != NULL);
    if (!j)
        return;
    sweep_event(j, 4);
    kl_journal_close(j);
    char out[600];
    snprintf(out, sizeof out, "%s/elsewhere.html", dir);
    CHECK_OK(kl_tune_report(dir, out, &err), &err);
    char *html = slurp(out);
    CHECK(html != NULL);
    if (!html)
        return;
    CHECK(strncmp(html, "<!DOCTYPE html>", 15) == 0);
    CHECK(count(html, "<svg") == 0);
    CHECK(strstr(html, "No results yet") != NULL);
    CHECK(strstr(html, "0 started of 4") != NULL);
    CHECK(well_formed(out) != 0);
    free(html);
    unlink(out);
}

static void test_one_trial(void)
{
    kl_error err = {0};
    unlink(in_dir("journal.jsonl")); /* each case writes its own */
    kl_journal *j = kl_journal_open(in_dir("journal.jsonl"), &err);
    CHECK(j != NULL);
    if (!j)
        return;
    sweep_event(j, 1);
    started(j, 0, 0, 3, "0.1", "relu", "32");
    result(j, 0, 1, 0.42, "continue");
    put(j, json_pack("{s:s}", "event", "finished"));
    kl_journal_close(j);
    CHECK_OK(kl_tune_report(dir, NULL, &err), &err);
    char *html = slurp(in_dir("report.html"));
    CHECK(html != NULL);
    if (!html)
        return;
    CHECK(count(html, "<svg") == 3);
    CHECK(count(html, "<polyline class=\"curve best\"") == 1);
    CHECK(count(html, "<circle class=\"end\"") == 1); /* a single point needs a dot to show */
    CHECK(strstr(html, "<td>finished</td>") != NULL);
    CHECK(!svg_has(html, "nan") && !svg_has(html, "inf"));
    CHECK(well_formed(in_dir("report.html")) != 0);
    free(html);
}

/* Thousands of trials: the plots draw the best KL_TUNE_REPORT_MAX_LINES and say so. Written
 * without fsync (kl_journal_append syncs every line). */
static void test_many(void)
{
    enum { N = 3000 };
    FILE *f = fopen(in_dir("journal.jsonl"), "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fprintf(f,
            "{\"event\":\"sweep\",\"sweep\":\"/s.yaml\",\"trials\":%d,\"metric\":\"val_loss\","
            "\"maximize\":false,\"ranks\":1,\"time\":1}\n",
            N);
    for (int i = 0; i < N; i++) {
        fprintf(f,
                "{\"event\":\"started\",\"trial\":%d,\"job\":\"new\",\"rung\":0,\"until_t\":4,"
                "\"overrides\":{\"optimizer.lr\":\"%g\",\"model.units\":\"%d\"},\"time\":2}\n",
                i, 1e-4 * (1 + i % 97), 16 << (i % 4));
        for (int t = 1; t <= 2; t++)
            fprintf(f,
                    "{\"event\":\"result\",\"trial\":%d,\"t\":%d,\"value\":%g,\"decision\":"
                    "\"%s\",\"time\":3}\n",
                    i, t, 2.0 / t + (i == 1234 ? -1.5 : 0.001 * (i % 500)),
                    t == 2 ? "stop" : "continue");
    }
    fclose(f);
    kl_error err = {0};
    CHECK_OK(kl_tune_report(dir, NULL, &err), &err);
    char *html = slurp(in_dir("report.html"));
    CHECK(html != NULL);
    if (!html)
        return;
    CHECK(count(html, "<polyline class=\"curve") == KL_TUNE_REPORT_MAX_LINES);
    CHECK(count(html, "<polyline class=\"pc") == KL_TUNE_REPORT_MAX_LINES);
    CHECK(strstr(html, "Showing 2000 of 3000 trials") != NULL);
    CHECK(strstr(html, "id=\"best-trial\">trial 1234<") != NULL);
    CHECK(count(html, "<tr") == N + 8); /* the summary's 7 rows, the table's head */
    CHECK(strlen(html) < 8u << 20);
    free(html);
}

static void test_damaged(void)
{
    FILE *f = fopen(in_dir("journal.jsonl"), "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"event\":\"sweep\",\"sweep\":\"/s.yaml\",\"trials\":2,\"metric\":\"m\","
          "\"maximize\":true,\"time\":1}\n"
          "{\"event\":\"started\",\"trial\":7,\"job\":\"new\",\"rung\":0,\"until_t\":4}\n",
          f);
    fclose(f);
    kl_error err = {0};
    CHECK(kl_tune_report(dir, NULL, &err) == KL_EFORMAT);
    CHECK(strstr(err.msg, "journal.jsonl:2") != NULL && strstr(err.msg, "trial 7") != NULL);
    f = fopen(in_dir("journal.jsonl"), "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("{\"event\":\"result\",\"trial\":0}\n", f);
    fclose(f);
    CHECK(kl_tune_report(dir, NULL, &err) == KL_EFORMAT);
    CHECK(strstr(err.msg, "not the sweep event") != NULL);
}

static const check_case cases[] = {
    CHECK_CASE(test_sweep),     CHECK_CASE(test_missing), CHECK_CASE(test_no_results),
    CHECK_CASE(test_one_trial), CHECK_CASE(test_many),    CHECK_CASE(test_damaged),
};

int main(int argc, char **argv)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = check_run("test_tune_report", cases, CHECK_NCASES(cases), argc, argv);
    unlink(in_dir("journal.jsonl"));
    unlink(in_dir("report.html"));
    rmdir(dir);
    return rc;
}
