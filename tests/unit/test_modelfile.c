/* The model file API (include/kiln/modelfile.h) without Fashion-MNIST: models trained here on
 * synthetic CSV data (classification with label smoothing and per-feature standardisation, and
 * regression), checkpointed with kl_ckpt_save, exported and loaded back. Checks that scoring
 * raw inputs gives training's evaluation exactly, the signature, class names and reference
 * statistics (shapes, monotone edges, proportions, the bin rule), inputs with and without
 * answers, the shape rule, and that damaged or foreign files and bad inputs are refused. */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "check_tmp.h"
#include "kiln/ckpt.h"
#include "kiln/modelfile.h"
#include "kiln/modelfile_export.h"
#include "kiln/predict_io.h"
#include "kiln/train.h"

/* Three classes from four features in [-1, 1]: the sign pattern of a + b and c - d, with the
 * label column between the features (the loader takes every other column as a feature). */
static void write_class_csv(const char *path, int n, uint32_t seed, bool labels)
{
    FILE *f = fopen(path, "w");
    KL_ASSERT(f);
    fprintf(f, labels ? "a,b,label,c,d\n" : "a,b,c,d\n");
    for (int i = 0; i < n; i++) {
        float v[4];
        for (int k = 0; k < 4; k++)
            v[k] = (float)check_lcg(&seed) / (float)(1u << 24) * 2 - 1;
        int y = v[0] + v[1] > 0 ? (v[2] - v[3] > 0 ? 2 : 1) : 0;
        if (labels)
            fprintf(f, "%.6f,%.6f,%d,%.6f,%.6f\n", v[0], v[1], y, v[2] * 3, v[3] + 5);
        else
            fprintf(f, "%.6f,%.6f,%.6f,%.6f\n", v[0], v[1], v[2] * 3, v[3] + 5);
    }
    KL_ASSERT(fclose(f) == 0);
}

/* y = 2a - b + 0.5 (and a second target a + b for two outputs). */
static void write_reg_csv(const char *path, int n, uint32_t seed)
{
    FILE *f = fopen(path, "w");
    KL_ASSERT(f);
    fprintf(f, "a,b,y\n");
    for (int i = 0; i < n; i++) {
        float a = (float)check_lcg(&seed) / (float)(1u << 24) * 2 - 1;
        float b = (float)check_lcg(&seed) / (float)(1u << 24) * 2 - 1;
        fprintf(f, "%.6f,%.6f,%.6f\n", a, b, 2 * a - b + 0.5f);
    }
    KL_ASSERT(fclose(f) == 0);
}

typedef struct trained {
    kl_config *cfg;
    kl_data_splits data;
    kl_model m;
    kl_train_result r;
} trained;

/* Trains cfg_text and writes its checkpoint to ckpt, as kiln train's final.h5. */
static bool train_and_save(const char *cfg_text, const char *ckpt, trained *t)
{
    kl_error err = {0};
    memset(t, 0, sizeof *t);
    t->cfg = kl_config_parse("test.yaml", cfg_text, strlen(cfg_text), NULL, 0, &err);
    if (!CHECK(t->cfg)) {
        fprintf(stderr, "    %s\n", err.msg);
        return false;
    }
    CHECK_OK(kl_data_prepare(&t->cfg->data, t->cfg->train.seed, &t->data, &err), &err);
    CHECK_OK(kl_train_run(t->cfg, &t->data, NULL, &t->m, &t->r, &err), &err);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    KL_ASSERT(f);
    kl_config_print(t->cfg, f);
    fclose(f);
    kl_ckpt_state st = {.seed = t->cfg->train.seed,
                        .best_metric = NAN,
                        .mean = t->data.mean,
                        .std = t->data.std,
                        .nstats = t->data.nstats};
    CHECK_OK(kl_ckpt_save(ckpt, text, &t->m, &st, &err), &err);
    free(text);
    return err.status == KL_OK;
}

static void trained_free(trained *t)
{
    kl_model_free(&t->m);
    kl_data_splits_free(&t->data);
    kl_config_free(t->cfg);
}

static bool contains(const char *s, const char *part)
{
    if (strstr(s, part))
        return true;
    fprintf(stderr, "    '%s' does not contain '%s'\n", s, part);
    return false;
}

