/* The positioned YAML tree (runtime/yaml_tree.h): libyaml's events to a small node tree that
 * remembers where every key and value was written, duplicate keys found by hashing, and the
 * positioned error messages every reader of the tree uses. libyaml's marks are 0-based; positions
 * here are 1-based as editors show them. */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "runtime/yaml_tree.h"

/* Deeper nesting than this is refused instead of recursing without bound on hostile input. */
#define MAX_DEPTH 64

kl__ynode *kl__ynode_new(kl__ynode_type type, kl_source_pos pos)
{
    kl__ynode *node = calloc(1, sizeof *node);
    if (node) {
        node->type = type;
        node->pos = pos;
        node->plain = true;
    }
    return node;
}

void kl__ynode_free(kl__ynode *node)
{
    if (!node)
        return;
    for (int i = 0; i < node->n; i++)
        kl__ynode_free(node->items[i]);
    free(node->items);
    free(node->str);
    free(node->key);
    free(node);
}

kl_status kl__ynode_push(kl__ynode *parent, kl__ynode *child, kl_error *err)
{
    if (parent->n == parent->cap) {
        int cap = parent->cap ? 2 * parent->cap : 8;
        kl__ynode **items = realloc(parent->items, (size_t)cap * sizeof *items);
        if (!items) {
            kl__ynode_free(child);
            return kl_error_set(err, KL_ENOMEM, "out of memory reading the config");
        }
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->n++] = child;
    return KL_OK;
}

kl__ynode *kl__ynode_get(const kl__ynode *map, const char *key)
{
    if (!map || map->type != KL__YN_MAP)
        return NULL;
    for (int i = 0; i < map->n; i++)
        if (strcmp(map->items[i]->key, key) == 0)
            return map->items[i];
    return NULL;
}

/* FNV-1a: the keys of one mapping, spread over a table of indices. */
static uint64_t key_hash(const char *key)
{
    uint64_t h = 1469598103934665603u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211u;
    return h;
}

int kl__ynode_find_duplicate(const kl__ynode *map, int *first)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)map->n)
        cap *= 2;
    int *slot = malloc(cap * sizeof *slot); /* item index + 1; 0: empty */
    if (!slot)
        return -2;
    memset(slot, 0, cap * sizeof *slot);
    int found = -1;
    for (int i = 0; i < map->n && found < 0; i++) {
        size_t at = key_hash(map->items[i]->key) & (cap - 1);
        while (slot[at] && strcmp(map->items[slot[at] - 1]->key, map->items[i]->key) != 0)
            at = (at + 1) & (cap - 1);
        if (slot[at]) {
            found = i;
            *first = slot[at] - 1;
        } else {
            slot[at] = i + 1;
        }
    }
    free(slot);
    return found;
}

bool kl__ynode_is_empty(const kl__ynode *node)
{
    return node && node->type == KL__YN_SCALAR && node->plain && node->str[0] == '\0';
}

kl_status kl__yaml_error(kl_error *err, kl_status status, kl_source_pos pos, const char *path,
                         const char *fmt, ...)
{
    char msg[KL_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!path || !path[0])
        return kl_error_set(err, status, "%s:%d:%d: %s", pos.file, pos.line, pos.col, msg);
    return kl_error_set(err, status, "%s:%d:%d: %s: %s", pos.file, pos.line, pos.col, path, msg);
}

typedef struct builder {
    yaml_parser_t parser;
    const char *file;
    int line, col0;    /* an override: one line, columns shifted */
    kl_source_pos end; /* the end of the last collection closed */
    kl_error *err;
} builder;

static kl_source_pos mark_pos(const builder *b, yaml_mark_t m)
{
    if (b->line > 0)
        return (kl_source_pos){b->file, b->line, b->col0 + (int)m.column + 1};
    return (kl_source_pos){b->file, (int)m.line + 1, (int)m.column + 1};
}

static kl_status parser_error(builder *b)
{
    yaml_parser_t *p = &b->parser;
    if (p->error == YAML_MEMORY_ERROR)
        return kl_error_set(b->err, KL_ENOMEM, "%s: out of memory parsing YAML", b->file);
    kl_source_pos pos = mark_pos(b, p->problem_mark);
    const char *problem = p->problem ? p->problem : "unknown problem";
    if (p->context)
        return kl__yaml_error(b->err, KL_EFORMAT, pos, NULL, "malformed YAML: %s (%s)", problem,
                              p->context);
    return kl__yaml_error(b->err, KL_EFORMAT, pos, NULL, "malformed YAML: %s", problem);
}

static kl_status next_event(builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev))
        return parser_error(b);
    return KL_OK;
}

static kl_status build_node(builder *b, yaml_event_t *ev, int depth, kl__ynode **out);

static kl_status make_scalar(builder *b, yaml_event_t *ev, kl__ynode **out)
{
    kl__ynode *node = kl__ynode_new(KL__YN_SCALAR, mark_pos(b, ev->start_mark));
    size_t len = ev->data.scalar.length;
    if (node)
        node->str = malloc(len + 1);
    if (!node || !node->str) {
        kl__ynode_free(node);
        return kl_error_set(b->err, KL_ENOMEM, "out of memory reading the config");
    }
    memcpy(node->str, ev->data.scalar.value, len);
    node->str[len] = '\0';
    node->end = mark_pos(b, ev->end_mark);
    node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    *out = node;
    return KL_OK;
}

