/* A libFuzzer target for the IDX reader (trainers/data_idx.c): an images file and a labels file,
 * raw or gzip, as a user's data set or kiln predict's input. The first two bytes of the input
 * give the images file's length (big-endian), the images follow and the labels are the rest.
 * Both tasks are read; a data set that loads must have the shapes and values the format promises.
 * tests/fuzz/run.sh builds and runs it. */
#include <math.h>

#define KILN_FUZZ_DATA
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_dataset(const kl_dataset *d, kl_task task)
{
    const kl_tensor *x = d->x, *y = d->y;
    int64_t n = x->shape.d[0];
    if (x->shape.ndim != 4 || x->shape.d[1] != 1 || n < 1 || y->shape.d[0] != n)
        __builtin_trap();
    for (int64_t i = 0; i < kl_numel(x); i++)
        if (!(kl_f32(x)[i] >= 0 && kl_f32(x)[i] <= 1))
            __builtin_trap();
    for (int64_t i = 0; i < n; i++)
        if (task == KL_TASK_CLASSIFICATION ? kl_i32(y)[i] < 0 || kl_i32(y)[i] >= d->classes
                                           : !(kl_f32(y)[i] >= 0 && kl_f32(y)[i] <= 255))
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t split = (size_t)data[0] << 8 | data[1];
    split = split < size - 2 ? split : size - 2;
    kl_data_source src = {.format = KL_DATA_IDX};
    src.path = (char *)fuzz_file("images", data + 2, split);
    src.labels = (char *)fuzz_file("labels", data + 2 + split, size - 2 - split);
    fuzz_load_tasks(&src, check_dataset);
    return 0;
}