/* Scores a raw input file with mf: the same loss and accuracy / MAE as kl_evaluate on the
 * standardised split of the training run. */
static void check_equals_training(kl_modelfile *mf, const char *input, trained *t)
{
    kl_error err = {0};
    kl_dataset d;
    /* The label column is left to default: "label", or for the regression model "y", the
     * column it was trained with. */
    kl_data_source src = {.path = (char *)input};
    CHECK_OK(kl_predict_read_input(mf, &src, &d, &err), &err);
    if (!d.x)
        return;
    int64_t n = d.x->shape.d[0], k = kl_modelfile_sig(mf)->outputs;
    float *out = malloc((size_t)(n * k) * sizeof *out);
    int32_t *cls = malloc((size_t)n * sizeof *cls);
    KL_ASSERT(out && cls && d.y);
    kl_modelfile_score sc = {0};
    CHECK_OK(kl_modelfile_evaluate(mf, kl_f32(d.x), d.y->data, n, out, cls, &sc, &err), &err);
    double loss, acc, mae, eloss, eacc, emae;
    kl_modelfile_score_means(mf, &sc, &loss, &acc, &mae);
    CHECK_OK(kl_evaluate(&t->m, &t->data.test, &eloss, &eacc, &emae, &err), &err);
    CHECK(sc.n == n);
    CHECK_NEAR(loss, t->r.test_loss, 1e-6);
    CHECK_NEAR(loss, eloss, 1e-6);
    if (kl_modelfile_sig(mf)->task == KL_TASK_CLASSIFICATION) {
        CHECK_NEAR(acc, t->r.test_accuracy, 1e-9);
        CHECK(isnan(mae));
        bool sums = true, argmax = true;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int64_t j = 0; j < k; j++) {
                s += out[i * k + j];
                argmax = argmax && out[i * k + j] <= out[i * k + cls[i]];
            }
            sums = sums && fabs(s - 1) < 1e-5;
        }
        CHECK(sums);
        CHECK(argmax);
    } else {
        CHECK_NEAR(mae, t->r.test_mae, 1e-6);
        CHECK(isnan(acc));
    }
    /* Predict runs the inference-only graph, evaluate the one with the loss: the same outputs,
     * bit for bit. */
    float *pred = malloc((size_t)(n * k) * sizeof *pred);
    KL_ASSERT(pred);
    CHECK_OK(kl_modelfile_predict(mf, kl_f32(d.x), n, pred, NULL, &err), &err);
    CHECK(memcmp(pred, out, (size_t)(n * k) * sizeof *pred) == 0);
    free(pred);
    free(out);
    free(cls);
    kl_dataset_free(&d);
}

static void check_reference(const kl_modelfile *mf, int64_t samples)
{
    const kl_modelfile_reference *r = kl_modelfile_ref(mf);
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    const int B = KL_MODELFILE_BINS;
    if (!CHECK(r))
        return;
    CHECK(r->samples == samples);
    bool monotone = true, sums = true;
    for (int64_t j = 0; j < s->features; j++) {
        double sum = 0;
        for (int b = 0; b < B; b++) {
            monotone =
                monotone && r->input_edges[j * (B + 1) + b] <= r->input_edges[j * (B + 1) + b + 1];
            sum += r->input_proportions[j * B + b];
        }
        sums = sums && fabs(sum - 1) < 1e-5;
    }
    CHECK(monotone);
    CHECK(sums);
    if (s->task == KL_TASK_CLASSIFICATION) {
        double a = 0, b = 0;
        for (int k = 0; k < s->outputs; k++) {
            a += r->label_proportions[k];
            b += r->predicted_proportions[k];
        }
        CHECK_NEAR(a, 1, 1e-5);
        CHECK_NEAR(b, 1, 1e-5);
        CHECK(!r->target_edges && !r->prediction_edges);
    } else {
        CHECK(r->target_edges && r->target_proportions && r->prediction_edges &&
              r->prediction_proportions && !r->label_proportions);
    }
}

