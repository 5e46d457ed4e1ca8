/* `kiln predict`'s files (include/kiln/predict_io.h): input files (IDX, HDF5, CSV) checked
 * against a model file's signature, with or without answers, and the predictions as HDF5 or CSV.
 * Inputs with answers go through the training loaders (kl_dataset_load), which need labels; the
 * label-less readers here cover what those cannot: IDX images alone, HDF5 without y, CSV without
 * a label column. They refuse the same things with the same kind of message (the file and the
 * record, NaN and Inf included). */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/ckpt.h"
#include "kiln/predict_io.h"
#include "runtime/csv.h"
#include "runtime/file.h"
#include "runtime/h5.h"
#include "trainers/data_impl.h"

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

kl_data_format kl_predict_input_format(const char *path)
{
    if (ends_with(path, ".gz") || ends_with(path, "-ubyte") || ends_with(path, ".idx"))
        return KL_DATA_IDX;
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5"))
        return KL_DATA_HDF5;
    if (ends_with(path, ".csv"))
        return KL_DATA_CSV;
    return KL_DATA_NONE;
}

/* ---- HDF5 x without y ---- */

static kl_status h5_read_x(hid_t file, const char *path, const char *name, kl_tensor **out,
                           kl_error *err)
{
    char *format = NULL;
    if (!kl__h5_exists(file, name)) {
        bool kiln = kl__h5_get_str(file, "format", &format) > 0 && strncmp(format, "kiln-", 5) == 0;
        kl_status st =
            kiln ? kl_error_set(err, KL_EFORMAT,
                                "%s is a %s file, not input data: it has no dataset "
                                "'%s'",
                                path, format, name)
                 : kl_error_set(err, KL_EFORMAT,
                                "%s: no dataset '%s' (the inputs); name it with --x", path, name);
        free(format);
        return st;
    }
    return kl__hdf5_read_x(file, path, name, out, err);
}

/* Opens path as HDF5: the file id, or < 0 with err set. */
static hid_t h5_open(const char *path, kl_error *err)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        kl_error_set(err, KL_EFORMAT, "%s: not an HDF5 file (or a damaged one)", path);
    return f;
}

/* Whether the HDF5 file has dataset name; -1 when it is not an HDF5 file. */
static int h5_has(const char *path, const char *name)
{
    kl__h5_quiet q = kl__h5_quiet_begin();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = f < 0 ? -1 : kl__h5_exists(f, name);
    kl__h5_close(f, H5Fclose);
    kl__h5_quiet_end(q);
    return rc;
}

static kl_status h5_x(const char *path, const char *name, kl_tensor **out, kl_error *err)
{
    kl__h5_quiet q = kl__h5_quiet_begin();
    hid_t f = h5_open(path, err);
    kl_status st = f < 0 ? KL_EFORMAT : h5_read_x(f, path, name, out, err);
    kl__h5_close(f, H5Fclose);
    kl__h5_quiet_end(q);
    return st;
}

/* ---- CSV without a label column ---- */

typedef struct csv {
    const char *path;
    char *text;
    size_t len, pos, ncols;
    char **names, **fields;
    int64_t line; /* of the header, then of the row being read (1-based) */
} csv;

static kl_status csv_header(csv *c, kl_error *err)
{
    return kl__csv_header(c->text, c->len, &c->pos, &c->line, c->path, "a CSV input", &c->names,
                          &c->fields, &c->ncols, err);
}

