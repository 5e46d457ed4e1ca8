/* kl_modelfile_save, which kiln serve's online learning publishes versions with: a model file
 * saved with other weights loads back with exactly those weights (parameters and batchnorm
 * buffers), predicts exactly as the original model does once given the same weights, and keeps
 * everything else of the original: config, standardisation, signature, class names and
 * reference statistics (classification and regression, with and without /reference). Saving
 * into a folder that does not exist fails and leaves nothing behind. Models are trained here on
 * synthetic CSV data. */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "check_tmp.h"
#include "kiln/ckpt.h"
#include "kiln/modelfile.h"
#include "kiln/modelfile_export.h"
#include "kiln/train.h"
#include "runtime/modelfile_parts.h"

static float uniform(uint32_t *s)
{
    return (float)check_lcg(s) / (float)(1u << 24) * 2 - 1;
}

/* Three classes from four features (classification), or y = 2a - b + 0.5 from two. */
static void write_csv(const char *path, int n, uint32_t seed, bool regression)
{
    FILE *f = fopen(path, "w");
    KL_ASSERT(f);
    fprintf(f, regression ? "a,b,y\n" : "a,b,c,d,label\n");
    for (int i = 0; i < n; i++) {
        float v[4];
        for (int k = 0; k < 4; k++)
            v[k] = uniform(&seed);
        if (regression)
            fprintf(f, "%.6f,%.6f,%.6f\n", v[0], v[1], 2 * v[0] - v[1] + 0.5f);
        else
            fprintf(f, "%.6f,%.6f,%.6f,%.6f,%d\n", v[0], v[1], v[2] * 3, v[3] + 5,
                    v[0] + v[1] > 0 ? (v[2] - v[3] > 0 ? 2 : 1) : 0);
    }
    KL_ASSERT(fclose(f) == 0);
}

