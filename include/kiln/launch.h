/* What launched this process: alone, or as one of several ranks under mpirun or srun, and what
 * Slurm says about the job it runs in. kiln reads the launchers' environment variables, so it
 * knows before initialising MPI. */
#ifndef KILN_LAUNCH_H
#define KILN_LAUNCH_H

#include <stdbool.h>
#include <stdio.h>

typedef struct kl_launch {
    int world_size; /* ranks in the job; 1 when alone */
    int rank;       /* this process's rank, 0 when alone */
    int local_rank; /* its rank among the ranks on this node (SLURM_LOCALID under srun) */
    int local_size; /* ranks on this node; 0 when the launcher does not say */
    const char *by; /* "mpirun (Open MPI)", "srun (Slurm)", "PMI", or "none" */
} kl_launch;

/* The Slurm job this process runs in, from SLURM_* variables; all zero (job_id "") outside one. */
typedef struct kl_slurm_job {
    char job_id[32];   /* SLURM_JOB_ID: the same after a requeue */
    char job_name[64]; /* SLURM_JOB_NAME, "" when unset or not usable in a file name */
    int ntasks;  /* tasks of this srun step (SLURM_STEP_NUM_TASKS), else SLURM_NTASKS; 0 unset */
    int procid;  /* SLURM_PROCID */
    int localid; /* SLURM_LOCALID */
    int cpus_per_task; /* SLURM_CPUS_PER_TASK: CPUs Slurm gave each task; 0 when not given */
    int restart_count; /* SLURM_RESTART_COUNT: 0 on the first start, N after N requeues */
    bool in_step;      /* a task of an srun step (SLURM_STEP_ID), not the batch script itself */
} kl_slurm_job;

/* Reads the environment. Under Slurm, only a task of an srun step counts as an srun launch: the
 * batch script's own environment has SLURM_PROCID and SLURM_NTASKS too, but kiln started there
 * directly is one process. */
kl_launch kl_launch_detect(void);

/* The Slurm job of this process (kl_slurm_job.job_id is "" outside Slurm). */
kl_slurm_job kl_launch_slurm(void);

/* BLAS threads for one rank when the config leaves train.threads at 0: the CPUs Slurm gave each
 * task (SLURM_CPUS_PER_TASK), else the node's online cores shared by its local_size ranks. At
 * least 1. */
int kl_launch_threads(int local_size);

/* The run name kiln gives a run that has none under Slurm: "<job name>-<job id>" (or
 * "slurm-<job id>" when the job name is not a usable file name), so that a requeued job, which
 * keeps its id, finds the same run folder. Writes "" and returns false outside Slurm. */
bool kl_launch_run_name(char *buf, size_t size);

/* Compares the tasks Slurm started with the ranks MPI sees (world_size). When they differ, rank 0
 * prints one warning to out, naming both counts and the launch to use, and every rank returns
 * true. Call it once per process, after MPI is initialised. */
bool kl_launch_check_world(int world_size, int rank, FILE *out);

#endif