static kl_status csv_rows(csv *c, kl_tensor **out, kl_error *err)
{
    int64_t n = 0, r = 0, nc = (int64_t)c->ncols;
    kl_status st = kl__csv_count_rows(c->text, c->len, c->pos, c->line, c->ncols, c->path, &n, err);
    if (st != KL_OK)
        return st;
    if (n == 0)
        return kl_error_set(err, KL_EFORMAT, "%s: a header but no data rows", c->path);
    if ((st = kl_dims_check(2, (int64_t[]){n, nc}, sizeof(float), c->path, NULL, err)) != KL_OK)
        return st;
    kl_tensor *x = kl_tensor_new(KL_F32, KL_SHAPE(n, nc), err);
    st = x ? KL_OK : (err ? err->status : KL_ENOMEM);
    char *line;
    while (st == KL_OK && (line = kl__csv_next_line(c->text, c->len, &c->pos))) {
        c->line++;
        if (kl__csv_blank(line))
            continue;
        if ((st = kl__data_stop_check(c->path, err)) != KL_OK)
            break;
        KL_ASSERT(r < n && kl__csv_count_fields(line) == c->ncols);
        kl__csv_split(line, c->fields, c->ncols);
        for (size_t k = 0; st == KL_OK && k < c->ncols; k++) {
            double v;
            if (!kl__csv_number(c->fields[k], &v))
                st = kl_error_set(err, KL_EFORMAT,
                                  "%s:%lld: column '%s': '%s' is not a finite number (NaN, Inf, "
                                  "empty fields and values past 3.4e38, float's range, are "
                                  "refused)",
                                  c->path, (long long)c->line, c->names[k], c->fields[k]);
            else
                kl_f32(x)[r * nc + (int64_t)k] = (float)v;
        }
        r++;
    }
    if (st != KL_OK) {
        kl_tensor_free(x);
        return st;
    }
    *out = x;
    return KL_OK;
}

/* Reads the CSV's header; with x, also every row as features. *has is set to whether a column
 * is named label_column. */
static kl_status csv_read(const char *path, const char *label_column, bool *has, kl_tensor **x,
                          kl_error *err)
{
    csv c = {.path = path};
    c.text = kl__file_read_polled(path, "CSV file", kl__data_stop_check, &c.len, err);
    kl_status st = c.text ? KL_OK : (err ? err->status : KL_EIO);
    if (st == KL_OK)
        st = csv_header(&c, err);
    *has = false;
    for (size_t k = 0; st == KL_OK && k < c.ncols; k++)
        *has = *has || strcmp(c.names[k], label_column) == 0;
    if (st == KL_OK && x)
        st = csv_rows(&c, x, err);
    free(c.names);
    free(c.fields);
    free(c.text);
    return st;
}

/* ---- checks against the model ---- */

/* s without its size-1 axes. */
static kl_shape squeeze(kl_shape s)
{
    kl_shape o = {0};
    for (int i = 0; i < s.ndim; i++)
        if (s.d[i] != 1)
            o.d[o.ndim++] = s.d[i];
    return o;
}

static kl_status fit_shape(const kl_modelfile *mf, const char *path, kl_tensor *x, kl_error *err)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    kl_shape per = {.ndim = x->shape.ndim - 1};
    for (int i = 1; i < x->shape.ndim; i++)
        per.d[i - 1] = x->shape.d[i];
    kl_shape a = squeeze(per), b = squeeze(s->input);
    bool flat = per.ndim == 1 && per.d[0] == s->features;
    if (!flat && !kl_shape_eq(&a, &b)) {
        char have[96], want[96];
        return kl_error_set(err, KL_ESHAPE,
                            "%s has samples of shape %s, but the model %s takes input of shape %s "
                            "(%lld values per sample)",
                            path, kl_shape_str(&per, have, sizeof have), kl_modelfile_path(mf),
                            kl_shape_str(&s->input, want, sizeof want), (long long)s->features);
    }
    int64_t n = x->shape.d[0];
    x->shape.ndim = s->input.ndim + 1;
    x->shape.d[0] = n;
    for (int i = 0; i < s->input.ndim; i++)
        x->shape.d[i + 1] = s->input.d[i];
    return KL_OK;
}

static kl_status check_answers(const kl_modelfile *mf, const kl_dataset *d, const char *what,
                               kl_error *err)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    int64_t n = d->y->shape.d[0];
    if (s->task == KL_TASK_REGRESSION) {
        int64_t t = kl_numel(d->y) / (n > 0 ? n : 1);
        if (t != s->outputs)
            return kl_error_set(err, KL_ESHAPE,
                                "%s has %lld regression targets per sample, but the model %s "
                                "predicts %d",
                                what, (long long)t, kl_modelfile_path(mf), s->outputs);
        return KL_OK;
    }
    for (int64_t i = 0; i < n; i++)
        if (kl_i32(d->y)[i] >= s->outputs)
            return kl_error_set(err, KL_ERANGE,
                                "%s: label %d of record %lld (counting from 0) is out of range: "
                                "the model %s has %d classes (labels 0..%d); check that the "
                                "labels belong to this model's data",
                                what, (int)kl_i32(d->y)[i], (long long)i, kl_modelfile_path(mf),
                                s->outputs, s->outputs - 1);
    return KL_OK;
}

