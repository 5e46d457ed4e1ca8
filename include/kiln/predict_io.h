/* `kiln predict`'s files around a model file (kiln/modelfile.h): inputs read from IDX, HDF5 or
 * CSV files and checked against the model's signature, with or without answers, and the
 * predictions written as HDF5 or CSV (`format = "kiln-predictions"`, docs/formats.md). They live
 * in trainers/ (trainers/predict_io.c) next to the data loaders they share. */
#ifndef KILN_PREDICT_IO_H
#define KILN_PREDICT_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln/data.h"
#include "kiln/modelfile.h"
#include "kiln/status.h"

/* Inputs for a model from a file: src->format (KL_DATA_NONE: from the name: .gz or -ubyte idx,
 * .h5 or .hdf5 hdf5, .csv csv) and src->path, with the answers when the file has them: the IDX
 * labels file src->labels, the HDF5 dataset src->y_dataset, the CSV column src->label_column.
 * Names left NULL default to those of the model's training source when it had the same format,
 * else x, y and label, and are then optional: out->y is NULL when the file has no answers.
 * Samples must have the model's input shape (size-1 axes aside), or be flat rows of as many
 * values (a CSV row for an image model); out->x is reshaped to the model's. */
kl_status kl_predict_read_input(const kl_modelfile *mf, const kl_data_source *src, kl_dataset *out,
                                kl_error *err);
/* The input format a file name implies, or KL_DATA_NONE. */
kl_data_format kl_predict_input_format(const char *path);

/* The predictions file's root `format` attribute and layout version (docs/formats.md). */
#define KL_PREDICTIONS_FORMAT         "kiln-predictions"
#define KL_PREDICTIONS_FORMAT_VERSION 1

/* Writes the predictions of n samples to path, atomically, as HDF5 (.h5, .hdf5: datasets
 * probabilities (n, classes), labels (n) and label_names, or predictions (n, targets)) or CSV
 * (.csv: a header `label,label_name,p_<name>...`, or `prediction...`, and one row per sample).
 * out and classes are kl_modelfile_predict's; input names the scored file in the HDF5 file. */
kl_status kl_predict_write(const kl_modelfile *mf, const char *path, const char *input,
                           const float *out, const int32_t *classes, int64_t n, kl_error *err);
/* Whether path's name says a format kl_predict_write writes (.h5, .hdf5, .csv): what a caller
 * checks before any work. */
bool kl_predict_output_named(const char *path);
/* The CSV layout of kl_predict_write, to an open stream (kiln predict without -o: stdout). */
kl_status kl_predict_write_csv(FILE *f, const kl_modelfile *mf, const float *out,
                               const int32_t *classes, int64_t n, kl_error *err);

#endif
