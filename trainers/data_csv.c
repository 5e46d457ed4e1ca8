/* CSV data sets: a header row naming the columns, one sample per line, comma-separated numbers.
 * The label column (by name) becomes y, every other column a feature of x, f32 (N, features).
 * The file is read whole, its rows counted and their fields checked, then parsed into tensors of
 * exactly that size; every error names file:line and the column.
 * Called by kl_dataset_load (trainers/data.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/file.h"
#include "trainers/data_impl.h"

typedef struct csv_file {
    const char *path;
    char *text; /* the whole file, NUL-terminated */
    size_t len;
} csv_file;

typedef struct csv_layout {
    char **names;  /* header fields, pointing into the text */
    char **fields; /* scratch for one row */
    size_t ncols, label;
    int64_t header_line; /* 1-based */
} csv_layout;

static kl_status parse_row(const csv_file *f, const csv_layout *lay, int64_t line, kl_task task,
                           float *x, void *y, kl_error *err)
{
    size_t k = 0;
    for (size_t c = 0; c < lay->ncols; c++) {
        double v;
        if (!kl__csv_number(lay->fields[c], &v))
            return kl_error_set(err, KL_EFORMAT,
                                "%s:%lld: column '%s': '%s' is not a finite number (NaN, Inf, "
                                "empty fields and values past 3.4e38, float's range, are refused)",
                                f->path, (long long)line, lay->names[c], lay->fields[c]);
        if (c != lay->label) {
            x[k++] = (float)v;
            continue;
        }
        if (task == KL_TASK_REGRESSION) {
            *(float *)y = (float)v;
        } else if (v < 0 || v != floor(v) || v >= INT32_MAX) {
            return kl_error_set(err, KL_ERANGE,
                                "%s:%lld: label column '%s': '%s' is not a class label; labels "
                                "must be integers 0, 1, ... (or set task: regression)",
                                f->path, (long long)line, lay->names[c], lay->fields[c]);
        } else {
            *(int32_t *)y = (int32_t)v;
        }
    }
    return KL_OK;
}

static kl_status read_header(csv_file *f, size_t *pos, const char *label_column, csv_layout *lay,
                             kl_error *err)
{
    kl_status st = kl__csv_header(f->text, f->len, pos, &lay->header_line, f->path,
                                  "a CSV data set", &lay->names, &lay->fields, &lay->ncols, err);
    if (st != KL_OK)
        return st;
    lay->label = lay->ncols;
    for (size_t c = 0; c < lay->ncols; c++)
        if (strcmp(lay->names[c], label_column) == 0)
            lay->label = c;
    if (lay->label == lay->ncols)
        return kl_error_set(err, KL_EFORMAT,
                            "%s:%lld: no column named '%s' in the header (first column '%s'); "
                            "name the label column with data.*.label_column or --label-column",
                            f->path, (long long)lay->header_line, label_column, lay->names[0]);
    if (lay->ncols < 2)
        return kl_error_set(err, KL_EFORMAT, "%s: only the label column; no features", f->path);
    return KL_OK;
}

static kl_status parse(csv_file *f, const char *label_column, kl_task task, kl_dataset *out,
                       csv_layout *lay, kl_error *err)
{
    size_t pos = 0;
    kl_status st = read_header(f, &pos, label_column, lay, err);
    if (st != KL_OK)
        return st;
    int64_t n = 0, nf = (int64_t)lay->ncols - 1;
    st = kl__csv_count_rows(f->text, f->len, pos, lay->header_line, lay->ncols, f->path, &n, err);
    if (st != KL_OK)
        return st;
    if (n == 0)
        return kl_error_set(err, KL_EFORMAT, "%s: a header but no data rows", f->path);
    if ((st = kl_dims_check(2, (int64_t[]){n, nf}, sizeof(float), f->path, NULL, err)) != KL_OK)
        return st;
    out->x = kl_tensor_new(KL_F32, KL_SHAPE(n, nf), err);
    out->y = !out->x                          ? NULL
             : task == KL_TASK_CLASSIFICATION ? kl_tensor_new(KL_I32, KL_SHAPE(n), err)
                                              : kl_tensor_new(KL_F32, KL_SHAPE(n, 1), err);
    if (!out->y)
        return err ? err->status : KL_ENOMEM;
    int64_t line_no = lay->header_line, r = 0;
    char *line;
    while ((line = kl__csv_next_line(f->text, f->len, &pos))) {
        line_no++;
        if (kl__csv_blank(line))
            continue;
        if ((st = kl__data_stop_check(f->path, err)) != KL_OK)
            return st;
        KL_ASSERT(r < n && kl__csv_count_fields(line) == lay->ncols);
        kl__csv_split(line, lay->fields, lay->ncols);
        void *y = task == KL_TASK_CLASSIFICATION ? (void *)(kl_i32(out->y) + r)
                                                 : (void *)(kl_f32(out->y) + r);
        if ((st = parse_row(f, lay, line_no, task, kl_f32(out->x) + r * nf, y, err)) != KL_OK)
            return st;
        r++;
    }
    int32_t max = 0;
    if (task == KL_TASK_CLASSIFICATION &&
        (st = kl__check_labels(kl_i32(out->y), r, 0, f->path, &max, err)) != KL_OK)
        return st;
    out->classes = task == KL_TASK_CLASSIFICATION ? max + 1 : 0;
    return kl__dataset_set_name(out, f->path, err);
}

kl_status kl__csv_load(const char *path, const char *label_column, kl_task task, kl_dataset *out,
                       kl_error *err)
{
    csv_file f = {.path = path};
    csv_layout lay = {0};
    memset(out, 0, sizeof *out);
    f.text = kl__file_read_polled(path, "CSV file", kl__data_stop_check, &f.len, err);
    kl_status st = f.text ? KL_OK : (err ? err->status : KL_EIO);
    if (st == KL_OK)
        st = parse(&f, label_column, task, out, &lay, err);
    free(lay.names);
    free(lay.fields);
    free(f.text);
    if (st != KL_OK)
        kl_dataset_free(out);
    return st;
}
