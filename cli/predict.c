/* kiln predict: loads an exported model (or an ONNX model) and an input file, scores the inputs in
 * batches with a progress line, prints the loss and accuracy (or MAE) when the file has answers,
 * and writes the predictions. Parsing and printing only; reading, scoring and writing are
 * runtime/modelfile*.c, the same calls kiln serve makes. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/clock.h"
#include "kiln/launch.h"
#include "kiln/modelfile.h"
#include "kiln/predict_io.h"
#include "kiln/stop.h"

void openblas_set_num_threads(int n);

static const char predict_help[] =
    "usage: kiln predict MODEL.h5|MODEL.onnx|XGBOOST.json|XGBOOST.ubj --input FILE [options]\n"
    "\n"
    "Scores a file of inputs with a model from kiln export, in batches, and writes the class\n"
    "probabilities and labels (or the regression predictions). Give raw inputs, as in the\n"
    "training files: the model applies its training standardisation itself. When the file has\n"
    "the answers (IDX with --labels, HDF5 with a y dataset, CSV with a label column) it also\n"
    "prints the loss and accuracy (or MAE), the figures training's evaluation reports.\n"
    "An ONNX model (.onnx, docs/onnx.md) gets its inputs as they are and writes its graph's\n"
    "output as predictions; scoring it against answers is not supported yet.\n"
    "An XGBoost model (.json or .ubj as XGBoost saves it, docs/serve.md) is scored through\n"
    "libxgboost: class probabilities for multi:softprob and binary:logistic, else predictions.\n"
    "\n"
    "options:\n"
    "  --input FILE         the inputs: IDX images (.gz, -ubyte), HDF5 (.h5, .hdf5) or CSV\n"
    "                       (.csv: a header row, one sample a row); samples must have the\n"
    "                       model's input shape, or be flat rows of as many values\n"
    "  --format F           idx, hdf5 or csv, when the file name does not say\n"
    "  --labels FILE        IDX: the labels file of the --input images (optional)\n"
    "  --label-column NAME  CSV: the label column (default: the training data's, else label;\n"
    "                       used when the file has it)\n"
    "  --x NAME, --y NAME   HDF5: the dataset names (default: the training data's, else x and\n"
    "                       y; y used when the file has it)\n"
    "  -o, --output FILE    write the predictions to FILE.h5 (datasets probabilities, labels,\n"
    "                       label_names) or FILE.csv (columns label,label_name,p_<name>...);\n"
    "                       regression: predictions. Without -o they go to standard output as\n"
    "                       CSV, and the summary and metrics lines to standard error\n"
    "  --batch-size N       samples per forward pass (default 256)\n"
    "  --device D           cpu (default), cuda (the first visible GPU; an error without one)\n"
    "                       or auto (cuda when kiln has CUDA and a GPU is visible)\n"
    "  --threads N          CPU threads for BLAS and for kiln's own loops (default 0: Slurm's\n"
    "                       cpus-per-task, else every core); kiln's loops give the same\n"
    "                       bits for any N, OpenBLAS's may differ in the last bits\n"
    "  --quiet              no progress or summary lines, only the loss and accuracy\n"
    "  -h, --help           show this help\n"
    "\n"
    "SIGTERM, SIGINT or SIGUSR1 ends it at once, whatever it is doing, leaving no partial\n"
    "output file.\n"
    "\n"
    "exit status: 0 done, 1 error, 2 usage error, 75 stopped by a signal\n";

typedef struct predict_opts {
    const char *model, *output;
    kl_data_source src;
    int64_t batch;
    int threads; /* 0: kl_launch_threads */
    kl_train_device device;
    bool quiet;
} predict_opts;

static int parse_format(const char *v, kl_data_format *f)
{
    if (!strcmp(v, "idx"))
        *f = KL_DATA_IDX;
    else if (!strcmp(v, "hdf5") || !strcmp(v, "h5"))
        *f = KL_DATA_HDF5;
    else if (!strcmp(v, "csv"))
        *f = KL_DATA_CSV;
    else
        return kl__cli_usage_error("predict", "--format '%s': use idx, hdf5 or csv", v);
    return 0;
}

static int parse_batch(const char *v, int64_t *batch)
{
    long long n;
    if (!kl__cli_int(v, 1, 1 << 20, &n))
        return kl__cli_usage_error("predict", "--batch-size '%s': give a number from 1 to %d", v,
                                   1 << 20);
    *batch = n;
    return 0;
}

static int parse_threads(const char *v, int *threads)
{
    long long n;
    if (!kl__cli_int(v, 0, 4096, &n))
        return kl__cli_usage_error("predict", "--threads '%s': give a number from 0 to 4096", v);
    *threads = (int)n;
    return 0;
}

