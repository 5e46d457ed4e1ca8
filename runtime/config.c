/* The training config's schema and its public API: the tables that list every key of a
 * train.yaml in order with its type, range and place in kl_config, the defaults, the checks that
 * span several keys (optimizer, schedule, data sources), and kl_config_load/parse/free/hash.
 * docs/config.md documents the same schema; the two change together. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/device.h"
#include "runtime/config_impl.h"
#include "runtime/file.h"

_Static_assert(sizeof(kl_optim_kind) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_lr_kind) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_data_format) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_task) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_standardize) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_train_device) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_train_precision) == sizeof(int), "KL__F_ENUM fields are stored as int");

static const char *const optim_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const precision_names[] = {"fp32", "bf16", NULL};
static const char *const schedule_names[] = {"constant", "step", "cosine", "onecycle", NULL};
static const char *const format_names[] = {"none", "idx", "hdf5", "csv", NULL};
static const char *const task_names[] = {"classification", "regression", NULL};
static const char *const standardize_names[] = {"none", "global", "feature", NULL};
static const char *const dataset_names[] = {"fashion-mnist", "mnist", NULL};
static const char *const metric_names[] = {"val_loss", "val_accuracy", NULL};

/* Finds in msg which of names it talks about first (the checks in ops/ and trainers/ name the
 * field). */
static const char *named_in(const char *msg, const char *const *names)
{
    const char *best = NULL, *best_at = NULL;
    for (int i = 0; names[i]; i++) {
        const char *p = strstr(msg, names[i]);
        if (p && (!best_at || p < best_at)) {
            best = names[i];
            best_at = p;
        }
    }
    return best;
}

/* An error from a check outside this file, placed at the key it names (or at the section). */
static kl_status place_error(const kl__ynode *map, kl_source_pos pos, char *path, const char *key,
                             const char *msg, kl_error *err)
{
    const kl__ynode *node = key ? kl__ynode_get(map, key) : NULL;
    size_t len = key ? kl__path_push(path, key) : strlen(path);
    kl_status st = kl__yaml_error(err, KL_EINVAL, node ? node->pos : pos, path, "%s", msg);
    kl__path_pop(path, len);
    return st;
}

/* optimizer: the defaults of every key but lr depend on the kind (kl_optim_defaults, set by
 * optim_prepare), so `name` is read first. */
#define OPTIM(m) offsetof(kl_config, optimizer.m)
#define SGD      (1u << KL_OPTIM_SGD)
#define ADAMS    (1u << KL_OPTIM_ADAM | 1u << KL_OPTIM_ADAMW)
/* clang-format off */
static const kl__field optim_fields[] = {
    {.name = "name", .type = KL__F_ENUM, .off = OPTIM(kind), .names = optim_names, .def = "adam"},
    {.name = "lr", .type = KL__F_FLOAT, .off = offsetof(kl_config, schedule.base_lr), KL__GT(0),
     .def = "1e-3"},
    {.name = "momentum", .type = KL__F_FLOAT, .off = OPTIM(momentum), KL__GE_LT(0, 1),
     .kinds = SGD},
    {.name = "dampening", .type = KL__F_FLOAT, .off = OPTIM(dampening), KL__GE_LE(0, 1),
     .kinds = SGD},
    {.name = "nesterov", .type = KL__F_BOOL, .off = OPTIM(nesterov), .kinds = SGD},
    {.name = "weight_decay", .type = KL__F_FLOAT, .off = OPTIM(weight_decay), KL__GE(0)},
    {.name = "beta1", .type = KL__F_FLOAT, .off = OPTIM(beta1), KL__GE_LT(0, 1), .kinds = ADAMS},
    {.name = "beta2", .type = KL__F_FLOAT, .off = OPTIM(beta2), KL__GE_LT(0, 1), .kinds = ADAMS},
    {.name = "eps", .type = KL__F_FLOAT, .off = OPTIM(eps), KL__GT(0), .kinds = ADAMS},
};
/* clang-format on */

