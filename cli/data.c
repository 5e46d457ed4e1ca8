/* kiln data: `info` prints shapes, classes and statistics of data sets, `convert` writes one as a
 * kiln-dataset HDF5 file. Parsing and printing only; the loaders are trainers/data*.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "kiln/data.h"

static const char data_help[] =
    "usage: kiln data info SOURCE... [options]\n"
    "       kiln data convert SOURCE -o OUT.h5 [options]\n"
    "\n"
    "info prints each source's shapes, classes with counts, and min/max/mean/std; convert reads\n"
    "one source, checks it record by record, and writes it as a kiln-dataset HDF5 file\n"
    "(docs/data.md) that data.train: {format: hdf5, path: OUT.h5} reads.\n"
    "\n"
    "SOURCE is one of:\n"
    "  fashion-mnist[:train|:test]  Debian's dataset-fashion-mnist (IDX files); mnist in the\n"
    "                               same layout (Debian has no package for it: put its files\n"
    "                               in /usr/share/datasets/mnist or --dir)\n"
    "  FILE.h5, FILE.hdf5           an HDF5 file with datasets x and y (see --x, --y)\n"
    "  FILE.csv                     a CSV file with a header row and a label column\n"
    "  IMAGES --labels LABELS       IDX images and labels files, gzip or raw\n"
    "\n"
    "options:\n"
    "  --labels FILE        the IDX labels file of the IDX images SOURCE before it\n"
    "  --label-column NAME  CSV: the label column (default: label)\n"
    "  --x NAME, --y NAME   HDF5: the dataset names (default: x and y)\n"
    "  --task T             classification (default) or regression\n"
    "  --dir DIR            where fashion-mnist/mnist live (default: /usr/share/datasets/NAME)\n"
    "  -o, --output FILE    convert: the HDF5 file to write\n"
    "  -h, --help           show this help\n";

typedef struct data_arg {
    const char *source, *labels;
} data_arg;

typedef struct data_opts {
    data_arg *src;
    int nsrc;
    const char *label_column, *x, *y, *dir, *output;
    kl_task task;
} data_opts;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The value of option argv[*i]; NULL (after reporting it) when it is missing. */
static const char *value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc || argv[*i + 1][0] == '-') {
        kl__cli_usage_error("data", "option '%s' needs a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static int parse(int argc, char **argv, data_opts *o)
{
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], **dst = NULL;
        if (strcmp(a, "--labels") == 0) {
            if (o->nsrc == 0)
                return kl__cli_usage_error("data", "--labels must follow its IDX images file");
            dst = &o->src[o->nsrc - 1].labels;
        } else if (strcmp(a, "--label-column") == 0) {
            dst = &o->label_column;
        } else if (strcmp(a, "--x") == 0) {
            dst = &o->x;
        } else if (strcmp(a, "--y") == 0) {
            dst = &o->y;
        } else if (strcmp(a, "--dir") == 0) {
            dst = &o->dir;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            dst = &o->output;
        } else if (strcmp(a, "--task") == 0) {
            const char *t = value(argc, argv, &i);
            if (!t)
                return KL__CLI_EXIT_USAGE;
            if (strcmp(t, "classification") != 0 && strcmp(t, "regression") != 0)
                return kl__cli_usage_error("data", "--task '%s': use classification or regression",
                                           t);
            o->task = t[0] == 'r' ? KL_TASK_REGRESSION : KL_TASK_CLASSIFICATION;
            continue;
        } else if (a[0] == '-' && a[1] != '\0') {
            return kl__cli_usage_error("data", "unknown option '%s'", a);
        } else {
            o->src[o->nsrc++] = (data_arg){a, NULL};
            continue;
        }
        if (!(*dst = value(argc, argv, &i)))
            return KL__CLI_EXIT_USAGE;
    }
    return 0;
}

/* Splits a built-in name ("fashion-mnist:test") into the data set and the split; 0 when s is not
 * a built-in data set. */
static int builtin_name(const char *s, char *name, size_t len, const char **split)
{
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (!((n == 13 && strncmp(s, "fashion-mnist", n) == 0) ||
          (n == 5 && strncmp(s, "mnist", n) == 0)))
        return 0;
    snprintf(name, len, "%.*s", (int)n, s);
    *split = colon ? colon + 1 : "";
    return 1;
}

typedef struct loaded {
    kl_data_source src;
    char paths[2][512];
} loaded;

