/* A sweep against its base config: kl_sweep_load's last step loads the base, fills the scheduler
 * settings that depend on it (max_t defaults to train.epochs), and builds a config for every value
 * a parameter can take at its extremes (each listed value; a range's two ends) with the other
 * parameters at trial 0's values, so a key the config does not have or a value it refuses is
 * reported at its place in the sweep file before any trial runs. kl_sweep_config builds a trial's
 * config for the coordinator and places its errors the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tune/sweep_impl.h"

static kl_config *build(const kl_sweep *s, const char *const *ov, int n, kl_error *err)
{
    if (s->base_path)
        return kl_config_load(s->base_path, ov, n, err);
    return kl_config_parse(s->path, s->base_yaml, strlen(s->base_yaml), ov, n, err);
}

/* An override's error reads "--set:K:COL: rest". */
static bool set_error(const char *msg, int *k, int *col, const char **rest)
{
    int used = 0;
    if (sscanf(msg, "--set:%d:%d: %n", k, col, &used) != 2 || used == 0)
        return false;
    *rest = msg + used;
    return true;
}

/* Rewrites e, the config loader's error for a config built with ov (parameter j's override), to
 * point into the sweep file: at the parameter's key when the key is what the config refuses, else
 * at where (the value's place) with where_path. Errors that are not the config's (out of memory,
 * an unreadable base) stay as they are. */
static void blame(const kl_sweep *s, int j, const char *ov, kl_source_pos where,
                  const char *where_path, kl_error *e)
{
    const kl_sweep_param *p = &s->params[j];
    if (e->status != KL_EINVAL && e->status != KL_EFORMAT && e->status != KL_EUNSUPPORTED)
        return;
    char rest[KL_ERROR_MSG_MAX], key_path[KL__PATH_MAX];
    const char *r = e->msg;
    int k, col;
    bool at_key = set_error(e->msg, &k, &col, &r) && col <= (int)strlen(p->path);
    snprintf(rest, sizeof rest, "%s", r);
    snprintf(key_path, sizeof key_path, "parameters.%s", p->path);
    const char *base = s->base_path ? s->base_path : "inline";
    if (at_key) {
        kl__yaml_error(e, KL_EINVAL, p->pos, key_path, "not a key the base config (%s) takes: %s",
                       base, rest);
        return;
    }
    bool fractional = p->dist == KL_DIST_UNIFORM || p->dist == KL_DIST_LOG_UNIFORM;
    kl__yaml_error(e, KL_EINVAL, where, where_path ? where_path : key_path,
                   "the base config (%s) refuses %s: %s%s", base, ov, rest,
                   fractional && strstr(rest, "expected an integer")
                       ? " (this distribution draws fractions; int_uniform draws integers)"
                       : "");
}

/* Builds a config from trial 0's overrides with parameter j's replaced by value; on failure
 * places the error at where (or at the parameter whose override the config refused). */
static kl_status probe(const kl_sweep *s, char **trial0, int j, const char *value,
                       kl_source_pos where, const char *where_path, kl_error *e)
{
    char *ov = kl__sweep_override(&s->params[j], value);
    if (!ov)
        return kl_error_set(e, KL_ENOMEM, "out of memory checking %s", s->path);
    char *saved = trial0[j];
    trial0[j] = ov;
    kl_config *c = build(s, (const char *const *)trial0, s->nparams, e);
    int k, col;
    const char *rest;
    if (!c && set_error(e->msg, &k, &col, &rest) && k - 1 != j && k >= 1 && k <= s->nparams)
        blame(s, k - 1, trial0[k - 1], s->params[k - 1].pos, NULL, e);
    else if (!c)
        blame(s, j, ov, where, where_path, e);
    trial0[j] = saved;
    free(ov);
    kl_config_free(c);
    return c ? KL_OK : e->status;
}

