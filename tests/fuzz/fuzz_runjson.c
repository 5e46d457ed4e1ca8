/* A libFuzzer target for what `kiln runs` reads from run folders and command lines (track/): the
 * input up to its first NUL byte is a run.json, the rest a --where expression. The run.json goes
 * into a run folder of a runs root and the index is synced with it: a damaged record is left out
 * (sync itself succeeds), one that is indexed must list, resolve and export to MLflow's layout,
 * and an expression either parses and filters the listing or is refused with a message naming
 * it. tests/fuzz/run.sh builds and runs it. */
#include <sys/stat.h>

#include "fuzz_util.h"
#include "kiln/track.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool count_row(void *ctx, const kl_runs_row *r)
{
    if (!r->id)
        __builtin_trap();
    ++*(int *)ctx;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    /* <tmp>/root/r/run.json: fuzz_file's folder is the root's parent. */
    const char *probe = fuzz_file("probe", data, 0);
    char root[300], dir[320], path[340], out[320];
    snprintf(root, sizeof root, "%.*s/root", (int)(strrchr(probe, '/') - probe), probe);
    snprintf(dir, sizeof dir, "%s/r", root);
    snprintf(path, sizeof path, "%s/run.json", dir);
    snprintf(out, sizeof out, "%s/mlruns", root);
    mkdir(root, 0755);
    mkdir(dir, 0755);
    FILE *f = fopen(path, "wb");
    if (!f || (json_len && fwrite(data, 1, json_len, f) != json_len) || fclose(f) != 0)
        abort();

    kl_runs_index *ix = NULL;
    kl_error err = {0};
    int changed = 0, rows = 0;
    if (kl_runs_index_open(root, &ix, &err) != KL_OK || kl_runs_index_sync(ix, &changed, &err))
        __builtin_trap(); /* a bad record is a warning, never a failed sync */
    kl_runs_cond cond;
    bool have = false;
    if (nul) {
        size_t n = size - json_len - 1;
        char *expr = malloc(n + 1);
        if (!expr)
            abort();
        memcpy(expr, nul + 1, n);
        expr[n] = '\0';
        kl_status st = kl_runs_cond_parse(expr, &cond, &err);
        if (st != KL_OK && (st != KL_EINVAL || !strstr(err.msg, "--where")))
            __builtin_trap();
        have = st == KL_OK;
        free(expr);
    }
    if (kl_runs_index_list(ix, have ? &cond : NULL, have ? 1 : 0, NULL, false, NULL, 0, count_row,
                           &rows, &err) != KL_OK ||
        rows > 1)
        __builtin_trap();
    char *id = kl_runs_resolve(ix, "r", &err);
    if (id) { /* indexed: it exports */
        const char *ids[] = {id};
        kl_status st = kl_runs_export_mlflow(ix, ids, 1, out, "fuzz", &err);
        if (st != KL_OK)
            fuzz_check_error(st, &err);
        free(id);
    }
    kl_runs_index_close(ix);
    return 0;
}
