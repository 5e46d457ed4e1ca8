/* Tests for runtime/config*.c: typed values and defaults from a full and a minimal config, every
 * class of error with its exact file:line:col and dotted key, typo suggestions, `--set` overrides
 * (typed, new keys, sequence indices, bad paths), the print -> parse round trip and the hash.
 * Error paths run under AddressSanitizer, so a leak on any of them fails the test. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "kiln/config.h"
#include "runtime/config_impl.h"

#define NAME "t.yaml"

static const char minimal[] = "data:\n"
                              "  dataset: fashion-mnist\n"
                              "model:\n"
                              "  layers:\n"
                              "    - dense: {units: 10}\n";

static const char full[] = "name: mlp\n"
                           "runs_dir: /tmp/runs\n"
                           "model:\n"
                           "  layers:\n"
                           "    - type: conv2d\n"
                           "      filters: 32\n"
                           "      kernel: 3\n"
                           "      padding: 1\n"
                           "      activation: relu\n"
                           "    - type: batchnorm\n"
                           "      momentum: 0.2\n"
                           "    - max_pool: {kernel: 2}\n"
                           "    - type: residual\n"
                           "      activation: leaky_relu\n"
                           "      alpha: 0.2\n"
                           "      layers:\n"
                           "        - conv2d: {filters: 32, kernel: 3, padding: 1, bias: no}\n"
                           "        - layernorm: {eps: 1e-6}\n"
                           "    - global_avg_pool\n"
                           "    - flatten:\n"
                           "    - dropout: {rate: 0.25}\n"
                           "    - type: dense\n"
                           "      units: 10\n"
                           "    - activation: {activation: gelu}\n"
                           "data:\n"
                           "  train: {format: hdf5, path: train.h5, x_dataset: images}\n"
                           "  test:\n"
                           "    format: csv\n"
                           "    path: \"test data.csv\"\n"
                           "    label_column: y\n"
                           "  val_fraction: 0.1\n"
                           "  task: classification\n"
                           "  classes: 10\n"
                           "  standardize: feature\n"
                           "  flip: true\n"
                           "  crop_padding: 4\n"
                           "  limit: 1000\n"
                           "optimizer:\n"
                           "  name: sgd\n"
                           "  lr: 0.05\n"
                           "  momentum: 0.9\n"
                           "  nesterov: yes\n"
                           "  weight_decay: 5e-4\n"
                           "schedule:\n"
                           "  name: cosine\n"
                           "  warmup_steps: 100\n"
                           "  min_lr: 0.001\n"
                           "train:\n"
                           "  epochs: 30\n"
                           "  batch_size: 128\n"
                           "  eval_every: 2\n"
                           "  seed: 42\n"
                           "  threads: 2\n"
                           "  clip_norm: 1.5\n"
                           "  label_smoothing: 0.1\n"
                           "  early_stop: {metric: val_accuracy, patience: 5, min_delta: 0.001}\n"
                           "checkpoint:\n"
                           "  every: 2 epochs\n"
                           "  keep_last: 5\n";

static kl_config *parse_with(const char *text, const char *const *ov, int n, kl_error *err)
{
    return kl_config_parse(NAME, text, strlen(text), ov, n, err);
}

static kl_config *parse_ok_(const char *text, const char *const *ov, int n, int line)
{
    kl_error err = {0};
    kl_config *c = parse_with(text, ov, n, &err);
    if (!check_(c != NULL, __FILE__, line, "config parses"))
        fprintf(stderr, "    %s\n", err.msg);
    return c;
}
#define parse_ok(text, ov, n) parse_ok_(text, ov, n, __LINE__)

/* The parse fails and the message contains each of the (up to two) fragments. */
static void expect_error_(const char *text, const char *const *ov, int n, const char *want,
                          const char *want2, int line)
{
    kl_error err = {0};
    kl_config *c = parse_with(text, ov, n, &err);
    check_(c == NULL, __FILE__, line, "config is refused");
    kl_config_free(c);
    if (!check_(err.status != KL_OK && strstr(err.msg, want), __FILE__, line, want) ||
        (want2 && !check_(strstr(err.msg, want2) != NULL, __FILE__, line, want2)))
        fprintf(stderr, "    got: %s\n", err.msg);
}
#define expect_error(text, want, want2) expect_error_(text, NULL, 0, want, want2, __LINE__)
#define expect_override_error(text, ov, want, want2) \
    expect_error_(text, (const char *const[]){ov}, 1, want, want2, __LINE__)

