/* The table of provium's subcommands and the choice between them:
 * `provium NAME ...` runs the subcommand NAME with argv[0] = NAME; anything
 * else is a run of test files (provium [options] [PATH...]). The table is
 * also what `provium --help` lists. */
#include <string.h>

#include "cli.h"

const pv_subcommand pv_subcommands[] = {
    {"list", "the test files and their tests (or fixtures), without running them", list_main},
    {"doctor", "checks what provium needs on this host and explains what is missing", doctor_main},
    {"fixture", "the fixture cache: list, stale, build, rebuild, clean", fixture_main},
    {"cache", "export or import fixture entries (and images) as one archive", cache_main},
    {"repl", "a booted VM as `vm` at a Lua prompt", repl_cmd_main},
    {"lsp-setup", "type stubs for lua-language-server", lsp_setup_cmd_main},
    {"timings", "merge timings files (one per CI shard) into one", timings_main},
    {"junit", "merge JUnit reports into one", junit_main},
    {"report", "the HTML report of saved events", report_main},
    {"mkimage", "an ext4 image of a host directory (mke2fs -d, no root needed)", mkimage_cmd_main},
    {NULL, "run test files", run_main},
};

int pv_cli_main(int argc, char **argv)
{
    const pv_subcommand *s = pv_subcommands;
    while (s->name && !(argc > 1 && strcmp(argv[1], s->name) == 0))
        s++;
    if (!s->name)
        return s->main(argc, argv);
    return s->main(argc - 1, argv + 1);
}
