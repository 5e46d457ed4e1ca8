/* Private to serve/: the serving patterns a model's config.yaml declares around kiln
 * models. Business logic: pre steps on the request's inputs, post steps that add outputs
 * (steps.c). Feature lookup: inputs joined from a table by entity id (lookup.c). Pipelines and
 * ensembles: composite models whose stages are other served models (flow.c). And the named
 * output tensors an answer is made of (kl__result, respond.c writes them). */
#ifndef KILN_SERVE_FLOW_H
#define KILN_SERVE_FLOW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/status.h"

struct kl__ynode;
struct kl__version;
struct kl_server;
struct kl_modelfile;

/* ---- answers: named output tensors ---- */

#define KL__MAX_OUTPUTS 16

typedef enum kl__odt { KL__O_FP32, KL__O_INT32, KL__O_BYTES } kl__odt;

typedef struct kl__output {
    char name[64];
    kl__odt dtype;
    int64_t n, k;   /* shape [n] when k == 0, else [n, k] */
    float *f;       /* FP32 (n * max(k, 1)) */
    int32_t *i;     /* INT32 */
    const char **s; /* BYTES: the strings (borrowed: class names live in a model file) */
    bool always;    /* answered even when the request names other outputs (members' outputs) */
} kl__output;

typedef struct kl__result {
    int n;
    kl__output out[KL__MAX_OUTPUTS];
} kl__result;

/* A new output of r (NULL out of memory or outputs), its buffer allocated. */
kl__output *kl__result_add(kl__result *r, const char *name, kl__odt dt, int64_t n, int64_t k);
void kl__result_free(kl__result *r);
/* The outputs of a model call: scores (n, k) as name ("probabilities" or "predictions"), and
 * for a classifier label (argmax) and label_name (names from mf, which must outlive r). */
kl_status kl__result_model(kl__result *r, const char *name, bool classify, const float *scores,
                           const int32_t *classes, int64_t n, int64_t k,
                           const struct kl_modelfile *names, kl_error *err);

/* ---- steps ---- */

typedef enum kl__step_kind {
    KL__STEP_CLIP,      /* {min, max}: every value into [min, max] */
    KL__STEP_SCALE,     /* {factor, offset}: x * factor + offset */
    KL__STEP_ONE_HOT,   /* {column, classes}: an integer column becomes classes 0/1 columns */
    KL__STEP_ARGMAX,    /* {}: the index of each row's largest value, one column */
    KL__STEP_THRESHOLD, /* {value, column}: 1 where x[column] >= value, else 0; one column */
    KL__STEP_TOP_K      /* {k}: post only: the k best classes, scores and names */
} kl__step_kind;

typedef struct kl__step {
    kl__step_kind kind;
    float a, b;      /* clip min, max; scale factor, offset; threshold value */
    int column, num; /* one_hot column and classes; threshold column; top_k k */
    int line, col;   /* where config.yaml has it, for errors found when a version loads */
} kl__step;

typedef struct kl__steps {
    kl__step *v;
    int n;
} kl__steps;

/* Reads a YAML sequence of steps (`- clip: {min: 0, max: 1}`), errors at file:line:col. where
 * is "pre", "post" or "pipeline": post steps add outputs (threshold, top_k); the others
 * transform the data (top_k is post only). */
kl_status kl__steps_read(const struct kl__ynode *seq, const char *where, kl__steps *out,
                         kl_error *err);
void kl__steps_free(kl__steps *s);
/* The width the transforming steps s[from, to) make of width w; -1 (err set) when one of them
 * cannot take its input (a column past the width). */
int64_t kl__steps_width(const kl__steps *s, int from, int to, int64_t w, kl_error *err);
/* Applies steps s[from, to) to x (n, w): *out (malloc'd, (n, *wout)). KL_EINVAL names the
 * sample a step refuses (a one_hot value that is not a class). */
kl_status kl__steps_apply(const kl__steps *s, int from, int to, const float *x, int64_t n,
                          int64_t w, float **out, int64_t *wout, kl_error *err);
/* Checks post steps against a model of k outputs (a threshold column past them); file is the
 * config.yaml they came from. */
kl_status kl__steps_check_post(const kl__steps *s, int64_t k, const char *file, kl_error *err);
/* The post steps' outputs from a classifier's scores (n, k), with class names from names. */
kl_status kl__steps_outputs(const kl__steps *s, const float *scores, int64_t n, int64_t k,
                            const struct kl_modelfile *names, kl__result *r, kl_error *err);

/* ---- feature lookup ---- */

typedef struct kl__lookup kl__lookup;
/* Reads `lookup: {table: FILE, key: COLUMN}` (a CSV with a header, or an HDF5 file with
 * datasets id (integers) and x (N, F)); relative paths are from the model's folder. */
kl_status kl__lookup_read(const struct kl__ynode *v, const char *dir, kl__lookup **out,
                          kl_error *err);
void kl__lookup_free(kl__lookup *l);
/* The table's rows for ids (n): *out (malloc'd, (n, *w)), reloading the table first when its
 * file changed. An unknown id is KL_EINVAL naming it. */
kl_status kl__lookup_rows(kl__lookup *l, const int64_t *ids, int64_t n, float **out, int64_t *w,
                          kl_error *err);
int64_t kl__lookup_width(kl__lookup *l);

/* ---- composites ---- */

typedef enum kl__comp_kind { KL__COMP_PIPELINE, KL__COMP_ENSEMBLE } kl__comp_kind;
typedef enum kl__combine { KL__COMBINE_MEAN, KL__COMBINE_WEIGHTED, KL__COMBINE_VOTE } kl__combine;

typedef struct kl__stage {
    char *model; /* a model stage: the served model's name; NULL for a step */
    kl__step step;
} kl__stage;

typedef struct kl__composite {
    kl__comp_kind kind;
    kl__stage *stages; /* pipeline */
    int nstages;
    char **members; /* ensemble */
    float *weights; /* (nmembers), normalised; mean: all equal */
    int nmembers;
    kl__combine combine;
} kl__composite;

/* Reads `pipeline: [...]` or `ensemble: {...}` (the key names which). */
kl_status kl__composite_read(const struct kl__ynode *v, kl__composite **out, kl_error *err);
void kl__composite_free(kl__composite *c);

/* ---- a model's patterns, from its config.yaml ---- */

/* Shared by the model and the versions loaded with it: a version keeps the patterns it was
 * loaded with while it serves, whatever a reload of the config does. */
typedef struct kl__patterns {
    atomic_int refs;
    kl__steps pre, post;
    kl__lookup *lookup;
    kl__composite *comp; /* a pipeline or an ensemble: the model has no files of its own */
} kl__patterns;

kl__patterns *kl__patterns_new(void);
/* Reads one config.yaml key into p if it is a pattern's (pre, post, lookup, pipeline,
 * ensemble): 1 when it was, 0 when it is not a pattern key, -1 on an error (err set). dir is
 * the model's folder (lookup tables are relative to it). */
int kl__patterns_key(const struct kl__ynode *v, const char *dir, kl__patterns *p, kl_error *err);
/* Checks the keys together (a composite takes no lookup; pre needs a model to feed). */
kl_status kl__patterns_check(const kl__patterns *p, const char *file, kl_error *err);
kl__patterns *kl__patterns_ref(kl__patterns *p);
void kl__patterns_release(kl__patterns *p);

#endif
