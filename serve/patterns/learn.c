/* Online learning (docs/serve.md, "Online learning"): a model whose config.yaml sets
 * online_learning learns from labelled samples posted to its feedback endpoint, on a learner
 * thread with its own trainable copy, and publishes its weights as new versions every
 * publish_every steps (serve/README.md, "Online learning"). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/step.h"
#include "runtime/modelfile_parts.h"
#include "runtime/schema.h"
#include "serve/codec/decode.h"
#include "serve/patterns/composite.h"
#include "serve/patterns/patterns.h"

/* The name of the labels' input in a feedback request. */
#define LABEL_INPUT "label"

struct kl__learner {
    kl_server *s;
    kl__model *m;
    kl_serve_online_config cfg; /* of the version the first feedback named */
    pthread_t thread;
    pthread_mutex_t mu; /* the queue */
    pthread_cond_t cv;
    kl__feedback *head, *tail;
    int queued;
    bool closing;

    /* The learner thread's own. Built at the first feedback (again after a failure). */
    bool ready;
    kl_modelfile *src; /* the version it started from: all but the weights of what it publishes */
    kl_model lm;       /* trainable, batches of up to cfg.batch_size */
    bool built;
    kl_step *step;    /* the training step every trainer takes (ops/step.c) */
    int32_t *classes; /* (batch_size) */
    int64_t steps, unpublished;
    /* Since the last publication, for its run record: samples learnt from, their summed loss,
     * and when the first of those steps began (UNIX time; 0: none yet). */
    int64_t since_steps, since_samples;
    double since_loss, since_start;
    char *tmp_dir; /* persist: false: where the published versions are written */
};

/* ---- config.yaml ---- */

#define ONLINE(f) offsetof(kl_serve_online_config, f)
/* In kl_optim_kind's order. */
static const char *const online_optimizers[] = {"sgd", "adam", NULL};
static const kl__field online_fields[] = {
    {.name = "lr", .type = KL__F_FLOAT, .off = ONLINE(lr), KL__GT_LE(0, 100), .def = "0.01"},
    {.name = "optimizer",
     .type = KL__F_ENUM,
     .off = ONLINE(optimizer),
     .names = online_optimizers,
     .def = "sgd"},
    {.name = "batch_size",
     .type = KL__F_INT,
     .off = ONLINE(batch_size),
     KL__GE_LE(1, 65536),
     .def = "64"},
    {.name = "publish_every",
     .type = KL__F_I64,
     .off = ONLINE(publish_every),
     KL__GE_LE(1, 1e9),
     .def = "10"},
    {.name = "persist", .type = KL__F_BOOL, .off = ONLINE(persist), .def = "true"},
    {.name = "max_queue",
     .type = KL__F_INT,
     .off = ONLINE(max_queue),
     KL__GE_LE(1, 1e6),
     .def = "64"},
    {.name = "keep_versions",
     .type = KL__F_INT,
     .off = ONLINE(keep_versions),
     KL__GE_LE(1, 1000),
     .def = "3"},
    {.name = "max_rate",
     .type = KL__F_DOUBLE,
     .off = ONLINE(max_rate),
     KL__GT_LE(0, 1e6),
     .def = "10"},
};
static const kl__section online_section = {KL__FIELDS(online_fields)};

kl_status kl__online_config_read(const kl__ynode *v, kl_serve_online_config *c, kl_error *err)
{
    char path[KL__PATH_MAX] = "online_learning";
    if (v->type != KL__YN_MAP)
        return kl__yaml_error(err, KL_EINVAL, v->pos, path,
                              "expected a mapping such as {lr: 0.01, publish_every: 10}");
    *c = (kl_serve_online_config){.enabled = true};
    return kl__section_read(&online_section, c, NULL, v, v->pos, path, err);
}

/* ---- feedback requests ---- */

void kl__feedback_free(kl__feedback *fb)
{
    if (!fb)
        return;
    free(fb->x);
    free(fb->y);
    free(fb);
}

/* The labels against the model's task, for n samples: class indices in [0, classes), or
 * targets (finite: the decoder checked). */