static void test_minimal_defaults(void)
{
    kl_config *c = parse_ok(minimal, NULL, 0);
    if (!c)
        return;
    CHECK(strcmp(c->path, NAME) == 0);
    CHECK(c->name == NULL);
    CHECK(strcmp(c->runs_dir, "runs") == 0);
    CHECK(strcmp(c->data.dataset, "fashion-mnist") == 0);
    CHECK(strcmp(c->data.dir, "/usr/share/datasets/fashion-mnist") == 0);
    CHECK(c->data.train.format == KL_DATA_NONE && c->data.val.format == KL_DATA_NONE);
    CHECK(c->data.task == KL_TASK_CLASSIFICATION && c->data.standardize == KL_STD_GLOBAL);
    CHECK(c->data.val_fraction == 0 && c->data.classes == 0 && !c->data.flip);
    CHECK(c->optimizer.kind == KL_OPTIM_ADAM);
    CHECK(c->optimizer.beta1 == 0.9f && c->optimizer.beta2 == 0.999f && c->optimizer.eps == 1e-8f);
    CHECK(c->schedule.kind == KL_LR_CONSTANT && c->schedule.base_lr == 1e-3f);
    CHECK(c->train.epochs == 10 && c->train.batch_size == 64 && c->train.eval_every == 1);
    CHECK(c->train.seed == 1 && c->train.threads == 0 && c->train.clip_norm == 0);
    CHECK(strcmp(c->train.early_stop.metric, "val_loss") == 0 && c->train.early_stop.patience == 0);
    CHECK(c->checkpoint.every == NULL && c->checkpoint.keep_last == 3);
    CHECK(c->model.nlayers == 1);
    if (c->model.nlayers == 1) {
        kl_layer_spec *l = &c->model.layers[0];
        CHECK(l->kind == KL_LAYER_DENSE && l->units == 10 && l->bias);
        CHECK(l->activation == KL_ACT_NONE);
        CHECK(l->pos.line == 5 && l->pos.col == 7 && strcmp(l->pos.file, NAME) == 0);
    }
    kl_config_free(c);
}

static void check_full_layers(const kl_config *c)
{
    CHECK(c->model.nlayers == 9);
    if (c->model.nlayers != 9)
        return;
    const kl_layer_spec *l = c->model.layers;
    CHECK(l[0].kind == KL_LAYER_CONV2D && l[0].filters == 32 && l[0].kernel == 3);
    CHECK(l[0].stride == 1 && l[0].padding == 1 && l[0].activation == KL_ACT_RELU && l[0].bias);
    CHECK(l[1].kind == KL_LAYER_BATCHNORM && l[1].momentum == 0.2f && l[1].eps == 1e-5f);
    CHECK(l[2].kind == KL_LAYER_MAX_POOL && l[2].kernel == 2 && l[2].stride == 2);
    CHECK(l[3].kind == KL_LAYER_RESIDUAL && l[3].activation == KL_ACT_LEAKY_RELU);
    CHECK(l[3].alpha == 0.2f && l[3].nlayers == 2);
    if (l[3].nlayers == 2) {
        CHECK(l[3].layers[0].kind == KL_LAYER_CONV2D && !l[3].layers[0].bias);
        CHECK(l[3].layers[1].kind == KL_LAYER_LAYERNORM && l[3].layers[1].eps == 1e-6f);
        CHECK(l[3].layers[1].pos.line == 18);
    }
    CHECK(l[4].kind == KL_LAYER_GLOBAL_AVG_POOL && l[5].kind == KL_LAYER_FLATTEN);
    CHECK(l[6].kind == KL_LAYER_DROPOUT && l[6].rate == 0.25f);
    CHECK(l[7].kind == KL_LAYER_DENSE && l[7].units == 10);
    CHECK(l[8].kind == KL_LAYER_ACTIVATION && l[8].activation == KL_ACT_GELU);
}

