/* model.layers: each item is a layer, written `- type: dense` with the layer's fields beside it,
 * or compactly `- dense: {units: 128}` (`- flatten` alone for a layer without fields). Which
 * fields a kind takes, which it needs and their defaults live here; the model builder reads the
 * resulting kl_layer_spec array. Called from the schema walk (schema.c). */
#include <stdlib.h>
#include <string.h>

#include "runtime/config_impl.h"

_Static_assert(sizeof(kl_layer_kind) == sizeof(int), "KL__F_ENUM fields are stored as int");
_Static_assert(sizeof(kl_activation) == sizeof(int), "KL__F_ENUM fields are stored as int");

/* Residual blocks nest; deeper than this is certainly a mistake. */
#define MAX_NESTING 16

static const char *const kind_names[] = {"dense",           "conv2d",    "max_pool",  "avg_pool",
                                         "global_avg_pool", "batchnorm", "layernorm", "dropout",
                                         "activation",      "flatten",   "residual",  NULL};
static const char *const activation_names[] = {"none", "relu",    "leaky_relu", "gelu",
                                               "tanh", "sigmoid", NULL};

#define KIND(kind) (1u << KL_LAYER_##kind)
#define POOLS      (KIND(MAX_POOL) | KIND(AVG_POOL))
#define ACTIVATED  (KIND(DENSE) | KIND(CONV2D) | KIND(ACTIVATION) | KIND(RESIDUAL))
#define LAYER(m)   offsetof(kl_layer_spec, m)

/* The order is the order fields are printed in. stride's default depends on the kind (conv2d 1,
 * pools their kernel): read_layer sets it. */
/* clang-format off */
const kl__field kl__layer_fields[] = {
    {.name = "units", .type = KL__F_INT, .off = LAYER(units), KL__GT(0), .kinds = KIND(DENSE)},
    {.name = "filters", .type = KL__F_INT, .off = LAYER(filters), KL__GT(0), .kinds = KIND(CONV2D)},
    {.name = "kernel", .type = KL__F_INT, .off = LAYER(kernel), KL__GT(0),
     .kinds = KIND(CONV2D) | POOLS},
    {.name = "stride", .type = KL__F_INT, .off = LAYER(stride), KL__GT(0),
     .kinds = KIND(CONV2D) | POOLS},
    {.name = "padding", .type = KL__F_INT, .off = LAYER(padding), KL__GE(0),
     .kinds = KIND(CONV2D) | POOLS, .def = "0"},
    {.name = "bias", .type = KL__F_BOOL, .off = LAYER(bias), .kinds = KIND(DENSE) | KIND(CONV2D),
     .def = "true"},
    {.name = "activation", .type = KL__F_ENUM, .off = LAYER(activation), .names = activation_names,
     .kinds = ACTIVATED, .def = "none"},
    {.name = "alpha", .type = KL__F_FLOAT, .off = LAYER(alpha), KL__GE(0), .kinds = ACTIVATED,
     .def = "0.01"},
    {.name = "rate", .type = KL__F_FLOAT, .off = LAYER(rate), KL__GE_LT(0, 1),
     .kinds = KIND(DROPOUT)},
    {.name = "momentum", .type = KL__F_FLOAT, .off = LAYER(momentum), KL__GE_LE(0, 1),
     .kinds = KIND(BATCHNORM), .def = "0.1"},
    {.name = "eps", .type = KL__F_FLOAT, .off = LAYER(eps), KL__GT(0),
     .kinds = KIND(BATCHNORM) | KIND(LAYERNORM), .def = "1e-5"},
    /* a residual's block: read one level deeper by read_fields */
    {.name = "layers", .type = KL__F_CUSTOM, .off = LAYER(layers), .off_count = LAYER(nlayers),
     .kinds = KIND(RESIDUAL), .read = kl__layers_field_read, .print = kl__layers_field_print},
};
/* clang-format on */
const int kl__layer_field_count = (int)(sizeof kl__layer_fields / sizeof kl__layer_fields[0]);
_Static_assert(sizeof kl__layer_fields / sizeof kl__layer_fields[0] <= KL__SECTION_MAX_FIELDS,
               "a layer's fields are bits of an unsigned (seen, required)");

