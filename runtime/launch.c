/* Launch detection from the environment that Open MPI's mpirun, Slurm's srun and PMI-based
 * launchers give every rank, and the Slurm job around it: the communicator asks whether to
 * initialise MPI, the trainer how many BLAS threads a rank gets, and kiln train and tune how to
 * name a run that a requeue must find again and whether Slurm and MPI agree on the rank count. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/launch.h"

static int env_int(const char *name, int fallback)
{
    const char *v = getenv(name);
    char *end;
    long n = v ? strtol(v, &end, 10) : 0;
    return v && *v && !*end && n >= 0 && n < 1 << 30 ? (int)n : fallback;
}

/* Copies an environment value that is a plain word (letters, digits, '.', '_', '+', '-') and fits,
 * so that it can be part of a file name; otherwise writes "". */
static void env_word(const char *name, char *buf, size_t size)
{
    const char *v = getenv(name);
    size_t n = v ? strlen(v) : 0;
    buf[0] = '\0';
    if (n == 0 || n >= size || v[0] == '.' || v[0] == '-')
        return;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-", v[i]))
            return;
    memcpy(buf, v, n + 1);
}

/* The task count of node `node` in Slurm's compressed list of tasks per node, "2(x3),1" being
 * 2, 2, 2, 1; 0 when the list is malformed or shorter. */
static int tasks_on_node(const char *list, int node)
{
    const char *p = list;
    while (p && *p) {
        char *end;
        long tasks = strtol(p, &end, 10), times = 1;
        if (end == p || tasks < 0)
            return 0;
        p = end;
        if (strncmp(p, "(x", 2) == 0) {
            times = strtol(p + 2, &end, 10);
            if (end == p + 2 || *end != ')' || times < 1)
                return 0;
            p = end + 1;
        }
        if (node < times)
            return tasks < 1 << 30 ? (int)tasks : 0;
        node -= (int)times;
        if (*p != ',' && *p != '\0')
            return 0;
        p += *p == ',';
    }
    return 0;
}

kl_slurm_job kl_launch_slurm(void)
{
    kl_slurm_job j = {0};
    env_word("SLURM_JOB_ID", j.job_id, sizeof j.job_id);
    if (!j.job_id[0])
        return j;
    env_word("SLURM_JOB_NAME", j.job_name, sizeof j.job_name);
    j.in_step = getenv("SLURM_STEP_ID") || getenv("SLURM_STEPID");
    j.ntasks = env_int(
        j.in_step && getenv("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS", 0);
    j.procid = env_int("SLURM_PROCID", 0);
    j.localid = env_int("SLURM_LOCALID", 0);
    j.cpus_per_task = env_int("SLURM_CPUS_PER_TASK", 0);
    j.restart_count = env_int("SLURM_RESTART_COUNT", 0);
    return j;
}

kl_launch kl_launch_detect(void)
{
    kl_launch l = {1, 0, 0, 0, "none"};
    kl_slurm_job j = kl_launch_slurm();
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        l = (kl_launch){env_int("OMPI_COMM_WORLD_SIZE", 1), env_int("OMPI_COMM_WORLD_RANK", 0),
                        env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0),
                        env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 0), "mpirun (Open MPI)"};
    } else if (j.job_id[0] && j.in_step && j.ntasks > 0) {
        const char *list = getenv("SLURM_STEP_TASKS_PER_NODE");
        l = (kl_launch){
            j.ntasks, j.procid, j.localid,
            tasks_on_node(list ? list : getenv("SLURM_TASKS_PER_NODE"), env_int("SLURM_NODEID", 0)),
            "srun (Slurm)"};
    } else if (getenv("PMI_SIZE")) {
        l = (kl_launch){env_int("PMI_SIZE", 1), env_int("PMI_RANK", 0), 0, 0, "PMI"};
    }
    if (l.world_size < 1)
        l.world_size = 1;
    if (l.rank >= l.world_size)
        l.rank = 0;
    if (l.local_size > l.world_size)
        l.local_size = 0;
    if (l.local_rank >= (l.local_size > 0 ? l.local_size : l.world_size))
        l.local_rank = 0;
    return l;
}

int kl_launch_threads(int local_size)
{
    kl_slurm_job j = kl_launch_slurm();
    if (j.job_id[0] && j.cpus_per_task > 0)
        return j.cpus_per_task;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    long n = (cores > 0 ? cores : 1) / (local_size > 0 ? local_size : 1);
    return n > 0 ? (int)n : 1;
}

bool kl_launch_run_name(char *buf, size_t size)
{
    kl_slurm_job j = kl_launch_slurm();
    if (size)
        buf[0] = '\0';
    if (!j.job_id[0])
        return false;
    int n = snprintf(buf, size, "%s-%s", j.job_name[0] ? j.job_name : "slurm", j.job_id);
    return n > 0 && (size_t)n < size;
}

bool kl_launch_check_world(int world_size, int rank, FILE *out)
{
    kl_slurm_job j = kl_launch_slurm();
    if (!j.job_id[0] || j.ntasks <= 0 || j.ntasks == world_size)
        return false;
    if (rank != 0 || !out)
        return true;
    fprintf(out, "kiln: warning: Slurm started %d task%s (%s) but MPI sees %d rank%s: ", j.ntasks,
            j.ntasks == 1 ? "" : "s", j.in_step ? "srun" : "SLURM_NTASKS", world_size,
            world_size == 1 ? "" : "s");
    if (world_size > j.ntasks)
        fprintf(out, "the extra ranks share CPUs Slurm gave to fewer tasks; launch with "
                     "'srun --mpi=pmix kiln ...' or 'mpirun -n $SLURM_NTASKS kiln ...'\n");
    else if (j.in_step)
        fprintf(out, "the tasks did not join one MPI job, so each trains alone; launch with "
                     "'srun --mpi=pmix' (srun --mpi=list shows the plugins this cluster has)\n");
    else
        fprintf(out, "the job's other CPUs sit idle; start kiln with 'srun --mpi=pmix kiln ...' "
                     "(or 'mpirun -n $SLURM_NTASKS kiln ...') inside the batch script\n");
    return true;
}
