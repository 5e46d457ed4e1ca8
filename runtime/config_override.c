/* `--set key.path=value` overrides: the value is parsed as YAML (a scalar, or a flow sequence or
 * mapping) and put into the config's node tree before the schema walk, so an override is checked
 * exactly like the file and its errors point into the override text (`--set:N:col`, N the
 * override's number). Mappings on the path that the file lacks are created; a number indexes a
 * sequence (`model.layers.0.units`). Called by kl_config_parse. */
#include <stdlib.h>
#include <string.h>

#include "runtime/config_impl.h"

#define SET_FILE "--set"

typedef struct override {
    const char *text, *eq; /* the whole override and its '=' */
    int index;
    char path[KL__PATH_MAX];
    kl_error *err;
} override;

static kl_source_pos at(const override *o, const char *p)
{
    return (kl_source_pos){SET_FILE, o->index, (int)(p - o->text) + 1};
}

static kl_status bad_syntax(const override *o, const char *p)
{
    return kl__yaml_error(o->err, KL_EINVAL, at(o, p), NULL,
                          "bad override '%s': expected key.path=value, e.g. train.epochs=3",
                          o->text);
}

/* A placeholder for a key or item the file does not have: an empty plain scalar. */
static kl__ynode *placeholder(kl_source_pos pos, const char *key, kl_error *err)
{
    kl__ynode *node = kl__ynode_new(KL__YN_SCALAR, pos);
    if (node) {
        node->str = calloc(1, 1);
        node->key = key ? strdup(key) : NULL;
        node->key_pos = pos;
    }
    if (!node || !node->str || (key && !node->key)) {
        kl__ynode_free(node);
        kl_error_set(err, KL_ENOMEM, "out of memory applying an override");
        return NULL;
    }
    return node;
}

static kl__ynode **map_slot(override *o, kl__ynode *map, const char *name, kl_source_pos pos)
{
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->items[i]->key, name) == 0)
            return &map->items[i];
    kl__ynode *node = placeholder(pos, name, o->err);
    if (!node || kl__ynode_push(map, node, o->err) != KL_OK)
        return NULL;
    return &map->items[map->n - 1];
}

static kl__ynode **seq_slot(override *o, kl__ynode *seq, const char *name, kl_source_pos pos)
{
    char *end;
    long idx = strtol(name, &end, 10);
    if (*end || end == name || idx < 0 || idx > seq->n) {
        kl__yaml_error(o->err, KL_EINVAL, pos, o->path,
                       "no item '%s' in a sequence of %d; use an index from 0 to %d", name, seq->n,
                       seq->n);
        return NULL;
    }
    if (idx == seq->n) { /* one past the end appends */
        kl__ynode *node = placeholder(pos, NULL, o->err);
        if (!node || kl__ynode_push(seq, node, o->err) != KL_OK)
            return NULL;
    }
    return &seq->items[idx];
}

/* Where name lives inside cur: an existing value, or a new placeholder. */
static kl__ynode **slot_in(override *o, kl__ynode *cur, const char *name, kl_source_pos pos)
{
    if (cur->type == KL__YN_MAP)
        return map_slot(o, cur, name, pos);
    if (cur->type == KL__YN_SEQ)
        return seq_slot(o, cur, name, pos);
    kl__yaml_error(o->err, KL_EINVAL, pos, o->path,
                   "the value there is \"%s\", not a mapping; set the whole value instead",
                   cur->str);
    return NULL;
}

/* An empty `key:` becomes a mapping so that keys can be set inside it. */
static void make_map(kl__ynode *node)
{
    if (kl__ynode_is_empty(node)) {
        free(node->str);
        node->str = NULL;
        node->type = KL__YN_MAP;
    }
}

/* `- dropout: 0.2` becomes `- dropout: {rate: 0.2}`, so that another of the layer's fields can
 * be set beside its value. */
