/* Private to runtime/config*.c: the YAML node tree that keeps every value's file:line:col, the
 * schema tables that say which keys exist and what they hold, and the helpers that turn nodes into
 * typed fields with positioned error messages. config_yaml.c builds the tree and applies overrides,
 * config_schema.c walks it against the tables, config_layers.c handles model.layers, config.c
 * holds the tables themselves and the public API, config_print.c prints a config back as YAML. */
#ifndef KILN_RUNTIME_CONFIG_IMPL_H
#define KILN_RUNTIME_CONFIG_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kiln/config.h"

/* The tree. A mapping's values carry their key (and its position) in key/key_pos. */
typedef enum kl__cnode_type { KL__CN_SCALAR, KL__CN_SEQ, KL__CN_MAP } kl__cnode_type;

typedef struct kl__cnode {
    kl__cnode_type type;
    char *str;         /* SCALAR: the text */
    bool plain;        /* SCALAR: unquoted, so typed like YAML (numbers, booleans, null) */
    kl_source_pos pos; /* of the value */
    kl_source_pos end; /* just past the value (parsed nodes only; tune/sweep.c cuts text with it) */
    char *key;         /* a value in a mapping: its key */
    kl_source_pos key_pos;
    struct kl__cnode **items; /* SEQ: the items; MAP: the values, each with its key */
    int n, cap;
} kl__cnode;

kl__cnode *kl__cnode_new(kl__cnode_type type, kl_source_pos pos);
void kl__cnode_free(kl__cnode *node);
/* Appends child to a SEQ or MAP; on failure frees child and returns KL_ENOMEM. */
kl_status kl__cnode_push(kl__cnode *parent, kl__cnode *child, kl_error *err);
/* The value of key in a MAP, or NULL (also when map is NULL or not a MAP). */
kl__cnode *kl__cnode_get(const kl__cnode *map, const char *key);
/* The first value of a MAP whose key an earlier one has (its index; the earlier one's in *first),
 * -1 when every key differs, -2 out of memory. Linear in the keys: they are hashed. */
int kl__cnode_find_duplicate(const kl__cnode *map, int *first);
/* True for a plain empty scalar, which is what `key:` with nothing after it gives. */
bool kl__cnode_is_empty(const kl__cnode *node);

/* Parses YAML text into a tree (*out is NULL for an empty document). With line > 0 (an override)
 * every position gets that line and columns shifted by col0. */
kl_status kl__yaml_parse(const char *file, const char *text, size_t len, int line, int col0,
                         kl__cnode **out, kl_error *err);
/* Applies one "key.path=value" override (number index, 1-based) to the tree, creating mappings
 * for keys the file does not have. */
kl_status kl__config_override(kl__cnode **root, const char *text, int index, kl_error *err);

/* "file:line:col: path: message" into err. An empty path leaves out "path: ". */
kl_status kl__config_error(kl_error *err, kl_status status, kl_source_pos pos, const char *path,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The schema. */
typedef enum kl__ftype {
    KL__F_INT,
    KL__F_I64,
    KL__F_U64,
    KL__F_FLOAT,
    KL__F_BOOL,
    KL__F_STR,     /* char *; names, when set, lists the values allowed */
    KL__F_ENUM,    /* an enum stored as int; names lists the values in enum order */
    KL__F_SECTION, /* a nested mapping described by sub */
    KL__F_LAYERS   /* a sequence of layers: kl_layer_spec * at off, int count at off_n */
} kl__ftype;

/* Ranges of numeric fields: lower bound inclusive or exclusive, upper likewise. */
enum { KL__R_GE = 1, KL__R_GT = 2, KL__R_LE = 4, KL__R_LT = 8 };

typedef struct kl__section kl__section;

typedef struct kl__field {
    const char *name;
    kl__ftype type;
    size_t off, off_n;
    unsigned range;
    double lo, hi;
    const char *const *names; /* NULL-terminated */
    const kl__section *sub;
    unsigned kinds; /* when the section has kind_of: the kinds (bits) the field applies to */
} kl__field;

/* Hooks get the section's struct (base), the mapping (NULL when the section is absent) and its
 * position (the parent's when absent). */
typedef kl_status (*kl__section_hook)(void *base, kl_config *c, const kl__cnode *map,
                                      kl_source_pos pos, char *path, kl_error *err);

struct kl__section {
    const kl__field *fields;
    int nfields;
    size_t pos_off;           /* where to record the mapping's kl_source_pos, or SIZE_MAX */
    kl__section_hook prepare; /* before the fields are read (defaults that depend on a key) */
    kl__section_hook check;   /* after: checks across fields, derived defaults */
    /* Sections whose fields depend on a kind (optimizer.name, data.*.format): the current kind,
     * and its names for messages. A key whose field's kinds miss the current kind is an error;
     * print leaves such fields out. */
    int (*kind_of)(const void *base);
    const char *const *kind_names;
};

#define KL__PATH_MAX 256

/* Appends ".seg" (or "seg" at the start) to path; returns the old length for kl__path_pop. */
size_t kl__path_push(char *path, const char *seg);
static inline void kl__path_pop(char *path, size_t len)
{
    path[len] = '\0';
}

/* Walks a mapping against a section: duplicate and unknown keys, then each field in table
 * order, then the hooks. map may be NULL (the section is absent: defaults and hooks only). */
kl_status kl__section_read(const kl__section *s, void *base, kl_config *c, const kl__cnode *map,
                           kl_source_pos pos, char *path, kl_error *err);
/* Reads one value into its field at base. */
kl_status kl__field_read(const kl__field *f, void *base, kl_config *c, const kl__cnode *node,
                         char *path, kl_error *err);
/* Duplicate keys in a MAP are an error at the second one. */
kl_status kl__check_duplicates(const kl__cnode *map, char *path, kl_error *err);
/* The error for an unknown key: the nearest of names by edit distance, or the list. */
kl_status kl__unknown_key(const kl__cnode *value, const char *const *names, int n, char *path,
                          kl_error *err);
/* The candidate among names closest to s when it is close enough to be a typo, else NULL. */
const char *kl__suggest(const char *s, const char *const *names, int n);
/* Replaces *dst with a copy of s (NULL allowed); false when out of memory. */
bool kl__strset(char **dst, const char *s);

/* model.layers (config_layers.c). */
kl_status kl__layers_read(const kl__cnode *node, kl_layer_spec **layers, int *n, kl_config *c,
                          char *path, int depth, kl_error *err);
void kl__layers_free(kl_layer_spec *layers, int n);
void kl__layers_print(const kl_layer_spec *layers, int n, FILE *f, int indent);
extern const kl__field kl__layer_fields[];
extern const int kl__nlayer_fields;

/* The top-level section (config.c). */
const kl__section *kl__config_schema(void);

/* Printing one field's value as YAML (config_print.c). */
void kl__print_value(const kl__field *fd, const void *base, FILE *f);
void kl__print_section(const kl__section *s, const void *base, FILE *f, int indent);

/* "expected WHAT, got ..." placed at node (the key path in path): for readers beyond the config
 * schema (tune/sweep*.c) to word their type errors like it. */
kl_status kl__config_expected(const kl__cnode *node, const char *expected, char *path,
                              kl_error *err);
/* Plain decimal text only: strtod alone would take "inf", "nan" and hex floats. */
bool kl__numeric_text(const char *s, bool integer);
/* s as a double-quoted YAML string, escaping quotes, backslashes and control bytes. */
void kl__print_quoted(const char *s, FILE *f);

#endif
