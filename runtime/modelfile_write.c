/* The model file's writer (include/kiln/modelfile.h, docs/formats.md): a kiln-model file is the
 * checkpoint's weights layout (kl_ckpt_write_weights) plus /signature, /labels and /reference,
 * written to a temporary file renamed into place. Everything that knows where these live in the
 * file is here or in its reader, runtime/modelfile.c; `kiln export` (trainers/modelfile_export.c)
 * computes what goes in from a checkpoint and its training data, and kiln serve's online learning
 * publishes its versions with kl_modelfile_save. */
#include <limits.h>
#include <string.h>

#include "kiln/ckpt.h"
#include "runtime/modelfile_parts.h"

/* An int64 array attribute (h5py reads it as a numpy array). */
static bool put_i64s_attr(hid_t obj, const char *name, const int64_t *v, int n)
{
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL), a = -1;
    bool ok = sp >= 0 &&
              (a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT)) >= 0 &&
              H5Awrite(a, H5T_NATIVE_INT64, v) >= 0;
    kl__h5_close(a, H5Aclose);
    kl__h5_close(sp, H5Sclose);
    return ok;
}

static hid_t new_group(hid_t loc, const char *name)
{
    return H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static bool put_table(hid_t loc, const char *group, const float *edges, const float *props,
                      int64_t rows, bool one_d)
{
    const int64_t B = KL_MODELFILE_BINS;
    hid_t g = new_group(loc, group);
    int64_t de[2] = {rows, B + 1}, dp[2] = {rows, B};
    bool ok = g >= 0 && (!edges || kl__h5_put_f32(g, "edges", edges, 2, de)) &&
              kl__h5_put_f32(g, "proportions", props, one_d ? 1 : 2, one_d ? &rows : dp);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static bool put_reference(hid_t file, const kl_modelfile *mf, const kl_modelfile_reference *r)
{
    int64_t f = mf->sig.features, k = mf->sig.outputs;
    hid_t g = new_group(file, "reference");
    bool cls = mf->sig.task == KL_TASK_CLASSIFICATION;
    bool ok =
        g >= 0 && kl__h5_put_i64(g, "samples", r->samples) &&
        kl__h5_put_i64(g, "seed", (int64_t)mf->cfg->train.seed) &&
        kl__h5_put_i64(g, "bins", KL_MODELFILE_BINS) &&
        kl__h5_put_str(g, "source",
                       "the training split of /config (data.train or data.dataset, after "
                       "data.limit and the validation split), raw values before standardisation") &&
        kl__h5_put_str(g, "method",
                       "edges: min, deciles and max by linear interpolation (numpy.quantile's "
                       "default); bin b holds edges[b] <= v < edges[b+1], the last bin also v == "
                       "edges[10]") &&
        put_table(g, "input", r->input_edges, r->input_proportions, f, false);
    if (ok && cls)
        ok = put_table(g, "labels", NULL, r->label_proportions, k, true) &&
             put_table(g, "predictions", NULL, r->predicted_proportions, k, true);
    else if (ok)
        ok = put_table(g, "targets", r->target_edges, r->target_proportions, k, false) &&
             put_table(g, "predictions", r->prediction_edges, r->prediction_proportions, k, false);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static bool put_signature_entry(hid_t loc, const char *name, const kl_shape *per_sample)
{
    int64_t shape[KL_MAX_DIMS + 1] = {-1};
    for (int i = 0; i < per_sample->ndim; i++)
        shape[i + 1] = per_sample->d[i];
    hid_t g = new_group(loc, name);
    bool ok = g >= 0 && kl__h5_put_str(g, "datatype", KL__MODELFILE_DATATYPE) &&
              put_i64s_attr(g, "shape", shape, per_sample->ndim + 1);
    kl__h5_close(g, H5Gclose);
    return ok;
}

static bool put_signature(hid_t file, const kl_modelfile *mf)
{
    const kl_modelfile_signature *s = &mf->sig;
    kl_shape out = KL_SHAPE(s->outputs);
    hid_t g = new_group(file, "signature"), in = -1, o = -1;
    bool ok = g >= 0 &&
              kl__h5_put_str(g, "task",
                             s->task == KL_TASK_CLASSIFICATION ? "classification" : "regression") &&
              (in = new_group(g, "inputs")) >= 0 &&
              put_signature_entry(in, s->input_name, &s->input) &&
              (o = new_group(g, "outputs")) >= 0 && put_signature_entry(o, s->output_name, &out);
    kl__h5_close(o, H5Gclose);
    kl__h5_close(in, H5Gclose);
    kl__h5_close(g, H5Gclose);
    return ok;
}

/* Says in words what /preprocessing holds, for readers other than kiln. */
static bool describe_preprocessing(hid_t file, const kl_modelfile *mf)
{
    int64_t n = mf->sig.nstats;
    hid_t g = H5Gopen2(file, "preprocessing", H5P_DEFAULT);
    bool ok = g >= 0 &&
              kl__h5_put_str(g, "standardize",
                             n == 0   ? "none"
                             : n == 1 ? "global"
                                      : "feature") &&
              kl__h5_put_str(g, "formula", "x' = (x - mean) / std, in float32, before the model");
    kl__h5_close(g, H5Gclose);
    return ok;
}

/* /lineage: only the fields that are known. */
static bool put_lineage(hid_t file, const kl_modelfile_lineage *l)
{
    if (!l->run && !l->checkpoint && !l->parent && !l->parent_version)
        return true;
    hid_t g = new_group(file, "lineage");
    bool ok = g >= 0 && (!l->run || kl__h5_put_str(g, "run", l->run)) &&
              (!l->checkpoint || kl__h5_put_str(g, "checkpoint", l->checkpoint)) &&
              (!l->parent || kl__h5_put_str(g, "parent", l->parent)) &&
              (!l->parent_version || kl__h5_put_i64(g, "parent_version", l->parent_version));
    kl__h5_close(g, H5Gclose);
    return ok;
}

kl_status kl__modelfile_write(const kl_modelfile *mf, const kl_model *m,
                              const kl_modelfile_reference *ref, const char *path, kl_error *err)
{
    char tmp[PATH_MAX];
    int64_t f =
        kl_ckpt_create(path, KL_MODEL_FORMAT, KL_MODEL_FORMAT_VERSION, tmp, sizeof tmp, err);
    if (f < 0)
        return err ? err->status : KL_EIO;
    kl_status st =
        kl_ckpt_write_weights(f, mf->config_text, m, mf->mean, mf->std, mf->sig.nstats, err);
    if (st == KL_OK) {
        kl__h5_quiet q = kl__h5_quiet_begin();
        bool ok = describe_preprocessing(f, mf) && put_signature(f, mf) &&
                  (mf->nlabels == 0 ||
                   kl__h5_put_strings(f, "labels", (const char *const *)mf->labels, mf->nlabels)) &&
                  (!ref || put_reference(f, mf, ref)) && put_lineage(f, &mf->lineage);
        kl__h5_quiet_end(q);
        if (!ok)
            st = kl_error_set(err, KL_EIO, "cannot write the model file %s (disk full?)", tmp);
    }
    return kl_ckpt_commit(f, tmp, path, st == KL_OK, err);
}

kl_status kl_modelfile_save(const kl_modelfile *mf, const float *params, const float *buffers,
                            const char *path, kl_error *err)
{
    if (mf->onnx || mf->xgb)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: saving an %s model as a kiln model file is not supported yet",
                            mf->path, mf->onnx ? "ONNX" : "XGBoost");
    /* A copy of the model to hold the weights: mf's own may be scoring on another thread. */
    kl_model m;
    kl_model_options o = mf->m.opts;
    o.batch = 1;
    o.trainable = false;
    o.inference = false;
    kl_status st = kl_model_build(&mf->cfg->model, &o, &m, err);
    if (st != KL_OK)
        return st;
    kl_graph *from = mf->m.g;
    size_t np = kl_graph_param_count(m.g), nb = kl_graph_buffer_count(m.g);
    KL_ASSERT(np == kl_graph_param_count(from) && nb == kl_graph_buffer_count(from));
    memcpy(kl_graph_params(m.g), params ? params : kl_graph_params(from), np * sizeof(float));
    memcpy(kl_graph_buffers(m.g), buffers ? buffers : kl_graph_buffers(from), nb * sizeof(float));
    st = kl__modelfile_write(mf, &m, kl_modelfile_ref(mf), path, err);
    kl_model_free(&m);
    return st;
}
