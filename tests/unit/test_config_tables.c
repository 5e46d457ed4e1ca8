/* Tests for the train config's field tables themselves (runtime/config.c, config_layers.c): every
 * row of every section can be set with `--set` and lands in its field and in the printed config;
 * every layer row can be set for every kind that takes it; every key docs/config.md lists is a
 * row the walker reaches, so that a section whose count left a row out fails here; and the rows'
 * defaults are those docs/config.md gives. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kiln/config.h"
#include "runtime/config_impl.h"

#define NAME "t.yaml"

static const char minimal[] = "data: {dataset: mnist}\n"
                              "model:\n"
                              "  layers:\n"
                              "    - dense: {units: 10}\n";

static kl_config *parse_ok_(const char *override, int line)
{
    kl_error err = {0};
    const char *const ov[] = {override};
    kl_config *c = kl_config_parse(NAME, minimal, strlen(minimal), ov, override ? 1 : 0, &err);
    if (!check_(c != NULL, __FILE__, line, override ? override : "the minimal config parses"))
        fprintf(stderr, "    %s\n", err.msg);
    return c;
}
#define parse_ok(override) parse_ok_(override, __LINE__)

/* The tables, with their hooks and kinds taken off: what remains is the rows and the walker, so
 * that no check across keys (nesterov needs momentum, a csv source needs a path) stands between a
 * key and its row. */
typedef struct bare_schema {
    kl__section sections[16];
    kl__field fields[160];
    int nsections, nfields;
} bare_schema;

static const kl__section *strip(bare_schema *b, const kl__section *s)
{
    if (!CHECK(b->nsections < 16 && b->nfields + s->nfields <= 160))
        return s;
    kl__section *copy = &b->sections[b->nsections++];
    kl__field *rows = &b->fields[b->nfields];
    b->nfields += s->nfields;
    for (int i = 0; i < s->nfields; i++) {
        rows[i] = s->fields[i];
        if (rows[i].type == KL__F_SECTION)
            rows[i].sub = strip(b, rows[i].sub);
    }
    *copy = (kl__section){
        .fields = rows, .nfields = s->nfields, .keep_pos = s->keep_pos, .pos_off = s->pos_off};
    return copy;
}

/* Reads YAML text (NULL: an empty document) and overrides through the bare tables into a new
 * config; NULL with the error printed when it does not read. */
static kl_config *read_bare(const kl__section *root, const char *text, const char *override)
{
    kl_source_pos top = {NAME, 1, 1};
    kl_error err = {0};
    kl__ynode *tree = NULL;
    kl_config *c = calloc(1, sizeof *c);
    kl_status st = c ? KL_OK : KL_ENOMEM;
    if (st == KL_OK && text)
        st = kl__yaml_parse(NAME, text, strlen(text), 0, 0, &tree, &err);
    if (st == KL_OK && !tree && !(tree = kl__ynode_new(KL__YN_MAP, top)))
        st = KL_ENOMEM;
    if (st == KL_OK && override)
        st = kl__config_override(&tree, override, 1, &err);
    char path[KL__PATH_MAX] = "";
    if (st == KL_OK)
        st = kl__section_read(root, c, c, tree, top, path, &err);
    kl__ynode_free(tree);
    if (st != KL_OK) {
        fprintf(stderr, "    %s: %s\n", override ? override : "(defaults)", err.msg);
        kl_config_free(c);
        return NULL;
    }
    return c;
}

/* A field's value as kl_config_print writes it. */
static void value_text(const kl__field *f, const void *base, char *buf, size_t cap)
{
    FILE *m = fmemopen(buf, cap, "w");
    if (m) {
        kl__print_value(f, base, m);
        fclose(m);
    }
}

/* A valid value for f (YAML text, and as print writes it back) that differs from def, the
 * value print gives the default. */
