/* Data-parallel training against single-process training: under mpirun -n 4, the same config
 * trains 50 steps on 1 rank (a self communicator), on 2 ranks (the world split in pairs) and on
 * all 4, and on 4 with many small gradient buckets; the final weights must agree within 1e-5
 * relative (dropout on: its masks follow the sample's row in the global batch), validation
 * metrics split over the ranks must match one process's, and a 4-rank run must repeat bit for
 * bit. Batch-norm statistics, averaged at each epoch's end, must be the same on every rank. With
 * data.lazy each rank reads only its rows, and training is the same. Needs Fashion-MNIST
 * (skipped without). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/comm.h"
#include "kiln/data.h"
#include "kiln/train.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static const char yaml[] = "model:\n"
                           "  layers:\n"
                           "    - dense: {units: 48, activation: relu}\n"
                           "    - dropout: {rate: 0.2}\n"
                           "    - dense: {units: 24, activation: tanh}\n"
                           "data:\n"
                           "  train: {format: idx, path: " FMNIST "train-images-idx3-ubyte.gz,\n"
                           "          labels: " FMNIST "train-labels-idx1-ubyte.gz}\n"
                           "  limit: 3600\n"
                           "  val_fraction: 0.1\n"
                           "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}\n"
                           "train: {epochs: 1, batch_size: 64, seed: 3, threads: 1}\n";

/* Trains on comm and returns the final parameters (malloc'd), or NULL. */
static float *train_on(kl_comm *comm, const kl_config *cfg, kl_data_splits *data, size_t *n,
                       kl_train_result *res)
{
    kl_error err = {0};
    kl_model m;
    if (kl_train_run_dist(cfg, data, comm, NULL, NULL, &m, res, &err) != KL_OK) {
        fprintf(stderr, "train: %s\n", err.msg);
        return NULL;
    }
    *n = kl_graph_param_count(m.g);
    float *p = malloc(*n * sizeof *p);
    if (p)
        memcpy(p, kl_graph_params(m.g), *n * sizeof *p);
    kl_model_free(&m);
    return p;
}

/* max |a - b| over max |b|: the run's weights as a whole, so near-zero elements do not dominate. */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

/* data.lazy: the training slice written to HDF5 and read by row. The ranks share the pass that
 * computes the statistics (together reading each row twice, for the mean and the deviations,
 * and each validation row once), training matches the in-memory run on 1 and on all ranks, and
 * in training a rank reads exactly its rows of each global batch and its share of the
 * validation set. */
static void lazy_checks(kl_comm *world, kl_comm *self, kl_config *cfg, const kl_data_splits *mem,
                        const float *p1, size_t n1)
{
    int rank = kl_comm_rank(world), size = kl_comm_size(world);
    kl_error err = {0};
    const char *path = "test_train_dp_lazy.h5";
    int64_t limit = cfg->data.limit;
    if (rank == 0) {
        kl_dataset d;
        CHECK_OK(kl_dataset_load(&cfg->data.train, cfg->data.task, &d, &err), &err);
        d.x->shape.d[0] = d.y->shape.d[0] = limit; /* the slice training uses */
        CHECK_OK(kl_dataset_save_hdf5(&d, path, &err), &err);
        kl_dataset_free(&d);
    }
    CHECK_OK(kl_comm_barrier(world, &err), &err);
    kl_data_source idx = cfg->data.train;
    cfg->data.train = (kl_data_source){.format = KL_DATA_HDF5, .path = (char *)path};
    cfg->data.lazy = true;
    kl_data_splits lz = {0};
    kl_status st = kl_data_prepare_dist(&cfg->data, cfg->train.seed, world, &lz, &err);
    CHECK_OK(st, &err);
    if (st == KL_OK && CHECK(lz.train.lazy && lz.val.lazy && lz.nstats == mem->nstats)) {
        int64_t ntrain = lz.train.x->shape.d[0], nval = lz.val.x->shape.d[0];
        CHECK(ntrain == mem->train.x->shape.d[0] && nval == mem->val.x->shape.d[0]);
        CHECK(memcmp(lz.val.y->data, mem->val.y->data, (size_t)nval * sizeof(int32_t)) == 0);
        for (int64_t k = 0; k < lz.nstats; k++)
            CHECK(fabsf(lz.mean[k] - mem->mean[k]) <= 1e-6f * fabsf(mem->mean[k]) &&
                  fabsf(lz.std[k] - mem->std[k]) <= 1e-6f * fabsf(mem->std[k]));
        float pass[2] = {(float)kl_dataset_rows_read(&lz.train),
                         (float)kl_dataset_rows_read(&lz.val)};
        CHECK(pass[0] <= 2.0f * (float)ntrain / (float)size + 2.0f * (float)ntrain / 64 + 2);
        CHECK_OK(kl_comm_allreduce(world, pass, 2, &err), &err);
        CHECK(pass[0] == 2.0f * (float)ntrain && pass[1] == (float)nval);
        size_t n = 0;
        kl_train_result res;
        float *q1 = train_on(self, cfg, &lz, &n, &res);
        if (CHECK(q1 && n == n1))
            CHECK(rel_diff(q1, p1, n1) <= 1e-5);
        int64_t t0 = kl_dataset_rows_read(&lz.train), v0 = kl_dataset_rows_read(&lz.val);
        float *qn = train_on(world, cfg, &lz, &n, &res);
        if (CHECK(q1 && qn && n == n1)) {
            double d = rel_diff(qn, q1, n1);
            if (rank == 0)
                printf("test_train_dp: data.lazy, %d ranks against 1: %.2e\n", size, d);
            CHECK(d <= 1e-5);
        }
        int64_t steps = res.last.step, gb = cfg->train.batch_size;
        CHECK(kl_dataset_rows_read(&lz.train) - t0 == steps * gb / size);
        CHECK(kl_dataset_rows_read(&lz.val) - v0 == nval * (rank + 1) / size - nval * rank / size);
        free(q1);
        free(qn);
    }
    kl_data_splits_free(&lz);
    cfg->data.train = idx;
    cfg->data.lazy = false;
    CHECK_OK(kl_comm_barrier(world, &err), &err);
    if (rank == 0)
        remove(path);
}

