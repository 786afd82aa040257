/* The options of a run (provium [options] [PATH...]) and of `provium list`.
 *
 * One table names every option once, with the commands it applies to; an
 * option of the other command is refused with what it applies to (e.g.
 * "--html only applies to a run"), an unknown one by getopt. Values are
 * checked here, so a bad one is a usage error (exit 2) that quotes it.
 * --accel and --no-boot-cache travel through the environment on purpose:
 * every test file's process, and the QEMU it starts, inherits them. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/proto.h"
#include "../runner/ci.h"
#include "../util/util.h"
#include "cli.h"

#ifndef PROVIUM_VERSION
#define PROVIUM_VERSION "0.1.0"
#endif

enum {
    O_JSON = 256,
    O_TIMEOUT,
    O_TAP,
    O_JUNIT,
    O_EVENTS,
    O_FILTER,
    O_TAG,
    O_NO_TAG,
    O_TAG_META,
    O_NO_TAG_META,
    O_SLOW,
    O_FAIL_FAST,
    O_SHARD,
    O_RERUN,
    O_SINCE,
    O_MEM,
    O_CPUS,
    O_OVERCOMMIT,
    O_FIXTURES,
    O_WATCH,
    O_ACCEL,
    O_NO_PREFLIGHT,
    O_COVERAGE,
    O_TIMINGS,
    O_HTML,
    O_NO_BOOT_CACHE,
};

#define BOTH (CMD_RUN | CMD_LIST)

/* An option and the commands it applies to. */
typedef struct {
    struct option opt;
    unsigned cmds;
} cli_option;

static const cli_option options[] = {
    {{"config", required_argument, NULL, 'c'}, BOTH},
    {{"jobs", required_argument, NULL, 'j'}, CMD_RUN},
    {{"timeout", required_argument, NULL, O_TIMEOUT}, CMD_RUN},
    {{"verbose", no_argument, NULL, 'v'}, CMD_RUN},
    {{"quiet", no_argument, NULL, 'q'}, CMD_RUN},
    {{"json", no_argument, NULL, O_JSON}, BOTH},
    {{"tap", no_argument, NULL, O_TAP}, CMD_RUN},
    {{"junit", required_argument, NULL, O_JUNIT}, CMD_RUN},
    {{"save-events", required_argument, NULL, O_EVENTS}, CMD_RUN},
    {{"filter", required_argument, NULL, O_FILTER}, BOTH},
    {{"tag", required_argument, NULL, O_TAG}, BOTH},
    {{"no-tag", required_argument, NULL, O_NO_TAG}, BOTH},
    {{"tag-meta", required_argument, NULL, O_TAG_META}, BOTH},
    {{"no-tag-meta", required_argument, NULL, O_NO_TAG_META}, BOTH},
    {{"include-slow", no_argument, NULL, O_SLOW}, BOTH},
    {{"fail-fast", no_argument, NULL, O_FAIL_FAST}, CMD_RUN},
    {{"shard", required_argument, NULL, O_SHARD}, BOTH},
    {{"rerun-failed", no_argument, NULL, O_RERUN}, BOTH},
    {{"since", required_argument, NULL, O_SINCE}, BOTH},
    {{"mem", required_argument, NULL, O_MEM}, CMD_RUN},
    {{"cpus", required_argument, NULL, O_CPUS}, CMD_RUN},
    {{"cpu-overcommit", required_argument, NULL, O_OVERCOMMIT}, CMD_RUN},
    {{"fixtures", no_argument, NULL, O_FIXTURES}, CMD_LIST},
    {{"watch", no_argument, NULL, O_WATCH}, CMD_RUN},
    {{"accel", required_argument, NULL, O_ACCEL}, CMD_RUN},
    {{"no-preflight", no_argument, NULL, O_NO_PREFLIGHT}, CMD_RUN},
    {{"coverage", no_argument, NULL, O_COVERAGE}, CMD_RUN},
    {{"timings", required_argument, NULL, O_TIMINGS}, BOTH},
    {{"html", required_argument, NULL, O_HTML}, CMD_RUN},
    {{"no-boot-cache", no_argument, NULL, O_NO_BOOT_CACHE}, CMD_RUN},
    {{"help", no_argument, NULL, 'h'}, BOTH},
    {{"version", no_argument, NULL, 'V'}, BOTH},
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))

