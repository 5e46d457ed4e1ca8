/* The CUDA backend against the CPU reference: saxpy on the device must equal the same sum on the
 * host. Without a device (every CI machine) it exits 77, which ctest reports as skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "ops/cuda/cuda.h"

int main(void)
{
    int devices = kl__cuda_device_count();
    if (devices <= 0) {
        printf("test_cuda: no CUDA device, skipped\n");
        return 77;
    }
    printf("test_cuda: %d device(s)\n", devices);
    int n = (1 << 20) + 3; /* not a multiple of any block size */
    float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
    if (!CHECK(x && y))
        return check_report("test_cuda");
    for (int i = 0; i < n; i++) {
        x[i] = (float)(i % 1000) * 0.001f;
        y[i] = (float)(i % 7) - 3.0f;
    }
    CHECK(kl__cuda_saxpy(n, 2.5f, x, y) == 0);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float want = (float)(i % 7) - 3.0f + 2.5f * ((float)(i % 1000) * 0.001f);
        bad += fabsf(y[i] - want) > 1e-6f * (1.0f + fabsf(want)); /* the device may fuse a*x+y */
    }
    CHECK(bad == 0);
    CHECK(kl__cuda_saxpy(-1, 1.0f, x, y) == -1);
    free(x);
    free(y);
    return check_report("test_cuda");
}
