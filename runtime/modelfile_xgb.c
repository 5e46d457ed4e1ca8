/* XGBoost models behind the model-file API (include/kiln/modelfile.h): a booster saved by XGBoost
 * as JSON or UBJSON (xgboost.json, xgboost.ubj: Triton FIL's names) opened as a kl_modelfile
 * through libxgboost's C API, so that kiln predict and kiln serve score it with the calls they use
 * for kiln's own files, batched like any model. The signature comes from the booster: its feature
 * count (XGBoosterGetNumFeature), its objective (XGBoosterSaveJsonConfig) and the shape of one
 * prediction. multi:softprob and binary:logistic are classifiers (class probabilities, classes
 * "0".."K-1"); every other objective is a regression whose outputs are what the booster predicts.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xgboost/c_api.h>

#include "runtime/modelfile_parts.h"

/* The largest input and output widths taken (floats per sample). */
#define XGB_MAX_FEATURES (1 << 24)
#define XGB_MAX_OUTPUTS  (1 << 20)

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

bool kl__modelfile_is_xgboost(const char *path)
{
    return ends_with(path, ".json") || ends_with(path, ".ubj");
}

/* XGBoost's last error without its "[time] source:line: " prefix and its stack trace. */
static kl_status xgb_error(const kl_modelfile *mf, const char *what, kl_error *err)
{
    const char *m = XGBGetLastError(), *end;
    if (m[0] == '[' && (end = strstr(m, "] ")) && (end = strstr(end + 2, ": ")))
        m = end + 2;
    end = strstr(m, "\nStack trace:");
    int len = end ? (int)(end - m) : (int)strlen(m);
    while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == ' '))
        len--;
    return kl_error_set(err, KL_EFORMAT, "%s: XGBoost %s: %.*s", mf->path, what,
                        len > 400 ? 400 : len, m);
}

/* The booster's objective ("multi:softprob", "reg:squarederror", ...) into name. */
static kl_status objective(kl_modelfile *mf, char *name, size_t size, kl_error *err)
{
    bst_ulong len = 0;
    const char *text = NULL;
    if (XGBoosterSaveJsonConfig(mf->xgb, &len, &text) != 0)
        return xgb_error(mf, "cannot give its config", err);
    json_error_t je;
    json_t *cfg = json_loadb(text, (size_t)len, 0, &je);
    const char *obj = json_string_value(
        json_object_get(json_object_get(json_object_get(cfg, "learner"), "objective"), "name"));
    kl_status st =
        obj ? KL_OK
            : kl_error_set(err, KL_EFORMAT,
                           "%s: the booster's config names no learner.objective.name", mf->path);
    if (obj)
        snprintf(name, size, "%s", obj);
    json_decref(cfg);
    return st;
}

/* Scores b rows of xb (b, features) into the booster's own output buffer: *res, *per_row values
 * a row. */
static kl_status predict_raw(kl_modelfile *mf, const float *xb, int64_t b, const float **res,
                             int64_t *per_row, kl_error *err)
{
    char values[160];
    snprintf(values, sizeof values,
             "{\"data\": [%llu, true], \"shape\": [%lld, %lld], \"typestr\": \"<f4\", "
             "\"version\": 3}",
             (unsigned long long)(uintptr_t)xb, (long long)b, (long long)mf->sig.features);
    static const char config[] = "{\"type\": 0, \"training\": false, \"iteration_begin\": 0, "
                                 "\"iteration_end\": 0, \"strict_shape\": false, "
                                 "\"missing\": NaN, \"cache_id\": 0}";
    const bst_ulong *shape = NULL;
    bst_ulong dim = 0;
    if (XGBoosterPredictFromDense(mf->xgb, values, config, NULL, &shape, &dim, res) != 0)
        return xgb_error(mf, "prediction failed", err);
    bst_ulong total = 1;
    for (bst_ulong i = 0; i < dim; i++)
        total *= shape[i];
    if (dim < 1 || dim > 2 || shape[0] != (bst_ulong)b || total % (bst_ulong)b != 0)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: the booster predicts %llu values of %llu axes for %lld rows; "
                            "kiln serves one row of values per sample",
                            mf->path, (unsigned long long)total, (unsigned long long)dim,
                            (long long)b);
    *per_row = (int64_t)(total / (bst_ulong)b);
    return KL_OK;
}

