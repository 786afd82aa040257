/* What a run (provium [options] [PATH...]) and `provium list` do once
 * their options are parsed: find the files, narrow them by the selection,
 * then run or list them. --watch repeats the run whenever a file under the
 * paths, or provium.toml, changes; --html makes the report of the run from
 * its events (kept in a temporary file unless --save-events names one),
 * with every VM's console kept beside it; --coverage gives the events to
 * provium-coverage afterwards. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../fixtures/fixtures.h"
#include "../runner/ci.h"
#include "../util/util.h"
#include "cli.h"

/* ---------------------------------------------------------------- --watch */

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

/* Between runs Ctrl-C simply ends provium. */
static void wait_for_change(char *const *paths, size_t n, const char *config, uint64_t *stamp)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    printf("\nwatching for changes (Ctrl-C to stop)...\n");
    fflush(stdout);
    uint64_t now;
    while ((now = watch_stamp(paths, n, config)) == *stamp)
        sleep_ms(300);
    *stamp = now;
    printf("change detected: running again\n\n");
}

/* ---------------------------------------------------------------- --html, --coverage */

/* What a run needs besides its options: the files it made for --html and
 * --coverage, removed at the end. */
typedef struct {
    char *coverage_bin;  /* provium-coverage on PATH */
    char *events_tmp;    /* the events file --html / --coverage made, without --save-events */
    char *consoles;      /* --html: every VM's console is kept beside the report */
} run_extras;

/* A temporary events file for --html or --coverage when --save-events names none. */
static int temp_events(run_cli *cl, run_extras *x, const char *what)
{
    if (cl->o.events_path)
        return 0;
    const char *tmp = getenv("TMPDIR");
    x->events_tmp = xasprintf("%s/provium-events-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(x->events_tmp);
    if (fd < 0) {
        fprintf(stderr, "provium: %s: cannot create a temporary file %s: %s\n", what, x->events_tmp,
                strerror(errno));
        return 2;
    }
    close(fd);
    cl->o.events_path = x->events_tmp;
    return 0;
}

static int prepare_extras(run_cli *cl, run_extras *x)
{
    if (cl->coverage) {
        x->coverage_bin = find_in_path("provium-coverage");
        if (!x->coverage_bin) {
            fprintf(stderr, "provium: --coverage: provium-coverage is not on PATH; install it, or run with "
                            "--save-events FILE and give FILE to it yourself\n");
            return 2;
        }
        if (temp_events(cl, x, "--coverage") != 0)
            return 2;
    }
    if (cl->html) {
        size_t hl = strlen(cl->html);
        char *abs = path_absolute(cl->html);
        bool dot_html = hl > 5 && !strcmp(cl->html + hl - 5, ".html");
        x->consoles = xasprintf("%.*s-consoles", (int)(strlen(abs) - (dot_html ? 5 : 0)), abs);
        free(abs);
        setenv("PROVIUM_CONSOLE_DIR", x->consoles, 1);
        if (temp_events(cl, x, "--html") != 0)
            return 2;
    }
    return 0;
}

static void free_extras(run_extras *x)
{
    if (x->events_tmp)
        unlink(x->events_tmp);
    free(x->events_tmp);
    free(x->coverage_bin);
    free(x->consoles);
}

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

/* ---------------------------------------------------------------- one pass */

/* The files to run or list: discovered under the paths, then narrowed. */
static int find_files(const pv_config *cfg, run_cli *cl, char *const *paths, size_t npaths, file_list *files)
{
    char err[PV_ERR_MAX];
    file_list_free(files);
    const char *suffix = cl->fixtures ? ".fixture.lua" : ".test.lua";
    if (discover_files(paths, npaths, suffix, files, err, sizeof(err)) != 0) {
        fprintf(stderr, "provium: %s\n", err);
        return 2;
    }
    const char *notice = NULL;
    int rc = runner_select_files(cfg, files, &cl->o, &notice);
    if (rc == 0 && notice)
        fprintf(stderr, "provium: %s\n", notice);
    cl->o.explained_empty = notice != NULL;
    return rc;
}

/* One run of the files; the exit status. */
static int run_once(const pv_config *cfg, run_cli *cl, const run_extras *x, const file_list *files)
{
    fixture_evict(cfg); /* keep the fixture cache under cache_max_size */
    if (x->consoles) { /* this run's consoles only */
        rm_rf(x->consoles);
        mkdir_p(x->consoles, 0755);
    }
    int rc = runner_run(cfg, files, &cl->o);
    if (cl->html) {
        char err[PV_ERR_MAX];
        if (report_html(cl->o.events_path, cl->html, err, sizeof(err)) != 0) {
            fprintf(stderr, "provium: --html: %s\n", err);
            if (rc == 0)
                rc = 2;
        }
    }
    return rc;
}

/* The PATHs given, else the configured roots, else ".". */
static char *const *search_paths(const pv_config *cfg, const run_cli *cl, size_t *n)
{
    static char *here[] = {"."};
    if (cl->npaths) {
        *n = cl->npaths;
        return cl->paths;
    }
    *n = cfg->nroots ? cfg->nroots : 1;
    return cfg->nroots ? cfg->roots : here;
}

static int run_or_list(run_cmd_kind kind, run_cli *cl)
{
    run_extras x = {0};
    if (kind == CMD_RUN && prepare_extras(cl, &x) != 0) {
        free_extras(&x);
        return 2;
    }
    pv_config cfg;
    if (cli_load_config(cl->config_path, &cfg) != 0) {
        free_extras(&x);
        return 2;
    }
    size_t npaths;
    char *const *paths = search_paths(&cfg, cl, &npaths);
    uint64_t stamp = watch_stamp(paths, npaths, cfg.path);
    strbuf searched;
    sb_init(&searched);
    for (size_t i = 0; i < npaths; i++)
        sb_addf(&searched, "%s%s", i ? ", " : "", paths[i]);
    cl->o.searched = searched.s;
    file_list files = {0};
    int rc;
    for (;;) {
        rc = find_files(&cfg, cl, paths, npaths, &files);
        if (rc == 0 && kind == CMD_LIST)
            rc = runner_list(&cfg, &files, cl->fixtures ? NULL : &cl->o, cl->o.json);
        else if (rc == 0)
            rc = run_once(&cfg, cl, &x, &files);
        if (!cl->o.watch || kind == CMD_LIST || rc == 130)
            break;
        wait_for_change(paths, npaths, cfg.path, &stamp);
    }
    if (x.coverage_bin && rc != 2 && run_coverage(x.coverage_bin, cl->o.events_path) != 0 && rc == 0)
        rc = 1;
    free_extras(&x);
    file_list_free(&files);
    sb_free(&searched);
    config_free(&cfg);
    return rc;
}

static int parse_and_do(run_cmd_kind kind, int argc, char **argv)
{
    run_cli cl;
    int rc = run_cli_parse(kind, argc, argv, &cl);
    if (rc == 0)
        rc = run_or_list(kind, &cl);
    run_cli_free(&cl);
    return rc < 0 ? 0 : rc; /* -1: --help or --version answered */
}

int run_main(int argc, char **argv)
{
    argv[0] = "provium"; /* getopt names it in its messages, not as build/provium */
    return parse_and_do(CMD_RUN, argc, argv);
}

int list_main(int argc, char **argv)
{
    argv[0] = "provium list";
    return parse_and_do(CMD_LIST, argc, argv);
}
