/* Checkpoints (include/kiln/ckpt.h, runtime/ckpt.c) and exact resume (trainers/train_ckpt.c).
 *   test_ckpt format       a save reads back exactly; saves are atomic (no temporary left, a
 *                          failed save leaves the old file whole); damaged and foreign files are
 *                          refused with a reason, never a crash, and leave the model untouched
 *   test_ckpt h5py SCRIPT  h5py, the peer reader, finds what kiln wrote (tests/unit/ckpt_h5py.py)
 *   test_ckpt resume       training stopped mid-epoch (a stop request) or after an epoch and
 *                          resumed ends bit-identical to an uninterrupted run, early stopping
 *                          included; a changed config is refused unless only weights are taken;
 *                          best.h5 holds the best epoch, through a resume
 * h5py and resume exit 77 (skipped) without h5py or Fashion-MNIST. With KEEP_TMP set in the
 * environment the temporary folder (/tmp/kiln-test-ckpt-*) is kept for a look. */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "check_tmp.h"
#include "kiln/ckpt.h"
#include "kiln/optim.h"
#include "kiln/stop.h"
#include "kiln/train.h"
#include "kiln/version.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"
#define PYTHON "/usr/bin/python3"

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static bool is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void make_dir(const char *path)
{
    KL_ASSERT(mkdir(path, 0755) == 0 || errno == EEXIST);
}

/* The whole file (binary), or NULL. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    long size = file_size(path);
    char *s = f && size >= 0 ? malloc((size_t)size + 1) : NULL;
    *n = s && fread(s, 1, (size_t)size, f) == (size_t)size ? (size_t)size : 0;
    if (f)
        fclose(f);
    if (s && *n != (size_t)size) {
        free(s);
        s = NULL;
    }
    return s;
}

static void spill(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    KL_ASSERT(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    char *s = slurp(from, &n);
    KL_ASSERT(s);
    spill(to, s, n);
    free(s);
}

static bool same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *sa = slurp(a, &na), *sb = slurp(b, &nb);
    bool same = sa && sb && na == nb && memcmp(sa, sb, na) == 0;
    free(sa);
    free(sb);
    return same;
}

/* Entries of dir whose name holds ".tmp." (kl_ckpt_create's temporary siblings). */
static int count_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    KL_ASSERT(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

/* Checks that err holds status want and a message holding each NULL-terminated string. */
static void check_error(int line, const kl_error *err, kl_status got, kl_status want, ...)
{
    char what[96];
    snprintf(what, sizeof what, "status %d (%s)", (int)want, kl_status_str(want));
    if (!check_(got == want && err->status == want, __FILE__, line, what))
        fprintf(stderr, "    got status %d: %s\n", (int)got, err->msg);
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));) {
        snprintf(what, sizeof what, "the message names '%s'", s);
        if (!check_(got != KL_OK && strstr(err->msg, s) != NULL, __FILE__, line, what))
            fprintf(stderr, "    message: %s\n", err->msg);
    }
    va_end(ap);
}

/* ---- a small model and a full state to save ---- */

/* Dense, batchnorm (so that buffers exist), and kiln's dense head: 5 inputs, 3 classes. */
static const char small_yaml[] = "model:\n"
                                 "  layers:\n"
                                 "    - dense: {units: 6}\n"
                                 "    - batchnorm\n"
                                 "    - activation: relu\n"
                                 "data: {dataset: fashion-mnist}\n"
                                 "train: {epochs: 1, batch_size: 4}\n";

enum { HISTORY_COLS = 10 }; /* kl_ckpt_history_columns */

typedef struct fixture {
    kl_config *cfg;
    char *config_text;
    kl_model m;
    size_t np, nb;
    float *best_p, *best_b, *optim; /* np, nb, 2 np (Adam's two moments) */
    float mean[5], std[5];
    double hist[3 * HISTORY_COLS];
    kl_ckpt_state st;
} fixture;

static fixture fx;

static void build_small(kl_model *m)
{
    kl_error err = {0};
    kl_model_options o = {.input = {.ndim = 1, .d = {5}},
                          .task = KL_TASK_CLASSIFICATION,
                          .outputs = 3,
                          .batch = 4,
                          .seed = 7,
                          .trainable = true};
    KL_ASSERT(kl_model_build(&fx.cfg->model, &o, m, &err) == KL_OK);
}

/* Distinct values with a negative zero and a subnormal among them, so that "exactly" means
 * every bit. */
static void fill(float *v, size_t n, float base)
{
    for (size_t i = 0; i < n; i++)
        v[i] = base + (float)i * 0.125f - (float)(i % 7) * 1e-3f;
    if (n > 2) {
        v[0] = -0.0f;
        v[1] = 1e-40f;
    }
}

static void fixture_init(void)
{
    kl_error err = {0};
    fx.cfg = kl_config_parse("small.yaml", small_yaml, strlen(small_yaml), NULL, 0, &err);
    KL_ASSERT(fx.cfg);
    size_t len = 0;
    FILE *f = open_memstream(&fx.config_text, &len);
    KL_ASSERT(f);
    kl_config_print(fx.cfg, f);
    fclose(f);
    build_small(&fx.m);
    fx.np = kl_graph_param_count(fx.m.g);
    fx.nb = kl_graph_buffer_count(fx.m.g);
    KL_ASSERT(fx.np > 0 && fx.nb > 0);
    fill(kl_graph_params(fx.m.g), fx.np, 0.5f);
    fill(kl_graph_buffers(fx.m.g), fx.nb, 2.0f);
    fx.best_p = malloc(fx.np * sizeof *fx.best_p);
    fx.best_b = malloc(fx.nb * sizeof *fx.best_b);
    fx.optim = malloc(2 * fx.np * sizeof *fx.optim);
    KL_ASSERT(fx.best_p && fx.best_b && fx.optim);
    fill(fx.best_p, fx.np, -3.0f);
    fill(fx.best_b, fx.nb, 7.0f);
    fill(fx.optim, 2 * fx.np, 1e-3f);
    fill(fx.mean, 5, 0.25f);
    fill(fx.std, 5, 1.5f);
    int ncols;
    const char *const *cols = kl_ckpt_history_columns(&ncols);
    KL_ASSERT(ncols == HISTORY_COLS);
    for (int i = 0; i < 3 * ncols; i++)
        fx.hist[i] = i % 5 == 4 ? NAN : 0.1 * i + 1.0 / 3.0;
    fx.st = (kl_ckpt_state){
        .step = 123,
        .epoch = 2,
        .step_in_epoch = 17,
        .seed = 0x8000000000000001ull, /* the top bit survives the int64 attribute */
        .epoch_sums = {1.5, 2.0 / 3.0, 1e-300},
        .epoch_seconds = 4.75,
        .best_metric = 0.375,
        .best_epoch = 1,
        .bad_epochs = 1,
        .best_params = fx.best_p,
        .best_buffers = fx.best_b,
        .optim_kind = KL_OPTIM_ADAM,
        .optim_steps = 123,
        .optim_state = fx.optim,
        .optim_state_size = 2 * fx.np,
        .mean = fx.mean,
        .std = fx.std,
        .nstats = 5,
        .history = {3, ncols, (const char **)cols, fx.hist},
    };
}

static void fixture_free(void)
{
    kl_model_free(&fx.m);
    kl_config_free(fx.cfg);
    free(fx.config_text);
    free(fx.best_p);
    free(fx.best_b);
    free(fx.optim);
}

static bool same_bits(const void *a, const void *b, size_t bytes)
{
    return bytes == 0 || (a && b && memcmp(a, b, bytes) == 0);
}

/* ---- format: round trip ---- */