/* Every listed value of parameter j, or both ends of its range. */
static kl_status probe_param(const kl_sweep *s, char **trial0, int j, const kl__ynode *map,
                             kl_error *e)
{
    const kl_sweep_param *p = &s->params[j];
    /* The node that holds the values or the bounds: the distribution's mapping, or in W&B's form
     * the parameter's mapping itself (its value or values for a list). */
    const kl__ynode *dist = NULL;
    if (kl__sweep_flat(map))
        dist = p->dist == KL_DIST_VALUE    ? kl__ynode_get(map, "value")
               : p->dist == KL_DIST_VALUES ? kl__ynode_get(map, "values")
                                           : map;
    for (int i = 0; i < map->n && !dist; i++)
        if (strcmp(map->items[i]->key, "probabilities") != 0)
            dist = map->items[i];
    char path[KL__PATH_MAX];
    snprintf(path, sizeof path, "parameters.%s%s%s", p->path, dist == map ? "" : ".",
             dist == map ? "" : dist->key);
    size_t len = strlen(path);
    kl_status st = KL_OK;
    if (p->dist == KL_DIST_VALUE)
        return probe(s, trial0, j, p->values[0], dist->pos, path, e);
    if (p->dist == KL_DIST_VALUES || p->dist == KL_DIST_GRID) {
        for (int i = 0; st == KL_OK && i < p->nvalues; i++) {
            snprintf(path + len, sizeof path - len, ".%d", i);
            st = probe(s, trial0, j, p->values[i], dist->items[i]->pos, path, e);
        }
        return st;
    }
    char lo[64], hi[64];
    kl__sweep_range_ends(p, lo, hi, sizeof lo);
    snprintf(path + len, sizeof path - len, ".min");
    st = probe(s, trial0, j, lo, kl__ynode_get(dist, "min")->pos, path, e);
    snprintf(path + len, sizeof path - len, ".max");
    if (st == KL_OK)
        st = probe(s, trial0, j, hi, kl__ynode_get(dist, "max")->pos, path, e);
    return st;
}

/* The scheduler's key to blame: the first of keys the file has, else the scheduler mapping, else
 * the top of the file. */
static kl_source_pos sched_pos(const kl__ynode *root, const char *a, const char *b, char *path)
{
    const kl__ynode *map = kl__ynode_get(root, "scheduler");
    const kl__ynode *node = kl__ynode_get(map, a) ? kl__ynode_get(map, a) : kl__ynode_get(map, b);
    const char *key = kl__ynode_get(map, a) ? a : b;
    snprintf(path, KL__PATH_MAX, "scheduler.%s", key);
    return node ? node->pos : map ? map->pos : root->pos;
}

static kl_status check_sched(kl_sweep *s, const kl__ynode *root, int epochs, kl_error *e)
{
    kl_sched_config *c = &s->sched;
    char path[KL__PATH_MAX];
    bool from_base = c->max_t == 0;
    if (from_base)
        c->max_t = epochs;
    if (c->kind == KL_SCHED_PBT && c->perturbation_interval >= c->max_t)
        return kl__yaml_error(e, KL_EINVAL, sched_pos(root, "perturbation_interval", "max_t", path),
                              path,
                              "perturbation_interval %d is not below max_t %d%s: no trial would "
                              "be checked before it ends; lower perturbation_interval",
                              c->perturbation_interval, c->max_t,
                              from_base ? " (the base config's train.epochs)" : "");
    if (c->grace_period > c->max_t)
        return kl__yaml_error(e, KL_EINVAL, sched_pos(root, "grace_period", "max_t", path), path,
                              "grace_period %d is above max_t %d%s; a trial must reach the "
                              "first rung: lower grace_period or raise max_t",
                              c->grace_period, c->max_t,
                              from_base ? " (the base config's train.epochs)" : "");
    /* Rungs at grace * eta^k <= max_t, counted with integers (no log rounding). */
    int rungs = 0;
    for (long long r = c->grace_period; r <= c->max_t; r *= c->reduction_factor)
        rungs++;
    if (c->kind != KL_SCHED_HYPERBAND)
        c->brackets = 1;
    else if (c->brackets == 0)
        c->brackets = rungs < 4 ? rungs : 4;
    else if (c->brackets > rungs)
        return kl__yaml_error(e, KL_EINVAL, sched_pos(root, "brackets", "brackets", path), path,
                              "%d brackets do not fit: bracket b starts at grace_period * "
                              "reduction_factor^b epochs, and with %d, %d and max_t %d at most "
                              "%d fit",
                              c->brackets, c->grace_period, c->reduction_factor, c->max_t, rungs);
    return KL_OK;
}