static kl_status expand_shorthand(kl__ynode *inner, const char *field, kl_error *err)
{
    kl__ynode *value = kl__ynode_new(KL__YN_SCALAR, inner->pos);
    char *key = strdup(field);
    if (!value || !key) {
        kl__ynode_free(value);
        free(key);
        return kl_error_set(err, KL_ENOMEM, "out of memory applying an override");
    }
    value->str = inner->str;
    value->plain = inner->plain;
    value->end = inner->end;
    value->key = key;
    value->key_pos = inner->pos;
    inner->str = NULL;
    inner->type = KL__YN_MAP;
    return kl__ynode_push(inner, value, err);
}

/* A layer written `- dense: {units: 128}`: its fields live one level down, so
 * model.layers.0.units reaches into the inner mapping (NULL, err set, when out of memory). */
static kl__ynode *compact_inner(kl__ynode *item, const char *next, kl_error *err)
{
    if (item->type != KL__YN_MAP || item->n != 1)
        return item;
    kl__ynode *inner = item->items[0];
    if (strcmp(inner->key, "type") == 0 || strcmp(inner->key, next) == 0)
        return item;
    if (inner->type == KL__YN_SCALAR && !kl__ynode_is_empty(inner)) {
        const char *field = kl__layer_shorthand_field(inner->key);
        if (!field)
            return item;
        return expand_shorthand(inner, field, err) == KL_OK ? inner : NULL;
    }
    if (inner->type != KL__YN_MAP && !kl__ynode_is_empty(inner))
        return item;
    make_map(inner);
    return inner;
}

static kl_status parse_value(override *o, kl__ynode **value)
{
    const char *v = o->eq + 1;
    int col0 = (int)(v - o->text);
    kl_status st = kl__yaml_parse(SET_FILE, v, strlen(v), o->index, col0, value, o->err);
    if (st == KL_OK && !*value && !(*value = placeholder(at(o, v), NULL, o->err)))
        st = KL_ENOMEM;
    return st;
}

/* Puts value into *slot, keeping the key the slot had. */
static void replace(kl__ynode **slot, kl__ynode *value)
{
    kl__ynode *old = *slot;
    value->key = old->key;
    value->key_pos = old->key_pos;
    old->key = NULL;
    kl__ynode_free(old);
    *slot = value;
}

static kl_status walk(override *o, kl__ynode *cur, kl__ynode *value)
{
    const char *seg = o->text;
    for (;;) {
        const char *dot = memchr(seg, '.', (size_t)(o->eq - seg));
        const char *end = dot ? dot : o->eq;
        char name[128];
        if (end == seg || (size_t)(end - seg) >= sizeof name)
            return bad_syntax(o, seg);
        memcpy(name, seg, (size_t)(end - seg));
        name[end - seg] = '\0';
        kl__path_push(o->path, name);
        bool in_seq = cur->type == KL__YN_SEQ;
        kl__ynode **slot = slot_in(o, cur, name, at(o, seg));
        if (!slot)
            return o->err ? o->err->status : KL_EINVAL;
        if (!dot) {
            replace(slot, value);
            return KL_OK;
        }
        cur = *slot;
        make_map(cur);
        seg = dot + 1;
        if (in_seq) {
            const char *next_end = memchr(seg, '.', (size_t)(o->eq - seg));
            size_t len = (size_t)((next_end ? next_end : o->eq) - seg);
            if (len < sizeof name) {
                memcpy(name, seg, len);
                name[len] = '\0';
                if (!(cur = compact_inner(cur, name, o->err)))
                    return o->err->status;
            }
        }
    }
}

kl_status kl__config_override(kl__ynode **root, const char *text, int index, kl_error *err)
{
    override o = {.text = text, .index = index, .err = err};
    kl_error local = {0};
    if (!err)
        o.err = &local;
    o.eq = strchr(text, '=');
    if (!o.eq || o.eq == text)
        return bad_syntax(&o, text);
    if ((*root)->type != KL__YN_MAP)
        return kl__yaml_error(o.err, KL_EINVAL, (*root)->pos, NULL,
                              "the config is not a mapping of sections, so '%s' cannot be set",
                              text);
    kl__ynode *value;
    kl_status st = parse_value(&o, &value);
    if (st != KL_OK)
        return st;
    st = walk(&o, *root, value);
    if (st != KL_OK)
        kl__ynode_free(value);
    return st;
}
