/* dist.deterministic against the rank count and train.accumulate: under mpirun -n 4, one config
 * (a dense layer, batch norm, dropout, a second dense layer; 576 Fashion-MNIST training
 * images, 3 epochs of 9 steps of 64 in 8 shards) trains on 1 rank (a self communicator), on 2
 * (the world split in pairs) and on all 4, each with train.accumulate 1 and 2: the weights, the
 * batch-norm statistics and the training loss must be the same bits everywhere. Without it the
 * same runs differ (printed, not checked: batch norm then normalises each rank's slice). Shard
 * counts that do not fit the ranks or the accumulation are refused. Needs Fashion-MNIST. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/clock.h"
#include "kiln/comm.h"
#include "kiln/data.h"
#include "kiln/train.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static const char yaml[] = "model:\n"
                           "  layers:\n"
                           "    - dense: {units: 32}\n"
                           "    - batchnorm: {}\n"
                           "    - activation: relu\n"
                           "    - dropout: {rate: 0.2}\n"
                           "    - dense: {units: 16, activation: tanh}\n"
                           "data:\n"
                           "  train: {format: idx, path: " FMNIST "train-images-idx3-ubyte.gz,\n"
                           "          labels: " FMNIST "train-labels-idx1-ubyte.gz}\n"
                           "  limit: 640\n"
                           "  val_fraction: 0.1\n"
                           "optimizer: {name: adam, lr: 0.003}\n"
                           "train: {epochs: 3, batch_size: 64, seed: 5}\n"
                           "dist: {deterministic: true, shards: 8}\n";

typedef struct run {
    float *w; /* the parameters, then the buffers */
    size_t n;
    double train_loss;
} run;

static run train_on(kl_comm *comm, const kl_config *cfg, kl_data_splits *data)
{
    kl_error err = {0};
    kl_model m;
    kl_train_result res;
    run out = {0};
    if (kl_train_run_dist(cfg, data, comm, NULL, NULL, &m, &res, &err) != KL_OK) {
        fprintf(stderr, "train: %s\n", err.msg);
        return out;
    }
    size_t np = kl_graph_param_count(m.g), nb = kl_graph_buffer_count(m.g);
    if ((out.w = malloc((np + nb) * sizeof *out.w))) {
        memcpy(out.w, kl_graph_params(m.g), np * sizeof *out.w);
        memcpy(out.w + np, kl_graph_buffers(m.g), nb * sizeof *out.w);
        out.n = np + nb;
    }
    out.train_loss = res.last.train_loss;
    kl_model_free(&m);
    return out;
}

static bool same(const run *a, const run *b)
{
    return a->w && b->w && a->n == b->n && memcmp(a->w, b->w, a->n * sizeof *a->w) == 0 &&
           memcmp(&a->train_loss, &b->train_loss, sizeof a->train_loss) == 0;
}

static double max_diff(const run *a, const run *b)
{
    double d = 0;
    for (size_t i = 0; a->w && b->w && i < a->n && i < b->n; i++)
        d = fmax(d, fabs((double)a->w[i] - b->w[i]));
    return d;
}

/* Shard counts that do not fit are refused on every rank, before training. */
static void refusals(kl_comm *world, kl_config *cfg, kl_data_splits *data)
{
    kl_error err = {0};
    cfg->dist.shards = 2; /* 4 ranks do not divide it */
    kl_status st = kl_train_run_dist(cfg, data, world, NULL, NULL, NULL, NULL, &err);
    CHECK(st == KL_EINVAL && strstr(err.msg, "dist.shards") && strstr(err.msg, "4 ranks"));
    cfg->dist.shards = 8;
    cfg->train.accumulate = 4; /* passes of 4 samples asked for, shards of 8 */
    st = kl_train_run_dist(cfg, data, world, NULL, NULL, NULL, NULL, &err);
    CHECK(st == KL_EINVAL && strstr(err.msg, "train.accumulate 4") &&
          strstr(err.msg, "at least 16"));
    cfg->train.accumulate = 1;
    cfg->dist.shards = 5; /* 64 does not divide by 5 */
    st = kl_train_run_dist(cfg, data, world, NULL, NULL, NULL, NULL, &err);
    CHECK(st == KL_EINVAL && strstr(err.msg, "train.batch_size 64"));
    cfg->dist.shards = 8;
}

int main(int argc, char **argv)
{
    kl_error err = {0};
    kl_comm *world = NULL, *pair = NULL, *self = NULL;
    if (kl_comm_world(&argc, &argv, &world, &err) != KL_OK) {
        fprintf(stderr, "test_train_det: %s\n", err.msg);
        return 1;
    }
    int rank = kl_comm_rank(world), size = kl_comm_size(world);
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) != 0) {
        kl_comm_free(world);
        return check_missing("test_train_det", "Fashion-MNIST not installed");
    }
    kl_config *cfg = kl_config_parse("det.yaml", yaml, strlen(yaml), NULL, 0, &err);
    kl_data_splits data = {0};
    if (!CHECK(cfg != NULL && size == 4)) {
        kl_comm_free(world);
        return check_report("test_train_det");
    }
    CHECK_OK(kl_data_prepare(&cfg->data, cfg->train.seed, &data, &err), &err);
    CHECK_OK(kl_comm_self(&self, &err), &err);
    CHECK_OK(kl_comm_split(world, rank / 2, rank, &pair, &err), &err);
    double t0 = kl_now();
    run r[6];
    kl_comm *comms[3] = {self, pair, world};
    for (int k = 0; k < 6; k++) {
        cfg->train.accumulate = k % 2 ? 2 : 1;
        r[k] = train_on(comms[k / 2], cfg, &data);
    }
    cfg->train.accumulate = 1;
    const char *names[6] = {"1 rank",  "1 rank, accumulate 2", "2 ranks", "2 ranks, accumulate 2",
                            "4 ranks", "4 ranks, accumulate 2"};
    CHECK(r[0].w != NULL && r[0].n > 0);
    for (int k = 1; k < 6; k++)
        if (!CHECK(same(&r[k], &r[0])))
            fprintf(stderr, "    %s differs from 1 rank by up to %.3g\n", names[k],
                    max_diff(&r[k], &r[0]));
    /* Every rank holds the same weights as rank 0. */
    if (r[4].w) {
        float *root = malloc(r[4].n * sizeof *root);
        if (CHECK(root != NULL)) {
            memcpy(root, r[4].w, r[4].n * sizeof *root);
            CHECK_OK(kl_comm_bcast(world, root, r[4].n * sizeof *root, 0, &err), &err);
            CHECK(memcmp(root, r[4].w, r[4].n * sizeof *root) == 0);
        }
        free(root);
    }
    if (rank == 0)
        printf("test_train_det: 6 deterministic runs in %.1f s\n", kl_now() - t0);
    /* Without it, the ordinary all-reduce: equal to rounding only. */
    cfg->dist.deterministic = false;
    run p1 = train_on(self, cfg, &data), p4 = train_on(world, cfg, &data);
    if (rank == 0 && p1.w && p4.w)
        printf("test_train_det: without dist.deterministic, 4 ranks against 1: max |diff| %.3g "
               "(%s)\n",
               max_diff(&p4, &p1), same(&p4, &p1) ? "identical" : "differs");
    cfg->dist.deterministic = true;
    refusals(world, cfg, &data);
    for (int k = 0; k < 6; k++)
        free(r[k].w);
    free(p1.w);
    free(p4.w);
    kl_data_splits_free(&data);
    kl_config_free(cfg);
    kl_comm_free(pair);
    kl_comm_free(self);
    kl_comm_free(world);
    return check_report("test_train_det");
}
