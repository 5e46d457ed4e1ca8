/* A libFuzzer target for the ONNX importer (runtime/onnx/: protobuf-c's reader, the graph checks,
 * the operator mappings and constant folding): the input is a .onnx file's bytes, loaded from
 * memory as kiln predict and kiln serve load a file, with a dynamic batch of up to 2. A refusal
 * must carry its status and a message; a model that loads must run a batch of 2 and a batch of 1.
 * Graph inputs of more than 2^16 floats per sample are skipped before loading: a model may declare
 * any shape without holding its data, and the activations of such a model would pass libFuzzer's
 * memory limit without being a bug. tests/fuzz/run.sh builds and runs it; the seeds in
 * tests/fuzz/corpus-onnx are models of tests/onnx/import_cases.py and torch_peer.py. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "kiln/onnx.h"
#include "onnx.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_SAMPLE = 1 << 16 };

/* Whether every graph input declares at most MAX_SAMPLE floats per sample. */
static bool small_inputs(const uint8_t *data, size_t size)
{
    Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, size, data);
    bool ok = true;
    for (size_t i = 0; m && m->graph && i < m->graph->n_input; i++) {
        const Onnx__TypeProto *t = m->graph->input[i]->type;
        const Onnx__TensorShapeProto *s =
            t && t->value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE && t->tensor_type
                ? t->tensor_type->shape
                : NULL;
        int64_t n = 1;
        for (size_t k = 1; s && ok && k < s->n_dim; k++) {
            int64_t d =
                s->dim[k]->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                    ? s->dim[k]->dim_value
                    : 1;
            ok = d <= MAX_SAMPLE && (n *= d > 0 ? d : 1) <= MAX_SAMPLE;
        }
    }
    if (m)
        onnx__model_proto__free_unpacked(m, NULL);
    return ok;
}

static void run(kl_onnx *m, int64_t n)
{
    int ni = kl_onnx_num_inputs(m), no = kl_onnx_num_outputs(m);
    float **x = calloc((size_t)ni + 1, sizeof *x), **y = calloc((size_t)no + 1, sizeof *y);
    if (!x || !y)
        abort();
    for (int i = 0; i < ni; i++) {
        int64_t c = n * kl_onnx_input(m, i)->features;
        if (!(x[i] = malloc((size_t)c * sizeof(float) + 1)))
            abort();
        for (int64_t k = 0; k < c; k++)
            x[i][k] = (float)(k % 5) - 2;
    }
    for (int j = 0; j < no; j++)
        if (!(y[j] = malloc((size_t)(n * kl_onnx_output(m, j)->features) * sizeof(float) + 1)))
            abort();
    kl_error err = {0};
    kl_status st = kl_onnx_run(m, (const float *const *)x, n, y, &err);
    if (st != KL_OK)
        fuzz_check_error(st, &err);
    for (int i = 0; i < ni; i++)
        free(x[i]);
    for (int j = 0; j < no; j++)
        free(y[j]);
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!small_inputs(data, size))
        return 0;
    kl_onnx_opts o = {.max_batch = 2};
    kl_onnx *m = NULL;
    kl_error err = {0};
    kl_status st = kl_onnx_load_buffer(data, size, "fuzz.onnx", &o, &m, &err);
    if (st != KL_OK) {
        fuzz_check_error(st, &err);
        return 0;
    }
    int64_t max = kl_onnx_max_batch(m);
    run(m, max);
    if (max > 1)
        run(m, 1);
    kl_onnx_free(m);
    return 0;
}