void run_usage(FILE *out)
{
    fprintf(out,
            "usage: provium [options] [PATH...]\n"
            "       provium COMMAND [options] ...   (provium COMMAND --help for each)\n"
            "\n"
            "Runs Provium test files (*.test.lua) against real Linux kernels in QEMU.\n"
            "PATHs may be files or directories (searched recursively). Without PATHs,\n"
            "the [provium] roots of provium.toml are used, else the current directory.\n"
            "\n"
            "commands:\n");
    for (const pv_subcommand *s = pv_subcommands; s->name; s++)
        fprintf(out, "  %-10s %s\n", s->name, s->summary);
    fprintf(out,
            "\n"
            "options:\n"
            "  -c, --config FILE   use this provium.toml instead of searching upwards\n"
            "                      from the current directory\n"
            "      --timeout DUR   per-file timeout: seconds or 500ms/30s/10m/2h;\n"
            "                      0 disables (default 300s)\n"
            "      --fail-fast     start no new file after the first failed one\n"
            "      --accel auto|kvm|tcg  the accelerator for every VM (PROVIUM_ACCEL)\n"
            "      --no-boot-cache  cold-boot every VM instead of restoring the snapshot\n"
            "                      of an earlier identical boot (PROVIUM_BOOT_CACHE=off)\n"
            "\n"
            "resources (files start in discovery order as the pool allows):\n"
            "      --mem SIZE      pool memory, e.g. 8G (default: 80%% of host RAM)\n"
            "      --cpus N        pool vCPUs before overcommit (default: host CPUs)\n"
            "      --cpu-overcommit F  multiplier on --cpus, clamped to 0.5..8 (default 1)\n"
            "  -j, --jobs N        additionally run at most N test files at once\n"
            "      --no-preflight  accepted for compatibility; provium runs no start-up\n"
            "                      checks to skip (the accelerator probe is cached)\n"
            "\n"
            "selection:\n"
            "      --filter SUBSTR   files whose path, or tests whose name, contain SUBSTR\n"
            "      --tag TAG         only tests with one of these meta.tags (repeatable)\n"
            "      --no-tag TAG      leave out tests with this tag (wins over --tag)\n"
            "      --tag-meta K=V    only tests whose meta[K] is or contains V; OR within\n"
            "                        a key, AND across keys (repeatable)\n"
            "      --no-tag-meta K=V leave out tests whose meta[K] is or contains V (wins)\n"
            "                        (tests left out are deselected: not run, not counted\n"
            "                        as skipped; when none is left the exit status is 5)\n"
            "      --include-slow    also run meta.slow tests (as PROVIUM_INCLUDE_SLOW does)\n"
            "      --rerun-failed    only files that failed last time in this project (state:\n"
            "                        $PROVIUM_RERUN_STATE or <cache>/rerun/<project>.json)\n"
            "      --since FILE      only files modified after FILE\n"
            "      --shard K/N       only the K-th of N deterministic slices, balanced by the\n"
            "                        recorded durations (by path for files without one);\n"
            "                        auto: K/N from the CI's variables (PROVIUM_SHARD,\n"
            "                        GitLab CI_NODE_*, Buildkite BUILDKITE_PARALLEL_JOB*)\n"
            "      --timings FILE    where file durations are recorded and read (default:\n"
            "                        <cache>/timings/<project>.json)\n"
            "\n"
            "output:\n"
            "  -v, --verbose       list every test, with skip reasons and console tails\n"
            "  -q, --quiet         print failing files only\n"
            "      --json          print one JSON object per file instead of text\n"
            "      --tap           print TAP version 14 instead of text\n"
            "      --junit FILE    also write a JUnit XML report to FILE\n"
            "      --save-events FILE  write one JSON event per line to FILE\n"
            "      --coverage      after the run, pipe the events to provium-coverage\n"
            "                      (it must be on PATH)\n"
            "      --html FILE     also write a self-contained HTML report of the run to FILE\n"
            "      --watch         after the run, run again whenever a file under the\n"
            "                      paths or provium.toml changes (Ctrl-C stops)\n"
            "  -h, --help          show this help and exit\n"
            "  -V, --version       show the version and exit\n"
            "\n"
            "exit status: 0 all tests passed or skipped, 1 a test failed, timed out or\n"
            "crashed, 2 usage, configuration or internal error, 5 --filter/--tag/--tag-meta\n"
            "selected no test (\"no tests selected\"), 130 interrupted.\n"
            "See docs/cli.md for the details.\n");
}

