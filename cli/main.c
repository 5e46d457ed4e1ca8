/* The kiln command's entry point: top-level options and dispatch to subcommands.
 * It only parses and dispatches; each subcommand's run function (cli/<name>.c) does the work and
 * owns its options. Subcommands planned but not in this version are listed and refused honestly. */
#include "cli/cli.h"

#include "kiln/buildinfo.h"
#include "kiln/version.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kl__cli_cmd commands[] = {
    {"demo", "train a small MLP and a small CNN on synthetic data, printing progress", kl__cli_demo,
     NULL},
    {"train", "train a model from a YAML config, on one process or across MPI ranks", kl__cli_train,
     NULL},
    {"tune", "search hyperparameters with ASHA, running trials on worker groups", kl__cli_tune,
     NULL},
    {"export", "turn a training checkpoint into a self-contained model file", kl__cli_export, NULL},
    {"predict", "score a file of inputs with an exported model", kl__cli_predict, NULL},
    {"serve", "serve exported models over HTTP (Open Inference Protocol v2)", kl__cli_serve, NULL},
    {"slurm", "print a Slurm batch script for a config that survives preemption", kl__cli_slurm,
     NULL},
    {"runs", "list, show, compare, tag and delete recorded runs", kl__cli_runs, NULL},
    {"data", "inspect datasets and convert them to HDF5", kl__cli_data, NULL},
};

enum { N_COMMANDS = sizeof commands / sizeof commands[0] };

/* Names longer than this are never close to a subcommand, so they get no suggestion. */
enum { MAX_SUGGEST_LEN = 32 };

int kl__cli_usage_error(const char *cmd, const char *fmt, ...)
{
    const char *sep = cmd ? " " : "";
    va_list ap;

    fprintf(stderr, "kiln%s%s: ", sep, cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nrun 'kiln%s%s --help' for usage\n", sep, cmd ? cmd : "");
    return KL__CLI_EXIT_USAGE;
}

bool kl__cli_int(const char *v, long long lo, long long hi, long long *out)
{
    const char *digits = v && *v == '-' ? v + 1 : v;
    if (!digits || !isdigit((unsigned char)*digits))
        return false;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*end || errno || n < lo || n > hi)
        return false;
    *out = n;
    return true;
}

static int is_help(const char *arg)
{
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static int is_version(const char *arg)
{
    return strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0;
}

static const kl__cli_cmd *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

static int min3(int a, int b, int c)
{
    int m = a < b ? a : b;
    return m < c ? m : c;
}

/* Edit distance between a and b counting insertions, deletions, substitutions and swaps of two
 * neighbouring characters as one edit each (optimal string alignment), so that "dmeo" is one edit
 * from "demo". Both strings must be at most MAX_SUGGEST_LEN long. */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    int d[MAX_SUGGEST_LEN + 1][MAX_SUGGEST_LEN + 1];

    for (int i = 0; i <= la; i++)
        d[i][0] = i;
    for (int j = 0; j <= lb; j++)
        d[0][j] = j;
    for (int i = 1; i <= la; i++) {
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            d[i][j] = min3(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < d[i][j])
                d[i][j] = d[i - 2][j - 2] + 1;
        }
    }
    return d[la][lb];
}

/* The subcommand name closest to name when it is at most two edits away, else NULL. */
static const char *suggest_command(const char *name)
{
    const char *best = NULL;
    int best_dist = 3;

    if (strlen(name) > MAX_SUGGEST_LEN)
        return NULL;
    for (int i = 0; i < N_COMMANDS; i++) {
        int dist = edit_distance(name, commands[i].name);
        if (dist < best_dist) {
            best = commands[i].name;
            best_dist = dist;
        }
    }
    if (edit_distance(name, "help") < best_dist)
        best = "help";
    return best;
}

static int unknown_command(const char *name)
{
    const char *close = suggest_command(name);

    fprintf(stderr, "kiln: unknown command '%s'\n", name);
    if (close)
        fprintf(stderr, "did you mean '%s'?\n", close);
    fprintf(stderr, "run 'kiln --help' for the list\n");
    return KL__CLI_EXIT_USAGE;
}