static kl_status check_labels(const kl__version *v, int64_t n, const kl__infer_input *y,
                              kl_error *err)
{
    const kl_modelfile_signature *sig = v->sig;
    bool cls = sig->task == KL_TASK_CLASSIFICATION;
    int64_t per = 1;
    for (int d = 1; d < y->rank; d++)
        per *= y->shape[d];
    if (cls && y->dtype != KL__DT_INT32 && y->dtype != KL__DT_INT64)
        return kl_error_set(err, KL_EINVAL,
                            "input '%s' is %s; model %s is a classifier: send its class labels as "
                            "INT32 or INT64, shape [%lld]",
                            LABEL_INPUT, kl__dtype_name(y->dtype), v->model->name, (long long)n);
    if (y->rank < 1 || y->rank > 2 || per != (cls ? 1 : sig->outputs))
        return kl_error_set(err, KL_EINVAL,
                            "input '%s' has rank %d with %lld values per sample; model %s takes "
                            "%s",
                            LABEL_INPUT, y->rank, (long long)per, v->model->name,
                            cls ? "one class label per sample, shape [n]"
                                : "one row of targets per sample, shape [n, targets]");
    if (y->shape[0] != n)
        return kl_error_set(err, KL_EINVAL,
                            "input '%s' has %lld samples but the request has %lld: send one "
                            "label per sample",
                            LABEL_INPUT, (long long)y->shape[0], (long long)n);
    for (int64_t i = 0; i < y->count; i++) {
        float l = y->data[i];
        if (cls && !(l >= 0 && l < (float)sig->outputs))
            return kl_error_set(err, KL_EINVAL,
                                "input '%s': sample %lld has class %.0f; model %s has classes 0 "
                                "to %d",
                                LABEL_INPUT, (long long)i, (double)l, v->model->name,
                                sig->outputs - 1);
    }
    return KL_OK;
}

/* The model's input from the request without its labels (q), checked as inference checks it:
 * through the lookup and pre steps of a patterned version, else as the model's one input. */
static kl_status model_input(const kl__version *v, const kl__infer_request *q, float **x,
                             int64_t *n, kl_error *err)
{
    const kl_modelfile_signature *sig = v->sig;
    if (kl__patterned(v))
        return kl__patterns_input(v, q, x, n, err);
    if (q->ninputs != 1 || strcmp(q->inputs[0].name, sig->input_name)) {
        char names[256] = "none";
        for (int i = 0, k = 0; i < q->ninputs && k < (int)sizeof names - 1; i++)
            k += snprintf(names + k, sizeof names - (size_t)k, "%s'%s'", i ? ", " : "",
                          q->inputs[i].name);
        return kl_error_set(err, KL_EINVAL,
                            "feedback for model %s takes two inputs, '%s' (as inference takes "
                            "it) and '%s' (the answers); besides '%s' the request has %s",
                            v->model->name, sig->input_name, LABEL_INPUT, LABEL_INPUT, names);
    }
    kl_status st = kl__check_input(v, &q->inputs[0], err);
    if (st != KL_OK)
        return st;
    *n = q->inputs[0].shape[0];
    if (!(*x = malloc((size_t)q->inputs[0].count * sizeof **x)))
        return kl_error_set(err, KL_ENOMEM, "out of memory copying %lld feedback samples",
                            (long long)*n);
    memcpy(*x, q->inputs[0].data, (size_t)q->inputs[0].count * sizeof **x);
    return KL_OK;
}

/* KL_EUNSUPPORTED (409) when version v does not learn from feedback. */
static kl_status learns(const kl__version *v, kl_error *err)
{
    if (v->cfg.online.enabled && v->mf)
        return KL_OK;
    return kl_error_set(err, KL_EUNSUPPORTED,
                        !v->mf ? "model %s is a pipeline or an ensemble: send feedback to the "
                                 "models it is made of"
                               : "model %s does not learn online: set online_learning in its "
                                 "config.yaml, then load it again",
                        v->model->name);
}

