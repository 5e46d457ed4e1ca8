/* The CPU cost of kiln serve's per-request work outside HTTP and the model, in isolation: decoding
 * the JSON inference request of bench/run_serve.sh (784 FP32 pixels as the shortest decimals that
 * read back, about 5 KB), decoding the same tensor sent with Triton's binary extension, and the
 * drift monitor's binning of one 784-feature sample against reference deciles. Each is run
 * --calls times per repetition; the figure is CPU time (CLOCK_PROCESS_CPUTIME_ID) per call, the
 * median of --reps repetitions, so that a busy machine slows it less than wall time would.
 *
 * The pixels are synthetic, with the test image's make-up (two thirds zeros, the rest k/255 as
 * float32), so the benchmark needs no dataset.
 *
 *   bench_serve_codec [--calls N (20000)] [--reps R (5)] */
#include <float.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_stats.h"
#include "serve/codec/decode.h"
#include "serve/patterns/patterns.h"

#define FEATURES 784
#define B        KL_MODELFILE_BINS

static double cpu_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* The shortest %g text that reads back as f, with ".0" on whole numbers (what make_bodies.py
 * writes, as a client holding float32 tensors would). */
static void shortest(float f, char *s, size_t n)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(s, n, "%.*g", p, (double)f);
        if (strtof(s, NULL) == f)
            break;
    }
    if (!strpbrk(s, ".e"))
        strncat(s, ".0", n - strlen(s) - 1);
}

/* pixels: (FEATURES); json: the request; bin: header + bytes, *hlen the header's length. */
static void make_requests(float *pixels, char **json, size_t *json_n, char **bin, size_t *bin_n,
                          size_t *hlen)
{
    for (int i = 0; i < FEATURES; i++)
        pixels[i] = next_u32() % 3 < 2 ? 0.0f : (float)(next_u32() % 256) / 255.0f;
    size_t cap = 64 + (size_t)FEATURES * 24;
    char *s = malloc(cap + 1);
    size_t n = (size_t)snprintf(s, cap,
                                "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,%d],"
                                "\"datatype\":\"FP32\",\"data\":[",
                                FEATURES);
    for (int i = 0; i < FEATURES; i++) {
        char t[32];
        shortest(pixels[i], t, sizeof t);
        n += (size_t)snprintf(s + n, cap - n, "%s%s", i ? "," : "", t);
    }
    n += (size_t)snprintf(s + n, cap - n, "]}]}");
    *json = s;
    *json_n = n;

    char head[256];
    int h = snprintf(head, sizeof head,
                     "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,%d],\"datatype\":\"FP32\","
                     "\"parameters\":{\"binary_data_size\":%zu}}]}",
                     FEATURES, FEATURES * sizeof(float));
    *bin = malloc((size_t)h + FEATURES * sizeof(float) + 1);
    memcpy(*bin, head, (size_t)h);
    memcpy(*bin + h, pixels, FEATURES * sizeof(float));
    *bin_n = (size_t)h + FEATURES * sizeof(float);
    (*bin)[*bin_n] = '\0'; /* kl__infer_parse's contract */
    *hlen = (size_t)h;
}

static double time_decode(const char *body, size_t n, size_t json_n, int calls)
{
    kl_error err = {0};
    double t0 = cpu_seconds();
    for (int i = 0; i < calls; i++) {
        kl__infer_request req = {0};
        if (kl__infer_decode(body, n, json_n, &req, &err) != KL_OK) {
            fprintf(stderr, "bench_serve_codec: decode: %s\n", err.msg);
            exit(1);
        }
        kl__infer_request_free(&req);
    }
    return (cpu_seconds() - t0) / calls;
}

static double time_drift(kl__drift *d, const float *x, int calls)
{
    int32_t cls = 3;
    double t0 = cpu_seconds();
    for (int i = 0; i < calls; i++)
        kl__drift_observe(d, x, 1, &cls, NULL);
    return (cpu_seconds() - t0) / calls;
}

/* Reference deciles as an exported Fashion-MNIST model has them: zero edges for the border
 * pixels that are always 0, spread edges elsewhere. */
static kl__drift *make_drift(float *edges, float *props, float *pred)
{
    for (int f = 0; f < FEATURES; f++) {
        bool border = f % 28 < 3 || f % 28 > 24;
        for (int b = 0; b <= B; b++)
            edges[f * (B + 1) + b] = border ? 0.0f : (float)b / B;
        for (int b = 0; b < B; b++)
            props[f * B + b] = 1.0f / B;
    }
    for (int k = 0; k < 10; k++)
        pred[k] = 0.1f;
    static kl_modelfile_reference ref;
    ref = (kl_modelfile_reference){.samples = 1000,
                                   .input_edges = edges,
                                   .input_proportions = props,
                                   .label_proportions = pred,
                                   .predicted_proportions = pred};
    kl__drift_spec spec = {.features = FEATURES,
                           .outputs = 10,
                           .classification = true,
                           .ref = &ref,
                           .window = 1000,
                           .min_samples = 100,
                           .threshold = 0.2};
    kl_error err = {0};
    kl__drift *d = NULL;
    if (kl__drift_new(&spec, &d, &err) != KL_OK) {
        fprintf(stderr, "bench_serve_codec: drift: %s\n", err.msg);
        exit(1);
    }
    return d;
}

int main(int argc, char **argv)
{
    int calls = 20000, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--calls") && i + 1 < argc) {
            calls = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_serve_codec [--calls N] [--reps R]\n");
            return 2;
        }
    }
    if (calls < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "bench_serve_codec: --calls and --reps must be positive (reps <= 100)\n");
        return 2;
    }
    static float pixels[FEATURES], edges[FEATURES * (B + 1)], props[FEATURES * B], pred[10];
    char *json, *bin;
    size_t json_n, bin_n, hlen;
    make_requests(pixels, &json, &json_n, &bin, &bin_n, &hlen);
    kl__drift *d = make_drift(edges, props, pred);

    double tj[100], tb[100], td[100];
    for (int r = 0; r < reps; r++) {
        tj[r] = time_decode(json, json_n, json_n, calls);
        tb[r] = time_decode(bin, bin_n, hlen, calls);
        td[r] = time_drift(d, pixels, calls);
    }
    printf("# bench_serve_codec: %d calls x %d reps, CPU time per call (median)\n", calls, reps);
    printf("decode JSON (%zu bytes, %d floats)  %8.2f us\n", json_n, FEATURES,
           1e6 * bench_median(tj, reps));
    printf("decode binary (%zu bytes)           %8.2f us\n", bin_n, 1e6 * bench_median(tb, reps));
    printf("drift observe (1 sample, %d feat.)  %8.2f us\n", FEATURES,
           1e6 * bench_median(td, reps));
    kl__drift_free(d);
    free(json);
    free(bin);
    return 0;
}