static void test_full(void)
{
    kl_config *c = parse_ok(full, NULL, 0);
    if (!c)
        return;
    CHECK(strcmp(c->name, "mlp") == 0 && strcmp(c->runs_dir, "/tmp/runs") == 0);
    check_full_layers(c);
    CHECK(c->data.dataset == NULL && c->data.dir == NULL);
    CHECK(c->data.train.format == KL_DATA_HDF5 && strcmp(c->data.train.path, "train.h5") == 0);
    CHECK(strcmp(c->data.train.x_dataset, "images") == 0);
    CHECK(strcmp(c->data.train.y_dataset, "y") == 0);
    CHECK(c->data.train.pos.line == 26 && c->data.train.pos.col == 10);
    CHECK(c->data.test.format == KL_DATA_CSV && strcmp(c->data.test.path, "test data.csv") == 0);
    CHECK(strcmp(c->data.test.label_column, "y") == 0);
    CHECK(c->data.val_fraction == 0.1f && c->data.classes == 10 && c->data.flip);
    CHECK(c->data.standardize == KL_STD_FEATURE && c->data.crop_padding == 4);
    CHECK(c->data.limit == 1000);
    CHECK(c->optimizer.kind == KL_OPTIM_SGD && c->optimizer.momentum == 0.9f);
    CHECK(c->optimizer.nesterov && c->optimizer.weight_decay == 5e-4f);
    CHECK(c->optimizer.dampening == 0);
    CHECK(c->schedule.base_lr == 0.05f && c->schedule.kind == KL_LR_COSINE);
    CHECK(c->schedule.warmup_steps == 100 && c->schedule.min_lr == 0.001f);
    CHECK(c->schedule.total_steps == 0);
    CHECK(c->train.epochs == 30 && c->train.batch_size == 128 && c->train.eval_every == 2);
    CHECK(c->train.seed == 42 && c->train.threads == 2 && c->train.clip_norm == 1.5f);
    CHECK(c->train.label_smoothing == 0.1f);
    CHECK(strcmp(c->train.early_stop.metric, "val_accuracy") == 0);
    CHECK(c->train.early_stop.patience == 5 && c->train.early_stop.min_delta == 0.001f);
    CHECK(strcmp(c->checkpoint.every, "2 epochs") == 0 && c->checkpoint.keep_last == 5);
    kl_config_free(c);
}

static void test_type_and_range_errors(void)
{
    expect_error("data: {dataset: mnist}\noptimizer:\n  lr: fast\n",
                 "t.yaml:3:7: optimizer.lr: expected a positive number, got \"fast\"", NULL);
    expect_error("data: {dataset: mnist}\noptimizer:\n  lr: -1\n",
                 "t.yaml:3:7: optimizer.lr: expected a positive number, got -1", NULL);
    expect_error("data: {dataset: mnist}\ntrain:\n  epochs: 0\n",
                 "t.yaml:3:11: train.epochs: expected an integer >= 1, got 0", NULL);
    expect_error("data: {dataset: mnist}\ntrain:\n  epochs: 2.5\n",
                 "t.yaml:3:11: train.epochs: expected an integer >= 1, got \"2.5\"", NULL);
    expect_error("data: {dataset: mnist}\ntrain:\n  epochs: \"3\"\n",
                 "t.yaml:3:11: train.epochs: expected an integer >= 1, got the quoted string",
                 NULL);
    expect_error("data: {dataset: mnist, val_fraction: 1}\n",
                 "t.yaml:1:38: data.val_fraction: expected a number in [0, 1), got 1", NULL);
    expect_error("data: {dataset: mnist, flip: maybe}\n",
                 "t.yaml:1:30: data.flip: expected a boolean (true/false, yes/no), got \"maybe\"",
                 NULL);
    expect_error("data: {dataset: mnist}\noptimizer: {name: sgdd}\n",
                 "t.yaml:2:19: optimizer.name: expected one of (sgd, adam, adamw), got \"sgdd\"; "
                 "did you mean 'sgd'?",
                 NULL);
    expect_error("data: {dataset: mnist}\ntrain: 5\n",
                 "t.yaml:2:8: train: expected a mapping, got \"5\"", NULL);
    expect_error("data: {dataset: mnist}\nname: [a, b]\n",
                 "t.yaml:2:7: name: expected a string, got a sequence", NULL);
    expect_error("data: {dataset: cifar}\n", "t.yaml:1:17: data.dataset: expected one of", NULL);
    expect_error("data: {dataset: mnist}\ntrain: {epochs: 99999999999}\n",
                 "t.yaml:2:17: train.epochs: 99999999999 is too large", NULL);
}

