/* Checkpoints and the weights layout they share with model files (include/kiln/ckpt.h,
 * docs/formats.md). Writes go to a temporary sibling that is fsynced and renamed over the final
 * path; reads check the format and version first and every object's presence, type and shape
 * before using it, so that a damaged or foreign file is refused with a reason. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln/ckpt.h"
#include "kiln/optim.h"
#include "kiln/stop.h"
#include "kiln/version.h"
#include "runtime/h5.h"

struct kl_ckpt {
    hid_t file;
    char *path;
    char *config;
    int64_t version;
};

/* ---- writing ---- */

int64_t kl_ckpt_create(const char *path, const char *format, int version, char *tmp,
                       size_t tmp_size, kl_error *err)
{
    if ((size_t)snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid()) >= tmp_size) {
        kl_error_set(err, KL_EINVAL, "%s: the path is too long", path);
        return -1;
    }
    kl__h5_quiet q = kl__h5_quiet_begin();
    /* A stop that ends this process in a quit phase (kiln export) takes the file with it. */
    kl_stop_remove_on_quit(tmp);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        kl__h5_quiet_end(q);
        kl_error_set(err, KL_EIO, "cannot create %s: %s", tmp,
                     errno ? strerror(errno) : "HDF5 refused");
        return -1;
    }
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    bool ok = kl__h5_put_str(f, "format", format) && kl__h5_put_i64(f, "format_version", version) &&
              kl__h5_put_str(f, "kiln_version", KL_VERSION) &&
              kl__h5_put_str(f, "created", created);
    kl__h5_quiet_end(q);
    if (!ok) {
        H5Fclose(f);
        unlink(tmp);
        kl_error_set(err, KL_EIO, "cannot write the header of %s", tmp);
        return -1;
    }
    kl_stop_test_point("write", 0, -1);
    return f;
}

