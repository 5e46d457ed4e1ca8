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

#include "runtime/config_impl.h"

#define ANY 0u
#define F(name, type, off, range, lo, hi, names, sub, kinds) \
    {                                                        \
        name, type, off, 0, range, lo, hi, names, sub, kinds \
    }

static const char *const optim_names[] = {"sgd", "adam", "adamw", NULL};
static const char *const lr_names[] = {"constant", "step", "cosine", NULL};
static const char *const format_names[] = {"none", "idx", "hdf5", "csv", NULL};
static const char *const task_names[] = {"classification", "regression", NULL};
static const char *const std_names[] = {"none", "global", "feature", NULL};
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

/* optimizer: defaults come from the kind, so `name` is read first. */
#define OPT(m) offsetof(kl_config, optimizer.m)
#define SGD    (1u << KL_OPTIM_SGD)
#define ADAMS  (1u << KL_OPTIM_ADAM | 1u << KL_OPTIM_ADAMW)
static const kl__field optim_fields[] = {
    F("name", KL__F_ENUM, OPT(kind), 0, 0, 0, optim_names, NULL, ANY),
    F("lr", KL__F_FLOAT, offsetof(kl_config, schedule.base_lr), KL__R_GT, 0, 0, NULL, NULL, ANY),
    F("momentum", KL__F_FLOAT, OPT(momentum), KL__R_GE | KL__R_LT, 0, 1, NULL, NULL, SGD),
    F("dampening", KL__F_FLOAT, OPT(dampening), KL__R_GE | KL__R_LE, 0, 1, NULL, NULL, SGD),
    F("nesterov", KL__F_BOOL, OPT(nesterov), 0, 0, 0, NULL, NULL, SGD),
    F("weight_decay", KL__F_FLOAT, OPT(weight_decay), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("beta1", KL__F_FLOAT, OPT(beta1), KL__R_GE | KL__R_LT, 0, 1, NULL, NULL, ADAMS),
    F("beta2", KL__F_FLOAT, OPT(beta2), KL__R_GE | KL__R_LT, 0, 1, NULL, NULL, ADAMS),
    F("eps", KL__F_FLOAT, OPT(eps), KL__R_GT, 0, 0, NULL, NULL, ADAMS),
};

static kl_status optim_prepare(void *base, kl_config *c, const kl__ynode *map, kl_source_pos pos,
                               char *path, kl_error *err)
{
    /* `name` read into a lone int: the field's offset is into a kl_config, so read it through a
     * copy whose offset is 0 (with the table's entry, the write landed off the end of `kind`,
     * in the caller's stack frame). */
    int kind = KL_OPTIM_ADAM;
    kl__field name_field = optim_fields[0];
    name_field.off = 0;
    const kl__ynode *name = kl__ynode_get(map, "name");
    size_t len = kl__path_push(path, "name");
    kl_status st = name ? kl__field_read(&name_field, &kind, c, name, path, err) : KL_OK;
    kl__path_pop(path, len);
    c->optimizer = kl_optim_defaults((kl_optim_kind)kind);
    return st;
}

static kl_status optim_check(void *base, kl_config *c, const kl__ynode *map, kl_source_pos pos,
                             char *path, kl_error *err)
{
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

static const kl__section optim_section = {optim_fields, 9,          SIZE_MAX,   optim_prepare,
                                          optim_check,  optim_kind, optim_names};

/* schedule */
#define LR(m)  offsetof(kl_lr_schedule, m)
#define STEP   (1u << KL_LR_STEP)
#define COSINE (1u << KL_LR_COSINE)
static const kl__field lr_fields[] = {
    F("name", KL__F_ENUM, LR(kind), 0, 0, 0, lr_names, NULL, ANY),
    F("warmup_steps", KL__F_I64, LR(warmup_steps), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("step_size", KL__F_I64, LR(step_size), KL__R_GT, 0, 0, NULL, NULL, STEP),
    F("gamma", KL__F_FLOAT, LR(gamma), KL__R_GT | KL__R_LE, 0, 1, NULL, NULL, STEP),
    F("min_lr", KL__F_FLOAT, LR(min_lr), KL__R_GE, 0, 0, NULL, NULL, COSINE),
    F("total_steps", KL__F_I64, LR(total_steps), KL__R_GE, 0, 0, NULL, NULL, COSINE),
};

/* total_steps 0 means "from the epochs", which the trainer fills in; everything else is checked
 * now, with a stand-in total. */
static kl_status lr_check(void *base, kl_config *c, const kl__ynode *map, kl_source_pos pos,
                          char *path, kl_error *err)
{
    static const char *const keys[] = {"warmup_steps", "step_size", "gamma",
                                       "total_steps",  "min_lr",    NULL};
    kl_lr_schedule s = c->schedule;
    if (s.kind == KL_LR_COSINE && s.total_steps == 0)
        s.total_steps = s.warmup_steps + 1;
    kl_error e = {0};
    if (kl_lr_check(&s, &e) == KL_OK)
        return KL_OK;
    return place_error(map, pos, path, named_in(e.msg, keys), e.msg, err);
}

static int lr_kind(const void *base)
{
    return (int)((const kl_lr_schedule *)base)->kind;
}

static const kl__section lr_section = {lr_fields, 6, SIZE_MAX, NULL, lr_check, lr_kind, lr_names};

/* data.train, data.val, data.test */
#define SRC(m) offsetof(kl_data_source, m)
#define FILES  (1u << KL_DATA_IDX | 1u << KL_DATA_HDF5 | 1u << KL_DATA_CSV)
static const kl__field source_fields[] = {
    F("format", KL__F_ENUM, SRC(format), 0, 0, 0, format_names, NULL, ANY),
    F("path", KL__F_STR, SRC(path), 0, 0, 0, NULL, NULL, FILES),
    F("labels", KL__F_STR, SRC(labels), 0, 0, 0, NULL, NULL, 1u << KL_DATA_IDX),
    F("x_dataset", KL__F_STR, SRC(x_dataset), 0, 0, 0, NULL, NULL, 1u << KL_DATA_HDF5),
    F("y_dataset", KL__F_STR, SRC(y_dataset), 0, 0, 0, NULL, NULL, 1u << KL_DATA_HDF5),
    F("label_column", KL__F_STR, SRC(label_column), 0, 0, 0, NULL, NULL, 1u << KL_DATA_CSV),
};

static kl_status source_check(void *base, kl_config *c, const kl__ynode *map, kl_source_pos pos,
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

static const kl__section source_section = {
    source_fields, 6, offsetof(kl_data_source, pos), NULL, source_check, source_kind, format_names};

/* data */
#define DATA(m) offsetof(kl_data_config, m)
static const kl__field data_fields[] = {
    F("dataset", KL__F_STR, DATA(dataset), 0, 0, 0, dataset_names, NULL, ANY),
    F("dir", KL__F_STR, DATA(dir), 0, 0, 0, NULL, NULL, ANY),
    F("train", KL__F_SECTION, DATA(train), 0, 0, 0, NULL, &source_section, ANY),
    F("val", KL__F_SECTION, DATA(val), 0, 0, 0, NULL, &source_section, ANY),
    F("test", KL__F_SECTION, DATA(test), 0, 0, 0, NULL, &source_section, ANY),
    F("val_fraction", KL__F_FLOAT, DATA(val_fraction), KL__R_GE | KL__R_LT, 0, 1, NULL, NULL, ANY),
    F("task", KL__F_ENUM, DATA(task), 0, 0, 0, task_names, NULL, ANY),
    F("classes", KL__F_INT, DATA(classes), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("standardize", KL__F_ENUM, DATA(standardize), 0, 0, 0, std_names, NULL, ANY),
    F("flip", KL__F_BOOL, DATA(flip), 0, 0, 0, NULL, NULL, ANY),
    F("crop_padding", KL__F_INT, DATA(crop_padding), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("limit", KL__F_I64, DATA(limit), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("lazy", KL__F_BOOL, DATA(lazy), 0, 0, 0, NULL, NULL, ANY),
};

static kl_status data_check(void *base, kl_config *c, const kl__ynode *map, kl_source_pos pos,
                            char *path, kl_error *err)
{
    kl_data_config *d = base;
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

static const kl__section data_section = {data_fields, 13, SIZE_MAX, NULL, data_check, NULL, NULL};

/* model */
static const kl__field model_fields[] = {
    {"layers", KL__F_LAYERS, offsetof(kl_model_spec, layers), offsetof(kl_model_spec, nlayers), 0,
     0, 0, NULL, NULL, ANY},
};
static const kl__section model_section = {model_fields, 1, SIZE_MAX, NULL, NULL, NULL, NULL};

/* train */
#define ES(m) offsetof(kl_early_stop, m)
static const kl__field early_fields[] = {
    F("metric", KL__F_STR, ES(metric), 0, 0, 0, metric_names, NULL, ANY),
    F("patience", KL__F_INT, ES(patience), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("min_delta", KL__F_FLOAT, ES(min_delta), KL__R_GE, 0, 0, NULL, NULL, ANY),
};
static const kl__section early_section = {early_fields, 3, SIZE_MAX, NULL, NULL, NULL, NULL};

#define TR(m) offsetof(kl_train_section, m)
static const kl__field train_fields[] = {
    F("epochs", KL__F_INT, TR(epochs), KL__R_GE, 1, 0, NULL, NULL, ANY),
    F("batch_size", KL__F_I64, TR(batch_size), KL__R_GE, 1, 0, NULL, NULL, ANY),
    F("eval_every", KL__F_INT, TR(eval_every), KL__R_GE, 1, 0, NULL, NULL, ANY),
    F("seed", KL__F_U64, TR(seed), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("threads", KL__F_INT, TR(threads), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("clip_norm", KL__F_FLOAT, TR(clip_norm), KL__R_GE, 0, 0, NULL, NULL, ANY),
    F("accumulate", KL__F_INT, TR(accumulate), KL__R_GE, 1, 0, NULL, NULL, ANY),
    F("label_smoothing", KL__F_FLOAT, TR(label_smoothing), KL__R_GE | KL__R_LT, 0, 1, NULL, NULL,
      ANY),
    F("early_stop", KL__F_SECTION, TR(early_stop), 0, 0, 0, NULL, &early_section, ANY),
};
static const kl__section train_section = {train_fields, 9, SIZE_MAX, NULL, NULL, NULL, NULL};

#define DI(m) offsetof(kl_dist_section, m)
static const kl__field dist_fields[] = {
    F("bucket_mb", KL__F_FLOAT, DI(bucket_mb), KL__R_GT, 0, 0, NULL, NULL, ANY),
    F("timeout", KL__F_FLOAT, DI(timeout), KL__R_GT, 0, 0, NULL, NULL, ANY),
    F("overlap", KL__F_BOOL, DI(overlap), 0, 0, 0, NULL, NULL, ANY),
};
static const kl__section dist_section = {dist_fields, 3, SIZE_MAX, NULL, NULL, NULL, NULL};

#define CK(m) offsetof(kl_checkpoint_section, m)
static const kl__field ckpt_fields[] = {
    F("every", KL__F_STR, CK(every), 0, 0, 0, NULL, NULL, ANY),
    F("keep_last", KL__F_INT, CK(keep_last), KL__R_GE, 0, 0, NULL, NULL, ANY),
};
/* checkpoint.every: a positive number and a unit, parsed here so that a typo is placed at its
 * file:line:col like any other bad value. */
static kl_status ckpt_check(void *base, kl_config *c, const kl__ynode *map, kl_source_pos pos,
                            char *path, kl_error *err)
{
    (void)base;
    kl_checkpoint_section *k = &c->checkpoint;
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

static const kl__section ckpt_section = {ckpt_fields, 2, SIZE_MAX, NULL, ckpt_check, NULL, NULL};

/* The top level, in the order kl_config_print writes it. The optimizer's fields are placed
 * relative to kl_config itself because optimizer.lr lands in the schedule. */
#define C(m) offsetof(kl_config, m)
static const kl__field root_fields[] = {
    F("name", KL__F_STR, C(name), 0, 0, 0, NULL, NULL, ANY),
    F("runs_dir", KL__F_STR, C(runs_dir), 0, 0, 0, NULL, NULL, ANY),
    F("model", KL__F_SECTION, C(model), 0, 0, 0, NULL, &model_section, ANY),
    F("data", KL__F_SECTION, C(data), 0, 0, 0, NULL, &data_section, ANY),
    F("optimizer", KL__F_SECTION, 0, 0, 0, 0, NULL, &optim_section, ANY),
    F("schedule", KL__F_SECTION, C(schedule), 0, 0, 0, NULL, &lr_section, ANY),
    F("train", KL__F_SECTION, C(train), 0, 0, 0, NULL, &train_section, ANY),
    F("dist", KL__F_SECTION, C(dist), 0, 0, 0, NULL, &dist_section, ANY),
    F("checkpoint", KL__F_SECTION, C(checkpoint), 0, 0, 0, NULL, &ckpt_section, ANY),
};
static const kl__section root_section = {root_fields, 9, SIZE_MAX, NULL, NULL, NULL, NULL};

const kl__section *kl__config_schema(void)
{
    return &root_section;
}

static bool source_defaults(kl_data_source *s)
{
    return kl__strset(&s->x_dataset, "x") && kl__strset(&s->y_dataset, "y") &&
           kl__strset(&s->label_column, "label");
}

static bool set_defaults(kl_config *c)
{
    c->optimizer = kl_optim_defaults(KL_OPTIM_ADAM);
    c->schedule = (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = 1e-3f, .gamma = 0.1f};
    c->train = (kl_train_section){
        .epochs = 10, .batch_size = 64, .eval_every = 1, .seed = 1, .accumulate = 1};
    c->checkpoint.keep_last = 3;
    c->dist.bucket_mb = 25.0f;
    c->dist.timeout = KL_DIST_TIMEOUT_DEFAULT;
    c->dist.overlap = true;
    c->data.task = KL_TASK_CLASSIFICATION;
    c->data.standardize = KL_STD_GLOBAL;
    return kl__strset(&c->runs_dir, "runs") &&
           kl__strset(&c->train.early_stop.metric, "val_loss") && source_defaults(&c->data.train) &&
           source_defaults(&c->data.val) && source_defaults(&c->data.test);
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

kl_config *kl_config_parse(const char *name, const char *text, size_t len,
                           const char *const *overrides, int noverrides, kl_error *err)
{
    kl_config *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(name ? name : "<config>")) || !set_defaults(c)) {
        kl_config_free(c);
        kl_error_set(err, KL_ENOMEM, "out of memory reading a config");
        return NULL;
    }
    kl__ynode *root = NULL;
    char path[KL__PATH_MAX] = "";
    kl_status st =
        build_tree(c, text ? text : "", text ? len : 0, overrides, noverrides, &root, err);
    if (st == KL_OK)
        st = kl__section_read(&root_section, c, c, root, root->pos, path, err);
    kl__ynode_free(root);
    if (st != KL_OK) {
        kl_config_free(c);
        return NULL;
    }
    return c;
}

static char *read_file(const char *path, size_t *len, kl_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kl_error_set(err, KL_EIO, "cannot read config %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger)
            free(buf);
        buf = bigger;
        cap *= 2;
    }
    if (!buf)
        kl_error_set(err, KL_ENOMEM, "out of memory reading config %s", path);
    else if (ferror(f)) {
        kl_error_set(err, KL_EIO, "cannot read config %s: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = n;
    return buf;
}

kl_config *kl_config_load(const char *path, const char *const *overrides, int noverrides,
                          kl_error *err)
{
    size_t len;
    char *text = read_file(path, &len, err);
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
