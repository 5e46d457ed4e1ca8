/* The search space of a sweep: the `parameters` mapping read into kl_sweep_param (one
 * distribution each), and trial i's values drawn from it. Random draws are a pure function of
 * (seed, trial, parameter index) through Philox (kiln/rng.h, purpose KL_RNG_SAMPLE, stream = the
 * trial, block = the parameter), so any trial can be regenerated alone; grid trials are the
 * i-th point of the cartesian product, the last parameter varying fastest. Values become
 * "key=value" override text that kl_config_load reads back to the same value. */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/rng.h"
#include "tune/sweep_impl.h"

static const struct {
    const char *name;
    kl_sweep_dist dist;
} dists[] = {
    {"value", KL_DIST_VALUE},
    {"values", KL_DIST_VALUES},
    {"uniform", KL_DIST_UNIFORM},
    {"log_uniform_values", KL_DIST_LOG_UNIFORM},
    {"loguniform", KL_DIST_LOG_UNIFORM},
    {"q_uniform", KL_DIST_Q_UNIFORM},
    {"quniform", KL_DIST_Q_UNIFORM},
    {"int_uniform", KL_DIST_INT_UNIFORM},
    {"randint", KL_DIST_INT_UNIFORM},
    {"grid", KL_DIST_GRID},
};
#define NDISTS ((int)(sizeof dists / sizeof *dists))

/* What a parameter mapping may hold: a distribution, and probabilities beside values. */
static const char *const param_keys[] = {
    "value",      "values",    "uniform",      "log_uniform_values",
    "loguniform", "q_uniform", "quniform",     "int_uniform",
    "randint",    "grid",      "probabilities"};
#define NPARAM_KEYS ((int)(sizeof param_keys / sizeof *param_keys))

#define DIST_LIST "value, values, uniform, log_uniform_values, q_uniform, int_uniform or grid"

static bool is_range(kl_sweep_dist d)
{
    return d == KL_DIST_UNIFORM || d == KL_DIST_LOG_UNIFORM || d == KL_DIST_Q_UNIFORM ||
           d == KL_DIST_INT_UNIFORM;
}

void kl__sweep_params_free(kl_sweep_param *params, int n)
{
    for (int i = 0; params && i < n; i++) {
        for (int j = 0; j < params[i].nvalues; j++)
            free(params[i].values[j]);
        free(params[i].values);
        free(params[i].probabilities);
        free(params[i].path);
    }
    free(params);
}

/* A plain scalar that could be misread inside a flow collection is quoted; it is a string
 * either way, since numbers and booleans hold none of these characters. */
static bool flow_safe(const char *s)
{
    return s[0] && !strpbrk(s, ",[]{}:#\"'") && s[0] != ' ' && s[strlen(s) - 1] != ' ';
}

/* A node as YAML an override reads back to the same node: plain scalars as written, quoted
 * ones double-quoted (so "3" stays a string), collections in flow style. */
static void emit(const kl__ynode *node, bool flow, FILE *f)
{
    if (node->type == KL__YN_SCALAR) {
        if (!node->plain || (flow && !flow_safe(node->str) && node->str[0]))
            kl__print_quoted(node->str, f);
        else
            fputs(flow && !node->str[0] ? "null" : node->str, f);
        return;
    }
    bool map = node->type == KL__YN_MAP;
    fputc(map ? '{' : '[', f);
    for (int i = 0; i < node->n; i++) {
        fputs(i ? ", " : "", f);
        if (map) {
            if (flow_safe(node->items[i]->key))
                fputs(node->items[i]->key, f);
            else
                kl__print_quoted(node->items[i]->key, f);
            fputs(": ", f);
        }
        emit(node->items[i], true, f);
    }
    fputc(map ? '}' : ']', f);
}