/* Fills in the dataset and column names src leaves open: those of the source the model was
 * trained on when it had this format (data.train's x_dataset, y_dataset, label_column), else x,
 * y and label. */
static void default_names(const kl_modelfile *mf, kl_data_source *src)
{
    const kl_config *cfg = kl_modelfile_config(mf); /* NULL for an ONNX or XGBoost model */
    const kl_data_source *t = cfg ? &cfg->data.train : &(kl_data_source){0};
    bool same = cfg && t->format == src->format;
    if (!src->x_dataset)
        src->x_dataset = same && t->x_dataset ? t->x_dataset : (char *)"x";
    if (!src->y_dataset)
        src->y_dataset = same && t->y_dataset ? t->y_dataset : (char *)"y";
    if (!src->label_column)
        src->label_column = same && t->label_column ? t->label_column : (char *)"label";
}

/* Whether the input carries answers: IDX with a labels file, HDF5 with its y dataset, CSV with
 * its label column; a y dataset or label column named on the command line (in `named`) must be
 * there, and the loader says so when it is not. */
static kl_status has_answers(const kl_data_source *src, const kl_data_source *named, bool *yes,
                             kl_error *err)
{
    *yes = false;
    switch (src->format) {
    case KL_DATA_IDX:
        *yes = src->labels && *src->labels;
        return KL_OK;
    case KL_DATA_HDF5:
        *yes = named->y_dataset || h5_has(src->path, src->y_dataset) > 0;
        return KL_OK;
    case KL_DATA_CSV:
        if (named->label_column) {
            *yes = true;
            return KL_OK;
        }
        return csv_read(src->path, src->label_column, yes, NULL, err);
    case KL_DATA_NONE:
        break;
    }
    return kl_error_set(err, KL_EINVAL,
                        "cannot tell the format of %s from its name; give --format idx, hdf5 or "
                        "csv",
                        src->path);
}