/* The metric must be one the trials report: validation metrics need validation data, accuracy a
 * classification task, mae a regression one. */
static kl_status check_metric(const kl_sweep *s, const kl_config *c, const kl__ynode *root,
                              kl_error *e)
{
    const kl__ynode *name = kl__ynode_get(kl__ynode_get(root, "metric"), "name");
    const char *m = s->metric;
    kl_source_pos pos = name ? name->pos : root->pos;
    if (strncmp(m, "val_", 4) == 0 && c->data.val.format == KL_DATA_NONE &&
        c->data.val_fraction <= 0)
        return kl__yaml_error(e, KL_EINVAL, pos, "metric.name",
                              "%s needs validation data, and the base config has none: set "
                              "data.val_fraction (e.g. 0.1) or data.val there",
                              m);
    if (strstr(m, "accuracy") && c->data.task == KL_TASK_REGRESSION)
        return kl__yaml_error(e, KL_EINVAL, pos, "metric.name",
                              "%s is for classification, and the base config's data.task is "
                              "regression: use val_mae or val_loss",
                              m);
    if (strstr(m, "mae") && c->data.task == KL_TASK_CLASSIFICATION)
        return kl__yaml_error(e, KL_EINVAL, pos, "metric.name",
                              "%s is for regression, and the base config's data.task is "
                              "classification: use val_accuracy or val_loss",
                              m);
    return KL_OK;
}

static kl_status check_params(kl_sweep *s, const kl__ynode *root, kl_error *e)
{
    char **trial0;
    int n;
    kl_status st = kl_sweep_overrides(s, 0, &trial0, &n, e);
    if (st != KL_OK)
        return st;
    const kl__ynode *params = kl__ynode_get(root, "parameters");
    for (int j = 0; st == KL_OK && j < s->nparams; j++)
        st = probe_param(s, trial0, j, params->items[j], e);
    /* Trial 0 itself: a draw inside a range can fail where its ends did not (an integer key
     * given a fraction). */
    kl_config *c = st == KL_OK ? build(s, (const char *const *)trial0, n, e) : NULL;
    int k, col;
    const char *rest;
    if (c)
        st = check_metric(s, c, root, e);
    else if (st == KL_OK && set_error(e->msg, &k, &col, &rest) && k >= 1 && k <= n)
        blame(s, k - 1, trial0[k - 1], s->params[k - 1].pos, NULL, e);
    if (!c && st == KL_OK)
        st = e->status;
    kl_config_free(c);
    kl_sweep_overrides_free(trial0, n);
    return st;
}

kl_status kl__sweep_check(kl_sweep *s, const kl__ynode *root, kl_error *err)
{
    kl_error e = {0};
    kl_config *base = build(s, NULL, 0, &e);
    kl_status st = base ? check_sched(s, root, base->train.epochs, &e) : e.status;
    kl_config_free(base);
    if (st == KL_OK)
        st = check_params(s, root, &e);
    if (st != KL_OK && err)
        *err = e;
    return st;
}

kl_config *kl_sweep_config(const kl_sweep *s, char *const *overrides, int n,
                           const char *const *extra, int nextra, kl_error *err)
{
    const char **all = malloc((size_t)(n + nextra + 1) * sizeof *all);
    if (!all) {
        kl_error_set(err, KL_ENOMEM, "out of memory building a trial's config");
        return NULL;
    }
    for (int i = 0; i < n; i++)
        all[i] = overrides[i];
    for (int i = 0; i < nextra; i++)
        all[n + i] = extra[i];
    kl_error e = {0};
    kl_config *c = build(s, all, n + nextra, &e);
    int k, col;
    const char *rest;
    if (!c && n == s->nparams && set_error(e.msg, &k, &col, &rest) && k >= 1 && k <= n)
        blame(s, k - 1, all[k - 1], s->params[k - 1].pos, NULL, &e);
    if (!c && err)
        *err = e;
    free(all);
    return c;
}