static kl_status fsync_path(const char *path, bool dir, kl_error *err)
{
    int fd = open(path, O_RDONLY | (dir ? O_DIRECTORY : 0));
    if (fd < 0)
        return kl_error_set(err, KL_EIO, "cannot open %s to sync it: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    return rc == 0 ? KL_OK : kl_error_set(err, KL_EIO, "fsync %s: %s", path, strerror(e));
}

kl_status kl_ckpt_commit(int64_t file, const char *tmp, const char *path, bool ok, kl_error *err)
{
    kl__h5_quiet q = kl__h5_quiet_begin();
    bool closed = H5Fclose(file) >= 0;
    kl__h5_quiet_end(q);
    if (!ok || !closed) {
        unlink(tmp);
        return ok ? kl_error_set(err, KL_EIO, "cannot finish writing %s (disk full?)", tmp)
                  : (err && err->status ? err->status : KL_EIO);
    }
    kl_status st = fsync_path(tmp, false, err);
    if (st == KL_OK && rename(tmp, path) != 0)
        st = kl_error_set(err, KL_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != KL_OK) {
        unlink(tmp);
        return st;
    }
    /* The rename is durable only once the folder holding both names is synced. */
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return fsync_path(dir, true, err);
}

static bool put_group_weights(hid_t file, const char *group, const kl_graph *g, bool buffers)
{
    hid_t grp = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = grp >= 0;
    int n = buffers ? kl_graph_num_buffers(g) : kl_graph_num_params(g);
    const float *base = buffers ? kl_graph_buffers((kl_graph *)g) : kl_graph_params((kl_graph *)g);
    for (int i = 0; ok && i < n; i++) {
        const kl_param_info *p = buffers ? kl_graph_buffer(g, i) : kl_graph_param(g, i);
        int64_t dims[KL_MAX_DIMS];
        for (int k = 0; k < p->shape.ndim; k++)
            dims[k] = p->shape.d[k];
        ok = kl__h5_put_f32(grp, p->name, base + p->offset, p->shape.ndim, dims);
    }
    kl__h5_close(grp, H5Gclose);
    return ok;
}

static bool put_model_options(hid_t file, const kl_model_options *o)
{
    hid_t m = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int32_t dims[KL_MAX_DIMS];
    int64_t nd = o->input.ndim;
    for (int i = 0; i < o->input.ndim; i++)
        dims[i] = (int32_t)o->input.d[i];
    bool ok = m >= 0 && kl__h5_put_i32(m, "input_shape", dims, 1, &nd) &&
              kl__h5_put_i64(m, "outputs", o->outputs) &&
              kl__h5_put_str(m, "task",
                             o->task == KL_TASK_REGRESSION ? "regression" : "classification") &&
              kl__h5_put_f64(m, "label_smoothing", o->label_smoothing) &&
              kl__h5_put_i64(m, "seed", (int64_t)o->seed);
    kl__h5_close(m, H5Gclose);
    return ok;
}

kl_status kl_ckpt_read_model_options(kl_ckpt *c, kl_model_options *o, kl_error *err)
{
    memset(o, 0, sizeof *o);
    kl__h5_quiet q = kl__h5_quiet_begin();
    hid_t m = kl__h5_exists(c->file, "model") ? H5Gopen2(c->file, "model", H5P_DEFAULT) : -1;
    int nd = 0;
    int64_t dims[8], outputs = 0, seed = 0;
    double ls = 0;
    char *task = NULL;
    bool ok = m >= 0 && kl__h5_shape(m, "input_shape", &nd, dims) == 0 && nd == 1 && dims[0] >= 1 &&
              dims[0] <= KL_MAX_DIMS - 1 && kl__h5_get_i64(m, "outputs", &outputs) > 0 &&
              outputs >= 1 && outputs <= (1 << 24) && kl__h5_get_str(m, "task", &task) > 0 &&
              kl__h5_get_f64(m, "label_smoothing", &ls) > 0 && kl__h5_get_i64(m, "seed", &seed) > 0;
    int32_t in[KL_MAX_DIMS] = {0};
    if (ok) {
        hid_t d = H5Dopen2(m, "input_shape", H5P_DEFAULT);
        ok = d >= 0 && H5Dread(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, in) >= 0;
        kl__h5_close(d, H5Dclose);
    }
    for (int i = 0; ok && i < dims[0]; i++)
        ok = in[i] >= 1;
    ok = ok && (!strcmp(task, "classification") || !strcmp(task, "regression"));
    kl__h5_close(m, H5Gclose);
    kl__h5_quiet_end(q);
    if (ok) {
        o->input.ndim = (int)dims[0];
        for (int i = 0; i < o->input.ndim; i++)
            o->input.d[i] = in[i];
        o->outputs = (int)outputs;
        o->task = !strcmp(task, "regression") ? KL_TASK_REGRESSION : KL_TASK_CLASSIFICATION;
        o->label_smoothing = (float)ls;
        o->seed = (uint64_t)seed;
        o->batch = 1;
    }
    free(task);
    if (!ok)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: the model description (/model) is missing or damaged", c->path);
    char what[PATH_MAX + 32];
    snprintf(what, sizeof what, "%s: /model/input_shape", c->path);
    return kl_shape_check(&o->input, KL_F32, what, NULL, err);
}

kl_status kl_ckpt_write_weights(int64_t file, const char *config_text, const kl_model *mdl,
                                const float *mean, const float *std, int64_t nstats, kl_error *err)
{
    const kl_graph *g = mdl->g;
    kl__h5_quiet q = kl__h5_quiet_begin();
    bool ok = kl__h5_put_text(file, "config", config_text) && put_model_options(file, &mdl->opts) &&
              put_group_weights(file, "params", g, false) &&
              put_group_weights(file, "buffers", g, true);
    hid_t pre = ok ? H5Gcreate2(file, "preprocessing", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = ok && pre >= 0 && kl__h5_put_i64(pre, "nstats", nstats);
    if (ok && nstats > 0)
        ok = kl__h5_put_f32(pre, "mean", mean, 1, &nstats) &&
             kl__h5_put_f32(pre, "std", std, 1, &nstats);
    kl__h5_close(pre, H5Gclose);
    kl__h5_quiet_end(q);
    return ok ? KL_OK : kl_error_set(err, KL_EIO, "cannot write the weights (disk full?)");
}

static bool put_state(hid_t file, const kl_graph *g, const kl_ckpt_state *st)
{
    hid_t s = H5Gcreate2(file, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    bool ok = s >= 0 && kl__h5_put_i64(s, "step", st->step) &&
              kl__h5_put_i64(s, "epoch", st->epoch) &&
              kl__h5_put_i64(s, "step_in_epoch", st->step_in_epoch) &&
              kl__h5_put_i64(s, "seed", (int64_t)st->seed) &&
              kl__h5_put_str(s, "rng", "philox4x32-10 keyed by (seed, step or epoch, position)") &&
              kl__h5_put_f64s(s, "epoch_sums", st->epoch_sums, 3) &&
              kl__h5_put_f64(s, "epoch_seconds", st->epoch_seconds) &&
              kl__h5_put_f64(s, "best_metric", st->best_metric) &&
              kl__h5_put_i64(s, "best_epoch", st->best_epoch) &&
              kl__h5_put_i64(s, "bad_epochs", st->bad_epochs);
    kl__h5_close(s, H5Gclose);
    hid_t o = ok ? H5Gcreate2(file, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = ok && o >= 0 && kl__h5_put_str(o, "kind", kl_optim_kind_name(st->optim_kind)) &&
         kl__h5_put_i64(o, "steps", st->optim_steps);
    if (ok && st->optim_state_size > 0) {
        int64_t n = (int64_t)st->optim_state_size;
        ok = kl__h5_put_f32(o, "state", st->optim_state, 1, &n);
        /* The order of the parameters in state, for readers of the file: their names. */
        int np = kl_graph_num_params(g);
        const char **names = malloc(((size_t)np + 1) * sizeof *names);
        for (int i = 0; names && i < np; i++)
            names[i] = kl_graph_param(g, i)->name;
        ok = ok && names && kl__h5_put_strings(o, "params", names, np);
        free(names);
    }
    kl__h5_close(o, H5Gclose);
    if (ok && st->best_params) {
        hid_t b = H5Gcreate2(file, "best", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        int64_t np = (int64_t)kl_graph_param_count(g), nb = (int64_t)kl_graph_buffer_count(g);
        ok = b >= 0 && kl__h5_put_f32(b, "params", st->best_params, 1, &np) &&
             (nb == 0 || kl__h5_put_f32(b, "buffers", st->best_buffers, 1, &nb));
        kl__h5_close(b, H5Gclose);
    }
    const kl_ckpt_table *h = &st->history;
    hid_t hg = ok ? H5Gcreate2(file, "history", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = ok && hg >= 0;
    double *col = ok ? malloc(((size_t)h->nrows + 1) * sizeof *col) : NULL;
    ok = ok && col;
    for (int c = 0; ok && c < h->ncols; c++) {
        for (int r = 0; r < h->nrows; r++)
            col[r] = h->data[(size_t)r * (size_t)h->ncols + (size_t)c];
        ok = kl__h5_put_f64s(hg, h->names[c], col, h->nrows);
    }
    free(col);
    kl__h5_close(hg, H5Gclose);
    return ok;
}

kl_status kl_ckpt_save(const char *path, const char *config_text, const kl_model *m,
                       const kl_ckpt_state *st, kl_error *err)
{
    const kl_graph *g = m->g;
    char tmp[PATH_MAX];
    hid_t f = kl_ckpt_create(path, KL_CKPT_FORMAT, KL_CKPT_FORMAT_VERSION, tmp, sizeof tmp, err);
    if (f < 0)
        return err ? err->status : KL_EIO;
    kl_status s = kl_ckpt_write_weights(f, config_text, m, st->mean, st->std, st->nstats, err);
    if (s == KL_OK) {
        kl__h5_quiet q = kl__h5_quiet_begin();
        if (!put_state(f, g, st))
            s = kl_error_set(err, KL_EIO, "cannot write the training state to %s (disk full?)",
                             tmp);
        kl__h5_quiet_end(q);
    }
    return kl_ckpt_commit(f, tmp, path, s == KL_OK, err);
}

/* ---- reading ---- */

static kl_status open_checked(const char *path, bool model, hid_t *out, int64_t *version,
                              kl_error *err)
{
    const char *want = model ? KL_MODEL_FORMAT : KL_CKPT_FORMAT;
    int newest = model ? KL_MODEL_FORMAT_VERSION : KL_CKPT_FORMAT_VERSION;
    if (access(path, R_OK) != 0)
        return kl_error_set(err, KL_EIO, "cannot open %s: %s", path, strerror(errno));
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0)
        return kl_error_set(err, KL_EFORMAT,
                            "%s is not an HDF5 file (or its header is damaged): not a %s", path,
                            want);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return kl_error_set(err, KL_EFORMAT,
                            "%s cannot be opened as HDF5: the file is truncated or damaged", path);
    char *format = NULL;
    int rc = kl__h5_get_str(f, "format", &format);
    kl_status st = KL_OK;
    if (rc <= 0)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s is an HDF5 file without a 'format' attribute: not a %s", path, want);
    else if (strcmp(format, want) != 0)
        st = kl_error_set(err, KL_EFORMAT, "%s is a %s file, not a %s%s", path, format, want,
                          !strcmp(format, KL_MODEL_FORMAT)
                              ? " (an exported model holds weights only; resume needs a checkpoint)"
                          : !strcmp(format, KL_CKPT_FORMAT)
                              ? " (export it first: kiln export CKPT -o model.h5)"
                              : "");
    else if (kl__h5_get_i64(f, "format_version", version) <= 0)
        st = kl_error_set(err, KL_EFORMAT, "%s has no readable 'format_version' attribute", path);
    else if (*version > newest)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s has format_version %lld, but this kiln (%s) reads versions 1 to %d: "
                          "it was written by a newer kiln; upgrade kiln to read it",
                          path, (long long)*version, KL_VERSION, newest);
    else if (*version < 1)
        st = kl_error_set(err, KL_EFORMAT,
                          "%s has format_version %lld, which no kiln writes (versions start at 1): "
                          "the file is damaged or was not written by kiln",
                          path, (long long)*version);
    free(format);
    if (st != KL_OK) {
        H5Fclose(f);
        return st;
    }
    *out = f;
    return KL_OK;
}

kl_status kl_ckpt_open(const char *path, bool model, kl_ckpt **out, kl_error *err)
{
    kl_ckpt *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return kl_error_set(err, KL_ENOMEM, "out of memory opening %s", path);
    }
    c->file = -1;
    kl__h5_quiet q = kl__h5_quiet_begin();
    kl_status st = open_checked(path, model, &c->file, &c->version, err);
    if (st == KL_OK && kl__h5_get_text(c->file, "config", &c->config) <= 0)
        st = kl_error_set(err, KL_EFORMAT, "%s has no readable 'config' dataset", path);
    kl__h5_quiet_end(q);
    if (st != KL_OK) {
        kl_ckpt_close(c);
        return st;
    }
    *out = c;
    return KL_OK;
}

void kl_ckpt_close(kl_ckpt *c)
{
    if (!c)
        return;
    kl__h5_quiet q = kl__h5_quiet_begin();
    kl__h5_close(c->file, H5Fclose);
    kl__h5_quiet_end(q);
    free(c->config);
    free(c->path);
    free(c);
}

const char *kl_ckpt_config_text(const kl_ckpt *c)
{
    return c->config;
}

const char *kl_ckpt_path(const kl_ckpt *c)
{
    return c->path;
}

kl_status kl_ckpt_read_epoch(kl_ckpt *c, int64_t *epoch, kl_error *err)
{
    hid_t s = kl__h5_exists(c->file, "state") ? H5Gopen2(c->file, "state", H5P_DEFAULT) : -1;
    bool ok = s >= 0 && kl__h5_get_i64(s, "epoch", epoch) > 0;
    kl__h5_close(s, H5Gclose);
    return ok ? KL_OK
              : kl_error_set(err, KL_EFORMAT, "%s: no /state epoch: the file is damaged", c->path);
}

int64_t kl_ckpt_hid(const kl_ckpt *c)
{
    return c->file;
}

/* Checks (into NULL) or reads every parameter or buffer of g by name. */
static kl_status read_group_weights(kl_ckpt *c, const kl_graph *g, bool buffers, float *into,
                                    kl_error *err)
{
    int n = buffers ? kl_graph_num_buffers(g) : kl_graph_num_params(g);
    char name[512], what[300];
    for (int i = 0; i < n; i++) {
        const kl_param_info *p = buffers ? kl_graph_buffer(g, i) : kl_graph_param(g, i);
        int64_t dims[KL_MAX_DIMS];
        for (int k = 0; k < p->shape.ndim; k++)
            dims[k] = p->shape.d[k];
        snprintf(name, sizeof name, "%s/%s", buffers ? "buffers" : "params", p->name);
        snprintf(what, sizeof what, "%s %s", buffers ? "buffer" : "parameter", p->name);
        kl_status st = kl__h5_get_f32(c->file, name, into ? into + p->offset : NULL, p->shape.ndim,
                                      dims, into ? (int64_t)p->numel : 0, c->path, what, err);
        if (st != KL_OK)
            return st;
    }
    return KL_OK;
}

/* Every object is checked (present, floating point, the right shape) before the first byte is
 * read, so a checkpoint of another model changes nothing; the data is then read straight into
 * the graph, without a staging copy (bench/RESULTS.md, checkpoints, says what one costs). */
kl_status kl_ckpt_read_weights(kl_ckpt *c, kl_graph *g, kl_error *err)
{
    kl__h5_quiet q = kl__h5_quiet_begin();
    kl_status st = read_group_weights(c, g, false, NULL, err);
    if (st == KL_OK)
        st = read_group_weights(c, g, true, NULL, err);
    if (st == KL_OK)
        st = read_group_weights(c, g, false, kl_graph_params(g), err);
    if (st == KL_OK)
        st = read_group_weights(c, g, true, kl_graph_buffers(g), err);
    kl__h5_quiet_end(q);
    const float *p = kl_graph_params(g);
    for (size_t i = 0, np = kl_graph_param_count(g); st == KL_OK && i < np; i++)
        if (!isfinite(p[i]))
            st = kl_error_set(err, KL_EFORMAT,
                              "%s: parameter value %zu is %g: the weights are damaged", c->path, i,
                              (double)p[i]);
    return st;
}

kl_status kl_ckpt_read_stats(kl_ckpt *c, float **mean, float **std, int64_t *nstats, kl_error *err)
{
    *mean = *std = NULL;
    *nstats = 0;
    kl__h5_quiet q = kl__h5_quiet_begin();
    hid_t pre = kl__h5_exists(c->file, "preprocessing")
                    ? H5Gopen2(c->file, "preprocessing", H5P_DEFAULT)
                    : -1;
    kl_status st = KL_OK;
    int64_t n = 0;
    if (pre < 0 || kl__h5_get_i64(pre, "nstats", &n) <= 0 || n < 0 || n > ((int64_t)1 << 32))
        st = kl_error_set(err, KL_EFORMAT, "%s: the preprocessing group is missing or damaged",
                          c->path);
    /* Both are checked (shape, type, stored in the file) before memory is taken for them. */
    if (st == KL_OK && n > 0)
        st = kl__h5_get_f32(pre, "mean", NULL, 1, &n, 0, c->path, "the standardisation mean", err);
    if (st == KL_OK && n > 0)
        st = kl__h5_get_f32(pre, "std", NULL, 1, &n, 0, c->path, "the standardisation std", err);
    if (st == KL_OK && n > 0) {
        *mean = malloc((size_t)n * sizeof **mean);
        *std = malloc((size_t)n * sizeof **std);
        if (!*mean || !*std)
            st = kl_error_set(err, KL_ENOMEM, "out of memory loading statistics");
        if (st == KL_OK)
            st = kl__h5_get_f32(pre, "mean", *mean, 1, &n, n, c->path, "the standardisation mean",
                                err);
        if (st == KL_OK)
            st =
                kl__h5_get_f32(pre, "std", *std, 1, &n, n, c->path, "the standardisation std", err);
    }
    kl__h5_close(pre, H5Gclose);
    kl__h5_quiet_end(q);
    if (st != KL_OK) {
        free(*mean);
        free(*std);
        *mean = *std = NULL;
        return st;
    }
    *nstats = n;
    return KL_OK;
}

static const char *const history_columns[] = {
    "epoch",        "step",    "train_loss", "train_accuracy", "val_loss",
    "val_accuracy", "val_mae", "lr",         "seconds",        "samples_per_s"};

static kl_status read_history(kl_ckpt *c, kl_ckpt_table *h, kl_error *err)
{
    int nc = (int)(sizeof history_columns / sizeof *history_columns), nd;
    int64_t dims[8];
    h->names = (const char **)history_columns;
    h->ncols = nc;
    if (kl__h5_shape(c->file, "history/epoch", &nd, dims) != 0 || nd != 1 || dims[0] > 1000000)
        return kl_error_set(err, KL_EFORMAT, "%s: the metric history is missing or damaged",
                            c->path);
    h->nrows = (int)dims[0];
    h->data = malloc(((size_t)h->nrows * (size_t)nc + 1) * sizeof *h->data);
    kl_status st = h->data ? KL_OK : kl_error_set(err, KL_ENOMEM, "out of memory");
    char name[64];
    for (int k = 0; st == KL_OK && k < nc; k++) {
        snprintf(name, sizeof name, "history/%s", history_columns[k]);
        int64_t n = h->nrows;
        hid_t d = kl__h5_exists(c->file, name) ? H5Dopen2(c->file, name, H5P_DEFAULT) : -1;
        int nd2;
        int64_t dd[8];
        if (d < 0 || kl__h5_shape(c->file, name, &nd2, dd) != 0 || nd2 != 1 || dd[0] != n) {
            st = kl_error_set(err, KL_EFORMAT, "%s: history column %s is missing or damaged",
                              c->path, history_columns[k]);
        } else {
            double *tmp = malloc(((size_t)n + 1) * sizeof *tmp);
            if (!tmp || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
                st = kl_error_set(err, KL_EFORMAT, "%s: history column %s cannot be read", c->path,
                                  history_columns[k]);
            for (int64_t r = 0; st == KL_OK && r < n; r++)
                h->data[r * nc + k] = tmp[r];
            free(tmp);
        }
        kl__h5_close(d, H5Dclose);
    }
    return st;
}

const char *const *kl_ckpt_history_columns(int *n)
{
    *n = (int)(sizeof history_columns / sizeof *history_columns);
    return history_columns;
}

static kl_status read_state_attrs(kl_ckpt *c, kl_ckpt_state *st, kl_error *err)
{
    hid_t s = kl__h5_exists(c->file, "state") ? H5Gopen2(c->file, "state", H5P_DEFAULT) : -1;
    int64_t epoch = 0, seed = 0, best_epoch = 0, bad = 0;
    bool ok = s >= 0 && kl__h5_get_i64(s, "step", &st->step) > 0 &&
              kl__h5_get_i64(s, "epoch", &epoch) > 0 &&
              kl__h5_get_i64(s, "step_in_epoch", &st->step_in_epoch) > 0 &&
              kl__h5_get_i64(s, "seed", &seed) > 0 &&
              kl__h5_get_f64(s, "epoch_seconds", &st->epoch_seconds) > 0 &&
              kl__h5_get_f64(s, "best_metric", &st->best_metric) > 0 &&
              kl__h5_get_i64(s, "best_epoch", &best_epoch) > 0 &&
              kl__h5_get_i64(s, "bad_epochs", &bad) > 0;
    if (ok) {
        hid_t d = H5Dopen2(s, "epoch_sums", H5P_DEFAULT);
        int nd;
        int64_t dims[8];
        ok = d >= 0 && kl__h5_shape(s, "epoch_sums", &nd, dims) == 0 && nd == 1 && dims[0] == 3 &&
             H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, st->epoch_sums) >= 0;
        kl__h5_close(d, H5Dclose);
    }
    kl__h5_close(s, H5Gclose);
    if (!ok || st->step < 0 || epoch < 0 || epoch > INT_MAX || st->step_in_epoch < 0)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: the training state (/state) is missing or damaged", c->path);
    st->epoch = (int)epoch;
    st->seed = (uint64_t)seed;
    st->best_epoch = (int)best_epoch;
    st->bad_epochs = (int)bad;
    return KL_OK;
}

/* /optimizer/params names the parameters in the order of /optimizer/state; a state laid out for
 * other parameters (another model, or the same ones in another order) would load without any
 * size mismatch and silently update each weight with another's moments, so the names must be
 * the model's, in its order. Files written before kiln recorded the names have none. */
static kl_status check_optim_params(kl_ckpt *c, hid_t o, const kl_graph *g, kl_error *err)
{
    if (!kl__h5_exists(o, "params"))
        return KL_OK;
    int np = kl_graph_num_params(g), nd = 0;
    int64_t dims[8];
    if (kl__h5_shape(o, "params", &nd, dims) != 0 || nd != 1)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: /optimizer/params is not a list of parameter names; the file is "
                            "damaged",
                            c->path);
    if (dims[0] != np)
        return kl_error_set(err, KL_EFORMAT,
                            "%s: /optimizer/params names %lld parameters but the model has %d; "
                            "the optimizer state belongs to another model or the file is damaged",
                            c->path, (long long)dims[0], np);
    char **names = calloc((size_t)np + 1, sizeof *names);
    if (!names)
        return kl_error_set(err, KL_ENOMEM, "out of memory reading /optimizer/params");
    kl_status s = kl__h5_get_strings(o, "params", names, np, c->path, "/optimizer/params", err);
    for (int i = 0; s == KL_OK && i < np; i++) {
        const char *want = kl_graph_param(g, i)->name;
        if (strcmp(names[i], want) != 0)
            s = kl_error_set(err, KL_EFORMAT,
                             "%s: /optimizer/params[%d] is '%s' where the model's parameter %d "
                             "is '%s'; the optimizer state belongs to another model or the file "
                             "is damaged",
                             c->path, i, names[i], i, want);
    }
    for (int i = 0; i < np; i++)
        free(names[i]);
    free(names);
    return s;
}

static kl_status read_optimizer(kl_ckpt *c, const kl_graph *g, kl_ckpt_state *st, kl_error *err)
{
    hid_t o =
        kl__h5_exists(c->file, "optimizer") ? H5Gopen2(c->file, "optimizer", H5P_DEFAULT) : -1;
    char *kind = NULL;
    kl_status s = KL_OK;
    if (o < 0 || kl__h5_get_str(o, "kind", &kind) <= 0 ||
        kl__h5_get_i64(o, "steps", &st->optim_steps) <= 0)
        s = kl_error_set(err, KL_EFORMAT, "%s: the optimizer state is missing or damaged", c->path);
    st->optim_kind = -1;
    for (int k = KL_OPTIM_SGD; kind && k <= KL_OPTIM_ADAMW; k++)
        if (!strcmp(kind, kl_optim_kind_name((kl_optim_kind)k)))
            st->optim_kind = k;
    if (s == KL_OK && st->optim_kind < 0)
        s = kl_error_set(err, KL_EFORMAT, "%s: unknown optimizer '%s' in the checkpoint", c->path,
                         kind);
    free(kind);
    int nd;
    int64_t dims[8];
    if (s == KL_OK && kl__h5_exists(o, "state")) {
        if (kl__h5_shape(o, "state", &nd, dims) != 0 || nd != 1 || dims[0] > ((int64_t)1 << 34))
            s = kl_error_set(err, KL_EFORMAT, "%s: the optimizer state is damaged", c->path);
        else /* checked (stored in the file) before memory is taken for it */
            s = kl__h5_get_f32(o, "state", NULL, 1, dims, 0, c->path, "the optimizer state", err);
        if (s == KL_OK && !(st->optim_state = malloc(((size_t)dims[0] + 1) * sizeof(float))))
            s = kl_error_set(err, KL_ENOMEM, "out of memory loading the optimizer state");
        else if (s == KL_OK)
            s = kl__h5_get_f32(o, "state", st->optim_state, 1, dims, dims[0], c->path,
                               "the optimizer state", err);
        st->optim_state_size = s == KL_OK ? (size_t)dims[0] : 0;
        if (s == KL_OK)
            s = check_optim_params(c, o, g, err);
    }
    kl__h5_close(o, H5Gclose);
    return s;
}

kl_status kl_ckpt_read_state(kl_ckpt *c, const kl_graph *g, kl_ckpt_state *st, kl_error *err)
{
    memset(st, 0, sizeof *st);
    kl__h5_quiet q = kl__h5_quiet_begin();
    kl_status s = read_state_attrs(c, st, err);
    if (s == KL_OK)
        s = read_optimizer(c, g, st, err);
    if (s == KL_OK && kl__h5_exists(c->file, "best")) {
        int64_t np = (int64_t)kl_graph_param_count(g), nb = (int64_t)kl_graph_buffer_count(g);
        st->best_params = malloc(((size_t)np + 1) * sizeof(float));
        st->best_buffers = malloc(((size_t)nb + 1) * sizeof(float));
        if (!st->best_params || !st->best_buffers)
            s = kl_error_set(err, KL_ENOMEM, "out of memory loading the best weights");
        if (s == KL_OK)
            s = kl__h5_get_f32(c->file, "best/params", st->best_params, 1, &np, np, c->path,
                               "the best parameters", err);
        if (s == KL_OK && nb > 0)
            s = kl__h5_get_f32(c->file, "best/buffers", st->best_buffers, 1, &nb, nb, c->path,
                               "the best buffers", err);
    }
    if (s == KL_OK)
        s = read_history(c, &st->history, err);
    kl__h5_quiet_end(q);
    if (s == KL_OK)
        s = kl_ckpt_read_stats(c, &st->mean, &st->std, &st->nstats, err);
    if (s != KL_OK)
        kl_ckpt_state_free(st);
    return s;
}

void kl_ckpt_state_free(kl_ckpt_state *st)
{
    free(st->best_params);
    free(st->best_buffers);
    free(st->optim_state);
    free(st->mean);
    free(st->std);
    free(st->history.data);
    memset(st, 0, sizeof *st);
}

char *kl_ckpt_find_latest(const char *dir, kl_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        kl_error_set(err, KL_EIO, "cannot read the folder %s: %s", dir, strerror(errno));
        return NULL;
    }
    char *best = NULL;
    int64_t best_step = -1;
    kl__h5_quiet q = kl__h5_quiet_begin();
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        /* best.h5 is an earlier epoch kept for its metric, never where a run stands. */
        if (l < 4 || strcmp(e->d_name + l - 3, ".h5") != 0 || !strcmp(e->d_name, "best.h5"))
            continue;
        size_t len = strlen(dir) + l + 2;
        char *path = malloc(len);
        if (!path)
            break;
        snprintf(path, len, "%s/%s", dir, e->d_name);
        hid_t f = -1;
        int64_t version = 0, step = -1;
        kl_error ignore = {0};
        if (open_checked(path, false, &f, &version, &ignore) == KL_OK) {
            hid_t s = kl__h5_exists(f, "state") ? H5Gopen2(f, "state", H5P_DEFAULT) : -1;
            if (s < 0 || kl__h5_get_i64(s, "step", &step) <= 0)
                step = -1;
            kl__h5_close(s, H5Gclose);
            H5Fclose(f);
        }
        bool final = !strcmp(e->d_name, "final.h5");
        if (step >= 0 && (step > best_step || (step == best_step && final))) {
            free(best);
            best = path;
            best_step = step;
        } else {
            free(path);
        }
    }
    kl__h5_quiet_end(q);
    closedir(d);
    if (!best)
        kl_error_set(err, KL_EINVAL, "no checkpoint in %s", dir);
    return best;
}

/* ---- temporaries left by dead writers ---- */

/* The writer's pid in a temporary name kl_ckpt_create makes ("<name>.h5.tmp.<pid>"), else 0. */
static long temp_writer(const char *name)
{
    const char *tag = strstr(name, ".h5.tmp.");
    if (!tag || tag == name)
        return 0;
    const char *digits = tag + strlen(".h5.tmp.");
    char *end;
    errno = 0;
    long pid = strtol(digits, &end, 10);
    return *digits >= '0' && *digits <= '9' && !*end && !errno && pid > 0 ? pid : 0;
}

int kl_ckpt_remove_stale(const char *dir, kl_error *err)
{
    DIR *d = opendir(dir);
    if (!d) {
        kl_error_set(err, KL_EIO, "cannot read the folder %s: %s", dir, strerror(errno));
        return -1;
    }
    int removed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        long pid = temp_writer(e->d_name);
        /* Only a writer that is gone: kill(pid, 0) tells without signalling. A live pid, or one
         * this process may not signal (EPERM), is a writer that may still be at work. */
        if (pid == 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < sizeof path &&
            unlink(path) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}
