/* The runner's inside: the state of one run of test files, shared by the
 * files that each own one part of it.
 *
 *   dispatch.c  the main loop: signals, polling, reaping, the order files start in
 *   child.c     one child process per file: fork, pipes, process group, the control socket
 *   pool.c      the resource pool: reservations, claims, VM boots, deadlock breaking
 *   select.c    which files run: --filter/--tag pre-pass, --rerun-failed, --since, --shard,
 *               and the state later selections read (rerun state, timings)
 *   results.c   what a finished file's report becomes: text, --json, TAP lines, the summary
 *   scratch.c   the run's scratch directory, and what killed runs left behind
 *
 * Nothing here is visible outside host/runner: runner.h is the public face. */
#ifndef PROVIUM_RUN_H
#define PROVIUM_RUN_H
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "../util/util.h"
#include "runner.h"

typedef enum { F_PENDING, F_RUNNING, F_DONE, F_SKIPPED } file_phase;

/* One test file from discovery to its report. */
typedef struct {
    const char *path;
    const char *shown; /* path relative to the working directory when possible */
    test_select sel;   /* the per-test selection this file runs with */
    file_phase phase;
    pid_t pid;
    int report_fd, ctl_fd;
    strbuf report;
    char *log_path;
    double started, elapsed, deadline_base, wait_started;
    int64_t started_wall;
    int wstatus;
    bool timed_out;
    pool_amount held;   /* what the file holds from the pool now */
    bool claim_pending; /* asked for `want`, waiting for room */
    bool claimed;
    pool_amount want;
    bool blocked_noted;
    pool_amount live;      /* what the file's booted VMs use (charged to its claim or the pool) */
    bool boot_pending;     /* a VM boot waits for room in the pool */
    pool_amount boot_vm;   /* that VM's size */
    pool_amount boot_held; /* what the file holds once that boot is granted */
    char *boot_name;
    double boot_wait_started;
    json_t *result;     /* the --json object, kept for JUnit and the rerun state */
    char *file_log;     /* captured output of a crashed or timed-out file */
    char *current_test; /* the test running now (test_started event), NULL: none */
    char *waiting_for;  /* what the file has waited for over 2 s, NULL: nothing */
    bool failed;
} file_run;

typedef struct {
    int files_passed, files_failed;
    int tests_passed, tests_failed, tests_skipped;
    int tests_deselected; /* left out by --filter / --tag / --tag-meta: not run, not counted */
} totals;

typedef struct {
    pool_amount total, used, deflt;
    int running, jobs;
    double psi_threshold; /* percent; <= 0 disables */
} pool_state;

/* The one-line progress display on a terminal. */
typedef struct {
    bool on, shown;
} progress;

/* ---- pool.c ---- */
/* Sizes the pool from the options and the default profile. Returns 0, or 2
 * with a message printed when not even one default VM fits. */
int pool_init(pool_state *p, const pv_config *cfg, const run_opts *o);
json_t *amount_json(pool_amount a);
char *amount_text(pool_amount a); /* "512 MiB, 1 vCPUs"; caller frees */
void pool_emit(const pool_state *p);
bool pool_fits(const pool_state *p, pool_amount a);
void pool_take(pool_state *p, file_run *f, pool_amount a);
void pool_give_back(pool_state *p, file_run *f);
/* The child's requests over the control socket; each is answered with
 * child_reply now, or once the pool has room. */
void pool_claim_request(file_run *f, pool_state *p, pool_amount want);
void pool_boot_request(file_run *f, pool_state *p, const char *name, pool_amount vm);
void pool_boot_release(file_run *f, pool_state *p, pool_amount vm);
/* A pre-started QEMU (host/vmm/qpool.c) asks for room: granted at once
 * from room nobody waits for, else refused; never waits. */
void pool_spare_request(file_run *f, pool_state *p, pool_amount spare);
/* Grants waiting boots, then waiting claims in dispatch order, and breaks a
 * hold-and-wait deadlock. *changed is set when the pool changed; returns
 * true when new files must wait (FIFO: a waiting boot or claim goes first). */
bool pool_grant_waiting(file_run *runs, size_t n, pool_state *p, bool *changed);
/* Why a new file cannot start now ("jobs_limit", "pool_full",
 * "psi_pressure"), or NULL when it can. */
const char *pool_admit(const pool_state *p);
/* Emits file_blocked once per wait. */
void pool_note_blocked(file_run *f, pool_amount want, const char *reason);

/* ---- child.c ---- */
/* Forks the file's child in its own process group; exits 2 when it cannot. */
void child_start(const pv_config *cfg, const char *scratch, file_run *f, int index);
void child_drain_report(file_run *f);
void child_reply(file_run *f, const char *msg);
void child_kill(file_run *f, int sig);

/* ---- select.c ---- */
const char *shown_path(const char *path);
/* True when --filter / --tag / --tag-meta select tests inside files. */
bool selection_by_test(const run_opts *o);
/* The selection options as given, e.g. "--filter alpha --tag smoke"; caller frees. */
char *selection_text(const run_opts *o);
/* Sets each file's selection and deselects the files in which it keeps no test. */
void prepass(const pv_config *cfg, file_run *runs, size_t n, const run_opts *o, size_t *deselected,
             int *tests_deselected);
void rerun_save(const pv_config *cfg, const file_run *runs, size_t n);
void record_timings(const pv_config *cfg, const file_run *runs, size_t n, const run_opts *o);

/* ---- results.c ---- */
/* Turns the child's report into the --json object kept in f->result and
 * prints the outcome in the chosen format; adds to the totals. */
void results_file(file_run *f, const run_opts *o, totals *t, double timeout_s, int *tap_n, progress *pr);
/* The summary line and its notes; --json prints none. */
void results_summary(const run_opts *o, const totals *t, size_t ran, size_t deselected, size_t not_run,
                     bool interrupted, double total_s, int tap_n);
/* What --json / --tap / text print when there is no file at all. */
void results_no_files(const run_opts *o);
void progress_clear(progress *pr);
void progress_draw(progress *pr, size_t running, size_t done, size_t total, int failed, double elapsed);

/* ---- scratch.c ---- */
/* A fresh private scratch directory for the run (caller frees, then rm_rf),
 * or NULL with a message printed. Removes what dead runs left behind. */
char *scratch_create(void);
#endif
