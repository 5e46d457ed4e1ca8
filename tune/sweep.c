/* Sweep files (docs/sweep.md): kl_sweep_load reads one with the train config's YAML tree
 * (runtime/config_yaml.c), so every error is file:line:col, the dotted key and what to do. This
 * file owns the top level: base, metric, method, the limits, the scheduler and time_budget, and
 * the helpers the other parts share; sweep_space.c reads the parameters, sweep_check.c tries them
 * on the base config. The tune coordinator calls kl_sweep_load once per sweep. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/file.h"
#include "tune/sweep_impl.h"

static const char *const top_keys[] = {
    "base",      "metric",       "method",          "parameters",  "run_cap", "seed",
    "scheduler", "max_failures", "ranks_per_trial", "time_budget", "tpe"};
#define NTOP ((int)(sizeof top_keys / sizeof *top_keys))

static const char *const metric_names[] = {"val_loss", "val_accuracy", "val_mae", "train_loss",
                                           "train_accuracy"};
static const char *const goal_names[] = {"minimize", "maximize"};
static const char *const method_names[] = {"random", "grid", "tpe", "bayes"};
static const char *const bool_names[] = {"false", "true"};
/* In kl_sched_kind order. */
static const char *const sched_names[] = {"fifo", "asha", "hyperband", "median", "pbt"};
static const char *const mode_names[] = {"promote", "stop"};

/* The scheduler's keys, and the ones each kind uses (bits of sched_keys, in kl_sched_kind order):
 * fifo runs every trial to max_t; the median rule waits grace_period epochs. */
static const char *const sched_keys[] = {"type",
                                         "max_t",
                                         "grace_period",
                                         "reduction_factor",
                                         "brackets",
                                         "mode",
                                         "perturbation_interval",
                                         "quantile_fraction",
                                         "resample_probability",
                                         "hyperparam_mutations"};
#define NSCHED_KEYS 10
enum {
    K_TYPE = 1,
    K_MAX_T = 2,
    K_GRACE = 4,
    K_ETA = 8,
    K_BRACKETS = 16,
    K_MODE = 32,
    K_PBT = 64 | 128 | 256 | 512
};
static const unsigned sched_uses[] = {
    K_TYPE | K_MAX_T,                                         /* fifo */
    K_TYPE | K_MAX_T | K_GRACE | K_ETA | K_MODE,              /* asha */
    K_TYPE | K_MAX_T | K_GRACE | K_ETA | K_BRACKETS | K_MODE, /* hyperband */
    K_TYPE | K_MAX_T | K_GRACE,                               /* median */
    K_TYPE | K_MAX_T | K_PBT,                                 /* pbt */
};

kl_status kl__sweep_number(const kl__ynode *node, char *path, double *out, kl_error *err)
{
    if (node->type == KL__YN_SCALAR && node->plain && kl__numeric_text(node->str, false)) {
        char *end;
        errno = 0;
        double v = strtod(node->str, &end);
        if (!*end && errno != ERANGE && isfinite(v)) {
            *out = v;
            return KL_OK;
        }
    }
    return kl__schema_expected(node, "a number", path, err);
}

kl_status kl__sweep_integer(const kl__ynode *node, char *path, int64_t lo, int64_t hi, int64_t *out,
                            kl_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "an integer >= %lld", (long long)lo);
    if (node->type != KL__YN_SCALAR || !node->plain || !kl__numeric_text(node->str, true))
        return kl__schema_expected(node, what, path, err);
    char *end;
    errno = 0;
    long long v = strtoll(node->str, &end, 10);
    if (*end || v < lo)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path, "expected %s, got %s", what,
                              node->str);
    if (errno == ERANGE || v > hi)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "%s is too large; expected at most %lld", node->str, (long long)hi);
    *out = v;
    return KL_OK;
}

kl_status kl__sweep_map(const kl__ynode *node, const char *const *names, int n, char *path,
                        kl_error *err)
{
    if (node->type != KL__YN_MAP)
        return kl__schema_expected(node, "a mapping", path, err);
    kl_status st = kl__check_duplicates(node, path, err);
    for (int i = 0; st == KL_OK && i < node->n; i++) {
        int j = 0;
        while (j < n && strcmp(names[j], node->items[i]->key) != 0)
            j++;
        if (j < n)
            continue;
        size_t len = kl__path_push(path, node->items[i]->key);
        st = kl__unknown_key(node->items[i], names, n, path, err);
        kl__path_pop(path, len);
    }
    return st;
}