static char *node_text(const kl__ynode *node)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    emit(node, false, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

/* values / grid / value: each item's override text. */
static kl_status read_list(kl_sweep_param *p, const kl__ynode *node, const char *dist, char *path,
                           kl_error *err)
{
    bool one = p->dist == KL_DIST_VALUE;
    if (!one && (node->type != KL__YN_SEQ || node->n == 0))
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected a non-empty sequence, e.g. %s: [64, 128, 256]", dist);
    int n = one ? 1 : node->n;
    if (!(p->values = calloc((size_t)n, sizeof *p->values)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    for (; p->nvalues < n; p->nvalues++)
        if (!(p->values[p->nvalues] = node_text(one ? node : node->items[p->nvalues])))
            return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    return KL_OK;
}

static kl_status read_probabilities(kl_sweep_param *p, const kl__ynode *node, char *path,
                                    kl_error *err)
{
    if (node->type != KL__YN_SEQ || node->n != p->nvalues)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected a sequence of %d numbers, one per value, got %s%d",
                              p->nvalues, node->type == KL__YN_SEQ ? "" : "not a sequence but ",
                              node->type == KL__YN_SEQ ? node->n : 0);
    if (!(p->probabilities = calloc((size_t)node->n, sizeof *p->probabilities)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    double sum = 0;
    for (int i = 0; i < node->n; i++) {
        char index[16];
        snprintf(index, sizeof index, "%d", i);
        size_t len = kl__path_push(path, index);
        kl_status st = kl__sweep_number(node->items[i], path, &p->probabilities[i], err);
        if (st == KL_OK && p->probabilities[i] < 0)
            st = kl__yaml_error(err, KL_EINVAL, node->items[i]->pos, path,
                                "a probability cannot be negative, got %s", node->items[i]->str);
        kl__path_pop(path, len);
        if (st != KL_OK)
            return st;
        sum += p->probabilities[i];
    }
    if (fabs(sum - 1) > 1e-6)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "the probabilities sum to %.9g; they must sum to 1", sum);
    return KL_OK;
}

/* The multiples of q a q_uniform draws: k * q for k in [lo, hi]. A bound that is a multiple of
 * q up to rounding (0.3 / 0.1 = 2.9999999999999996) counts as one. */
void kl__sweep_q_range(const kl_sweep_param *p, double *lo, double *hi)
{
    double a = p->min / p->q, b = p->max / p->q;
    *lo = ceil(a - 1e-9 * fmax(1, fabs(a)));
    *hi = floor(b + 1e-9 * fmax(1, fabs(b)));
}

static kl_status read_bound(const kl_sweep_param *p, const kl__ynode *map, const char *key,
                            double *out, char *path, kl_error *err)
{
    const kl__ynode *node = kl__ynode_get(map, key);
    size_t len = kl__path_push(path, key);
    kl_status st = kl__sweep_number(node, path, out, err);
    if (st == KL_OK && p->dist == KL_DIST_INT_UNIFORM && *out != nearbyint(*out))
        st = kl__yaml_error(err, KL_EINVAL, node->pos, path,
                            "expected an integer: int_uniform draws integers between min and "
                            "max, both included; got %s",
                            node->str);
    if (st == KL_OK && p->dist == KL_DIST_INT_UNIFORM && fabs(*out) > 0x1p53)
        st = kl__yaml_error(err, KL_EINVAL, node->pos, path,
                            "%s is too large for int_uniform; use at most 2^53 in magnitude",
                            node->str);
    kl__path_pop(path, len);
    return st;
}

/* A problem with a bound, at that bound. */
static kl_status bound_error(const kl__ynode *map, const char *key, char *path, const char *msg,
                             kl_error *err)
{
    size_t len = kl__path_push(path, key);
    kl_status st = kl__yaml_error(err, KL_EINVAL, kl__ynode_get(map, key)->pos, path, "%s", msg);
    kl__path_pop(path, len);
    return st;
}

static kl_status check_range(kl_sweep_param *p, const kl__ynode *map, const char *dist, char *path,
                             kl_error *err)
{
    char msg[256];
    if (p->min > p->max) {
        snprintf(msg, sizeof msg, "min %.9g is above max %.9g; swap them", p->min, p->max);
        return bound_error(map, "min", path, msg, err);
    }
    if (p->min == p->max && p->dist != KL_DIST_INT_UNIFORM) {
        snprintf(msg, sizeof msg, "min equals max (%.9g); for a fixed value write value: %.9g",
                 p->min, p->min);
        return bound_error(map, "min", path, msg, err);
    }
    if (p->dist == KL_DIST_LOG_UNIFORM && p->min <= 0) {
        snprintf(msg, sizeof msg,
                 "%s needs 0 < min, got %.9g: min and max are the values themselves (1e-4), "
                 "not their logarithms",
                 dist, p->min);
        return bound_error(map, "min", path, msg, err);
    }
    if (p->dist != KL_DIST_Q_UNIFORM)
        return KL_OK;
    double lo, hi;
    if (!(p->q > 0)) {
        snprintf(msg, sizeof msg, "q must be positive, got %.9g: values are multiples of q", p->q);
        return bound_error(map, "q", path, msg, err);
    }
    kl__sweep_q_range(p, &lo, &hi);
    if (lo > hi || hi - lo > 0x1p53) {
        snprintf(msg, sizeof msg, "%s multiple of q = %.9g lies in [%.9g, %.9g]",
                 lo > hi ? "no" : "too many a", p->q, p->min, p->max);
        return bound_error(map, "q", path, msg, err);
    }
    return KL_OK;
}

/* W&B's log_uniform: ln x is uniform on [min, max], so the values run from e^min to e^max. */
static kl_status log_bounds(kl_sweep_param *p, const kl__ynode *map, char *path, kl_error *err)
{
    char msg[256];
    if (p->min >= p->max) {
        snprintf(msg, sizeof msg, "min %.9g is not below max %.9g; log_uniform needs min < max",
                 p->min, p->max);
        return bound_error(map, "min", path, msg, err);
    }
    double lo = exp(p->min), hi = exp(p->max);
    if (!(lo > 0) || !isfinite(hi)) {
        snprintf(msg, sizeof msg,
                 "e^%.9g is out of range: log_uniform's min and max are natural logarithms "
                 "(-9.2 for 1e-4); for the values themselves use log_uniform_values",
                 lo > 0 ? p->max : p->min);
        return bound_error(map, lo > 0 ? "max" : "min", path, msg, err);
    }
    p->min = lo;
    p->max = hi;
    return KL_OK;
}

static const char *const range_keys[] = {"min", "max", "q"};

/* A range's bounds from map (the distribution's own mapping, or W&B's parameter mapping), checked:
 * min and max (and q) present, numbers, in order. */
static kl_status read_bounds(kl_sweep_param *p, const kl__ynode *map, const char *dist, char *path,
                             kl_error *err)
{
    const char *const *keys = range_keys;
    bool q = p->dist == KL_DIST_Q_UNIFORM;
    kl_status st;
    for (int i = 0; i < (q ? 3 : 2); i++)
        if (!kl__ynode_get(map, keys[i])) {
            size_t len = kl__path_push(path, keys[i]);
            st = kl__yaml_error(err, KL_EINVAL, map->pos, path, "missing; %s needs %s", dist,
                                q ? "min, max and q" : "min and max");
            kl__path_pop(path, len);
            return st;
        }
    if ((st = read_bound(p, map, "min", &p->min, path, err)) != KL_OK ||
        (st = read_bound(p, map, "max", &p->max, path, err)) != KL_OK ||
        (q && (st = read_bound(p, map, "q", &p->q, path, err)) != KL_OK))
        return st;
    if (strcmp(dist, "log_uniform") == 0) /* W&B's: the bounds are natural logarithms */
        return log_bounds(p, map, path, err);
    return check_range(p, map, dist, path, err);
}

/* uniform, log_uniform_values, q_uniform, int_uniform: {min, max} (and q). */
static kl_status read_range(kl_sweep_param *p, const kl__ynode *map, const char *dist, char *path,
                            kl_error *err)
{
    kl_status st = kl__sweep_map(map, range_keys, p->dist == KL_DIST_Q_UNIFORM ? 3 : 2, path, err);
    return st != KL_OK ? st : read_bounds(p, map, dist, path, err);
}

/* The distribution's node in a parameter mapping: the one key besides probabilities. */
static kl_status find_dist(const kl__ynode *map, const kl__ynode **dist, int *which, char *path,
                           kl_error *err)
{
    *dist = NULL;
    for (int i = 0; i < map->n; i++) {
        const kl__ynode *node = map->items[i];
        int d = 0;
        while (d < NDISTS && strcmp(dists[d].name, node->key) != 0)
            d++;
        if (d == NDISTS)
            continue; /* probabilities */
        if (*dist) {
            size_t len = kl__path_push(path, node->key);
            kl_status st = kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                                          "a parameter has one distribution, and this one "
                                          "already has '%s'; keep one of them",
                                          (*dist)->key);
            kl__path_pop(path, len);
            return st;
        }
        *dist = node;
        *which = d;
    }
    if (!*dist)
        return kl__yaml_error(err, KL_EINVAL, map->pos, path,
                              "no distribution; give one of " DIST_LIST);
    return KL_OK;
}

static kl_status check_param_keys(const kl__ynode *map, char *path, kl_error *err)
{
    if (map->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, map->pos, path,
                              "expected a mapping with one distribution (" DIST_LIST
                              "), e.g. {values: [64, 128]}");
    kl_status st = kl__check_duplicates(map, path, err);
    for (int i = 0; st == KL_OK && i < map->n; i++) {
        const kl__ynode *node = map->items[i];
        int k = 0;
        while (k < NPARAM_KEYS && strcmp(param_keys[k], node->key) != 0)
            k++;
        if (k < NPARAM_KEYS)
            continue;
        const char *near = kl__suggest(node->key, param_keys, NPARAM_KEYS);
        size_t len = kl__path_push(path, node->key);
        if (strcmp(node->key, "parameters") == 0)
            st = kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                                "nested parameters (W&B's form for a mapping's keys) are not "
                                "supported; give each key its own dotted path, e.g. "
                                "optimizer.lr: {values: [1e-3, 3e-4]}");
        else if (near)
            st = kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                                "unknown distribution; did you mean '%s'?", near);
        else
            st = kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                                "unknown distribution; use one of " DIST_LIST);
        kl__path_pop(path, len);
    }
    return st;
}

