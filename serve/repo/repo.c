/* Models and versions: the repository (DIR/<name>/<version>/model.h5 or model.onnx and
 * DIR/<name>/config.yaml,
 * or one model file), each model's config, and its versions brought in line with the folder and
 * the version policy by polls, the repository API and online learning's publishing
 * (serve/README.md, "Versions and their policy"). The HTTP routes look versions up here. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kiln/device.h"
#include "runtime/file.h"
#include "runtime/schema.h"
#include "serve/patterns/composite.h"
#include "serve/patterns/patterns.h"
#include "serve/repo/repo.h"
#include "serve/sched/sched.h"

void kl_serve_model_config_defaults(kl_serve_model_config *c)
{
    *c = (kl_serve_model_config){.max_batch_size = 64,
                                 .dynamic_batching = true,
                                 .max_queue_delay_us = 0,
                                 .instances = 0,
                                 .device = KL_TRAIN_DEVICE_CPU,
                                 .gpu = -1,
                                 .max_queue = 1024,
                                 .latest = 1,
                                 .drift_window = -1,
                                 .psi_threshold = 0.2,
                                 .drift_min_samples = 100};
}

/* ---- config.yaml ---- */

static kl_status cfg_int(const kl__ynode *v, int64_t lo, int64_t hi, int64_t *out, kl_error *err)
{
    char *end = NULL;
    long long x = v->type == KL__YN_SCALAR && v->plain ? strtoll(v->str, &end, 10) : 0;
    if (!end || *end || end == v->str || x < lo || x > hi)
        return kl__yaml_error(err, KL_EINVAL, v->pos, v->key, "expected an integer in [%lld, %lld]",
                              (long long)lo, (long long)hi);
    *out = x;
    return KL_OK;
}

static kl_status cfg_versions(const kl__ynode *v, kl_serve_model_config *c, kl_error *err)
{
    c->latest = 0;
    c->all_versions = false;
    if (v->type == KL__YN_SCALAR && !strcmp(v->str, "all")) {
        c->all_versions = true;
        return KL_OK;
    }
    if (v->type == KL__YN_MAP && v->n == 1 && !strcmp(v->items[0]->key, "latest")) {
        int64_t n = 0;
        kl_status st = cfg_int(v->items[0], 1, 1000, &n, err);
        c->latest = (int)n;
        return st;
    }
    if (v->type == KL__YN_SEQ && v->n > 0) {
        c->versions = calloc((size_t)v->n, sizeof *c->versions);
        if (!c->versions)
            return kl_error_set(err, KL_ENOMEM, "out of memory");
        for (int i = 0; i < v->n; i++) {
            kl_status st = cfg_int(v->items[i], 1, INT64_MAX, &c->versions[i], err);
            if (st != KL_OK)
                return st;
            c->nversions++;
        }
        return KL_OK;
    }
    return kl__yaml_error(err, KL_EINVAL, v->pos, "versions",
                          "expected `all`, `{latest: N}` or a list of version numbers");
}

/* What the custom rows of config.yaml read beside the config: the model's folder (lookup tables
 * are relative to it) and its patterns. */
typedef struct cfg_doc {
    const char *dir;
    kl__patterns *pat;
} cfg_doc;

static kl_status read_versions(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                               char *path, kl_error *err)
{
    return cfg_versions(node, base, err);
}

#define CFG(f) offsetof(kl_serve_model_config, f)
static const kl__field monitoring_fields[] = {
    {.name = "window", .type = KL__F_I64, .off = CFG(drift_window), KL__GE_LE(0, 1000000)},
    {.name = "psi_threshold", .type = KL__F_DOUBLE, .off = CFG(psi_threshold), KL__GT_LE(0, 100)},
    {.name = "min_samples",
     .type = KL__F_I64,
     .off = CFG(drift_min_samples),
     KL__GE_LE(1, 1000000)},
};
static const kl__section monitoring_section = {KL__FIELDS(monitoring_fields)};

/* monitoring: {window: N, psi_threshold: X, min_samples: N} */
static kl_status read_monitoring(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                                 char *path, kl_error *err)
{
    if (node->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, node->pos, path,
                              "expected a mapping such as {window: 1000, psi_threshold: 0.2}");
    return kl__section_read(&monitoring_section, base, ctx, node, node->pos, path, err);
}

static kl_status read_online(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                             char *path, kl_error *err)
{
    return kl__online_config_read(node, &((kl_serve_model_config *)base)->online, err);
}

/* pre, post, lookup, pipeline, ensemble: patterns/ reads them. */
static kl_status read_pattern(const kl__field *f, void *base, void *ctx, const kl__ynode *node,
                              char *path, kl_error *err)
{
    const cfg_doc *d = ctx;
    int r = kl__patterns_key(node, d->dir, d->pat, err);
    if (r == 0)
        return kl_error_set(err, KL_EINTERNAL, "%s: not a pattern key", path);
    return r > 0 ? KL_OK : err ? err->status : KL_EINVAL;
}

#define CFG_CUSTOM(n, fn)                               \
    {                                                   \
        .name = (n), .type = KL__F_CUSTOM, .read = (fn) \
    }
/* The keys of config.yaml. None has a default here: a key left out keeps the server's (the
 * command line's), which the caller set. */