/* The index of node's text among names, or an error listing them (with "did you mean"). */
static kl_status read_choice(const kl__ynode *node, const char *const *names, int n, char *path,
                             int *out, kl_error *err)
{
    for (int i = 0; node->type == KL__YN_SCALAR && i < n; i++)
        if (strcmp(node->str, names[i]) == 0) {
            *out = i;
            return KL_OK;
        }
    char list[160] = "one of (";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    snprintf(list + strlen(list), sizeof list - strlen(list), ")");
    /* A name the text begins (val_acc) beats the nearest by edit distance (val_mae). */
    const char *near = NULL;
    for (int i = 0; node->type == KL__YN_SCALAR && node->str[0] && i < n && !near; i++)
        if (strncmp(names[i], node->str, strlen(node->str)) == 0)
            near = names[i];
    if (!near && node->type == KL__YN_SCALAR)
        near = kl__suggest(node->str, names, n);
    if (near)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected %s, got \"%s\"; did you mean '%s'?", list, node->str, near);
    return kl__schema_expected(node, list, path, err);
}

/* The readers below take a mapping and a key, do nothing when the key is absent, and extend path
 * by the key for their messages. */
static kl_status get_choice(const kl__ynode *map, const char *key, const char *const *names, int n,
                            int *out, char *path, kl_error *err)
{
    const kl__ynode *node = kl__ynode_get(map, key);
    if (!node)
        return KL_OK;
    size_t len = kl__path_push(path, key);
    kl_status st = read_choice(node, names, n, path, out, err);
    kl__path_pop(path, len);
    return st;
}

static kl_status get_i64(const kl__ynode *map, const char *key, int64_t lo, int64_t hi,
                         int64_t *out, char *path, kl_error *err)
{
    const kl__ynode *node = kl__ynode_get(map, key);
    if (!node)
        return KL_OK;
    size_t len = kl__path_push(path, key);
    kl_status st = kl__sweep_integer(node, path, lo, hi, out, err);
    kl__path_pop(path, len);
    return st;
}

static kl_status get_int(const kl__ynode *map, const char *key, int lo, int *out, char *path,
                         kl_error *err)
{
    int64_t v = *out;
    kl_status st = get_i64(map, key, lo, INT32_MAX, &v, path, err);
    *out = (int)v;
    return st;
}

static kl_status missing(kl_source_pos pos, char *path, const char *key, const char *what,
                         kl_error *err)
{
    size_t len = kl__path_push(path, key);
    kl_status st = kl__yaml_error(err, KL_EINVAL, pos, path, "missing; %s", what);
    kl__path_pop(path, len);
    return st;
}

/* base: a path resolved against the sweep file's folder (checked to be readable here, so that
 * the error points at the sweep file), or an inline mapping. */
static kl_status read_base_path(kl_sweep *s, const kl__ynode *node, char *path, kl_error *err)
{
    const char *slash = strrchr(s->path, '/');
    size_t dir = node->str[0] == '/' || !slash ? 0 : (size_t)(slash - s->path) + 1;
    s->base_path = malloc(dir + strlen(node->str) + 1);
    if (!s->base_path)
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", s->path);
    memcpy(s->base_path, s->path, dir);
    strcpy(s->base_path + dir, node->str);
    FILE *f = fopen(s->base_path, "r");
    if (f) {
        fclose(f);
        return KL_OK;
    }
    return kl__yaml_error(err, KL_EIO, node->pos, path,
                          "cannot read the base config %s: %s; base is a train config's path "
                          "relative to the sweep file's folder, or an inline mapping",
                          s->base_path, strerror(errno));
}

/* The byte offset of 1-based (line, col) in text; columns count characters, as libyaml does. */
static size_t offset_of(const char *text, size_t len, kl_source_pos pos)
{
    size_t i = 0;
    for (int line = 1; line < pos.line && i < len; i++)
        if (text[i] == '\n')
            line++;
    for (int col = 1; col < pos.col && i < len && text[i] != '\n'; col++)
        while (++i < len && ((unsigned char)text[i] & 0xc0) == 0x80)
            ;
    return i;
}

