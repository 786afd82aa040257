/* The subcommands other than a run and `provium list`: each has its usage
 * (printed on --help, exit 0, and after a usage error, exit 2), parses its
 * own arguments, and hands the work to the module that does it: doctor
 * (host/runner/doctor.c), fixture and cache (host/fixtures), repl and
 * lsp-setup and mkimage (host/tools), timings, junit and report (host/runner). */
#include <stdlib.h>
#include <string.h>

#include "../fixtures/fixtures.h"
#include "../runner/ci.h"
#include "../tools/ext4_image.h"
#include "../tools/tools.h"
#include "../util/util.h"
#include "cli.h"

bool cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

int cli_unknown_option(const char *sub, const char *arg)
{
    fprintf(stderr, "provium %s: unknown option '%s'\nTry 'provium %s --help' for more information.\n", sub, arg,
            sub);
    return PV_EXIT_USAGE;
}

int cli_load_config(const char *path, pv_config *cfg)
{
    char err[PV_ERR_MAX];
    if (config_load(path, cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium: %s\n", err);
        config_free(cfg);
        return PV_EXIT_USAGE;
    }
    return 0;
}

/* ---------------------------------------------------------------- doctor */

static const char doctor_usage[] =
    "usage: provium doctor [-c FILE] [--accel auto|kvm|tcg]\n"
    "\n"
    "Checks and explains what provium needs: QEMU and its version, whether KVM\n"
    "can run a guest (a FAIL when kvm is asked for and cannot), /dev/vhost-vsock,\n"
    "/dev/net/tun, a writable cache directory, the default profile's kernel and\n"
    "initrd, CPU pressure information, and the host's size.\n"
    "\n"
    "  -c, --config FILE   use this provium.toml instead of searching upwards\n"
    "      --accel A       check as PROVIUM_ACCEL=A would run (auto, kvm or tcg)\n"
    "  -h, --help          show this help and exit\n"
    "\n"
    "exit status: 0 ready, 1 a required item is missing, 2 usage error.\n";

int doctor_main(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(doctor_usage, stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config_path = argv[i] + 9;
        } else if (!strcmp(argv[i], "--accel") && i + 1 < argc) {
            const char *a = argv[++i];
            if (strcmp(a, "auto") && strcmp(a, "kvm") && strcmp(a, "tcg")) {
                fprintf(stderr, "provium doctor: --accel must be auto, kvm or tcg, not '%s'\n", a);
                return PV_EXIT_USAGE;
            }
            setenv("PROVIUM_ACCEL", a, 1);
        } else {
            return cli_unknown_option("doctor", argv[i]);
        }
    }
    pv_config cfg;
    if (cli_load_config(config_path, &cfg) != 0)
        return PV_EXIT_USAGE;
    int rc = runner_doctor(&cfg);
    config_free(&cfg);
    return rc;
}

/* ---------------------------------------------------------------- fixture, cache */

/* provium fixture|cache [-c FILE] OP ...: the config, then the module's own parser. */
static int with_config(const char *sub, const char *usage, int (*fn)(const pv_config *, int, char **), int argc,
                       char **argv)
{
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
    const char *config_path = NULL;
    int i = 1;
    if (argc > 2 && (strcmp(argv[1], "-c") == 0 || strcmp(argv[1], "--config") == 0)) {
        config_path = argv[2];
        i = 3;
    }
    if (i < argc && argv[i][0] == '-')
        return cli_unknown_option(sub, argv[i]);
    pv_config cfg;
    if (cli_load_config(config_path, &cfg) != 0)
        return PV_EXIT_USAGE;
    int rc = fn(&cfg, argc - i, argv + i);
    config_free(&cfg);
    return rc;
}

int fixture_main(int argc, char **argv) { return with_config("fixture", fixture_usage, fixture_cli, argc, argv); }

int cache_main(int argc, char **argv) { return with_config("cache", cache_usage, cache_cli, argc, argv); }

/* ---------------------------------------------------------------- repl, lsp-setup */

static const char repl_usage[] =
    "usage: provium repl [-c FILE] PROFILE [--name NAME]\n"
    "\n"
    "Boots one VM of PROFILE and reads Lua at a prompt; the VM is the global\n"
    "`vm` and the whole API is available (`help` lists what there is). Ctrl-C\n"
    "interrupts the running call, Ctrl-D shuts the VM down. With input from a\n"
    "pipe the lines run as a script; the exit status is then 1 if any raised.\n"
    "  -c, --config FILE   use this provium.toml instead of searching upwards\n"
    "      --name NAME     the VM's name (default: the profile's)\n";

int repl_cmd_main(int argc, char **argv)
{
    const char *config_path = NULL, *profile = NULL, *name = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(repl_usage, stdout);
            return 0;
        } else if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (!profile && argv[i][0] != '-') {
            profile = argv[i];
        } else if (argv[i][0] == '-') {
            return cli_unknown_option("repl", argv[i]);
        } else {
            fprintf(stderr, "provium repl: one PROFILE only, not also '%s'\n", argv[i]);
            fputs(repl_usage, stderr);
            return PV_EXIT_USAGE;
        }
    }
    if (!profile) {
        fputs(repl_usage, stderr);
        return PV_EXIT_USAGE;
    }
    pv_config cfg;
    if (cli_load_config(config_path, &cfg) != 0)
        return PV_EXIT_USAGE;
    int rc = repl_main(&cfg, profile, name);
    config_free(&cfg);
    return rc;
}

static const char lsp_usage[] =
    "usage: provium lsp-setup [DIR]\n"
    "\n"
    "Writes DIR/.provium/types/provium.lua (type annotations for the whole API)\n"
    "and, when there is none, a DIR/.luarc.json that points lua-language-server\n"
    "at them. DIR defaults to the current directory.\n";

int lsp_setup_cmd_main(int argc, char **argv)
{
    if (argc > 1 && cli_is_help(argv[1])) {
        fputs(lsp_usage, stdout);
        return 0;
    }
    if (argc > 1 && argv[1][0] == '-')
        return cli_unknown_option("lsp-setup", argv[1]);
    if (argc > 2) {
        fputs(lsp_usage, stderr);
        return PV_EXIT_USAGE;
    }
    return lsp_setup_main(argc == 2 ? argv[1] : ".");
}

/* ---------------------------------------------------------------- timings, junit, report */

/* --help anywhere, and options the module does not know, before it parses. */
static int precheck(const char *sub, const char *usage, int argc, char **argv, const char *const *known)
{
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(usage, stdout);
            return 0;
        }
        bool ok = argv[i][0] != '-' || strcmp(argv[i], "-") == 0;
        for (size_t k = 0; known && known[k] && !ok; k++)
            ok = strcmp(argv[i], known[k]) == 0;
        if (!ok)
            return cli_unknown_option(sub, argv[i]);
    }
    return -1;
}

int timings_main(int argc, char **argv)
{
    int rc = precheck("timings", timings_usage, argc, argv, NULL);
    return rc >= 0 ? rc : timings_cli(argc - 1, argv + 1);
}

int junit_main(int argc, char **argv)
{
    int rc = precheck("junit", junit_usage, argc, argv, NULL);
    return rc >= 0 ? rc : junit_cli(argc - 1, argv + 1);
}

int report_main(int argc, char **argv)
{
    static const char *const known[] = {"-o", "--output", NULL};
    int rc = precheck("report", report_usage, argc, argv, known);
    return rc >= 0 ? rc : report_cli(argc - 1, argv + 1);
}

/* ---------------------------------------------------------------- mkimage */

int mkimage_cmd_main(int argc, char **argv) { return mkimage_cli(argc - 1, argv + 1); }