static void check_state_equal(int line, const kl_ckpt_state *got, const kl_ckpt_state *want)
{
    bool ok = got->step == want->step && got->epoch == want->epoch &&
              got->step_in_epoch == want->step_in_epoch && got->seed == want->seed;
    check_(ok, __FILE__, line, "step, epoch, step_in_epoch and seed read back");
    ok = same_bits(got->epoch_sums, want->epoch_sums, sizeof want->epoch_sums) &&
         got->epoch_seconds == want->epoch_seconds;
    check_(ok, __FILE__, line, "the unfinished epoch's sums and seconds read back");
    ok = (got->best_metric == want->best_metric ||
          (isnan(got->best_metric) && isnan(want->best_metric))) &&
         got->best_epoch == want->best_epoch && got->bad_epochs == want->bad_epochs;
    check_(ok, __FILE__, line, "the early-stopping state reads back");
    ok = (want->best_params == NULL) == (got->best_params == NULL);
    if (ok && want->best_params)
        ok = same_bits(got->best_params, want->best_params, fx.np * sizeof(float)) &&
             same_bits(got->best_buffers, want->best_buffers, fx.nb * sizeof(float));
    check_(ok, __FILE__, line, "the best weights read back (or are absent)");
    ok = got->optim_kind == want->optim_kind && got->optim_steps == want->optim_steps &&
         got->optim_state_size == want->optim_state_size &&
         same_bits(got->optim_state, want->optim_state, want->optim_state_size * sizeof(float));
    check_(ok, __FILE__, line, "the optimizer kind, steps and state read back");
    ok = got->nstats == want->nstats &&
         same_bits(got->mean, want->mean, (size_t)want->nstats * sizeof(float)) &&
         same_bits(got->std, want->std, (size_t)want->nstats * sizeof(float));
    check_(ok, __FILE__, line, "the standardisation statistics read back");
    const kl_ckpt_table *a = &got->history, *b = &want->history;
    ok = a->nrows == b->nrows && a->ncols == b->ncols;
    for (int c = 0; ok && c < a->ncols; c++)
        ok = !strcmp(a->names[c], b->names[c]);
    ok = ok && same_bits(a->data, b->data, (size_t)(b->nrows * b->ncols) * sizeof(double));
    check_(ok, __FILE__, line, "the metric history reads back (NaN included)");
}

/* Opens path and reads everything back into a fresh model; checks it equals the fixture with
 * state want. */
static void check_reads_back(int line, const char *path, const kl_ckpt_state *want)
{
    kl_error err = {0};
    kl_ckpt *c = NULL;
    kl_status s = kl_ckpt_open(path, false, &c, &err);
    if (!check_(s == KL_OK, __FILE__, line, "kl_ckpt_open of a checkpoint kiln wrote")) {
        fprintf(stderr, "    %s\n", err.msg);
        return;
    }
    check_(!strcmp(kl_ckpt_config_text(c), fx.config_text) && !strcmp(kl_ckpt_path(c), path),
           __FILE__, line, "the config text and path");
    kl_model_options o;
    s = kl_ckpt_read_model_options(c, &o, &err);
    bool ok = s == KL_OK && o.input.ndim == 1 && o.input.d[0] == 5 && o.outputs == 3 &&
              o.task == KL_TASK_CLASSIFICATION && o.label_smoothing == 0 && o.seed == 7 &&
              o.batch == 1 && !o.trainable;
    check_(ok, __FILE__, line, "the model options read back");
    kl_model m;
    build_small(&m);
    memset(kl_graph_params(m.g), 0, fx.np * sizeof(float));
    memset(kl_graph_buffers(m.g), 0, fx.nb * sizeof(float));
    s = kl_ckpt_read_weights(c, m.g, &err);
    ok = s == KL_OK &&
         same_bits(kl_graph_params(m.g), kl_graph_params(fx.m.g), fx.np * sizeof(float)) &&
         same_bits(kl_graph_buffers(m.g), kl_graph_buffers(fx.m.g), fx.nb * sizeof(float));
    if (!check_(ok, __FILE__, line, "the parameters and buffers read back bit for bit"))
        fprintf(stderr, "    status %d: %s\n", (int)s, err.msg);
    kl_ckpt_state st;
    s = kl_ckpt_read_state(c, m.g, &st, &err);
    if (check_(s == KL_OK, __FILE__, line, "kl_ckpt_read_state"))
        check_state_equal(line, &st, want);
    else
        fprintf(stderr, "    %s\n", err.msg);
    kl_ckpt_state_free(&st);
    float *mean = NULL, *std = NULL;
    int64_t n = -1;
    s = kl_ckpt_read_stats(c, &mean, &std, &n, &err);
    ok = s == KL_OK && n == want->nstats &&
         same_bits(mean, want->mean, (size_t)n * sizeof(float)) &&
         same_bits(std, want->std, (size_t)n * sizeof(float));
    check_(ok, __FILE__, line, "kl_ckpt_read_stats alone");
    free(mean);
    free(std);
    kl_model_free(&m);
    kl_ckpt_close(c);
}

static void test_round_trip(void)
{
    kl_error err = {0};
    const char *path = in_tmp("round.h5");
    CHECK_OK(kl_ckpt_save(path, fx.config_text, &fx.m, &fx.st, &err), &err);
    check_reads_back(__LINE__, path, &fx.st);

    /* Saved again over it, with what a young run has: no best weights yet (NaN metric), no
     * history row, no statistics (data.standardize off) and SGD without momentum (no state). */
    kl_ckpt_state young = fx.st;
    young.step = 5;
    young.epoch = 0;
    young.step_in_epoch = 5;
    young.best_metric = NAN;
    young.best_epoch = young.bad_epochs = 0;
    young.best_params = young.best_buffers = NULL;
    young.optim_kind = KL_OPTIM_SGD;
    young.optim_steps = 5;
    young.optim_state = NULL;
    young.optim_state_size = 0;
    young.mean = young.std = NULL;
    young.nstats = 0;
    young.history.nrows = 0;
    CHECK_OK(kl_ckpt_save(path, fx.config_text, &fx.m, &young, &err), &err);
    check_reads_back(__LINE__, path, &young);
}

/* ---- format: atomic writes ---- */

/* kl_ckpt_save with files limited to `limit` bytes: RLIMIT_FSIZE makes write(2) fail with EFBIG
 * (SIGXFSZ ignored), as a full disk would, and it binds root too. It runs in a child process that
 * sends back the error and leaves with _exit: after a write error HDF5 1.10's H5Fclose fails and
 * leaves a broken file id behind, which its atexit handler then dereferences (a SEGV at exit, in
 * any program; reported). */