/* An inline base: the sweep file's text with everything outside the mapping blanked (line
 * breaks kept, each other character a space), so the config loader's messages give the sweep
 * file's own line:col. */
static kl_status read_base_inline(kl_sweep *s, const kl__ynode *node, const char *text, size_t len,
                                  kl_error *err)
{
    size_t start = offset_of(text, len, node->pos), end = offset_of(text, len, node->end);
    char *out = malloc(len + 1);
    if (!out)
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", s->path);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if ((i >= start && i < end) || ch == '\n' || ch == '\r')
            out[n++] = (char)ch;
        else if ((ch & 0xc0) != 0x80)
            out[n++] = ' ';
    }
    out[n] = '\0';
    s->base_yaml = out;
    return KL_OK;
}

static kl_status read_base(kl_sweep *s, const kl__ynode *root, const char *text, size_t len,
                           char *path, kl_error *err)
{
    const kl__ynode *node = kl__ynode_get(root, "base");
    if (!node)
        return missing(root->pos, path, "base",
                       "give the train config to tune: a path (relative to this file) or a "
                       "mapping",
                       err);
    size_t plen = kl__path_push(path, "base");
    kl_status st;
    if (node->type == KL__YN_MAP)
        st = read_base_inline(s, node, text, len, err);
    else if (node->type == KL__YN_SCALAR && node->str[0])
        st = read_base_path(s, node, path, err);
    else
        st = kl__schema_expected(node, "a train config's path or a mapping", path, err);
    kl__path_pop(path, plen);
    return st;
}

static kl_status read_metric_map(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err)
{
    static const char *const keys[] = {"name", "goal"};
    int metric = 0, goal = -1;
    kl_status st = kl__sweep_map(map, keys, 2, path, err);
    if (st == KL_OK && !kl__ynode_get(map, "name"))
        st = missing(map->pos, path, "name",
                     "one of (val_loss, val_accuracy, val_mae, train_loss, train_accuracy)", err);
    if (st == KL_OK)
        st = get_choice(map, "name", metric_names, 5, &metric, path, err);
    if (st == KL_OK)
        st = get_choice(map, "goal", goal_names, 2, &goal, path, err);
    if (st != KL_OK)
        return st;
    if (!(s->metric = strdup(metric_names[metric])))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", s->path);
    /* Accuracies are maximized, losses and errors minimized, unless goal says otherwise. */
    size_t n = strlen(s->metric);
    s->maximize = goal >= 0 ? goal == 1 : n >= 8 && strcmp(s->metric + n - 8, "accuracy") == 0;
    return KL_OK;
}

static kl_status read_metric(kl_sweep *s, const kl__ynode *root, char *path, kl_error *err)
{
    const kl__ynode *map = kl__ynode_get(root, "metric");
    if (!map)
        return missing(root->pos, path, "metric",
                       "say what to optimize, e.g. metric: {name: val_accuracy, goal: maximize}",
                       err);
    size_t len = kl__path_push(path, "metric");
    kl_status st = read_metric_map(s, map, path, err);
    kl__path_pop(path, len);
    return st;
}

/* time_budget: seconds, or a number and a unit ("2h", "30 min", "90 s"). */
static kl_status read_budget(kl_sweep *s, const kl__ynode *node, char *path, kl_error *err)
{
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1},         {"s", 1},     {"sec", 1},     {"secs", 1},    {"second", 1},
                 {"seconds", 1},  {"m", 60},    {"min", 60},    {"mins", 60},   {"minute", 60},
                 {"minutes", 60}, {"h", 3600},  {"hr", 3600},   {"hrs", 3600},  {"hour", 3600},
                 {"hours", 3600}, {"d", 86400}, {"day", 86400}, {"days", 86400}};
    const char *t = node->type == KL__YN_SCALAR ? node->str : "";
    if (((*t >= '0' && *t <= '9') || *t == '.') && !strpbrk(t, "xX")) { /* no hex floats */
        char *end;
        errno = 0;
        double v = strtod(t, &end);
        while (*end == ' ')
            end++;
        for (size_t i = 0; errno == 0 && v > 0 && isfinite(v) && i < sizeof units / sizeof *units;
             i++)
            if (strcasecmp(end, units[i].unit) == 0) {
                s->time_budget = v * units[i].scale;
                return KL_OK;
            }
    }
    return kl__schema_expected(node,
                               "a positive duration: seconds, or a number and a unit as in "
                               "\"2h\", \"30 min\" or \"90 s\" (leave time_budget out for none)",
                               path, err);
}

