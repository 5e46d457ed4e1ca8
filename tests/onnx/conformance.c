/* ONNX's own backend test cases (Debian's libonnx-testdata: data/node/ and
 * data/pytorch-converted/, each a model.onnx with test_data_set_N/input_K.pb and output_K.pb)
 * run through kiln's importer. A case whose operators kiln imports is loaded with the batch as
 * dim 0 (the serving path) or, when that is refused, with whole tensors; a case the importer
 * refuses is skipped with its reason. Every loaded case must match the expected outputs within
 * the suite's tolerance (numpy's assert_allclose with rtol 1e-3, atol 1e-7, as ONNX's backend
 * runner). Prints the pass count per operator and every skip; exit 1 on any mismatch.
 *
 * usage: onnx_conformance DATA_DIR [SUBDIR...]   (exit 77 when DATA_DIR is missing) */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kiln/onnx.h"
#include "onnx.pb-c.h"

#define RTOL 1e-3
#define ATOL 1e-7

typedef struct tally {
    char op[64];
    int pass, whole, skip, fail;
} tally;

static tally tallies[512];
static int ntallies;

static tally *tally_of(const char *op)
{
    for (int i = 0; i < ntallies; i++)
        if (!strcmp(tallies[i].op, op))
            return &tallies[i];
    if (ntallies == 512)
        return &tallies[511];
    snprintf(tallies[ntallies].op, sizeof tallies[0].op, "%s", op);
    return &tallies[ntallies++];
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* A float tensor file as floats (raw_data or float_data); NULL for another type. */
static float *read_tensor(const char *path, int64_t *count, int64_t *dim0)
{
    size_t n;
    uint8_t *b = read_all(path, &n);
    Onnx__TensorProto *t = b ? onnx__tensor_proto__unpack(NULL, n, b) : NULL;
    free(b);
    if (!t)
        return NULL;
    float *v = NULL;
    int64_t c = 1;
    for (size_t i = 0; i < t->n_dims; i++)
        c *= t->dims[i];
    *dim0 = t->n_dims ? t->dims[0] : 1;
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && c >= 0 &&
        (v = malloc((size_t)(c ? c : 1) * sizeof *v))) {
        if (c == 0)
            ;
        else if (t->has_raw_data && t->raw_data.len == (size_t)c * 4)
            memcpy(v, t->raw_data.data, (size_t)c * 4);
        else if (t->n_float_data == (size_t)c)
            memcpy(v, t->float_data, (size_t)c * 4);
        else {
            free(v);
            v = NULL;
        }
    }
    *count = c;
    onnx__tensor_proto__free_unpacked(t, NULL);
    return v;
}

/* The operator a case is counted under: node/ cases by their last node's operator (the one the
 * case tests; Constant nodes come first), pytorch-converted/ ones as "pytorch-converted". */
static void case_op(const char *model, const char *sub, char *op, size_t len, char *missing,
                    size_t mlen)
{
    size_t n;
    uint8_t *b = read_all(model, &n);
    Onnx__ModelProto *mp = b ? onnx__model_proto__unpack(NULL, n, b) : NULL;
    free(b);
    snprintf(op, len, "%s", strcmp(sub, "node") ? sub : "?");
    missing[0] = '\0';
    if (!mp)
        return;
    const char *sup = kl_onnx_supported_ops();
    for (size_t i = 0; mp->graph && i < mp->graph->n_node; i++) {
        const Onnx__NodeProto *p = mp->graph->node[i];
        char key[80];
        snprintf(key, sizeof key, "%s,", p->op_type);
        char list[1024];
        snprintf(list, sizeof list, "%s,", sup);
        bool found = false;
        for (char *tok = strtok(list, ", "); tok; tok = strtok(NULL, ", "))
            found |= !strcmp(tok, p->op_type);
        if (!found && !missing[0])
            snprintf(missing, mlen, "%s", p->op_type);
        if (!strcmp(sub, "node") && strcmp(p->op_type, "Constant"))
            snprintf(op, len, "%s", p->op_type);
    }
    onnx__model_proto__free_unpacked(mp, NULL);
}

