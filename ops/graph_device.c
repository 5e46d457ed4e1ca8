/* The device side of a graph (include/kiln/graph.h, "Devices"): where its memory lives, the copies
 * between host and device around forward and backward, and the host copies of the flat buffers.
 * The only file of the graph that calls CUDA, through ops/cuda/cuda.h's C interface; on a CPU
 * graph every function here is plain host memory or nothing, so the CPU path is unchanged. A
 * build without CUDA refuses a device in kl_graph_set_device, and nothing here then reaches the
 * device. */
#include <stdlib.h>
#include <string.h>

#include "ops/graph_impl.h"
#ifdef KILN_HAVE_CUDA
#include "ops/cuda/cuda.h"
#endif

kl_device kl_graph_device(const kl_graph *g)
{
    return g->device;
}

void *kl_graph_stream(kl_graph *g)
{
    return g->device == KL_DEVICE_CPU ? NULL : g->stream;
}

float *kl_graph_device_grads(kl_graph *g)
{
    return g->device == KL_DEVICE_CPU ? NULL : g->dev_grads;
}

/* Zeroed host memory, 64-byte aligned, with 16 floats to spare. */
static kl_status host_alloc(float **p, size_t floats, const char *what, kl_error *err)
{
    size_t bytes = (floats + 16) * sizeof(float); /* callers keep floats far below SIZE_MAX / 8 */
    *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!*p)
        return kl_error_set(err, KL_ENOMEM, "graph: out of host memory for %s (%zu MiB)", what,
                            bytes >> 20);
    memset(*p, 0, bytes);
    return KL_OK;
}

#ifdef KILN_HAVE_CUDA

static bool on_device(const kl_graph *g)
{
    return g->device == KL_DEVICE_CUDA;
}

kl_status kl_graph_set_device(kl_graph *g, kl_device device, int index, kl_error *err)
{
    if (g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: set the device before kl_graph_compile");
    if (device == KL_DEVICE_CPU) {
        g->device = KL_DEVICE_CPU;
        return KL_OK;
    }
    if (device != KL_DEVICE_CUDA)
        return kl_error_set(err, KL_EINVAL, "graph: unknown device %d", (int)device);
    int count = kl__cuda_device_count();
    if (count == 0)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "graph: no CUDA device is visible (no GPU, no driver, or "
                            "CUDA_VISIBLE_DEVICES hides them all)");
    if (index < 0 || index >= count)
        return kl_error_set(err, KL_EINVAL,
                            "graph: CUDA device %d does not exist; %d %s visible (0..%d)", index,
                            count, count == 1 ? "is" : "are", count - 1);
    if (kl__cuda_set_device(index) != 0)
        return kl_error_set(err, KL_EIO, "graph: cannot use CUDA device %d: %s", index,
                            kl__cuda_last_error());
    g->device = KL_DEVICE_CUDA;
    g->device_index = index;
    return KL_OK;
}

static kl_status cuda_failed(const char *what, kl_error *err)
{
    return kl_error_set(err, KL_EIO, "graph: %s on the CUDA device failed: %s", what,
                        kl__cuda_last_error());
}

kl_status kl__graph_alloc(kl_graph *g, float **p, size_t floats, const char *what, kl_error *err)
{
    if (!on_device(g))
        return host_alloc(p, floats, what, err);
    size_t bytes = (floats + 16) * sizeof(float);
    if (!g->stream && kl__cuda_stream_new(&g->stream) != 0)
        return cuda_failed("creating a stream", err);
    if (!(*p = kl__cuda_alloc(bytes)))
        return kl_error_set(err, KL_ENOMEM, "graph: out of CUDA device memory for %s (%zu MiB): %s",
                            what, bytes >> 20, kl__cuda_last_error());
    if (kl__cuda_zero_async(*p, bytes, g->stream) != 0)
        return cuda_failed("zeroing new memory", err);
    return KL_OK;
}

void kl__graph_release(kl_graph *g, float *p)
{
    if (on_device(g))
        kl__cuda_free(p);
    else
        free(p);
}