static kl_status read_seed(kl_sweep *s, const kl__ynode *node, char *path, kl_error *err)
{
    if (node->type == KL__YN_SCALAR && node->plain && kl__numeric_text(node->str, true) &&
        node->str[0] != '-') {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(node->str, &end, 10);
        if (!*end && errno != ERANGE) {
            s->seed = v;
            return KL_OK;
        }
    }
    return kl__schema_expected(node, "an integer in [0, 2^64)", path, err);
}

/* type first: it says which other keys apply. */
static kl_status read_sched_kind(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err)
{
    int kind = KL_SCHED_ASHA;
    kl_status st = get_choice(map, "type", sched_names, 5, &kind, path, err);
    s->sched.kind = (kl_sched_kind)kind;
    for (int i = 0; st == KL_OK && i < map->n; i++) {
        int k = 0;
        while (strcmp(sched_keys[k], map->items[i]->key) != 0)
            k++;
        if (sched_uses[kind] & (1u << k))
            continue;
        char list[160] = "";
        for (int j = 0; j < NSCHED_KEYS; j++)
            if (sched_uses[kind] & (1u << j))
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s",
                         list[0] ? ", " : "", sched_keys[j]);
        size_t len = kl__path_push(path, map->items[i]->key);
        st = kl__yaml_error(err, KL_EINVAL, map->items[i]->key_pos, path,
                            "not used by the %s scheduler; its keys are: %s", sched_names[kind],
                            list);
        kl__path_pop(path, len);
    }
    return st;
}

static kl_status get_fraction(const kl__ynode *map, const char *key, double hi, double *out,
                              char *path, kl_error *err)
{
    const kl__ynode *node = kl__ynode_get(map, key);
    if (!node)
        return KL_OK;
    size_t len = kl__path_push(path, key);
    kl_status st = kl__sweep_number(node, path, out, err);
    if (st == KL_OK && !(*out >= 0 && *out <= hi))
        st = kl__yaml_error(err, KL_EINVAL, node->pos, path, "%g is outside [0, %g]", *out, hi);
    kl__path_pop(path, len);
    return st;
}

/* type: pbt. Ray Tune's defaults: quantile_fraction 0.25 (at most 0.5: the top and bottom
 * quantiles never overlap), resample_probability 0.25; perturbation_interval (epochs) and
 * hyperparam_mutations have none. */
static kl_status read_pbt(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err)
{
    kl_sched_config *c = &s->sched;
    c->quantile_fraction = 0.25;
    c->resample_probability = 0.25;
    c->seed = s->seed;
    kl_status st = get_int(map, "perturbation_interval", 1, &c->perturbation_interval, path, err);
    if (st == KL_OK && !c->perturbation_interval)
        st = missing(map->pos, path, "perturbation_interval",
                     "pbt checks each trial every perturbation_interval epochs, e.g. 2", err);
    if (st == KL_OK)
        st = get_fraction(map, "quantile_fraction", 0.5, &c->quantile_fraction, path, err);
    if (st == KL_OK)
        st = get_fraction(map, "resample_probability", 1.0, &c->resample_probability, path, err);
    const kl__ynode *mut = kl__ynode_get(map, "hyperparam_mutations");
    if (st == KL_OK && !mut)
        st = missing(map->pos, path, "hyperparam_mutations",
                     "pbt needs the hyperparameters it may change, e.g. optimizer.lr: "
                     "{distribution: log_uniform_values, min: 1e-4, max: 1e-1}",
                     err);
    if (st == KL_OK) {
        size_t len = kl__path_push(path, "hyperparam_mutations");
        st = kl__sweep_mutations_read(s, mut, path, err);
        kl__path_pop(path, len);
    }
    if (st == KL_OK && s->tpe.on)
        st = kl__yaml_error(err, KL_EUNSUPPORTED, map->pos, path,
                            "method tpe with the pbt scheduler is not supported yet: use method "
                            "random or grid for pbt's initial population");
    return st;
}

