/* The device choice (include/kiln/device.h) with made-up counts: auto, cpu and cuda; a build
 * without CUDA and a machine without a visible device; one GPU per local rank; more local ranks
 * than GPUs, refused or (device_share) shared. Also kl_device_pick on this machine, whose answer
 * must agree with its device count. */
#include <string.h>

#include "check.h"
#include "kiln/device.h"
#include "kiln/graph.h"

static kl_device_choice choose(kl_train_device want, bool cuda, int visible, int lr, int ls,
                               bool share, kl_status expect, const char *msg)
{
    kl_device_choice c = {KL_DEVICE_CUDA, 99, true};
    kl_error err = {0};
    kl_status st = kl_device_choose(want, cuda, visible, lr, ls, share, &c, &err);
    CHECK(st == expect);
    if (msg && !CHECK(strstr(err.msg, msg) != NULL))
        fprintf(stderr, "    message: %s\n", err.msg);
    return c;
}

static void test_cpu_and_auto(void)
{
    kl_device_choice c = choose(KL_TRAIN_DEVICE_CPU, true, 4, 0, 1, false, KL_OK, NULL);
    CHECK(c.device == KL_DEVICE_CPU && !c.shared);
    c = choose(KL_TRAIN_DEVICE_AUTO, false, 4, 0, 1, false, KL_OK, NULL);
    CHECK(c.device == KL_DEVICE_CPU);
    c = choose(KL_TRAIN_DEVICE_AUTO, true, 0, 0, 1, false, KL_OK, NULL);
    CHECK(c.device == KL_DEVICE_CPU);
    c = choose(KL_TRAIN_DEVICE_AUTO, true, 2, 1, 2, false, KL_OK, NULL);
    CHECK(c.device == KL_DEVICE_CUDA && c.index == 1 && !c.shared);
}

static void test_cuda_refused(void)
{
    choose(KL_TRAIN_DEVICE_CUDA, false, 4, 0, 1, false, KL_EUNSUPPORTED, "has no CUDA support");
    choose(KL_TRAIN_DEVICE_CUDA, true, 0, 0, 1, false, KL_EUNSUPPORTED,
           "no CUDA device is visible");
}

static void test_ranks_per_device(void)
{
    for (int r = 0; r < 4; r++) {
        kl_device_choice c = choose(KL_TRAIN_DEVICE_CUDA, true, 4, r, 4, false, KL_OK, NULL);
        CHECK(c.device == KL_DEVICE_CUDA && c.index == r && !c.shared);
    }
    /* Three ranks, two GPUs: refused on every rank, even rank 0 whose GPU exists. */
    choose(KL_TRAIN_DEVICE_CUDA, true, 2, 0, 3, false, KL_EINVAL,
           "3 ranks run on this node but only 2 CUDA devices are visible");
    choose(KL_TRAIN_DEVICE_AUTO, true, 1, 1, 2, false, KL_EINVAL, "train.device_share");
    /* The launcher did not say how many: the rank's own index still has to fit. */
    choose(KL_TRAIN_DEVICE_CUDA, true, 2, 2, 0, false, KL_EINVAL, "3 ranks");
    kl_device_choice c = choose(KL_TRAIN_DEVICE_CUDA, true, 2, 1, 0, false, KL_OK, NULL);
    CHECK(c.index == 1 && !c.shared);
}

static void test_share(void)
{
    kl_device_choice c = choose(KL_TRAIN_DEVICE_CUDA, true, 2, 2, 3, true, KL_OK, NULL);
    CHECK(c.device == KL_DEVICE_CUDA && c.index == 0 && c.shared);
    c = choose(KL_TRAIN_DEVICE_CUDA, true, 1, 1, 2, true, KL_OK, NULL);
    CHECK(c.index == 0 && c.shared);
    c = choose(KL_TRAIN_DEVICE_CUDA, true, 2, 1, 2, true, KL_OK, NULL);
    CHECK(c.index == 1 && !c.shared); /* enough devices: sharing allowed but not needed */
}

static void test_names(void)
{
    CHECK(kl_train_device_parse("auto") == KL_TRAIN_DEVICE_AUTO);
    CHECK(kl_train_device_parse("cpu") == KL_TRAIN_DEVICE_CPU);
    CHECK(kl_train_device_parse("cuda") == KL_TRAIN_DEVICE_CUDA);
    CHECK(kl_train_device_parse("gpu") == -1);
    CHECK(strcmp(kl_train_device_names[KL_TRAIN_DEVICE_CUDA], "cuda") == 0);
}

/* This machine: cpu always works, and auto agrees with cuda. */
static void test_pick_here(void)
{
    kl_device_choice c;
    kl_error err = {0};
    CHECK_OK(kl_device_pick(KL_TRAIN_DEVICE_CPU, 0, 1, false, &c, &err), &err);
    CHECK(c.device == KL_DEVICE_CPU);
    char buf[300];
    kl_device_describe(&c, buf, sizeof buf);
    CHECK(strcmp(buf, "CPU") == 0);
    kl_device_choice a, b;
    kl_status sa = kl_device_pick(KL_TRAIN_DEVICE_AUTO, 0, 1, false, &a, &err);
    kl_status sb = kl_device_pick(KL_TRAIN_DEVICE_CUDA, 0, 1, false, &b, &err);
    CHECK(sa == KL_OK);
    CHECK((sb == KL_OK) == (a.device == KL_DEVICE_CUDA));
    if (sb == KL_OK) {
        kl_device_describe(&b, buf, sizeof buf);
        CHECK(strncmp(buf, "CUDA device 0 (", 15) == 0);
    }
}

static const check_case cases[] = {
    CHECK_CASE(test_cpu_and_auto), CHECK_CASE(test_cuda_refused), CHECK_CASE(test_ranks_per_device),
    CHECK_CASE(test_share),        CHECK_CASE(test_names),        CHECK_CASE(test_pick_here),
};

int main(int argc, char **argv)
{
    return check_run("test_device", cases, CHECK_NCASES(cases), argc, argv);
}