static const kl__field config_fields[] = {
    {.name = "max_batch_size", .type = KL__F_INT, .off = CFG(max_batch_size), KL__GE_LE(1, 65536)},
    {.name = "dynamic_batching", .type = KL__F_BOOL, .off = CFG(dynamic_batching)},
    {.name = "max_queue_delay_us",
     .type = KL__F_I64,
     .off = CFG(max_queue_delay_us),
     KL__GE_LE(0, 10000000)},
    {.name = "latency_slo_ms",
     .type = KL__F_DOUBLE,
     .off = CFG(latency_slo_ms),
     KL__GE_LE(0, 600000)},
    {.name = "instances", .type = KL__F_INT, .off = CFG(instances), KL__GE_LE(1, 256)},
    {.name = "device", .type = KL__F_ENUM, .off = CFG(device), .names = kl_train_device_names},
    {.name = "gpu", .type = KL__F_INT, .off = CFG(gpu), KL__GE_LE(0, 255)},
    {.name = "max_queue", .type = KL__F_INT, .off = CFG(max_queue), KL__GE_LE(1, 1000000)},
    CFG_CUSTOM("versions", read_versions),
    CFG_CUSTOM("pre", read_pattern),
    CFG_CUSTOM("post", read_pattern),
    CFG_CUSTOM("lookup", read_pattern),
    CFG_CUSTOM("pipeline", read_pattern),
    CFG_CUSTOM("ensemble", read_pattern),
    CFG_CUSTOM("monitoring", read_monitoring),
    CFG_CUSTOM("online_learning", read_online),
};
static const kl__section config_section = {KL__FIELDS(config_fields)};

/* A model's config.yaml is small: a larger one is refused. */
#define MAX_CONFIG_BYTES 65536

/* Reads DIR/config.yaml over the defaults in c, when the file exists. */
static kl_status read_config(const char *path, const char *dir, kl_serve_model_config *c,
                             kl__patterns *pat, kl_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return KL_OK;
    size_t len = 0;
    char *text = kl__file_read(path, "the model config", &len, err);
    if (!text)
        return err ? err->status : KL_EIO;
    if (len >= MAX_CONFIG_BYTES - 1) {
        free(text);
        return kl_error_set(err, KL_EINVAL, "%s: larger than 64 KiB", path);
    }
    kl__ynode *root = NULL;
    kl_status st = kl__yaml_parse(path, text, len, 0, 0, &root, err);
    if (st == KL_OK && root && root->type != KL__YN_MAP)
        st = kl__yaml_error(err, KL_EINVAL, root->pos, "", "expected a mapping of settings");
    char kpath[KL__PATH_MAX] = "";
    cfg_doc doc = {.dir = dir, .pat = pat};
    if (st == KL_OK && root)
        st = kl__section_read(&config_section, c, &doc, root, root->pos, kpath, err);
    kl__ynode_free(root);
    free(text);
    return st;
}

/* ---- versions ---- */

static void version_free(kl__version *v)
{
    kl__version_stop(v);
    for (int i = 0; v->mf && i < v->instances; i++)
        kl_modelfile_free(v->mf[i]);
    if (v->threads) { /* started: the sync objects exist */
        pthread_mutex_destroy(&v->mu);
        pthread_cond_destroy(&v->cv);
    }
    if (!v->threads && v->stats.batches) { /* a composite: no threads, its own sync */
        pthread_mutex_destroy(&v->mu);
        pthread_cond_destroy(&v->cv);
    }
    kl__patterns_release(v->pat);
    kl__drift_free(v->drift);
    for (int64_t k = 0; v->labels && k < v->own_sig.outputs; k++)
        free(v->labels[k]);
    free(v->labels);
    free(v->mf);
    free(v->threads);
    free(v->stats.batches);
    free(v->slo);
    free(v->path);
    free(v);
}

/* Where instance i computes (the config's device and gpu): the CPU, the one GPU gpu names, or
 * GPU i mod the visible ones. A device that cannot be had is refused here, at load. */
static kl_status instance_device(const kl_serve_model_config *c, int i, kl_device_choice *out,
                                 kl_error *err)
{
    kl_status st = kl_device_pick(c->device, c->gpu >= 0 ? c->gpu : i, 0, true, out, err);
    if (st != KL_OK) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err ? err->msg : "");
        return kl_error_set(err, st, "%s (the model's device: its config.yaml or --device)", why);
    }
    out->shared = false;
    int visible = out->device == KL_DEVICE_CUDA ? kl_device_count() : 0;
    if (out->device == KL_DEVICE_CUDA && c->gpu >= visible)
        return kl_error_set(err, KL_EINVAL,
                            "gpu %d: only %d CUDA device%s visible (gpu counts from 0 among "
                            "the devices CUDA_VISIBLE_DEVICES leaves)",
                            c->gpu, visible, visible == 1 ? " is" : "s are");
    if (out->device == KL_DEVICE_CUDA)
        out->index = c->gpu >= 0 ? c->gpu : i % visible;
    return KL_OK;
}

/* The instances a version runs: the config's, else on the CPU one per two cores (the HTTP
 * threads, one per core by default, do most of a request's work: two instances on two cores
 * served fewer requests than one, bench/RESULTS.md) and one per GPU used on CUDA; and v->device
 * saying where. */