/* Trains cfg_text and exports it to out (with reference statistics unless no_reference). */
static bool train_and_export(const char *cfg_text, const char *out, bool no_reference)
{
    kl_error err = {0};
    kl_config *cfg = kl_config_parse("test.yaml", cfg_text, strlen(cfg_text), NULL, 0, &err);
    if (!CHECK(cfg)) {
        fprintf(stderr, "    %s\n", err.msg);
        return false;
    }
    kl_data_splits data = {0};
    kl_model m = {0};
    CHECK_OK(kl_data_prepare(&cfg->data, cfg->train.seed, &data, &err), &err);
    if (err.status == KL_OK)
        CHECK_OK(kl_train_run(cfg, &data, NULL, &m, NULL, &err), &err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    KL_ASSERT(f);
    kl_config_print(cfg, f);
    fclose(f);
    kl_ckpt_state st = {.seed = cfg->train.seed,
                        .best_metric = NAN,
                        .mean = data.mean,
                        .std = data.std,
                        .nstats = data.nstats};
    if (err.status == KL_OK)
        CHECK_OK(kl_ckpt_save(in_tmp("ckpt.h5"), text, &m, &st, &err), &err);
    kl_modelfile_export_options o = {.reference_samples = 100, .no_reference = no_reference};
    if (err.status == KL_OK)
        CHECK_OK(kl_modelfile_export(in_tmp("ckpt.h5"), out, &o, &err), &err);
    free(text);
    if (m.g)
        kl_model_free(&m);
    kl_data_splits_free(&data);
    kl_config_free(cfg);
    return err.status == KL_OK;
}

static bool same_floats(const float *a, const float *b, int64_t n)
{
    return (!a && !b) || (a && b && memcmp(a, b, (size_t)n * sizeof *a) == 0);
}

/* Everything but the weights is mf's. */
static void check_same_rest(const kl_modelfile *mf, const kl_modelfile *got)
{
    const kl_modelfile_signature *a = kl_modelfile_sig(mf), *b = kl_modelfile_sig(got);
    CHECK(a->task == b->task && a->outputs == b->outputs && a->features == b->features);
    CHECK(a->nstats == b->nstats && a->input.ndim == b->input.ndim);
    for (int d = 0; d < a->input.ndim; d++)
        CHECK(a->input.d[d] == b->input.d[d]);
    CHECK(!strcmp(a->input_name, b->input_name) && !strcmp(a->output_name, b->output_name));
    CHECK(!strcmp(mf->config_text, got->config_text));
    CHECK(same_floats(mf->mean, got->mean, a->nstats) && same_floats(mf->std, got->std, a->nstats));
    CHECK(mf->nlabels == got->nlabels);
    for (int k = 0; k < mf->nlabels && k < got->nlabels; k++)
        CHECK(!strcmp(kl_modelfile_label(mf, k), kl_modelfile_label(got, k)));
    const kl_modelfile_reference *r = kl_modelfile_ref(mf), *q = kl_modelfile_ref(got);
    CHECK(!r == !q);
    if (!r || !q)
        return;
    const int64_t B = KL_MODELFILE_BINS, f = a->features, k = a->outputs;
    CHECK(r->samples == q->samples && r->seed == q->seed);
    CHECK(same_floats(r->input_edges, q->input_edges, f * (B + 1)));
    CHECK(same_floats(r->input_proportions, q->input_proportions, f * B));
    CHECK(same_floats(r->label_proportions, q->label_proportions, k));
    CHECK(same_floats(r->predicted_proportions, q->predicted_proportions, k));
    CHECK(same_floats(r->target_edges, q->target_edges, k * (B + 1)));
    CHECK(same_floats(r->target_proportions, q->target_proportions, k * B));
    CHECK(same_floats(r->prediction_edges, q->prediction_edges, k * (B + 1)));
    CHECK(same_floats(r->prediction_proportions, q->prediction_proportions, k * B));
}

/* Predictions of n samples x, as probabilities or predictions (n * outputs) and classes. */
static void predict(kl_modelfile *mf, const float *x, int64_t n, float *out, int32_t *cls)
{
    kl_error err = {0};
    bool c = kl_modelfile_sig(mf)->task == KL_TASK_CLASSIFICATION;
    CHECK_OK(kl_modelfile_predict(mf, x, n, out, c ? cls : NULL, &err), &err);
}

/* The round trip on the model file at path: saved as it is, and saved with other weights. */
static void round_trip(const char *path)
{
    kl_error err = {0};
    kl_modelfile *mf = NULL, *same = NULL, *moved = NULL;
    CHECK_OK(kl_modelfile_load(path, 16, &mf, &err), &err);
    if (!mf)
        return;
    const kl_modelfile_signature *sig = kl_modelfile_sig(mf);
    enum { N = 40 };
    int64_t f = sig->features, k = sig->outputs;
    float *x = malloc((size_t)(N * f) * sizeof *x), *p0 = malloc((size_t)(N * k) * sizeof *p0);
    float *p1 = malloc((size_t)(N * k) * sizeof *p1), *p2 = malloc((size_t)(N * k) * sizeof *p2);
    int32_t c0[N] = {0}, c1[N] = {0}, c2[N] = {0};
    KL_ASSERT(x && p0 && p1 && p2);
    uint32_t seed = 99;
    for (int64_t i = 0; i < N * f; i++)
        x[i] = uniform(&seed) * 2;
    predict(mf, x, N, p0, c0);

    /* Saved with its own weights (NULL): the same model. */
    CHECK_OK(kl_modelfile_save(mf, NULL, NULL, in_tmp("same.h5"), &err), &err);
    CHECK_OK(kl_modelfile_load(in_tmp("same.h5"), 16, &same, &err), &err);
    if (same) {
        check_same_rest(mf, same);
        predict(same, x, N, p1, c1);
        CHECK(memcmp(p0, p1, (size_t)(N * k) * sizeof *p0) == 0);
        CHECK(memcmp(c0, c1, sizeof c0) == 0);
    }

    /* Saved with other weights: they load back bit for bit, the rest is mf's. */
    kl_graph *g = kl_modelfile_model(mf)->g;
    size_t np = kl_graph_param_count(g), nb = kl_graph_buffer_count(g);
    float *params = malloc((np + 1) * sizeof *params), *bufs = malloc((nb + 1) * sizeof *bufs);
    KL_ASSERT(params && bufs);
    for (size_t i = 0; i < np; i++)
        params[i] = kl_graph_params(g)[i] + 0.05f * (float)((int)(i % 7) - 3);
    for (size_t i = 0; i < nb; i++) /* running means and variances: variances stay positive */
        bufs[i] = kl_graph_buffers(g)[i] * 1.5f + 0.1f;
    CHECK_OK(kl_modelfile_save(mf, params, bufs, in_tmp("moved.h5"), &err), &err);
    CHECK_OK(kl_modelfile_load(in_tmp("moved.h5"), 16, &moved, &err), &err);
    if (moved) {
        kl_graph *h = kl_modelfile_model(moved)->g;
        CHECK(kl_graph_param_count(h) == np && kl_graph_buffer_count(h) == nb);
        CHECK(same_floats(kl_graph_params(h), params, (int64_t)np));
        CHECK(same_floats(kl_graph_buffers(h), bufs, (int64_t)nb));
        check_same_rest(mf, moved);
        predict(moved, x, N, p2, c2);
        CHECK(memcmp(p0, p2, (size_t)(N * k) * sizeof *p0) != 0); /* the weights moved */
        /* mf given the same weights predicts exactly as the saved file does. */
        memcpy(kl_graph_params(g), params, np * sizeof *params);
        memcpy(kl_graph_buffers(g), bufs, nb * sizeof *bufs);
        predict(mf, x, N, p1, c1);
        CHECK(memcmp(p1, p2, (size_t)(N * k) * sizeof *p1) == 0);
        CHECK(memcmp(c1, c2, sizeof c1) == 0);
    }

    /* A folder that does not exist: an error, and nothing is written. */
    CHECK(kl_modelfile_save(mf, params, bufs, in_tmp("nowhere/model.h5"), &err) != KL_OK);
    CHECK(access(in_tmp("nowhere"), F_OK) != 0);
    free(params);
    free(bufs);
    free(x);
    free(p0);
    free(p1);
    free(p2);
    kl_modelfile_free(same);
    kl_modelfile_free(moved);
    kl_modelfile_free(mf);
}

/* Nothing but the files named is left in the folder (no temporary files). */
static void check_folder_holds(const char *const *names, int n)
{
    DIR *d = opendir(check_tmp);
    KL_ASSERT(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        bool known = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
        for (int i = 0; i < n; i++)
            known |= !strcmp(e->d_name, names[i]);
        if (!CHECK(known))
            fprintf(stderr, "    unexpected file %s\n", e->d_name);
    }
    closedir(d);
}

static const char class_yaml[] =
    "model: {layers: [{dense: {units: 16, activation: relu}}, {batchnorm: {}}, "
    "{dropout: {rate: 0.1}}]}\n"
    "data:\n"
    "  train: {format: csv, path: %s}\n"
    "  standardize: feature\n"
    "optimizer: {name: adam, lr: 0.01}\n"
    "train: {epochs: 3, batch_size: 30, seed: 3, threads: 1, label_smoothing: 0.1}\n";

static const char reg_yaml[] = "model: {layers: [{dense: {units: 8, activation: tanh}}]}\n"
                               "data:\n"
                               "  task: regression\n"
                               "  train: {format: csv, path: %s, label_column: y}\n"
                               "optimizer: {name: adam, lr: 0.02}\n"
                               "train: {epochs: 3, batch_size: 20, seed: 1, threads: 1}\n";

static void test_classifier(void)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, class_yaml, in_tmp("c.csv"));
    if (train_and_export(yaml, in_tmp("c.h5"), false))
        round_trip(in_tmp("c.h5"));
}