kl_status kl_predict_read_input(const kl_modelfile *mf, const kl_data_source *in, kl_dataset *out,
                                kl_error *err)
{
    memset(out, 0, sizeof *out);
    kl_data_source src = *in;
    if (src.format == KL_DATA_NONE)
        src.format = kl_predict_input_format(src.path);
    if (access(src.path, R_OK) != 0)
        return kl_error_set(err, KL_EIO, "cannot open %s: %s", src.path, strerror(errno));
    default_names(mf, &src);
    bool answers, has;
    kl_status st = has_answers(&src, in, &answers, err);
    if (st == KL_OK && answers && !kl_modelfile_config(mf)) /* an ONNX or XGBoost model */
        st = kl_error_set(
            err, KL_EUNSUPPORTED,
            "%s comes with answers (--labels, a y dataset or a label column), and "
            "scoring an %s model against answers is not supported yet; give the "
            "inputs alone",
            src.path,
            kl_modelfile_model(mf) || strstr(kl_modelfile_path(mf), ".onnx") ? "ONNX" : "XGBoost");
    if (st == KL_OK && answers) {
        st = kl_dataset_load(&src, kl_modelfile_sig(mf)->task, out, err);
    } else if (st == KL_OK) {
        st = src.format == KL_DATA_IDX ? kl__idx_read_images(src.path, &out->x, err)
             : src.format == KL_DATA_HDF5
                 ? h5_x(src.path, src.x_dataset, &out->x, err)
                 : csv_read(src.path, src.label_column, &has, &out->x, err);
        if (st == KL_OK && !(out->name = strdup(src.path)))
            st = kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    if (st == KL_OK)
        st = fit_shape(mf, src.path, out->x, err);
    if (st == KL_OK && out->y)
        st = check_answers(mf, out, src.format == KL_DATA_IDX ? src.labels : src.path, err);
    if (st != KL_OK)
        kl_dataset_free(out);
    return st;
}

/* ---- predictions ---- */

static bool put_label_names(int64_t f, const kl_modelfile *mf)
{
    int n;
    const char *const *names = kl_modelfile_labels(mf, &n);
    return kl__h5_put_strings(f, "label_names", names, n);
}

static kl_status write_h5(const kl_modelfile *mf, const char *path, const char *input,
                          const float *out, const int32_t *classes, int64_t n, kl_error *err)
{
    char tmp[PATH_MAX];
    int64_t f = kl_ckpt_create(path, KL_PREDICTIONS_FORMAT, KL_PREDICTIONS_FORMAT_VERSION, tmp,
                               sizeof tmp, err);
    if (f < 0)
        return err ? err->status : KL_EIO;
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    int64_t dims[2] = {n, s->outputs};
    kl__h5_quiet q = kl__h5_quiet_begin();
    bool ok = kl__h5_put_str(f, "model", kl_modelfile_path(mf)) &&
              kl__h5_put_str(f, "input", input) && kl__h5_put_f32(f, s->output_name, out, 2, dims);
    if (ok && s->task == KL_TASK_CLASSIFICATION)
        ok = kl__h5_put_i32(f, "labels", classes, 1, &n) && put_label_names(f, mf);
    kl__h5_quiet_end(q);
    kl_status st = ok ? KL_OK : kl_error_set(err, KL_EIO, "cannot write %s (disk full?)", tmp);
    return kl_ckpt_commit(f, tmp, path, st == KL_OK, err);
}

bool kl_predict_output_named(const char *path)
{
    return ends_with(path, ".h5") || ends_with(path, ".hdf5") || ends_with(path, ".csv");
}

kl_status kl_predict_write_csv(FILE *f, const kl_modelfile *mf, const float *out,
                               const int32_t *classes, int64_t n, kl_error *err)
{
    const kl_modelfile_signature *s = kl_modelfile_sig(mf);
    bool cls = s->task == KL_TASK_CLASSIFICATION;
    if (cls) {
        fputs("label,label_name", f);
        for (int k = 0; k < s->outputs; k++) {
            fputc(',', f);
            kl__csv_put_field(f, "p_", kl_modelfile_label(mf, k));
        }
    } else if (s->outputs == 1) {
        fputs("prediction", f);
    } else {
        for (int k = 0; k < s->outputs; k++)
            fprintf(f, "%sprediction_%d", k ? "," : "", k);
    }
    fputc('\n', f);
    for (int64_t i = 0; i < n; i++) {
        if (cls) {
            fprintf(f, "%d,", (int)classes[i]);
            kl__csv_put_field(f, "", kl_modelfile_label(mf, classes[i]));
        }
        for (int k = 0; k < s->outputs; k++)
            fprintf(f, "%s%.9g", cls || k ? "," : "", (double)out[i * s->outputs + k]);
        fputc('\n', f);
    }
    return fflush(f) == 0 && !ferror(f)
               ? KL_OK
               : kl_error_set(err, KL_EIO, "cannot write the predictions: %s", strerror(errno));
}

static kl_status write_csv(const kl_modelfile *mf, const char *path, const float *out,
                           const int32_t *classes, int64_t n, kl_error *err)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return kl_error_set(err, KL_EINVAL, "%s: the path is too long", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return kl_error_set(err, KL_EIO, "cannot create %s: %s", tmp, strerror(errno));
    bool ok = kl_predict_write_csv(f, mf, out, classes, n, err) == KL_OK;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return kl_error_set(err, KL_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return KL_OK;
}

kl_status kl_predict_write(const kl_modelfile *mf, const char *path, const char *input,
                           const float *out, const int32_t *classes, int64_t n, kl_error *err)
{
    if (ends_with(path, ".h5") || ends_with(path, ".hdf5"))
        return write_h5(mf, path, input, out, classes, n, err);
    if (ends_with(path, ".csv"))
        return write_csv(mf, path, out, classes, n, err);
    return kl_error_set(err, KL_EINVAL,
                        "%s: name the predictions file .h5, .hdf5 or .csv (it says the format)",
                        path);
}