static int field_index(const char *name)
{
    for (int i = 0; i < kl__layer_field_count; i++)
        if (strcmp(kl__layer_fields[i].name, name) == 0)
            return i;
    return -1;
}

/* A field as a bit of the masks below: 1 << its index in kl__layer_fields. */
static unsigned field_bit(const char *name)
{
    int i = field_index(name);
    KL_ASSERT(i >= 0);
    return 1u << i;
}

/* The fields each kind must be given. */
static unsigned required(kl_layer_kind kind)
{
    switch (kind) {
    case KL_LAYER_DENSE:
        return field_bit("units");
    case KL_LAYER_CONV2D:
        return field_bit("filters") | field_bit("kernel");
    case KL_LAYER_MAX_POOL:
    case KL_LAYER_AVG_POOL:
        return field_bit("kernel");
    case KL_LAYER_DROPOUT:
        return field_bit("rate");
    case KL_LAYER_ACTIVATION:
        return field_bit("activation");
    case KL_LAYER_RESIDUAL:
        return field_bit("layers");
    default:
        return 0;
    }
}

const char *kl_layer_kind_name(kl_layer_kind k)
{
    return (unsigned)k <= KL_LAYER_RESIDUAL ? kind_names[k] : "unknown";
}

const char *kl_activation_name(kl_activation a)
{
    return (unsigned)a <= KL_ACT_SIGMOID ? activation_names[a] : "unknown";
}

void kl__layers_free(kl_layer_spec *layers, int n)
{
    for (int i = 0; layers && i < n; i++)
        kl__layers_free(layers[i].layers, layers[i].nlayers);
    free(layers);
}

static bool is_kind(const char *name)
{
    for (int k = 0; kind_names[k]; k++)
        if (strcmp(kind_names[k], name) == 0)
            return true;
    return false;
}

static const kl__field type_field = {.name = "type", .type = KL__F_ENUM, .names = kind_names};

/* The field names kind takes ("type" first when written with type:). */
static int kind_fields(kl_layer_kind kind, bool with_type, const char **names)
{
    int n = 0;
    if (with_type)
        names[n++] = "type";
    for (int i = 0; i < kl__layer_field_count; i++)
        if (kl__layer_fields[i].kinds & (1u << kind))
            names[n++] = kl__layer_fields[i].name;
    return n;
}

/* The one field a layer kind may take as a plain value in the compact form: `- activation: relu`
 * and `- dropout: 0.2`. NULL for the other kinds. */
static const char *shorthand_field(kl_layer_kind kind)
{
    return kind == KL_LAYER_ACTIVATION ? "activation" : kind == KL_LAYER_DROPOUT ? "rate" : NULL;
}

const char *kl__layer_shorthand_field(const char *type)
{
    for (int i = 0; kind_names[i]; i++)
        if (!strcmp(kind_names[i], type))
            return shorthand_field((kl_layer_kind)i);
    return NULL;
}

/* `- dense: {units: 128}`: the key names the kind, the value holds the fields. */
static kl_status compact_form(const kl__ynode *inner, kl_layer_kind *kind, const kl__ynode **fields,
                              const kl__ynode **shorthand, char *path, kl_error *err)
{
    kl__ynode name = {
        .type = KL__YN_SCALAR, .str = inner->key, .plain = true, .pos = inner->key_pos};
    size_t len = kl__path_push(path, "type");
    kl_status st = kl__field_read(&type_field, kind, NULL, &name, path, err);
    kl__path_pop(path, len);
    if (st != KL_OK)
        return st;
    *fields = inner->type == KL__YN_MAP ? inner : NULL;
    if (inner->type == KL__YN_SCALAR && !kl__ynode_is_empty(inner) && shorthand_field(*kind)) {
        *shorthand = inner;
        return KL_OK;
    }
    if (inner->type != KL__YN_MAP && !kl__ynode_is_empty(inner)) {
        const char *names[16];
        int n = kind_fields(*kind, false, names);
        return kl__yaml_error(err, KL_EINVAL, inner->pos, path,
                              "the fields of %s %s layer go in a mapping, e.g. '- %s: {%s: ...}'",
                              inner->key[0] && strchr("aeiou", inner->key[0]) ? "an" : "a",
                              inner->key, inner->key, n ? names[0] : "");
    }
    return KL_OK;
}

