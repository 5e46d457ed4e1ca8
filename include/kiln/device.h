/* Which device a process computes on: `train.device` (auto, cpu, cuda) for `kiln train` and
 * `kiln predict --device`, with the GPU of a rank chosen by its local rank (its rank among the
 * ranks of its node: OMPI_COMM_WORLD_LOCAL_RANK under mpirun, SLURM_LOCALID under srun), among
 * the devices CUDA_VISIBLE_DEVICES leaves visible (the driver applies it: index 0 is the first
 * visible one). */
#ifndef KILN_DEVICE_H
#define KILN_DEVICE_H

#include <stdbool.h>
#include <stddef.h>

#include "kiln/config.h"
#include "kiln/graph.h"
#include "kiln/status.h"

typedef struct kl_device_choice {
    kl_device device; /* KL_DEVICE_CPU or KL_DEVICE_CUDA */
    int index;        /* the CUDA device, among the visible ones */
    bool shared;      /* more local ranks than devices: ranks share a GPU (device_share) */
} kl_device_choice;

/* The choice itself, from the counts alone (no CUDA call, so it is tested with made-up counts):
 * have_cuda says whether this build has CUDA, visible how many devices the process sees,
 * local_rank and local_size place it on its node (local_size 0: not known). cpu is the CPU;
 * auto is cuda when have_cuda and visible > 0, else the CPU; cuda without either is
 * KL_EUNSUPPORTED saying which. On CUDA rank r takes device r; more local ranks than devices is
 * KL_EINVAL saying so, unless share, where rank r takes device r mod visible. */
kl_status kl_device_choose(kl_train_device want, bool have_cuda, int visible, int local_rank,
                           int local_size, bool share, kl_device_choice *out, kl_error *err);

/* kl_device_choose with this build and this machine: the visible devices counted by CUDA. */
kl_status kl_device_pick(kl_train_device want, int local_rank, int local_size, bool share,
                         kl_device_choice *out, kl_error *err);

/* The CUDA devices this process sees (0 in a build without CUDA, or without a driver or GPU). */
int kl_device_count(void);

/* "CPU", or "CUDA device 0 (NAME, 79.1 GiB)": for the first progress line. */
void kl_device_describe(const kl_device_choice *c, char *buf, size_t n);

/* The names of the train.device values in kl_train_device order, NULL-terminated, and the value
 * of a name (-1: none). */
extern const char *const kl_train_device_names[];
int kl_train_device_parse(const char *s);

#endif
