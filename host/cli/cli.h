/* The provium command line: a table of subcommands, each with its own
 * parser and its own --help.
 *
 *   commands.c     the table, and the choice of a subcommand by argv[1]
 *   run_options.c  the options of a run and of `provium list`, parsed into run_cli
 *   run_cmd.c      what a run and a listing do with them (discovery, --watch, --html, --coverage)
 *   subcommands.c  the other subcommands: doctor, fixture, cache, repl, lsp-setup,
 *                  timings, junit, report
 *
 * Every parser prints its own usage on --help (stdout, exit 0), and names
 * the subcommand and the option when it refuses one (stderr, exit 2). */
#ifndef PROVIUM_CLI_H
#define PROVIUM_CLI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "../config/config.h"
#include "../runner/runner.h"

/* Exit status for a usage error. */
#define PV_EXIT_USAGE 2

typedef struct {
    const char *name;    /* NULL: the run itself (provium [options] [PATH...]) */
    const char *summary; /* one line for `provium --help` */
    /* argv[0] is the subcommand's name ("list"); returns the exit status */
    int (*main)(int argc, char **argv);
} pv_subcommand;

/* The table, ending with the run itself (name NULL); commands.c. */
extern const pv_subcommand pv_subcommands[];
/* Runs the subcommand argv[1] names, else a run; the exit status. */
int pv_cli_main(int argc, char **argv);

/* ---- run_options.c ---- */
typedef enum { CMD_RUN = 1, CMD_LIST = 2 } run_cmd_kind;

/* Everything a run or a listing was asked for. */
typedef struct {
    run_opts o;
    const char *config_path;
    bool fixtures; /* list: *.fixture.lua files */
    bool coverage; /* --coverage */
    const char *html;
    char **paths; /* the PATH operands (into argv) */
    size_t npaths;
} run_cli;

/* Parses the options of a run or of `provium list`. Returns 0, -1 when
 * --help or --version printed what was asked (exit 0), or 2 with a message
 * printed. Free with run_cli_free. */
int run_cli_parse(run_cmd_kind kind, int argc, char **argv, run_cli *c);
void run_cli_free(run_cli *c);
void run_usage(FILE *out);
void list_usage(FILE *out);

/* ---- run_cmd.c ---- */
int run_main(int argc, char **argv);
int list_main(int argc, char **argv);

/* ---- subcommands.c ---- */
int doctor_main(int argc, char **argv);
int fixture_main(int argc, char **argv);
int cache_main(int argc, char **argv);
int repl_cmd_main(int argc, char **argv);
int lsp_setup_cmd_main(int argc, char **argv);
int timings_main(int argc, char **argv);
int junit_main(int argc, char **argv);
int report_main(int argc, char **argv);
int mkimage_cmd_main(int argc, char **argv);

/* Loads the configuration (path NULL: search upwards); 2 with a message printed. */
int cli_load_config(const char *path, pv_config *cfg);
/* True when argv[i] is -h or --help. */
bool cli_is_help(const char *arg);
/* "provium SUB: unknown option 'ARG'" and where the help is; returns 2. */
int cli_unknown_option(const char *sub, const char *arg);
#endif