static kl_status read_dist(const kl_sweep *s, kl_sweep_param *p, const kl__ynode *map,
                           const kl__ynode *dist, char *path, kl_error *err)
{
    const kl__ynode *probs = kl__ynode_get(map, "probabilities");
    size_t len = kl__path_push(path, dist->key);
    kl_status st = KL_OK;
    if (s->grid && is_range(p->dist))
        st = kl__yaml_error(err, KL_EINVAL, dist->key_pos, path,
                            "method grid enumerates values, and %s is a range; list the values "
                            "(values: [...]) or use method: random",
                            dist->key);
    else if (is_range(p->dist))
        st = read_range(p, dist, dist->key, path, err);
    else
        st = read_list(p, dist, dist->key, path, err);
    kl__path_pop(path, len);
    if (st != KL_OK || !probs)
        return st;
    len = kl__path_push(path, "probabilities");
    if (p->dist != KL_DIST_VALUES)
        st = kl__yaml_error(err, KL_EINVAL, probs->key_pos, path,
                            "probabilities go with values, not with %s", dist->key);
    else if (s->grid)
        st = kl__yaml_error(err, KL_EINVAL, probs->key_pos, path,
                            "method grid tries every value once; remove probabilities or use "
                            "method: random");
    else
        st = read_probabilities(p, probs, path, err);
    kl__path_pop(path, len);
    return st;
}