void list_usage(FILE *out)
{
    fputs("usage: provium list [options] [PATH...]\n"
          "\n"
          "Prints each test file and, indented, its tests, without booting anything:\n"
          "each file is loaded in a child process where VMs are inert. Tests the\n"
          "selection would leave out show why. PATHs as for a run.\n"
          "\n"
          "options:\n"
          "  -c, --config FILE   use this provium.toml instead of searching upwards\n"
          "      --json          one JSON object per file (path, tests, claim, chunk_error)\n"
          "      --fixtures      list the *.fixture.lua files instead of the test files\n"
          "      --filter SUBSTR, --tag TAG, --no-tag TAG, --tag-meta K=V,\n"
          "      --no-tag-meta K=V, --include-slow, --rerun-failed, --since FILE,\n"
          "      --shard K/N, --timings FILE\n"
          "                      the selection, as for a run (provium --help); with\n"
          "                      --shard each file shows its recorded duration\n"
          "  -h, --help          show this help and exit\n"
          "\n"
          "exit status: 0 listed, 2 usage or configuration error.\n",
          out);
}

static void push(char ***list, size_t *n, char *s)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(char *));
    (*list)[(*n)++] = s;
}

/* The long name of an option's getopt value, for messages. */
static const char *long_name(int c)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].opt.val == c)
            return options[i].opt.name;
    return "?";
}

static int parse_jobs(const char *arg, run_opts *o)
{
    char *end;
    long n = strtol(arg, &end, 10);
    if (*end || n < 1 || n > 1024) {
        fprintf(stderr, "provium: --jobs must be a number from 1 to 1024, not '%s'\n", arg);
        return 2;
    }
    o->jobs = (int)n;
    return 0;
}

static int parse_timeout(const char *arg, run_opts *o)
{
    if (strcmp(arg, "0") == 0)
        o->timeout_ms = 0;
    else if ((o->timeout_ms = parse_duration_ms(arg)) <= 0) {
        fprintf(stderr, "provium: --timeout: cannot parse '%s' (use seconds or 500ms/30s/10m/2h)\n", arg);
        return 2;
    }
    return 0;
}

static int parse_shard(const char *arg, run_opts *o)
{
    int k, n;
    char err[PV_ERR_MAX];
    if (strcmp(arg, "auto") == 0) {
        if (shard_from_env(&k, &n, err, sizeof(err)) != 0) {
            fprintf(stderr, "provium: %s\n", err);
            return 2;
        }
    } else if (shard_parse(arg, &k, &n) != 0) {
        fprintf(stderr, "provium: --shard needs K/N with 1 <= K <= N, or auto, not '%s'\n", arg);
        return 2;
    }
    o->shard_k = k;
    o->shard_n = n;
    return 0;
}

/* --cpus and --cpu-overcommit: positive numbers; the overcommit is clamped. */
static int parse_cpus(int c, const char *arg, run_opts *o)
{
    char *end;
    double v = strtod(arg, &end);
    if (*end || !(v > 0) || v > 4096) {
        fprintf(stderr, "provium: --%s must be a positive number, not '%s'\n", long_name(c), arg);
        return 2;
    }
    if (c == O_CPUS) {
        o->pool_cpus = v;
        return 0;
    }
    o->overcommit = v < 0.5 ? 0.5 : v > 8 ? 8 : v;
    if (o->overcommit != v)
        fprintf(stderr, "provium: --cpu-overcommit %s clamped to %g (the allowed range is 0.5 to 8)\n", arg,
                o->overcommit);
    return 0;
}

/* The selection options: --filter, --tag, --no-tag, --tag-meta, --no-tag-meta. */
static int parse_selection(int c, char *arg, run_opts *o)
{
    test_select *s = &o->sel;
    if (c == O_FILTER) {
        if (!*arg) {
            fprintf(stderr, "provium: --filter needs a non-empty substring\n");
            return 2;
        }
        o->filter = s->filter = arg;
    } else if (c == O_TAG) {
        push(&s->tags, &s->ntags, arg);
    } else if (c == O_NO_TAG) {
        push(&s->no_tags, &s->nno_tags, arg);
    } else {
        const char *eq = strchr(arg, '=');
        if (!eq || eq == arg || !eq[1]) {
            fprintf(stderr, "provium: --%s needs KEY=VALUE, not '%s'\n", long_name(c), arg);
            return 2;
        }
        if (c == O_TAG_META)
            push(&s->tag_meta, &s->ntag_meta, arg);
        else
            push(&s->no_tag_meta, &s->nno_tag_meta, arg);
    }
    return 0;
}

static int parse_accel(const char *arg)
{
    if (strcmp(arg, "auto") && strcmp(arg, "kvm") && strcmp(arg, "tcg")) {
        fprintf(stderr, "provium: --accel must be auto, kvm or tcg, not '%s'\n", arg);
        return 2;
    }
    /* through the environment: every test file's process inherits it */
    setenv("PROVIUM_ACCEL", arg, 1);
    return 0;
}