void kl__graph_device_free(kl_graph *g)
{
    if (!on_device(g))
        return;
    (void)kl__cuda_set_device(g->device_index);
    if (g->stream)
        (void)kl__cuda_stream_sync(g->stream);
    if (g->copy_stream)
        (void)kl__cuda_stream_sync(g->copy_stream);
    kl__cuda_free(g->dev_params);
    kl__cuda_free(g->dev_grads);
    kl__cuda_free(g->dev_bufs);
    kl__cuda_free(g->stats);
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (n->pinned[0] || n->pinned[1]) {
            kl__cuda_host_free(n->pinned[0]);
            kl__cuda_host_free(n->pinned[1]);
            kl__cuda_free(n->stage);
        } else if (n->host_owned) {
            free(n->host.data);
        }
    }
    kl__cuda_graph_free(g->graph_exec[0]);
    kl__cuda_graph_free(g->graph_exec[1]);
    kl__cuda_event_free(g->copied[0]);
    kl__cuda_event_free(g->copied[1]);
    kl__cuda_event_free(g->consumed);
    kl__cuda_stream_free(g->copy_stream);
    kl__cuda_stream_free(g->stream);
}

/* Copies one flat buffer between the host copy and the device; waits for the device. */
static kl_status copy_flat(kl_graph *g, float *host, float *dev, size_t n, bool up,
                           const char *what, kl_error *err)
{
    int rc = up ? kl__cuda_to_device_async(dev, host, n * sizeof(float), g->stream)
                : kl__cuda_to_host_on(host, dev, n * sizeof(float), g->stream);
    if (rc == 0 && up)
        rc = kl__cuda_stream_sync(g->stream);
    return rc == 0 ? KL_OK : cuda_failed(what, err);
}

kl_status kl__graph_device_flat(kl_graph *g, kl_error *err)
{
    kl_status st;
    if (!on_device(g))
        return KL_OK;
    if ((st = kl__graph_alloc(g, &g->dev_params, g->param_total, "the parameters", err)) != KL_OK ||
        (!g->inference &&
         (st = kl__graph_alloc(g, &g->dev_grads, g->param_total, "the gradients", err)) != KL_OK) ||
        (st = kl__graph_alloc(g, &g->dev_bufs, g->buf_total, "the buffers", err)) != KL_OK)
        return st;
    if ((st = copy_flat(g, g->param_data, g->dev_params, g->param_total, true,
                        "copying the parameters", err)) != KL_OK)
        return st;
    return copy_flat(g, g->buf_data, g->dev_bufs, g->buf_total, true, "copying the buffers", err);
}

/* An input's two page-locked buffers (host.data is slot 0's) and its device staging buffer;
 * the copy stream and the events, with the first input. */
static kl_status stage_input(kl_graph *g, kl__node *n, size_t bytes, kl_error *err)
{
    if (!g->copy_stream &&
        (kl__cuda_stream_new(&g->copy_stream) != 0 || kl__cuda_event_new(&g->copied[0]) != 0 ||
         kl__cuda_event_new(&g->copied[1]) != 0 || kl__cuda_event_new(&g->consumed) != 0))
        return cuda_failed("creating the copy stream", err);
    n->pinned[0] = kl__cuda_host_alloc(bytes + sizeof(float));
    n->pinned[1] = kl__cuda_host_alloc(bytes + sizeof(float));
    n->stage = kl__cuda_alloc(bytes + sizeof(float));
    n->host = (kl_tensor){n->dtype, n->val.shape, n->pinned[0]};
    n->host_owned = true;
    if (!n->pinned[0] || !n->pinned[1] || !n->stage)
        return kl_error_set(err, KL_ENOMEM,
                            "graph: out of page-locked host or device memory staging an input "
                            "(%zu bytes): %s",
                            bytes, kl__cuda_last_error());
    return KL_OK;
}