static kl_status optim_prepare(void *base, void *ctx, const kl__ynode *map, kl_source_pos pos,
                               char *path, kl_error *err)
{
    /* `name` is read into a lone int through a copy of its row with offset 0: the row's offset
     * is into a kl_config, which is also this section's base. */
    kl_config *c = base;
    int kind = KL_OPTIM_ADAM;
    kl__field name_field = optim_fields[0];
    name_field.off = 0;
    const kl__ynode *name = kl__ynode_get(map, "name");
    size_t len = kl__path_push(path, "name");
    kl_status st = name ? kl__field_read(&name_field, &kind, ctx, name, path, err) : KL_OK;
    kl__path_pop(path, len);
    c->optimizer = kl_optim_defaults((kl_optim_kind)kind);
    return st;
}

static kl_status optim_check(void *base, void *ctx, const kl__ynode *map, kl_source_pos pos,
                             char *path, kl_error *err)
{
    kl_config *c = base;
    static const char *const keys[] = {"nesterov", "dampening", "momentum", "weight_decay",
                                       "beta1",    "beta2",     "eps",      NULL};
    kl_error e = {0};
    kl_optim *o = kl_optim_new(&c->optimizer, 1, &e);
    if (o) {
        kl_optim_free(o);
        return KL_OK;
    }
    if (e.status == KL_ENOMEM)
        return kl_error_set(err, KL_ENOMEM, "%s", e.msg);
    return place_error(map, pos, path, named_in(e.msg, keys), e.msg, err);
}

static int optim_kind(const void *base)
{
    return (int)((const kl_config *)base)->optimizer.kind;
}

/* clang-format off */
static const kl__section optim_section = {
    KL__FIELDS(optim_fields),
    .prepare = optim_prepare,
    .check = optim_check,
    .kind_of = optim_kind,
    .kind_names = optim_names,
};
/* clang-format on */

/* schedule */
#define SCHEDULE(m) offsetof(kl_lr_schedule, m)
#define STEP        (1u << KL_LR_STEP)
#define COSINE      (1u << KL_LR_COSINE)
#define ONECYCLE    (1u << KL_LR_ONECYCLE)
#define WARMED      (1u << KL_LR_CONSTANT | STEP | COSINE)
/* clang-format off */
static const kl__field schedule_fields[] = {
    {.name = "name", .type = KL__F_ENUM, .off = SCHEDULE(kind), .names = schedule_names,
     .def = "constant"},
    {.name = "warmup_steps", .type = KL__F_I64, .off = SCHEDULE(warmup_steps), KL__GE(0),
     .kinds = WARMED, .def = "0"},
    {.name = "step_size", .type = KL__F_I64, .off = SCHEDULE(step_size), KL__GT(0), .kinds = STEP},
    {.name = "gamma", .type = KL__F_FLOAT, .off = SCHEDULE(gamma), KL__GT_LE(0, 1), .kinds = STEP,
     .def = "0.1"},
    {.name = "min_lr", .type = KL__F_FLOAT, .off = SCHEDULE(min_lr), KL__GE(0), .kinds = COSINE,
     .def = "0"},
    {.name = "total_steps", .type = KL__F_I64, .off = SCHEDULE(total_steps), KL__GE(0),
     .kinds = COSINE | ONECYCLE, .def = "0"},
    {.name = "pct_start", .type = KL__F_FLOAT, .off = SCHEDULE(pct_start), KL__GT_LT(0, 1),
     .kinds = ONECYCLE, .def = "0.3"},
    {.name = "div_factor", .type = KL__F_FLOAT, .off = SCHEDULE(div_factor), KL__GE(1),
     .kinds = ONECYCLE, .def = "25"},
    {.name = "final_div_factor", .type = KL__F_FLOAT, .off = SCHEDULE(final_div_factor),
     KL__GE(1), .kinds = ONECYCLE, .def = "1e4"},
};
/* clang-format on */

/* total_steps 0 means "from the epochs", which the trainer fills in; everything else is checked
 * now, with a stand-in total. */
static kl_status schedule_check(void *base, void *ctx, const kl__ynode *map, kl_source_pos pos,
                                char *path, kl_error *err)
{
    static const char *const keys[] = {"warmup_steps", "step_size",        "gamma",
                                       "total_steps",  "min_lr",           "pct_start",
                                       "div_factor",   "final_div_factor", NULL};
    kl_lr_schedule s = *(const kl_lr_schedule *)base;
    if (s.kind == KL_LR_COSINE && s.total_steps == 0)
        s.total_steps = s.warmup_steps + 1;
    if (s.kind == KL_LR_ONECYCLE) {
        /* A stand-in long enough for any pct_start a float holds away from 0. */
        if (s.total_steps == 0)
            s.total_steps = INT64_C(1) << 40;
        /* warmup_steps is not a onecycle key: check_kinds refuses it as such after this. */
        s.warmup_steps = 0;
    }
    kl_error e = {0};
    if (kl_lr_check(&s, &e) == KL_OK)
        return KL_OK;
    return place_error(map, pos, path, named_in(e.msg, keys), e.msg, err);
}