/* The bin rule: edges[b] <= v < edges[b + 1], ties go up, the ends take what is outside. */
static void test_bin_rule(void)
{
    float e[11] = {0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(kl_modelfile_bin(e, -1) == 0);
    CHECK(kl_modelfile_bin(e, 0) == 2);
    CHECK(kl_modelfile_bin(e, 0.5f) == 2);
    CHECK(kl_modelfile_bin(e, 1) == 3);
    CHECK(kl_modelfile_bin(e, 8) == 9);
    CHECK(kl_modelfile_bin(e, 100) == 9);
}

static const char class_yaml[] =
    "model: {layers: [{dense: {units: 16, activation: relu}}, {dropout: {rate: 0.1}}]}\n"
    "data:\n"
    "  train: {format: csv, path: %s}\n"
    "  test: {format: csv, path: %s}\n"
    "  standardize: feature\n"
    "  val_fraction: 0.1\n"
    "optimizer: {name: adam, lr: 0.01}\n"
    "train: {epochs: 4, batch_size: 30, seed: 3, threads: 1, label_smoothing: 0.1}\n";

static void test_classification(void)
{
    kl_error err = {0};
    char yaml[1024];
    write_class_csv(in_tmp("train.csv"), 400, 7, true);
    write_class_csv(in_tmp("test.csv"), 97, 8, true);
    write_class_csv(in_tmp("nolabel.csv"), 5, 8, false);
    snprintf(yaml, sizeof yaml, class_yaml, in_tmp("train.csv"), in_tmp("test.csv"));
    trained t;
    if (!train_and_save(yaml, in_tmp("c.ckpt.h5"), &t)) {
        trained_free(&t);
        return;
    }
    kl_modelfile_export_options o = {.reference_samples = 100};
    CHECK_OK(kl_modelfile_export(in_tmp("c.ckpt.h5"), in_tmp("c.h5"), &o, &err), &err);
    kl_modelfile *mf = NULL;
    CHECK_OK(kl_modelfile_load(in_tmp("c.h5"), 16, &mf, &err), &err);
    if (!mf) {
        trained_free(&t);
        return;
    }
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    CHECK(s->task == KL_TASK_CLASSIFICATION && s->outputs == 3 && s->features == 4);
    CHECK(s->input.ndim == 1 && s->input.d[0] == 4 && s->nstats == 4);
    CHECK(!strcmp(s->input_name, "input") && !strcmp(s->output_name, "probabilities"));
    CHECK(!strcmp(kl_modelfile_label(mf, 0), "0") && !strcmp(kl_modelfile_label(mf, 2), "2"));
    CHECK(kl_modelfile_label(mf, 3) == NULL);
    CHECK(kl_modelfile_max_batch(mf) == 16);
    check_reference(mf, 100);
    /* Batches of 16 (the last one short) and a file with the label column in the middle. */
    check_equals_training(mf, in_tmp("test.csv"), &t);

    /* Without a label column: no answers, the same probabilities as the first rows. */
    kl_dataset d;
    kl_data_source src = {.path = (char *)in_tmp("nolabel.csv")};
    CHECK_OK(kl_predict_read_input(mf, &src, &d, &err), &err);
    CHECK(d.x && !d.y && d.x->shape.d[0] == 5 && d.x->shape.d[1] == 4);
    float p[5 * 3], q[5 * 3];
    int32_t c[5];
    if (d.x) {
        CHECK_OK(kl_modelfile_predict(mf, kl_f32(d.x), 5, p, c, &err), &err);
        CHECK_OK(kl_modelfile_predict(mf, kl_f32(d.x), 5, q, NULL, &err), &err);
        CHECK(memcmp(p, q, sizeof p) == 0);
        /* NaN is refused with the sample and feature. */
        kl_f32(d.x)[1 * 4 + 2] = NAN;
        CHECK(kl_modelfile_predict(mf, kl_f32(d.x), 5, p, c, &err) == KL_EINVAL);
        CHECK(contains(err.msg, "sample 1 (counting from 0), feature 2 holds nan"));
    }
    kl_dataset_free(&d);

    /* Class names with a comma and a quote are quoted in the CSV predictions. */
    FILE *f = fopen(in_tmp("names.txt"), "w");
    KL_ASSERT(f);
    fprintf(f, "zero\nsay \"hi\"\na,b\n\n");
    fclose(f);
    kl_modelfile_export_options named = {.labels_file = in_tmp("names.txt"), .no_reference = true};
    CHECK_OK(kl_modelfile_export(in_tmp("c.ckpt.h5"), in_tmp("named.h5"), &named, &err), &err);
    kl_modelfile *mf2 = NULL;
    CHECK_OK(kl_modelfile_load(in_tmp("named.h5"), 4, &mf2, &err), &err);
    if (mf2) {
        CHECK(!strcmp(kl_modelfile_label(mf2, 2), "a,b") && !kl_modelfile_ref(mf2));
        int32_t cl[2] = {1, 2};
        float pr[6] = {0.1f, 0.6f, 0.3f, 0.2f, 0.2f, 0.6f};
        CHECK_OK(kl_predict_write(mf2, in_tmp("p.csv"), "in", pr, cl, 2, &err), &err);
        char text[512] = {0};
        f = fopen(in_tmp("p.csv"), "r");
        KL_ASSERT(f);
        CHECK(fread(text, 1, sizeof text - 1, f) > 0);
        fclose(f);
        CHECK(contains(text, "label,label_name,p_zero,\"p_say \"\"hi\"\"\",\"p_a,b\"\n"));
        CHECK(contains(text, "1,\"say \"\"hi\"\"\",0.100000001,0.600000024,0.300000012\n"));
        CHECK(kl_predict_write(mf2, in_tmp("p.txt"), "in", pr, cl, 2, &err) == KL_EINVAL);
    }
    kl_modelfile_free(mf2);

    /* Errors: a name count that does not match, and nothing is left behind. */
    f = fopen(in_tmp("two.txt"), "w");
    KL_ASSERT(f);
    fprintf(f, "x\ny\n");
    fclose(f);
    kl_modelfile_export_options two = {.labels_file = in_tmp("two.txt"), .no_reference = true};
    CHECK(kl_modelfile_export(in_tmp("c.ckpt.h5"), in_tmp("two.h5"), &two, &err) == KL_EINVAL);
    CHECK(contains(err.msg, "has 2 class names but the model has 3 classes"));
    CHECK(access(in_tmp("two.h5"), F_OK) != 0);
    /* A checkpoint is not a model file, and a model file is not a checkpoint. */
    kl_modelfile *bad = NULL;
    CHECK(kl_modelfile_load(in_tmp("c.ckpt.h5"), 4, &bad, &err) == KL_EFORMAT);
    CHECK(contains(err.msg, "is a kiln-checkpoint file, not a kiln-model (export it first"));
    CHECK(kl_modelfile_export(in_tmp("c.h5"), in_tmp("x.h5"), NULL, &err) == KL_EFORMAT);
    CHECK(kl_modelfile_load(in_tmp("test.csv"), 4, &bad, &err) == KL_EFORMAT);
    CHECK(contains(err.msg, "is not an HDF5 file"));
    CHECK(!bad);

    kl_modelfile_free(mf);
    trained_free(&t);
}

/* Inputs of other shapes: flat rows and size-1 axes are accepted, anything else refused. */
static void write_x(const char *path, int ndim, const hsize_t *dims, const float *v)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, "x", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    KL_ASSERT(f >= 0 && sp >= 0 && d >= 0);
    KL_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
}