static void test_key_errors(void)
{
    expect_error("data: {dataset: mnist}\ntrain:\n  epoch: 3\n",
                 "t.yaml:3:3: train.epoch: unknown key; did you mean 'epochs'?", NULL);
    expect_error("data: {dataset: mnist}\ntrain:\n  zzzzzzzz: 3\n",
                 "t.yaml:3:3: train.zzzzzzzz: unknown key; valid keys: epochs, batch_size,", NULL);
    expect_error("data: {dataset: mnist}\noptimiser: {lr: 0.1}\n",
                 "t.yaml:2:1: optimiser: unknown key; did you mean 'optimizer'?", NULL);
    expect_error("data: {dataset: mnist}\ntrain:\n  epochs: 3\n  epochs: 4\n",
                 "t.yaml:4:3: train.epochs: duplicate key (first set at line 3)", NULL);
    expect_error("data: {dataset: mnist}\noptimizer: {momentum: 0.9}\n",
                 "t.yaml:2:13: optimizer.momentum: not used by adam; its keys are: name, lr,",
                 NULL);
    expect_error("data: {dataset: mnist}\ntrain:\n  early_stop: {metrc: val_loss}\n",
                 "t.yaml:3:16: train.early_stop.metrc: unknown key; did you mean 'metric'?", NULL);
}

static void test_yaml_errors(void)
{
    expect_error("train:\n  epochs: [1, 2\n", "t.yaml:", "malformed YAML");
    expect_error("a: b\n c: d\n", "t.yaml:2:3: malformed YAML: mapping values are not allowed",
                 NULL);
    expect_error("- 1\n- 2\n", "t.yaml:1:1: a config is a mapping of sections", NULL);
    expect_error("data: &d {dataset: mnist}\nname: *d\n",
                 "t.yaml:2:7: YAML aliases (*d) are not supported", NULL);
    expect_error("data: {dataset: mnist}\n---\nname: x\n", "t.yaml:2:1: a second YAML document",
                 NULL);
    expect_error("", "t.yaml:1:1: data.train: missing; give data.train", NULL);
}

static void test_layer_errors(void)
{
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - type: max_pool\n"
                 "      kernel: 2\n      units: 3\n",
                 "t.yaml:6:7: model.layers.0.units: not a field of max_pool; its fields are: "
                 "kernel, stride, padding",
                 NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - flatten\n    - type: dense\n"
                 "      activation: relu\n",
                 "t.yaml:5:7: model.layers.1.units: missing; dense needs units", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - type: dens\n",
                 "t.yaml:4:13: model.layers.0.type: expected one of (dense, conv2d,",
                 "did you mean 'dense'?");
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - conv2d: {filters: 8}\n",
                 "t.yaml:4:7: model.layers.0.kernel: missing; conv2d needs kernel", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - dense: {unit: 8}\n",
                 "t.yaml:4:15: model.layers.0.unit: unknown key; did you mean 'units'?", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - dropout: {rate: 1.5}\n",
                 "t.yaml:4:23: model.layers.0.rate: expected a number in [0, 1), got 1.5", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - type: residual\n      layers:\n"
                 "        - dense: {units: 4, activation: swish}\n",
                 "t.yaml:6:41: model.layers.0.layers.0.activation: expected one of (none, relu,",
                 NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers: {dense: 3}\n",
                 "t.yaml:3:11: model.layers: expected a sequence of layers", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - dense: 3\n",
                 "t.yaml:4:14: model.layers.0: the fields of a dense layer go in a mapping, "
                 "e.g. '- dense: {units: ...}'",
                 NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - activation: swish\n",
                 "t.yaml:4:19: model.layers.0.activation: expected one of (none, relu,", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - dropout: 2\n",
                 "t.yaml:4:16: model.layers.0.rate: expected a number in [0, 1), got 2", NULL);
    expect_error("data: {dataset: mnist}\nmodel:\n  layers:\n    - {units: 3}\n",
                 "t.yaml:4:7: model.layers.0: a layer needs 'type:'", NULL);
}

