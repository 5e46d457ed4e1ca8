/* End-to-end learning: the ops, the graph, the optimizers and the schedules together must fit
 * real (if small) problems: XOR with a tiny MLP, spirals with an MLP, and stroke images with a
 * small CNN with batchnorm. Thresholds are far above chance so a broken gradient fails them. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "kiln/toy.h"

static void test_xor(void)
{
    kl_error err = {0};
    kl_toy_data d;
    kl_toy_model m;
    const int hidden[] = {8};
    CHECK_OK(kl_toy_xor(&d, &err), &err);
    CHECK_OK(kl_toy_mlp(&m, 2, hidden, 1, 2, 4, 3, &err), &err);
    kl_toy_fit_config cfg = {.epochs = 300, .batch = 4, .seed = 3};
    cfg.optim = kl_optim_defaults(KL_OPTIM_SGD);
    cfg.optim.momentum = 0.9f;
    cfg.lr = (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = 0.1f};
    float loss = 1, acc = 0;
    CHECK_OK(kl_toy_fit(&m, &d, &cfg, NULL, &loss, &err), &err);
    CHECK_OK(kl_toy_accuracy(&m, &d, &acc, &err), &err);
    CHECK_NEAR(acc, 1.0, 1e-6);
    CHECK(loss < 0.05f);
    kl_toy_model_free(&m);
    kl_toy_data_free(&d);
}

static void test_spirals(void)
{
    kl_error err = {0};
    kl_toy_data train, test;
    kl_toy_model m;
    const int hidden[] = {32, 32};
    CHECK_OK(kl_toy_spirals(&train, 600, 3, 0.02f, 1, &err), &err);
    CHECK_OK(kl_toy_spirals(&test, 300, 3, 0.02f, 2, &err), &err);
    CHECK_OK(kl_toy_mlp(&m, 2, hidden, 2, 3, 32, 1, &err), &err);
    kl_toy_fit_config cfg = {.epochs = 40, .batch = 32, .seed = 1};
    cfg.optim = kl_optim_defaults(KL_OPTIM_ADAMW);
    cfg.lr = (kl_lr_schedule){.kind = KL_LR_COSINE,
                              .base_lr = 0.01f,
                              .warmup_steps = 10,
                              .total_steps = 40 * 19,
                              .min_lr = 0.0f};
    float loss = 0, acc = 0;
    CHECK_OK(kl_toy_fit(&m, &train, &cfg, NULL, &loss, &err), &err);
    CHECK_OK(kl_toy_accuracy(&m, &test, &acc, &err), &err);
    CHECK(acc > 0.9f);
    kl_toy_model_free(&m);
    kl_toy_data_free(&train);
    kl_toy_data_free(&test);
}

static void test_cnn(void)
{
    kl_error err = {0};
    kl_toy_data train, test;
    kl_toy_model m;
    CHECK_OK(kl_toy_strokes(&train, 1200, 12, 0.3f, 1, &err), &err);
    CHECK_OK(kl_toy_strokes(&test, 400, 12, 0.3f, 2, &err), &err);
    CHECK_OK(kl_toy_cnn(&m, 12, 4, 32, 1, &err), &err);
    kl_toy_fit_config cfg = {.epochs = 8, .batch = 32, .seed = 1};
    cfg.optim = kl_optim_defaults(KL_OPTIM_SGD);
    cfg.optim.momentum = 0.9f;
    cfg.lr =
        (kl_lr_schedule){.kind = KL_LR_STEP, .base_lr = 0.05f, .step_size = 150, .gamma = 0.5f};
    float loss = 0, acc = 0;
    CHECK_OK(kl_toy_fit(&m, &train, &cfg, NULL, &loss, &err), &err);
    CHECK_OK(kl_toy_accuracy(&m, &test, &acc, &err), &err);
    if (!CHECK(acc > 0.9f))
        fprintf(stderr, "    cnn test accuracy %.3f, loss %.3f\n", (double)acc, (double)loss);
    CHECK(loss < 0.5f);
    kl_toy_model_free(&m);
    kl_toy_data_free(&train);
    kl_toy_data_free(&test);
}

/* The same seed gives bit-identical weights; fitting is deterministic. */
static void test_deterministic(void)
{
    kl_error err = {0};
    kl_toy_data d;
    kl_toy_model a, b;
    const int hidden[] = {16};
    CHECK_OK(kl_toy_spirals(&d, 200, 2, 0.05f, 4, &err), &err);
    CHECK_OK(kl_toy_mlp(&a, 2, hidden, 1, 2, 16, 4, &err), &err);
    CHECK_OK(kl_toy_mlp(&b, 2, hidden, 1, 2, 16, 4, &err), &err);
    kl_toy_fit_config cfg = {.epochs = 3, .batch = 16, .seed = 4};
    cfg.optim = kl_optim_defaults(KL_OPTIM_ADAM);
    cfg.lr = (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = 0.01f};
    CHECK_OK(kl_toy_fit(&a, &d, &cfg, NULL, NULL, &err), &err);
    CHECK_OK(kl_toy_fit(&b, &d, &cfg, NULL, NULL, &err), &err);
    CHECK(memcmp(kl_graph_params(a.g), kl_graph_params(b.g),
                 kl_graph_param_count(a.g) * sizeof(float)) == 0);
    kl_toy_model_free(&a);
    kl_toy_model_free(&b);
    kl_toy_data_free(&d);
}

static const check_case cases[] = {
    CHECK_CASE(test_xor),
    CHECK_CASE(test_spirals),
    CHECK_CASE(test_cnn),
    CHECK_CASE(test_deterministic),
};

int main(int argc, char **argv)
{
    return check_run("test_learn", cases, CHECK_NCASES(cases), argc, argv);
}