/* Reads the next event and, unless it is `end`, the node it starts. *child is NULL at the end. */
static kl_status next_child(builder *b, yaml_event_type_t end, int depth, kl__ynode **child)
{
    yaml_event_t ev;
    *child = NULL;
    kl_status st = next_event(b, &ev);
    if (st != KL_OK)
        return st;
    if (ev.type != end)
        st = build_node(b, &ev, depth, child);
    else
        b->end = mark_pos(b, ev.end_mark);
    yaml_event_delete(&ev);
    return st;
}

static kl_status build_seq(builder *b, kl__ynode *seq, int depth)
{
    for (;;) {
        kl__ynode *item;
        kl_status st = next_child(b, YAML_SEQUENCE_END_EVENT, depth, &item);
        if (st != KL_OK || !item)
            return st;
        if ((st = kl__ynode_push(seq, item, b->err)) != KL_OK)
            return st;
    }
}

static kl_status build_map(builder *b, kl__ynode *map, int depth)
{
    for (;;) {
        kl__ynode *key, *value;
        kl_status st = next_child(b, YAML_MAPPING_END_EVENT, depth, &key);
        if (st != KL_OK || !key)
            return st;
        if (key->type != KL__YN_SCALAR) {
            st = kl__yaml_error(b->err, KL_EFORMAT, key->pos, NULL,
                                "a mapping key must be a name, not a %s",
                                key->type == KL__YN_MAP ? "mapping" : "sequence");
            kl__ynode_free(key);
            return st;
        }
        st = next_child(b, YAML_MAPPING_END_EVENT, depth, &value);
        if (st == KL_OK && !value)
            st = kl_error_set(b->err, KL_EINTERNAL, "%s: a YAML key without a value", b->file);
        if (st == KL_OK && (st = kl__ynode_push(map, value, b->err)) == KL_OK) {
            value->key = key->str;
            value->key_pos = key->pos;
            key->str = NULL;
        }
        kl__ynode_free(key);
        if (st != KL_OK)
            return st;
    }
}

static kl_status build_node(builder *b, yaml_event_t *ev, int depth, kl__ynode **out)
{
    kl_source_pos pos = mark_pos(b, ev->start_mark);
    if (ev->type == YAML_SCALAR_EVENT)
        return make_scalar(b, ev, out);
    if (ev->type == YAML_ALIAS_EVENT)
        return kl__yaml_error(b->err, KL_EUNSUPPORTED, pos, NULL,
                              "YAML aliases (*%s) are not supported; write the value out",
                              (const char *)ev->data.alias.anchor);
    if (depth >= MAX_DEPTH)
        return kl__yaml_error(b->err, KL_EFORMAT, pos, NULL,
                              "nested deeper than %d levels; a config is not this deep", MAX_DEPTH);
    bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
    kl__ynode *node = kl__ynode_new(seq ? KL__YN_SEQ : KL__YN_MAP, pos);
    if (!node)
        return kl_error_set(b->err, KL_ENOMEM, "out of memory reading the config");
    kl_status st = seq ? build_seq(b, node, depth + 1) : build_map(b, node, depth + 1);
    if (st != KL_OK) {
        kl__ynode_free(node);
        return st;
    }
    node->end = b->end;
    *out = node;
    return KL_OK;
}

/* Expects an event of type want; anything else means more than one document. */
static kl_status expect_event(builder *b, yaml_event_type_t want)
{
    yaml_event_t ev;
    kl_status st = next_event(b, &ev);
    if (st != KL_OK)
        return st;
    if (ev.type != want)
        st = kl__yaml_error(b->err, KL_EFORMAT, mark_pos(b, ev.start_mark), NULL,
                            "a second YAML document; a config is one document (remove '---')");
    yaml_event_delete(&ev);
    return st;
}

static kl_status build_document(builder *b, kl__ynode **out)
{
    kl_status st = expect_event(b, YAML_STREAM_START_EVENT);
    yaml_event_t ev;
    if (st != KL_OK || (st = next_event(b, &ev)) != KL_OK)
        return st;
    if (ev.type == YAML_STREAM_END_EVENT) { /* no document at all */
        yaml_event_delete(&ev);
        return KL_OK;
    }
    yaml_event_delete(&ev); /* DOCUMENT_START */
    if ((st = next_child(b, YAML_DOCUMENT_END_EVENT, 0, out)) != KL_OK || !*out)
        return st;
    if ((st = expect_event(b, YAML_DOCUMENT_END_EVENT)) != KL_OK)
        return st;
    return expect_event(b, YAML_STREAM_END_EVENT);
}

kl_status kl__yaml_parse(const char *file, const char *text, size_t len, int line, int col0,
                         kl__ynode **out, kl_error *err)
{
    builder b = {.file = file, .line = line, .col0 = col0, .err = err};
    *out = NULL;
    if (!yaml_parser_initialize(&b.parser))
        return kl_error_set(err, KL_ENOMEM, "%s: out of memory starting the YAML parser", file);
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)text, len);
    kl_status st = build_document(&b, out);
    yaml_parser_delete(&b.parser);
    if (st != KL_OK) {
        kl__ynode_free(*out);
        *out = NULL;
    }
    return st;
}
