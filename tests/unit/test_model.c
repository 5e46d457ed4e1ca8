/* The model builder: parameter names and shapes, output shapes per layer, parameter and FLOP
 * counts against hand-worked numbers, the head, auto-flatten, residual blocks, errors that name
 * the layer and its config position, and a built model that learns. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "kiln/model.h"
#include "kiln/toy.h"

static kl_layer_spec dense(int units, kl_activation a)
{
    return (kl_layer_spec){.kind = KL_LAYER_DENSE, .units = units, .bias = true, .activation = a};
}

static kl_layer_spec conv(int filters, int kernel, int padding)
{
    return (kl_layer_spec){.kind = KL_LAYER_CONV2D,
                           .filters = filters,
                           .kernel = kernel,
                           .padding = padding,
                           .bias = true,
                           .activation = KL_ACT_RELU};
}

static kl_layer_spec pool(int kernel)
{
    return (kl_layer_spec){.kind = KL_LAYER_MAX_POOL, .kernel = kernel};
}

static kl_model_options options(kl_shape input, int outputs)
{
    return (kl_model_options){.input = input,
                              .task = KL_TASK_CLASSIFICATION,
                              .outputs = outputs,
                              .batch = 8,
                              .seed = 1,
                              .trainable = true};
}

static const kl_param_info *find_param(const kl_model *m, const char *name)
{
    for (int i = 0; i < kl_graph_num_params(m->g); i++)
        if (!strcmp(kl_graph_param(m->g, i)->name, name))
            return kl_graph_param(m->g, i);
    return NULL;
}

static bool param_shape_is(const kl_model *m, const char *name, kl_shape want)
{
    const kl_param_info *p = find_param(m, name);
    return p && kl_shape_eq(&p->shape, &want);
}

/* The 784-256-128-10 MLP of the Fashion-MNIST example, on (1, 28, 28) images (auto-flattened).
 * Parameters: 784*256+256 + 256*128+128 + 128*10+10 = 200960 + 32896 + 1290 = 235146.
 * FLOPs: 2 * (784*256 + 256*128 + 128*10) = 2 * 234752 = 469504. */
static void test_mlp(void)
{
    kl_error err = {0};
    kl_layer_spec layers[] = {dense(256, KL_ACT_RELU), dense(128, KL_ACT_RELU)};
    kl_model_spec spec = {layers, 2};
    kl_model_options o = options(KL_SHAPE(1, 28, 28), 10);
    kl_model m;
    CHECK_OK(kl_model_build(&spec, &o, &m, &err), &err);
    CHECK(kl_graph_param_count(m.g) == 235146);
    CHECK(kl_model_flops(&m) == 469504);
    CHECK(param_shape_is(&m, "layers.0.weight", KL_SHAPE(256, 784)));
    CHECK(param_shape_is(&m, "layers.0.bias", KL_SHAPE(256)));
    CHECK(param_shape_is(&m, "layers.1.weight", KL_SHAPE(128, 256)));
    CHECK(param_shape_is(&m, "head.weight", KL_SHAPE(10, 128)));
    CHECK(param_shape_is(&m, "head.bias", KL_SHAPE(10)));
    CHECK(find_param(&m, "layers.0.bias")->flags & KL_PARAM_NO_DECAY);
    kl_shape out = kl_graph_shape(m.g, m.output);
    CHECK(out.ndim == 2 && out.d[0] == 8 && out.d[1] == 10);
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    kl_model_summary(&m, f);
    fclose(f);
    CHECK(strstr(buf, "layers.1") && strstr(buf, "dense (head)") && strstr(buf, "235146"));
    kl_model_free(&m);
}

/* conv(32, 3x3, pad 1) - pool 2 - conv(64, 3x3, pad 1) - pool 2 - dense 128 - head 10 on 28x28.
 * Shapes: (32,28,28) (32,14,14) (64,14,14) (64,7,7) (128) (10).
 * Parameters: 32*9+32 + 64*32*9+64 + 3136*128+128 + 128*10+10 = 320 + 18496 + 401536 + 1290.
 * conv FLOPs: 2*1*9*32*28*28 = 451584 and 2*32*9*64*14*14 = 7225344. */
