/* The positioned YAML tree: YAML text parsed (libyaml) into a small tree of scalars, sequences and
 * mappings that remembers the file, line and column of every key and value, so that whoever reads
 * it (the train config, sweep files, kiln serve's model configs and online-learning settings) can
 * say "file:line:col: key.path: what is wrong". runtime/yaml_tree.c builds it; runtime/schema.h
 * reads it into structs through field tables. */
#ifndef KILN_RUNTIME_YAML_TREE_H
#define KILN_RUNTIME_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "kiln/config.h" /* kl_source_pos */

/* The tree. A mapping's values carry their key (and its position) in key/key_pos. */
typedef enum kl__ynode_type { KL__YN_SCALAR, KL__YN_SEQ, KL__YN_MAP } kl__ynode_type;

typedef struct kl__ynode {
    kl__ynode_type type;
    char *str;         /* SCALAR: the text */
    bool plain;        /* SCALAR: unquoted, so typed like YAML (numbers, booleans, null) */
    kl_source_pos pos; /* of the value */
    kl_source_pos end; /* just past the value (parsed nodes only; tune/sweep.c cuts text with it) */
    char *key;         /* a value in a mapping: its key */
    kl_source_pos key_pos;
    struct kl__ynode **items; /* SEQ: the items; MAP: the values, each with its key */
    int n, cap;
} kl__ynode;

kl__ynode *kl__ynode_new(kl__ynode_type type, kl_source_pos pos);
void kl__ynode_free(kl__ynode *node);
/* Appends child to a SEQ or MAP; on failure frees child and returns KL_ENOMEM. */
kl_status kl__ynode_push(kl__ynode *parent, kl__ynode *child, kl_error *err);
/* The value of key in a MAP, or NULL (also when map is NULL or not a MAP). */
kl__ynode *kl__ynode_get(const kl__ynode *map, const char *key);
/* The first value of a MAP whose key an earlier one has (its index; the earlier one's in *first),
 * -1 when every key differs, -2 out of memory. Linear in the keys: they are hashed. */
int kl__ynode_find_duplicate(const kl__ynode *map, int *first);
/* True for a plain empty scalar, which is what `key:` with nothing after it gives. */
bool kl__ynode_is_empty(const kl__ynode *node);

/* Parses YAML text into a tree (*out is NULL for an empty document). With line > 0 (an override)
 * every position gets that line and columns shifted by col0. */
kl_status kl__yaml_parse(const char *file, const char *text, size_t len, int line, int col0,
                         kl__ynode **out, kl_error *err);
/* "file:line:col: path: message" into err. An empty path leaves out "path: ". */
kl_status kl__yaml_error(kl_error *err, kl_status status, kl_source_pos pos, const char *path,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
