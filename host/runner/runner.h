/* Running test files: discovery, selection, a resource pool, one child
 * process per file, reporting (text, JSON, JUnit, TAP, events). This is
 * the runner's public face; run.h describes how its files share the work. */
#ifndef PROVIUM_RUNNER_H
#define PROVIUM_RUNNER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"

/* Exit status of a run whose --filter / --tag / --tag-meta selection kept no test. */
#define PV_EXIT_NONE_SELECTED 5

/* Per-test selection, evaluated inside each file (see lua_runner.c). */
typedef struct {
    const char *filter;            /* test-name substring; NULL = any */
    char **tags, **no_tags;        /* --tag / --no-tag */
    size_t ntags, nno_tags;
    char **tag_meta, **no_tag_meta; /* "KEY=VALUE" */
    size_t ntag_meta, nno_tag_meta;
    bool include_slow; /* --include-slow or PROVIUM_INCLUDE_SLOW: meta.slow tests run */
} test_select;

typedef struct {
    int jobs;            /* concurrent files; 0 = as many as the pool allows */
    int64_t timeout_ms;  /* per file; 0 = none */
    bool verbose, quiet, json, tap;
    bool fail_fast, rerun_failed, watch;
    const char *junit_path;  /* --junit FILE */
    const char *events_path; /* --save-events FILE */
    const char *filter;      /* --filter SUBSTR (path or test name) */
    const char *since;       /* --since FILE */
    int shard_k, shard_n;    /* --shard K/N; n = 0 when unset */
    const char *timings_path; /* --timings FILE; NULL = under the cache root */
    int64_t pool_mem;        /* bytes; 0 = 80 % of host RAM */
    double pool_cpus;        /* 0 = host CPUs */
    double overcommit;       /* 0 = 1.0 */
    const char *searched;    /* the paths searched, for "no *.test.lua files found" */
    bool explained_empty;    /* the selection already said why nothing runs */
    test_select sel;
} run_opts;

typedef struct {
    char **paths;
    size_t n;
} file_list;

/* Expands paths (files and directories) into sorted files with the suffix. */
int discover_files(char *const *paths, size_t npaths, const char *suffix, file_list *out, char *err, size_t errlen);
void file_list_free(file_list *l);

/* What a child does with its file. */
typedef enum { CHILD_RUN, CHILD_LIST } child_mode;

/* Runs (or lists) one file in the current process, writing its JSON report
 * to report_fd. ctl_fd (-1 for none) is the control socket to the runner:
 * claims and events. */
int run_file_child(const pv_config *cfg, const char *scratch_root, const char *path, int report_fd, int ctl_fd,
                   child_mode mode, const test_select *sel, const char *shown);

/* Runs the files; returns the process exit code (0, 1, 2 or 130). */
int runner_run(const pv_config *cfg, const file_list *files, const run_opts *opts);

/* Narrows files by --filter (path part), --rerun-failed, --since, --shard.
 * Returns 0, or 2 with a message printed; *notice is set when the selection
 * itself explains an empty result (e.g. nothing to rerun). */
int runner_select_files(const pv_config *cfg, file_list *files, const run_opts *o, const char **notice);

/* The rerun-state file: $PROVIUM_RERUN_STATE, else one per project:
 * <cache>/rerun/<hash of the provium.toml directory>.json. */
char *rerun_state_path(const pv_config *cfg);

/* provium list / provium doctor */
int runner_list(const pv_config *cfg, const file_list *files, const run_opts *o, bool json);
int runner_doctor(const pv_config *cfg);

/* Lists one file in a child process: fills *json (caller frees) with the
 * list report ({"tests":[{"name","selected","reason"}],"chunk_error"}). */
int list_file(const pv_config *cfg, const char *path, const char *shown, const test_select *sel, char **json);

/* ---- the Lua side (host/lua/lua_runner.c) ---- */
struct lua_State;
/* Installs provium:claim, P.event, P.select_reason and the VM lifecycle
 * hooks into a state made by pv_lua_new. */
void pv_lua_runner_install(struct lua_State *L, int ctl_fd, child_mode mode, const test_select *sel,
                           const char *shown);

/* ---- what a file declares, read without running it (host/runner/scan.c) ---- */
typedef struct {
    char **fixtures; /* names given to vm_fixture / lab_fixture / provium.fixture as literals */
    size_t nfixtures;
    bool has_claim; /* a file-scope provium:claim{...} with literal fields */
    int64_t claim_mem;
    double claim_cpus;
} file_decl;
void scan_source_decl(const char *src, size_t len, file_decl *d);
int scan_file_decl(const char *path, file_decl *d);
void file_decl_free(file_decl *d);

/* ---- the pool (host/runner/pool.c) ---- */
typedef struct {
    int64_t mem;
    double cpus;
} pool_amount;

int64_t host_memory_bytes(void);
int host_cpu_count(void);
/* CPU "some" pressure avg10 in percent, or -1 when PSI is unavailable. */
double psi_cpu_some_avg10(void);

/* ---- events (host/runner/events.c) ---- */
struct json_t;
int events_open(const char *path);
bool events_enabled(void);
/* Writes {"ts":ns,"kind":kind,"payload":payload}; steals payload. ts 0 = now. */
void events_emit(const char *kind, struct json_t *payload, int64_t ts);
void events_close(void);
int64_t wall_ns(void);
#endif