static int parse_device(const char *v, kl_train_device *d)
{
    int k = kl_train_device_parse(v);
    if (k < 0)
        return kl__cli_usage_error("predict", "--device '%s': use cpu, cuda or auto", v);
    *d = (kl_train_device)k;
    return 0;
}

/* 0 to go on, -1 after printing the help, else the exit status of a usage error. */
static int parse(int argc, char **argv, predict_opts *o)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(predict_help, stdout);
            return -1;
        }
    static const char *const valued[] = {"--input",      "--format", "--labels", "--label-column",
                                         "--x",          "--y",      "-o",       "--output",
                                         "--batch-size", "--device", "--threads"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        for (size_t k = 0; k < sizeof valued / sizeof *valued; k++)
            if (!strcmp(a, valued[k])) {
                if (i + 1 >= argc)
                    return kl__cli_usage_error("predict", "%s needs a value", a);
                v = argv[++i];
            }
        int rc = 0;
        if (!strcmp(a, "--input"))
            o->src.path = (char *)v;
        else if (!strcmp(a, "--format"))
            rc = parse_format(v, &o->src.format);
        else if (!strcmp(a, "--labels"))
            o->src.labels = (char *)v;
        else if (!strcmp(a, "--label-column"))
            o->src.label_column = (char *)v;
        else if (!strcmp(a, "--x"))
            o->src.x_dataset = (char *)v;
        else if (!strcmp(a, "--y"))
            o->src.y_dataset = (char *)v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            o->output = v;
        else if (!strcmp(a, "--batch-size"))
            rc = parse_batch(v, &o->batch);
        else if (!strcmp(a, "--threads"))
            rc = parse_threads(v, &o->threads);
        else if (!strcmp(a, "--device"))
            rc = parse_device(v, &o->device);
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
            o->quiet = true;
        else if (a[0] == '-' && a[1])
            return kl__cli_usage_error("predict", "unknown option '%s'", a);
        else if (o->model)
            return kl__cli_usage_error("predict", "one model please, got '%s' and '%s'", o->model,
                                       a);
        else
            o->model = a;
        if (rc)
            return rc;
    }
    if (!o->model)
        return kl__cli_usage_error("predict", "which model? e.g. kiln predict model.h5 --input "
                                              "test.csv");
    if (!o->src.path)
        return kl__cli_usage_error("predict", "what to score? give --input FILE");
    kl_data_format f = o->src.format ? o->src.format : kl_predict_input_format(o->src.path);
    if (f == KL_DATA_NONE)
        return kl__cli_usage_error("predict",
                                   "cannot tell the format of '%s' from its name; give --format "
                                   "idx, hdf5 or csv",
                                   o->src.path);
    if (o->output && !kl_predict_output_named(o->output))
        return kl__cli_usage_error("predict",
                                   "-o %s: name the predictions file .h5, .hdf5 or .csv (it "
                                   "says the format), or leave -o out for CSV on standard output",
                                   o->output);
    if (o->src.labels && f != KL_DATA_IDX)
        return kl__cli_usage_error("predict", "--labels is for IDX inputs; CSV and HDF5 files "
                                              "carry their answers (--label-column, --y)");
    return 0;
}

/* The progress line: redrawn with \r on a terminal, a plain line every 10 s otherwise. */
typedef struct progress {
    bool on, tty;
    double start, last;
} progress;

static void progress_show(progress *p, int64_t done, int64_t n, bool final)
{
    double t = kl_now();
    if (!p->on || (!final && t - p->last < (p->tty ? 0.2 : 10.0)) || (final && !p->tty))
        return;
    p->last = t;
    double rate = t > p->start ? (double)done / (t - p->start) : 0;
    if (p->tty)
        fprintf(stderr, "\r\033[Kpredict: %lld/%lld samples  %.0f samples/s%s", (long long)done,
                (long long)n, rate, final ? "\n" : "");
    else
        fprintf(stderr, "predict: %lld/%lld samples  %.0f samples/s\n", (long long)done,
                (long long)n, rate);
}

/* Scores d in batches: out (n, outputs), classes (n) and, with answers, score. */
static kl_status score_all(kl_modelfile *mf, const kl_dataset *d, int64_t batch, bool quiet,
                           float *out, int32_t *classes, kl_modelfile_score *score, double *seconds,
                           kl_error *err)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    int64_t n = d->x->shape.d[0], f = s->features, k = s->outputs;
    size_t yb = s->task == KL_TASK_CLASSIFICATION ? sizeof(int32_t) : (size_t)k * sizeof(float);
    progress p = {.on = !quiet, .tty = isatty(2), .start = kl_now()};
    p.last = p.start;
    kl_status st = KL_OK;
    for (int64_t i = 0; i < n && st == KL_OK; i += batch) {
        int64_t b = n - i < batch ? n - i : batch;
        const float *x = kl_f32(d->x) + i * f;
        st = d->y ? kl_modelfile_evaluate(mf, x, (const char *)d->y->data + (size_t)i * yb, b,
                                          out + i * k, classes + i, score, err)
                  : kl_modelfile_predict(mf, x, b, out + i * k, classes + i, err);
        if (st != KL_OK && err) {
            /* Sample numbers in the message count from this batch's first sample. */
            char why[KL_ERROR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            st = kl_error_set(err, st, "%s: %s, in the batch from sample %lld", d->name, why,
                              (long long)i);
        }
        progress_show(&p, i + b, n, i + b >= n);
        kl_stop_test_point("predict-score", 0, -1);
    }
    *seconds = kl_now() - p.start;
    return st;
}

