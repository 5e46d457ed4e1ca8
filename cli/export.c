/* kiln export: finds the checkpoint (a file, or a run folder's checkpoints/), has
 * kl_modelfile_export write the model file, then loads what it wrote and says what is in it.
 * Parsing and printing only; the model file is runtime/modelfile*.c. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "kiln/modelfile.h"
#include "kiln/modelfile_export.h"
#include "kiln/stop.h"

static const char export_help[] =
    "usage: kiln export CHECKPOINT|RUN_DIR -o MODEL.h5|MODEL.onnx [options]\n"
    "\n"
    "Turns a training checkpoint into a self-contained model file for kiln predict and kiln\n"
    "serve (format kiln-model, docs/formats.md): the model spec and weights, the training\n"
    "data's standardisation, the input/output signature, class names, and reference statistics\n"
    "of the training inputs and outputs (per-feature decile bins and proportions) for drift\n"
    "monitoring. RUN_DIR is a run folder: its checkpoints/final.h5, else its newest\n"
    "checkpoints/*.h5 other than best.h5 (name that file to export the best epoch). The reference "
    "statistics need the training data the checkpoint's config\n"
    "names; without it, pass --no-reference. The file is written atomically.\n"
    "\n"
    "With -o MODEL.onnx (or --format onnx) it writes an ONNX model instead (opset 17,\n"
    "docs/onnx.md) for ONNX Runtime, Triton or kiln itself: the network in inference form with\n"
    "a dynamic batch, the standardisation as Sub/Div nodes at the input, Softmax after a\n"
    "classifier, the task and class names in metadata_props; no reference statistics, so no\n"
    "training data is read. A layer ONNX export cannot express yet (layernorm, gelu) is refused.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE        the model file to write (required)\n"
    "  --format FORMAT          kiln-model or onnx (default: onnx for a .onnx file, else\n"
    "                           kiln-model)\n"
    "  --labels FILE            class names, one a line, class 0 first (default: Fashion-MNIST's\n"
    "                           for data.dataset fashion-mnist, else 0, 1, ...)\n"
    "  --reference-samples N    training samples the reference statistics describe: a random\n"
    "                           subset seeded by train.seed (default 10000)\n"
    "  --no-reference           write no reference statistics (and load no training data)\n"
    "  --quiet                  print nothing on success\n"
    "  -h, --help               show this help\n"
    "\n"
    "SIGTERM, SIGINT or SIGUSR1 ends it at once, whatever it is doing, leaving no partial\n"
    "model file.\n"
    "\n"
    "exit status: 0 done, 1 error, 2 usage error, 75 stopped by a signal\n";

typedef struct export_opts {
    const char *source, *output, *format;
    kl_modelfile_export_options x;
    bool quiet;
} export_opts;

/* 0 to go on, -1 after printing the help, else the exit status of a usage error. */
static int parse(int argc, char **argv, export_opts *o)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(export_help, stdout);
            return -1;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--labels") ||
            !strcmp(a, "--reference-samples") || !strcmp(a, "--format")) {
            if (!has_value)
                return kl__cli_usage_error("export", "%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--labels")) {
                o->x.labels_file = v;
            } else if (!strcmp(a, "--format")) {
                if (strcmp(v, "onnx") != 0 && strcmp(v, "kiln-model") != 0)
                    return kl__cli_usage_error("export", "--format '%s': give kiln-model or onnx",
                                               v);
                o->format = v;
            } else if (!strcmp(a, "--reference-samples")) {
                long long n;
                if (!kl__cli_int(v, 1, LLONG_MAX, &n))
                    return kl__cli_usage_error(
                        "export", "--reference-samples '%s': give a positive number of samples", v);
                o->x.reference_samples = n;
            } else {
                o->output = v;
            }
        } else if (!strcmp(a, "--no-reference")) {
            o->x.no_reference = true;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o->quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return kl__cli_usage_error("export", "unknown option '%s'", a);
        } else if (o->source) {
            return kl__cli_usage_error("export", "one checkpoint please, got '%s' and '%s'",
                                       o->source, a);
        } else {
            o->source = a;
        }
    }
    if (!o->source)
        return kl__cli_usage_error("export", "which checkpoint? e.g. kiln export "
                                             "runs/fashion-mlp -o model.h5");
    if (!o->output)
        return kl__cli_usage_error("export", "where to? give -o MODEL.h5");
    size_t len = strlen(o->output);
    bool dot_onnx = len >= 5 && !strcmp(o->output + len - 5, ".onnx");
    o->x.onnx = o->format ? !strcmp(o->format, "onnx") : dot_onnx;
    if (o->x.onnx && (o->x.no_reference || o->x.reference_samples))
        return kl__cli_usage_error("export",
                                   "%s: an ONNX model carries no reference statistics; drop it",
                                   o->x.no_reference ? "--no-reference" : "--reference-samples");
    if (o->x.no_reference && o->x.reference_samples)
        return kl__cli_usage_error("export", "--reference-samples and --no-reference contradict "
                                             "each other; give one");
    return 0;
}

/* The newest *.h5 in dir but best.h5 (by modification time, then name) into out; false when
 * none. */
