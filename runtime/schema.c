/* The schema walk (runtime/schema.h): reads a mapping of the YAML tree into a struct field by
 * field, driven by a table of rows (the train config's are in config.c), and knows nothing of the
 * document it reads beyond the rows. Every value is typed like YAML 1.1 (plain scalars are
 * numbers, booleans or null; quoted scalars are strings), checked against its range, and every
 * problem is reported as file:line:col, the dotted key and what was expected. Unknown keys
 * suggest the nearest valid key. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/schema.h"

size_t kl__path_push(char *path, const char *seg)
{
    size_t len = strlen(path);
    snprintf(path + len, KL__PATH_MAX - len, "%s%s", len ? "." : "", seg);
    return len;
}

bool kl__strset(char **dst, const char *s)
{
    char *copy = NULL;
    if (s && !(copy = strdup(s)))
        return false;
    free(*dst);
    *dst = copy;
    return true;
}

static size_t min3(size_t a, size_t b, size_t c)
{
    size_t m = a < b ? a : b;
    return m < c ? m : c;
}

/* Levenshtein distance; names are short, so the row fits on the stack. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[64];
    if (lb >= 64 || la >= 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            row[j] = min3(row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1]));
            diag = up;
        }
    }
    return row[lb];
}

const char *kl__suggest(const char *s, const char *const *names, int n)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX, len = strlen(s);
    for (int i = 0; i < n; i++) {
        size_t d = edit_distance(s, names[i]);
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    /* A typo changes a character or two, and never most of the word. */
    size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    return best_d <= limit ? best : NULL;
}

/* "a, b, c" into buf. */
static void join(char *buf, size_t cap, const char *const *names, int n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
}

kl_status kl__unknown_key(const kl__ynode *value, const char *const *names, int n, char *path,
                          kl_error *err)
{
    const char *near = kl__suggest(value->key, names, n);
    if (near)
        return kl__yaml_error(err, KL_EINVAL, value->key_pos, path,
                              "unknown key; did you mean '%s'?", near);
    char list[320];
    join(list, sizeof list, names, n);
    if (n == 0)
        return kl__yaml_error(err, KL_EINVAL, value->key_pos, path,
                              "unknown key; this mapping takes no keys");
    return kl__yaml_error(err, KL_EINVAL, value->key_pos, path, "unknown key; valid keys: %s",
                          list);
}

kl_status kl__check_keys(const kl__ynode *map, const char *const *names, int n, const char *prefix,
                         kl_error *err)
{
    char path[KL__PATH_MAX];
    snprintf(path, sizeof path, "%s", prefix);
    kl_status st = kl__check_duplicates(map, path, err);
    for (int i = 0; st == KL_OK && i < map->n; i++) {
        bool known = false;
        for (int k = 0; k < n && !known; k++)
            known = !strcmp(map->items[i]->key, names[k]);
        if (!known) {
            kl__path_push(path, map->items[i]->key);
            st = kl__unknown_key(map->items[i], names, n, path, err);
        }
    }
    return st;
}

kl_status kl__check_duplicates(const kl__ynode *map, char *path, kl_error *err)
{
    int j = -1, i = kl__ynode_find_duplicate(map, &j);
    if (i == -2)
        return kl_error_set(err, KL_ENOMEM, "out of memory reading the config");
    if (i < 0)
        return KL_OK;
    size_t len = kl__path_push(path, map->items[i]->key);
    kl_status st =
        kl__yaml_error(err, KL_EINVAL, map->items[i]->key_pos, path,
                       "duplicate key (first set at line %d)", map->items[j]->key_pos.line);
    kl__path_pop(path, len);
    return st;
}

/* "an integer >= 1", "a positive number", "a number in [0, 1)". */
static void describe(const kl__field *f, char *buf, size_t cap)
{
    bool integer = f->type == KL__F_INT || f->type == KL__F_I64 || f->type == KL__F_U64;
    const char *noun = integer ? "integer" : "number";
    bool lo = f->range & (KL__R_GE | KL__R_GT), hi = f->range & (KL__R_LE | KL__R_LT);
    if (lo && hi)
        snprintf(buf, cap, "a%s %s in %c%.15g, %.15g%c", integer ? "n" : "", noun,
                 f->range & KL__R_GE ? '[' : '(', f->lo, f->hi, f->range & KL__R_LE ? ']' : ')');
    else if ((f->range & KL__R_GT) && f->lo == 0)
        snprintf(buf, cap, "a positive %s", noun);
    else if (lo)
        snprintf(buf, cap, "a%s %s %s %.15g", integer ? "n" : "", noun,
                 f->range & KL__R_GE ? ">=" : ">", f->lo);
    else
        snprintf(buf, cap, "a%s %s", integer ? "n" : "", noun);
}

static bool in_range(const kl__field *f, double v)
{
    if ((f->range & KL__R_GE) && !(v >= f->lo))
        return false;
    if ((f->range & KL__R_GT) && !(v > f->lo))
        return false;
    if ((f->range & KL__R_LE) && !(v <= f->hi))
        return false;
    if ((f->range & KL__R_LT) && !(v < f->hi))
        return false;
    return true;
}

