/* A libFuzzer target for the CSV reader (trainers/data_csv.c, runtime/csv.c): the input is the
 * file, read with the label column "label" for classification and for regression. A data set that
 * loads must be what the header says: one row per data line, every value finite, every label a
 * class. tests/fuzz/run.sh builds and runs it. */
#include <math.h>

#define KILN_FUZZ_DATA
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_dataset(const kl_dataset *d, kl_task task)
{
    const kl_tensor *x = d->x, *y = d->y;
    int64_t n = x->shape.d[0];
    if (x->shape.ndim != 2 || n < 1 || x->shape.d[1] < 1 || y->shape.d[0] != n)
        __builtin_trap();
    for (int64_t i = 0; i < kl_numel(x); i++)
        if (!isfinite(kl_f32(x)[i]))
            __builtin_trap();
    for (int64_t i = 0; i < n; i++)
        if (task == KL_TASK_CLASSIFICATION ? kl_i32(y)[i] < 0 || kl_i32(y)[i] >= d->classes
                                           : !isfinite(kl_f32(y)[i]))
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kl_data_source src = {.format = KL_DATA_CSV, .label_column = "label"};
    src.path = (char *)fuzz_file("data.csv", data, size);
    fuzz_load_tasks(&src, check_dataset);
    return 0;
}