/* The kind of a layer item and the mapping that holds its fields (NULL: none). */
static kl_status layer_form(const kl__ynode *item, kl_layer_kind *kind, const kl__ynode **fields,
                            const kl__ynode **shorthand, bool *typed, char *path, kl_error *err)
{
    const kl__ynode *type = kl__ynode_get(item, "type");
    *typed = type != NULL;
    *fields = item->type == KL__YN_MAP ? item : NULL;
    if (type) {
        size_t len = kl__path_push(path, "type");
        kl_status st = kl__field_read(&type_field, kind, NULL, type, path, err);
        kl__path_pop(path, len);
        return st;
    }
    if (item->type == KL__YN_SCALAR) {
        size_t len = kl__path_push(path, "type");
        kl_status st = kl__field_read(&type_field, kind, NULL, item, path, err);
        kl__path_pop(path, len);
        return st;
    }
    if (item->type == KL__YN_MAP && item->n == 1 &&
        (is_kind(item->items[0]->key) || field_index(item->items[0]->key) < 0))
        return compact_form(item->items[0], kind, fields, shorthand, path, err);
    return kl__yaml_error(err, KL_EINVAL, item->pos, path,
                          "a layer needs 'type:' (one of dense, conv2d, max_pool, avg_pool, "
                          "global_avg_pool, batchnorm, layernorm, dropout, activation, flatten, "
                          "residual), or the compact form '- dense: {units: 128}'");
}

/* Every row's default (whatever the kind: print shows only the kind's), then conv2d's stride. */
static kl_status layer_defaults(kl_layer_spec *l, kl_layer_kind kind, kl_source_pos pos, void *ctx,
                                char *path, kl_error *err)
{
    *l = (kl_layer_spec){.kind = kind, .pos = pos};
    l->stride = kind == KL_LAYER_CONV2D ? 1 : 0;
    kl_status st = KL_OK;
    for (int i = 0; st == KL_OK && i < kl__layer_field_count; i++) {
        size_t len = kl__path_push(path, kl__layer_fields[i].name);
        st = kl__field_default(&kl__layer_fields[i], l, ctx, pos, path, err);
        kl__path_pop(path, len);
    }
    return st;
}

static kl_status field_not_for_kind(const kl__ynode *value, kl_layer_kind kind, char *path,
                                    kl_error *err)
{
    const char *names[16];
    int n = kind_fields(kind, false, names);
    char list[256] = "";
    for (int i = 0, len = 0; i < n; i++)
        len += snprintf(list + len, sizeof list - (size_t)len, "%s%s", i ? ", " : "", names[i]);
    if (n == 0)
        return kl__yaml_error(err, KL_EINVAL, value->key_pos, path,
                              "not a field of %s; %s takes no fields", kind_names[kind],
                              kind_names[kind]);
    return kl__yaml_error(err, KL_EINVAL, value->key_pos, path,
                          "not a field of %s; its fields are: %s", kind_names[kind], list);
}

static kl_status read_fields(const kl__ynode *map, kl_layer_spec *l, bool typed, unsigned *seen,
                             void *ctx, char *path, int depth, kl_error *err)
{
    kl_status st = kl__check_duplicates(map, path, err);
    for (int i = 0; st == KL_OK && i < map->n; i++) {
        const kl__ynode *v = map->items[i];
        if (typed && strcmp(v->key, "type") == 0)
            continue;
        size_t len = kl__path_push(path, v->key);
        int fi = field_index(v->key);
        const char *names[16];
        if (fi < 0)
            st = kl__unknown_key(v, names, kind_fields(l->kind, typed, names), path, err);
        else if (!(kl__layer_fields[fi].kinds & (1u << l->kind)))
            st = field_not_for_kind(v, l->kind, path, err);
        else if (kl__layer_fields[fi].type == KL__F_CUSTOM) /* a residual's block */
            st = kl__layers_read(v, &l->layers, &l->nlayers, ctx, path, depth + 1, err);
        else
            st = kl__field_read(&kl__layer_fields[fi], l, ctx, v, path, err);
        *seen |= fi >= 0 ? 1u << fi : 0;
        kl__path_pop(path, len);
    }
    return st;
}