int main(int argc, char **argv)
{
    kl_error err = {0};
    kl_comm *world = NULL, *pair = NULL, *self = NULL;
    if (kl_comm_world(&argc, &argv, &world, &err) != KL_OK) {
        fprintf(stderr, "test_train_dp: %s\n", err.msg);
        return 1;
    }
    int rank = kl_comm_rank(world), size = kl_comm_size(world);
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) != 0) {
        kl_comm_free(world);
        return check_missing("test_train_dp", "Fashion-MNIST not installed");
    }
    kl_config *cfg = kl_config_parse("dp.yaml", yaml, strlen(yaml), NULL, 0, &err);
    kl_data_splits data = {0};
    CHECK(cfg != NULL);
    if (cfg)
        CHECK_OK(kl_data_prepare(&cfg->data, cfg->train.seed, &data, &err), &err);
    CHECK_OK(kl_comm_self(&self, &err), &err);
    CHECK_OK(kl_comm_split(world, rank / 2, rank, &pair, &err), &err);
    size_t n1 = 0, n2 = 0, n4 = 0, n4b = 0;
    kl_train_result r1, r2, r4, r4b;
    float *p1 = train_on(self, cfg, &data, &n1, &r1);
    float *p2 = train_on(pair, cfg, &data, &n2, &r2);
    float *p4 = train_on(world, cfg, &data, &n4, &r4);
    float *p4b = train_on(world, cfg, &data, &n4b, &r4b);
    if (CHECK(p1 && p2 && p4 && p4b && n1 == n2 && n1 == n4 && n4 == n4b)) {
        double d2 = rel_diff(p2, p1, n1), d4 = rel_diff(p4, p1, n1);
        if (rank == 0)
            printf("test_train_dp: %d ranks, relative difference to 1 rank: 2 ranks %.2e, "
                   "%d ranks %.2e\n",
                   size, d2, size, d4);
        CHECK(d2 <= 1e-5);
        CHECK(d4 <= 1e-5);
        CHECK(memcmp(p4, p4b, n4 * sizeof *p4) == 0); /* N ranks repeat bit for bit */
        CHECK(r4.last.step == 50 && r1.last.step == 50);
        CHECK(fabs(r4.last.train_loss - r1.last.train_loss) <= 1e-4 * fabs(r1.last.train_loss));
        /* Validation split over 4 ranks: the same metrics as one process (only the order of
         * the sums differs), the same on every rank. */
        CHECK(fabs(r4.last.val_loss - r1.last.val_loss) <= 1e-4 * fabs(r1.last.val_loss));
        CHECK(fabs(r4.last.val_accuracy - r1.last.val_accuracy) <= 1e-6);
        double v[2] = {r4.last.val_loss, r4.last.val_accuracy}, v0[2];
        memcpy(v0, v, sizeof v);
        CHECK_OK(kl_comm_bcast(world, v0, sizeof v0, 0, &err), &err);
        CHECK(memcmp(v, v0, sizeof v) == 0);
    }
    /* Many small gradient buckets (about 260 floats each instead of one 25 MB bucket), each
     * all-reduced as soon as its gradients are final during backward: the same weights. */
    if (cfg && p1) {
        size_t ns = 0;
        kl_train_result rs;
        cfg->dist.bucket_mb = 0.001f;
        float *ps = train_on(world, cfg, &data, &ns, &rs);
        if (CHECK(ps && ns == n1))
            CHECK(rel_diff(ps, p1, n1) <= 1e-5);
        free(ps);
    }
    /* Gradient accumulation: the global batch of 64 as 4 micro-batches of 16 on one process, and
     * as 2 micro-batches of 8 on each of 4 ranks, takes the same steps. */
    if (cfg && p1) {
        size_t na = 0, nb = 0;
        kl_train_result ra, rb;
        cfg->dist.bucket_mb = 25.0f;
        cfg->train.accumulate = 4;
        float *pa = train_on(self, cfg, &data, &na, &ra);
        cfg->train.accumulate = 2;
        float *pb = train_on(world, cfg, &data, &nb, &rb);
        cfg->train.accumulate = 1;
        if (CHECK(pa && pb && na == n1 && nb == n1)) {
            CHECK(rel_diff(pa, p1, n1) <= 1e-5);
            CHECK(rel_diff(pb, p1, n1) <= 1e-5);
            CHECK(ra.last.step == 50 && rb.last.step == 50);
        }
        free(pa);
        free(pb);
    }
    /* A rank whose config differs (here rank 1's seed) is found before training, on every rank. */
    if (cfg && size > 1) {
        uint64_t seed = cfg->train.seed;
        if (rank == 1)
            cfg->train.seed = seed + 1;
        kl_status st = kl_train_run_dist(cfg, &data, world, NULL, NULL, NULL, NULL, &err);
        CHECK(st == KL_EINVAL && strstr(err.msg, "rank 1's resolved config differs") != NULL);
        cfg->train.seed = seed;
    }
    /* A global batch that does not split evenly is refused on every rank, before training. */
    if (cfg && size > 1) {
        cfg->train.batch_size = 64 + 1;
        kl_status st = kl_train_run_dist(cfg, &data, world, NULL, NULL, NULL, NULL, &err);
        CHECK(st == KL_EINVAL && strstr(err.msg, "train.batch_size") != NULL);
        cfg->train.batch_size = 64;
    }
    /* Batch norm: each rank's running statistics come from its own slices, and the epoch-end
     * average leaves every rank with the same buffers (so the model kept is the same). */
    if (cfg && size > 1) {
        static const char bn[] = "model:\n"
                                 "  layers:\n"
                                 "    - dense: {units: 32}\n"
                                 "    - batchnorm: {}\n"
                                 "    - activation: relu\n"
                                 "data: {dataset: fashion-mnist}\n"
                                 "train: {epochs: 1, batch_size: 64, seed: 3, threads: 1}\n";
        kl_config *bcfg = kl_config_parse("bn.yaml", bn, strlen(bn), NULL, 0, &err);
        kl_model m;
        kl_status st =
            bcfg ? kl_train_run_dist(bcfg, &data, world, NULL, NULL, &m, NULL, &err) : KL_EINVAL;
        CHECK_OK(st, &err);
        if (st == KL_OK) {
            size_t nb = kl_graph_buffer_count(m.g);
            float *mine = kl_graph_buffers(m.g), *root = malloc(nb * sizeof *root);
            if (CHECK(nb > 0 && root != NULL)) {
                memcpy(root, mine, nb * sizeof *root);
                CHECK_OK(kl_comm_bcast(world, root, nb * sizeof *root, 0, &err), &err);
                CHECK(memcmp(root, mine, nb * sizeof *root) == 0);
            }
            free(root);
            kl_model_free(&m);
        }
        kl_config_free(bcfg);
    }
    if (cfg && p1)
        lazy_checks(world, self, cfg, &data, p1, n1);
    free(p1);
    free(p2);
    free(p4);
    free(p4b);
    kl_data_splits_free(&data);
    kl_config_free(cfg);
    kl_comm_free(self);
    kl_comm_free(pair);
    char name[32];
    snprintf(name, sizeof name, "test_train_dp[%d/%d]", rank, size);
    kl_comm_free(world);
    return check_report(name);
}