static kl_status save_limited(const char *path, const kl_ckpt_state *st, long limit, kl_error *err)
{
    int fd[2];
    KL_ASSERT(pipe(fd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    KL_ASSERT(pid >= 0);
    if (pid == 0) {
        kl_error e = {0};
        struct rlimit r;
        signal(SIGXFSZ, SIG_IGN);
        KL_ASSERT(getrlimit(RLIMIT_FSIZE, &r) == 0);
        r.rlim_cur = (rlim_t)limit;
        KL_ASSERT(setrlimit(RLIMIT_FSIZE, &r) == 0);
        kl_ckpt_save(path, fx.config_text, &fx.m, st, &e);
        _exit(write(fd[1], &e, sizeof e) == (ssize_t)sizeof e ? 0 : 1);
    }
    close(fd[1]);
    memset(err, 0, sizeof *err);
    ssize_t n = read(fd[0], err, sizeof *err);
    close(fd[0]);
    int ws;
    KL_ASSERT(waitpid(pid, &ws, 0) == pid);
    if (!CHECK(n == (ssize_t)sizeof *err && WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
        return kl_error_set(err, KL_EINTERNAL, "the saving child process failed (status %d)", ws);
    return err->status;
}

static void test_atomic(void)
{
    kl_error err = {0};
    const char *dir = in_tmp("atomic");
    make_dir(dir);
    char path[256], good[256], sibling[300];
    snprintf(path, sizeof path, "%s/ck.h5", dir);
    snprintf(good, sizeof good, "%s/good.copy", check_tmp);
    CHECK_OK(kl_ckpt_save(path, fx.config_text, &fx.m, &fx.st, &err), &err);
    CHECK(count_temporaries(dir) == 0);
    copy_file(path, good);
    kl_ckpt_state other = fx.st;
    other.step = 999;

    /* A folder that does not exist: nothing is created, not even the folder. */
    kl_status s = kl_ckpt_save(in_tmp("nowhere/ck.h5"), fx.config_text, &fx.m, &other, &err);
    check_error(__LINE__, &err, s, KL_EIO, "cannot create", "nowhere/ck.h5.tmp.", NULL);
    CHECK(!exists(in_tmp("nowhere")));

    /* The temporary sibling's name taken by a folder: the file cannot even be created. */
    snprintf(sibling, sizeof sibling, "%s.tmp.%ld", path, (long)getpid());
    make_dir(sibling);
    s = kl_ckpt_save(path, fx.config_text, &fx.m, &other, &err);
    check_error(__LINE__, &err, s, KL_EIO, "cannot create", sibling, NULL);
    CHECK(same_file(path, good));
    CHECK(is_dir(sibling)); /* kiln removes only what it made */
    KL_ASSERT(rmdir(sibling) == 0);

    /* The write failing half-way, as on a full disk (see save_limited). The temporary is
     * removed and the old file is untouched. */
    s = save_limited(path, &other, file_size(good) / 2, &err);
    check_error(__LINE__, &err, s, KL_EIO, "disk full?", NULL);
    CHECK(same_file(path, good));
    if (!CHECK(count_temporaries(dir) == 0))
        fprintf(stderr, "    a failed write left its temporary file in %s\n", dir);

    /* The final name taken by a folder: everything is written, then the rename fails. The
     * temporary is removed and the folder left as it was. */
    char folder[300];
    snprintf(folder, sizeof folder, "%s/taken.h5", dir);
    make_dir(folder);
    s = kl_ckpt_save(folder, fx.config_text, &fx.m, &other, &err);
    check_error(__LINE__, &err, s, KL_EIO, "cannot rename", "taken.h5", NULL);
    CHECK(is_dir(folder) && count_temporaries(dir) == 0);

    /* After all that, the good checkpoint is still whole and readable. */
    CHECK(same_file(path, good));
    check_reads_back(__LINE__, path, &fx.st);
}

/* ---- format: refusals ---- */

enum stage { AT_OPEN = 1, AT_OPTIONS, AT_WEIGHTS, AT_STATE, AT_STATS, ALL_READ };

static const char *stage_name(int at)
{
    static const char *names[] = {"?",     "open",  "model options", "weights",
                                  "state", "stats", "none"};
    return at >= 0 && at <= ALL_READ ? names[at] : "?";
}

/* Reads path as a resume would, into g; returns the stage that refused it (ALL_READ: none). */
static int load_all(const char *path, bool model_file, kl_graph *g, kl_error *err)
{
    kl_ckpt *c = NULL;
    if (kl_ckpt_open(path, model_file, &c, err) != KL_OK)
        return AT_OPEN;
    kl_model_options o;
    kl_ckpt_state st;
    float *mean = NULL, *std = NULL;
    int64_t n;
    int at = ALL_READ;
    if (kl_ckpt_read_model_options(c, &o, err) != KL_OK)
        at = AT_OPTIONS;
    else if (kl_ckpt_read_weights(c, g, err) != KL_OK)
        at = AT_WEIGHTS;
    else if (kl_ckpt_read_state(c, g, &st, err) != KL_OK)
        at = AT_STATE;
    else if ((kl_ckpt_state_free(&st), kl_ckpt_read_stats(c, &mean, &std, &n, err)) != KL_OK)
        at = AT_STATS;
    free(mean);
    free(std);
    kl_ckpt_close(c);
    return at;
}

/* path must be refused at stage `at` with status want and a message naming the path and each of
 * the NULL-terminated strings; with untouched, the model's parameters and buffers must be as they
 * were (kl_ckpt_read_weights promises it for a missing object or one of another shape or type,
 * not for damaged data, which it finds only while reading into the graph). */
static void check_refused(int line, const char *path, bool model_file, int at, bool untouched,
                          kl_status want, ...)
{
    kl_model m;
    build_small(&m);
    fill(kl_graph_params(m.g), fx.np, 42.0f);
    fill(kl_graph_buffers(m.g), fx.nb, -42.0f);
    float *p0 = malloc(fx.np * sizeof *p0), *b0 = malloc(fx.nb * sizeof *b0);
    KL_ASSERT(p0 && b0);
    memcpy(p0, kl_graph_params(m.g), fx.np * sizeof *p0);
    memcpy(b0, kl_graph_buffers(m.g), fx.nb * sizeof *b0);
    kl_error err = {0};
    int got = load_all(path, model_file, m.g, &err);
    char what[128];
    snprintf(what, sizeof what, "%s refused at the %s stage with status %d", strrchr(path, '/') + 1,
             stage_name(at), (int)want);
    if (!check_(got == at && err.status == want, __FILE__, line, what))
        fprintf(stderr, "    refused at the %s stage, status %d: %s\n", stage_name(got),
                (int)err.status, err.msg);
    va_list ap;
    va_start(ap, want);
    for (const char *s; (s = va_arg(ap, const char *));) {
        snprintf(what, sizeof what, "the message names '%s'", s);
        if (!check_(strstr(err.msg, s) != NULL, __FILE__, line, what))
            fprintf(stderr, "    message: %s\n", err.msg);
    }
    va_end(ap);
    if (want != KL_OK)
        check_(strstr(err.msg, path) != NULL, __FILE__, line, "the message names the file");
    if (untouched)
        check_(same_bits(kl_graph_params(m.g), p0, fx.np * sizeof *p0) &&
                   same_bits(kl_graph_buffers(m.g), b0, fx.nb * sizeof *b0),
               __FILE__, line, "a refused load leaves the parameters and buffers unchanged");
    free(p0);
    free(b0);
    kl_model_free(&m);
}

/* HDF5 edits of a copy, with the C API. */
static hid_t h5_open_rw(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    KL_ASSERT(f >= 0);
    return f;
}

static void h5_set_i64(hid_t obj, const char *name, int64_t v)
{
    if (H5Aexists(obj, name) > 0)
        KL_ASSERT(H5Adelete(obj, name) >= 0);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    KL_ASSERT(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static void h5_set_str(hid_t obj, const char *name, const char *v)
{
    if (H5Aexists(obj, name) > 0)
        KL_ASSERT(H5Adelete(obj, name) >= 0);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    KL_ASSERT(H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    KL_ASSERT(a >= 0 && H5Awrite(a, t, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

/* Creates an f32 dataset of ndim dims filled with value. */
static void h5_put(hid_t f, const char *name, int ndim, const hsize_t *dims, float value)
{
    hsize_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    float *v = malloc((size_t)n * sizeof *v);
    KL_ASSERT(v);
    for (hsize_t i = 0; i < n; i++)
        v[i] = value;
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    KL_ASSERT(d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    free(v);
}

/* Creates an i32 dataset of ndim dims, all zero. */
static void h5_put_ints(hid_t f, const char *name, int ndim, const hsize_t *dims)
{
    int32_t zero[64] = {0};
    hid_t sp = H5Screate_simple(ndim, dims, NULL);
    KL_ASSERT(H5Sget_simple_extent_npoints(sp) <= 64);
    hid_t d = H5Dcreate2(f, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    KL_ASSERT(d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, zero) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

static void h5_replace(hid_t f, const char *name, int ndim, const hsize_t *dims, float value)
{
    KL_ASSERT(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    h5_put(f, name, ndim, dims, value);
}

/* A copy of the good checkpoint to damage, at tmp/name. */
static const char *damaged(const char *good, const char *name)
{
    const char *path = in_tmp(name);
    copy_file(good, path);
    return path;
}

static void write_random(const char *path, size_t n, const char *head, size_t head_n)
{
    unsigned char *b = malloc(n);
    KL_ASSERT(b && head_n <= n);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        b[i] = (unsigned char)(x >> 56);
    }
    memcpy(b, head, head_n);
    spill(path, b, n);
    free(b);
}

/* The parameter a refusal is about: the last one with two axes (the head's weight, read after
 * the others, so that a partial load would show). */
static const kl_param_info *last_matrix(void)
{
    const kl_param_info *p = NULL;
    for (int i = 0; i < kl_graph_num_params(fx.m.g); i++)
        if (kl_graph_param(fx.m.g, i)->shape.ndim == 2)
            p = kl_graph_param(fx.m.g, i);
    KL_ASSERT(p);
    return p;
}

static void test_refusals(void)
{
    kl_error err = {0};
    char good[256], name[256], want[128];
    snprintf(good, sizeof good, "%s/refuse-good.h5", check_tmp);
    CHECK_OK(kl_ckpt_save(good, fx.config_text, &fx.m, &fx.st, &err), &err);
    long size = file_size(good);
    check_refused(__LINE__, good, false, ALL_READ, false, KL_OK, NULL); /* the helper itself */

    const char *p = damaged(good, "half.h5");
    KL_ASSERT(truncate(p, size / 2) == 0);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "truncated or damaged", NULL);
    p = damaged(good, "100bytes.h5");
    KL_ASSERT(truncate(p, 100) == 0);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "truncated or damaged", NULL);
    p = damaged(good, "empty.h5");
    KL_ASSERT(truncate(p, 0) == 0);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "not an HDF5 file", NULL);

    p = in_tmp("random.h5");
    write_random(p, 4096, "", 0);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "not an HDF5 file",
                  "not a kiln-checkpoint", NULL);
    p = in_tmp("signature.h5"); /* HDF5's signature, then garbage */
    write_random(p, 4096, "\x89HDF\r\n\x1a\n", 8);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "truncated or damaged", NULL);

    /* An HDF5 file that is not kiln's. */
    p = in_tmp("foreign.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    KL_ASSERT(f >= 0);
    hsize_t two = 2;
    h5_put(f, "x", 1, &two, 1.0f);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "without a 'format' attribute",
                  NULL);

    /* A newer format_version: refused naming both versions and what to do. */
    p = damaged(good, "newer.h5");
    f = h5_open_rw(p);
    h5_set_i64(f, "format_version", KL_CKPT_FORMAT_VERSION + 1);
    H5Fclose(f);
    snprintf(want, sizeof want, "format_version %d", KL_CKPT_FORMAT_VERSION + 1);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, want, "newer kiln", "upgrade kiln",
                  NULL);
    /* format_version 0 never existed. */
    p = damaged(good, "version0.h5");
    f = h5_open_rw(p);
    h5_set_i64(f, "format_version", 0);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "format_version 0",
                  "which no kiln writes", "damaged or was not written by kiln", NULL);
    kl_ckpt *v0 = NULL;
    CHECK(kl_ckpt_open(p, false, &v0, &err) == KL_EFORMAT && !strstr(err.msg, "newer"));
    kl_ckpt_close(v0);

    /* An input_shape whose size overflows: refused before a model is built from it. */
    p = damaged(good, "input-shape.h5");
    f = h5_open_rw(p);
    int32_t huge[3] = {INT32_MAX, INT32_MAX, INT32_MAX};
    hsize_t three = 3;
    KL_ASSERT(H5Ldelete(f, "model/input_shape", H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(1, &three, NULL);
    hid_t d = H5Dcreate2(f, "model/input_shape", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT);
    KL_ASSERT(d >= 0 && H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, huge) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_OPTIONS, true, KL_ESHAPE, "/model/input_shape",
                  "[2147483647, 2147483647, 2147483647]", "overflows", NULL);

    /* Statistics that claim 2^26 values, in compressed chunks never written: refused before
     * 2 x 256 MB are taken for them (HDF5 would read zeros into them). */
    p = damaged(good, "stats.h5");
    f = h5_open_rw(p);
    hsize_t many = (hsize_t)1 << 26, chunk = 4096;
    hid_t pre = H5Gopen2(f, "preprocessing", H5P_DEFAULT), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    KL_ASSERT(pre >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0 &&
              H5Pset_deflate(dcpl, 6) >= 0);
    h5_set_i64(pre, "nstats", (int64_t)many);
    sp = H5Screate_simple(1, &many, NULL);
    for (int i = 0; i < 2; i++) {
        const char *stat = i ? "std" : "mean";
        if (H5Lexists(pre, stat, H5P_DEFAULT) > 0)
            KL_ASSERT(H5Ldelete(pre, stat, H5P_DEFAULT) >= 0);
        d = H5Dcreate2(pre, stat, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        KL_ASSERT(d >= 0);
        H5Dclose(d);
    }
    H5Sclose(sp);
    H5Pclose(dcpl);
    H5Gclose(pre);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_STATE, false, KL_EFORMAT, "the standardisation mean",
                  "has shape (67108864) (268435456 bytes) but the file stores 0 bytes of it", NULL);

    /* An exported model where a checkpoint is expected, and the other way round. */
    p = damaged(good, "model.h5");
    f = h5_open_rw(p);
    h5_set_str(f, "format", "kiln-model");
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "is a kiln-model file",
                  "resume needs a checkpoint", NULL);
    check_refused(__LINE__, good, true, AT_OPEN, true, KL_EFORMAT, "is a kiln-checkpoint file",
                  "kiln export", NULL);

    /* A parameter of another shape (same element count, axes swapped): the message names the
     * parameter and both shapes. */
    const kl_param_info *w = last_matrix();
    int64_t r = w->shape.d[0], c = w->shape.d[1];
    p = damaged(good, "shape.h5");
    f = h5_open_rw(p);
    snprintf(name, sizeof name, "params/%s", w->name);
    h5_replace(f, name, 2, (hsize_t[]){(hsize_t)c, (hsize_t)r}, 0.5f);
    H5Fclose(f);
    char in_file[64], in_model[64];
    snprintf(in_file, sizeof in_file, "has shape (%lld, %lld) in the file", (long long)c,
             (long long)r);
    snprintf(in_model, sizeof in_model, "the model needs (%lld, %lld)", (long long)r, (long long)c);
    snprintf(want, sizeof want, "parameter %s", w->name);
    check_refused(__LINE__, p, false, AT_WEIGHTS, true, KL_ESHAPE, want, in_file, in_model, NULL);

    /* The last parameter missing: the ones before it were read, and still nothing changed. */
    const kl_param_info *last = kl_graph_param(fx.m.g, kl_graph_num_params(fx.m.g) - 1);
    p = damaged(good, "noparam.h5");
    f = h5_open_rw(p);
    snprintf(name, sizeof name, "params/%s", last->name);
    KL_ASSERT(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    snprintf(want, sizeof want, "parameter %s is missing", last->name);
    check_refused(__LINE__, p, false, AT_WEIGHTS, true, KL_EFORMAT, want, NULL);

    /* A parameter of the right shape but holding integers. */
    p = damaged(good, "ints.h5");
    f = h5_open_rw(p);
    snprintf(name, sizeof name, "params/%s", last->name);
    KL_ASSERT(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    h5_put_ints(f, name, 1, (hsize_t[]){(hsize_t)last->numel});
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_WEIGHTS, true, KL_EFORMAT, last->name,
                  "does not hold floating-point numbers", NULL);

    /* A buffer missing (read after every parameter). */
    const kl_param_info *buf = kl_graph_buffer(fx.m.g, kl_graph_num_buffers(fx.m.g) - 1);
    p = damaged(good, "nobuffer.h5");
    f = h5_open_rw(p);
    snprintf(name, sizeof name, "buffers/%s", buf->name);
    KL_ASSERT(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    H5Fclose(f);
    snprintf(want, sizeof want, "buffer %s is missing", buf->name);
    check_refused(__LINE__, p, false, AT_WEIGHTS, true, KL_EFORMAT, want, NULL);

    /* A NaN among the weights: found once they are read into the graph. */
    p = damaged(good, "nan.h5");
    f = h5_open_rw(p);
    snprintf(name, sizeof name, "params/%s", last->name);
    hsize_t n = (hsize_t)last->numel;
    h5_replace(f, name, 1, &n, NAN);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_WEIGHTS, false, KL_EFORMAT, "the weights are damaged",
                  NULL);

    /* No /state group: the weights load, the state is refused. */
    p = damaged(good, "nostate.h5");
    f = h5_open_rw(p);
    KL_ASSERT(H5Ldelete(f, "state", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_STATE, false, KL_EFORMAT, "training state (/state)", NULL);

    /* No /config, no /model. */
    p = damaged(good, "noconfig.h5");
    f = h5_open_rw(p);
    KL_ASSERT(H5Ldelete(f, "config", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_OPEN, true, KL_EFORMAT, "no readable 'config'", NULL);
    p = damaged(good, "nomodel.h5");
    f = h5_open_rw(p);
    KL_ASSERT(H5Ldelete(f, "model", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    check_refused(__LINE__, p, false, AT_OPTIONS, true, KL_EFORMAT, "model description (/model)",
                  NULL);

    /* A path that does not exist, and a folder. */
    check_refused(__LINE__, in_tmp("absent.h5"), false, AT_OPEN, true, KL_EIO, "cannot open",
                  strerror(ENOENT), NULL);
    check_refused(__LINE__, check_tmp, false, AT_OPEN, true, KL_EFORMAT, "not an HDF5 file", NULL);
}

/* kl_ckpt_find_latest: the most steps wins, final.h5 on a tie; other files are skipped. */
static void test_find_latest(void)
{
    kl_error err = {0};
    const char *dir = in_tmp("latest");
    char path[300];
    make_dir(dir);
    kl_ckpt_state st = fx.st;
    const int64_t steps[] = {10, 30, 30};
    const char *names[] = {"step-0000000010.h5", "step-0000000030.h5", "final.h5"};
    for (int i = 0; i < 3; i++) {
        st.step = steps[i];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        CHECK_OK(kl_ckpt_save(path, fx.config_text, &fx.m, &st, &err), &err);
    }
    /* Not checkpoints: random bytes, and an exported model with more steps. */
    snprintf(path, sizeof path, "%s/junk.h5", dir);
    write_random(path, 1000, "", 0);
    snprintf(path, sizeof path, "%s/zmodel.h5", dir);
    st.step = 1000;
    CHECK_OK(kl_ckpt_save(path, fx.config_text, &fx.m, &st, &err), &err);
    hid_t f = h5_open_rw(path);
    h5_set_str(f, "format", "kiln-model");
    H5Fclose(f);
    char *found = kl_ckpt_find_latest(dir, &err);
    snprintf(path, sizeof path, "%s/final.h5", dir);
    if (!CHECK(found && !strcmp(found, path)))
        fprintf(stderr, "    found %s\n", found ? found : err.msg);
    free(found);
    KL_ASSERT(unlink(path) == 0);
    found = kl_ckpt_find_latest(dir, &err);
    snprintf(path, sizeof path, "%s/step-0000000030.h5", dir);
    CHECK(found && !strcmp(found, path));
    free(found);

    make_dir(in_tmp("latest-empty"));
    found = kl_ckpt_find_latest(in_tmp("latest-empty"), &err);
    check_error(__LINE__, &err, found ? KL_OK : err.status, KL_EINVAL, "no checkpoint in", NULL);
    free(found);
    found = kl_ckpt_find_latest(in_tmp("latest-absent"), &err);
    check_error(__LINE__, &err, found ? KL_OK : err.status, KL_EIO, "cannot read the folder", NULL);
    free(found);
}

/* ---- h5py ---- */

/* Writes what kiln saved, for the peer to compare against: expect.txt (one line per fact:
 * `format_version N`, `kiln_version V`, `step N`, `optimizer_state N`, then `param NAME OFFSET
 * D0 D1 ...` and `buffer ...` per tensor) and params.f32, buffers.f32, optimizer.f32 (raw
 * little-endian float32, the flat buffers). */
static void write_expected(const char *dir)
{
    const uint16_t one = 1;
    KL_ASSERT(*(const unsigned char *)&one == 1); /* the raw files are little-endian */
    char path[300];
    snprintf(path, sizeof path, "%s/expect.txt", dir);
    FILE *f = fopen(path, "w");
    KL_ASSERT(f);
    fprintf(f, "format_version %d\nkiln_version %s\nstep %lld\noptimizer_state %zu\n",
            KL_CKPT_FORMAT_VERSION, KL_VERSION, (long long)fx.st.step, fx.st.optim_state_size);
    for (int b = 0; b < 2; b++) {
        int n = b ? kl_graph_num_buffers(fx.m.g) : kl_graph_num_params(fx.m.g);
        for (int i = 0; i < n; i++) {
            const kl_param_info *p = b ? kl_graph_buffer(fx.m.g, i) : kl_graph_param(fx.m.g, i);
            fprintf(f, "%s %s %zu", b ? "buffer" : "param", p->name, p->offset);
            for (int k = 0; k < p->shape.ndim; k++)
                fprintf(f, " %lld", (long long)p->shape.d[k]);
            fprintf(f, "\n");
        }
    }
    KL_ASSERT(fclose(f) == 0);
    snprintf(path, sizeof path, "%s/params.f32", dir);
    spill(path, kl_graph_params(fx.m.g), fx.np * sizeof(float));
    snprintf(path, sizeof path, "%s/buffers.f32", dir);
    spill(path, kl_graph_buffers(fx.m.g), fx.nb * sizeof(float));
    snprintf(path, sizeof path, "%s/optimizer.f32", dir);
    spill(path, fx.st.optim_state, fx.st.optim_state_size * sizeof(float));
}

static int run_status(const char *cmd)
{
    int rc = system(cmd);
    return rc == -1 || !WIFEXITED(rc) ? -1 : WEXITSTATUS(rc);
}

static int test_h5py(const char *script)
{
    if (access(PYTHON, X_OK) != 0 || run_status(PYTHON " -c 'import h5py' 2>/dev/null") != 0)
        return check_missing("test_ckpt h5py",
                             PYTHON " with h5py not found (apt-get install python3-h5py)");
    kl_error err = {0};
    const char *dir = in_tmp("peer");
    make_dir(dir);
    char path[300], cmd[1024];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    CHECK_OK(kl_ckpt_save(path, fx.config_text, &fx.m, &fx.st, &err), &err);
    write_expected(dir);
    snprintf(cmd, sizeof cmd, PYTHON " '%s' check '%s' '%s'", script, path, dir);
    int rc = run_status(cmd);
    if (!CHECK(rc == 0))
        fprintf(stderr, "    %s exited with %d\n", cmd, rc);
    /* The peer must be able to fail: one bit of one parameter changed in the expectation. */
    float *p = kl_graph_params(fx.m.g);
    uint32_t bits;
    memcpy(&bits, &p[fx.np - 1], sizeof bits);
    bits ^= 1;
    memcpy(&p[fx.np - 1], &bits, sizeof bits);
    write_expected(dir);
    bits ^= 1;
    memcpy(&p[fx.np - 1], &bits, sizeof bits);
    snprintf(cmd, sizeof cmd, PYTHON " '%s' check '%s' '%s' >/dev/null", script, path, dir);
    rc = run_status(cmd);
    if (!CHECK(rc == 1))
        fprintf(stderr, "    the peer passed a checkpoint with one bit off (status %d)\n", rc);
    return check_report("test_ckpt h5py");
}

/* ---- resume ---- */

/* A dense layer with batchnorm and dropout on a Fashion-MNIST slice (1800 training images, 36
 * steps of 50 per epoch; 200 validation images), Adam and a cosine schedule without warmup;
 * a checkpoint after every epoch, all kept. No test set, to stay quick under ASan. */
static const char resume_yaml[] =
    "model:\n"
    "  layers:\n"
    "    - dense: {units: 32}\n"
    "    - batchnorm\n"
    "    - activation: relu\n"
    "    - dropout: {rate: 0.2}\n"
    "data:\n"
    "  train: {format: idx, path: " FMNIST "/train-images-idx3-ubyte.gz,\n"
    "          labels: " FMNIST "/train-labels-idx1-ubyte.gz}\n"
    "  limit: 2000\n"
    "  val_fraction: 0.1\n"
    "  standardize: global\n"
    "optimizer: {name: adam, lr: 1e-3}\n"
    "schedule: {name: cosine, warmup_steps: 0, min_lr: 1e-5}\n"
    "train: {epochs: 3, batch_size: 50, seed: 5, threads: 1}\n"
    "checkpoint: {every: 1 epochs, keep_last: 0}\n";

enum { STEPS_PER_EPOCH = 36 };

/* One training run and what it left. */
typedef struct outcome {
    kl_status st;
    kl_error err;
    kl_train_result res;
    kl_model m; /* when st is KL_OK */
    char dir[256], final[300];
} outcome;

/* Requests a stop (as SIGTERM would) once the run has taken `at` steps. */
static void stop_at(void *ctx, int epoch, int64_t s, int64_t per_epoch, double loss, double t)
{
    (void)loss;
    (void)t;
    int64_t at = *(const int64_t *)ctx;
    if (at > 0 && (int64_t)(epoch - 1) * per_epoch + s == at)
        kl_stop_request(SIGTERM);
}

static kl_config *parse(const char *const *sets, int nsets)
{
    kl_error err = {0};
    kl_config *cfg =
        kl_config_parse("resume.yaml", resume_yaml, strlen(resume_yaml), sets, nsets, &err);
    if (!cfg)
        fprintf(stderr, "resume.yaml: %s\n", err.msg);
    KL_ASSERT(cfg);
    return cfg;
}

/* Trains cfg with checkpoints in tmp/dir (NULL: none), from resume when given, stopping after
 * step stop (0: never). */
static void train(outcome *o, const kl_config *cfg, kl_data_splits *data, const char *dir,
                  const char *resume, bool weights_only, int64_t stop)
{
    memset(o, 0, sizeof *o);
    if (dir) {
        snprintf(o->dir, sizeof o->dir, "%s/%s", check_tmp, dir);
        snprintf(o->final, sizeof o->final, "%s/final.h5", o->dir);
        make_dir(o->dir);
    }
    kl_train_hooks hooks = {.ctx = &stop, .on_step = stop_at};
    kl_train_options to = {
        .ckpt_dir = dir ? o->dir : NULL, .resume = resume, .weights_only = weights_only};
    o->st = kl_train_run_dist(cfg, data, NULL, &to, &hooks, &o->m, &o->res, &o->err);
    kl_stop_clear();
}

static void outcome_free(outcome *o)
{
    if (o->st == KL_OK)
        kl_model_free(&o->m);
    o->st = KL_EINVAL;
}

/* The state in a checkpoint, sized by g. */
static bool read_state(const char *path, kl_graph *g, kl_ckpt_state *st)
{
    kl_error err = {0};
    kl_ckpt *c = NULL;
    kl_status s = kl_ckpt_open(path, false, &c, &err);
    if (s == KL_OK)
        s = kl_ckpt_read_state(c, g, st, &err);
    kl_ckpt_close(c);
    if (s != KL_OK)
        fprintf(stderr, "    %s\n", err.msg);
    return s == KL_OK;
}

static bool same_num(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

/* got (a resumed run) must end exactly as want (uninterrupted): parameters, buffers, the final
 * checkpoint's optimizer state, step, early-stopping state and metric history (timings aside),
 * and the result. */
static void check_same_run(int line, const char *what, outcome *got, outcome *want)
{
    char msg[160];
    snprintf(msg, sizeof msg, "%s: trains to the end", what);
    if (!check_(got->st == KL_OK && want->st == KL_OK, __FILE__, line, msg)) {
        fprintf(stderr, "    status %d: %s\n", (int)got->st, got->err.msg);
        return;
    }
    kl_graph *a = got->m.g, *b = want->m.g;
    size_t np = kl_graph_param_count(b), nb = kl_graph_buffer_count(b);
    snprintf(msg, sizeof msg, "%s: bit-identical parameters and buffers", what);
    check_(kl_graph_param_count(a) == np &&
               same_bits(kl_graph_params(a), kl_graph_params(b), np * sizeof(float)) &&
               same_bits(kl_graph_buffers(a), kl_graph_buffers(b), nb * sizeof(float)),
           __FILE__, line, msg);
    const kl_train_result *x = &got->res, *y = &want->res;
    snprintf(msg, sizeof msg, "%s: the same result and last epoch's metrics", what);
    check_(x->epochs_run == y->epochs_run && x->best_epoch == y->best_epoch &&
               x->early_stopped == y->early_stopped && x->last.step == y->last.step &&
               same_num(x->last.train_loss, y->last.train_loss) &&
               same_num(x->last.train_accuracy, y->last.train_accuracy) &&
               same_num(x->last.val_loss, y->last.val_loss) && x->last.lr == y->last.lr,
           __FILE__, line, msg);
    kl_ckpt_state s, t;
    bool ra = read_state(got->final, a, &s), rb = read_state(want->final, b, &t);
    snprintf(msg, sizeof msg, "%s: both final.h5 read", what);
    if (check_(ra && rb, __FILE__, line, msg)) {
        snprintf(msg, sizeof msg, "%s: bit-identical optimizer state and step", what);
        check_(s.step == t.step && s.epoch == t.epoch && s.optim_steps == t.optim_steps &&
                   s.optim_state_size == t.optim_state_size && s.optim_state_size > 0 &&
                   same_bits(s.optim_state, t.optim_state, t.optim_state_size * sizeof(float)),
               __FILE__, line, msg);
        snprintf(msg, sizeof msg, "%s: the same early-stopping state and best weights", what);
        check_(
            same_num(s.best_metric, t.best_metric) && s.best_epoch == t.best_epoch &&
                s.bad_epochs == t.bad_epochs &&
                (s.best_params == NULL) == (t.best_params == NULL) &&
                (!t.best_params || (same_bits(s.best_params, t.best_params, np * sizeof(float)) &&
                                    same_bits(s.best_buffers, t.best_buffers, nb * sizeof(float)))),
            __FILE__, line, msg);
        const kl_ckpt_table *h = &s.history, *k = &t.history;
        bool same = h->nrows == k->nrows && h->ncols == k->ncols && h->nrows > 0;
        for (int r = 0; same && r < h->nrows; r++)
            for (int c = 0; c < h->ncols; c++) /* seconds and samples_per_s are timings */
                if (strcmp(h->names[c], "seconds") && strcmp(h->names[c], "samples_per_s"))
                    same = same && same_num(h->data[r * h->ncols + c], k->data[r * k->ncols + c]);
        snprintf(msg, sizeof msg, "%s: the same metric history (timings aside)", what);
        check_(same, __FILE__, line, msg);
    }
    if (ra)
        kl_ckpt_state_free(&s);
    if (rb)
        kl_ckpt_state_free(&t);
}

/* A run stopped by a request must return KL_ESTOPPED, naming the signal and the checkpoint it
 * wrote, which exists and holds where the run stood: the step the request came at, or the one
 * after it (the request is seen when a step ends). Returns the checkpoint's path in ckpt. */
static void check_stopped(int line, const outcome *o, int64_t at, char *ckpt, size_t size)
{
    ckpt[0] = '\0';
    check_error(line, &o->err, o->st, KL_ESTOPPED, "stopped by signal 15", "--resume", NULL);
    const char *p = strstr(o->err.msg, "checkpoint "), *e = p ? strstr(p, " written") : NULL;
    if (!check_(p && e, __FILE__, line, "the message names the checkpoint written"))
        return;
    p += strlen("checkpoint ");
    snprintf(ckpt, size, "%.*s", (int)(e - p), p);
    check_(!strncmp(ckpt, o->dir, strlen(o->dir)) && strstr(ckpt, "/step-"), __FILE__, line,
           "the stop checkpoint is a step-N.h5 in the checkpoint folder");
    kl_model m;
    kl_error err = {0};
    kl_ckpt *c = NULL;
    kl_ckpt_state st = {0};
    kl_model_options mo;
    bool ok = kl_ckpt_open(ckpt, false, &c, &err) == KL_OK &&
              kl_ckpt_read_model_options(c, &mo, &err) == KL_OK;
    if (!check_(ok, __FILE__, line, "the stop checkpoint opens")) {
        fprintf(stderr, "    %s\n", err.msg);
        kl_ckpt_close(c);
        return;
    }
    kl_config *cfg = parse(NULL, 0);
    KL_ASSERT(kl_model_build(&cfg->model, &mo, &m, &err) == KL_OK);
    if (check_(kl_ckpt_read_state(c, m.g, &st, &err) == KL_OK, __FILE__, line,
               "the stop checkpoint's state reads")) {
        /* A stop at an epoch's last batch is that epoch, all its batches taken. */
        check_((st.step == at || st.step == at + 1) && st.step_in_epoch >= 1 &&
                   st.step_in_epoch <= STEPS_PER_EPOCH &&
                   (int64_t)st.epoch * STEPS_PER_EPOCH + st.step_in_epoch == st.step,
               __FILE__, line, "the stop checkpoint holds the step, epoch and batch of the stop");
        if (st.step != at && st.step != at + 1)
            fprintf(stderr, "    stop requested after step %lld, checkpoint at step %lld\n",
                    (long long)at, (long long)st.step);
    }
    kl_ckpt_state_free(&st);
    kl_model_free(&m);
    kl_config_free(cfg);
    kl_ckpt_close(c);
}

/* The epoch best.h5 in dir holds (-1: no best.h5, 0: unreadable), checking that it is a whole
 * checkpoint of that epoch (its history ends there). */
static int best_epoch_in(const char *dir, kl_graph *g)
{
    char path[300];
    snprintf(path, sizeof path, "%s/best.h5", dir);
    if (!exists(path))
        return -1;
    kl_ckpt_state st;
    if (!read_state(path, g, &st))
        return 0;
    int epoch = st.history.nrows == st.epoch && st.step_in_epoch == 0 ? st.epoch : 0;
    kl_ckpt_state_free(&st);
    return epoch;
}

/* (e) best.h5: the epoch whose kl_train_options.best_metric is best (train_loss maximized: epoch
 * 1, as the loss falls), kept through a stop and a resume into the same folder, where a resumed
 * run that forgot the best so far would overwrite it with epoch 2. Never what a run resumes
 * from. */
static void test_best(const kl_config *cfg, kl_data_splits *data, outcome *ref)
{
    char ckpt[300];
    int64_t stop = 50;
    kl_train_hooks hooks = {.ctx = &stop, .on_step = stop_at};
    outcome o = {0};
    snprintf(o.dir, sizeof o.dir, "%s/best", check_tmp);
    snprintf(o.final, sizeof o.final, "%s/final.h5", o.dir);
    make_dir(o.dir);
    kl_train_options to = {.ckpt_dir = o.dir, .best_metric = "train_loss", .best_maximize = true};
    o.st = kl_train_run_dist(cfg, data, NULL, &to, &hooks, &o.m, &o.res, &o.err);
    kl_stop_clear();
    check_stopped(__LINE__, &o, 50, ckpt, sizeof ckpt);
    kl_graph *g = ref->m.g;
    CHECK(best_epoch_in(o.dir, g) == 1);
    outcome_free(&o);
    stop = 0;
    to.resume = ckpt;
    o.st = kl_train_run_dist(cfg, data, NULL, &to, &hooks, &o.m, &o.res, &o.err);
    CHECK_OK(o.st, &o.err);
    if (!CHECK(best_epoch_in(o.dir, g) == 1))
        fprintf(stderr, "    best.h5 holds epoch %d after the resume\n", best_epoch_in(o.dir, g));
    kl_error err = {0};
    char *latest = kl_ckpt_find_latest(o.dir, &err);
    CHECK(latest && !strcmp(latest, o.final));
    free(latest);
    outcome_free(&o);
    /* Without best_metric and early stopping, no best.h5. */
    CHECK(best_epoch_in(ref->dir, g) == -1);
}

static int test_resume(void)
{
    if (access(FMNIST "/train-images-idx3-ubyte.gz", R_OK) != 0)
        return check_missing("test_ckpt resume",
                             FMNIST " not found (apt-get install dataset-fashion-mnist)");
    kl_error err = {0};
    kl_config *cfg = parse(NULL, 0);
    kl_data_splits data = {0};
    KL_ASSERT(kl_data_prepare(&cfg->data, cfg->train.seed, &data, &err) == KL_OK);
    KL_ASSERT(data.train.x->shape.d[0] / 50 == STEPS_PER_EPOCH);
    char ckpt[300], path[300];

    /* The uninterrupted run, with a checkpoint after every epoch. */
    outcome ref, stopped, resumed;
    train(&ref, cfg, &data, "ref", NULL, false, 0);
    CHECK_OK(ref.st, &ref.err);
    CHECK(ref.res.epochs_run == 3 && ref.res.last.step == 3 * STEPS_PER_EPOCH);
    if (ref.st == KL_OK)
        test_best(cfg, &data, &ref);

    /* (a) Stopped inside the first epoch (no history yet), then resumed from its checkpoint. */
    train(&stopped, cfg, &data, "a", NULL, false, 20);
    check_stopped(__LINE__, &stopped, 20, ckpt, sizeof ckpt);
    train(&resumed, cfg, &data, "a-resumed", ckpt, false, 0);
    check_same_run(__LINE__, "resumed mid-epoch 1", &resumed, &ref);
    outcome_free(&resumed);
    outcome_free(&stopped);

    /* (a') Stopped inside the second epoch, after a periodic checkpoint. */
    train(&stopped, cfg, &data, "a2", NULL, false, 50);
    check_stopped(__LINE__, &stopped, 50, ckpt, sizeof ckpt);
    train(&resumed, cfg, &data, "a2-resumed", ckpt, false, 0);
    check_same_run(__LINE__, "resumed mid-epoch 2", &resumed, &ref);
    outcome_free(&resumed);
    outcome_free(&stopped);

    /* (a'') Stopped at the last batch of epoch 1: the resumed run starts by finishing it. */
    train(&stopped, cfg, &data, "a3", NULL, false, STEPS_PER_EPOCH - 1);
    check_stopped(__LINE__, &stopped, STEPS_PER_EPOCH - 1, ckpt, sizeof ckpt);
    train(&resumed, cfg, &data, "a3-resumed", ckpt, false, 0);
    check_same_run(__LINE__, "resumed at the end of epoch 1", &resumed, &ref);
    outcome_free(&resumed);
    outcome_free(&stopped);

    /* (b) Resumed from the checkpoint checkpoint.every wrote after epoch 1. */
    snprintf(path, sizeof path, "%s/step-%010d.h5", ref.dir, STEPS_PER_EPOCH);
    CHECK(exists(path));
    train(&resumed, cfg, &data, "b", path, false, 0);
    check_same_run(__LINE__, "resumed after epoch 1", &resumed, &ref);
    outcome_free(&resumed);

    /* checkpoint.every in steps, pruned to keep_last: one epoch of 36 steps writes steps 10, 20
     * and 30, keeps the newest two, and final.h5; no temporary is left. */
    const char *step_sets[] = {"checkpoint.every=10 steps", "checkpoint.keep_last=2",
                               "train.epochs=1"};
    kl_config *steps = parse(step_sets, 3);
    train(&resumed, steps, &data, "steps", NULL, false, 0);
    CHECK_OK(resumed.st, &resumed.err);
    DIR *d = opendir(resumed.dir);
    int n = 0, kept = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        n += e->d_name[0] != '.';
        kept += !strcmp(e->d_name, "step-0000000020.h5") ||
                !strcmp(e->d_name, "step-0000000030.h5") || !strcmp(e->d_name, "final.h5");
    }
    if (d)
        closedir(d);
    if (!CHECK(n == 3 && kept == 3))
        fprintf(stderr, "    %d files in %s, %d of the 3 expected\n", n, resumed.dir, kept);
    outcome_free(&resumed);
    kl_config_free(steps);

    /* A stop without a checkpoint folder still stops, and says that nothing was saved. */
    const char *no_every[] = {"checkpoint.every=null"};
    kl_config *plain = parse(no_every, 1);
    train(&stopped, plain, &data, NULL, NULL, false, 2);
    check_error(__LINE__, &stopped.err, stopped.st, KL_ESTOPPED, "stopped by signal 15",
                "no checkpoint", NULL);
    outcome_free(&stopped);
    kl_config_free(plain);

    /* (c) Early stopping: with a min_delta no epoch can beat, epoch 1 is the best and training
     * stops after epoch 2, keeping epoch 1's weights. Stopped inside epoch 2, the best weights
     * exist only in the checkpoint: the resumed run must end with them. */
    const char *es_sets[] = {"train.early_stop.patience=1", "train.early_stop.min_delta=10"};
    kl_config *es = parse(es_sets, 2);
    outcome es_ref;
    train(&es_ref, es, &data, "es", NULL, false, 0);
    CHECK_OK(es_ref.st, &es_ref.err);
    CHECK(es_ref.res.early_stopped && es_ref.res.best_epoch == 1 && es_ref.res.epochs_run == 2);
    if (es_ref.st == KL_OK) /* best.h5 follows early stopping: epoch 1 */
        CHECK(best_epoch_in(es_ref.dir, es_ref.m.g) == 1);
    train(&stopped, es, &data, "es-stopped", NULL, false, 45);
    check_stopped(__LINE__, &stopped, 45, ckpt, sizeof ckpt);
    kl_ckpt_state st;
    if (stopped.st == KL_ESTOPPED && es_ref.st == KL_OK && read_state(ckpt, es_ref.m.g, &st)) {
        CHECK(st.best_params != NULL && st.best_epoch == 1 && st.bad_epochs == 0);
        kl_ckpt_state_free(&st);
    }
    train(&resumed, es, &data, "es-resumed", ckpt, false, 0);
    check_same_run(__LINE__, "early stopping resumed mid-epoch 2", &resumed, &es_ref);
    outcome_free(&resumed);
    outcome_free(&stopped);
    outcome_free(&es_ref);
    kl_config_free(es);

    /* (d) Another optimizer.lr: refused naming the line, unless only the weights are taken
     * (then a new run: its steps count from zero). */
    snprintf(path, sizeof path, "%s/step-%010d.h5", ref.dir, STEPS_PER_EPOCH);
    const char *lr_sets[] = {"optimizer.lr=2e-3", "train.epochs=1"};
    kl_config *lr = parse(lr_sets, 2);
    train(&resumed, lr, &data, "d", path, false, 0);
    check_error(__LINE__, &resumed.err, resumed.st, KL_EINVAL, "another config", "lr: 0.001",
                "lr: 0.002", "--resume-weights-only", NULL);
    CHECK(!exists(resumed.final));
    outcome_free(&resumed);
    train(&resumed, lr, &data, "d-weights", path, true, 0);
    CHECK_OK(resumed.st, &resumed.err);
    CHECK(resumed.res.epochs_run == 1 && resumed.res.last.step == STEPS_PER_EPOCH);
    if (resumed.st == KL_OK && read_state(resumed.final, resumed.m.g, &st)) {
        CHECK(st.step == STEPS_PER_EPOCH && st.epoch == 1 && st.history.nrows == 1);
        kl_ckpt_state_free(&st);
    }
    outcome_free(&resumed);
    kl_config_free(lr);

    /* A finished run's checkpoint with fewer train.epochs than it has done. */
    const char *short_sets[] = {"train.epochs=2"};
    kl_config *shorter = parse(short_sets, 1);
    train(&resumed, shorter, &data, "short", ref.final, false, 0);
    check_error(__LINE__, &resumed.err, resumed.st, KL_EINVAL, "already trained 3 epochs",
                "raise train.epochs", NULL);
    outcome_free(&resumed);
    kl_config_free(shorter);

    /* /config stores the schedule the run followed: cosine's total_steps 0 as the 3 x 36 steps it
     * stood for; a run resuming it with more epochs (total_steps 0 again: from the epochs) is not
     * refused for that. */
    kl_ckpt *stored = NULL;
    if (CHECK(kl_ckpt_open(ref.final, false, &stored, &err) == KL_OK)) {
        if (!CHECK(strstr(kl_ckpt_config_text(stored), "total_steps: 108\n")))
            fprintf(stderr, "    %s\n", kl_ckpt_config_text(stored));
        kl_ckpt_close(stored);
    }
    const char *long_sets[] = {"train.epochs=4"};
    kl_config *longer = parse(long_sets, 1);
    train(&resumed, longer, &data, "longer", ref.final, false, 0);
    CHECK_OK(resumed.st, &resumed.err);
    CHECK(resumed.res.epochs_run == 4);
    outcome_free(&resumed);
    kl_config_free(longer);

    /* Another model's weights, even with --resume-weights-only: refused naming the parameter. */
    const char *wide_sets[] = {"model.layers.0.units=16"};
    kl_config *wide = parse(wide_sets, 1);
    train(&resumed, wide, &data, "wide", ref.final, true, 0);
    check_error(__LINE__, &resumed.err, resumed.st, KL_ESHAPE, "parameter layers.0.weight", NULL);
    outcome_free(&resumed);
    kl_config_free(wide);

    /* A checkpoint that is not there. */
    train(&resumed, cfg, &data, "absent", in_tmp("absent.h5"), false, 0);
    check_error(__LINE__, &resumed.err, resumed.st, KL_EIO, "absent.h5", NULL);
    outcome_free(&resumed);

    outcome_free(&ref);
    kl_data_splits_free(&data);
    kl_config_free(cfg);
    return check_report("test_ckpt resume");
}

/* Temporaries of dead writers (a kill -9 mid-write leaves "<name>.h5.tmp.<pid>") are removed; a
 * live writer's, and every file that is not kiln's temporary name, stay. */
static void test_remove_stale(void)
{
    char dir[80], path[160], dead[32], live[32];
    snprintf(dir, sizeof dir, "%s", in_tmp("stale"));
    KL_ASSERT(mkdir(dir, 0755) == 0);
    pid_t child = fork(); /* a pid that was a process and is none now */
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0);
    snprintf(dead, sizeof dead, "%ld", (long)child);
    snprintf(live, sizeof live, "%ld", (long)getpid());
    struct {
        const char *name, *pid;
        bool removed;
    } files[] = {{"step-0000000004.h5.tmp.", dead, true},
                 {"final.h5.tmp.", dead, true},
                 {"step-0000000005.h5.tmp.", live, false},
                 {"step-0000000003.h5", "", false},
                 {"notes.txt.tmp.", dead, false},
                 {"step-0000000006.h5.tmp.12ab", "", false},
                 {".h5.tmp.", dead, false}};
    int n = (int)(sizeof files / sizeof *files);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, files[i].name, files[i].pid);
        FILE *f = fopen(path, "w");
        KL_ASSERT(f && fputs("x", f) >= 0 && fclose(f) == 0);
    }
    kl_error err = {0};
    CHECK(kl_ckpt_remove_stale(dir, &err) == 2);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s%s", dir, files[i].name, files[i].pid);
        if (!CHECK(exists(path) != files[i].removed))
            fprintf(stderr, "    %s %s\n", path, files[i].removed ? "was left" : "was removed");
    }
    CHECK(kl_ckpt_remove_stale(in_tmp("no-such-folder"), &err) == -1 &&
          strstr(err.msg, "no-such-folder") != NULL);
}

int main(int argc, char **argv)
{
    const char *group = argc > 1 ? argv[1] : "format";
    if (strcmp(group, "format") && strcmp(group, "resume") && (strcmp(group, "h5py") || argc < 3)) {
        fprintf(stderr, "usage: test_ckpt [format | h5py PATH_TO_ckpt_h5py.py | resume]\n");
        return 2;
    }
    check_tmp_make("ckpt");
    fixture_init();
    int rc;
    if (!strcmp(group, "h5py")) {
        rc = test_h5py(argv[2]);
    } else if (!strcmp(group, "resume")) {
        rc = test_resume();
    } else {
        static const check_case cases[] = {
            CHECK_CASE(test_round_trip),  CHECK_CASE(test_atomic),       CHECK_CASE(test_refusals),
            CHECK_CASE(test_find_latest), CHECK_CASE(test_remove_stale),
        };
        rc = check_run("test_ckpt format", cases, CHECK_NCASES(cases), argc - 1, argv + 1);
    }
    fixture_free();
    if (!getenv("KEEP_TMP"))
        check_tmp_remove();
    return rc;
}