/* The signature: features from the booster, task and outputs from its objective and from the
 * shape of one prediction (of a row of zeros). */
static kl_status xgb_signature(kl_modelfile *mf, kl_error *err)
{
    bst_ulong nf = 0;
    char obj[64];
    if (XGBoosterGetNumFeature(mf->xgb, &nf) != 0)
        return xgb_error(mf, "cannot give its feature count", err);
    if (nf < 1 || nf > XGB_MAX_FEATURES)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: the booster takes %llu features; kiln "
                            "serves 1 to %d",
                            mf->path, (unsigned long long)nf, XGB_MAX_FEATURES);
    kl_status st = objective(mf, obj, sizeof obj, err);
    if (st)
        return st;
    if (!strcmp(obj, "multi:softmax"))
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: objective multi:softmax predicts class indices; kiln serves "
                            "class probabilities, and a multi:softmax booster is not supported "
                            "yet: train it with objective multi:softprob (XGBClassifier's default)",
                            mf->path);
    mf->sig.features = (int64_t)nf;
    float *zeros = calloc((size_t)nf, sizeof *zeros);
    const float *res;
    int64_t per_row = 0;
    st = zeros ? predict_raw(mf, zeros, 1, &res, &per_row, err)
               : kl_error_set(err, KL_ENOMEM, "out of memory");
    free(zeros);
    if (st)
        return st;
    bool binary = !strcmp(obj, "binary:logistic");
    if (per_row > XGB_MAX_OUTPUTS || (binary && per_row != 1))
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: the booster (objective %s) predicts %lld values a row; kiln "
                            "serves %s",
                            mf->path, obj, (long long)per_row,
                            binary ? "one probability a row for binary:logistic" : "at most 2^20");
    bool cls = binary || !strcmp(obj, "multi:softprob");
    mf->sig.input_name = KL__MODELFILE_INPUT_NAME;
    mf->sig.output_name = cls ? "probabilities" : "predictions";
    mf->sig.datatype = KL__MODELFILE_DATATYPE;
    mf->sig.input = KL_SHAPE(mf->sig.features);
    mf->sig.outputs = binary ? 2 : (int)per_row;
    mf->sig.task = cls ? KL_TASK_CLASSIFICATION : KL_TASK_REGRESSION;
    mf->sig.nstats = 0;
    mf->xgb_binary = binary;
    return kl__modelfile_default_labels(mf, err);
}

kl_status kl__modelfile_open_xgb(const char *path, int64_t max_batch, kl_modelfile **out,
                                 kl_error *err)
{
    kl_modelfile *mf = calloc(1, sizeof *mf);
    *out = NULL;
    if (!mf || !(mf->path = strdup(path))) {
        free(mf);
        return kl_error_set(err, KL_ENOMEM, "out of memory loading %s", path);
    }
    kl_status st = KL_OK;
    FILE *f = fopen(path, "rb");
    if (!f) {
        st = kl_error_set(err, KL_EIO, "cannot open the XGBoost model %s: %s", path,
                          strerror(errno));
        kl_modelfile_free(mf);
        return st;
    }
    fclose(f);
    if (XGBoosterCreate(NULL, 0, &mf->xgb) != 0)
        st = xgb_error(mf, "cannot create a booster", err);
    else if (XGBoosterLoadModel(mf->xgb, path) != 0)
        st = xgb_error(mf, "cannot load the model", err);
    if (!st)
        st = xgb_signature(mf, err);
    /* The scoring buffer, once: a request allocates nothing but what XGBoost does. */
    mf->xgb_max_batch = max_batch > 0 ? max_batch : 1;
    if (!st && (uint64_t)mf->xgb_max_batch > SIZE_MAX / sizeof(float) / (uint64_t)mf->sig.features)
        st = kl_error_set(err, KL_EINVAL, "%s: batches of %lld do not fit in memory", path,
                          (long long)max_batch);
    if (!st &&
        !(mf->xgb_in = malloc((size_t)(mf->xgb_max_batch * mf->sig.features) * sizeof *mf->xgb_in)))
        st = kl_error_set(err, KL_ENOMEM, "%s: out of memory for batches of %lld", path,
                          (long long)max_batch);
    if (st) {
        kl_modelfile_free(mf);
        return st;
    }
    *out = mf;
    return KL_OK;
}