static int schedule_kind(const void *base)
{
    return (int)((const kl_lr_schedule *)base)->kind;
}

static const kl__section schedule_section = {
    KL__FIELDS(schedule_fields),
    .check = schedule_check,
    .kind_of = schedule_kind,
    .kind_names = schedule_names,
};

/* data.train, data.val, data.test */
#define SOURCE(m) offsetof(kl_data_source, m)
#define FILES     (1u << KL_DATA_IDX | 1u << KL_DATA_HDF5 | 1u << KL_DATA_CSV)
/* clang-format off */
static const kl__field source_fields[] = {
    {.name = "format", .type = KL__F_ENUM, .off = SOURCE(format), .names = format_names,
     .def = "none"},
    {.name = "path", .type = KL__F_STR, .off = SOURCE(path), .kinds = FILES},
    {.name = "labels", .type = KL__F_STR, .off = SOURCE(labels), .kinds = 1u << KL_DATA_IDX},
    {.name = "x_dataset", .type = KL__F_STR, .off = SOURCE(x_dataset), .kinds = 1u << KL_DATA_HDF5,
     .def = "x"},
    {.name = "y_dataset", .type = KL__F_STR, .off = SOURCE(y_dataset), .kinds = 1u << KL_DATA_HDF5,
     .def = "y"},
    {.name = "label_column", .type = KL__F_STR, .off = SOURCE(label_column),
     .kinds = 1u << KL_DATA_CSV, .def = "label"},
};
/* clang-format on */

static kl_status source_check(void *base, void *ctx, const kl__ynode *map, kl_source_pos pos,
                              char *path, kl_error *err)
{
    kl_data_source *s = base;
    if (!map || (s->format == KL_DATA_NONE && map->n == 1 && kl__ynode_get(map, "format")))
        return KL_OK;
    if (s->format == KL_DATA_NONE)
        return place_error(NULL, pos, path, "format", "missing; one of (idx, hdf5, csv)", err);
    if (!s->path)
        return place_error(NULL, pos, path, "path", "missing; the source needs a file", err);
    if (s->format == KL_DATA_IDX && !s->labels)
        return place_error(NULL, pos, path, "labels",
                           "missing; an idx source needs the labels file beside the images", err);
    return KL_OK;
}

static int source_kind(const void *base)
{
    return (int)((const kl_data_source *)base)->format;
}

/* clang-format off */
static const kl__section source_section = {
    KL__FIELDS(source_fields),
    .keep_pos = true,
    .pos_off = offsetof(kl_data_source, pos),
    .check = source_check,
    .kind_of = source_kind,
    .kind_names = format_names,
};
/* clang-format on */

/* data */
#define DATA(m) offsetof(kl_data_config, m)
/* clang-format off */
static const kl__field data_fields[] = {
    {.name = "dataset", .type = KL__F_STR, .off = DATA(dataset), .names = dataset_names},
    {.name = "dir", .type = KL__F_STR, .off = DATA(dir)}, /* from dataset: data_check */
    {.name = "train", .type = KL__F_SECTION, .off = DATA(train), .sub = &source_section},
    {.name = "val", .type = KL__F_SECTION, .off = DATA(val), .sub = &source_section},
    {.name = "test", .type = KL__F_SECTION, .off = DATA(test), .sub = &source_section},
    {.name = "val_fraction", .type = KL__F_FLOAT, .off = DATA(val_fraction), KL__GE_LT(0, 1),
     .def = "0"},
    {.name = "task", .type = KL__F_ENUM, .off = DATA(task), .names = task_names,
     .def = "classification"},
    {.name = "classes", .type = KL__F_INT, .off = DATA(classes), KL__GE(0), .def = "0"},
    {.name = "standardize", .type = KL__F_ENUM, .off = DATA(standardize),
     .names = standardize_names, .def = "global"},
    {.name = "flip", .type = KL__F_BOOL, .off = DATA(flip), .def = "false"},
    {.name = "crop_padding", .type = KL__F_INT, .off = DATA(crop_padding), KL__GE(0), .def = "0"},
    {.name = "limit", .type = KL__F_I64, .off = DATA(limit), KL__GE(0), .def = "0"},
    {.name = "lazy", .type = KL__F_BOOL, .off = DATA(lazy), .def = "false"},
};
/* clang-format on */

