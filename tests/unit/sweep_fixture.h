/* What the sweep-file suites share (test_sweep.c, test_tpe.c): a temporary folder holding the
 * sweep file and a base config, a sweep loaded from text, and the suite's run between making the
 * folder and removing it. */
#ifndef KILN_TEST_SWEEP_FIXTURE_H
#define KILN_TEST_SWEEP_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "kiln/sweep.h"

static char dir[64];
static char sweep_path[128], base_path[128];

static const char base_text[] = "data:\n"
                                "  dataset: fashion-mnist\n"
                                "  val_fraction: 0.1\n"
                                "model:\n"
                                "  layers:\n"
                                "    - dense: {units: 64, activation: relu}\n"
                                "    - dropout: {rate: 0.2}\n"
                                "optimizer:\n"
                                "  name: adam\n"
                                "  lr: 1e-3\n"
                                "train:\n"
                                "  epochs: 9\n"
                                "  batch_size: 64\n";

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!check_(f != NULL, __FILE__, __LINE__, "temporary file opens"))
        return;
    fputs(text, f);
    fclose(f);
}

/* Writes text as the sweep file and loads it. */
static kl_sweep *load(const char *text, kl_error *err)
{
    write_file(sweep_path, text);
    return kl_sweep_load(sweep_path, err);
}

/* Runs the suite with base.yaml written in a new /tmp/kiln-<name>-XXXXXX, removed after. */
static int sweep_fixture_run(const char *suite, const char *name, const check_case *cases, size_t n,
                             int argc, char **argv)
{
    snprintf(dir, sizeof dir, "/tmp/kiln-%s-XXXXXX", name);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(sweep_path, sizeof sweep_path, "%s/sweep.yaml", dir);
    snprintf(base_path, sizeof base_path, "%s/base.yaml", dir);
    write_file(base_path, base_text);
    int rc = check_run(suite, cases, n, argc, argv);
    unlink(sweep_path);
    unlink(base_path);
    rmdir(dir);
    return rc;
}

#endif