void kl__modelfile_free_xgb(kl_modelfile *mf)
{
    if (mf->xgb)
        XGBoosterFree(mf->xgb);
    mf->xgb = NULL;
    free(mf->xgb_in);
    mf->xgb_in = NULL;
}

/* b rows of the booster's results res, per_row values each, as rows of the signature's outputs
 * into dst (b, outputs) unless NULL, binary:logistic's one probability p a row becoming
 * (1 - p, p); and a classifier's classes (b), the argmax of each row, unless NULL. */
static void take_rows(const kl_modelfile *mf, const float *res, int64_t b, int64_t per_row,
                      float *dst, int32_t *classes)
{
    int64_t k = mf->sig.outputs;
    bool binary = mf->xgb_binary;
    for (int64_t r = 0; r < b; r++) {
        const float *src = res + r * per_row;
        if (binary && dst) {
            dst[r * k] = 1.0f - src[0];
            dst[r * k + 1] = src[0];
        } else if (dst) {
            memcpy(dst + r * k, src, (size_t)k * sizeof *dst);
        }
        int32_t best = 0;
        for (int64_t j = 1; classes && !binary && j < k; j++)
            if (src[j] > src[best])
                best = (int32_t)j;
        if (classes)
            classes[r] = binary ? 1.0f - src[0] < src[0] : best;
    }
}

kl_status kl__modelfile_run_xgb(kl_modelfile *mf, const float *x, const void *y, int64_t n,
                                float *out, int32_t *classes, kl_error *err)
{
    if (y)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "%s: scoring against answers (labels or targets) is not supported for "
                            "XGBoost models yet; score the inputs alone",
                            mf->path);
    int64_t f = mf->sig.features, k = mf->sig.outputs, max_b = mf->xgb_max_batch;
    bool binary = mf->xgb_binary;
    kl_status st = KL_OK;
    for (int64_t s = 0; s < n && !st; s += max_b) {
        int64_t b = n - s < max_b ? n - s : max_b, per_row = 0;
        const float *res = NULL;
        if ((st = kl__modelfile_put_inputs(mf, x + s * f, b, s, mf->xgb_in, err)) ||
            (st = predict_raw(mf, mf->xgb_in, b, &res, &per_row, err)))
            break;
        if (per_row != (binary ? 1 : k))
            return kl_error_set(err, KL_EFORMAT,
                                "%s: the booster predicted %lld values a row, %lld at load",
                                mf->path, (long long)per_row, (long long)k);
        for (int64_t i = 0; i < b * per_row; i++)
            if (!(res[i] == res[i]) || res[i] - res[i] != 0)
                return kl_error_set(err, KL_ERANGE,
                                    "%s: the model's output for sample %lld (counting from 0) "
                                    "is %g",
                                    mf->path, (long long)(s + i / per_row), (double)res[i]);
        take_rows(mf, res, b, per_row, out ? out + s * k : NULL,
                  mf->sig.task == KL_TASK_CLASSIFICATION && classes ? classes + s : NULL);
    }
    return st;
}
