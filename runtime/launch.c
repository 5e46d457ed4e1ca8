/* Launch detection from the environment that Open MPI's mpirun, Slurm's srun and PMI-based
 * launchers give every rank. Used to refuse multi-rank runs of commands that are single-process
 * in this version, instead of letting N copies race on the same run folder. */
#include <stdlib.h>

#include "kiln/launch.h"

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && n >= 0 && n < 1 << 30 ? (int)n : fallback;
}

kl_launch kl_launch_detect(void)
{
    kl_launch l = {1, 0, "none"};
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        l = (kl_launch){env_int("OMPI_COMM_WORLD_SIZE", 1), env_int("OMPI_COMM_WORLD_RANK", 0),
                        "mpirun (Open MPI)"};
    } else if (getenv("SLURM_PROCID") && getenv("SLURM_NTASKS")) {
        l = (kl_launch){env_int("SLURM_NTASKS", 1), env_int("SLURM_PROCID", 0), "srun (Slurm)"};
    } else if (getenv("PMI_SIZE")) {
        l = (kl_launch){env_int("PMI_SIZE", 1), env_int("PMI_RANK", 0), "PMI"};
    }
    if (l.world_size < 1)
        l.world_size = 1;
    return l;
}