kl_status kl__learn_admit(kl_server *s, kl__version *v, double *retry_s, kl_error *err)
{
    *retry_s = 0;
    kl_status st = learns(v, err);
    if (st != KL_OK)
        return st;
    /* A token bucket holding up to a second's requests (at least one), refilled at max_rate. */
    kl__model *m = v->model;
    double rate = v->cfg.online.max_rate, burst = rate < 1 ? 1 : rate, now = kl_now();
    pthread_mutex_lock(&s->learn_mu);
    double tokens = m->feedback_at > 0 ? m->feedback_tokens + (now - m->feedback_at) * rate : burst;
    tokens = tokens > burst ? burst : tokens;
    if (tokens >= 1)
        tokens -= 1;
    else
        *retry_s = (1 - tokens) / rate;
    m->feedback_tokens = tokens;
    m->feedback_at = now;
    pthread_mutex_unlock(&s->learn_mu);
    return KL_OK;
}

kl_status kl__feedback_new(kl__version *v, const kl__infer_request *q, kl__feedback **out,
                           kl_error *err)
{
    *out = NULL;
    kl_status learning = learns(v, err);
    if (learning != KL_OK)
        return learning;
    /* The request without its labels, for the input checks inference makes. */
    kl__infer_input rest[KL__INFER_MAX_INPUTS];
    kl__infer_request q2 = *q;
    const kl__infer_input *y = NULL;
    q2.inputs = rest;
    q2.ninputs = 0;
    for (int i = 0; i < q->ninputs; i++) {
        if (!strcmp(q->inputs[i].name, LABEL_INPUT) && !y)
            y = &q->inputs[i];
        else if (q2.ninputs < KL__INFER_MAX_INPUTS)
            rest[q2.ninputs++] = q->inputs[i];
    }
    if (!y)
        return kl_error_set(err, KL_EINVAL,
                            "feedback for model %s takes the answers as an input named '%s': "
                            "INT32 class labels [n] for a classifier, FP32 targets [n, targets] "
                            "for regression",
                            v->model->name, LABEL_INPUT);
    bool cls = v->sig->task == KL_TASK_CLASSIFICATION;
    kl__feedback *fb = calloc(1, sizeof *fb);
    if (!fb)
        return kl_error_set(err, KL_ENOMEM, "out of memory");
    fb->v = v;
    kl_status st = model_input(v, &q2, &fb->x, &fb->n, err);
    if (st == KL_OK)
        st = check_labels(v, fb->n, y, err);
    if (st == KL_OK &&
        !(fb->y = malloc((size_t)y->count * (cls ? sizeof(int32_t) : sizeof(float)))))
        st = kl_error_set(err, KL_ENOMEM, "out of memory copying %lld feedback labels",
                          (long long)fb->n);
    if (st != KL_OK) {
        kl__feedback_free(fb);
        return st;
    }
    if (cls)
        for (int64_t i = 0; i < fb->n; i++)
            ((int32_t *)fb->y)[i] = (int32_t)y->data[i];
    else
        memcpy(fb->y, y->data, (size_t)y->count * sizeof(float));
    *out = fb;
    return KL_OK;
}

/* ---- the learner's model ---- */

static void learner_reset(kl__learner *l)
{
    kl_step_free(l->step); /* before the model whose graph it steps */
    l->step = NULL;
    if (l->built)
        kl_model_free(&l->lm);
    l->built = false;
    kl_modelfile_free(l->src);
    l->src = NULL;
    free(l->classes);
    l->classes = NULL;
    l->ready = false;
    l->since_steps = l->since_samples = 0;
    l->since_loss = l->since_start = 0;
}

/* The learner's temporary folder for persist: false, made known to the repository scan. */
static kl_status make_tmp_dir(kl__learner *l, kl_error *err)
{
    const char *base = getenv("TMPDIR");
    char t[4200];
    snprintf(t, sizeof t, "%s/kiln-online-%s-XXXXXX", base && *base ? base : "/tmp", l->m->name);
    if (!mkdtemp(t) || !(l->tmp_dir = strdup(t)))
        return kl_error_set(err, KL_EIO, "cannot create a temporary folder %s: %s", t,
                            strerror(errno));
    pthread_mutex_lock(&l->s->admin);
    l->m->publish_dir = l->tmp_dir;
    pthread_mutex_unlock(&l->s->admin);
    return KL_OK;
}

