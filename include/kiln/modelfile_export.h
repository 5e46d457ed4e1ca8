/* `kiln export`: a model file (kiln/modelfile.h) from a training checkpoint. It lives in
 * trainers/ (trainers/modelfile_export.c) because what it adds to the checkpoint's model comes
 * from the training data: the class names a data set implies and the reference statistics of the
 * training inputs and outputs. The file is written by the model file's own writer. */
#ifndef KILN_MODELFILE_EXPORT_H
#define KILN_MODELFILE_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/modelfile.h"
#include "kiln/status.h"

/* Training samples the reference statistics are computed over unless told otherwise. */
#define KL_MODELFILE_REFERENCE_SAMPLES 10000

typedef struct kl_modelfile_export_options {
    const char *labels_file;   /* class names, one a line; NULL: from data.dataset or "0".."K-1" */
    int64_t reference_samples; /* 0: KL_MODELFILE_REFERENCE_SAMPLES */
    bool no_reference;         /* write no /reference (and load no training data) */
    bool onnx; /* write an ONNX model (docs/onnx.md) instead: no reference statistics */
} kl_modelfile_export_options;

/* Writes the model file out_path from checkpoint ckpt_path, atomically: the weights layout, the
 * signature, class labels and (unless no_reference) reference statistics of the training data
 * the checkpoint's config names, which must then be loadable here. With o->onnx, an ONNX model
 * of the same network, standardisation and class names instead (no training data read). */
kl_status kl_modelfile_export(const char *ckpt_path, const char *out_path,
                              const kl_modelfile_export_options *o, kl_error *err);

#endif
