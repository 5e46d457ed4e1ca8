/* Launch and Slurm environment parsing (runtime/launch.c) without Slurm: each case sets the
 * variables mpirun, srun or an sbatch script would give a process and checks what kiln makes of
 * them: world size and ranks, the job, threads per rank, the run name, and the warning when
 * Slurm's task count and MPI's rank count differ. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kiln/launch.h"

static const char *const vars[] = {
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "PMI_SIZE",
    "PMI_RANK",
    "SLURM_JOB_ID",
    "SLURM_JOB_NAME",
    "SLURM_STEP_ID",
    "SLURM_STEPID",
    "SLURM_NTASKS",
    "SLURM_STEP_NUM_TASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
    "SLURM_NODEID",
    "SLURM_STEP_TASKS_PER_NODE",
    "SLURM_TASKS_PER_NODE",
    "SLURM_CPUS_PER_TASK",
    "SLURM_RESTART_COUNT",
};

/* Clears every variable kiln reads, then sets the NULL-terminated NAME, VALUE pairs. */
static void env(const char *first, ...)
{
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
    va_list ap;
    va_start(ap, first);
    for (const char *k = first; k; k = va_arg(ap, const char *))
        setenv(k, va_arg(ap, const char *), 1);
    va_end(ap);
}

static void test_alone_and_mpirun(void)
{
    env(NULL);
    kl_launch l = kl_launch_detect();
    CHECK(l.world_size == 1 && l.rank == 0 && l.local_rank == 0 && !strcmp(l.by, "none"));
    CHECK(kl_launch_slurm().job_id[0] == '\0');

    env("OMPI_COMM_WORLD_SIZE", "4", "OMPI_COMM_WORLD_RANK", "3", "OMPI_COMM_WORLD_LOCAL_RANK", "1",
        "OMPI_COMM_WORLD_LOCAL_SIZE", "2", NULL);
    l = kl_launch_detect();
    CHECK(l.world_size == 4 && l.rank == 3 && l.local_rank == 1 && l.local_size == 2);
    CHECK(!strcmp(l.by, "mpirun (Open MPI)"));

    /* mpirun inside an sbatch script: its ranks inherit the script's SLURM_PROCID=0, and
     * Open MPI's variables win. */
    env("SLURM_JOB_ID", "7", "SLURM_NTASKS", "2", "SLURM_PROCID", "0", "OMPI_COMM_WORLD_SIZE", "2",
        "OMPI_COMM_WORLD_RANK", "1", NULL);
    l = kl_launch_detect();
    CHECK(l.world_size == 2 && l.rank == 1 && !strcmp(l.by, "mpirun (Open MPI)"));

    env("PMI_SIZE", "3", "PMI_RANK", "2", NULL);
    l = kl_launch_detect();
    CHECK(l.world_size == 3 && l.rank == 2 && !strcmp(l.by, "PMI"));

    /* Nonsense is ignored, not trusted. */
    env("OMPI_COMM_WORLD_SIZE", "two", "OMPI_COMM_WORLD_RANK", "-1", NULL);
    l = kl_launch_detect();
    CHECK(l.world_size == 1 && l.rank == 0);
    env("OMPI_COMM_WORLD_SIZE", "2", "OMPI_COMM_WORLD_RANK", "5", NULL);
    CHECK(kl_launch_detect().rank == 0);
}

static void test_srun(void)
{
    /* The batch script itself: SLURM_PROCID and SLURM_NTASKS are set, but kiln started there
     * directly is one process, not rank 0 of two. */
    env("SLURM_JOB_ID", "42", "SLURM_JOB_NAME", "kiln-train", "SLURM_NTASKS", "2", "SLURM_PROCID",
        "0", "SLURM_LOCALID", "0", "SLURM_TASKS_PER_NODE", "2", NULL);
    kl_launch l = kl_launch_detect();
    CHECK(l.world_size == 1 && !strcmp(l.by, "none"));
    kl_slurm_job j = kl_launch_slurm();
    CHECK(!strcmp(j.job_id, "42") && !strcmp(j.job_name, "kiln-train") && !j.in_step);
    CHECK(j.ntasks == 2 && j.restart_count == 0 && j.cpus_per_task == 0);

    /* A task of `srun -n 4` over two nodes, two tasks each: the step's counts win over the
     * job's. */
    env("SLURM_JOB_ID", "42", "SLURM_STEP_ID", "0", "SLURM_NTASKS", "4", "SLURM_STEP_NUM_TASKS",
        "4", "SLURM_PROCID", "3", "SLURM_LOCALID", "1", "SLURM_NODEID", "1",
        "SLURM_STEP_TASKS_PER_NODE", "2(x2)", "SLURM_TASKS_PER_NODE", "8", NULL);
    l = kl_launch_detect();
    CHECK(l.world_size == 4 && l.rank == 3 && l.local_rank == 1 && l.local_size == 2);
    CHECK(!strcmp(l.by, "srun (Slurm)"));
    CHECK(kl_launch_slurm().in_step && kl_launch_slurm().ntasks == 4);

    /* `srun -n 2` inside a 6-task job: the step has 2 tasks. */
    env("SLURM_JOB_ID", "42", "SLURM_STEPID", "1", "SLURM_NTASKS", "6", "SLURM_STEP_NUM_TASKS", "2",
        "SLURM_PROCID", "1", NULL);
    CHECK(kl_launch_detect().world_size == 2 && kl_launch_slurm().ntasks == 2);

    /* Tasks per node in Slurm's compressed form, by node. */
    const struct {
        const char *list;
        const char *node;
        int want;
    } per_node[] = {{"3,1", "0", 3},     {"3,1", "1", 1},     {"2(x3),1", "2", 2},
                    {"2(x3),1", "3", 1}, {"2(x3),1", "4", 0}, {"4(x2", "0", 0},
                    {"x", "0", 0},       {"1(x0)", "0", 0},   {"5", "0", 5}};
    for (size_t i = 0; i < sizeof per_node / sizeof *per_node; i++) {
        env("SLURM_JOB_ID", "1", "SLURM_STEP_ID", "0", "SLURM_STEP_NUM_TASKS", "8",
            "SLURM_STEP_TASKS_PER_NODE", per_node[i].list, "SLURM_NODEID", per_node[i].node, NULL);
        if (!CHECK(kl_launch_detect().local_size == per_node[i].want))
            fprintf(stderr, "    tasks per node '%s', node %s\n", per_node[i].list,
                    per_node[i].node);
    }
}

