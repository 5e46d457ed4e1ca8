/* The model file's parts (include/kiln/modelfile.h keeps them opaque) and the steps that
 * assemble, write and feed one: the internal API of the format for those who build or train a
 * model file rather than only score it. Used by its reader runtime/modelfile.c and its writer
 * runtime/modelfile_write.c, by kiln export (trainers/modelfile_export.c: a model file assembled
 * from a checkpoint and the training data) and by kiln serve's online learning (a copy of a
 * served model trained on its raw inputs). Scoring and reading a model file need only the public
 * header. */
#ifndef KILN_MODELFILE_PARTS_H
#define KILN_MODELFILE_PARTS_H

#include "kiln/modelfile.h"
#include "kiln/onnx.h"
#include "runtime/h5.h"

/* The HDF5 names of the signature, shared by the writer and the reader. */
#define KL__MODELFILE_INPUT_NAME "input"
#define KL__MODELFILE_DATATYPE   "FP32"

struct kl_modelfile {
    char *path;
    char *config_text; /* /config, the resolved training config */
    kl_config *cfg;    /* parsed from it */
    kl_model m;        /* built for max_batch, eval mode, weights loaded: outputs only */
    bool built;
    kl_model score;    /* the same model with its loss, for scoring against answers: built */
    bool score_built;  /* on the first kl_modelfile_evaluate that brings them */
    int threads;       /* kl_modelfile_set_threads's, for score when it is built; 0: not set */
    float *mean, *std; /* standardisation (nstats values each), or NULL */
    kl_modelfile_signature sig;
    char **labels; /* classification: outputs class names */
    int nlabels;
    bool has_ref;
    kl_modelfile_reference ref; /* views into ref_data */
    float *ref_data;
    double *exps; /* (outputs): softmax scratch */
    kl_modelfile_lineage lineage;
    kl_onnx *onnx;  /* an ONNX model (runtime/modelfile_onnx.c): no config, model or labels */
    float *onnx_io; /* its inputs (max_batch, features) then outputs (max_batch, outputs) */
    void *xgb;      /* an XGBoost booster (runtime/modelfile_xgb.c): no config, model or graph */
    float *xgb_in;  /* its inputs (xgb_max_batch, features) */
    int64_t xgb_max_batch;
    bool xgb_binary; /* binary:logistic: one probability a row, given as two classes */
};

/* Sets a lineage field (a copy of value; NULL clears it). */
kl_status kl__modelfile_set_lineage(char **field, const char *value, kl_error *err);

/* Opens path (a kiln-model file, or with model false a checkpoint) and builds its model with the
 * weights and statistics loaded; for a model file also reads /signature, /labels and
 * /reference. */
kl_status kl__modelfile_open(const char *path, bool model, int64_t max_batch,
                             const kl_device_choice *dev, kl_modelfile **out, kl_error *err);

/* The class names a data set implies: Fashion-MNIST's for data.dataset fashion-mnist, else
 * "0".."K-1" (also without a config). Replaces mf->labels. */
kl_status kl__modelfile_default_labels(kl_modelfile *mf, kl_error *err);

/* Writes mf as a model file at path, atomically, with model m's weights (mf's own model, or a
 * copy of it holding other weights) and reference statistics ref (NULL: none; the seed written is
 * mf's train.seed, the one they were drawn with). */
kl_status kl__modelfile_write(const kl_modelfile *mf, const kl_model *m,
                              const kl_modelfile_reference *ref, const char *path, kl_error *err);

/* Writes mf (a model built from a checkpoint) to path as an ONNX model of opset 17, atomically
 * (runtime/modelfile_onnx_write.c): the standardisation as Sub and Div at the input, the layers in
 * inference form, Softmax after a classifier's head, the task and class names in metadata_props.
 * A layer ONNX export cannot express yet is refused, naming it. */
kl_status kl__modelfile_write_onnx(kl_modelfile *mf, const char *path, kl_error *err);

/* Copies b raw samples x (b, features) into dst standardised with mf's statistics, as
 * kl_modelfile_predict does; KL_EINVAL for a NaN or Inf, naming its sample (first + row). */
kl_status kl__modelfile_put_inputs(const kl_modelfile *mf, const float *x, int64_t b, int64_t first,
                                   float *dst, kl_error *err);

/* Scores like kl_modelfile_evaluate; y and score may be NULL. */
kl_status kl__modelfile_run(kl_modelfile *mf, const float *x, const void *y, int64_t n, float *out,
                            int32_t *classes, kl_modelfile_score *score, kl_error *err);

/* ONNX models (runtime/modelfile_onnx.c): whether a path names one (by its .onnx extension),
 * opening one, and scoring it (out and classes as kl__modelfile_run; answers y are refused). */
bool kl__modelfile_is_onnx(const char *path);
kl_status kl__modelfile_open_onnx(const char *path, int64_t max_batch, kl_modelfile **out,
                                  kl_error *err);
kl_status kl__modelfile_run_onnx(kl_modelfile *mf, const float *x, const void *y, int64_t n,
                                 float *out, int32_t *classes, kl_error *err);

/* XGBoost models (runtime/modelfile_xgb.c): whether a path names one (.json or .ubj, as XGBoost
 * saves them), opening one through libxgboost's C API, freeing its booster, and scoring it (out
 * and classes as kl__modelfile_run; answers y are refused). */
bool kl__modelfile_is_xgboost(const char *path);
kl_status kl__modelfile_open_xgb(const char *path, int64_t max_batch, kl_modelfile **out,
                                 kl_error *err);
void kl__modelfile_free_xgb(kl_modelfile *mf);
kl_status kl__modelfile_run_xgb(kl_modelfile *mf, const float *x, const void *y, int64_t n,
                                float *out, int32_t *classes, kl_error *err);

#endif