/* What the hooks learn of the document being read (kl__section_read's ctx). */
typedef struct read_ctx {
    bool model_file; /* the config a model file stores: only its model section is required */
} read_ctx;

static kl_status data_check(void *base, void *ctx, const kl__ynode *map, kl_source_pos pos,
                            char *path, kl_error *err)
{
    kl_data_config *d = base;
    const read_ctx *rc = ctx;
    if (!map && rc && rc->model_file) /* a model file need not say what it was trained on */
        return KL_OK;
    if (d->dataset && !d->dir) {
        char dir[256];
        snprintf(dir, sizeof dir, "/usr/share/datasets/%s", d->dataset);
        if (!kl__strset(&d->dir, dir))
            return kl_error_set(err, KL_ENOMEM, "out of memory reading data.dir");
    }
    if (!d->dataset && d->train.format == KL_DATA_NONE)
        return place_error(NULL, pos, path, "train",
                           "missing; give data.train (format, path) or data.dataset "
                           "(fashion-mnist, mnist)",
                           err);
    if (d->val.format != KL_DATA_NONE && d->val_fraction > 0)
        return place_error(map, pos, path, "val_fraction",
                           "give either data.val or data.val_fraction, not both", err);
    return KL_OK;
}

static const kl__section data_section = {
    KL__FIELDS(data_fields),
    .check = data_check,
};

/* model */
/* clang-format off */
static const kl__field model_fields[] = {
    {.name = "layers", .type = KL__F_CUSTOM, .off = offsetof(kl_model_spec, layers),
     .off_count = offsetof(kl_model_spec, nlayers), .read = kl__layers_field_read,
     .print = kl__layers_field_print},
};
/* clang-format on */
static const kl__section model_section = {KL__FIELDS(model_fields)};

/* train */
#define EARLY_STOP(m) offsetof(kl_early_stop, m)
/* clang-format off */
static const kl__field early_stop_fields[] = {
    {.name = "metric", .type = KL__F_STR, .off = EARLY_STOP(metric), .names = metric_names,
     .def = "val_loss"},
    {.name = "patience", .type = KL__F_INT, .off = EARLY_STOP(patience), KL__GE(0), .def = "0"},
    {.name = "min_delta", .type = KL__F_FLOAT, .off = EARLY_STOP(min_delta), KL__GE(0), .def = "0"},
};
/* clang-format on */
static const kl__section early_stop_section = {KL__FIELDS(early_stop_fields)};

#define TRAIN(m) offsetof(kl_train_section, m)
/* clang-format off */
static const kl__field train_fields[] = {
    {.name = "epochs", .type = KL__F_INT, .off = TRAIN(epochs), KL__GE(1), .def = "10"},
    {.name = "batch_size", .type = KL__F_I64, .off = TRAIN(batch_size), KL__GE(1), .def = "64"},
    {.name = "eval_every", .type = KL__F_INT, .off = TRAIN(eval_every), KL__GE(1), .def = "1"},
    {.name = "seed", .type = KL__F_U64, .off = TRAIN(seed), KL__GE(0), .def = "1"},
    {.name = "threads", .type = KL__F_INT, .off = TRAIN(threads), KL__GE(0), .def = "0"},
    {.name = "device", .type = KL__F_ENUM, .off = TRAIN(device), .names = kl_train_device_names,
     .def = "auto"},
    {.name = "device_share", .type = KL__F_BOOL, .off = TRAIN(device_share), .def = "false"},
    {.name = "cuda_graph", .type = KL__F_BOOL, .off = TRAIN(cuda_graph), .def = "true"},
    {.name = "precision",
     .type = KL__F_ENUM,
     .off = TRAIN(precision),
     .names = precision_names,
     .def = "fp32"},
    {.name = "clip_norm", .type = KL__F_FLOAT, .off = TRAIN(clip_norm), KL__GE(0), .def = "0"},
    {.name = "accumulate", .type = KL__F_INT, .off = TRAIN(accumulate), KL__GE(1), .def = "1"},
    {.name = "label_smoothing", .type = KL__F_FLOAT, .off = TRAIN(label_smoothing), KL__GE_LT(0, 1),
     .def = "0"},
    {.name = "early_stop", .type = KL__F_SECTION, .off = TRAIN(early_stop),
     .sub = &early_stop_section},
};
/* clang-format on */
static const kl__section train_section = {KL__FIELDS(train_fields)};