static kl_status read_sched_map(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err)
{
    kl_sched_config *c = &s->sched;
    int mode = 0;
    kl_status st = kl__sweep_map(map, sched_keys, NSCHED_KEYS, path, err);
    if (st == KL_OK)
        st = read_sched_kind(s, map, path, err);
    if (st == KL_OK)
        st = get_int(map, "max_t", 1, &c->max_t, path, err);
    if (st == KL_OK)
        st = get_int(map, "grace_period", 1, &c->grace_period, path, err);
    if (st == KL_OK)
        st = get_int(map, "reduction_factor", 2, &c->reduction_factor, path, err);
    if (st == KL_OK)
        st = get_int(map, "brackets", 1, &c->brackets, path, err);
    if (st == KL_OK)
        st = get_choice(map, "mode", mode_names, 2, &mode, path, err);
    c->stop_mode = mode == 1;
    if (st == KL_OK && c->kind == KL_SCHED_PBT)
        st = read_pbt(s, map, path, err);
    return st;
}

/* scheduler: the numbers here; max_t's default and the checks against it need the base config
 * (sweep_check.c). */
static kl_status read_sched(kl_sweep *s, const kl__ynode *root, char *path, kl_error *err)
{
    s->sched = (kl_sched_config){.kind = KL_SCHED_ASHA, .grace_period = 1, .reduction_factor = 3};
    const kl__ynode *map = kl__ynode_get(root, "scheduler");
    if (!map)
        return KL_OK;
    size_t len = kl__path_push(path, "scheduler");
    kl_status st = read_sched_map(s, map, path, err);
    kl__path_pop(path, len);
    return st;
}

static kl_status read_limits(kl_sweep *s, const kl__ynode *root, char *path, kl_error *err)
{
    int method = 0;
    s->max_failures = 3;
    s->ranks_per_trial = 1;
    kl_status st = get_choice(root, "method", method_names, 4, &method, path, err);
    s->grid = method == 1;
    s->tpe.on = method >= 2;
    if (st == KL_OK)
        st = get_i64(root, "run_cap", 1, INT64_MAX, &s->run_cap, path, err);
    if (st == KL_OK)
        st = get_int(root, "max_failures", 1, &s->max_failures, path, err);
    if (st == KL_OK)
        st = get_int(root, "ranks_per_trial", 1, &s->ranks_per_trial, path, err);
    const kl__ynode *seed = kl__ynode_get(root, "seed"),
                    *budget = kl__ynode_get(root, "time_budget");
    size_t len = kl__path_push(path, "seed");
    if (st == KL_OK && seed)
        st = read_seed(s, seed, path, err);
    kl__path_pop(path, len);
    len = kl__path_push(path, "time_budget");
    if (st == KL_OK && budget)
        st = read_budget(s, budget, path, err);
    kl__path_pop(path, len);
    if (st == KL_OK && !s->grid && !s->run_cap)
        st = missing(root->pos, path, "run_cap",
                     s->tpe.on ? "method tpe needs run_cap, the number of trials to run"
                               : "random search needs run_cap, the number of trials to run",
                     err);
    return st;
}

/* tpe: {n_startup_trials, n_ei_candidates, prior_weight, constant_liar}, Optuna's defaults. */
static kl_status read_tpe(kl_sweep *s, const kl__ynode *root, char *path, kl_error *err)
{
    static const char *const keys[] = {"n_startup_trials", "n_ei_candidates", "prior_weight",
                                       "constant_liar"};
    s->tpe.n_startup_trials = 10;
    s->tpe.n_ei_candidates = 24;
    s->tpe.prior_weight = 1.0;
    s->tpe.constant_liar = true;
    const kl__ynode *map = kl__ynode_get(root, "tpe");
    if (!map)
        return KL_OK;
    size_t len = kl__path_push(path, "tpe");
    kl_status st = KL_OK;
    if (!s->tpe.on)
        st = kl__yaml_error(err, KL_EINVAL, map->key_pos, path,
                            "tpe settings need method: tpe; set it, or remove tpe");
    if (st == KL_OK)
        st = kl__sweep_map(map, keys, 4, path, err);
    if (st == KL_OK)
        st = get_int(map, "n_startup_trials", 1, &s->tpe.n_startup_trials, path, err);
    int64_t ncand = s->tpe.n_ei_candidates;
    if (st == KL_OK)
        st = get_i64(map, "n_ei_candidates", 1, 4096, &ncand, path, err);
    s->tpe.n_ei_candidates = (int)ncand;
    const kl__ynode *w = kl__ynode_get(map, "prior_weight");
    if (st == KL_OK && w) {
        size_t l2 = kl__path_push(path, "prior_weight");
        st = kl__sweep_number(w, path, &s->tpe.prior_weight, err);
        if (st == KL_OK && !(s->tpe.prior_weight > 0))
            st = kl__yaml_error(err, KL_EINVAL, w->pos, path, "expected a positive number, got %s",
                                w->str);
        kl__path_pop(path, l2);
    }
    int liar = 1;
    if (st == KL_OK)
        st = get_choice(map, "constant_liar", bool_names, 2, &liar, path, err);
    s->tpe.constant_liar = liar == 1;
    kl__path_pop(path, len);
    return st;
}