/* `- activation: relu` and `- dropout: 0.2`: the one-field kinds take their value directly. */
static void test_layer_shorthand(void)
{
    kl_error err = {0};
    const char *y = "data: {dataset: mnist}\nmodel:\n  layers:\n    - dense: {units: 8}\n"
                    "    - activation: gelu\n    - dropout: 0.25\n";
    kl_config *c = kl_config_parse("t.yaml", y, strlen(y), NULL, 0, &err);
    if (!CHECK(c != NULL)) {
        fprintf(stderr, "    %s\n", err.msg);
        return;
    }
    CHECK(c->model.nlayers == 3);
    CHECK(c->model.layers[1].kind == KL_LAYER_ACTIVATION);
    CHECK(c->model.layers[1].activation == KL_ACT_GELU);
    CHECK(c->model.layers[2].kind == KL_LAYER_DROPOUT);
    CHECK_NEAR(c->model.layers[2].rate, 0.25, 1e-7);
    kl_config_free(c);
}

static void test_cross_field_errors(void)
{
    expect_error("data: {train: {format: csv}}\n",
                 "t.yaml:1:15: data.train.path: missing; the source needs a file", NULL);
    expect_error("data: {train: {format: idx, path: a.gz}}\n", "data.train.labels: missing", NULL);
    expect_error("data: {train: {path: a.csv}}\n", "t.yaml:1:15: data.train.format: missing", NULL);
    expect_error("data: {train: {format: csv, path: a.csv, labels: b}}\n",
                 "t.yaml:1:42: data.train.labels: not used by csv", NULL);
    expect_error("model: {layers: [flatten]}\n", "t.yaml:1:1: data.train: missing", NULL);
    expect_error("data: {dataset: mnist}\noptimizer:\n  name: sgd\n  nesterov: true\n",
                 "t.yaml:4:13: optimizer.nesterov: optimizer nesterov needs momentum > 0", NULL);
    expect_error("data: {dataset: mnist}\nschedule:\n  name: step\n",
                 "t.yaml:3:3: schedule.step_size: learning-rate step_size is 0", NULL);
    expect_error("data: {dataset: mnist}\noptimizer: {lr: 0.01}\nschedule:\n  name: cosine\n"
                 "  min_lr: 0.1\n",
                 "t.yaml:5:11: schedule.min_lr: learning-rate min_lr is 0.1", NULL);
    expect_error("data: {dataset: mnist}\nschedule:\n  name: cosine\n  warmup_steps: 10\n"
                 "  total_steps: 5\n",
                 "t.yaml:5:16: schedule.total_steps:", NULL);
}

static char *print_to_string(const kl_config *c);
static void round_trip(const char *text);

/* schedule.name: onecycle takes PyTorch's OneCycleLR defaults, its own keys only, and its
 * checks' messages at the keys they name. */
static void test_onecycle(void)
{
    kl_config *c = parse_ok("data: {dataset: mnist}\nschedule: {name: onecycle}\n", NULL, 0);
    if (c) {
        CHECK(c->schedule.kind == KL_LR_ONECYCLE && c->schedule.total_steps == 0);
        CHECK(c->schedule.pct_start == 0.3f && c->schedule.div_factor == 25.0f);
        CHECK(c->schedule.final_div_factor == 1e4f && c->schedule.warmup_steps == 0);
        char *printed = print_to_string(c);
        CHECK(printed && strstr(printed, "pct_start: 0.3") && !strstr(printed, "warmup_steps") &&
              !strstr(printed, "min_lr"));
        free(printed);
        kl_config_free(c);
    }
    round_trip("data: {dataset: mnist}\nschedule:\n  name: onecycle\n  pct_start: 0.25\n"
               "  div_factor: 10\n  final_div_factor: 100\n  total_steps: 400\n");
    expect_error("data: {dataset: mnist}\nschedule:\n  name: onecycle\n  warmup_steps: 10\n",
                 "t.yaml:4:3: schedule.warmup_steps: not used by onecycle", NULL);
    expect_error("data: {dataset: mnist}\nschedule:\n  name: onecycle\n  min_lr: 0.1\n",
                 "t.yaml:4:3: schedule.min_lr: not used by onecycle", NULL);
    expect_error("data: {dataset: mnist}\nschedule:\n  name: onecycle\n  pct_start: 1\n",
                 "t.yaml:4:14: schedule.pct_start: expected a number in (0, 1)", NULL);
    expect_error("data: {dataset: mnist}\nschedule:\n  name: onecycle\n  div_factor: 0.5\n",
                 "t.yaml:4:15: schedule.div_factor: expected a number >= 1", NULL);
    expect_error("data: {dataset: mnist}\nschedule:\n  name: onecycle\n  total_steps: 3\n",
                 "t.yaml:4:16: schedule.total_steps: learning-rate total_steps is 3", "no rise");
    expect_error("data: {dataset: mnist}\nschedule:\n  name: cosine\n  pct_start: 0.3\n",
                 "t.yaml:4:3: schedule.pct_start: not used by cosine", NULL);
}

