/* Private to tune/sweep*.c: the helpers the three parts of the sweep loader share. sweep.c reads
 * the top level of a sweep file (base, metric, method, limits, scheduler), sweep_space.c reads the
 * parameters and draws trials from them, sweep_check.c tries the parameters on the base config and
 * builds each trial's config. All of them read the config loader's YAML tree (kl__ynode), so a
 * sweep file's errors look like a train config's: file:line:col, the dotted key, what to do. */
#ifndef KILN_TUNE_SWEEP_IMPL_H
#define KILN_TUNE_SWEEP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/sweep.h"
#include "runtime/schema.h"

/* A plain decimal number (not "inf", not quoted) into *out. */
kl_status kl__sweep_number(const kl__ynode *node, char *path, double *out, kl_error *err);
/* A plain decimal integer in [lo, hi] into *out. */
kl_status kl__sweep_integer(const kl__ynode *node, char *path, int64_t lo, int64_t hi, int64_t *out,
                            kl_error *err);
/* node is a mapping without duplicate keys whose keys are all among names (else an error that
 * suggests the nearest). path is node's. */
kl_status kl__sweep_map(const kl__ynode *node, const char *const *names, int n, char *path,
                        kl_error *err);

/* sweep_space.c: the parameters mapping into s->params (s->grid already read). */
kl_status kl__sweep_params_read(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err);
void kl__sweep_params_free(kl_sweep_param *params, int n);
/* scheduler.hyperparam_mutations into s->mutations (s->params already read): keys PBT may change
 * mid-run, each also a parameter, each a list or a distribution. */
kl_status kl__sweep_mutations_read(kl_sweep *s, const kl__ynode *map, char *path, kl_error *err);
/* Whether a parameter's mapping is in W&B's form ({distribution: uniform, min: 0, max: 1}): it has
 * distribution, min, max or q (a {values: [...]} or {value: x} reads the same in both forms). */
bool kl__sweep_flat(const kl__ynode *map);
/* Points in the grid (every parameter's count multiplied), or -1 when that overflows int64. */
int64_t kl__sweep_grid_size(const kl_sweep *s);
/* The lowest and highest values a range distribution draws, as override text (q_uniform: the
 * extreme multiples of q; int_uniform: integers). */
void kl__sweep_range_ends(const kl_sweep_param *p, char *lo, char *hi, size_t cap);
/* The random sampler's parts, which method tpe's random start shares: the uniform number in
 * [0, 1) of (seed, trial, parameter); a range's draw from it; a list's index drawn from it;
 * a number as override text (an integer for int_uniform, else the shortest float text); and the
 * multiples of q a q_uniform draws, k * q for k in [lo, hi]. */
double kl__sweep_unit(uint64_t seed, int64_t trial, int param);
double kl__sweep_draw_range(const kl_sweep_param *p, double u);
int kl__sweep_draw_index(const kl_sweep_param *p, double u);
void kl__sweep_format(const kl_sweep_param *p, double x, char *buf, size_t cap);
void kl__sweep_q_range(const kl_sweep_param *p, double *lo, double *hi);
/* "optimizer.lr" -> the value's override text joined as "optimizer.lr=value" (malloc'd). */
char *kl__sweep_override(const kl_sweep_param *p, const char *value);

/* sweep_check.c: loads the base config, fills the scheduler's defaults that depend on it, and
 * tries every parameter on it. root is the sweep file's tree. */
kl_status kl__sweep_check(kl_sweep *s, const kl__ynode *root, kl_error *err);

#endif