static void other_value(const kl__field *f, const char *def, char *text, char *printed, size_t cap)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        double lo = f->range & (KL__R_GE | KL__R_GT) ? f->lo : 0;
        bool bounded = f->range & (KL__R_LE | KL__R_LT);
        int n = 0;
        switch (f->type) {
        case KL__F_INT:
        case KL__F_I64:
        case KL__F_U64:
            snprintf(text, cap, "%lld", (long long)lo + 2 + attempt);
            break;
        case KL__F_FLOAT:
        case KL__F_DOUBLE:
            snprintf(text, cap, "%g",
                     bounded ? lo + (f->hi - lo) * (attempt + 1) / 8 : lo + 0.5 + attempt);
            break;
        case KL__F_BOOL:
            snprintf(text, cap, "%s", strcmp(def, "true") == 0 ? "false" : "true");
            break;
        case KL__F_ENUM:
        case KL__F_STR:
            while (f->names && f->names[n])
                n++;
            if (n)
                snprintf(text, cap, "%s", f->names[attempt % n]);
            else
                snprintf(text, cap, "text%d", attempt);
            break;
        default:
            break;
        }
        int w = f->type == KL__F_STR ? snprintf(printed, cap, "\"%s\"", text)
                                     : snprintf(printed, cap, "%s", text);
        if (w >= 0 && (size_t)w < cap && strcmp(printed, def) != 0)
            return;
    }
}

static char *print_bare(const kl__section *root, const kl_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    kl__print_section(root, c, f, 0);
    fclose(f);
    return text;
}

/* The node at a dotted key in a tree, or NULL. */
static const kl__ynode *node_at(const kl__ynode *tree, const char *key)
{
    char copy[KL__PATH_MAX];
    snprintf(copy, sizeof copy, "%s", key);
    for (char *save = NULL, *seg = strtok_r(copy, ".", &save); seg && tree;
         seg = strtok_r(NULL, ".", &save))
        tree = kl__ynode_get(tree, seg);
    return tree;
}

/* `--set key=value` lands in the row's field, and printing the config writes that value under
 * the same key. at: the offset of the row's section in kl_config. */
static void check_row_reachable(const kl__section *root, const kl__field *f, size_t at,
                                const char *key)
{
    kl__field field = *f; /* placed in kl_config itself */
    field.off += at;
    char def[128] = "", text[128] = "", want[128] = "", got[128] = "", override[256];
    kl_config *d = read_bare(root, NULL, NULL);
    if (d)
        value_text(&field, d, def, sizeof def);
    kl_config_free(d);
    if (f->type == KL__F_CUSTOM) /* model.layers: test_every_layer_row_reachable */
        snprintf(text, sizeof text, "[]");
    else
        other_value(f, def, text, want, sizeof text);
    snprintf(override, sizeof override, "%s=%s", key, text);
    kl_config *c = read_bare(root, NULL, override);
    if (!check_(c != NULL, __FILE__, __LINE__, override))
        return;
    char *printed = print_bare(root, c);
    kl__ynode *tree = NULL;
    kl_error err = {0};
    CHECK(printed && kl__yaml_parse(NAME, printed, strlen(printed), 0, 0, &tree, &err) == KL_OK);
    const kl__ynode *node = node_at(tree, key);
    if (!check_(node != NULL, __FILE__, __LINE__, "printed under its key"))
        fprintf(stderr, "    %s is not in\n%s\n", key, printed);
    if (f->type != KL__F_CUSTOM) {
        value_text(&field, c, got, sizeof got);
        if (!check_(strcmp(got, want) == 0, __FILE__, __LINE__, override))
            fprintf(stderr, "    %s reads as %s (default %s)\n", key, got, def);
        bool quoted = f->type == KL__F_STR;
        if (node && !check_(strcmp(node->str, text) == 0 && node->plain == !quoted, __FILE__,
                            __LINE__, "printed as set"))
            fprintf(stderr, "    %s printed as %s, set to %s\n", key, node->str, text);
    }
    kl__ynode_free(tree);
    free(printed);
    kl_config_free(c);
}