/* A one-field layer in the scalar form (`- dropout: 0.3`) takes an override of that field or of
 * another one, as a sweep sets them: the value moves into a mapping beside the new field. */
static void test_override_shorthand(void)
{
    static const char y[] = "model:\n  layers:\n    - dense: {units: 8}\n"
                            "    - activation: leaky_relu\n    - dropout: 0.3\n"
                            "data: {dataset: mnist}\n";
    const char *ov[] = {"model.layers.2.rate=0.1", "model.layers.1.alpha=0.2"};
    kl_config *c = parse_ok(y, ov, 2);
    if (c && CHECK(c->model.nlayers == 3)) {
        CHECK(c->model.layers[2].kind == KL_LAYER_DROPOUT && c->model.layers[2].rate == 0.1f);
        CHECK(c->model.layers[1].kind == KL_LAYER_ACTIVATION);
        CHECK(c->model.layers[1].activation == KL_ACT_LEAKY_RELU);
        CHECK(c->model.layers[1].alpha == 0.2f);
    }
    kl_config_free(c);
    const char *same[] = {"model.layers.1.activation=gelu"};
    c = parse_ok(y, same, 1);
    CHECK(c && c->model.layers[1].activation == KL_ACT_GELU && c->model.layers[2].rate == 0.3f);
    kl_config_free(c);
    /* A field the kind does not take is still refused, at the override. */
    expect_override_error(y, "model.layers.2.units=4",
                          "--set:1:16: model.layers.2.units: not a field of dropout", NULL);
}

static void test_missing_file(void)
{
    kl_error err = {0};
    kl_config *c = kl_config_load("/nonexistent/kiln/train.yaml", NULL, 0, &err);
    CHECK(c == NULL && err.status == KL_EIO);
    CHECK(strstr(err.msg, "/nonexistent/kiln/train.yaml") != NULL);
}

static void test_load_file(void)
{
    char path[] = "/tmp/kiln_test_config_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!check_(f != NULL, __FILE__, __LINE__, "temporary file"))
        return;
    fputs(full, f);
    fclose(f);
    kl_error err = {0};
    const char *ov[] = {"train.epochs=3"};
    kl_config *c = kl_config_load(path, ov, 1, &err);
    if (check_(c != NULL, __FILE__, __LINE__, "kl_config_load"))
        CHECK(c->train.epochs == 3 && strcmp(c->path, path) == 0 && c->model.nlayers == 9);
    kl_config_free(c);
    remove(path);
}

static void test_overrides(void)
{
    const char *ov[] = {"train.epochs=3",
                        "optimizer.lr=0.01",
                        "name=run1",
                        "data.flip=yes",
                        "model.layers.0.units=64",
                        "model.layers.1={type: dropout, rate: 0.5}",
                        "train.early_stop.patience=2"};
    kl_config *c = parse_ok(minimal, ov, 7);
    if (!c)
        return;
    CHECK(c->train.epochs == 3 && c->schedule.base_lr == 0.01f);
    CHECK(strcmp(c->name, "run1") == 0 && c->data.flip);
    CHECK(c->train.early_stop.patience == 2);
    CHECK(c->model.nlayers == 2);
    if (c->model.nlayers == 2) {
        CHECK(c->model.layers[0].units == 64);
        CHECK(c->model.layers[1].kind == KL_LAYER_DROPOUT && c->model.layers[1].rate == 0.5f);
        CHECK(strcmp(c->model.layers[1].pos.file, "--set") == 0);
        CHECK(c->model.layers[1].pos.line == 6);
    }
    kl_config_free(c);

    /* The later override wins; a flow sequence replaces the whole list. */
    const char *ov2[] = {"train.epochs=3", "train.epochs=4",
                         "model.layers=[flatten, {dense: {units: 5}}]"};
    c = parse_ok(full, ov2, 3);
    if (c) {
        CHECK(c->train.epochs == 4 && c->model.nlayers == 2);
        CHECK(c->model.nlayers == 2 && c->model.layers[1].units == 5);
    }
    kl_config_free(c);
}