/* W&B's form: the parameter mapping holds the distribution's keys itself,
 * {distribution: log_uniform_values, min: 1e-4, max: 1e-2}, {values: [...]}, {value: x}. */
static const char *const flat_keys[] = {"distribution", "min",   "max",          "q",
                                        "values",       "value", "probabilities"};
#define NFLAT_KEYS ((int)(sizeof flat_keys / sizeof *flat_keys))

static const struct {
    const char *name;
    kl_sweep_dist dist;
} wandb_dists[] = {
    {"constant", KL_DIST_VALUE},
    {"categorical", KL_DIST_VALUES},
    {"uniform", KL_DIST_UNIFORM},
    {"int_uniform", KL_DIST_INT_UNIFORM},
    {"q_uniform", KL_DIST_Q_UNIFORM},
    {"log_uniform_values", KL_DIST_LOG_UNIFORM},
    {"log_uniform", KL_DIST_LOG_UNIFORM},
    /* W&B's others, not supported yet (dist unused). */
    {"q_log_uniform", KL_DIST_VALUE},
    {"q_log_uniform_values", KL_DIST_VALUE},
    {"inv_log_uniform", KL_DIST_VALUE},
    {"inv_log_uniform_values", KL_DIST_VALUE},
    {"normal", KL_DIST_VALUE},
    {"q_normal", KL_DIST_VALUE},
    {"log_normal", KL_DIST_VALUE},
    {"q_log_normal", KL_DIST_VALUE},
    {"beta", KL_DIST_VALUE},
    {"q_beta", KL_DIST_VALUE},
};
#define NWANDB_SUPPORTED 7
#define NWANDB           ((int)(sizeof wandb_dists / sizeof *wandb_dists))
#define WANDB_LIST \
    "constant, categorical, uniform, int_uniform, q_uniform, log_uniform_values or log_uniform"

