/* provium: the command-line entry point. The subcommands, their parsers
 * and their --help live in host/cli/ (the table: commands.c); this file
 * stays out of the benchmark binary, which links everything else. */
#include "cli/cli.h"

int main(int argc, char **argv) { return pv_cli_main(argc, argv); }