/* Builds the trainable copy of v's model with v's weights, and its optimizer. */
static kl_status learner_init(kl__learner *l, const kl__version *v, kl_error *err)
{
    kl_status st = KL_OK;
    if (!l->cfg.persist && !l->tmp_dir && (st = make_tmp_dir(l, err)) != KL_OK)
        return st;
    if ((st = kl_modelfile_load(v->path, 1, &l->src, err)) != KL_OK)
        return st;
    /* What it publishes continues this version: its lineage says so (the run and checkpoint
     * stay the source's). */
    l->src->lineage.parent_version = v->number;
    if ((st = kl__modelfile_set_lineage(&l->src->lineage.parent, v->path, err)) != KL_OK)
        return st;
    kl_model_options o = l->src->m.opts;
    o.batch = l->cfg.batch_size;
    o.trainable = true;
    o.inference = false;
    if ((st = kl_model_build(&l->src->cfg->model, &o, &l->lm, err)) != KL_OK)
        return st;
    l->built = true;
    kl_graph *g = l->lm.g, *from = l->src->m.g;
    size_t np = kl_graph_param_count(g), nb = kl_graph_buffer_count(g);
    if (np != kl_graph_param_count(from) || nb != kl_graph_buffer_count(from))
        return kl_error_set(err, KL_EFORMAT,
                            "%s: the trainable model has %zu parameters and %zu buffers, the "
                            "served one %zu and %zu",
                            v->path, np, nb, kl_graph_param_count(from),
                            kl_graph_buffer_count(from));
    memcpy(kl_graph_params(g), kl_graph_params(from), np * sizeof(float));
    memcpy(kl_graph_buffers(g), kl_graph_buffers(from), nb * sizeof(float));
    /* SGD: momentum 0. The gradients' norm is checked too: one sample can make it overflow. */
    kl_step_config sc = {.optim = kl_optim_defaults(l->cfg.optimizer),
                         .lr = {.kind = KL_LR_CONSTANT, .base_lr = l->cfg.lr},
                         .check_grads = true};
    if (!(l->step = kl_step_new(g, &sc, err)))
        return err->status;
    if (!(l->classes = malloc((size_t)l->cfg.batch_size * sizeof *l->classes)))
        return kl_error_set(err, KL_ENOMEM, "out of memory starting the online learner");
    l->ready = true;
    return KL_OK;
}

/* Puts b raw samples (standardised as kl_modelfile_predict does) and their answers into the
 * graph's inputs. */
static kl_status load_batch(kl__learner *l, const float *x, const void *y, int64_t b, int64_t first,
                            kl_error *err)
{
    kl_graph *g = l->lm.g;
    bool cls = l->src->sig.task == KL_TASK_CLASSIFICATION;
    size_t ysize = cls ? sizeof(int32_t) : (size_t)l->src->sig.outputs * sizeof(float);
    memcpy(kl_graph_value(g, l->lm.y)->data, y, (size_t)b * ysize);
    return kl__modelfile_put_inputs(l->src, x, b, first, kl_f32(kl_graph_value(g, l->lm.x)), err);
}

/* One SGD step on samples [first, first + b) of fb. Before it, the model's predictions for them
 * (eval mode, the weights as they are) go to the drift monitor of the version fb names, which
 * keeps its windowed accuracy or error. */