static const char *node_kind(const kl__ynode *node)
{
    return node->type == KL__YN_MAP ? "a mapping" : node->type == KL__YN_SEQ ? "a sequence" : "";
}

kl_status kl__schema_expected(const kl__ynode *node, const char *expected, char *path,
                              kl_error *err)
{
    if (node->type != KL__YN_SCALAR)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path, "expected %s, got %s", expected,
                              node_kind(node));
    if (!node->plain)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected %s, got the quoted string \"%s\"", expected, node->str);
    return kl__yaml_error(err, KL_EINVAL, node->pos, path, "expected %s, got \"%s\"", expected,
                          node->str);
}

bool kl__numeric_text(const char *s, bool integer)
{
    bool digit = false;
    for (const char *p = s; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digit = true;
        else if (!strchr(integer ? "+-" : "+-.eE", *p))
            return false;
    }
    return digit;
}

static kl_status read_number(const kl__field *f, const kl__ynode *node, double *out, char *path,
                             kl_error *err)
{
    char expected[96];
    describe(f, expected, sizeof expected);
    bool integer = f->type != KL__F_FLOAT && f->type != KL__F_DOUBLE;
    char *end = NULL;
    if (node->type != KL__YN_SCALAR || !node->plain || !kl__numeric_text(node->str, integer))
        return kl__schema_expected(node, expected, path, err);
    errno = 0;
    double v = integer ? (double)strtoll(node->str, &end, 10) : strtod(node->str, &end);
    if (*end || errno == ERANGE || !isfinite(v))
        return kl__schema_expected(node, expected, path, err);
    if (!in_range(f, v))
        return kl__yaml_error(err, KL_EINVAL, node->pos, path, "expected %s, got %s", expected,
                              node->str);
    *out = v;
    return KL_OK;
}

static kl_status read_integer(const kl__field *f, void *dst, const kl__ynode *node, char *path,
                              kl_error *err)
{
    double v;
    kl_status st = read_number(f, node, &v, path, err);
    if (st != KL_OK)
        return st;
    long long ll = strtoll(node->str, NULL, 10);
    if (f->type == KL__F_INT && (ll > INT32_MAX || ll < INT32_MIN))
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "%s is too large; expected at most %d", node->str, INT32_MAX);
    if (f->type == KL__F_INT)
        *(int *)dst = (int)ll;
    else if (f->type == KL__F_I64)
        *(int64_t *)dst = ll;
    else
        *(uint64_t *)dst = (uint64_t)ll;
    return KL_OK;
}

static kl_status read_bool(bool *dst, const kl__ynode *node, char *path, kl_error *err)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; node->type == KL__YN_SCALAR && node->plain && i < 3; i++) {
        if (strcasecmp(node->str, yes[i]) == 0 || strcasecmp(node->str, no[i]) == 0) {
            *dst = strcasecmp(node->str, yes[i]) == 0;
            return KL_OK;
        }
    }
    return kl__schema_expected(node, "a boolean (true/false, yes/no)", path, err);
}

static int name_count(const char *const *names)
{
    int n = 0;
    while (names[n])
        n++;
    return n;
}

static kl_status not_one_of(const kl__field *f, const kl__ynode *node, char *path, kl_error *err)
{
    char list[256], expected[300];
    int n = name_count(f->names);
    join(list, sizeof list, f->names, n);
    snprintf(expected, sizeof expected, "one of (%s)", list);
    const char *near = node->type == KL__YN_SCALAR ? kl__suggest(node->str, f->names, n) : NULL;
    if (near)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected %s, got \"%s\"; did you mean '%s'?", expected, node->str,
                              near);
    return kl__schema_expected(node, expected, path, err);
}

/* The index of the scalar among names, or -1. */
static int choice(const kl__field *f, const kl__ynode *node)
{
    for (int i = 0; node->type == KL__YN_SCALAR && f->names[i]; i++)
        if (strcmp(node->str, f->names[i]) == 0)
            return i;
    return -1;
}

static bool is_null(const kl__ynode *node)
{
    return node->type == KL__YN_SCALAR && node->plain &&
           (!node->str[0] || strcmp(node->str, "~") == 0 || strcmp(node->str, "null") == 0);
}

static kl_status read_string(const kl__field *f, char **dst, const kl__ynode *node, char *path,
                             kl_error *err)
{
    if (node->type != KL__YN_SCALAR)
        return kl__schema_expected(node, "a string", path, err);
    if (is_null(node))
        return kl__strset(dst, NULL) ? KL_OK : KL_ENOMEM;
    if (f->names && choice(f, node) < 0)
        return not_one_of(f, node, path, err);
    if (!kl__strset(dst, node->str))
        return kl_error_set(err, KL_ENOMEM, "out of memory reading %s", path);
    return KL_OK;
}

