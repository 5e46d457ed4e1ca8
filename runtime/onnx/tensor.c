/* Tensors of an ONNX file (runtime/onnx/): an initializer or a Constant's value as a constant of
 * the import, from raw_data, the typed fields or an external data file inside the model's folder,
 * every size checked before it is allocated. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/onnx/onnx_impl.h"

/* The path of a tensor's external data: a relative file inside the model's folder, no "..", no
 * absolute path. */
static kl_status external_path(ox_import *im, const Onnx__TensorProto *t, const char *what,
                               char *path, size_t len, int64_t *offset, int64_t *length)
{
    const char *loc = NULL;
    *offset = 0;
    *length = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const char *k = t->external_data[i]->key, *v = t->external_data[i]->value;
        if (!k || !v)
            continue;
        char *end;
        if (!strcmp(k, "location"))
            loc = v;
        else if (!strcmp(k, "offset") || !strcmp(k, "length")) {
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno || *end || x < 0)
                return kl_error_set(im->err, KL_EFORMAT,
                                    "%s: tensor '%s': external data %s '%.40s' is not a "
                                    "non-negative integer",
                                    im->what, what, k, v);
            *(!strcmp(k, "offset") ? offset : length) = x;
        }
    }
    if (!loc || !*loc)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: tensor '%s': external data without a location", im->what, what);
    if (!im->dir)
        return kl_error_set(im->err, KL_EUNSUPPORTED,
                            "%s: tensor '%s' keeps its data in an external file, which a model "
                            "read from memory cannot have",
                            im->what, what);
    bool bad = loc[0] == '/' || !strcmp(loc, "..") || !strncmp(loc, "../", 3) ||
               strstr(loc, "/../") || (strlen(loc) >= 3 && !strcmp(loc + strlen(loc) - 3, "/..")) ||
               strchr(loc, '\\');
    if (bad)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: tensor '%s': external data location '%.100s' leaves the model's "
                            "folder; it must be a relative path inside it",
                            im->what, what, loc);
    if ((size_t)snprintf(path, len, "%s/%s", im->dir, loc) >= len)
        return kl_error_set(im->err, KL_EFORMAT, "%s: tensor '%s': external data path too long",
                            im->what, what);
    return KL_OK;
}

static kl_status read_external(ox_import *im, const Onnx__TensorProto *t, const char *what,
                               void *dst, int64_t bytes)
{
    char path[4096];
    int64_t offset, length;
    kl_status st = external_path(im, t, what, path, sizeof path, &offset, &length);
    if (st)
        return st;
    if (length >= 0 && length != bytes)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: tensor '%s': external data length %lld, but its shape needs %lld "
                            "bytes",
                            im->what, what, (long long)length, (long long)bytes);
    /* The file itself, links resolved, must be inside the model's folder too. */
    char real_dir[PATH_MAX], real_file[PATH_MAX];
    if (!realpath(im->dir, real_dir) || !realpath(path, real_file))
        return kl_error_set(im->err, KL_EIO, "%s: tensor '%s': cannot open external data %s: %s",
                            im->what, what, path, strerror(errno));
    size_t dl = strlen(real_dir);
    if (strncmp(real_file, real_dir, dl) || (real_file[dl] != '/' && strcmp(real_dir, "/")))
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: tensor '%s': external data %s resolves to %s, outside the "
                            "model's folder",
                            im->what, what, path, real_file);
    FILE *f = fopen(real_file, "rb");
    if (!f)
        return kl_error_set(im->err, KL_EIO, "%s: tensor '%s': cannot open external data %s: %s",
                            im->what, what, path, strerror(errno));
    bool ok =
        fseeko(f, (off_t)offset, SEEK_SET) == 0 && fread(dst, 1, (size_t)bytes, f) == (size_t)bytes;
    fclose(f);
    if (!ok)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: tensor '%s': external data %s ends before offset %lld + %lld "
                            "bytes",
                            im->what, what, path, (long long)offset, (long long)bytes);
    return KL_OK;
}

kl_status kl__ox_tensor(ox_import *im, const Onnx__TensorProto *t, const char *what, ox_const *c)
{
    int dt = t->data_type;
    size_t esize = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT   ? 4
                   : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? 8
                   : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4
                                                                : 0;
    if (!esize)
        return kl_error_set(im->err, KL_EUNSUPPORTED,
                            "%s: tensor '%s' has data type %d; kiln reads FLOAT (1), INT32 (6) and "
                            "INT64 (7) tensors",
                            im->what, what, dt);
    if (t->n_dims > OX_MAX_DIMS)
        return kl_error_set(im->err, KL_EUNSUPPORTED, "%s: tensor '%s' has %zu axes; at most %d",
                            im->what, what, t->n_dims, OX_MAX_DIMS);
    int64_t bytes;
    char label[200];
    snprintf(label, sizeof label, "%s: tensor '%.120s'", im->what, what);
    kl_status st = kl_dims_check((int)t->n_dims, t->dims, esize, label, &bytes, im->err);
    if (st)
        return st;
    int64_t n = bytes / (int64_t)esize;
    st = kl__ox_const_new(im, NULL, dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT ? OX_F32 : OX_I64,
                          (int)t->n_dims, t->dims, c);
    if (st)
        return st;
    bool external =
        t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (external || t->has_raw_data) {
        void *raw = c->data;
        if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 && !(raw = kl__ox_alloc(im, n, 4)))
            return KL_ENOMEM;
        if (external) {
            if ((st = read_external(im, t, what, raw, bytes)))
                return st;
        } else {
            if ((int64_t)t->raw_data.len != bytes)
                return kl_error_set(im->err, KL_EFORMAT,
                                    "%s: tensor '%s' has %zu bytes of raw_data, but its shape "
                                    "needs %lld",
                                    im->what, what, t->raw_data.len, (long long)bytes);
            if (bytes)
                memcpy(raw, t->raw_data.data, (size_t)bytes);
        }
        if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32)
            for (int64_t i = 0; i < n; i++)
                ((int64_t *)c->data)[i] = ((int32_t *)raw)[i];
        return KL_OK;
    }
    size_t have = dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT   ? t->n_float_data
                  : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? t->n_int64_data
                                                               : t->n_int32_data;
    if ((int64_t)have != n)
        return kl_error_set(im->err, KL_EFORMAT,
                            "%s: tensor '%s' has %zu values, but its shape needs %lld", im->what,
                            what, have, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
            ((float *)c->data)[i] = t->float_data[i];
        else
            ((int64_t *)c->data)[i] =
                dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ? t->int64_data[i] : t->int32_data[i];
    }
    return KL_OK;
}
