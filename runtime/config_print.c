/* kl_config_print: the resolved config as YAML, every key in schema order with its value
 * (defaults included), which kl_config_parse reads back to an equal config. Floats are written
 * with the fewest digits that read back to the same float; strings are double-quoted. Behind
 * `kiln train --print-config`, the run directory's config copy and kl_config_hash. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "runtime/config_impl.h"

/* The shortest text that reads back as v (a float when single is set). */
static void print_number(double v, bool single, FILE *f)
{
    char buf[32];
    /* 300, not the shortest form 3e+02; the range test comes first, as casting a double out of
     * long's range is undefined. */
    if (fabs(v) < 1e9 && v == (double)(long)v) {
        fprintf(f, "%ld", (long)v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (single ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, f);
}

void kl__print_quoted(const char *s, FILE *f)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void print_string(const char *s, FILE *f)
{
    if (s)
        kl__print_quoted(s, f);
    else
        fputs("null", f);
}

void kl__print_value(const kl__field *fd, const void *base, FILE *f)
{
    const char *p = (const char *)base + fd->off;
    switch (fd->type) {
    case KL__F_INT:
        fprintf(f, "%d", *(const int *)p);
        break;
    case KL__F_I64:
        fprintf(f, "%" PRId64, *(const int64_t *)p);
        break;
    case KL__F_U64:
        fprintf(f, "%" PRIu64, *(const uint64_t *)p);
        break;
    case KL__F_FLOAT:
        print_number(*(const float *)p, true, f);
        break;
    case KL__F_DOUBLE:
        print_number(*(const double *)p, false, f);
        break;
    case KL__F_BOOL:
        fputs(*(const bool *)p ? "true" : "false", f);
        break;
    case KL__F_STR:
        print_string(*(char *const *)p, f);
        break;
    case KL__F_ENUM:
        fputs(fd->names[*(const int *)p], f);
        break;
    case KL__F_SECTION:
    case KL__F_CUSTOM:
        break;
    }
}

static void print_field(const kl__field *fd, const void *base, FILE *f, int indent)
{
    fprintf(f, "%*s%s:", indent, "", fd->name);
    if (fd->type == KL__F_SECTION) {
        fputc('\n', f);
        kl__print_section(fd->sub, (const char *)base + fd->off, f, indent + 2);
    } else if (fd->type == KL__F_CUSTOM) {
        fd->print(fd, base, f, indent);
    } else {
        fputc(' ', f);
        kl__print_value(fd, base, f);
        fputc('\n', f);
    }
}

void kl__print_section(const kl__section *s, const void *base, FILE *f, int indent)
{
    int kind = s->kind_of ? s->kind_of(base) : -1;
    for (int i = 0; i < s->nfields; i++) {
        const kl__field *fd = &s->fields[i];
        if (kind >= 0 && fd->kinds && !(fd->kinds & (1u << kind)))
            continue;
        print_field(fd, base, f, indent);
    }
}

void kl__layers_print(const kl_layer_spec *layers, int n, FILE *f, int indent)
{
    for (int i = 0; i < n; i++) {
        const kl_layer_spec *l = &layers[i];
        fprintf(f, "%*s- type: %s\n", indent, "", kl_layer_kind_name(l->kind));
        for (int j = 0; j < kl__layer_field_count; j++)
            if (kl__layer_fields[j].kinds & (1u << l->kind))
                print_field(&kl__layer_fields[j], l, f, indent + 2);
    }
}

void kl__layers_field_print(const kl__field *fd, const void *base, FILE *f, int indent)
{
    const kl_layer_spec *layers = *(kl_layer_spec *const *)((const char *)base + fd->off);
    int n = *(const int *)((const char *)base + fd->off_count);
    fputs(n ? "\n" : " []\n", f);
    kl__layers_print(layers, n, f, indent + 2);
}

void kl_config_print(const kl_config *c, FILE *f)
{
    fputs("# kiln config, resolved: every key with its value, defaults included\n", f);
    kl__print_section(kl__config_schema(), c, f, 0);
}
