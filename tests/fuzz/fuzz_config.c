/* A libFuzzer target for the config loader (runtime/config*.c: libyaml, the schema, --set
 * overrides): the input up to its first NUL byte is the YAML file, each NUL-separated piece after
 * it an override ("key.path=value"). A config that loads must print (kiln train --print-config)
 * as YAML that loads again to a config that prints the same. tests/fuzz/run.sh builds and runs
 * it. */
#include "fuzz_util.h"
#include "kiln/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_OVERRIDES = 8 };

/* The config printed into a malloc'd string (its length in *len). */
static char *print(const kl_config *c, size_t *len)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f)
        abort();
    kl_config_print(c, f);
    if (fclose(f) != 0)
        abort();
    return text;
}

static void check_round_trip(const kl_config *c)
{
    size_t len, len2;
    char *text = print(c, &len);
    kl_error err = {0};
    kl_config *back = kl_config_parse("printed.yaml", text, len, NULL, 0, &err);
    if (!back) {
        fprintf(stderr, "fuzz: the printed config does not load: %s\n%s", err.msg, text);
        __builtin_trap();
    }
    char *again = print(back, &len2);
    if (len != len2 || memcmp(text, again, len) != 0) {
        fprintf(stderr, "fuzz: the printed config prints differently:\n%s---\n%s", text, again);
        __builtin_trap();
    }
    free(again);
    kl_config_free(back);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t yaml_len = strlen(copy);
    const char *overrides[MAX_OVERRIDES];
    int n = 0;
    for (size_t at = yaml_len + 1; at <= size && n < MAX_OVERRIDES; at += strlen(copy + at) + 1)
        overrides[n++] = copy + at;
    kl_error err = {0};
    kl_config *c = kl_config_parse("fuzz.yaml", copy, yaml_len, overrides, n, &err);
    if (c)
        check_round_trip(c);
    else
        fuzz_check_error(err.status, &err);
    kl_config_free(c);
    free(copy);
    return 0;
}