static void print_metrics(FILE *f, const kl_modelfile *mf, const kl_modelfile_score *sc)
{
    double loss, acc, mae;
    kl_modelfile_score_means(mf, sc, &loss, &acc, &mae);
    if (kl_modelfile_sig(mf)->task == KL_TASK_CLASSIFICATION)
        fprintf(f, "loss %.9g  accuracy %.9g (%lld of %lld)\n", loss, acc, (long long)sc->hits,
                (long long)sc->n);
    else
        fprintf(f, "loss %.9g  mae %.9g (%lld samples)\n", loss, mae, (long long)sc->n);
}

static int fail(const kl_error *err)
{
    fprintf(stderr, "kiln predict: %s\n", err->msg);
    return 1;
}

static int predict(const predict_opts *o)
{
    kl_error err = {0};
    kl_modelfile *mf = NULL;
    kl_dataset d = {0};
    float *out = NULL;
    int32_t *classes = NULL;
    int rc = 1;
    kl_device_choice dev;
    int threads = o->threads > 0 ? o->threads : kl_launch_threads(1);
    openblas_set_num_threads(threads);
    kl_status st = kl_device_pick(o->device, 0, 1, false, &dev, &err);
    if (st == KL_OK)
        st = kl_modelfile_load_on(o->model, o->batch, &dev, &mf, &err);
    if (st == KL_OK)
        st = kl_modelfile_set_threads(mf, threads, &err);
    if (st == KL_OK)
        kl_stop_test_point("predict-read", 0, -1);
    if (st != KL_OK || kl_predict_read_input(mf, &o->src, &d, &err) != KL_OK) {
        rc = fail(&err);
        goto out;
    }
    int64_t n = d.x->shape.d[0], k = kl_modelfile_sig(mf)->outputs;
    out = malloc((size_t)(n * k) * sizeof *out);
    classes = malloc((size_t)n * sizeof *classes);
    if (!out || !classes) {
        fprintf(stderr, "kiln predict: out of memory for the predictions of %lld samples\n",
                (long long)n);
        goto out;
    }
    kl_modelfile_score sc = {0};
    double secs = 0;
    char dev_name[320];
    kl_device_describe(&dev, dev_name, sizeof dev_name);
    if (score_all(mf, &d, o->batch, o->quiet, out, classes, &sc, &secs, &err) != KL_OK) {
        rc = fail(&err);
        goto out;
    }
    /* Without -o standard output carries the predictions alone. */
    FILE *say = o->output ? stdout : stderr;
    if (!o->quiet)
        fprintf(say, "scored %lld samples of %s in %.2f s (%.0f samples/s, batch %lld, %s)\n",
                (long long)n, o->src.path, secs, secs > 0 ? (double)n / secs : 0.0,
                (long long)o->batch, dev_name);
    if (d.y)
        print_metrics(say, mf, &sc);
    if (!o->output && kl_predict_write_csv(stdout, mf, out, classes, n, &err) != KL_OK) {
        rc = fail(&err);
        goto out;
    }
    if (o->output) {
        /* The CSV writer's temporary, named as every atomic write's (HDF5 ones register
         * themselves): a stop while it is written removes it. */
        char tmp[PATH_MAX];
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->output, (long)getpid()) < sizeof tmp)
            kl_stop_remove_on_quit(tmp);
        if (kl_predict_write(mf, o->output, o->src.path, out, classes, n, &err)) {
            rc = fail(&err);
            goto out;
        }
        if (!o->quiet)
            printf("wrote %s\n", o->output);
    }
    rc = 0;
out:
    free(out);
    free(classes);
    kl_dataset_free(&d);
    kl_modelfile_free(mf);
    return rc;
}

int kl__cli_predict(int argc, char **argv)
{
    predict_opts o = {.batch = 256, .device = KL_TRAIN_DEVICE_CPU};
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    /* Nothing here is worth saving: a stop ends it at once, in reading, scoring or writing. */
    kl_stop_catch_signals();
    kl_stop_quit_begin("kiln predict", "while scoring");
    rc = predict(&o);
    kl_stop_quit_end();
    return rc;
}
