/* Choosing the device a rank computes on (include/kiln/device.h). The choice is a pure function
 * of counts; kl_device_pick and kl_device_describe ask CUDA (ops/cuda/cuda.h) in a CUDA build. */
#include <stdio.h>
#include <string.h>

#include "kiln/device.h"
#ifdef KILN_HAVE_CUDA
#include "ops/cuda/cuda.h"
#endif

const char *const kl_train_device_names[] = {"auto", "cpu", "cuda", NULL};

int kl_train_device_parse(const char *s)
{
    for (int i = 0; kl_train_device_names[i]; i++)
        if (strcmp(s, kl_train_device_names[i]) == 0)
            return i;
    return -1;
}

kl_status kl_device_choose(kl_train_device want, bool have_cuda, int visible, int local_rank,
                           int local_size, bool share, kl_device_choice *out, kl_error *err)
{
    *out = (kl_device_choice){KL_DEVICE_CPU, 0, false};
    if (want == KL_TRAIN_DEVICE_CPU || (want == KL_TRAIN_DEVICE_AUTO && !(have_cuda && visible)))
        return KL_OK;
    if (want != KL_TRAIN_DEVICE_CUDA && want != KL_TRAIN_DEVICE_AUTO)
        return kl_error_set(err, KL_EINVAL, "device: unknown device %d", (int)want);
    if (!have_cuda)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "device: cuda was asked for, but this build of kiln has no CUDA "
                            "support (configure it with -DKILN_CUDA=ON where nvcc is "
                            "installed), or use device cpu");
    if (visible <= 0)
        return kl_error_set(err, KL_EUNSUPPORTED,
                            "device: cuda was asked for, but no CUDA device is visible (no GPU, "
                            "no driver, or CUDA_VISIBLE_DEVICES hides them all); use device "
                            "cpu or auto");
    if (local_rank < 0)
        local_rank = 0;
    int ranks = local_size > local_rank ? local_size : local_rank + 1;
    if (ranks > visible && !share)
        return kl_error_set(err, KL_EINVAL,
                            "device: %d ranks run on this node but only %d CUDA device%s %s "
                            "visible; start at most %d ranks per node, or set "
                            "train.device_share: true to share the devices",
                            ranks, visible, visible == 1 ? "" : "s", visible == 1 ? "is" : "are",
                            visible);
    *out = (kl_device_choice){KL_DEVICE_CUDA, local_rank % visible, ranks > visible};
    return KL_OK;
}

#ifdef KILN_HAVE_CUDA
int kl_device_count(void)
{
    int n = kl__cuda_device_count();
    return n > 0 ? n : 0;
}

kl_status kl_device_pick(kl_train_device want, int local_rank, int local_size, bool share,
                         kl_device_choice *out, kl_error *err)
{
    int visible = want == KL_TRAIN_DEVICE_CPU ? 0 : kl__cuda_device_count();
    return kl_device_choose(want, true, visible, local_rank, local_size, share, out, err);
}

void kl_device_describe(const kl_device_choice *c, char *buf, size_t n)
{
    char name[256] = "";
    size_t bytes = 0;
    if (c->device == KL_DEVICE_CPU) {
        snprintf(buf, n, "CPU");
        return;
    }
    if (kl__cuda_device_info(c->index, name, sizeof name, &bytes) != 0)
        snprintf(name, sizeof name, "unknown: %s", kl__cuda_last_error());
    snprintf(buf, n, "CUDA device %d (%s, %.1f GiB%s)", c->index, name,
             (double)bytes / (1024.0 * 1024.0 * 1024.0), c->shared ? ", shared by ranks" : "");
}
#else
int kl_device_count(void)
{
    return 0;
}

kl_status kl_device_pick(kl_train_device want, int local_rank, int local_size, bool share,
                         kl_device_choice *out, kl_error *err)
{
    return kl_device_choose(want, false, 0, local_rank, local_size, share, out, err);
}

void kl_device_describe(const kl_device_choice *c, char *buf, size_t n)
{
    snprintf(buf, n, "%s", c->device == KL_DEVICE_CPU ? "CPU" : "CUDA (not in this build)");
}
#endif