/* dist.timeout's default is KL_DIST_TIMEOUT_DEFAULT (test_config checks that they agree). */
#define DIST(m) offsetof(kl_dist_section, m)
/* clang-format off */
static const kl__field dist_fields[] = {
    {.name = "bucket_mb", .type = KL__F_FLOAT, .off = DIST(bucket_mb), KL__GT(0), .def = "25"},
    {.name = "timeout", .type = KL__F_FLOAT, .off = DIST(timeout), KL__GT(0), .def = "300"},
    {.name = "overlap", .type = KL__F_BOOL, .off = DIST(overlap), .def = "true"},
    {.name = "deterministic", .type = KL__F_BOOL, .off = DIST(deterministic), .def = "false"},
    {.name = "shards", .type = KL__F_INT, .off = DIST(shards), KL__GE_LE(1, 4096), .def = "8"},
};
/* clang-format on */
static const kl__section dist_section = {KL__FIELDS(dist_fields)};

#define CHECKPOINT(m) offsetof(kl_checkpoint_section, m)
/* clang-format off */
static const kl__field checkpoint_fields[] = {
    {.name = "every", .type = KL__F_STR, .off = CHECKPOINT(every)}, /* parsed by checkpoint_check */
    {.name = "keep_last", .type = KL__F_INT, .off = CHECKPOINT(keep_last), KL__GE(0), .def = "3"},
};
/* clang-format on */
/* checkpoint.every: a positive number and a unit, parsed here so that a typo is placed at its
 * file:line:col like any other bad value. */
static kl_status checkpoint_check(void *base, void *ctx, const kl__ynode *map, kl_source_pos pos,
                                  char *path, kl_error *err)
{
    kl_checkpoint_section *k = base;
    k->every_unit = KL_EVERY_OFF;
    if (!k->every || !*k->every)
        return KL_OK;
    static const struct {
        const char *name;
        kl_every_unit unit;
        double scale;
    } units[] = {{"epoch", KL_EVERY_EPOCHS, 1},    {"epochs", KL_EVERY_EPOCHS, 1},
                 {"step", KL_EVERY_STEPS, 1},      {"steps", KL_EVERY_STEPS, 1},
                 {"s", KL_EVERY_SECONDS, 1},       {"sec", KL_EVERY_SECONDS, 1},
                 {"seconds", KL_EVERY_SECONDS, 1}, {"min", KL_EVERY_SECONDS, 60},
                 {"minutes", KL_EVERY_SECONDS, 60}};
    char *end;
    double n = strtod(k->every, &end);
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (end != k->every && !strcmp(end, units[i].name) && n > 0 && isfinite(n)) {
            bool whole = units[i].unit != KL_EVERY_SECONDS;
            if (whole && n != floor(n))
                break;
            k->every_unit = units[i].unit;
            k->every_n = n * units[i].scale;
            return KL_OK;
        }
    char msg[256];
    snprintf(msg, sizeof msg,
             "'%s' is not a checkpoint interval: write a positive count and a unit, as in "
             "\"2 epochs\", \"500 steps\", \"600 s\" or \"10 min\"",
             k->every);
    return place_error(map, pos, path, "every", msg, err);
}

static const kl__section checkpoint_section = {
    KL__FIELDS(checkpoint_fields),
    .check = checkpoint_check,
};

/* The top level, in the order kl_config_print writes it. The optimizer's fields are placed
 * relative to kl_config itself because optimizer.lr lands in the schedule. */