static kl_status version_devices(kl_server *s, kl__version *v, kl_device_choice *first,
                                 kl_error *err)
{
    kl_status st = instance_device(&v->cfg, 0, first, err);
    if (st != KL_OK)
        return st;
    bool cuda = first->device == KL_DEVICE_CUDA;
    int gpus = cuda && v->cfg.gpu < 0 ? kl_device_count() : 1;
    v->instances = v->cfg.instances > 0 ? v->cfg.instances
                   : cuda               ? gpus
                   : s->cores > 1       ? s->cores / 2
                                        : 1;
    kl_device_describe(first, v->device, sizeof v->device);
    if (cuda && v->cfg.gpu < 0 && gpus > 1 && v->instances > 1) {
        size_t n = strlen(v->device);
        snprintf(v->device + n, sizeof v->device - n, " and %d more GPU%s",
                 (v->instances < gpus ? v->instances : gpus) - 1,
                 (v->instances < gpus ? v->instances : gpus) > 2 ? "s" : "");
    }
    return KL_OK;
}

static kl_status load_version(kl_server *s, kl__model *m, int64_t number, const char *path,
                              kl__version **out, kl_error *err)
{
    kl__version *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    v->free = version_free;
    v->model = m;
    v->number = number;
    v->cfg = m->cfg;
    v->cfg.versions = NULL; /* the model's */
    v->queue_timeout_s = s->o.queue_timeout_s;
    /* Before the file is read: a file replaced meanwhile then differs, and is read again. */
    kl__file_id_of(path, &v->file);
    v->pat = kl__patterns_ref(m->pat);
    atomic_init(&v->refs, 1);
    kl_device_choice dev;
    kl_status st = version_devices(s, v, &dev, err);
    if (st == KL_OK && !(v->mf = calloc((size_t)v->instances, sizeof *v->mf)))
        st = kl_error_set(err, KL_ENOMEM, "out of memory");
    for (int i = 0; st == KL_OK && i < v->instances; i++)
        if ((st = instance_device(&v->cfg, i, &dev, err)) == KL_OK)
            st = kl_modelfile_load_on(path, v->cfg.max_batch_size, &dev, &v->mf[i], err);
    /* An ONNX or XGBoost model has no training config to learn with. */
    if (st == KL_OK && v->cfg.online.enabled && !kl_modelfile_config(v->mf[0]))
        st = kl_error_set(err, KL_EUNSUPPORTED,
                          "%s: online learning is not supported for %s models yet; remove "
                          "online_learning from the model's config.yaml",
                          path, strstr(path, ".onnx") ? "ONNX" : "XGBoost");
    if (st == KL_OK) {
        v->sig = kl_modelfile_sig(v->mf[0]);
        st = kl__version_drift_init(v, err);
    }
    if (st == KL_OK && v->pat) {
        char file[4200];
        snprintf(file, sizeof file, "%s/config.yaml", m->dir ? m->dir : ".");
        st = kl__steps_check_post(&v->pat->post, v->sig->outputs, file, err);
    }
    if (st == KL_OK)
        st = kl__version_start(v, err);
    if (st != KL_OK) {
        version_free(v);
        return st;
    }
    *out = v;
    return KL_OK;
}

static bool add_version(kl_server *s, kl__model *m, kl__version *v);

static kl_status check_post_config(const kl__model *m, const kl__version *v, kl_error *err)
{
    char file[4200];
    snprintf(file, sizeof file, "%s/config.yaml", m->dir ? m->dir : ".");
    return kl__steps_check_post(&v->pat->post, v->sig->outputs, file, err);
}

/* A pipeline's or ensemble's one version: no files and no instances of its own (its stages
 * run on its members' instances), the signature its members give now. */