static void test_threads(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    env(NULL);
    CHECK(kl_launch_threads(1) == (cores > 0 ? cores : 1));
    CHECK(kl_launch_threads(1000000) == 1); /* more ranks than cores: still one thread */
    CHECK(kl_launch_threads(0) >= 1);
    env("SLURM_JOB_ID", "9", "SLURM_CPUS_PER_TASK", "3", NULL);
    CHECK(kl_launch_threads(1) == 3 && kl_launch_threads(64) == 3);
    env("SLURM_CPUS_PER_TASK", "3", NULL); /* a leftover outside a job counts for nothing */
    CHECK(kl_launch_threads(1) == (cores > 0 ? cores : 1));
}

static void test_run_name(void)
{
    char name[64];
    env(NULL);
    CHECK(!kl_launch_run_name(name, sizeof name) && name[0] == '\0');
    env("SLURM_JOB_ID", "1234", "SLURM_JOB_NAME", "kiln-train", "SLURM_RESTART_COUNT", "2", NULL);
    CHECK(kl_launch_run_name(name, sizeof name) && !strcmp(name, "kiln-train-1234"));
    CHECK(kl_launch_slurm().restart_count == 2);
    const char *unusable[] = {"my job", "a/b", "../x", "-x", ""};
    for (size_t i = 0; i < sizeof unusable / sizeof *unusable; i++) {
        env("SLURM_JOB_ID", "1234", "SLURM_JOB_NAME", unusable[i], NULL);
        CHECK(kl_launch_run_name(name, sizeof name) && !strcmp(name, "slurm-1234"));
    }
    env("SLURM_JOB_ID", "1234", NULL);
    CHECK(kl_launch_run_name(name, sizeof name) && !strcmp(name, "slurm-1234"));
    CHECK(!kl_launch_run_name(name, 5)); /* does not fit */
    env("SLURM_JOB_ID", "12/34", NULL);  /* never a path */
    CHECK(!kl_launch_run_name(name, sizeof name));
}

/* What kl_launch_check_world printed, in buf. */
static bool check_world(int world, int rank, char *buf, size_t size)
{
    FILE *f = tmpfile();
    bool warned = kl_launch_check_world(world, rank, f);
    rewind(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
    return warned;
}

static void test_check_world(void)
{
    char out[1024];
    env(NULL);
    CHECK(!check_world(2, 0, out, sizeof out) && !out[0]);
    env("SLURM_JOB_ID", "5", "SLURM_STEP_ID", "0", "SLURM_STEP_NUM_TASKS", "2", NULL);
    CHECK(!check_world(2, 0, out, sizeof out) && !out[0]);
    /* srun's tasks that did not join one MPI job (srun --mpi=none): each is a world of one. */
    CHECK(check_world(1, 0, out, sizeof out));
    CHECK(strstr(out, "Slurm started 2 tasks (srun) but MPI sees 1 rank") &&
          strstr(out, "--mpi=pmix"));
    CHECK(check_world(1, 1, out, sizeof out) && !out[0]); /* rank 0 alone speaks */
    /* mpirun -n 4 in a 2-task job, and kiln run straight from the batch script. */
    env("SLURM_JOB_ID", "5", "SLURM_NTASKS", "2", NULL);
    CHECK(check_world(4, 0, out, sizeof out) && strstr(out, "MPI sees 4 ranks") &&
          strstr(out, "mpirun -n $SLURM_NTASKS"));
    CHECK(check_world(1, 0, out, sizeof out) && strstr(out, "(SLURM_NTASKS)") &&
          strstr(out, "inside the batch script"));
    env("SLURM_JOB_ID", "5", NULL); /* no task count: nothing to compare */
    CHECK(!check_world(3, 0, out, sizeof out));
}

static const check_case cases[] = {
    CHECK_CASE(test_alone_and_mpirun), CHECK_CASE(test_srun),        CHECK_CASE(test_threads),
    CHECK_CASE(test_run_name),         CHECK_CASE(test_check_world),
};

int main(int argc, char **argv)
{
    int rc = check_run("test_launch_env", cases, CHECK_NCASES(cases), argc, argv);
    env(NULL);
    return rc;
}