/* Walks a section's rows: names unique, not more than a section may have, each one reachable. */
static int check_section_rows(const kl__section *root, const kl__section *s, size_t at, char *key)
{
    int leaves = 0;
    CHECK(s->nfields > 0 && s->nfields <= KL__SECTION_MAX_FIELDS);
    for (int i = 0; i < s->nfields; i++) {
        const kl__field *f = &s->fields[i];
        for (int j = 0; j < i; j++)
            if (!check_(strcmp(f->name, s->fields[j].name) != 0, __FILE__, __LINE__,
                        "a row's name is unique in its section"))
                fprintf(stderr, "    %s.%s twice\n", key, f->name);
        size_t len = kl__path_push(key, f->name);
        if (f->type == KL__F_SECTION)
            leaves += check_section_rows(root, f->sub, at + f->off, key);
        else {
            check_row_reachable(root, f, at, key);
            leaves++;
        }
        kl__path_pop(key, len);
    }
    return leaves;
}

/* The row at a dotted key, found through the sections' own counts; NULL when none. */
static const kl__field *row_at(const kl__section *s, const char *key)
{
    char copy[KL__PATH_MAX];
    snprintf(copy, sizeof copy, "%s", key);
    const kl__field *row = NULL;
    for (char *save = NULL, *seg = strtok_r(copy, ".", &save); seg;
         seg = strtok_r(NULL, ".", &save)) {
        if (!s)
            return NULL;
        row = NULL;
        for (int i = 0; i < s->nfields && !row; i++)
            if (strcmp(s->fields[i].name, seg) == 0)
                row = &s->fields[i];
        if (!row)
            return NULL;
        s = row->type == KL__F_SECTION ? row->sub : NULL;
    }
    return row;
}

/* docs/config.md of the source tree this file is in (__FILE__ is its absolute path). */
static char *read_docs(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", __FILE__);
    char *tests = strstr(path, "tests/unit/test_config_tables.c");
    if (!tests)
        return NULL;
    snprintf(tests, sizeof path - (size_t)(tests - path), "docs/config.md");
    FILE *f = fopen(path, "r");
    long size = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    char *text = size >= 0 ? calloc(1, (size_t)size + 1) : NULL;
    if (text && (fseek(f, 0, SEEK_SET) != 0 || fread(text, 1, (size_t)size, f) != (size_t)size)) {
        free(text);
        text = NULL;
    }
    if (f)
        fclose(f);
    return text;
}

/* Every key docs/config.md lists in its key tables is a row the walker reaches: a row that a
 * section's count left out is found missing here. Undotted keys are top-level ones, or a data
 * source's (the table after "A source"). */
static void test_documented_keys_are_rows(void)
{
    const kl__section *root = kl__config_schema();
    const kl__field *source = row_at(root, "data.train");
    char *docs = read_docs();
    if (!check_(docs != NULL, __FILE__, __LINE__, "docs/config.md is readable") || !source)
        return;
    bool in_table = false, in_source = false;
    int keys = 0;
    for (char *save = NULL, *line = strtok_r(docs, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "## ", 3) == 0 || strncmp(line, "A source", 8) == 0)
            in_source = strncmp(line, "A source", 8) == 0;
        if (line[0] != '|') {
            in_table = false;
            continue;
        }
        if (strncmp(line, "| key |", 7) == 0)
            in_table = true;
        char key[128];
        if (!in_table || sscanf(line, "| `%127[^`]`", key) != 1)
            continue;
        const kl__field *row = in_source ? row_at(source->sub, key) : row_at(root, key);
        if (!check_(row != NULL, __FILE__, __LINE__, "a documented key is a row"))
            fprintf(stderr, "    %s%s\n", in_source ? "data.train." : "", key);
        keys++;
    }
    CHECK(keys > 50);
    free(docs);
}