static kl_status take_step(kl__learner *l, kl__feedback *fb, int64_t first, int64_t b,
                           kl_error *err)
{
    kl_graph *g = l->lm.g;
    const kl_modelfile_signature *sig = &l->src->sig;
    bool cls = sig->task == KL_TASK_CLASSIFICATION;
    int64_t k = sig->outputs;
    const float *x = fb->x + first * sig->features;
    const void *y =
        (const char *)fb->y + (size_t)first * (cls ? sizeof(int32_t) : (size_t)k * sizeof(float));
    kl_status st = KL_OK;
    if (b != kl_graph_batch(g) && (st = kl_graph_set_batch(g, b, err)) != KL_OK)
        return st;
    kl_graph_set_mode(g, KL_MODE_EVAL);
    if ((st = load_batch(l, x, y, b, first, err)) != KL_OK ||
        (st = kl_graph_forward(g, err)) != KL_OK)
        return st;
    const float *out = kl_f32(kl_graph_value(g, l->lm.output));
    if (cls)
        for (int64_t i = 0; i < b; i++) {
            int64_t best = 0;
            for (int64_t j = 1; j < k; j++)
                best = out[i * k + j] > out[i * k + best] ? j : best;
            l->classes[i] = (int32_t)best;
        }
    kl__drift_feedback(fb->v, cls ? l->classes : NULL, cls ? NULL : out, y, b);

    kl_graph_set_mode(g, KL_MODE_TRAIN);
    kl_step_begin(l->step);
    float loss = 0;
    if ((st = load_batch(l, x, y, b, first, err)) != KL_OK ||
        (st = kl_step_pass(l->step, l->src->cfg->train.seed, l->steps, 0, &loss, err)) != KL_OK)
        return st;
    if (kl_step_end(l->step, l->steps, loss, err) != KL_OK)
        return kl_error_set(err, KL_ERANGE,
                            "model %s: the loss (%g) or its gradient became non-finite at online "
                            "step %lld; the step was not taken: lower online_learning.lr",
                            l->m->name, (double)loss, (long long)l->steps + 1);
    l->steps++;
    l->since_steps++;
    l->since_samples += b;
    l->since_loss += (double)loss * (double)b;
    return KL_OK;
}

/* ---- publishing ---- */

static kl_status fsync_dir(const char *dir, kl_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return kl_error_set(err, KL_EIO, "cannot sync the folder %s: %s", dir, strerror(e));
    }
    close(fd);
    return KL_OK;
}

/* The largest version number named by a folder entry of dir (0 for none). */
static int64_t max_in_dir(const char *dir)
{
    int64_t most = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char *end = NULL;
        long long x = strtoll(e->d_name, &end, 10);
        if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && !*end && x > most)
            most = x;
    }
    if (d)
        closedir(d);
    return most;
}

/* One more than every version the model has: served, or a folder of the repository or of the
 * learner's temporary folder. */
static int64_t next_version(kl__learner *l)
{
    kl_server *s = l->s;
    kl__model *m = l->m;
    int64_t most = max_in_dir(m->dir), t = max_in_dir(l->tmp_dir);
    most = t > most ? t : most;
    pthread_rwlock_rdlock(&s->lock);
    for (int i = 0; i < m->nversions; i++)
        most = m->versions[i]->number > most ? m->versions[i]->number : most;
    pthread_rwlock_unlock(&s->lock);
    return most + 1;
}

/* Marks dir as a version online learning wrote: pruning (repo.c) takes no other. */
static kl_status write_marker(const kl__learner *l, const char *dir, kl_error *err)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/%s", dir, KL__ONLINE_MARKER);
    FILE *f = fopen(p, "w");
    if (!f)
        return kl_error_set(err, KL_EIO, "cannot write %s: %s", p, strerror(errno));
    fprintf(f,
            "{\"published_by\":\"kiln serve online learning\",\"model\":\"%s\",\"steps\":%lld}\n",
            l->m->name, (long long)l->steps);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    return ok ? KL_OK : kl_error_set(err, KL_EIO, "cannot write %s: %s", p, strerror(errno));
}

/* Writes the learner's weights as version *number of the model: with persist, a folder of the
 * repository made by renaming a complete temporary one (so no poll sees half of it); else a
 * folder of the learner's temporary folder. *number moves past numbers another writer took. */