/* Runs every test_data_set of a loaded model: 0 all match, 1 a mismatch, 2 unusable data. */
static int run_sets(kl_onnx *m, const char *dir, char *why, size_t wlen)
{
    int rc = 0, sets = 0;
    for (int s = 0; s < 16 && rc == 0; s++) {
        char path[1200]; /* the case folder (up to 1100) and a data-set file name */
        snprintf(path, sizeof path, "%s/test_data_set_%d/input_0.pb", dir, s);
        FILE *probe = fopen(path, "rb");
        if (!probe)
            break;
        fclose(probe);
        sets++;
        int ni = kl_onnx_num_inputs(m), no = kl_onnx_num_outputs(m);
        float *x[16] = {0}, *y[16] = {0}, *want[16] = {0};
        int64_t n = 1, cnt, d0;
        for (int i = 0; i < ni && i < 16 && rc == 0; i++) {
            snprintf(path, sizeof path, "%s/test_data_set_%d/input_%d.pb", dir, s, i);
            x[i] = read_tensor(path, &cnt, &d0);
            n = kl_onnx_dynamic_batch(m) || kl_onnx_max_batch(m) > 1 ? d0 : 1;
            if (!x[i] || cnt != n * kl_onnx_input(m, i)->features) {
                snprintf(why, wlen, "input %d is not a float tensor of the declared size", i);
                rc = 2;
            }
        }
        for (int j = 0; j < no && j < 16 && rc == 0; j++) {
            snprintf(path, sizeof path, "%s/test_data_set_%d/output_%d.pb", dir, s, j);
            want[j] = read_tensor(path, &cnt, &d0);
            y[j] = calloc((size_t)(cnt > 0 ? cnt : 1), sizeof(float));
            if (!want[j] || cnt != n * kl_onnx_output(m, j)->features) {
                snprintf(why, wlen, "output %d is not a float tensor of kiln's size", j);
                rc = 2;
            }
        }
        kl_error err = {0};
        if (rc == 0 && kl_onnx_run(m, (const float *const *)x, n, y, &err)) {
            snprintf(why, wlen, "run failed: %s", err.msg);
            rc = 1;
        }
        for (int j = 0; j < no && rc == 0; j++) {
            int64_t c = n * kl_onnx_output(m, j)->features;
            for (int64_t k = 0; k < c; k++) {
                double a = y[j][k], b = want[j][k];
                bool ok = fabs(a - b) <= ATOL + RTOL * fabs(b) || (isnan(a) && isnan(b)) ||
                          (isinf(a) && a == b);
                if (!ok) {
                    snprintf(why, wlen, "set %d output %d element %lld: kiln %.9g, expected %.9g",
                             s, j, (long long)k, a, b);
                    rc = 1;
                    break;
                }
            }
        }
        for (int i = 0; i < 16; i++) {
            free(x[i]);
            free(y[i]);
            free(want[i]);
        }
    }
    if (!sets && rc == 0) {
        snprintf(why, wlen, "no test data");
        return 2;
    }
    return rc;
}

/* The batch the first input of the first data set holds, to load a dynamic-batch model with. */
static int64_t first_batch(const char *dir)
{
    char path[1200]; /* the case folder (up to 1100) and a data-set file name */
    int64_t cnt, d0 = 1;
    snprintf(path, sizeof path, "%s/test_data_set_0/input_0.pb", dir);
    free(read_tensor(path, &cnt, &d0));
    return d0 > 0 ? d0 : 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: onnx_conformance DATA_DIR [SUBDIR...]\n");
        return 2;
    }
    const char *subs_default[] = {"node", "pytorch-converted"};
    const char *const *subs = argc > 2 ? (const char *const *)argv + 2 : subs_default;
    int nsubs = argc > 2 ? argc - 2 : 2, failures = 0, loaded = 0, total = 0;
    for (int si = 0; si < nsubs; si++) {
        char root[1024];
        snprintf(root, sizeof root, "%s/%s", argv[1], subs[si]);
        DIR *d = opendir(root);
        if (!d) {
            printf("SKIP: %s is missing (install libonnx-testdata)\n", root);
            return 77;
        }
        char *names[2048];
        int nn = 0;
        for (struct dirent *e; (e = readdir(d)) && nn < 2048;)
            if (e->d_name[0] != '.')
                names[nn++] = strdup(e->d_name);
        closedir(d);
        qsort(names, (size_t)nn, sizeof *names, cmp_str);
        for (int i = 0; i < nn; i++) {
            char dir[1100], model[1200], op[64], missing[64], why[600] = "";
            snprintf(dir, sizeof dir, "%s/%s", root, names[i]);
            snprintf(model, sizeof model, "%s/model.onnx", dir);
            case_op(model, subs[si], op, sizeof op, missing, sizeof missing);
            tally *t = tally_of(op);
            total++;
            if (missing[0]) {
                t->skip++;
                printf("skip %s/%s: operator %s is not imported\n", subs[si], names[i], missing);
                free(names[i]);
                continue;
            }
            kl_onnx *m = NULL;
            kl_error err = {0}, err2 = {0};
            kl_onnx_opts batched = {.max_batch = first_batch(dir)}, whole = {.whole_tensors = true};
            bool is_whole = false;
            if (kl_onnx_load(model, &batched, &m, &err) && !kl_onnx_load(model, &whole, &m, &err2))
                is_whole = true;
            if (!m) {
                t->skip++;
                printf("skip %s/%s: refused: %s\n", subs[si], names[i], err2.msg);
                free(names[i]);
                continue;
            }
            int rc = run_sets(m, dir, why, sizeof why);
            kl_onnx_free(m);
            if (rc == 2) {
                t->skip++;
                printf("skip %s/%s: %s\n", subs[si], names[i], why);
            } else if (rc == 1) {
                t->fail++;
                failures++;
                printf("FAIL %s/%s: %s\n", subs[si], names[i], why);
            } else {
                loaded++;
                t->pass++;
                t->whole += is_whole;
            }
            free(names[i]);
        }
    }
    printf("\n%-22s %6s %6s %6s %6s\n", "operator", "pass", "whole", "skip", "FAIL");
    for (int i = 0; i < ntallies; i++)
        if (tallies[i].pass || tallies[i].fail)
            printf("%-22s %6d %6d %6d %6d\n", tallies[i].op, tallies[i].pass, tallies[i].whole,
                   tallies[i].skip, tallies[i].fail);
    printf("\n%d of %d cases run and pass (whole: loaded as whole tensors, not batches), %d fail, "
           "%d skipped\n",
           loaded, total, failures, total - loaded - failures);
    return failures ? 1 : 0;
}