static kl_status composite_version(kl_server *s, kl__model *m, kl_error *err)
{
    kl__version *members[KL__FLOW_MAX_MEMBERS];
    kl__flow_shape shape;
    kl_status st = kl__flow_resolve(s, m->pat->comp, members, &shape, err);
    if (st != KL_OK)
        return st;
    kl__version *v = calloc(1, sizeof *v);
    if (v) {
        v->free = version_free;
        v->model = m;
        v->number = 1;
        v->cfg = m->cfg;
        v->cfg.versions = NULL;
        v->queue_timeout_s = s->o.queue_timeout_s;
        v->pat = kl__patterns_ref(m->pat);
        v->own_sig = shape.input;
        v->own_sig.outputs = (int)shape.width;
        v->own_sig.task = shape.classify ? KL_TASK_CLASSIFICATION : KL_TASK_REGRESSION;
        v->own_sig.output_name = shape.classify ? "probabilities"
                                 : shape.final  ? "predictions"
                                                : "output";
        v->sig = &v->own_sig;
        atomic_init(&v->refs, 1);
        pthread_mutex_init(&v->mu, NULL);
        pthread_cond_init(&v->cv, NULL);
        v->stats.batches = calloc((size_t)v->cfg.max_batch_size + 1, sizeof *v->stats.batches);
        /* The class names of the last model, for the metadata (answers take them from the
         * member version a request holds). */
        if (shape.classify && (v->labels = calloc((size_t)shape.width, sizeof *v->labels)))
            for (int64_t k = 0; k < shape.width; k++) {
                const char *l = kl_modelfile_label(shape.final->mf[0], (int)k);
                v->labels[k] = strdup(l ? l : "");
            }
    }
    kl__flow_release(members, m->pat->comp->kind == KL__COMP_ENSEMBLE ? m->pat->comp->nmembers
                                                                      : m->pat->comp->nstages);
    if (v && v->stats.batches && check_post_config(m, v, err) != KL_OK) {
        kl__version_release(v);
        return KL_EINVAL;
    }
    if (!v || !v->stats.batches) {
        if (v)
            kl__version_release(v);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    /* The new definition replaces the old one at once: no request sees the model without a
     * version, and a failed reload (above) leaves the old one serving. */
    pthread_rwlock_wrlock(&s->lock);
    kl__version **old = m->versions;
    int nold = m->nversions;
    m->versions = malloc(sizeof *m->versions);
    if (m->versions) {
        m->versions[0] = v;
        m->nversions = 1;
    } else {
        m->versions = old;
    }
    pthread_rwlock_unlock(&s->lock);
    if (m->versions == old) {
        kl__version_release(v);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    for (int i = 0; i < nold; i++)
        kl__version_release(old[i]);
    free(old);
    kl__serve_log(s, "model %s (%s of %d %s) ready: %lld values in, %lld out", m->name,
                  m->pat->comp->kind == KL__COMP_ENSEMBLE ? "an ensemble" : "a pipeline",
                  m->pat->comp->kind == KL__COMP_ENSEMBLE ? m->pat->comp->nmembers
                                                          : m->pat->comp->nstages,
                  m->pat->comp->kind == KL__COMP_ENSEMBLE ? "members" : "stages",
                  (long long)v->sig->features, (long long)shape.width);
    return KL_OK;
}

/* ---- models ---- */

static kl__model *find_model(kl_server *s, const char *name)
{
    for (int i = 0; i < s->nmodels; i++)
        if (!strcmp(s->models[i]->name, name))
            return s->models[i];
    return NULL;
}

static void model_free(kl__model *m)
{
    for (int i = 0; i < m->nversions; i++)
        kl__version_release(m->versions[i]);
    for (int i = 0; i < m->nnotes; i++)
        free(m->notes[i].reason);
    free(m->notes);
    free(m->versions);
    kl__patterns_release(m->pat);
    free(m->cfg.versions);
    free(m->name);
    free(m->dir);
    free(m->error);
    free(m);
}

void kl__serve_free_models(kl_server *s)
{
    for (int i = 0; i < s->nmodels; i++)
        model_free(s->models[i]);
    free(s->models);
    s->models = NULL;
    s->nmodels = 0;
}

/* Finds or adds model name (admin held). */
static kl__model *get_model(kl_server *s, const char *name, const char *dir)
{
    kl__model *m = find_model(s, name);
    if (m)
        return m;
    m = calloc(1, sizeof *m);
    kl__model **ms = realloc(s->models, ((size_t)s->nmodels + 1) * sizeof *ms);
    if (!m || !ms || !(m->name = strdup(name)) || (dir && !(m->dir = strdup(dir)))) {
        if (ms)
            s->models = ms;
        if (m) {
            free(m->name);
            free(m);
        }
        return NULL;
    }
    m->cfg = s->o.defaults;
    m->cfg.versions = NULL;
    pthread_rwlock_wrlock(&s->lock);
    s->models = ms;
    s->models[s->nmodels++] = m;
    pthread_rwlock_unlock(&s->lock);
    return m;
}

static kl__version_note *find_note(kl__model *m, int64_t number)
{
    for (int i = 0; i < m->nnotes; i++)
        if (m->notes[i].number == number)
            return &m->notes[i];
    return NULL;
}

/* Notes are read by the index and lookups under the read lock, so they change under the write
 * lock; a note already saying the same thing is left alone (a poll repeats itself). file: the
 * model file that failed, or NULL. */
static void set_note(kl_server *s, kl__model *m, int64_t number, const char *reason,
                     const kl__file_id *file)
{
    kl__version_note *n = find_note(m, number);
    kl__file_id id = file ? *file : (kl__file_id){0};
    if (n && n->reason && !strcmp(n->reason, reason) && kl__file_same(&n->file, &id))
        return;
    pthread_rwlock_wrlock(&s->lock);
    if (!n) {
        kl__version_note *ns = realloc(m->notes, ((size_t)m->nnotes + 1) * sizeof *ns);
        if (!ns) {
            pthread_rwlock_unlock(&s->lock);
            return;
        }
        m->notes = ns;
        n = &m->notes[m->nnotes++];
        *n = (kl__version_note){.number = number};
    }
    free(n->reason);
    n->reason = strdup(reason);
    n->file = id;
    pthread_rwlock_unlock(&s->lock);
}

static void drop_note(kl_server *s, kl__model *m, int64_t number)
{
    kl__version_note *n = find_note(m, number);
    if (!n)
        return;
    pthread_rwlock_wrlock(&s->lock);
    free(n->reason);
    *n = m->notes[--m->nnotes];
    pthread_rwlock_unlock(&s->lock);
}

/* The model's flags and error, read under the read lock, change under the write lock. */
static void set_state(kl_server *s, kl__model *m, bool unloaded, bool removed, const char *error)
{
    char *e = error ? strdup(error) : NULL;
    pthread_rwlock_wrlock(&s->lock);
    m->unloaded = unloaded;
    m->removed = removed;
    free(m->error);
    m->error = e;
    pthread_rwlock_unlock(&s->lock);
}

static kl__version *served(const kl__model *m, int64_t number)
{
    for (int i = 0; i < m->nversions; i++)
        if (m->versions[i]->number == number)
            return m->versions[i];
    return NULL;
}

/* Puts v in m's list, in version order (write lock). */
static bool add_version(kl_server *s, kl__model *m, kl__version *v)
{
    pthread_rwlock_wrlock(&s->lock);
    kl__version **vs = realloc(m->versions, ((size_t)m->nversions + 1) * sizeof *vs);
    if (vs) {
        m->versions = vs;
        int i = m->nversions++;
        while (i > 0 && vs[i - 1]->number > v->number) {
            vs[i] = vs[i - 1];
            i--;
        }
        vs[i] = v;
    }
    pthread_rwlock_unlock(&s->lock);
    return vs != NULL;
}

/* Puts v in m's list in place of old, which it drops (write lock): requests that hold old
 * finish on it. */
static void replace_version(kl_server *s, kl__model *m, kl__version *old, kl__version *v)
{
    pthread_rwlock_wrlock(&s->lock);
    for (int i = 0; i < m->nversions; i++)
        if (m->versions[i] == old)
            m->versions[i] = v;
    pthread_rwlock_unlock(&s->lock);
    kl__version_release(old);
}

/* Takes version number out of m's list and drops the list's reference. */
static void retire(kl_server *s, kl__model *m, int64_t number, const char *why)
{
    kl__version *v = NULL;
    pthread_rwlock_wrlock(&s->lock);
    for (int i = 0; i < m->nversions; i++)
        if (m->versions[i]->number == number) {
            v = m->versions[i];
            memmove(&m->versions[i], &m->versions[i + 1],
                    (size_t)(m->nversions - i - 1) * sizeof *m->versions);
            m->nversions--;
            break;
        }
    pthread_rwlock_unlock(&s->lock);
    if (v) {
        kl__serve_log(s, "model %s version %lld retired (%s)", m->name, (long long)number, why);
        kl__version_release(v);
    }
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The model file of a version folder: model.h5, else model.onnx (docs/onnx.md), else an XGBoost
 * model, xgboost.json or xgboost.ubj (Triton FIL's names; docs/serve.md). False when it holds none
 * as a regular file; path is then model.h5's. */
static bool version_file(const char *vdir, char *path, size_t len)
{
    static const char *const names[] = {"model.h5", "model.onnx", "xgboost.json", "xgboost.ubj"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        struct stat st;
        snprintf(path, len, "%s/%s", vdir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            return true;
    }
    snprintf(path, len, "%s/model.h5", vdir);
    return false;
}

/* The version folders of a model directory that hold a model file, newest first. */
static int64_t *list_versions(const char *dir, int *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    int64_t *vs = NULL;
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char *end = NULL;
        long long x = strtoll(e->d_name, &end, 10);
        if (!isdigit((unsigned char)e->d_name[0]) || *end || x <= 0)
            continue;
        char vdir[4200], path[4300];
        snprintf(vdir, sizeof vdir, "%s/%s", dir, e->d_name);
        if (!version_file(vdir, path, sizeof path))
            continue;
        if (*n == cap) {
            int64_t *nv = realloc(vs, (size_t)(cap = 2 * cap + 8) * sizeof *nv);
            if (!nv)
                break;
            vs = nv;
        }
        vs[(*n)++] = x;
    }
    closedir(d);
    if (vs)
        qsort(vs, (size_t)*n, sizeof *vs, cmp_desc);
    return vs;
}

/* vs (n, newest first) with the versions of extra added, each number once: the versions the
 * model's online learner published without writing them into the repository. */
static int64_t *add_published(int64_t *vs, int *n, const char *extra)
{
    int ne = 0;
    int64_t *es = extra ? list_versions(extra, &ne) : NULL;
    int64_t *all = ne ? realloc(vs, ((size_t)*n + (size_t)ne) * sizeof *all) : NULL;
    if (!all) { /* none, or out of memory: the repository's alone */
        free(es);
        return vs;
    }
    memcpy(all + *n, es, (size_t)ne * sizeof *all);
    free(es);
    int total = *n + ne, k = 0;
    qsort(all, (size_t)total, sizeof *all, cmp_desc);
    for (int i = 0; i < total; i++)
        if (k == 0 || all[k - 1] != all[i])
            all[k++] = all[i];
    *n = k;
    return all;
}

static bool wanted_specific(const kl_serve_model_config *c, int64_t number)
{
    for (int i = 0; i < c->nversions; i++)
        if (c->versions[i] == number)
            return true;
    return false;
}

/* The folder of version x of m into out: in the repository, else where its learner published it
 * unpersisted. Returns the folder that holds it. */
static const char *version_dir(const kl__model *m, int64_t x, char *out, size_t size)
{
    struct stat st;
    snprintf(out, size, "%s/%lld", m->dir, (long long)x);
    if (stat(out, &st) == 0 || !m->publish_dir)
        return m->dir;
    snprintf(out, size, "%s/%lld", m->publish_dir, (long long)x);
    return m->publish_dir;
}

/* Whether online learning wrote version x of m (its folder holds the marker). */
static bool learned(const kl__model *m, int64_t x)
{
    char dir[4200], marker[4300];
    version_dir(m, x, dir, sizeof dir);
    snprintf(marker, sizeof marker, "%s/%s", dir, KL__ONLINE_MARKER);
    return access(marker, F_OK) == 0;
}

/* How many of the versions its online learning wrote m keeps; 0 when it does not learn. */
static int keep_learned(const kl__model *m)
{
    return m->cfg.online.enabled ? m->cfg.online.keep_versions : 0;
}

/* Loads version x of m from path (file: its identity) into service, in place of old when that
 * serves it now (its model file changed): the new one takes traffic once it is fully loaded, and
 * a file that does not load is noted while old serves on. True when x serves after the call. */
static bool load_into_service(kl_server *s, kl__model *m, int64_t x, const char *path,
                              const kl__file_id *file, kl__version *old)
{
    kl_error err = {0};
    kl__version *v = NULL;
    double t0 = kl_now();
    if (load_version(s, m, x, path, &v, &err) != KL_OK) {
        char why[KL_ERROR_MSG_MAX + 128];
        snprintf(why, sizeof why, "%s%s",
                 old ? "its model file changed and the file loaded before "
                       "serves on, since the new one does not load: "
                     : "",
                 err.msg);
        set_note(s, m, x, why, file); /* first: whoever reads the log finds it in the index */
        kl__serve_log(s, "model %s version %lld failed to load: %s", m->name, (long long)x, why);
        atomic_fetch_add(&m->load_failures, 1);
        return old != NULL;
    }
    if (old) {
        replace_version(s, m, old, v);
    } else if (!add_version(s, m, v)) {
        kl__version_release(v);
        return false;
    }
    drop_note(s, m, x);
    const kl_modelfile_signature *sig = v->sig;
    kl__serve_log(s,
                  "model %s version %lld %s in %.2f s: %lld features in, %d %s out, %d "
                  "instances, batches up to %d%s, on %s",
                  m->name, (long long)x, old ? "reloaded (its model file changed)" : "ready",
                  kl_now() - t0, (long long)sig->features, sig->outputs,
                  sig->task == KL_TASK_CLASSIFICATION ? "classes" : "targets", v->instances,
                  v->cfg.max_batch_size, v->cfg.dynamic_batching ? "" : " (dynamic batching off)",
                  v->device);
    return true;
}

/* Serves version x of m: loads it when it is new, or when its model file (version_file) is
 * another file or has
 * changed since it was loaded (device, inode, modification time or size), unless that file
 * failed before. True when x serves after the call. */
static bool ensure_version(kl_server *s, kl__model *m, int64_t x)
{
    kl__version *cur = served(m, x);
    char dir[4200], path[4300];
    version_dir(m, x, dir, sizeof dir);
    version_file(dir, path, sizeof path);
    kl__file_id id;
    if (!kl__file_id_of(path, &id))
        return cur != NULL;
    if (cur && kl__file_same(&cur->file, &id))
        return true;
    const kl__version_note *n = find_note(m, x);
    if (n && kl__file_same(&n->file, &id))
        return cur != NULL; /* failed before, and the file has not changed */
    return load_into_service(s, m, x, path, &id, cur);
}

/* Brings m's served versions in line with its folder and policy (admin held). New versions are
 * loaded before old ones are retired; a version that fails leaves the older ones serving. */
static void sync_versions(kl_server *s, kl__model *m)
{
    int n = 0;
    int64_t *vs = add_published(list_versions(m->dir, &n), &n, m->publish_dir);
    const kl_serve_model_config *c = &m->cfg;
    int64_t *keep = calloc((size_t)n + 1, sizeof *keep);
    int nkeep = 0, nlearned = 0, most_learned = keep_learned(m);
    for (int i = 0; keep && i < n; i++) {
        bool pinned = c->nversions > 0 && wanted_specific(c, vs[i]);
        bool want = pinned || c->all_versions || (c->latest > 0 && nkeep < c->latest);
        /* Online learning's versions past the newest keep_versions that load leave the policy
         * (versions: all would keep every one), unless config.yaml names them. */
        bool mine = most_learned > 0 && learned(m, vs[i]);
        if (want && mine && !pinned && nlearned >= most_learned)
            want = false;
        if (want && ensure_version(s, m, vs[i])) {
            keep[nkeep++] = vs[i];
            nlearned += mine;
        }
    }
    for (int i = 0; keep && i < c->nversions; i++) {
        bool found = false;
        for (int j = 0; j < n; j++)
            found |= vs[j] == c->versions[i];
        if (!found)
            set_note(s, m, c->versions[i],
                     "config.yaml names it, but the repository has no model.h5 for it (nor "
                     "model.onnx, xgboost.json or xgboost.ubj)",
                     NULL);
    }
    for (int i = m->nversions - 1; keep && i >= 0; i--) {
        int64_t x = m->versions[i]->number;
        bool kept = false;
        for (int j = 0; j < nkeep; j++)
            kept |= keep[j] == x;
        if (!kept)
            retire(s, m, x, "no longer in the version policy or the repository");
    }
    free(keep);
    free(vs);
}

/* Reads the model's config.yaml (when it changes the batching or the policy, the versions
 * loaded before keep their old settings until they are reloaded). */
static kl_status model_config(kl_server *s, kl__model *m, kl_error *err)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/config.yaml", m->dir);
    kl_serve_model_config c = s->o.defaults;
    c.versions = NULL;
    c.nversions = 0;
    kl__patterns *pat = kl__patterns_new();
    kl_status st = pat ? read_config(path, m->dir, &c, pat, err)
                       : kl_error_set(err, KL_ENOMEM, "out of memory");
    if (st == KL_OK)
        st = kl__patterns_check(pat, path, err);
    if (st != KL_OK) {
        free(c.versions);
        kl__patterns_release(pat);
        return st;
    }
    free(m->cfg.versions);
    m->cfg = c;
    /* Requests read m->pat only through the versions, which hold their own reference. */
    kl__patterns_release(m->pat);
    m->pat = pat;
    return KL_OK;
}

static kl_status load_model_locked(kl_server *s, const char *name, kl_error *err)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", s->repository, name);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return kl_error_set(err, KL_ENOTFOUND, "the repository has no model %s", name);
    kl__model *m = get_model(s, name, dir);
    if (!m)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    set_state(s, m, false, false, NULL);
    kl_status rc = model_config(s, m, err);
    if (rc != KL_OK) {
        atomic_fetch_add(&m->load_failures, 1);
        set_state(s, m, false, false, err->msg);
        kl__serve_log(s, "model %s: %s", name, err->msg);
        return rc;
    }
    if (m->pat->comp) {
        if (s->deferring)
            return KL_OK; /* its members may come later in the folder: the second pass */
        if ((rc = composite_version(s, m, err)) != KL_OK) {
            atomic_fetch_add(&m->load_failures, 1);
            if (m->nversions == 0) /* else the old definition goes on serving */
                set_state(s, m, false, false, err->msg);
            kl__serve_log(s, "model %s: %s", name, err->msg);
        }
        return rc;
    }
    sync_versions(s, m);
    if (m->nversions == 0) {
        rc = kl_error_set(err, KL_EIO, "model %s has no version that loads%s%s", name,
                          m->nnotes ? ": "
                                    : " (no <version>/model.h5, model.onnx or xgboost.json folder)",
                          m->nnotes ? m->notes[0].reason : "");
    }
    return rc;
}

kl_status kl__serve_load_model(kl_server *s, const char *name, kl_error *err)
{
    if (!s->repository)
        return kl_error_set(err, KL_EINVAL,
                            "the server serves a single model file, not a repository");
    if (!kl__serve_name_ok(name))
        return kl_error_set(err, KL_EINVAL, "'%s' is not a model name", name);
    pthread_mutex_lock(&s->admin);
    kl_status st = load_model_locked(s, name, err);
    pthread_mutex_unlock(&s->admin);
    /* A model the repository has that cannot load as it is: the request to load it is refused. */
    if (st != KL_OK && st != KL_ENOTFOUND && err)
        err->status = KL_EINVAL;
    return st == KL_OK || st == KL_ENOTFOUND ? st : KL_EINVAL;
}

kl_status kl__serve_unload_model(kl_server *s, const char *name, kl_error *err)
{
    pthread_mutex_lock(&s->admin);
    kl__model *m = kl__serve_name_ok(name) ? find_model(s, name) : NULL;
    kl_status st = KL_OK;
    if (!m || ((m->unloaded || m->removed) && m->nversions == 0)) {
        st = kl_error_set(err, KL_ENOTFOUND, "no model %s is loaded", name);
    } else {
        set_state(s, m, true, false, m->error);
        while (m->nversions > 0)
            retire(s, m, m->versions[m->nversions - 1]->number, "unloaded");
    }
    pthread_mutex_unlock(&s->admin);
    return st;
}

static kl_status load_single(kl_server *s, kl_error *err)
{
    const char *path = s->single;
    char name[80];
    if (s->single_name) {
        snprintf(name, sizeof name, "%s", s->single_name);
    } else {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        snprintf(name, sizeof name, "%.*s", (int)strcspn(base, "."), base);
    }
    if (!kl__serve_name_ok(name))
        return kl_error_set(err, KL_EINVAL,
                            "'%s' is not a model name (letters, digits, '_', '-', '.'): give one "
                            "with --name",
                            name);
    kl__model *m = get_model(s, name, NULL);
    if (!m || (!m->pat && !(m->pat = kl__patterns_new())))
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    kl__version *v = NULL;
    double t0 = kl_now();
    kl_status st = load_version(s, m, 1, path, &v, err);
    if (st != KL_OK)
        return st;
    if (!add_version(s, m, v)) {
        kl__version_release(v);
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    }
    kl__serve_log(s,
                  "model %s version 1 (%s) ready in %.2f s: %d instances, batches up to %d, on %s",
                  name, path, kl_now() - t0, v->instances, v->cfg.max_batch_size, v->device);
    return KL_OK;
}

kl_status kl__serve_load_all(kl_server *s, kl_error *err)
{
    s->acquire = kl__serve_acquire;
    s->publish = kl__serve_publish;
    if (s->single)
        return load_single(s, err);
    DIR *d = opendir(s->repository);
    if (!d)
        return kl_error_set(err, KL_EIO, "cannot open the repository %s: %s", s->repository,
                            strerror(errno));
    pthread_mutex_lock(&s->admin);
    s->deferring = true;
    struct dirent *e;
    int loaded = 0;
    while ((e = readdir(d))) {
        char dir[4200];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/%s", s->repository, e->d_name);
        if (!kl__serve_name_ok(e->d_name) || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        kl_error lerr = {0};
        load_model_locked(s, e->d_name, &lerr);
    }
    closedir(d);
    s->deferring = false;
    /* Pipelines and ensembles, now that their members are loaded. */
    for (int i = 0; i < s->nmodels; i++) {
        kl__model *m = s->models[i];
        kl_error lerr = {0};
        if (m->pat && m->pat->comp && m->nversions == 0)
            load_model_locked(s, m->name, &lerr);
    }
    for (int i = 0; i < s->nmodels; i++)
        loaded += s->models[i]->nversions > 0;
    pthread_mutex_unlock(&s->admin);
    kl__serve_log(s, "repository %s: %d of %d models ready", s->repository, loaded, s->nmodels);
    return KL_OK;
}

void kl__serve_poll(kl_server *s)
{
    if (!s->repository)
        return;
    pthread_mutex_lock(&s->admin);
    DIR *d = opendir(s->repository);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char dir[4200];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/%s", s->repository, e->d_name);
        if (!kl__serve_name_ok(e->d_name) || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        kl__model *m = find_model(s, e->d_name);
        kl_error err = {0};
        if (!m)
            load_model_locked(s, e->d_name, &err);
        else if (m->removed) /* back in the repository */
            load_model_locked(s, e->d_name, &err);
        else if (m->pat && m->pat->comp && m->nversions == 0 && !m->unloaded)
            load_model_locked(s, e->d_name, &err); /* its members may be ready now */
        else if (!m->unloaded && !m->error && !(m->pat && m->pat->comp))
            sync_versions(s, m);
    }
    if (d)
        closedir(d);
    /* A model whose folder went away stops being served. */
    for (int i = 0; i < s->nmodels; i++) {
        kl__model *m = s->models[i];
        struct stat st;
        if (!m->dir || m->removed || stat(m->dir, &st) == 0)
            continue;
        while (m->nversions > 0)
            retire(s, m, m->versions[m->nversions - 1]->number, "its folder left the repository");
        set_state(s, m, m->unloaded, true, NULL);
    }
    pthread_mutex_unlock(&s->admin);
    atomic_fetch_add(&s->polls, 1);
}

kl__version *kl__serve_acquire(kl_server *s, const char *name, int64_t number, kl_error *err)
{
    pthread_rwlock_rdlock(&s->lock);
    kl__model *m = find_model(s, name);
    kl__version *v = NULL;
    if (!m || ((m->unloaded || m->removed) && m->nversions == 0)) {
        kl_error_set(err, KL_ENOTFOUND, "unknown model '%s'", name);
    } else if (m->nversions == 0) {
        kl_error_set(err, KL_EIO, "model '%s' has no version ready%s%s", name,
                     m->error || m->nnotes ? ": " : "",
                     m->error    ? m->error
                     : m->nnotes ? m->notes[0].reason
                                 : "");
    } else if (number < 0) {
        v = m->versions[m->nversions - 1];
    } else if (!(v = served(m, number))) {
        kl_error_set(err, KL_ENOTFOUND, "model '%s' has no version %lld", name, (long long)number);
    }
    if (v)
        atomic_fetch_add(&v->refs, 1);
    pthread_rwlock_unlock(&s->lock);
    return v;
}

/* Removes the folders of m's versions that online learning wrote, past the newest keep_versions
 * of them (admin held). A version still served, or named in config.yaml, stays; so does every
 * version without the marker: the user's own. The folder is renamed away first, so that no poll
 * sees half of it. */
static void prune_learned(kl_server *s, kl__model *m)
{
    int most = keep_learned(m), n = 0, seen = 0;
    if (most <= 0)
        return;
    int64_t *vs = add_published(list_versions(m->dir, &n), &n, m->publish_dir);
    for (int i = 0; vs && i < n; i++) {
        int64_t x = vs[i];
        if (!learned(m, x) || seen++ < most || served(m, x) || wanted_specific(&m->cfg, x))
            continue;
        char dir[4200], away[4300];
        const char *parent = version_dir(m, x, dir, sizeof dir);
        snprintf(away, sizeof away, "%s/.pruned-%lld.%ld.tmp", parent, (long long)x,
                 (long)getpid());
        if (rename(dir, away) != 0) {
            kl__serve_log(s, "model %s: cannot prune version %lld (renaming %s: %s)", m->name,
                          (long long)x, dir, strerror(errno));
            continue;
        }
        kl__serve_remove_version(away);
        drop_note(s, m, x);
        kl__serve_log(s, "model %s: version %lld pruned (online_learning.keep_versions: %d)",
                      m->name, (long long)x, most);
    }
    free(vs);
}

kl_status kl__serve_publish(kl_server *s, kl__model *m, int64_t number, kl_error *err)
{
    pthread_mutex_lock(&s->admin);
    kl_status st = KL_OK;
    if (m->unloaded || m->removed)
        st = kl_error_set(err, KL_EINVAL, "model %s was %s meanwhile", m->name,
                          m->unloaded ? "unloaded" : "removed from the repository");
    else
        sync_versions(s, m);
    const kl__version_note *n = find_note(m, number);
    if (st == KL_OK && !served(m, number))
        st = kl_error_set(err, KL_EIO, "version %lld %s", (long long)number,
                          n ? n->reason : "is outside the model's version policy");
    if (!m->unloaded && !m->removed)
        prune_learned(s, m);
    pthread_mutex_unlock(&s->admin);
    return st;
}