bool kl__sweep_flat(const kl__ynode *map)
{
    return map->type == KL__YN_MAP &&
           (kl__ynode_get(map, "distribution") || kl__ynode_get(map, "min") ||
            kl__ynode_get(map, "max") || kl__ynode_get(map, "q"));
}

/* The keys a flat distribution takes: bits of flat_keys. */
static unsigned flat_uses(kl_sweep_dist d)
{
    switch (d) {
    case KL_DIST_VALUE:
        return 1u | 32u;
    case KL_DIST_VALUES:
        return 1u | 16u | 64u;
    case KL_DIST_Q_UNIFORM:
        return 1u | 2u | 4u | 8u;
    default:
        return 1u | 2u | 4u;
    }
}

/* W&B's distribution name at node, or the one W&B infers without it: categorical for values,
 * constant for value, int_uniform when min and max are both integers, else uniform. */
static kl_status flat_dist(const kl__ynode *map, const char **name, kl_sweep_dist *dist, char *path,
                           kl_error *err)
{
    const kl__ynode *node = kl__ynode_get(map, "distribution");
    if (!node) {
        const kl__ynode *lo = kl__ynode_get(map, "min"), *hi = kl__ynode_get(map, "max");
        bool ints = lo && hi && lo->type == KL__YN_SCALAR && hi->type == KL__YN_SCALAR &&
                    kl__numeric_text(lo->str, true) && kl__numeric_text(hi->str, true);
        *dist = kl__ynode_get(map, "values")  ? KL_DIST_VALUES
                : kl__ynode_get(map, "value") ? KL_DIST_VALUE
                : ints                        ? KL_DIST_INT_UNIFORM
                                              : KL_DIST_UNIFORM;
        for (int i = 0; i < NWANDB_SUPPORTED; i++)
            if (wandb_dists[i].dist == *dist) {
                *name = wandb_dists[i].name;
                break;
            }
        return KL_OK;
    }
    size_t len = kl__path_push(path, "distribution");
    kl_status st = KL_OK;
    int d = 0;
    while (node->type == KL__YN_SCALAR && d < NWANDB && strcmp(wandb_dists[d].name, node->str))
        d++;
    if (node->type != KL__YN_SCALAR) {
        st = kl__schema_expected(node, "a distribution's name (" WANDB_LIST ")", path, err);
    } else if (d >= NWANDB_SUPPORTED && d < NWANDB) {
        st = kl__yaml_error(err, KL_EINVAL, node->pos, path,
                            "%s is not supported yet; use one of " WANDB_LIST, node->str);
    } else if (d == NWANDB) {
        const char *names[NWANDB];
        for (int i = 0; i < NWANDB; i++)
            names[i] = wandb_dists[i].name;
        const char *near = kl__suggest(node->str, names, NWANDB);
        st = kl__yaml_error(err, KL_EINVAL, node->pos, path,
                            "unknown distribution \"%s\"%s%s%s; use one of " WANDB_LIST, node->str,
                            near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "");
    } else {
        *name = wandb_dists[d].name;
        *dist = wandb_dists[d].dist;
    }
    kl__path_pop(path, len);
    return st;
}

/* Every key the distribution needs is there, and no other. */
static kl_status flat_keys_fit(const kl__ynode *map, const char *name, kl_sweep_dist dist,
                               char *path, kl_error *err)
{
    unsigned uses = flat_uses(dist);
    kl_status st = KL_OK;
    for (int i = 0; st == KL_OK && i < map->n; i++) {
        const kl__ynode *node = map->items[i];
        int k = 0;
        while (strcmp(flat_keys[k], node->key) != 0)
            k++;
        if (uses & (1u << k))
            continue;
        size_t len = kl__path_push(path, node->key);
        st = kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                            "%s does not go with distribution %s, which takes %s", node->key, name,
                            dist == KL_DIST_VALUE       ? "value"
                            : dist == KL_DIST_VALUES    ? "values (and probabilities)"
                            : dist == KL_DIST_Q_UNIFORM ? "min, max and q"
                                                        : "min and max");
        kl__path_pop(path, len);
    }
    const char *need = dist == KL_DIST_VALUE ? "value" : dist == KL_DIST_VALUES ? "values" : NULL;
    if (st == KL_OK && need && !kl__ynode_get(map, need)) {
        size_t len = kl__path_push(path, need);
        st = kl__yaml_error(err, KL_EINVAL, map->pos, path, "missing; distribution %s needs %s",
                            name, need);
        kl__path_pop(path, len);
    }
    return st;
}