static kl_status check_required(const kl_layer_spec *l, unsigned seen, kl_source_pos pos,
                                char *path, kl_error *err)
{
    unsigned missing = required(l->kind) & ~seen;
    for (int i = 0; missing && i < kl__layer_field_count; i++)
        if (missing & (1u << i)) {
            size_t len = kl__path_push(path, kl__layer_fields[i].name);
            kl_status st = kl__yaml_error(err, KL_EINVAL, pos, path, "missing; %s needs %s",
                                          kind_names[l->kind], kl__layer_fields[i].name);
            kl__path_pop(path, len);
            return st;
        }
    if (l->kind == KL_LAYER_RESIDUAL && l->nlayers == 0)
        return kl__yaml_error(err, KL_EINVAL, pos, path,
                              "a residual block needs at least one layer in 'layers'");
    return KL_OK;
}

static kl_status read_layer(const kl__ynode *item, kl_layer_spec *l, void *ctx, char *path,
                            int depth, kl_error *err)
{
    kl_layer_kind kind = KL_LAYER_DENSE;
    const kl__ynode *fields, *shorthand = NULL;
    bool typed;
    kl_status st = layer_form(item, &kind, &fields, &shorthand, &typed, path, err);
    if (st != KL_OK)
        return st;
    if ((st = layer_defaults(l, kind, item->pos, ctx, path, err)) != KL_OK)
        return st;
    unsigned seen = 0;
    if (shorthand) {
        int fi = field_index(shorthand_field(kind));
        size_t len = kl__path_push(path, shorthand_field(kind));
        st = kl__field_read(&kl__layer_fields[fi], l, ctx, shorthand, path, err);
        kl__path_pop(path, len);
        if (st != KL_OK)
            return st;
        seen |= 1u << fi;
    }
    if (fields && (st = read_fields(fields, l, typed, &seen, ctx, path, depth, err)) != KL_OK)
        return st;
    if ((st = check_required(l, seen, item->pos, path, err)) != KL_OK)
        return st;
    if ((kind == KL_LAYER_MAX_POOL || kind == KL_LAYER_AVG_POOL) && !(seen & field_bit("stride")))
        l->stride = l->kernel;
    return KL_OK;
}

kl_status kl__layers_read(const kl__ynode *node, kl_layer_spec **layers, int *n, void *ctx,
                          char *path, int depth, kl_error *err)
{
    if (depth >= MAX_NESTING)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "residual blocks nested more than %d deep", MAX_NESTING);
    if (node->type != KL__YN_SEQ)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected a sequence of layers (lines starting with '- '), got %s",
                              node->type == KL__YN_MAP ? "a mapping" : "a scalar");
    kl__layers_free(*layers, *n);
    *n = 0;
    *layers = node->n ? calloc((size_t)node->n, sizeof **layers) : NULL;
    if (node->n && !*layers)
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    /* The count is set first so that a half-read array is freed whole (the rest is zeroed). */
    *n = node->n;
    for (int i = 0; i < node->n; i++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", i);
        size_t len = kl__path_push(path, idx);
        kl_status st = read_layer(node->items[i], &(*layers)[i], ctx, path, depth, err);
        kl__path_pop(path, len);
        if (st != KL_OK)
            return st;
    }
    return KL_OK;
}

kl_status kl__layers_field_read(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                                char *path, kl_error *err)
{
    return kl__layers_read(node, (kl_layer_spec **)((char *)base + f->off),
                           (int *)((char *)base + f->off_count), ctx, path, 0, err);
}
