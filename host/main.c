/* provium: command-line entry point. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/proto.h"
#include "config/config.h"
#include "fixtures/fixtures.h"
#include "runner/ci.h"
#include "runner/runner.h"
#include "tools/ext4_image.h"
#include "tools/tools.h"
#include "util/util.h"

#ifndef PROVIUM_VERSION
#define PROVIUM_VERSION "0.1.0"
#endif

/* A fingerprint of every file's path, size and mtime under the paths:
 * --watch re-runs when it changes. */
static void stamp_walk(const char *path, uint64_t *h, int depth)
{
    struct stat st;
    if (depth > 16 || stat(path, &st) != 0)
        return;
    uint64_t v = (uint64_t)st.st_mtim.tv_sec * 1000000007u + (uint64_t)st.st_mtim.tv_nsec + (uint64_t)st.st_size;
    for (const char *c = path; *c; c++)
        v = v * 131 + (unsigned char)*c;
    *h ^= v + 0x9e3779b97f4a7c15ULL + (*h << 6) + (*h >> 2);
    if (!S_ISDIR(st.st_mode))
        return;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *child = xasprintf("%s/%s", path, e->d_name);
        stamp_walk(child, h, depth + 1);
        free(child);
    }
    if (d)
        closedir(d);
}

static uint64_t watch_stamp(char *const *paths, size_t n, const char *config)
{
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++)
        stamp_walk(paths[i], &h, 0);
    if (config)
        stamp_walk(config, &h, 0);
    return h;
}