static void test_cnn(void)
{
    kl_error err = {0};
    kl_layer_spec layers[] = {conv(32, 3, 1), pool(2), conv(64, 3, 1), pool(2),
                              dense(128, KL_ACT_RELU)};
    kl_model_spec spec = {layers, 5};
    kl_model_options o = options(KL_SHAPE(1, 28, 28), 10);
    kl_model m;
    CHECK_OK(kl_model_build(&spec, &o, &m, &err), &err);
    CHECK(kl_graph_param_count(m.g) == 320 + 18496 + 401536 + 1290);
    CHECK(param_shape_is(&m, "layers.2.weight", KL_SHAPE(64, 32, 3, 3)));
    CHECK(param_shape_is(&m, "layers.4.weight", KL_SHAPE(128, 3136)));
    CHECK(m.nlayers == 6);
    int64_t want_flops =
        451584 + 32 * 28 * 28 + 7225344 + 64 * 14 * 14 + 2 * 3136 * 128 + 2 * 128 * 10;
    CHECK(kl_model_flops(&m) == want_flops);
    kl_model_free(&m);
}

/* A residual block keeps its shape; batchnorm adds running statistics as buffers. */
static void test_residual_and_norms(void)
{
    kl_error err = {0};
    kl_layer_spec block[] = {dense(16, KL_ACT_RELU), dense(16, KL_ACT_NONE)};
    kl_layer_spec layers[] = {
        dense(16, KL_ACT_RELU),
        {.kind = KL_LAYER_RESIDUAL, .layers = block, .nlayers = 2, .activation = KL_ACT_RELU},
        {.kind = KL_LAYER_LAYERNORM, .eps = 1e-5f},
        {.kind = KL_LAYER_DROPOUT, .rate = 0.1f},
    };
    kl_model_spec spec = {layers, 4};
    kl_model_options o = options(KL_SHAPE(5), 3);
    kl_model m;
    CHECK_OK(kl_model_build(&spec, &o, &m, &err), &err);
    CHECK(param_shape_is(&m, "layers.1.1.weight", KL_SHAPE(16, 16)));
    CHECK(param_shape_is(&m, "layers.2.weight", KL_SHAPE(16)));
    kl_model_free(&m);

    kl_layer_spec cnn[] = {conv(4, 3, 1),
                           {.kind = KL_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-5f},
                           {.kind = KL_LAYER_GLOBAL_AVG_POOL}};
    spec = (kl_model_spec){cnn, 3};
    o = options(KL_SHAPE(3, 8, 8), 2);
    CHECK_OK(kl_model_build(&spec, &o, &m, &err), &err);
    CHECK(kl_graph_num_buffers(m.g) == 2);
    CHECK(!strcmp(kl_graph_buffer(m.g, 0)->name, "layers.1.running_mean"));
    kl_model_free(&m);
}

/* Weight decay (docs/config.md, optimizer.weight_decay) reaches the weights of conv2d and dense
 * layers, the head's included, and never a bias or a norm's scale and shift. */
static void test_decay_flags(void)
{
    kl_error err = {0};
    kl_layer_spec cnn[] = {conv(4, 3, 1),
                           {.kind = KL_LAYER_BATCHNORM, .momentum = 0.1f, .eps = 1e-5f},
                           {.kind = KL_LAYER_FLATTEN},
                           dense(6, KL_ACT_RELU),
                           {.kind = KL_LAYER_LAYERNORM, .eps = 1e-5f}};
    kl_model_spec spec = {cnn, 5};
    kl_model_options o = options(KL_SHAPE(1, 6, 6), 3);
    kl_model m;
    CHECK_OK(kl_model_build(&spec, &o, &m, &err), &err);
    int decayed = 0;
    for (int i = 0; i < kl_graph_num_params(m.g); i++) {
        const kl_param_info *p = kl_graph_param(m.g, i);
        bool decays = !(p->flags & KL_PARAM_NO_DECAY);
        bool weight = !strcmp(p->name, "layers.0.weight") || !strcmp(p->name, "layers.3.weight") ||
                      (!strncmp(p->name, "head", 4) && strstr(p->name, "weight"));
        if (!check_(decays == weight, __FILE__, __LINE__, "decay flag"))
            fprintf(stderr, "    %s: decays %d\n", p->name, decays);
        decayed += decays;
    }
    CHECK(decayed == 3);
    kl_model_free(&m);
}