static bool newest_h5(const char *dir, char *out, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    struct timespec best = {0};
    bool found = false;
    char path[PATH_MAX];
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        struct stat sb;
        if (n < 4 || strcmp(e->d_name + n - 3, ".h5") != 0 || !strcmp(e->d_name, "best.h5") ||
            (size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path ||
            stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        bool newer = !found || sb.st_mtim.tv_sec > best.tv_sec ||
                     (sb.st_mtim.tv_sec == best.tv_sec && sb.st_mtim.tv_nsec > best.tv_nsec) ||
                     (sb.st_mtim.tv_sec == best.tv_sec && sb.st_mtim.tv_nsec == best.tv_nsec &&
                      strcmp(path, out) > 0);
        if (newer) {
            best = sb.st_mtim;
            snprintf(out, size, "%s", path);
            found = true;
        }
    }
    if (d)
        closedir(d);
    return found;
}

/* The checkpoint a SOURCE names: the file itself, or a run folder's checkpoints/final.h5, else
 * the newest .h5 file in checkpoints/. Returns 0, or 1 after saying what is missing. */
static int find_checkpoint(const char *source, char *out, size_t size)
{
    struct stat sb;
    if (stat(source, &sb) != 0) {
        fprintf(stderr, "kiln export: cannot open %s: %s\n", source, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(out, size, "%s", source);
        return 0;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/checkpoints", source);
    if ((size_t)snprintf(out, size, "%s/final.h5", dir) < size && stat(out, &sb) == 0)
        return 0;
    if (newest_h5(dir, out, size) || newest_h5(source, out, size))
        return 0;
    fprintf(stderr,
            "kiln export: %s has no checkpoint (no checkpoints/final.h5 or checkpoints/*.h5); "
            "kiln train writes checkpoints/final.h5 into a run's folder at the end\n",
            source);
    return 1;
}

static void print_shape(const char *name, const kl_shape *per_sample)
{
    printf("%s FP32 [-1", name);
    for (int i = 0; i < per_sample->ndim; i++)
        printf(", %lld", (long long)per_sample->d[i]);
    printf("]");
}

/* The output's line and, for a classifier, the labels' line, ending in whence. */
static void print_output(const kl_modelfile *mf, const char *whence)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    kl_shape out = KL_SHAPE(s->outputs);
    printf("  output: ");
    print_shape(s->output_name, &out);
    printf("\n");
    if (s->task == KL_TASK_CLASSIFICATION) {
        printf("  labels:");
        for (int k = 0; k < s->outputs; k++)
            printf("%s %s", k ? "," : "", kl_modelfile_label(mf, k));
        printf("%s\n", whence);
    }
}

/* Says what the model file holds, from the file itself as kiln predict will load it. */
static void describe(const kl_modelfile *mf, const char *ckpt)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    const kl_graph *g = kl_modelfile_model(mf)->g;
    int np = kl_graph_num_params(g);
    char sh[96];
    printf("wrote %s (kiln-model) from %s\n", kl_modelfile_path(mf), ckpt);
    printf("  parameters: %zu in %d tensors\n", kl_graph_param_count(g), np);
    for (int i = 0; i < np; i++) {
        const kl_param_info *p = kl_graph_param(g, i);
        printf("    %-24s %s\n", p->name, kl_shape_str(&p->shape, sh, sizeof sh));
    }
    printf("  input:  ");
    print_shape(s->input_name, &s->input);
    printf(", standardised inside (%s)\n", s->nstats == 0   ? "none"
                                           : s->nstats == 1 ? "global mean and std"
                                                            : "per-feature mean and std");
    print_output(mf, "");
    const kl_modelfile_lineage *lin = kl_modelfile_lineage_of(mf);
    if (lin->run)
        printf("  lineage: run %s\n", lin->run);
    const kl_modelfile_reference *r = kl_modelfile_ref(mf);
    if (r)
        printf("  reference: %lld training samples (seed %llu): %lld input features in %d "
               "quantile bins;\n             %s\n",
               (long long)r->samples, (unsigned long long)r->seed, (long long)s->features,
               KL_MODELFILE_BINS,
               s->task == KL_TASK_CLASSIFICATION ? "label and predicted-class proportions"
                                                 : "target and prediction quantile bins");
    else
        printf("  reference: none (--no-reference): serving cannot check this model's inputs "
               "for drift\n");
}

/* Says what the ONNX file holds, from the file as kiln's importer reads it back. */
static void describe_onnx(const kl_modelfile *mf, const char *ckpt)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    printf("wrote %s (ONNX, opset 17) from %s; kiln's importer reads it back as\n",
           kl_modelfile_path(mf), ckpt);
    printf("  input:  ");
    print_shape(s->input_name, &s->input);
    printf(" (raw inputs, as kiln predict takes them)\n");
    print_output(mf, " (metadata_props class_names)");
    printf("  metadata_props: task, class_names (classification), standardisation, "
           "kiln_checkpoint\n");
}

int kl__cli_export(int argc, char **argv)
{
    export_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? 0 : rc;
    char ckpt[PATH_MAX];
    if (find_checkpoint(o.source, ckpt, sizeof ckpt))
        return 1;
    kl_error err = {0};
    kl_modelfile *mf = NULL;
    /* A stop ends it at once, taking the model file's temporary with it (kl_ckpt_create). */
    kl_stop_catch_signals();
    kl_stop_quit_begin("kiln export", "while exporting");
    rc = kl_modelfile_export(ckpt, o.output, &o.x, &err) != KL_OK ||
         kl_modelfile_load(o.output, 1, &mf, &err) != KL_OK;
    kl_stop_quit_end();
    if (rc) {
        fprintf(stderr, "kiln export: %s\n", err.msg);
        return 1;
    }
    if (!o.quiet && o.x.onnx)
        describe_onnx(mf, ckpt);
    else if (!o.quiet)
        describe(mf, ckpt);
    kl_modelfile_free(mf);
    return 0;
}