static kl_status read_flat(const kl_sweep *s, kl_sweep_param *p, const kl__ynode *map, char *path,
                           kl_error *err)
{
    const char *name = NULL;
    kl_status st = kl__sweep_map(map, flat_keys, NFLAT_KEYS, path, err);
    if (st == KL_OK)
        st = flat_dist(map, &name, &p->dist, path, err);
    if (st == KL_OK)
        st = flat_keys_fit(map, name, p->dist, path, err);
    if (st != KL_OK)
        return st;
    if (is_range(p->dist)) {
        if (s->grid) {
            const kl__ynode *at = kl__ynode_get(map, "distribution");
            return kl__yaml_error(err, KL_EINVAL, at ? at->pos : map->pos, path,
                                  "method grid enumerates values, and %s is a range; list the "
                                  "values (values: [...]) or use method: random",
                                  name);
        }
        return read_bounds(p, map, name, path, err);
    }
    const kl__ynode *list = kl__ynode_get(map, p->dist == KL_DIST_VALUE ? "value" : "values");
    return read_dist(s, p, map, list, path, err);
}

static kl_status read_param(const kl_sweep *s, kl_sweep_param *p, const kl__ynode *map, char *path,
                            kl_error *err)
{
    p->pos = map->key_pos;
    if (strcmp(map->key, "train.epochs") == 0)
        return kl__yaml_error(err, KL_EINVAL, map->key_pos, path,
                              "the scheduler sets train.epochs; set scheduler.max_t instead");
    if (!(p->path = strdup(map->key)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    if (kl__sweep_flat(map))
        return read_flat(s, p, map, path, err);
    const kl__ynode *dist;
    int which = 0;
    kl_status st = check_param_keys(map, path, err);
    if (st == KL_OK)
        st = find_dist(map, &dist, &which, path, err);
    if (st != KL_OK)
        return st;
    p->dist = dists[which].dist;
    return read_dist(s, p, map, dist, path, err);
}

kl_status kl__sweep_params_read(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err)
{
    if (map->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, map->pos, path,
                              "expected a mapping of config keys to distributions, e.g. "
                              "optimizer.lr: {values: [1e-3, 3e-4]}");
    kl_status st = kl__check_duplicates(map, path, err);
    if (st != KL_OK)
        return st;
    if (!(s->params = calloc((size_t)map->n, sizeof *s->params)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    for (; st == KL_OK && s->nparams < map->n; s->nparams++) {
        size_t len = kl__path_push(path, map->items[s->nparams]->key);
        st = read_param(s, &s->params[s->nparams], map->items[s->nparams], path, err);
        kl__path_pop(path, len);
    }
    return st;
}

/* The keys PBT may change in the middle of a run: those a resumed trial can take from a copied
 * checkpoint without its weights, optimizer state or data changing shape or meaning (the
 * optimizer's numbers and a dropout layer's rate). */
static bool mutable_key(const char *key)
{
    static const char *const optim[] = {
        "optimizer.lr",    "optimizer.weight_decay", "optimizer.momentum", "optimizer.dampening",
        "optimizer.beta1", "optimizer.beta2",        "optimizer.eps"};
    for (size_t i = 0; i < sizeof optim / sizeof *optim; i++)
        if (!strcmp(key, optim[i]))
            return true;
    const char *p = key + strlen("model.layers.");
    if (strncmp(key, "model.layers.", strlen("model.layers.")) || !isdigit((unsigned char)*p))
        return false;
    while (isdigit((unsigned char)*p))
        p++;
    return !strcmp(p, ".rate");
}

/* SGD keeps a momentum buffer only when momentum is not 0, so a checkpoint cannot carry a run
 * across 0 and back. */
static kl_status momentum_zero(kl_source_pos pos, char *path, kl_error *err)
{
    return kl__yaml_error(err, KL_EINVAL, pos, path,
                          "pbt's optimizer.momentum must stay above 0: SGD keeps momentum state "
                          "only when it is not 0, and a copied checkpoint's state must fit the "
                          "trial that continues it; use values or a range above 0");
}

/* Whether p, when it is optimizer.momentum, only ever gives values above 0. */
static bool momentum_positive(const kl_sweep_param *p)
{
    if (strcmp(p->path, "optimizer.momentum") != 0)
        return true;
    if (p->values) {
        for (int i = 0; i < p->nvalues; i++)
            if (!(strtod(p->values[i], NULL) > 0))
                return false;
        return true;
    }
    return p->min > 0;
}

static kl_status read_mutation(const kl_sweep *s, kl_sweep_param *p, const kl__ynode *node,
                               char *path, kl_error *err)
{
    if (!mutable_key(node->key))
        return kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                              "pbt cannot change %s in the middle of a run (a copied checkpoint's "
                              "weights, optimizer state and data depend on it); it may mutate "
                              "optimizer.lr, weight_decay, momentum, dampening, beta1, beta2, eps "
                              "and a dropout layer's model.layers.N.rate",
                              node->key);
    bool param = false;
    for (int i = 0; i < s->nparams; i++)
        if (!strcmp(s->params[i].path, node->key)) {
            param = true;
            if (!momentum_positive(&s->params[i]))
                return momentum_zero(node->key_pos, path, err);
        }
    if (!param)
        return kl__yaml_error(err, KL_EINVAL, node->key_pos, path,
                              "%s is not among the sweep's parameters; add it there too: they "
                              "draw each trial's first value, and pbt mutates it from then on",
                              node->key);
    if (node->type == KL__YN_SEQ) { /* Ray's list: explore moves to a neighbour */
        p->pos = node->key_pos;
        p->dist = KL_DIST_GRID;
        if (!(p->path = strdup(node->key)))
            return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
        kl_status st = read_list(p, node, node->key, path, err);
        return st == KL_OK && !momentum_positive(p) ? momentum_zero(node->pos, path, err) : st;
    }
    if (node->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected a list of values ([1e-3, 1e-2, 1e-1]) or a distribution "
                              "({distribution: log_uniform_values, min: 1e-4, max: 1e-1})");
    kl_status st = read_param(s, p, node, path, err);
    if (st == KL_OK && !momentum_positive(p))
        st = momentum_zero(node->pos, path, err);
    if (st == KL_OK && (p->dist == KL_DIST_VALUE || p->dist == KL_DIST_GRID))
        st = kl__yaml_error(err, KL_EINVAL, node->pos, path,
                            "a mutation is a list of values or a distribution to draw from (a "
                            "range or values: [...]), not %s",
                            p->dist == KL_DIST_VALUE ? "one value" : "a grid");
    return st;
}

kl_status kl__sweep_mutations_read(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err)
{
    if (map->type != KL__YN_MAP || map->n == 0)
        return kl__yaml_error(err, KL_EINVAL, map->pos, path,
                              "expected a mapping of config keys to lists or distributions, e.g. "
                              "optimizer.lr: [1e-3, 1e-2, 1e-1]");
    kl_status st = kl__check_duplicates(map, path, err);
    if (st != KL_OK)
        return st;
    if (!(s->mutations = calloc((size_t)map->n, sizeof *s->mutations)))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    for (; st == KL_OK && s->nmutations < map->n; s->nmutations++) {
        size_t len = kl__path_push(path, map->items[s->nmutations]->key);
        st = read_mutation(s, &s->mutations[s->nmutations], map->items[s->nmutations], path, err);
        kl__path_pop(path, len);
    }
    return st;
}

/* A parameter's points in the grid (ranges, refused under method grid, count as one). */
static int64_t point_count(const kl_sweep_param *p)
{
    return p->dist == KL_DIST_VALUES || p->dist == KL_DIST_GRID ? p->nvalues : 1;
}

int64_t kl__sweep_grid_size(const kl_sweep *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->nparams; i++) {
        int64_t k = point_count(&s->params[i]);
        if (n > INT64_MAX / k)
            return -1;
        n *= k;
    }
    return n;
}

/* The fewest digits (up to 9) that read back as the same float, as kl_config_print writes. */
static void format_float(double x, char *buf, size_t cap)
{
    float v = (float)x;
    if (fabsf(v) < 1e9f && v == (float)(long)v) { /* range first: the cast is UB beyond it */
        snprintf(buf, cap, "%ld", (long)v);
        return;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

void kl__sweep_format(const kl_sweep_param *p, double x, char *buf, size_t cap)
{
    if (p->dist == KL_DIST_INT_UNIFORM)
        snprintf(buf, cap, "%lld", (long long)x);
    else
        format_float(x, buf, cap);
}

void kl__sweep_range_ends(const kl_sweep_param *p, char *lo, char *hi, size_t cap)
{
    double a = p->min, b = p->max;
    if (p->dist == KL_DIST_Q_UNIFORM) {
        kl__sweep_q_range(p, &a, &b);
        a *= p->q;
        b *= p->q;
    }
    kl__sweep_format(p, a, lo, cap);
    kl__sweep_format(p, b, hi, cap);
}

/* A uniform double in [0, 1) with 53 random bits, keyed by (seed, trial, parameter). */
double kl__sweep_unit(uint64_t seed, int64_t trial, int param)
{
    uint32_t w[4];
    kl_rng_block(seed, KL_RNG_SAMPLE, (uint64_t)trial, (uint64_t)param, w);
    return (double)(((uint64_t)w[0] << 21) | (w[1] >> 11)) * 0x1p-53;
}

/* One random draw of a range distribution, in [min, max]. */
double kl__sweep_draw_range(const kl_sweep_param *p, double u)
{
    double x;
    switch (p->dist) {
    case KL_DIST_LOG_UNIFORM:
        x = exp(log(p->min) + u * (log(p->max) - log(p->min)));
        break;
    case KL_DIST_INT_UNIFORM:
        x = p->min + floor(u * (p->max - p->min + 1));
        break;
    case KL_DIST_Q_UNIFORM: {
        double lo, hi, k = nearbyint((p->min + u * (p->max - p->min)) / p->q);
        kl__sweep_q_range(p, &lo, &hi);
        return fmin(fmax(k, lo), hi) * p->q;
    }
    default:
        x = p->min + u * (p->max - p->min);
        break;
    }
    return fmin(fmax(x, p->min), p->max);
}

/* Which of the values a random draw picks: by probabilities, else uniformly. */
int kl__sweep_draw_index(const kl_sweep_param *p, double u)
{
    if (!p->probabilities) {
        int i = (int)(u * p->nvalues);
        return i < p->nvalues ? i : p->nvalues - 1;
    }
    double cum = 0;
    for (int i = 0; i < p->nvalues; i++) {
        cum += p->probabilities[i];
        if (u < cum)
            return i;
    }
    int last = p->nvalues - 1; /* u beyond a sum rounded below 1: the last value drawn at all */
    while (last > 0 && p->probabilities[last] == 0)
        last--;
    return last;
}

char *kl__sweep_override(const kl_sweep_param *p, const char *value)
{
    size_t n = strlen(p->path) + strlen(value) + 2;
    char *text = malloc(n);
    if (text)
        snprintf(text, n, "%s=%s", p->path, value);
    return text;
}

/* Trial i's value of parameter j as override text: into buf, or one of p->values. */
static const char *trial_value(const kl_sweep *s, int64_t i, int j, int64_t *rest, char *buf,
                               size_t cap)
{
    const kl_sweep_param *p = &s->params[j];
    if (s->grid) { /* the last parameter varies fastest */
        int64_t k = point_count(p);
        int idx = (int)(*rest % k);
        *rest /= k;
        return p->values[idx];
    }
    double u = kl__sweep_unit(s->seed, i, j);
    if (!is_range(p->dist))
        return p->values[p->dist == KL_DIST_VALUE ? 0 : kl__sweep_draw_index(p, u)];
    kl__sweep_format(p, kl__sweep_draw_range(p, u), buf, cap);
    return buf;
}

kl_status kl_sweep_overrides(const kl_sweep *s, int64_t i, char ***out, int *n, kl_error *err)
{
    *out = NULL;
    *n = 0;
    int64_t trials = kl_sweep_trials(s);
    if (i < 0 || i >= trials)
        return kl_error_set(err, KL_ERANGE, "%s: no trial %lld; the sweep has trials 0 to %lld",
                            s->path, (long long)i, (long long)trials - 1);
    char **o = calloc((size_t)s->nparams, sizeof *o);
    if (!o)
        return kl_error_set(err, KL_ENOMEM, "out of memory drawing trial %lld", (long long)i);
    int64_t rest = i;
    for (int j = s->nparams - 1; j >= 0; j--) {
        char buf[64];
        if (!(o[j] = kl__sweep_override(&s->params[j],
                                        trial_value(s, i, j, &rest, buf, sizeof buf)))) {
            kl_sweep_overrides_free(o, s->nparams);
            return kl_error_set(err, KL_ENOMEM, "out of memory drawing trial %lld", (long long)i);
        }
    }
    *out = o;
    *n = s->nparams;
    return KL_OK;
}

void kl_sweep_overrides_free(char **o, int n)
{
    for (int i = 0; o && i < n; i++)
        free(o[i]);
    free(o);
}