static void test_errors(void)
{
    kl_error err = {0};
    kl_model m;
    kl_layer_spec bad_order[] = {dense(8, KL_ACT_RELU), conv(4, 3, 0)};
    bad_order[1].pos = (kl_source_pos){"net.yaml", 7, 5};
    kl_model_spec spec = {bad_order, 2};
    kl_model_options o = options(KL_SHAPE(1, 6, 6), 2);
    CHECK(kl_model_build(&spec, &o, &m, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "net.yaml:7:5: model.layers.1 (conv2d)") != NULL);

    kl_layer_spec block[] = {dense(8, KL_ACT_RELU)};
    kl_layer_spec res[] = {dense(16, KL_ACT_RELU),
                           {.kind = KL_LAYER_RESIDUAL, .layers = block, .nlayers = 1}};
    spec = (kl_model_spec){res, 2};
    o = options(KL_SHAPE(4), 2);
    CHECK(kl_model_build(&spec, &o, &m, &err) == KL_EINVAL);
    CHECK(strstr(err.msg, "residual") && strstr(err.msg, "[16]") && strstr(err.msg, "[8]"));

    kl_layer_spec big_kernel[] = {conv(2, 9, 0)};
    spec = (kl_model_spec){big_kernel, 1};
    o = options(KL_SHAPE(1, 5, 5), 2);
    CHECK(kl_model_build(&spec, &o, &m, &err) != KL_OK);
    CHECK(strstr(err.msg, "model.layers.0 (conv2d)") && strstr(err.msg, "conv2d:"));

    spec = (kl_model_spec){NULL, 0};
    o = options(KL_SHAPE(4), 0);
    CHECK(kl_model_build(&spec, &o, &m, &err) == KL_EINVAL && strstr(err.msg, "outputs"));
}

/* A built model with a residual block learns the spiral problem. */
static void test_learns(void)
{
    kl_error err = {0};
    kl_toy_data train, test;
    kl_layer_spec block[] = {dense(32, KL_ACT_RELU), dense(32, KL_ACT_NONE)};
    kl_layer_spec layers[] = {
        dense(32, KL_ACT_RELU),
        {.kind = KL_LAYER_RESIDUAL, .layers = block, .nlayers = 2, .activation = KL_ACT_RELU}};
    kl_model_spec spec = {layers, 2};
    kl_model_options o = options(KL_SHAPE(2), 3);
    o.batch = 32;
    kl_model m;
    CHECK_OK(kl_toy_spirals(&train, 600, 3, 0.02f, 1, &err), &err);
    CHECK_OK(kl_toy_spirals(&test, 300, 3, 0.02f, 2, &err), &err);
    CHECK_OK(kl_model_build(&spec, &o, &m, &err), &err);
    kl_toy_model tm = {m.g, m.x, m.y, m.output, m.loss};
    kl_toy_fit_config cfg = {.epochs = 40, .batch = 32, .seed = 1};
    cfg.optim = kl_optim_defaults(KL_OPTIM_ADAM);
    cfg.lr = (kl_lr_schedule){.kind = KL_LR_CONSTANT, .base_lr = 0.01f};
    float acc = 0;
    CHECK_OK(kl_toy_fit(&tm, &train, &cfg, NULL, NULL, &err), &err);
    CHECK_OK(kl_toy_accuracy(&tm, &test, &acc, &err), &err);
    CHECK(acc > 0.9f);
    kl_model_free(&m);
    kl_toy_data_free(&train);
    kl_toy_data_free(&test);
}

static const check_case cases[] = {
    CHECK_CASE(test_mlp),         CHECK_CASE(test_cnn),    CHECK_CASE(test_residual_and_norms),
    CHECK_CASE(test_decay_flags), CHECK_CASE(test_errors), CHECK_CASE(test_learns),
};

int main(int argc, char **argv)
{
    return check_run("test_model", cases, CHECK_NCASES(cases), argc, argv);
}
