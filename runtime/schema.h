/* Field tables: a struct described as rows {name, type, offset, range, names, default, ...} that
 * kl__section_read fills from a mapping of the positioned YAML tree (runtime/yaml_tree.h), refusing
 * duplicate and unknown keys (with a "did you mean") and values of the wrong type or range, each
 * error at its file:line:col. runtime/schema.c walks the tables and knows nothing of what they
 * describe: the document being read reaches the hooks and custom readers as a void *ctx. The
 * train config (runtime/config.c) and every other reader of a YAML file describe their keys with
 * them.
 *
 * A row is written with designated initialisers, and a section counts its rows itself:
 *     static const kl__field train_fields[] = {
 *         {.name = "epochs", .type = KL__F_INT, .off = TRAIN(epochs), KL__GE(1), .def = "10"},
 *         ...
 *     };
 *     static const kl__section train_section = {KL__FIELDS(train_fields), .check = ...}; */
#ifndef KILN_RUNTIME_SCHEMA_H
#define KILN_RUNTIME_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "runtime/yaml_tree.h"

typedef enum kl__ftype {
    KL__F_INT,
    KL__F_I64,
    KL__F_U64,
    KL__F_FLOAT,
    KL__F_DOUBLE,
    KL__F_BOOL,
    KL__F_STR,     /* char *; names, when set, lists the values allowed */
    KL__F_ENUM,    /* an enum stored as int; names lists the values in enum order */
    KL__F_SECTION, /* a nested mapping described by sub */
    KL__F_CUSTOM   /* read and printed by the row's own read and print (model.layers) */
} kl__ftype;

/* Ranges of numeric fields: lower bound inclusive or exclusive, upper likewise. */
enum { KL__R_GE = 1, KL__R_GT = 2, KL__R_LE = 4, KL__R_LT = 8 };
/* A row's range as designated initialisers: KL__GE(1) is ">= 1", KL__GE_LT(0, 1) is "[0, 1)". */
#define KL__GE(a)       .range = KL__R_GE, .lo = (a)
#define KL__GT(a)       .range = KL__R_GT, .lo = (a)
#define KL__GE_LT(a, b) .range = KL__R_GE | KL__R_LT, .lo = (a), .hi = (b)
#define KL__GE_LE(a, b) .range = KL__R_GE | KL__R_LE, .lo = (a), .hi = (b)
#define KL__GT_LE(a, b) .range = KL__R_GT | KL__R_LE, .lo = (a), .hi = (b)
#define KL__GT_LT(a, b) .range = KL__R_GT | KL__R_LT, .lo = (a), .hi = (b)

/* The most rows a section may have: kinds are bits of an unsigned, and the key lists of
 * messages are built on the stack. */
#define KL__SECTION_MAX_FIELDS 32

typedef struct kl__section kl__section;
typedef struct kl__field kl__field;

/* A KL__F_CUSTOM row's reader: node is the value, the field's data is at base + f->off. */
typedef kl_status (*kl__field_reader)(const kl__field *f, void *base, void *ctx,
                                      const kl__ynode *node, char *path, kl_error *err);
/* A KL__F_CUSTOM row's printer: writes what follows "name:" at indent, newline included. */
typedef void (*kl__field_printer)(const kl__field *f, const void *base, FILE *out, int indent);

struct kl__field {
    const char *name;
    kl__ftype type;
    size_t off;       /* of the value in the section's struct */
    size_t off_count; /* KL__F_CUSTOM: of a count beside the value, for a reader that keeps one */
    unsigned range;   /* KL__R_* bits, bounds in lo and hi */
    double lo, hi;
    const char *const *names; /* NULL-terminated */
    const kl__section *sub;
    /* When the section has kind_of: the kinds (bits) the field applies to; 0: every kind. */
    unsigned kinds;
    /* The value when the key is absent, as YAML text read like a written value ("1e-3", "true",
     * "global", "runs"). NULL: none (the field keeps zero, or what a prepare hook set). */
    const char *def;
    kl__field_reader read;   /* KL__F_CUSTOM */
    kl__field_printer print; /* KL__F_CUSTOM */
};