/* Loads one source (for a built-in data set, the split `split`, "train" or "t10k"). */
static int load(const data_opts *o, const data_arg *a, const char *builtin, const char *prefix,
                kl_dataset *d)
{
    kl_error err = {0};
    loaded l = {0};
    if (builtin) {
        char def[300];
        snprintf(def, sizeof def, "/usr/share/datasets/%s", builtin);
        const char *dir = o->dir ? o->dir : def;
        struct stat sb;
        if (stat(dir, &sb) != 0) {
            fprintf(stderr, "kiln data: %s: the folder %s does not exist; %s, or give --dir\n",
                    builtin, dir, kl_data_install_hint(builtin));
            return 1;
        }
        snprintf(l.paths[0], sizeof l.paths[0], "%s/%s-images-idx3-ubyte.gz", dir, prefix);
        snprintf(l.paths[1], sizeof l.paths[1], "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
        l.src = (kl_data_source){.format = KL_DATA_IDX, .path = l.paths[0], .labels = l.paths[1]};
    } else if (ends_with(a->source, ".h5") || ends_with(a->source, ".hdf5")) {
        l.src = (kl_data_source){.format = KL_DATA_HDF5,
                                 .path = (char *)a->source,
                                 .x_dataset = (char *)o->x,
                                 .y_dataset = (char *)o->y};
    } else if (ends_with(a->source, ".csv")) {
        l.src = (kl_data_source){.format = KL_DATA_CSV,
                                 .path = (char *)a->source,
                                 .label_column = (char *)o->label_column};
    } else {
        l.src = (kl_data_source){
            .format = KL_DATA_IDX, .path = (char *)a->source, .labels = (char *)a->labels};
    }
    if (kl_dataset_load(&l.src, o->task, d, &err) != KL_OK) {
        fprintf(stderr, "kiln data: %s\n", err.msg);
        return 1;
    }
    return 0;
}

/* Checks one SOURCE and lists the loads it stands for: (builtin name, prefix) pairs. */
static int resolve(const data_arg *a, char *name, size_t len, const char **prefixes, int *n)
{
    const char *split;
    *n = 1;
    if (!builtin_name(a->source, name, len, &split)) {
        name[0] = '\0';
        prefixes[0] = NULL;
        if (!ends_with(a->source, ".h5") && !ends_with(a->source, ".hdf5") &&
            !ends_with(a->source, ".csv") && !a->labels)
            return kl__cli_usage_error("data",
                                       "'%s' is taken for an IDX images file and needs --labels "
                                       "FILE (or give a .h5, .hdf5 or .csv file, or "
                                       "fashion-mnist)",
                                       a->source);
        return 0;
    }
    if (strcmp(split, "train") == 0 || strcmp(split, "test") == 0) {
        prefixes[0] = split[1] == 'r' ? "train" : "t10k";
    } else if (split[0] == '\0') {
        prefixes[0] = "train";
        prefixes[1] = "t10k";
        *n = 2;
    } else {
        return kl__cli_usage_error("data", "'%s': the split is train or test", a->source);
    }
    return 0;
}

static int info(const data_opts *o)
{
    if (o->nsrc == 0)
        return kl__cli_usage_error("data", "info needs at least one SOURCE");
    if (o->output)
        return kl__cli_usage_error("data", "-o is for convert");
    for (int s = 0; s < o->nsrc; s++) {
        char name[32];
        const char *prefixes[2];
        int n, rc = resolve(&o->src[s], name, sizeof name, prefixes, &n);
        if (rc)
            return rc;
    }
    for (int s = 0; s < o->nsrc; s++) {
        char name[32];
        const char *prefixes[2];
        int n;
        resolve(&o->src[s], name, sizeof name, prefixes, &n);
        for (int k = 0; k < n; k++) {
            kl_dataset d;
            if (load(o, &o->src[s], name[0] ? name : NULL, prefixes[k], &d))
                return 1;
            kl_dataset_describe(&d, stdout);
            kl_dataset_free(&d);
        }
    }
    return 0;
}

static int convert(const data_opts *o)
{
    char name[32];
    const char *prefixes[2];
    int n;
    if (o->nsrc == 2 && !o->output)
        return kl__cli_usage_error("data",
                                   "convert takes one SOURCE and writes where -o says: kiln data "
                                   "convert %s -o %s",
                                   o->src[0].source, o->src[1].source);
    if (o->nsrc != 1)
        return kl__cli_usage_error("data", "convert takes one SOURCE, got %d", o->nsrc);
    if (!o->output)
        return kl__cli_usage_error("data", "convert needs -o OUT.h5");
    int rc = resolve(&o->src[0], name, sizeof name, prefixes, &n);
    if (rc)
        return rc;
    if (n != 1)
        return kl__cli_usage_error("data", "convert one split at a time: %s:train or %s:test", name,
                                   name);
    kl_dataset d;
    kl_error err = {0};
    if (load(o, &o->src[0], name[0] ? name : NULL, prefixes[0], &d))
        return 1;
    if (kl_dataset_save_hdf5(&d, o->output, &err) != KL_OK) {
        fprintf(stderr, "kiln data: %s\n", err.msg);
        kl_dataset_free(&d);
        return 1;
    }
    char xs[96];
    printf("wrote %s: %lld samples, x %s", o->output, (long long)d.x->shape.d[0],
           kl_shape_str(&d.x->shape, xs, sizeof xs));
    if (d.y->dtype == KL_I32)
        printf(", %d classes\n", d.classes);
    else
        printf(", %lld regression targets\n", (long long)d.y->shape.d[1]);
    kl_dataset_free(&d);
    return 0;
}

int kl__cli_data(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("%s", data_help);
            return 0;
        }
    if (argc < 2)
        return kl__cli_usage_error("data", "expected 'info' or 'convert'");
    bool is_info = strcmp(argv[1], "info") == 0;
    if (!is_info && strcmp(argv[1], "convert") != 0)
        return kl__cli_usage_error("data", "unknown action '%s'; use info or convert", argv[1]);
    data_opts o = {.task = KL_TASK_CLASSIFICATION};
    o.src = calloc((size_t)argc, sizeof *o.src);
    if (!o.src) {
        fprintf(stderr, "kiln data: out of memory\n");
        return 1;
    }
    int rc = parse(argc, argv, &o);
    if (rc == 0)
        rc = is_info ? info(&o) : convert(&o);
    free(o.src);
    return rc;
}