/* A copy of c.h5 at name with edge (feature, b) of /reference/input/edges set to v. */
static const char *with_edge(const char *name, int64_t feature, int b, float v)
{
    const char *path = in_tmp(name);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", in_tmp("c.h5"), path);
    KL_ASSERT(system(cmd) == 0);
    hid_t h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = h >= 0 ? H5Dopen2(h, "reference/input/edges", H5P_DEFAULT) : -1;
    float e[4][KL_MODELFILE_BINS + 1];
    KL_ASSERT(d >= 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, e) >= 0);
    e[feature][b] = v == INFINITY ? e[feature][KL_MODELFILE_BINS] + 1 : v;
    KL_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, e) >= 0);
    H5Dclose(d);
    H5Fclose(h);
    return path;
}

/* Reference statistics with a NaN edge (every value then falls in the last bin: a false drift
 * alarm) or edges out of order are refused at load, naming the file and the input feature; so is
 * a format_version no kiln writes, without calling it newer. */
static void test_damaged_reference(void)
{
    kl_error err = {0};
    kl_modelfile *mf = NULL;
    const char *p = with_edge("nan-edge.h5", 2, 5, NAN);
    CHECK(kl_modelfile_load(p, 4, &mf, &err) == KL_EFORMAT && !mf);
    kl_modelfile_free(mf);
    CHECK(contains(err.msg,
                   "nan-edge.h5: /reference/input/edges of input feature 2: value 5 is nan"));
    p = with_edge("unsorted-edge.h5", 1, 3, INFINITY); /* past the maximum, before edge 4 */
    CHECK(kl_modelfile_load(p, 4, &mf, &err) == KL_EFORMAT && !mf);
    kl_modelfile_free(mf);
    CHECK(contains(err.msg, "/reference/input/edges of input feature 1: value 4 "));
    CHECK(contains(err.msg, "finite and in increasing order"));
    hid_t h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    int64_t zero = 0;
    hid_t a = h >= 0 ? H5Aopen(h, "format_version", H5P_DEFAULT) : -1;
    KL_ASSERT(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &zero) >= 0);
    H5Aclose(a);
    H5Fclose(h);
    CHECK(kl_modelfile_load(p, 4, &mf, &err) == KL_EFORMAT && !mf);
    kl_modelfile_free(mf);
    CHECK(contains(err.msg, "format_version 0, which no kiln writes") && !strstr(err.msg, "newer"));

    /* Finite weights that overflow on an input: the batch is refused, not answered with NaN
     * (found by the model-file fuzz target). */
    char cmd[600];
    p = in_tmp("overflow.h5");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", in_tmp("c.h5"), p);
    KL_ASSERT(system(cmd) == 0);
    h = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = h >= 0 ? H5Dopen2(h, "params/layers.0.weight", H5P_DEFAULT) : -1;
    hid_t sp = d >= 0 ? H5Dget_space(d) : -1;
    float w[4096];
    KL_ASSERT(sp >= 0 && H5Sget_simple_extent_npoints(sp) <= 4096 &&
              H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
    for (int j = 0; j < 4; j++)
        w[j] = -2.3e38f; /* row 0: the first unit's weights on the 4 features */
    KL_ASSERT(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(h);
    CHECK_OK(kl_modelfile_load(p, 4, &mf, &err), &err);
    if (mf) {
        float x[8] = {-3, -2, -1, 0, 1, 2, 3, -3}, out[2 * 3]; /* the fuzzer's inputs */
        int32_t cls[2];
        CHECK(kl_modelfile_predict(mf, x, 2, out, cls, &err) == KL_ERANGE);
        CHECK(contains(err.msg, "overflow.h5: the model's output for sample ") &&
              contains(err.msg, "its weights overflow float"));
    }
    kl_modelfile_free(mf);
}

static void test_shapes_and_damage(void)
{
    kl_error err = {0};
    kl_modelfile *mf = NULL;
    CHECK_OK(kl_modelfile_load(in_tmp("c.h5"), 8, &mf, &err), &err);
    if (!mf)
        return;
    float v[3 * 4];
    for (int i = 0; i < 12; i++)
        v[i] = (float)i / 12;
    kl_dataset d;
    kl_data_source src = {.path = (char *)in_tmp("x.h5")};
    write_x(in_tmp("x.h5"), 3, (hsize_t[]){3, 1, 4}, v);
    CHECK_OK(kl_predict_read_input(mf, &src, &d, &err), &err);
    CHECK(d.x && !d.y && d.x->shape.ndim == 2 && d.x->shape.d[1] == 4);
    kl_dataset_free(&d);
    write_x(in_tmp("x.h5"), 3, (hsize_t[]){3, 2, 2}, v);
    CHECK(kl_predict_read_input(mf, &src, &d, &err) == KL_ESHAPE);
    CHECK(contains(err.msg, "has samples of shape [2, 2], but the model"));
    CHECK(contains(err.msg, "takes input of shape [4] (4 values per sample)"));
    v[7] = INFINITY;
    write_x(in_tmp("x.h5"), 2, (hsize_t[]){3, 4}, v);
    CHECK(kl_predict_read_input(mf, &src, &d, &err) == KL_EFORMAT);
    CHECK(contains(err.msg, "sample 1 (counting from 0) holds inf"));
    src.format = KL_DATA_NONE;
    src.path = (char *)in_tmp("x.txt");
    FILE *f = fopen(src.path, "w");
    KL_ASSERT(f);
    fclose(f);
    CHECK(kl_predict_read_input(mf, &src, &d, &err) == KL_EINVAL);
    CHECK(contains(err.msg, "give --format idx, hdf5 or csv"));
    kl_modelfile_free(mf);

    /* A model file whose signature or labels were tampered with is refused with the reason. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && cp '%s' '%s'", in_tmp("c.h5"), in_tmp("nosig.h5"),
             in_tmp("c.h5"), in_tmp("nolab.h5"));
    KL_ASSERT(system(cmd) == 0);
    hid_t h = H5Fopen(in_tmp("nosig.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    KL_ASSERT(h >= 0 && H5Ldelete(h, "signature/outputs/probabilities", H5P_DEFAULT) >= 0);
    H5Fclose(h);
    CHECK(kl_modelfile_load(in_tmp("nosig.h5"), 4, &mf, &err) == KL_EFORMAT);
    CHECK(contains(err.msg, "the signature (/signature) is missing or does not match"));
    h = H5Fopen(in_tmp("nolab.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    KL_ASSERT(h >= 0 && H5Ldelete(h, "labels", H5P_DEFAULT) >= 0);
    H5Fclose(h);
    CHECK(kl_modelfile_load(in_tmp("nolab.h5"), 4, &mf, &err) == KL_EFORMAT);
    CHECK(contains(err.msg, "/labels must hold one name per class (3)"));
    test_damaged_reference();
}

static const char reg_yaml[] = "model: {layers: [{dense: {units: 16, activation: tanh}}]}\n"
                               "data:\n"
                               "  task: regression\n"
                               "  train: {format: csv, path: %s, label_column: y}\n"
                               "  test: {format: csv, path: %s, label_column: y}\n"
                               "optimizer: {name: adam, lr: 0.02}\n"
                               "train: {epochs: 5, batch_size: 20, seed: 1, threads: 1}\n";

static void test_regression(void)
{
    kl_error err = {0};
    char yaml[1024];
    write_reg_csv(in_tmp("rtrain.csv"), 200, 11);
    write_reg_csv(in_tmp("rtest.csv"), 53, 12);
    snprintf(yaml, sizeof yaml, reg_yaml, in_tmp("rtrain.csv"), in_tmp("rtest.csv"));
    trained t;
    if (!train_and_save(yaml, in_tmp("r.ckpt.h5"), &t)) {
        trained_free(&t);
        return;
    }
    CHECK_OK(kl_modelfile_export(in_tmp("r.ckpt.h5"), in_tmp("r.h5"), NULL, &err), &err);
    kl_modelfile *mf = NULL;
    CHECK_OK(kl_modelfile_load(in_tmp("r.h5"), 32, &mf, &err), &err);
    if (mf) {
        const kl_modelfile_signature *s = kl_modelfile_sig(mf);
        CHECK(s->task == KL_TASK_REGRESSION && s->outputs == 1 && s->nstats == 1);
        CHECK(!strcmp(s->output_name, "predictions") && kl_modelfile_label(mf, 0) == NULL);
        check_reference(mf, 200);
        check_equals_training(mf, in_tmp("rtest.csv"), &t);
        float x[2] = {0.5f, -0.5f}, y;
        CHECK_OK(kl_modelfile_predict(mf, x, 1, &y, NULL, &err), &err);
        CHECK(fabsf(y - 2.0f) < 0.5f); /* 2a - b + 0.5 = 2, roughly learnt */
        CHECK_OK(kl_predict_write(mf, in_tmp("r.csv"), "x", &y, NULL, 1, &err), &err);
    }
    kl_modelfile_free(mf);
    trained_free(&t);
}

static const check_case cases[] = {
    CHECK_CASE(test_bin_rule),
    CHECK_CASE(test_classification),
    CHECK_CASE(test_shapes_and_damage),
    CHECK_CASE(test_regression),
};

int main(int argc, char **argv)
{
    check_tmp_make("modelfile");
    int rc = check_run("test_modelfile", cases, CHECK_NCASES(cases), argc, argv);
    check_tmp_remove();
    return rc;
}