static void test_override_errors(void)
{
    expect_override_error(minimal, "train.epoch=3",
                          "--set:1:7: train.epoch: unknown key; did you mean 'epochs'?", NULL);
    expect_override_error(minimal, "optimizer.lr=fast",
                          "--set:1:14: optimizer.lr: expected a positive number, got \"fast\"",
                          NULL);
    expect_override_error(minimal, "train.epochs", "--set:1:1: bad override 'train.epochs'", NULL);
    expect_override_error(minimal, "train..epochs=3", "--set:1:7: bad override", NULL);
    expect_override_error(minimal, "model.layers.5.units=3",
                          "--set:1:14: model.layers.5: no item '5' in a sequence of 1", NULL);
    expect_override_error(minimal, "data.dataset.x=3",
                          "--set:1:14: data.dataset.x: the value there is \"fashion-mnist\"", NULL);
    expect_override_error(minimal, "model.layers.0.units=[1", "--set:1:", "malformed YAML");
    /* Errors from later stages point at the override as well. */
    const char *ov[] = {"train.epochs=3", "model.layers.0.unit=4"};
    expect_error_(minimal, ov, 2, "--set:2:16: model.layers.0.unit: unknown key", NULL, __LINE__);
}

static char *print_to_string(const kl_config *c)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    kl_config_print(c, f);
    fclose(f);
    return text;
}

static void round_trip(const char *text)
{
    kl_config *a = parse_ok(text, NULL, 0);
    char *printed = a ? print_to_string(a) : NULL;
    kl_config *b = printed ? parse_ok(printed, NULL, 0) : NULL;
    char *again = b ? print_to_string(b) : NULL;
    CHECK(again != NULL && strcmp(printed, again) == 0);
    CHECK(a && b && kl_config_hash(a) == kl_config_hash(b));
    if (a && b) {
        CHECK(a->model.nlayers == b->model.nlayers && a->train.seed == b->train.seed);
        CHECK(a->optimizer.momentum == b->optimizer.momentum);
        CHECK(a->schedule.min_lr == b->schedule.min_lr && a->data.limit == b->data.limit);
        CHECK(a->optimizer.weight_decay == b->optimizer.weight_decay);
    }
    if (printed && again && strcmp(printed, again) != 0)
        fprintf(stderr, "first:\n%s\nsecond:\n%s\n", printed, again);
    free(printed);
    free(again);
    kl_config_free(a);
    kl_config_free(b);
}

static void test_round_trip(void)
{
    round_trip(minimal);
    round_trip(full);
    kl_config *c = parse_ok(full, NULL, 0);
    char *printed = c ? print_to_string(c) : NULL;
    CHECK(printed && strstr(printed, "  lr: 0.05\n") && strstr(printed, "  name: sgd\n"));
    CHECK(printed && strstr(printed, "    - type: max_pool\n      kernel: 2\n      stride: 2\n"));
    CHECK(printed && !strstr(printed, "beta1"));
    free(printed);
    kl_config_free(c);
}

static void test_hash(void)
{
    kl_config *a = parse_ok(full, NULL, 0), *b = parse_ok(full, NULL, 0);
    const char *ov[] = {"optimizer.lr=0.06"};
    kl_config *d = parse_ok(full, ov, 1);
    if (a && b && d) {
        CHECK(kl_config_hash(a) == kl_config_hash(b));
        CHECK(kl_config_hash(a) != kl_config_hash(d));
        CHECK(kl_config_hash(a) != 0);
    }
    kl_config_free(a);
    kl_config_free(b);
    kl_config_free(d);
}