/* One option with its value; 0, or 2 with a message printed. */
static int apply(int c, char *arg, run_cli *cl)
{
    run_opts *o = &cl->o;
    switch (c) {
    case 'c': cl->config_path = arg; return 0;
    case 'j': return parse_jobs(arg, o);
    case O_TIMEOUT: return parse_timeout(arg, o);
    case 'v': o->verbose = true; return 0;
    case 'q': o->quiet = true; return 0;
    case O_JSON: o->json = true; return 0;
    case O_TAP: o->tap = true; return 0;
    case O_JUNIT: o->junit_path = arg; return 0;
    case O_EVENTS: o->events_path = arg; return 0;
    case O_FILTER:
    case O_TAG:
    case O_NO_TAG:
    case O_TAG_META:
    case O_NO_TAG_META: return parse_selection(c, arg, o);
    case O_SLOW: o->sel.include_slow = true; return 0;
    case O_FAIL_FAST: o->fail_fast = true; return 0;
    case O_SHARD: return parse_shard(arg, o);
    case O_TIMINGS: o->timings_path = arg; return 0;
    case O_HTML: cl->html = arg; return 0;
    case O_RERUN: o->rerun_failed = true; return 0;
    case O_SINCE: o->since = arg; return 0;
    case O_MEM:
        if ((o->pool_mem = parse_size(arg)) <= 0) {
            fprintf(stderr, "provium: --mem: cannot parse '%s' (use bytes or a size like 8G, 512M)\n", arg);
            return 2;
        }
        return 0;
    case O_CPUS:
    case O_OVERCOMMIT: return parse_cpus(c, arg, o);
    case O_FIXTURES: cl->fixtures = true; return 0;
    case O_WATCH: o->watch = true; return 0;
    case O_NO_PREFLIGHT: return 0;
    case O_COVERAGE: cl->coverage = true; return 0;
    case O_ACCEL: return parse_accel(arg);
    case O_NO_BOOT_CACHE: setenv("PROVIUM_BOOT_CACHE", "off", 1); return 0; /* inherited like PROVIUM_ACCEL */
    }
    return 2;
}

/* The options of the other command are known, but refused by name. */
static int wrong_command(run_cmd_kind kind, int c)
{
    if (kind == CMD_RUN)
        fprintf(stderr, "provium: --%s only applies to 'provium list'\n", long_name(c));
    else
        fprintf(stderr, "provium list: --%s only applies to a run\nTry 'provium list --help' for more information.\n",
                long_name(c));
    return 2;
}

static unsigned cmds_of(int c)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (options[i].opt.val == c)
            return options[i].cmds;
    return 0;
}

/* Checks what no single option can: combinations. */
static int check_combination(const run_cli *cl)
{
    if (cl->o.json && cl->o.tap) {
        fprintf(stderr, "provium: --json and --tap cannot be combined\n");
        return 2;
    }
    if (cl->o.verbose && cl->o.quiet) {
        fprintf(stderr, "provium: --verbose and --quiet cannot be combined\n");
        return 2;
    }
    return 0;
}

int run_cli_parse(run_cmd_kind kind, int argc, char **argv, run_cli *cl)
{
    memset(cl, 0, sizeof(*cl));
    cl->o.timeout_ms = 300000;
    /* the documented environment variable, read once here like the option */
    cl->o.sel.include_slow = getenv("PROVIUM_INCLUDE_SLOW") != NULL;
    struct option longopts[NOPTIONS + 1];
    for (size_t i = 0; i < NOPTIONS; i++)
        longopts[i] = options[i].opt;
    longopts[NOPTIONS] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:j:vqhV", longopts, NULL)) != -1) {
        if (c == 'h') {
            if (kind == CMD_RUN)
                run_usage(stdout);
            else
                list_usage(stdout);
            return -1;
        }
        if (c == 'V') {
            printf("provium %s (protocol %d)\n", PROVIUM_VERSION, PV_PROTO_VERSION);
            return -1;
        }
        if (c == '?' || c == ':') {
            fprintf(stderr, "Try '%s --help' for more information.\n", kind == CMD_RUN ? "provium" : "provium list");
            return 2;
        }
        if (!(cmds_of(c) & kind))
            return wrong_command(kind, c);
        if (apply(c, optarg, cl) != 0)
            return 2;
    }
    cl->paths = argv + optind;
    cl->npaths = (size_t)(argc - optind);
    return check_combination(cl);
}

void run_cli_free(run_cli *cl)
{
    free(cl->o.sel.tags);
    free(cl->o.sel.no_tags);
    free(cl->o.sel.tag_meta);
    free(cl->o.sel.no_tag_meta);
}