static kl_status write_version(kl__learner *l, int64_t *number, kl_error *err)
{
    kl__model *m = l->m;
    const char *parent = l->cfg.persist ? m->dir : l->tmp_dir;
    char tmp[4200], file[4300], dir[4200];
    if (l->cfg.persist)
        snprintf(tmp, sizeof tmp, "%s/.online-%lld.%ld.tmp", parent, (long long)*number,
                 (long)getpid());
    else
        snprintf(tmp, sizeof tmp, "%s/%lld", parent, (long long)*number);
    if (mkdir(tmp, 0755) != 0)
        return kl_error_set(err, KL_EIO, "cannot create the folder %s: %s", tmp, strerror(errno));
    snprintf(file, sizeof file, "%s/model.h5", tmp);
    kl_graph *g = l->lm.g;
    kl_status st = kl_modelfile_save(l->src, kl_graph_params(g), kl_graph_buffers(g), file, err);
    if (st == KL_OK)
        st = write_marker(l, tmp, err);
    if (st != KL_OK || !l->cfg.persist) {
        if (st != KL_OK)
            kl__serve_remove_version(tmp);
        return st;
    }
    /* Claim a free number with an empty folder, then rename the complete one over it. */
    for (int tries = 0;; tries++) {
        snprintf(dir, sizeof dir, "%s/%lld", parent, (long long)*number);
        if (mkdir(dir, 0755) == 0)
            break;
        if (errno != EEXIST || tries == 1000) {
            st = kl_error_set(err, KL_EIO, "cannot create the version folder %s: %s", dir,
                              strerror(errno));
            break;
        }
        ++*number;
    }
    if (st == KL_OK && rename(tmp, dir) != 0) {
        st = kl_error_set(err, KL_EIO, "cannot rename %s to %s: %s", tmp, dir, strerror(errno));
        rmdir(dir);
    }
    if (st != KL_OK) {
        kl__serve_remove_version(tmp);
        return st;
    }
    return fsync_dir(parent, err);
}

/* Tells kl_serve_options' on_publish about the version just published (before the lineage
 * moves on to it), and starts counting for the next one. */
static void tell_published(kl__learner *l, const char *dir, int64_t number)
{
    const kl_serve_options *o = &l->s->o;
    char *settings = NULL;
    size_t len = 0;
    FILE *f = o->on_publish ? open_memstream(&settings, &len) : NULL;
    if (f) {
        kl__print_section(&online_section, &l->cfg, f, 0);
        if (fclose(f) != 0) {
            free(settings);
            settings = NULL;
        }
    }
    if (o->on_publish) {
        kl_serve_publication p = {
            .model = l->m->name,
            .dir = dir,
            .version = number,
            .lineage = &l->src->lineage,
            .cfg = l->src->cfg,
            .settings = settings ? settings : "",
            .steps = l->steps,
            .new_steps = l->since_steps,
            .feedback = l->since_samples,
            .loss = l->since_samples ? l->since_loss / (double)l->since_samples : NAN,
            .start = l->since_start};
        o->on_publish(o->publish_ctx, &p);
    }
    free(settings);
    l->since_steps = 0;
    l->since_samples = 0;
    l->since_loss = 0;
    l->since_start = 0;
}

/* Publishes the weights as a new version and has the server serve it; 0 on failure (logged:
 * the learner keeps learning). */
static int64_t publish(kl__learner *l)
{
    kl_server *s = l->s;
    kl__model *m = l->m;
    if (atomic_load(&s->stopping)) {
        kl__serve_log(s, "model %s: online learning does not publish while the server stops",
                      m->name);
        return 0;
    }
    kl_error err = {0};
    int64_t number = next_version(l);
    double t0 = kl_now();
    kl_status st = write_version(l, &number, &err);
    if (st == KL_OK)
        st = s->publish(s, m, number, &err);
    if (st != KL_OK) {
        kl__serve_log(s, "model %s: online learning could not publish version %lld: %s", m->name,
                      (long long)number, err.msg);
        return 0;
    }
    kl__serve_log(s,
                  "model %s: online learning published version %lld after %lld steps (%s, %.2f s)",
                  m->name, (long long)number, (long long)l->steps,
                  l->cfg.persist ? "in the repository" : "not persisted", kl_now() - t0);
    char dir[4200], file[4300];
    snprintf(dir, sizeof dir, "%s/%lld", l->cfg.persist ? m->dir : l->tmp_dir, (long long)number);
    snprintf(file, sizeof file, "%s/model.h5", dir);
    tell_published(l, dir, number);
    /* The next version continues this one. */
    if (kl__modelfile_set_lineage(&l->src->lineage.parent, file, &err) == KL_OK)
        l->src->lineage.parent_version = number;
    return number;
}

/* ---- the learner thread ---- */

