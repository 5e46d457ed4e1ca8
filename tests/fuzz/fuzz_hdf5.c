/* A libFuzzer target for the HDF5 data set reader (trainers/data_hdf5.c, data_lazy.c). The input
 * is a recipe (fuzz_h5.h): its first byte picks a real file from tests/fuzz/seeds-hdf5 (or an
 * empty one), then each op replaces x or y with a dataset of the recipe's type, shape, layout,
 * filters and values, sets a root attribute (format, format_version, classes), deletes or links
 * x and y, or pokes a value into a row. The file is then prepared as a training set, in memory
 * and with data.lazy, for classification and regression, standardised per feature. A set that
 * loads must give back finite rows; HDF5 must stay quiet and every HDF5 object must be closed
 * afterwards. tests/fuzz/run.sh builds and runs it. */
#include <math.h>

#include "fuzz_h5.h"
#include "kiln/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Gathers the first rows of the training split: every value finite after standardisation. */
static void check_splits(const kl_data_splits *s)
{
    const kl_dataset *d = &s->train;
    int64_t n = d->x->shape.d[0], f = kl_numel(d->x) / n, rows = n < 4 ? n : 4;
    int64_t idx[4] = {0, rows - 1, rows / 2, 0};
    float *x = malloc((size_t)(rows * f) * sizeof *x);
    if (!x || d->y->shape.d[0] != n)
        __builtin_trap();
    kl_error err = {0};
    kl_status st = kl_data_gather(d, idx, rows, x, NULL, &err);
    if (st != KL_OK)
        fuzz_check_error(st, &err);
    for (int64_t i = 0; st == KL_OK && i < rows * f; i++)
        if (!isfinite(x[i])) {
            fprintf(stderr, "fuzz: value %lld of the gathered rows is %g\n", (long long)i,
                    (double)x[i]);
            __builtin_trap();
        }
    free(x);
}

static const char *build(fuzz_in *in)
{
    static const char *const attrs[] = {"format", "format_version", "classes"};
    static const char *const names[] = {"x", "y"};
    hid_t f = fuzz_h5_open(in_u8(in) % (fuzz_nseeds + 1));
    while (in->n) {
        uint8_t op = in_u8(in), which = in_u8(in);
        const char *name = names[which % 2];
        switch (op % 6) {
        case 0:
        case 1:
            fuzz_h5_dataset(f, name, in);
            break;
        case 2:
            fuzz_h5_attr(f, attrs[which % 3], in);
            break;
        case 3:
            if (which & 4)
                H5Adelete(f, attrs[which % 3]);
            else
                H5Ldelete(f, name, H5P_DEFAULT);
            break;
        case 4:
            H5Ldelete(f, name, H5P_DEFAULT);
            H5Lcreate_soft(which & 4 ? "nowhere" : names[(which + 1) % 2], f, name, H5P_DEFAULT,
                           H5P_DEFAULT);
            break;
        case 5:
            fuzz_h5_poke(f, name, in);
            break;
        }
    }
    return fuzz_h5_save(f, "data.h5");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in in = {data, size};
    kl_data_config c = {.standardize = KL_STD_FEATURE};
    c.train = (kl_data_source){.format = KL_DATA_HDF5, .x_dataset = "x", .y_dataset = "y"};
    c.train.path = (char *)build(&in);
    for (int k = 0; k < 4; k++) {
        c.task = k % 2 ? KL_TASK_REGRESSION : KL_TASK_CLASSIFICATION;
        c.lazy = k >= 2;
        kl_data_splits s;
        kl_error err = {0};
        kl_status st = kl_data_prepare(&c, 1, &s, &err);
        if (st == KL_OK)
            check_splits(&s);
        else
            fuzz_check_error(st, &err);
        kl_data_splits_free(&s);
        fuzz_h5_check_closed();
    }
    return 0;
}
