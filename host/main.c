/* provium: command-line entry point. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/proto.h"
#include "config/config.h"
#include "runner/runner.h"
#include "util/util.h"

#ifndef PROVIUM_VERSION
#define PROVIUM_VERSION "0.1.0"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "usage: provium [options] [PATH...]\n"
            "\n"
            "Runs Provium test files (*.test.lua) against real Linux kernels in QEMU.\n"
            "PATHs may be files or directories (searched recursively). Without PATHs,\n"
            "the [provium] roots of provium.toml are used, else the current directory.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   use this provium.toml instead of searching upwards\n"
            "                      from the current directory\n"
            "  -j, --jobs N        run at most N test files at once (default: CPU count)\n"
            "      --timeout DUR   per-file timeout: seconds or 500ms/30s/10m/2h;\n"
            "                      0 disables (default 300s)\n"
            "  -v, --verbose       list every test, with skip reasons and console tails\n"
            "  -q, --quiet         print failing files only\n"
            "      --json          print one JSON object per file instead of text\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "exit status: 0 all tests passed or skipped, 1 a test failed, timed out or\n"
            "crashed, 2 usage, configuration or internal error, 130 interrupted.\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"jobs", required_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'}, {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},         {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},          {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    run_opts o = {0, 300000, false, false, false};
    const char *config_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "c:j:vqhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config_path = optarg;
            break;
        case 'j': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 1024) {
                fprintf(stderr, "provium: --jobs must be a number from 1 to 1024, not '%s'\n", optarg);
                return 2;
            }
            o.jobs = (int)n;
            break;
        }
        case 't':
            if (strcmp(optarg, "0") == 0)
                o.timeout_ms = 0;
            else if ((o.timeout_ms = parse_duration_ms(optarg)) <= 0) {
                fprintf(stderr, "provium: --timeout: cannot parse '%s' (use seconds or 500ms/30s/10m/2h)\n", optarg);
                return 2;
            }
            break;
        case 'v':
            o.verbose = true;
            break;
        case 'q':
            o.quiet = true;
            break;
        case 'J':
            o.json = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("provium %s (protocol %d)\n", PROVIUM_VERSION, PV_PROTO_VERSION);
            return 0;
        default:
            fprintf(stderr, "Try 'provium --help' for more information.\n");
            return 2;
        }
    }
    pv_config cfg;
    char err[4096];
    if (config_load(config_path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    file_list files;
    int rc;
    char *here[] = {"."};
    if (optind < argc)
        rc = discover_files(argv + optind, (size_t)(argc - optind), ".test.lua", &files, err, sizeof(err));
    else if (cfg.nroots)
        rc = discover_files(cfg.roots, cfg.nroots, ".test.lua", &files, err, sizeof(err));
    else
        rc = discover_files(here, 1, ".test.lua", &files, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "provium: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    rc = runner_run(&cfg, &files, &o);
    file_list_free(&files);
    config_free(&cfg);
    return rc;
}