kl_status kl__graph_device_stage(kl_graph *g, kl_error *err)
{
    if (!on_device(g))
        return KL_OK;
    /* Staged: inputs, outputs, the loss, and any other node nothing consumes (a loss built
     * but not compiled as one, which an evaluation reads as the CPU lets it). */
    bool *used = calloc((size_t)g->n + 1, sizeof *used);
    if (!used)
        return kl_error_set(err, KL_ENOMEM, "graph: out of memory staging the outputs");
    for (int i = 0; i < g->n; i++)
        for (int j = 0; j < g->nodes[i].nin; j++)
            used[g->nodes[i].in[j]] = true;
    kl_status st = KL_OK;
    for (int i = 0; i < g->n && st == KL_OK; i++) {
        kl__node *n = &g->nodes[i];
        if (n->kind == KL__OP && !kl__ops[n->op]->alias && !kl__op_kernels(n->op, true, err))
            st = KL_EUNSUPPORTED;
        if (st != KL_OK || n->kind == KL__PARAM || n->kind == KL__BUFFER || n->host.data ||
            !n->live)
            continue; /* host set by alloc_flat; nothing for what forward does not compute */
        if (n->kind != KL__INPUT && !n->output && i != g->loss && used[i])
            continue;
        size_t bytes = (size_t)kl_numel(&n->val) * kl_dtype_size(n->dtype);
        if (n->kind == KL__INPUT) {
            st = stage_input(g, n, bytes, err);
            continue;
        }
        n->host = (kl_tensor){n->dtype, n->val.shape, calloc(1, bytes + sizeof(float))};
        if (!n->host.data)
            st = kl_error_set(err, KL_ENOMEM, "graph: out of memory staging node %d", i);
        n->host_owned = n->host.data != NULL;
    }
    free(used);
    return st;
}

/* The inputs go up in two hops, so that a step's copy overlaps the previous step's work: the
 * copy stream copies slot k's page-locked buffers into the staging buffers once the previous
 * forward has taken them (consumed), and the graph's stream, after that copy (copied[k]), copies
 * them into the inputs and records consumed. With keep_outputs nothing waits for the device, so
 * the host fills the other slot meanwhile; before it does, that slot's last copy up must be done
 * (copied[k ^ 1]: two steps back, long finished unless the device falls behind). */
static kl_status copy_inputs(kl_graph *g, kl_error *err)
{
    int k = g->slot;
    bool ok = kl__cuda_stream_wait_event(g->copy_stream, g->consumed) == 0;
    for (int i = 0; ok && i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        size_t bytes = (size_t)kl_numel(&n->host) * kl_dtype_size(n->dtype);
        if (n->kind == KL__INPUT && n->stage)
            ok = kl__cuda_to_device_async(n->stage, n->pinned[k], bytes, g->copy_stream) == 0;
    }
    ok = ok && kl__cuda_event_record(g->copied[k], g->copy_stream) == 0 &&
         kl__cuda_stream_wait_event(g->stream, g->copied[k]) == 0;
    for (int i = 0; ok && i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        size_t bytes = (size_t)kl_numel(&n->host) * kl_dtype_size(n->dtype);
        if (n->kind == KL__INPUT && n->stage)
            ok = kl__cuda_copy_async(n->val.data, n->stage, bytes, g->stream) == 0;
    }
    ok = ok && kl__cuda_event_record(g->consumed, g->stream) == 0;
    if (ok && g->keep_outputs) {
        g->slot = k ^ 1;
        for (int i = 0; i < g->n; i++)
            if (g->nodes[i].kind == KL__INPUT && g->nodes[i].stage)
                g->nodes[i].host.data = g->nodes[i].pinned[g->slot];
        ok = kl__cuda_event_sync(g->copied[g->slot]) == 0;
    }
    return ok ? KL_OK : cuda_failed("copying the inputs", err);
}

/* Copies the outputs and the loss down at the current batch, waiting for the device. */
static kl_status copy_outputs(kl_graph *g, kl_error *err)
{
    void *last = NULL;
    for (int i = 0; i < g->n; i++) {
        kl__node *n = &g->nodes[i];
        if (!n->host_owned || n->kind == KL__INPUT)
            continue;
        size_t bytes = (size_t)kl_numel(&n->host) * kl_dtype_size(n->dtype);
        if (kl__cuda_to_host_on(n->host.data, n->val.data, bytes, g->stream) != 0)
            return cuda_failed("running forward", err);
        last = n->host.data;
    }
    /* No output to wait for: still report an error a kernel hit while running. */
    if (!last && kl__cuda_stream_sync(g->stream) != 0)
        return cuda_failed("running forward", err);
    return KL_OK;
}