static void print_command_rows(FILE *f, int available)
{
    for (int i = 0; i < N_COMMANDS; i++) {
        if ((commands[i].run != NULL) == available)
            fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    }
}

static void print_usage(FILE *f)
{
    fprintf(f, "usage: kiln <command> [options]\n"
               "       kiln --help | --version\n"
               "\n"
               "kiln trains neural networks across MPI ranks and tunes their hyperparameters.\n"
               "This version trains models (also data-parallel under mpirun), tunes their\n"
               "hyperparameters (ASHA sweeps), exports them, scores files with them and\n"
               "serves them over HTTP.\n"
               "\n"
               "commands:\n");
    print_command_rows(f, 1);
    fprintf(f, "  %-9s %s\n", "help", "show this help, or a command's help: kiln help <command>");
    bool planned = false;
    for (int i = 0; i < N_COMMANDS; i++)
        planned |= commands[i].run == NULL;
    if (planned) {
        fprintf(f, "\nnot available yet (planned for a later version):\n");
        print_command_rows(f, 0);
    }
    fprintf(f, "\n"
               "options:\n"
               "  -h, --help     show this help and exit\n"
               "  -V, --version  show the version and build information and exit\n"
               "\n"
               "run 'kiln <command> --help' for a command's options.\n");
}

static int print_version(void)
{
    printf("kiln %s\n", KL_VERSION);
    kl_buildinfo_print(stdout);
    return 0;
}

static int not_supported(const kl__cli_cmd *cmd)
{
    fprintf(stderr, "kiln %s: not supported yet in this version (planned)\n", cmd->name);
    return KL__CLI_EXIT_USAGE;
}

static int command_help(const kl__cli_cmd *cmd)
{
    if (cmd->run == NULL) {
        printf("kiln %s: %s\n\nnot supported yet in this version (planned); run 'kiln --help' for "
               "what this version can do.\n",
               cmd->name, cmd->summary);
        return 0;
    }
    if (cmd->help == NULL) {
        char name[32], help[] = "--help";
        char *argv[] = {name, help, NULL};
        snprintf(name, sizeof name, "%s", cmd->name);
        return cmd->run(2, argv);
    }
    printf("%s", cmd->help);
    return 0;
}

/* Runs the subcommand named by argv[0], with its options after it. */
static int dispatch(int argc, char **argv)
{
    const kl__cli_cmd *cmd = find_command(argv[0]);

    if (cmd == NULL)
        return unknown_command(argv[0]);
    if (cmd->run == NULL || cmd->help != NULL) {
        for (int i = 1; i < argc; i++) {
            if (is_help(argv[i]))
                return command_help(cmd);
        }
    }
    if (cmd->run == NULL)
        return not_supported(cmd);
    return cmd->run(argc, argv);
}

/* 'kiln help' and 'kiln help <command>'. */
static int run_help(int argc, char **argv)
{
    const kl__cli_cmd *cmd;

    if (argc == 1) {
        print_usage(stdout);
        return 0;
    }
    if (argc > 2)
        return kl__cli_usage_error("help", "expected one command name, got %d arguments", argc - 1);
    if (strcmp(argv[1], "help") == 0 || is_help(argv[1])) {
        print_usage(stdout);
        return 0;
    }
    cmd = find_command(argv[1]);
    if (cmd == NULL)
        return unknown_command(argv[1]);
    return command_help(cmd);
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        print_usage(stderr);
        return KL__CLI_EXIT_USAGE;
    }
    if (is_help(argv[1])) {
        print_usage(stdout);
        return 0;
    }
    if (is_version(argv[1]))
        return print_version();
    if (argv[1][0] == '-')
        return kl__cli_usage_error(NULL, "unknown option '%s'", argv[1]);
    if (strcmp(argv[1], "help") == 0)
        return run_help(argc - 1, argv + 1);
    return dispatch(argc - 1, argv + 1);
}

int main(int argc, char **argv)
{
    int status = run(argc, argv);

    /* Output that could not be written (a full disk, a closed pipe) must not look like success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "kiln: could not write the output: %s\n", strerror(errno));
        if (status == 0)
            status = 1;
    }
    return status;
}