#define CONFIG(m) offsetof(kl_config, m)
/* clang-format off */
static const kl__field root_fields[] = {
    {.name = "name", .type = KL__F_STR, .off = CONFIG(name)}, /* NULL: a timestamp */
    {.name = "runs_dir", .type = KL__F_STR, .off = CONFIG(runs_dir), .def = "runs"},
    {.name = "model", .type = KL__F_SECTION, .off = CONFIG(model), .sub = &model_section},
    {.name = "data", .type = KL__F_SECTION, .off = CONFIG(data), .sub = &data_section},
    {.name = "optimizer", .type = KL__F_SECTION, .off = 0, .sub = &optim_section},
    {.name = "schedule", .type = KL__F_SECTION, .off = CONFIG(schedule), .sub = &schedule_section},
    {.name = "train", .type = KL__F_SECTION, .off = CONFIG(train), .sub = &train_section},
    {.name = "dist", .type = KL__F_SECTION, .off = CONFIG(dist), .sub = &dist_section},
    {.name = "checkpoint", .type = KL__F_SECTION, .off = CONFIG(checkpoint),
     .sub = &checkpoint_section},
};
/* clang-format on */
static const kl__section root_section = {KL__FIELDS(root_fields)};

const kl__section *kl__config_schema(void)
{
    return &root_section;
}

static void free_source(kl_data_source *s)
{
    free(s->path);
    free(s->labels);
    free(s->x_dataset);
    free(s->y_dataset);
    free(s->label_column);
}

void kl_config_free(kl_config *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->name);
    free(c->runs_dir);
    kl__layers_free(c->model.layers, c->model.nlayers);
    free(c->data.dataset);
    free(c->data.dir);
    free_source(&c->data.train);
    free_source(&c->data.val);
    free_source(&c->data.test);
    free(c->train.early_stop.metric);
    free(c->checkpoint.every);
    free(c);
}

/* The tree of the file with the overrides applied; an empty file is an empty mapping. */
static kl_status build_tree(kl_config *c, const char *text, size_t len,
                            const char *const *overrides, int noverrides, kl__ynode **root,
                            kl_error *err)
{
    kl_source_pos top = {c->path, 1, 1};
    kl_status st = kl__yaml_parse(c->path, text, len, 0, 0, root, err);
    if (st == KL_OK && (!*root || kl__ynode_is_empty(*root))) {
        kl__ynode_free(*root);
        if (!(*root = kl__ynode_new(KL__YN_MAP, top)))
            return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", c->path);
    }
    for (int i = 0; st == KL_OK && i < noverrides; i++)
        st = kl__config_override(root, overrides[i], i + 1, err);
    if (st == KL_OK && (*root)->type != KL__YN_MAP)
        st = kl__yaml_error(err, KL_EINVAL, (*root)->pos, NULL,
                            "a config is a mapping of sections (name, model, data, optimizer, "
                            "schedule, train, dist, checkpoint), not a %s",
                            (*root)->type == KL__YN_SEQ ? "sequence" : "single value");
    return st;
}

static kl_config *parse(const char *name, const char *text, size_t len,
                        const char *const *overrides, int noverrides, bool model_file,
                        kl_error *err)
{
    kl_config *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(name ? name : "<config>"))) {
        kl_config_free(c);
        kl_error_set(err, KL_ENOMEM, "out of memory reading a config");
        return NULL;
    }
    kl__ynode *root = NULL;
    char path[KL__PATH_MAX] = "";
    kl_status st =
        build_tree(c, text ? text : "", text ? len : 0, overrides, noverrides, &root, err);
    if (st == KL_OK)
        st = kl__section_read(&root_section, c, &(read_ctx){.model_file = model_file}, root,
                              root->pos, path, err);
    kl__ynode_free(root);
    if (st != KL_OK) {
        kl_config_free(c);
        return NULL;
    }
    return c;
}

kl_config *kl_config_parse(const char *name, const char *text, size_t len,
                           const char *const *overrides, int noverrides, kl_error *err)
{
    return parse(name, text, len, overrides, noverrides, false, err);
}

kl_config *kl_config_parse_model(const char *name, const char *text, size_t len, kl_error *err)
{
    return parse(name, text, len, NULL, 0, true, err);
}

kl_config *kl_config_load(const char *path, const char *const *overrides, int noverrides,
                          kl_error *err)
{
    size_t len;
    char *text = kl__file_read(path, "config", &len, err);
    if (!text)
        return NULL;
    kl_config *c = kl_config_parse(path, text, len, overrides, noverrides, err);
    free(text);
    return c;
}

uint64_t kl_config_hash(const kl_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return 0;
    kl_config_print(c, f);
    if (fclose(f) != 0) {
        free(text);
        return 0;
    }
    uint64_t h = 14695981039346656037ull; /* FNV-1a, 64 bits */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)text[i];
        h *= 1099511628211ull;
    }
    free(text);
    return h;
}