kl_status kl__graph_device_inputs(kl_graph *g, kl_error *err)
{
    if (!on_device(g))
        return KL_OK;
    if (kl__cuda_set_device(g->device_index) != 0)
        return cuda_failed("selecting the device", err);
    return copy_inputs(g, err);
}

kl_status kl__graph_device_outputs(kl_graph *g, kl_error *err)
{
    if (!on_device(g))
        return KL_OK;
    if (kl__cuda_check() != 0)
        return cuda_failed("launching forward", err);
    return g->keep_outputs ? KL_OK : copy_outputs(g, err);
}

/* Whether this pass may run as a CUDA Graph: training at the full batch with the outputs kept on
 * the device, no gradient-ready callback (a communicator's work on another stream), and no
 * dropout, whose kernel takes the step as a launch argument (a replay would repeat its mask). */
static bool capturable(const kl_graph *g)
{
    if (!on_device(g) || !g->cuda_graph || g->cuda_graph_broken || !g->keep_outputs ||
        g->mode != KL_MODE_TRAIN || g->batch != g->max_batch || g->ready_fn)
        return false;
    for (int i = 0; i < g->n; i++)
        if (g->nodes[i].kind == KL__OP && g->nodes[i].op == KL__OP_DROPOUT)
            return false;
    return true;
}

kl_status kl__graph_device_run(kl_graph *g, int part, kl__graph_part_fn run, kl_error *err)
{
    if (!capturable(g))
        return run(g, err);
    if (g->graph_exec[part])
        return kl__cuda_graph_launch(g->graph_exec[part], g->stream) == 0
                   ? KL_OK
                   : cuda_failed("replaying a CUDA Graph", err);
    if (g->graph_warm[part] < 2) { /* first uses: cuBLAS's handle and the like set up eagerly */
        g->graph_warm[part]++;
        return run(g, err);
    }
    /* A capture that breaks (an allocation, a synchronisation, a kernel that cannot be
     * captured) leaves the graph eager for good; what it held never ran, so it runs now. */
    kl_error cerr = {0};
    void *exec = NULL;
    if (kl__cuda_capture_begin(g->stream) != 0) {
        g->cuda_graph_broken = true;
        return run(g, err);
    }
    kl_status st = run(g, &cerr);
    if (kl__cuda_capture_end(g->stream, &exec) != 0 || st != KL_OK) {
        kl__cuda_graph_free(exec);
        (void)kl__cuda_check(); /* the capture's error is not the eager run's */
        g->cuda_graph_broken = true;
        return run(g, err);
    }
    g->graph_exec[part] = exec;
    return kl__cuda_graph_launch(exec, g->stream) == 0 ? KL_OK
                                                       : cuda_failed("launching a CUDA Graph", err);
}

kl_status kl_graph_set_cuda_graph(kl_graph *g, bool on, kl_error *err)
{
    (void)err;
    g->cuda_graph = on && on_device(g);
    return KL_OK;
}

int kl_graph_cuda_graphs(const kl_graph *g)
{
    return (g->graph_exec[0] != NULL) + (g->graph_exec[1] != NULL);
}

kl_status kl_graph_set_bf16(kl_graph *g, bool on, kl_error *err)
{
    if (on && !on_device(g))
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "graph: bf16 GEMMs need a CUDA device; the CPU computes in fp32 only");
    g->bf16 = on;
    return KL_OK;
}

