/* What launched this process: alone, or as one of several ranks under mpirun or srun. kiln reads
 * the launchers' environment variables, so it knows before initialising MPI. */
#ifndef KILN_LAUNCH_H
#define KILN_LAUNCH_H

typedef struct kl_launch {
    int world_size; /* ranks in the job; 1 when alone */
    int rank;       /* this process's rank, 0 when alone */
    const char *by; /* "mpirun (Open MPI)", "srun (Slurm)", "PMI", or "none" */
} kl_launch;

kl_launch kl_launch_detect(void);

#endif