/* A classifier exported without /reference. */
static void test_classifier_without_reference(void)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, class_yaml, in_tmp("c.csv"));
    if (train_and_export(yaml, in_tmp("cn.h5"), true))
        round_trip(in_tmp("cn.h5"));
}

static void test_regression(void)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, reg_yaml, in_tmp("r.csv"));
    if (train_and_export(yaml, in_tmp("r.h5"), false))
        round_trip(in_tmp("r.h5"));
}

/* After the cases above (they run in order, in one folder): no temporary file is left. */
static void test_no_leftovers(void)
{
    static const char *const files[] = {"c.csv", "r.csv", "ckpt.h5", "c.h5",
                                        "cn.h5", "r.h5",  "same.h5", "moved.h5"};
    check_folder_holds(files, (int)(sizeof files / sizeof *files));
}

static const check_case cases[] = {
    CHECK_CASE(test_classifier),
    CHECK_CASE(test_classifier_without_reference),
    CHECK_CASE(test_regression),
    CHECK_CASE(test_no_leftovers),
};

int main(int argc, char **argv)
{
    check_tmp_make("modelfile-save");
    write_csv(in_tmp("c.csv"), 300, 7, false);
    write_csv(in_tmp("r.csv"), 200, 11, true);
    int rc = check_run("test_modelfile_save", cases, CHECK_NCASES(cases), argc, argv);
    check_tmp_remove();
    return rc;
}