/* --html: the report of the run just made, from its events. */
static int html_report(const run_opts *o, const char *html)
{
    char err[1024];
    if (report_html(o->events_path, html, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium: --html: %s\n", err);
        return -1;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: provium [options] [PATH...]\n"
            "       provium list [--fixtures] [--json] [selection options] [PATH...]\n"
            "       provium doctor [-c FILE]\n"
            "       provium fixture [-c FILE] list|stale|build NAME|PATH|rebuild NAME|PATH|clean\n"
            "       provium repl [-c FILE] PROFILE [--name NAME]   (a booted VM as `vm` at a Lua prompt)\n"
            "       provium lsp-setup [DIR]   (type stubs for lua-language-server)\n"
            "       provium mkimage [--size SIZE] [--label LABEL] DIR IMAGE   (an ext4 image of DIR, no root needed)\n"
            "       provium timings merge FILE...   (one timings file from several)\n"
            "       provium junit merge FILE...     (one JUnit report from several)\n"
            "       provium report EVENTS.jsonl -o FILE.html   (the HTML report of saved events)\n"
            "       provium cache [-c FILE] export FILE.tar.zst [--fixtures NAMES] [--images]\n"
            "       provium cache [-c FILE] import FILE.tar.zst\n"
            "\n"
            "Runs Provium test files (*.test.lua) against real Linux kernels in QEMU.\n"
            "PATHs may be files or directories (searched recursively). Without PATHs,\n"
            "the [provium] roots of provium.toml are used, else the current directory.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   use this provium.toml instead of searching upwards\n"
            "                      from the current directory\n"
            "      --timeout DUR   per-file timeout: seconds or 500ms/30s/10m/2h;\n"
            "                      0 disables (default 300s)\n"
            "      --fail-fast     start no new file after the first failed one\n"
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
            "      --include-slow    also run meta.slow tests\n"
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

/* The first executable NAME in $PATH (caller frees), or NULL. */
/* --coverage: provium-coverage --from EVENTS; its exit status. */
static int run_coverage(const char *bin, const char *events)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "--from", events, (char *)NULL);
        fprintf(stderr, "provium: --coverage: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        fprintf(stderr, "provium: --coverage: cannot run %s: %s\n", bin, strerror(errno));
        return 1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "provium: --coverage: %s failed (%s %d)\n", bin, WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return 1;
    }
    return 0;
}

static void push(char ***list, size_t *n, char *s)
{
    *list = xrealloc(*list, (*n + 1) * sizeof(char *));
    (*list)[(*n)++] = s;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"jobs", required_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, O_JSON},
        {"tap", no_argument, NULL, O_TAP},
        {"junit", required_argument, NULL, O_JUNIT},
        {"save-events", required_argument, NULL, O_EVENTS},
        {"filter", required_argument, NULL, O_FILTER},
        {"tag", required_argument, NULL, O_TAG},
        {"no-tag", required_argument, NULL, O_NO_TAG},
        {"tag-meta", required_argument, NULL, O_TAG_META},
        {"no-tag-meta", required_argument, NULL, O_NO_TAG_META},
        {"include-slow", no_argument, NULL, O_SLOW},
        {"fail-fast", no_argument, NULL, O_FAIL_FAST},
        {"shard", required_argument, NULL, O_SHARD},
        {"rerun-failed", no_argument, NULL, O_RERUN},
        {"since", required_argument, NULL, O_SINCE},
        {"mem", required_argument, NULL, O_MEM},
        {"cpus", required_argument, NULL, O_CPUS},
        {"cpu-overcommit", required_argument, NULL, O_OVERCOMMIT},
        {"fixtures", no_argument, NULL, O_FIXTURES},
        {"watch", no_argument, NULL, O_WATCH},
        {"accel", required_argument, NULL, O_ACCEL},
        {"no-preflight", no_argument, NULL, O_NO_PREFLIGHT},
        {"coverage", no_argument, NULL, O_COVERAGE},
        {"timings", required_argument, NULL, O_TIMINGS},
        {"html", required_argument, NULL, O_HTML},
        {"no-boot-cache", no_argument, NULL, O_NO_BOOT_CACHE},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    run_opts o;
    memset(&o, 0, sizeof(o));
    o.timeout_ms = 300000;
    const char *config_path = NULL;
    const char *sub = NULL;
    bool fixtures = false, coverage = false;
    const char *html = NULL;      /* --html FILE */
    char *html_events = NULL;     /* the events it is made from, without --save-events */
    if (argc > 1 && (strcmp(argv[1], "list") == 0 || strcmp(argv[1], "doctor") == 0)) {
        sub = argv[1];
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (argc > 1 && strcmp(argv[1], "lsp-setup") == 0) {
        if (argc > 3) {
            fprintf(stderr, "usage: provium lsp-setup [DIR]\n");
            return 2;
        }
        return lsp_setup_main(argc == 3 ? argv[2] : ".");
    }
    if (argc > 1 && strcmp(argv[1], "repl") == 0) {
        /* provium repl [-c FILE] PROFILE [--name N] */
        const char *profile = NULL, *name = NULL;
        for (int i = 2; i < argc; i++) {
            if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) && i + 1 < argc)
                config_path = argv[++i];
            else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
                name = argv[++i];
            else if (!profile && argv[i][0] != '-')
                profile = argv[i];
            else {
                fprintf(stderr, "usage: provium repl [-c FILE] PROFILE [--name NAME]\n");
                return 2;
            }
        }
        if (!profile) {
            fprintf(stderr, "usage: provium repl [-c FILE] PROFILE [--name NAME]\n");
            return 2;
        }
        pv_config rcfg;
        char rerr[4096];
        if (config_load(config_path, &rcfg, rerr, sizeof(rerr)) != 0) {
            fprintf(stderr, "provium: %s\n", rerr);
            config_free(&rcfg);
            return 2;
        }
        int rc = repl_main(&rcfg, profile, name);
        config_free(&rcfg);
        return rc;
    }
    if (argc > 1 && strcmp(argv[1], "mkimage") == 0)
        return mkimage_cli(argc - 2, argv + 2);
    if (argc > 1 && strcmp(argv[1], "timings") == 0)
        return timings_cli(argc - 2, argv + 2);
    if (argc > 1 && strcmp(argv[1], "junit") == 0)
        return junit_cli(argc - 2, argv + 2);
    if (argc > 1 && strcmp(argv[1], "report") == 0)
        return report_cli(argc - 2, argv + 2);
    if (argc > 1 && (strcmp(argv[1], "fixture") == 0 || strcmp(argv[1], "cache") == 0)) {
        /* provium fixture|cache [-c FILE] OP ...: host/fixtures/fixture_cli.c, cache_archive.c */
        int i = 2;
        if (argc > 3 && (strcmp(argv[2], "-c") == 0 || strcmp(argv[2], "--config") == 0)) {
            config_path = argv[3];
            i = 4;
        }
        pv_config fcfg;
        char ferr[4096];
        if (config_load(config_path, &fcfg, ferr, sizeof(ferr)) != 0) {
            fprintf(stderr, "provium: %s\n", ferr);
            config_free(&fcfg);
            return 2;
        }
        int rc = argv[1][0] == 'f' ? fixture_cli(&fcfg, argc - i, argv + i) : cache_cli(&fcfg, argc - i, argv + i);
        config_free(&fcfg);
        return rc;
    }
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
        case O_TIMEOUT:
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
        case O_JSON:
            o.json = true;
            break;
        case O_TAP:
            o.tap = true;
            break;
        case O_JUNIT:
            o.junit_path = optarg;
            break;
        case O_EVENTS:
            o.events_path = optarg;
            break;
        case O_FILTER:
            if (!*optarg) {
                fprintf(stderr, "provium: --filter needs a non-empty substring\n");
                return 2;
            }
            o.filter = optarg;
            o.sel.filter = optarg;
            break;
        case O_TAG:
            push(&o.sel.tags, &o.sel.ntags, optarg);
            break;
        case O_NO_TAG:
            push(&o.sel.no_tags, &o.sel.nno_tags, optarg);
            break;
        case O_TAG_META:
        case O_NO_TAG_META: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1]) {
                fprintf(stderr, "provium: --%s needs KEY=VALUE, not '%s'\n", c == O_TAG_META ? "tag-meta" : "no-tag-meta",
                        optarg);
                return 2;
            }
            if (c == O_TAG_META)
                push(&o.sel.tag_meta, &o.sel.ntag_meta, optarg);
            else
                push(&o.sel.no_tag_meta, &o.sel.nno_tag_meta, optarg);
            break;
        }
        case O_SLOW:
            o.include_slow = true;
            break;
        case O_FAIL_FAST:
            o.fail_fast = true;
            break;
        case O_SHARD: {
            int k, n;
            char serr[512];
            if (strcmp(optarg, "auto") == 0) {
                if (shard_from_env(&k, &n, serr, sizeof(serr)) != 0) {
                    fprintf(stderr, "provium: %s\n", serr);
                    return 2;
                }
            } else if (shard_parse(optarg, &k, &n) != 0) {
                fprintf(stderr, "provium: --shard needs K/N with 1 <= K <= N, or auto, not '%s'\n", optarg);
                return 2;
            }
            o.shard_k = k;
            o.shard_n = n;
            break;
        }
        case O_TIMINGS:
            o.timings_path = optarg;
            break;
        case O_HTML:
            html = optarg;
            break;
        case O_RERUN:
            o.rerun_failed = true;
            break;
        case O_SINCE:
            o.since = optarg;
            break;
        case O_MEM:
            if ((o.pool_mem = parse_size(optarg)) <= 0) {
                fprintf(stderr, "provium: --mem: cannot parse '%s' (use bytes or a size like 8G, 512M)\n", optarg);
                return 2;
            }
            break;
        case O_CPUS:
        case O_OVERCOMMIT: {
            char *end;
            double v = strtod(optarg, &end);
            if (*end || !(v > 0) || v > 4096) {
                fprintf(stderr, "provium: --%s must be a positive number, not '%s'\n",
                        c == O_CPUS ? "cpus" : "cpu-overcommit", optarg);
                return 2;
            }
            if (c == O_CPUS) {
                o.pool_cpus = v;
            } else {
                o.overcommit = v < 0.5 ? 0.5 : v > 8 ? 8 : v;
                if (o.overcommit != v)
                    fprintf(stderr, "provium: --cpu-overcommit %s clamped to %g (the allowed range is 0.5 to 8)\n",
                            optarg, o.overcommit);
            }
            break;
        }
        case O_FIXTURES:
            fixtures = true;
            break;
        case O_WATCH:
            o.watch = true;
            break;
        case O_NO_PREFLIGHT:
            break;
        case O_COVERAGE:
            coverage = true;
            break;
        case O_ACCEL:
            if (strcmp(optarg, "auto") && strcmp(optarg, "kvm") && strcmp(optarg, "tcg")) {
                fprintf(stderr, "provium: --accel must be auto, kvm or tcg, not '%s'\n", optarg);
                return 2;
            }
            /* through the environment: every test file's process inherits it */
            setenv("PROVIUM_ACCEL", optarg, 1);
            break;
        case O_NO_BOOT_CACHE:
            setenv("PROVIUM_BOOT_CACHE", "off", 1); /* inherited like PROVIUM_ACCEL */
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
    if (o.json + o.tap > 1) {
        fprintf(stderr, "provium: --json and --tap cannot be combined\n");
        return 2;
    }
    if (o.verbose && o.quiet) {
        fprintf(stderr, "provium: --verbose and --quiet cannot be combined\n");
        return 2;
    }
    if (fixtures && (!sub || strcmp(sub, "list") != 0)) {
        fprintf(stderr, "provium: --fixtures only applies to 'provium list'\n");
        return 2;
    }
    if (o.include_slow)
        setenv("PROVIUM_INCLUDE_SLOW", "1", 1);
    char *coverage_bin = NULL, *coverage_tmp = NULL;
    if (coverage && !sub) {
        coverage_bin = find_in_path("provium-coverage");
        if (!coverage_bin) {
            fprintf(stderr, "provium: --coverage: provium-coverage is not on PATH; install it, or run with "
                            "--save-events FILE and give FILE to it yourself\n");
            return 2;
        }
        if (!o.events_path) {
            const char *tmp = getenv("TMPDIR");
            coverage_tmp = xasprintf("%s/provium-events-XXXXXX", tmp && *tmp ? tmp : "/tmp");
            int fd = mkstemp(coverage_tmp);
            if (fd < 0) {
                fprintf(stderr, "provium: --coverage: cannot create %s: %s\n", coverage_tmp, strerror(errno));
                return 2;
            }
            close(fd);
            o.events_path = coverage_tmp;
        }
    }
    if (html && sub) {
        fprintf(stderr, "provium: --html only applies to a run\n");
        return 2;
    }
    char *consoles = NULL; /* --html: every VM's console is kept beside the report */
    if (html) {
        size_t hl = strlen(html);
        char *abs = path_absolute(html);
        consoles = xasprintf("%.*s-consoles", (int)(strlen(abs) - (hl > 5 && !strcmp(html + hl - 5, ".html") ? 5 : 0)),
                             abs);
        free(abs);
        setenv("PROVIUM_CONSOLE_DIR", consoles, 1);
    }
    if (html && !o.events_path) {
        /* the report is made from the run's events: keep them in a temporary file */
        const char *tmp = getenv("TMPDIR");
        html_events = xasprintf("%s/provium-events-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        int fd = mkstemp(html_events);
        if (fd < 0) {
            fprintf(stderr, "provium: --html: cannot create a temporary file %s: %s\n", html_events, strerror(errno));
            return 2;
        }
        close(fd);
        o.events_path = html_events;
    }
    pv_config cfg;
    char err[4096];
    if (config_load(config_path, &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    if (sub && strcmp(sub, "doctor") == 0) {
        int rc = runner_doctor(&cfg);
        config_free(&cfg);
        return rc;
    }
    file_list files = {0};
    int rc;
    char *here[] = {"."};
    const char *suffix = fixtures ? ".fixture.lua" : ".test.lua";
    char *const *paths = optind < argc ? argv + optind : cfg.nroots ? cfg.roots : here;
    size_t npaths = optind < argc ? (size_t)(argc - optind) : cfg.nroots ? cfg.nroots : 1;
    uint64_t stamp = watch_stamp(paths, npaths, cfg.path);
    strbuf searched;
    sb_init(&searched);
    for (size_t i = 0; i < npaths; i++)
        sb_addf(&searched, "%s%s", i ? ", " : "", paths[i]);
    o.searched = searched.s;
    for (;;) {
        file_list_free(&files);
        rc = discover_files(paths, npaths, suffix, &files, err, sizeof(err));
        if (rc != 0) {
            fprintf(stderr, "provium: %s\n", err);
            rc = 2;
        } else {
            const char *notice = NULL;
            rc = runner_select_files(&cfg, &files, &o, &notice);
            if (rc == 0 && notice)
                fprintf(stderr, "provium: %s\n", notice);
            o.explained_empty = notice != NULL;
            if (rc == 0 && sub)
                rc = fixtures ? runner_list(&cfg, &files, NULL, o.json) : runner_list(&cfg, &files, &o, o.json);
            else if (rc == 0) {
                fixture_evict(&cfg); /* keep the fixture cache under cache_max_size */
                if (consoles) { /* this run's consoles only */
                    rm_rf(consoles);
                    mkdir_p(consoles, 0755);
                }
                rc = runner_run(&cfg, &files, &o);
                if (html && html_report(&o, html) != 0 && rc == 0)
                    rc = 2;
            }
        }
        if (!o.watch || sub || rc == 130)
            break;
        /* --watch: wait for a change under the paths (or to provium.toml);
         * between runs Ctrl-C simply ends provium */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        printf("\nwatching for changes (Ctrl-C to stop)...\n");
        fflush(stdout);
        uint64_t now;
        while ((now = watch_stamp(paths, npaths, cfg.path)) == stamp)
            sleep_ms(300);
        stamp = now;
        printf("change detected: running again\n\n");
    }
    if (coverage_bin && rc != 2) {
        int crc = run_coverage(coverage_bin, o.events_path);
        if (crc != 0 && rc == 0)
            rc = 1;
    }
    if (coverage_tmp)
        unlink(coverage_tmp);
    free(coverage_tmp);
    free(coverage_bin);
    file_list_free(&files);
    sb_free(&searched);
    if (html_events)
        unlink(html_events);
    free(html_events);
    free(consoles);
    free(o.sel.tags);
    free(o.sel.no_tags);
    free(o.sel.tag_meta);
    free(o.sel.no_tag_meta);
    config_free(&cfg);
    return rc;
}