static void learn(kl__learner *l, kl__feedback *fb)
{
    kl_error err = {0};
    kl_status st = KL_OK;
    if (!l->ready && (st = learner_init(l, fb->v, &err)) != KL_OK) {
        kl__serve_log(l->s, "model %s: the online learner cannot start: %s", l->m->name, err.msg);
        learner_reset(l);
    }
    for (int64_t i = 0; st == KL_OK && i < fb->n; i += l->cfg.batch_size) {
        int64_t b = fb->n - i < l->cfg.batch_size ? fb->n - i : l->cfg.batch_size;
        if (l->since_start == 0)
            l->since_start = kl_wall_now();
        if ((st = take_step(l, fb, i, b, &err)) != KL_OK)
            break;
        if (++l->unpublished >= l->cfg.publish_every) {
            l->unpublished = 0;
            int64_t v = publish(l);
            fb->published = v ? v : fb->published;
        }
    }
    fb->steps = l->steps;
    fb->status = st;
    if (st != KL_OK)
        snprintf(fb->error, sizeof fb->error, "%s", err.msg);
}

static void *learner_main(void *arg)
{
    kl__learner *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->head && !l->closing)
            pthread_cond_wait(&l->cv, &l->mu);
        kl__feedback *fb = l->head;
        if (!fb)
            break;
        l->head = fb->next;
        if (!l->head)
            l->tail = NULL;
        l->queued--;
        pthread_mutex_unlock(&l->mu);
        learn(l, fb);
        atomic_store(&fb->done, true);
        fb->done_fn(fb); /* may free fb */
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static kl__learner *learner_new(kl_server *s, kl__model *m, const kl_serve_online_config *cfg,
                                kl_error *err)
{
    kl__learner *l = calloc(1, sizeof *l);
    if (!l) {
        kl_error_set(err, KL_ENOMEM, "out of memory starting the online learner");
        return NULL;
    }
    *l = (kl__learner){.s = s, .m = m, .cfg = *cfg};
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, learner_main, l) == 0) {
        kl__serve_log(s,
                      "model %s: online learning started (%s, lr %g, batches of %d, a version "
                      "every %lld steps%s)",
                      m->name, cfg->optimizer == KL_OPTIM_SGD ? "sgd" : "adam", (double)cfg->lr,
                      cfg->batch_size, (long long)cfg->publish_every,
                      cfg->persist ? ", written to the repository" : ", not persisted");
        return l;
    }
    kl_error_set(err, KL_ENOMEM, "cannot start the online learner of model %s", m->name);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
    return NULL;
}

kl_status kl__learn_submit(kl_server *s, kl__feedback *fb, kl_error *err)
{
    kl__model *m = fb->v->model;
    pthread_mutex_lock(&s->learn_mu);
    kl__learner *l = m->learner;
    if (!l)
        l = m->learner = learner_new(s, m, &fb->v->cfg.online, err);
    pthread_mutex_unlock(&s->learn_mu);
    if (!l)
        return err->status;
    pthread_mutex_lock(&l->mu);
    if (l->closing || l->queued >= l->cfg.max_queue) {
        pthread_mutex_unlock(&l->mu);
        return kl_error_set(err, KL_EFULL,
                            "model %s's online learner has %d feedback requests waiting: try "
                            "again later",
                            m->name, l->cfg.max_queue);
    }
    fb->next = NULL;
    if (l->tail)
        l->tail->next = fb;
    else
        l->head = fb;
    l->tail = fb;
    l->queued++;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return KL_OK;
}

/* Removes the learner's temporary folder: DIR/<version>/ as the learner wrote them, and nothing
 * else. */
static void remove_tmp_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        kl__serve_remove_version(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void learner_free(kl__learner *l)
{
    pthread_mutex_lock(&l->mu);
    l->closing = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL); /* it answers what is queued first */
    learner_reset(l);
    if (l->tmp_dir) {
        pthread_mutex_lock(&l->s->admin);
        l->m->publish_dir = NULL;
        pthread_mutex_unlock(&l->s->admin);
        remove_tmp_dir(l->tmp_dir);
        free(l->tmp_dir);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l);
}

void kl__learn_stop_all(kl_server *s)
{
    pthread_mutex_lock(&s->learn_mu);
    for (int i = 0; i < s->nmodels; i++) {
        kl__model *m = s->models[i];
        if (m->learner)
            learner_free(m->learner);
        m->learner = NULL;
    }
    pthread_mutex_unlock(&s->learn_mu);
}