/* Hooks get the section's struct (base), the document being read (ctx: whatever the caller of
 * kl__section_read passed), the mapping (NULL when the section is absent) and its position (the
 * parent's when absent). */
typedef kl_status (*kl__section_hook)(void *base, void *ctx, const kl__ynode *map,
                                      kl_source_pos pos, char *path, kl_error *err);

struct kl__section {
    const kl__field *fields;
    int nfields;   /* set by KL__FIELDS from the table's size, never by hand */
    bool keep_pos; /* record the mapping's kl_source_pos at pos_off */
    size_t pos_off;
    kl__section_hook prepare; /* before the fields are read (defaults that depend on a key) */
    kl__section_hook check;   /* after: checks across fields, derived defaults */
    /* Sections whose fields depend on a kind (optimizer.name, data.*.format): the current kind,
     * and its names for messages. A key whose field's kinds miss the current kind is an error;
     * print leaves such fields out. */
    int (*kind_of)(const void *base);
    const char *const *kind_names;
};

/* A section's rows and their count, from the table itself (an array, not a pointer). */
#define KL__FIELDS(table) .fields = (table), .nfields = (int)(sizeof(table) / sizeof(table)[0])

#define KL__PATH_MAX 256

/* Appends ".seg" (or "seg" at the start) to path; returns the old length for kl__path_pop. */
size_t kl__path_push(char *path, const char *seg);
static inline void kl__path_pop(char *path, size_t len)
{
    path[len] = '\0';
}

/* Walks a mapping against a section: duplicate and unknown keys, the prepare hook, then each
 * field in table order (a value, or the row's default when the key is absent), then the check
 * hook. map may be NULL (the section is absent: defaults and hooks only). ctx goes to the hooks
 * and custom readers untouched. */
kl_status kl__section_read(const kl__section *s, void *base, void *ctx, const kl__ynode *map,
                           kl_source_pos pos, char *path, kl_error *err);
/* Reads one value into its field at base. */
kl_status kl__field_read(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                         char *path, kl_error *err);
/* Sets a field at base to its row's default (none: does nothing); pos places a (bug's) error. */
kl_status kl__field_default(const kl__field *f, void *base, void *ctx, kl_source_pos pos,
                            char *path, kl_error *err);
/* Duplicate keys in a MAP are an error at the second one. */
kl_status kl__check_duplicates(const kl__ynode *map, char *path, kl_error *err);
/* The keys of a mapping read without a field table (serving's steps, lookups and ensembles):
 * a duplicate key, then a key not among the n names, is an error at its position, named
 * "prefix.key" ("key" when prefix is ""). */
kl_status kl__check_keys(const kl__ynode *map, const char *const *names, int n, const char *prefix,
                         kl_error *err);
/* The error for an unknown key: the nearest of names by edit distance, or the list. */
kl_status kl__unknown_key(const kl__ynode *value, const char *const *names, int n, char *path,
                          kl_error *err);
/* The candidate among names closest to s when it is close enough to be a typo, else NULL. */
const char *kl__suggest(const char *s, const char *const *names, int n);
/* Replaces *dst with a copy of s (NULL allowed); false when out of memory. */
bool kl__strset(char **dst, const char *s);

/* Printing one field's value as YAML (config_print.c). */
void kl__print_value(const kl__field *fd, const void *base, FILE *f);
void kl__print_section(const kl__section *s, const void *base, FILE *f, int indent);

/* "expected WHAT, got ..." placed at node (the key path in path): for readers beyond the config
 * schema (tune/sweep*.c) to word their type errors like it. */
kl_status kl__schema_expected(const kl__ynode *node, const char *expected, char *path,
                              kl_error *err);
/* Plain decimal text only: strtod alone would take "inf", "nan" and hex floats. */
bool kl__numeric_text(const char *s, bool integer);
/* s as a double-quoted YAML string, escaping quotes, backslashes and control bytes. */
void kl__print_quoted(const char *s, FILE *f);

#endif