kl_status kl__field_read(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                         char *path, kl_error *err)
{
    char *dst = (char *)base + f->off;
    double v;
    kl_status st;
    switch (f->type) {
    case KL__F_INT:
    case KL__F_I64:
    case KL__F_U64:
        return read_integer(f, dst, node, path, err);
    case KL__F_FLOAT:
        if ((st = read_number(f, node, &v, path, err)) == KL_OK)
            *(float *)dst = (float)v;
        return st;
    case KL__F_DOUBLE:
        if ((st = read_number(f, node, &v, path, err)) == KL_OK)
            *(double *)dst = v;
        return st;
    case KL__F_BOOL:
        return read_bool((bool *)dst, node, path, err);
    case KL__F_STR:
        return read_string(f, (char **)dst, node, path, err);
    case KL__F_ENUM:
        if (choice(f, node) < 0)
            return not_one_of(f, node, path, err);
        *(int *)dst = choice(f, node);
        return KL_OK;
    case KL__F_SECTION:
        if (node->type != KL__YN_MAP && !kl__ynode_is_empty(node))
            return kl__schema_expected(node, "a mapping", path, err);
        return kl__section_read(f->sub, dst, ctx, node->type == KL__YN_MAP ? node : NULL, node->pos,
                                path, err);
    case KL__F_CUSTOM:
        return f->read(f, base, ctx, node, path, err);
    }
    return kl_error_set(err, KL_EINTERNAL, "%s: unknown field type %d", path, (int)f->type);
}

kl_status kl__field_default(const kl__field *f, void *base, void *ctx, kl_source_pos pos,
                            char *path, kl_error *err)
{
    if (!f->def)
        return KL_OK;
    kl__ynode value = {.type = KL__YN_SCALAR, .str = (char *)f->def, .plain = true, .pos = pos};
    return kl__field_read(f, base, ctx, &value, path, err);
}

static kl_status check_keys(const kl__section *s, const kl__ynode *map, char *path, kl_error *err)
{
    kl_status st = kl__check_duplicates(map, path, err);
    const char *names[KL__SECTION_MAX_FIELDS];
    for (int i = 0; i < s->nfields && i < KL__SECTION_MAX_FIELDS; i++)
        names[i] = s->fields[i].name;
    for (int i = 0; st == KL_OK && i < map->n; i++) {
        int j = 0;
        while (j < s->nfields && strcmp(s->fields[j].name, map->items[i]->key) != 0)
            j++;
        if (j < s->nfields)
            continue;
        size_t len = kl__path_push(path, map->items[i]->key);
        st = kl__unknown_key(
            map->items[i], names,
            s->nfields < KL__SECTION_MAX_FIELDS ? s->nfields : KL__SECTION_MAX_FIELDS, path, err);
        kl__path_pop(path, len);
    }
    return st;
}

/* Keys the current kind does not use (momentum for adam, labels for csv) are errors. */
static kl_status check_kinds(const kl__section *s, const void *base, const kl__ynode *map,
                             char *path, kl_error *err)
{
    int kind = s->kind_of(base);
    for (int i = 0; i < s->nfields; i++) {
        const kl__field *f = &s->fields[i];
        const kl__ynode *node = kl__ynode_get(map, f->name);
        if (!node || !f->kinds || (f->kinds & (1u << kind)))
            continue;
        const char *names[KL__SECTION_MAX_FIELDS];
        int n = 0;
        for (int j = 0; j < s->nfields && n < KL__SECTION_MAX_FIELDS; j++)
            if (!s->fields[j].kinds || (s->fields[j].kinds & (1u << kind)))
                names[n++] = s->fields[j].name;
        char list[320];
        join(list, sizeof list, names, n);
        size_t len = kl__path_push(path, f->name);
        kl_status st =
            kl__yaml_error(err, KL_EINVAL, node->key_pos, path, "not used by %s; its keys are: %s",
                           s->kind_names[kind], list);
        kl__path_pop(path, len);
        return st;
    }
    return KL_OK;
}

kl_status kl__section_read(const kl__section *s, void *base, void *ctx, const kl__ynode *map,
                           kl_source_pos pos, char *path, kl_error *err)
{
    kl_status st = map ? check_keys(s, map, path, err) : KL_OK;
    if (map && s->keep_pos)
        *(kl_source_pos *)((char *)base + s->pos_off) = map->pos;
    if (st == KL_OK && s->prepare)
        st = s->prepare(base, ctx, map, pos, path, err);
    for (int i = 0; st == KL_OK && i < s->nfields; i++) {
        const kl__field *f = &s->fields[i];
        const kl__ynode *node = kl__ynode_get(map, f->name);
        size_t len = kl__path_push(path, f->name);
        if (node)
            st = kl__field_read(f, base, ctx, node, path, err);
        else if (f->type == KL__F_SECTION) /* absent: its defaults and hooks still apply */
            st = kl__section_read(f->sub, (char *)base + f->off, ctx, NULL, pos, path, err);
        else
            st = kl__field_default(f, base, ctx, pos, path, err);
        kl__path_pop(path, len);
    }
    if (st == KL_OK && s->check)
        st = s->check(base, ctx, map, pos, path, err);
    if (st == KL_OK && s->kind_of && map)
        st = check_kinds(s, base, map, path, err);
    return st;
}