/* Every row of every table can be set and read back: a row that a miscount or a misplaced
 * offset hid would fail here. */
static void test_every_row_reachable(void)
{
    bare_schema bare = {0};
    const kl__section *root = strip(&bare, kl__config_schema());
    char key[KL__PATH_MAX] = "";
    CHECK(check_section_rows(root, root, 0, key) > 0);
}

/* Every layer row can be set for every kind that takes it: one layer of each kind with all of
 * its fields given, read by the real loader, each field read back as written. */
static void test_every_layer_row_reachable(void)
{
    unsigned covered = 0;
    if (!CHECK(kl__layer_field_count <= 16))
        return;
    for (int k = 0; k <= KL_LAYER_RESIDUAL; k++) {
        const char *kind = kl_layer_kind_name((kl_layer_kind)k);
        char override[1024], want[16][128];
        int at = snprintf(override, sizeof override, "model.layers=[{type: %s", kind);
        for (int i = 0, n = 0; i < kl__layer_field_count; i++) {
            const kl__field *f = &kl__layer_fields[i];
            char text[128];
            if (!(f->kinds & (1u << k)))
                continue;
            if (f->type == KL__F_CUSTOM)
                snprintf(text, sizeof text, "[flatten]");
            else
                other_value(f, "", text, want[n], sizeof text);
            at += snprintf(override + at, sizeof override - (size_t)at, ", %s: %s", f->name, text);
            n++;
        }
        snprintf(override + at, sizeof override - (size_t)at, "}]");
        kl_config *c = parse_ok(override);
        if (!c || !CHECK(c->model.nlayers == 1)) {
            kl_config_free(c);
            continue;
        }
        for (int i = 0, n = 0; i < kl__layer_field_count; i++) {
            const kl__field *f = &kl__layer_fields[i];
            char got[128] = "";
            if (!(f->kinds & (1u << k)))
                continue;
            covered |= 1u << i;
            if (f->type == KL__F_CUSTOM) {
                CHECK(c->model.layers[0].nlayers == 1);
            } else {
                value_text(f, &c->model.layers[0], got, sizeof got);
                if (!check_(strcmp(got, want[n]) == 0, __FILE__, __LINE__, override))
                    fprintf(stderr, "    %s of %s reads as %s\n", f->name, kind, got);
            }
            n++;
        }
        kl_config_free(c);
    }
    CHECK(covered == (1u << kl__layer_field_count) - 1); /* every row serves some kind */
}

/* The rows' defaults are those docs/config.md gives, and dist.timeout's agrees with
 * KL_DIST_TIMEOUT_DEFAULT, which the command uses before a config loads. */
static void test_row_defaults(void)
{
    kl_config *c = parse_ok(NULL);
    if (c && CHECK(c->model.nlayers == 1)) {
        CHECK(c->dist.timeout == KL_DIST_TIMEOUT_DEFAULT && c->dist.bucket_mb == 25.0f);
        CHECK(c->dist.overlap && c->schedule.gamma == 0.1f && c->checkpoint.keep_last == 3);
        CHECK(strcmp(c->data.train.x_dataset, "x") == 0 && strcmp(c->data.val.y_dataset, "y") == 0);
        CHECK(strcmp(c->data.test.label_column, "label") == 0);
        CHECK(c->model.layers[0].momentum == 0.1f && c->model.layers[0].eps == 1e-5f);
        CHECK(c->model.layers[0].alpha == 0.01f && c->model.layers[0].stride == 0);
    }
    kl_config_free(c);
}

static const check_case cases[] = {
    CHECK_CASE(test_every_row_reachable),
    CHECK_CASE(test_every_layer_row_reachable),
    CHECK_CASE(test_documented_keys_are_rows),
    CHECK_CASE(test_row_defaults),
};

int main(int argc, char **argv)
{
    return check_run("test_config_tables", cases, CHECK_NCASES(cases), argc, argv);
}
