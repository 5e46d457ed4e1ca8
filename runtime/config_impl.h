/* Private to runtime/config*.c: the train config's own parts on top of the YAML tree
 * (runtime/yaml_tree.h) and the field tables (runtime/schema.h): `--set` overrides
 * (config_override.c), model.layers (config_layers.c), the top-level table (config.c) and
 * printing a config back as YAML (config_print.c). */
#ifndef KILN_RUNTIME_CONFIG_IMPL_H
#define KILN_RUNTIME_CONFIG_IMPL_H

#include <stdio.h>

#include "kiln/config.h"
#include "runtime/schema.h"
#include "runtime/yaml_tree.h"

/* Applies one "key.path=value" override (number index, 1-based) to the tree, creating mappings
 * for keys the file does not have. */
kl_status kl__config_override(kl__ynode **root, const char *text, int index, kl_error *err);

/* model.layers (config_layers.c): a sequence read into an array at f->off with its count at
 * f->off_count, as a KL__F_CUSTOM row's read and print (model.layers, a residual's layers). */
kl_status kl__layers_field_read(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                                char *path, kl_error *err);
void kl__layers_field_print(const kl__field *f, const void *base, FILE *out, int indent);
/* depth: how many residual blocks hold this sequence. */
kl_status kl__layers_read(const kl__ynode *node, kl_layer_spec **layers, int *n, void *ctx,
                          char *path, int depth, kl_error *err);
void kl__layers_free(kl_layer_spec *layers, int n);
/* The field a layer type (its name, as written) takes as a plain value in the compact form
 * (`- dropout: 0.2` is rate 0.2): "rate" for dropout, "activation" for activation, else NULL. */
const char *kl__layer_shorthand_field(const char *type);
void kl__layers_print(const kl_layer_spec *layers, int n, FILE *f, int indent);
/* A layer's fields, every kind's; each row's kinds say which kinds take it. */
extern const kl__field kl__layer_fields[];
extern const int kl__layer_field_count;

/* The top-level section (config.c). */
const kl__section *kl__config_schema(void);

#endif