kl_status kl_graph_keep_outputs(kl_graph *g, bool keep, kl_error *err)
{
    if (!on_device(g))
        return KL_OK;
    if (!g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: compile before kl_graph_keep_outputs");
    if (keep && !g->stats) {
        if (kl__cuda_set_device(g->device_index) != 0)
            return cuda_failed("selecting the device", err);
        if (!(g->stats = kl__cuda_alloc(KL__CUDA_STATS * sizeof(double))))
            return cuda_failed("allocating the training statistics", err);
        if (kl__cuda_zero_async(g->stats, KL__CUDA_STATS * sizeof(double), g->stream) != 0)
            return cuda_failed("zeroing the training statistics", err);
    }
    g->keep_outputs = keep;
    return KL_OK;
}

kl_status kl_graph_stats_add(kl_graph *g, kl_node out, kl_node y, int64_t step, kl_error *err)
{
    if (!on_device(g) || !g->keep_outputs || g->loss == KL_NONE)
        return kl_error_set(err, KL_EINVAL,
                            "graph: kl_graph_stats_add needs a device graph with a loss that "
                            "keeps its outputs (kl_graph_keep_outputs)");
    if (out < 0 || out >= g->n || y < 0 || y >= g->n)
        return kl_error_set(err, KL_EINVAL, "graph: kl_graph_stats_add: no such node");
    const kl__node *o = &g->nodes[out], *t = &g->nodes[y];
    int64_t b = g->batch, k = b > 0 ? kl_numel(&o->val) / b : 0;
    bool classification = t->dtype == KL_I32;
    if (k < 1 || o->dtype != KL_F32 || (!classification && kl_numel(&t->val) != b * k))
        return kl_error_set(err, KL_EINVAL,
                            "graph: kl_graph_stats_add: the output is not (batch, k) floats, or "
                            "the targets do not match it");
    if (kl__cuda_batch_stats(o->val.data, t->val.data, b, k, classification,
                             g->nodes[g->loss].val.data, (double)step, g->stats, g->stream) != 0)
        return cuda_failed("adding the batch statistics", err);
    return KL_OK;
}

kl_status kl_graph_stats_take(kl_graph *g, double sums[3], int64_t *bad, int64_t *first_bad,
                              kl_error *err)
{
    double s[KL__CUDA_STATS] = {0};
    if (!on_device(g) || !g->stats)
        return kl_error_set(err, KL_EINVAL,
                            "graph: kl_graph_stats_take needs a device graph that kept its "
                            "outputs");
    if (kl__cuda_set_device(g->device_index) != 0)
        return cuda_failed("selecting the device", err);
    if (kl__cuda_to_host_on(s, g->stats, sizeof s, g->stream) != 0)
        return cuda_failed("training", err);
    if (kl__cuda_zero_async(g->stats, sizeof s, g->stream) != 0)
        return cuda_failed("zeroing the training statistics", err);
    sums[0] = s[0], sums[1] = s[1], sums[2] = s[2];
    *bad = (int64_t)s[3];
    *first_bad = s[3] > 0 ? (int64_t)s[4] : -1;
    return KL_OK;
}

kl_status kl__graph_device_seed_grad(kl_graph *g, float *at, kl_error *err)
{
    if (!on_device(g)) {
        *at = g->loss_scale;
        return KL_OK;
    }
    if (kl__cuda_set_device(g->device_index) != 0)
        return cuda_failed("selecting the device", err);
    if (kl__cuda_to_device_async(at, &g->loss_scale, sizeof(float), g->stream) != 0)
        return cuda_failed("starting backward", err);
    return KL_OK;
}

kl_status kl__graph_device_check(kl_graph *g, const char *what, kl_error *err)
{
    if (on_device(g) && kl__cuda_check() != 0)
        return cuda_failed(what, err);
    return KL_OK;
}

void kl__graph_device_zero(kl_graph *g, float *p, size_t floats)
{
    if (!on_device(g)) {
        memset(p, 0, floats * sizeof(float));
        return;
    }
    /* A failure here is sticky or a bad pointer (a bug): kl__graph_device_check, at the end of
     * backward, or the next copy reports it. */
    (void)kl__cuda_zero_async(p, floats * sizeof(float), g->stream);
}

static kl_status copy_all(kl_graph *g, unsigned what, bool up, kl_error *err)
{
    kl_status st = KL_OK;
    if (!g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: compile before copying its buffers");
    if (!on_device(g))
        return KL_OK;
    if (kl__cuda_set_device(g->device_index) != 0)
        return cuda_failed("selecting the device", err);
    if (what & KL_GRAPH_PARAMS)
        st = copy_flat(g, g->param_data, g->dev_params, g->param_total, up,
                       "copying the parameters", err);
    if (st == KL_OK && (what & KL_GRAPH_GRADS))
        st = copy_flat(g, g->grad_data, g->dev_grads, g->param_total, up, "copying the gradients",
                       err);
    if (st == KL_OK && (what & KL_GRAPH_BUFFERS))
        st = copy_flat(g, g->buf_data, g->dev_bufs, g->buf_total, up, "copying the buffers", err);
    return st;
}

#else /* no CUDA in this build: only the CPU */

kl_status kl_graph_set_device(kl_graph *g, kl_device device, int index, kl_error *err)
{
    (void)index;
    if (g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: set the device before kl_graph_compile");
    if (device != KL_DEVICE_CPU)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "graph: this build of kiln has no CUDA support (configure it with "
                            "-DKILN_CUDA=ON where nvcc is installed)");
    return KL_OK;
}

kl_status kl__graph_alloc(kl_graph *g, float **p, size_t floats, const char *what, kl_error *err)
{
    (void)g;
    return host_alloc(p, floats, what, err);
}

void kl__graph_release(kl_graph *g, float *p)
{
    (void)g;
    free(p);
}

void kl__graph_device_free(kl_graph *g)
{
    (void)g;
}

kl_status kl__graph_device_flat(kl_graph *g, kl_error *err)
{
    (void)g, (void)err;
    return KL_OK;
}

kl_status kl__graph_device_stage(kl_graph *g, kl_error *err)
{
    (void)g, (void)err;
    return KL_OK;
}

kl_status kl__graph_device_inputs(kl_graph *g, kl_error *err)
{
    (void)g, (void)err;
    return KL_OK;
}

kl_status kl__graph_device_outputs(kl_graph *g, kl_error *err)
{
    (void)g, (void)err;
    return KL_OK;
}

kl_status kl__graph_device_seed_grad(kl_graph *g, float *at, kl_error *err)
{
    (void)err;
    *at = g->loss_scale;
    return KL_OK;
}

kl_status kl__graph_device_check(kl_graph *g, const char *what, kl_error *err)
{
    (void)g, (void)what, (void)err;
    return KL_OK;
}

kl_status kl_graph_keep_outputs(kl_graph *g, bool keep, kl_error *err)
{
    (void)g, (void)keep, (void)err;
    return KL_OK;
}

kl_status kl__graph_device_run(kl_graph *g, int part, kl__graph_part_fn run, kl_error *err)
{
    (void)part;
    return run(g, err);
}

kl_status kl_graph_set_cuda_graph(kl_graph *g, bool on, kl_error *err)
{
    (void)g, (void)on, (void)err;
    return KL_OK;
}

int kl_graph_cuda_graphs(const kl_graph *g)
{
    (void)g;
    return 0;
}

kl_status kl_graph_set_bf16(kl_graph *g, bool on, kl_error *err)
{
    (void)g;
    if (on)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "graph: bf16 GEMMs need a CUDA device; the CPU computes in fp32 only");
    return KL_OK;
}

kl_status kl_graph_stats_add(kl_graph *g, kl_node out, kl_node y, int64_t step, kl_error *err)
{
    (void)g, (void)out, (void)y, (void)step;
    return kl_error_set(err, KL_EINVAL, "graph: kl_graph_stats_add needs a device graph");
}

kl_status kl_graph_stats_take(kl_graph *g, double sums[3], int64_t *bad, int64_t *first_bad,
                              kl_error *err)
{
    (void)g, (void)sums, (void)bad, (void)first_bad;
    return kl_error_set(err, KL_EINVAL, "graph: kl_graph_stats_take needs a device graph");
}

void kl__graph_device_zero(kl_graph *g, float *p, size_t floats)
{
    (void)g;
    memset(p, 0, floats * sizeof(float));
}

static kl_status copy_all(kl_graph *g, unsigned what, bool up, kl_error *err)
{
    (void)what, (void)up;
    if (!g->compiled)
        return kl_error_set(err, KL_EINVAL, "graph: compile before copying its buffers");
    return KL_OK;
}

#endif

kl_status kl_graph_to_host(kl_graph *g, unsigned what, kl_error *err)
{
    return copy_all(g, what, false, err);
}

kl_status kl_graph_to_device(kl_graph *g, unsigned what, kl_error *err)
{
    return copy_all(g, what, true, err);
}