static void test_names(void)
{
    CHECK(strcmp(kl_layer_kind_name(KL_LAYER_GLOBAL_AVG_POOL), "global_avg_pool") == 0);
    CHECK(strcmp(kl_layer_kind_name(KL_LAYER_RESIDUAL), "residual") == 0);
    CHECK(strcmp(kl_activation_name(KL_ACT_LEAKY_RELU), "leaky_relu") == 0);
    CHECK(strcmp(kl_activation_name(KL_ACT_SIGMOID), "sigmoid") == 0);
}

/* A text of a mapping with keys k000000..k(n-1) after a data section, in a buffer with room for
 * one more line; *len is its length. NULL when out of memory. */
static char *many_keys_text(int n, size_t *len, size_t *cap)
{
    *cap = (size_t)n * 24 + 64;
    char *text = malloc(*cap);
    if (!text)
        return NULL;
    size_t at = (size_t)snprintf(text, *cap, "data: {dataset: mnist}\n");
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(text + at, *cap - at, "k%06d: %d\n", i, i);
    *len = at;
    return text;
}

/* This process's CPU seconds: unlike the wall clock, other processes on a busy machine do not
 * add to it. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds the loader takes to read a mapping of n keys and refuse it (the keys are checked
 * for duplicates before they are refused as unknown): the fastest of three tries. */
static double many_keys_seconds(int n)
{
    size_t len, cap;
    char *text = many_keys_text(n, &len, &cap);
    if (!check_(text != NULL, __FILE__, __LINE__, "memory for the text"))
        return 0;
    double best = INFINITY;
    for (int r = 0; r < 3; r++) {
        double t0 = cpu_seconds();
        kl__ynode *root = NULL;
        kl_error err = {0};
        CHECK_OK(kl__yaml_parse(NAME, text, len, 0, 0, &root, &err), &err);
        int first = -1;
        CHECK(root && root->n == n + 1 && kl__ynode_find_duplicate(root, &first) == -1);
        kl__ynode_free(root);
        expect_error_(text, NULL, 0, "t.yaml:2:1: k000000: unknown key", NULL, __LINE__);
        double t = cpu_seconds() - t0;
        best = t < best ? t : best;
    }
    free(text);
    return best;
}

/* A mapping of many keys (hostile input, or a generated sweep) loads in time linear in the keys:
 * duplicates are found by hashing, not by comparing every pair. Checked by how the CPU time
 * grows, not by a bound in seconds, so that a busy machine or the sanitizers cannot fail it: four
 * times the keys take about four times as long, where comparing every pair would take sixteen
 * (the bound, 10x, leaves room for caches and the allocator). A
 * duplicate among them is still refused at its second line, naming the first. */
static void test_many_keys(void)
{
    enum { KEYS = 100000 };
    double small = many_keys_seconds(KEYS / 4), large = many_keys_seconds(KEYS);
    if (!CHECK(large < 10 * small))
        fprintf(stderr, "    %d keys took %.3f s, %d keys %.3f s: not linear\n", KEYS / 4, small,
                KEYS, large);
    size_t len, cap;
    char *text = many_keys_text(KEYS, &len, &cap);
    if (!check_(text != NULL, __FILE__, __LINE__, "memory for the text"))
        return;
    snprintf(text + len, cap - len, "k000005: again\n");
    expect_error_(text, NULL, 0, "t.yaml:100002:1: k000005: duplicate key (first set at line 7)",
                  NULL, __LINE__);
    free(text);
}

static const check_case cases[] = {
    CHECK_CASE(test_minimal_defaults),
    CHECK_CASE(test_full),
    CHECK_CASE(test_type_and_range_errors),
    CHECK_CASE(test_key_errors),
    CHECK_CASE(test_yaml_errors),
    CHECK_CASE(test_layer_errors),
    CHECK_CASE(test_layer_shorthand),
    CHECK_CASE(test_cross_field_errors),
    CHECK_CASE(test_onecycle),
    CHECK_CASE(test_override_shorthand),
    CHECK_CASE(test_missing_file),
    CHECK_CASE(test_load_file),
    CHECK_CASE(test_overrides),
    CHECK_CASE(test_override_errors),
    CHECK_CASE(test_round_trip),
    CHECK_CASE(test_hash),
    CHECK_CASE(test_names),
    CHECK_CASE(test_many_keys),
};

int main(int argc, char **argv)
{
    return check_run("test_config", cases, CHECK_NCASES(cases), argc, argv);
}