static kl_status read_params(kl_sweep *s, const kl__ynode *root, char *path, kl_error *err)
{
    const kl__ynode *map = kl__ynode_get(root, "parameters");
    if (!map || (map->type == KL__YN_MAP && map->n == 0))
        return missing(map ? map->pos : root->pos, path, "parameters",
                       "give at least one, e.g. optimizer.lr: {values: [1e-3, 3e-4]}", err);
    size_t plen = kl__path_push(path, "parameters");
    kl_status st = kl__sweep_params_read(s, map, path, err);
    if (st == KL_OK && kl__sweep_grid_size(s) < 0)
        st = kl__yaml_error(err, KL_EINVAL, map->key_pos, path,
                            "the grid has more than 2^63 points; use fewer values");
    kl__path_pop(path, plen);
    return st;
}

static kl_status read_root(kl_sweep *s, const kl__ynode *root, const char *text, size_t len,
                           kl_error *err)
{
    char path[KL__PATH_MAX] = "";
    if (!root || kl__ynode_is_empty(root))
        return kl_error_set(err, KL_EINVAL,
                            "%s: the sweep file is empty; it needs base, metric, parameters "
                            "(see docs/sweep.md)",
                            s->path);
    if (root->type != KL__YN_MAP)
        return kl__schema_expected(root, "a sweep: a mapping of base, metric, parameters, ...",
                                   path, err);
    kl_status st = kl__sweep_map(root, top_keys, NTOP, path, err);
    if (st == KL_OK)
        st = read_base(s, root, text, len, path, err);
    if (st == KL_OK)
        st = read_metric(s, root, path, err);
    if (st == KL_OK)
        st = read_limits(s, root, path, err);
    if (st == KL_OK)
        st = read_tpe(s, root, path, err);
    if (st == KL_OK)
        st = read_params(s, root, path, err);
    if (st == KL_OK)
        st = read_sched(s, root, path, err);
    if (st == KL_OK)
        st = kl__sweep_check(s, root, err);
    return st;
}

kl_sweep *kl_sweep_load(const char *path, kl_error *err)
{
    kl_sweep *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        kl_error_set(err, KL_ENOMEM, "out of memory loading sweep %s", path);
        return NULL;
    }
    size_t len = 0;
    char *text = kl__file_read(path, "sweep file", &len, err);
    kl__ynode *root = NULL;
    kl_status st = text ? kl__yaml_parse(s->path, text, len, 0, 0, &root, err) : KL_EIO;
    if (st == KL_OK)
        st = read_root(s, root, text, len, err);
    kl__ynode_free(root);
    free(text);
    if (st != KL_OK) {
        kl_sweep_free(s);
        return NULL;
    }
    return s;
}

void kl_sweep_free(kl_sweep *s)
{
    if (!s)
        return;
    kl__sweep_params_free(s->params, s->nparams);
    kl__sweep_params_free(s->mutations, s->nmutations);
    free(s->path);
    free(s->base_path);
    free(s->base_yaml);
    free(s->metric);
    free(s);
}

int64_t kl_sweep_trials(const kl_sweep *s)
{
    if (!s->grid)
        return s->run_cap;
    int64_t n = kl__sweep_grid_size(s);
    return s->run_cap > 0 && s->run_cap < n ? s->run_cap : n;
}
