/* The dispatcher: runs the selected files, one child process each, as the
 * pool, -j and CPU pressure allow, and supervises them until they end.
 *
 * One loop polls the signal pipe and every running file's report pipe and
 * control socket, with a timeout no later than the nearest per-file
 * deadline. Each turn it routes the children's messages (claims and VM
 * boots to the pool, events to --save-events), reaps the files that ended
 * and reports them, kills the ones past their deadline (their whole process
 * group), then grants what waits and starts new files in discovery order.
 * Ctrl-C (SIGINT, SIGTERM, SIGHUP) stops dispatch, sends SIGTERM to every
 * file's group and SIGKILL after 3 s. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../vmm/accel.h"
#include "../vmm/vm.h"
#include "output.h"
#include "run.h"

/* The state of one run (runner_run). */
typedef struct {
    const pv_config *cfg;
    const run_opts *o;
    const char *scratch;
    file_run *runs;
    size_t n;
    size_t next;       /* the next file to dispatch */
    size_t done;       /* files ended or deselected */
    size_t deselected; /* files the pre-pass left out */
    pool_state pool;
    totals t;
    int tap_n;
    double timeout_s, t0;
    bool fail_stop; /* --fail-fast: a file failed, start no more */
    progress prog;
    struct pollfd *pfd; /* 1 + 2 per file: the most that can run at once */
} run_state;

/* ---------------------------------------------------------------- signals */

/* The handler can only set a flag and write to a pipe; the loop polls it. */
static int signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    int saved = errno;
    if (sig != SIGCHLD)
        stop_signal = sig;
    char c = (char)sig;
    (void)!write(signal_pipe[1], &c, 1);
    errno = saved;
}

static void install_handlers(void)
{
    if (pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        perror("provium: pipe");
        exit(2);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
}

/* ---------------------------------------------------------------- control messages */

static pool_amount amount_of(json_t *m)
{
    return (pool_amount){json_integer_value(json_object_get(m, "memory")),
                         json_number_value(json_object_get(m, "cpus"))};
}

/* An event from the child goes to --save-events with the file's path; it
 * also tells which test runs now, for a timeout's message. */
static void forward_event(file_run *f, json_t *m)
{
    const char *kind = json_string_value(json_object_get(m, "kind"));
    json_t *payload = json_object_get(m, "payload");
    if (kind && strncmp(kind, "test_", 5) == 0) {
        const char *name = json_string_value(json_object_get(payload, "name"));
        free(f->current_test);
        f->current_test = strcmp(kind, "test_started") == 0 && name ? xstrdup(name) : NULL;
    }
    if (!json_is_object(payload))
        payload = json_object();
    else
        json_incref(payload);
    /* a fixture event's path is the fixture's */
    bool vm = kind && (strncmp(kind, "vm_", 3) == 0 || strncmp(kind, "fixture_", 8) == 0);
    json_object_set_new(payload, vm ? "file" : "path", json_string(f->shown));
    events_emit(kind ? kind : "unknown", payload, json_integer_value(json_object_get(m, "ts")));
}

/* The largest control message (one packet): events carry test names and
 * failure messages, which stay far below it. */
#define CTL_MSG_MAX (256 * 1024)

/* Messages from a child: {"t":"claim"|"boot"|"spare"|"release"|"event"|"wait",...}. */
static void drain_ctl(file_run *f, pool_state *pool)
{
    if (f->ctl_fd < 0)
        return;
    char buf[CTL_MSG_MAX + 1];
    for (;;) {
        /* MSG_TRUNC: the real length of a longer message, which is cut */
        ssize_t n = recv(f->ctl_fd, buf, CTL_MSG_MAX, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        if (n > CTL_MSG_MAX) {
            fprintf(stderr, "provium: %s: a control message of %zd bytes is over the %d byte limit; dropped\n",
                    f->shown, n, CTL_MSG_MAX);
            continue;
        }
        json_error_t je;
        json_t *m = json_loadb(buf, (size_t)n, 0, &je);
        const char *t = json_string_value(json_object_get(m, "t"));
        if (!t) {
            /* not a message of ours (or not JSON): nothing to do */
        } else if (strcmp(t, "wait") == 0) {
            const char *what = json_string_value(json_object_get(m, "what"));
            free(f->waiting_for);
            f->waiting_for = what ? xstrdup(what) : NULL;
        } else if (strcmp(t, "event") == 0) {
            forward_event(f, m);
        } else if (strcmp(t, "boot") == 0) {
            const char *name = json_string_value(json_object_get(m, "vm"));
            pool_boot_request(f, pool, name ? name : "?", amount_of(m));
        } else if (strcmp(t, "spare") == 0) {
            pool_spare_request(f, pool, amount_of(m));
        } else if (strcmp(t, "release") == 0) {
            pool_boot_release(f, pool, amount_of(m));
        } else if (strcmp(t, "claim") == 0) {
            pool_claim_request(f, pool, amount_of(m));
        }
        json_decref(m);
    }
}

/* ---------------------------------------------------------------- dispatch */

/* Grants waiting boots and claims, then starts new files, as the pool, -j
 * and CPU pressure allow. FIFO: the first file that cannot go blocks the
 * ones behind it. */
static void schedule(run_state *rs)
{
    pool_state *pool = &rs->pool;
    bool changed = false;
    bool hold_back = pool_grant_waiting(rs->runs, rs->n, pool, &changed) || rs->fail_stop;
    while (!hold_back && rs->next < rs->n) {
        file_run *f = &rs->runs[rs->next];
        if (f->phase == F_SKIPPED) {
            rs->next++;
            continue;
        }
        const char *why = pool_admit(pool);
        if (why) {
            pool_note_blocked(f, pool->deflt, why);
            break;
        }
        pool_take(pool, f, pool->deflt);
        child_start(rs->cfg, rs->scratch, f, (int)rs->next);
        pool->running++;
        rs->next++;
        events_emit("file_dispatched",
                    json_pack("{s:s,s:o,s:i}", "path", f->shown, "reservation", amount_json(f->held), "pid", f->pid),
                    0);
        changed = true;
    }
    if (changed)
        pool_emit(pool);
}

/* Probes the accelerator once, in the parent, before any file starts (the
 * children then read the cached verdict), and says so when VMs will run
 * under TCG although the user did not ask for it. */
static void announce_accel(const pv_config *cfg, const run_opts *o)
{
    const pv_profile *p = config_profile(cfg, "default");
    for (size_t i = 0; (!p || p->local || !p->kernel) && i < cfg->nprofiles; i++)
        p = &cfg->profiles[i];
    if (!p || p->local || !p->kernel)
        return;
    char err[PV_ERR_MAX];
    const char *want = accel_requested(p, err, sizeof(err));
    if (!want || strcmp(want, "tcg") == 0)
        return;
    accel_verdict v;
    accel_probe(p->kernel, vm_machine(p), &v);
    if (!v.kvm && strcmp(want, "auto") == 0 && !o->json && !o->tap)
        fprintf(stderr, "provium: %s; VMs run under TCG software emulation (slower)\n", v.reason);
}

/* ---------------------------------------------------------------- the loop */

/* What file_discovered says of each file: its fixture references and its
 * declared claim, read from the source without running it. */
static void emit_discovered(const file_run *runs, size_t n)
{
    for (size_t i = 0; i < n && events_enabled(); i++) {
        file_decl d;
        scan_file_decl(runs[i].path, &d);
        json_t *refs = json_array();
        for (size_t k = 0; k < d.nfixtures; k++)
            json_array_append_new(refs, json_string(d.fixtures[k]));
        events_emit("file_discovered",
                    json_pack("{s:s,s:o,s:o}", "path", runs[i].shown, "fixture_refs", refs, "declared_claim",
                              d.has_claim ? amount_json((pool_amount){d.claim_mem, d.claim_cpus}) : json_null()),
                    0);
        file_decl_free(&d);
    }
}

/* A file is past its deadline unless it waits for the pool (which does not count). */
static bool counts_time(const run_state *rs, const file_run *f)
{
    return rs->o->timeout_ms && !f->claim_pending && !f->boot_pending;
}

/* Fills rs->pfd with the signal pipe and every running file's two fds;
 * returns how many, and *wait_ms the poll timeout. */
static size_t poll_set(run_state *rs, int *wait_ms)
{
    size_t np = 0;
    rs->pfd[np++] = (struct pollfd){signal_pipe[0], POLLIN, 0};
    *wait_ms = 1000;
    for (size_t i = 0; i < rs->n; i++) {
        const file_run *f = &rs->runs[i];
        if (f->phase != F_RUNNING)
            continue;
        rs->pfd[np++] = (struct pollfd){f->report_fd, POLLIN, 0};
        rs->pfd[np++] = (struct pollfd){f->ctl_fd, POLLIN, 0};
        if (counts_time(rs, f)) {
            double left = f->deadline_base + rs->timeout_s - now_s();
            int ms = left < 0 ? 0 : (int)(left * 1000) + 1;
            if (ms < *wait_ms)
                *wait_ms = ms;
        }
    }
    if (rs->next < rs->n && !rs->fail_stop && *wait_ms > 250)
        *wait_ms = 250; /* re-check pressure and room */
    if (rs->prog.on && *wait_ms > 250)
        *wait_ms = 250;
    return np;
}

/* A file's child has ended: report it and give back what it held. */
static void reap_file(run_state *rs, file_run *f, int st)
{
    /* make sure nothing the file started survives it */
    kill(-f->pid, SIGKILL);
    drain_ctl(f, &rs->pool);
    child_drain_report(f);
    close(f->report_fd);
    close(f->ctl_fd);
    f->ctl_fd = -1;
    f->wstatus = st;
    f->phase = F_DONE;
    f->elapsed = now_s() - f->started;
    rs->pool.running--;
    rs->done++;
    if (f->timed_out)
        sb_free(&f->report);
    results_file(f, rs->o, &rs->t, rs->timeout_s, &rs->tap_n, &rs->prog);
    free(f->current_test);
    free(f->waiting_for);
    f->current_test = f->waiting_for = NULL;
    const char *status = f->timed_out ? "timed_out" : !f->report.len ? "crashed" : f->failed ? "failed" : "passed";
    events_emit("file_completed",
                json_pack("{s:s,s:s,s:I}", "path", f->shown, "status", status, "duration_ns",
                          (json_int_t)(f->elapsed * 1e9)),
                0);
    if (f->claimed)
        events_emit("claim_released", json_pack("{s:s,s:o}", "path", f->shown, "amount", amount_json(f->want)), 0);
    pool_give_back(&rs->pool, f);
    f->claim_pending = f->boot_pending = false;
    f->live = (pool_amount){0, 0};
    pool_emit(&rs->pool);
    if (f->failed && rs->o->fail_fast)
        rs->fail_stop = true;
}

/* One turn of the loop after poll: messages, reports, deadlines, reaping. */
static void supervise(run_state *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        file_run *f = &rs->runs[i];
        if (f->phase != F_RUNNING)
            continue;
        drain_ctl(f, &rs->pool);
        child_drain_report(f);
        if (counts_time(rs, f) && now_s() - f->deadline_base > rs->timeout_s && !f->timed_out) {
            f->timed_out = true;
            child_kill(f, SIGKILL);
        }
        int st;
        if (waitpid(f->pid, &st, WNOHANG) == f->pid)
            reap_file(rs, f, st);
    }
}

static void run_loop(run_state *rs)
{
    double last_pool_event = now_s();
    while (rs->done < rs->n) {
        if (!stop_signal)
            schedule(rs);
        if (stop_signal)
            break;
        if (rs->pool.running == 0 && (rs->fail_stop || rs->next >= rs->n))
            break; /* fail-fast left the rest undispatched */
        int wait_ms;
        size_t np = poll_set(rs, &wait_ms);
        poll(rs->pfd, np, wait_ms);
        char sink[64];
        while (read(signal_pipe[0], sink, sizeof(sink)) > 0) {
        }
        supervise(rs);
        if (now_s() - last_pool_event >= 1.0) {
            pool_emit(&rs->pool);
            last_pool_event = now_s();
        }
        progress_draw(&rs->prog, (size_t)rs->pool.running, rs->done, rs->n, rs->t.files_failed, now_s() - rs->t0);
    }
    progress_clear(&rs->prog);
}

/* Ctrl-C: SIGTERM to every running file's group, SIGKILL after 3 s. */
static void stop_all(run_state *rs)
{
    for (size_t i = 0; i < rs->n; i++)
        child_kill(&rs->runs[i], SIGTERM);
    int64_t deadline = now_ms() + 3000;
    for (size_t i = 0; i < rs->n; i++) {
        file_run *f = &rs->runs[i];
        if (f->phase != F_RUNNING)
            continue;
        while (waitpid(f->pid, NULL, WNOHANG) == 0 && now_ms() < deadline)
            sleep_ms(10);
        kill(-f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        close(f->report_fd);
        close(f->ctl_fd);
        f->phase = F_PENDING;
        events_emit("file_completed", json_pack("{s:s,s:s}", "path", f->shown, "status", "interrupted"), 0);
    }
    fprintf(stderr, "\nprovium: interrupted by %s; %zu of %zu files finished\n", strsignal(stop_signal),
            rs->done - rs->deselected, rs->n - rs->deselected);
}

static int write_junit(const run_state *rs, double total_s, int rc)
{
    json_t **results = xcalloc(rs->n, sizeof(json_t *));
    const char **logs = xcalloc(rs->n, sizeof(char *));
    for (size_t i = 0; i < rs->n; i++) {
        results[i] = rs->runs[i].result;
        logs[i] = rs->runs[i].file_log;
    }
    if (junit_write(rs->o->junit_path, results, logs, rs->n, total_s) != 0) {
        fprintf(stderr, "provium: --junit: cannot write %s: %s\n", rs->o->junit_path, strerror(errno));
        if (rc == 0)
            rc = 2;
    }
    free(results);
    free(logs);
    return rc;
}

/* After the loop: the exit status, the state for later runs, the summary,
 * JUnit and the last event. */
static int finish(run_state *rs)
{
    const run_opts *o = rs->o;
    const totals *t = &rs->t;
    int rc;
    size_t not_run = 0;
    for (size_t i = 0; i < rs->n; i++)
        not_run += rs->runs[i].phase == F_PENDING;
    if (stop_signal) {
        stop_all(rs);
        rc = 130;
    } else {
        rc = t->files_failed ? 1 : 0;
        rerun_save(rs->cfg, rs->runs, rs->n);
        /* a selection that keeps nothing is a mistake (a typo in CI), not a pass */
        if (!rc && selection_by_test(o) && t->tests_passed + t->tests_failed + t->tests_skipped == 0)
            rc = PV_EXIT_NONE_SELECTED;
    }
    record_timings(rs->cfg, rs->runs, rs->n, o);
    double total_s = now_s() - rs->t0;
    results_summary(o, t, rs->done - rs->deselected, rs->deselected, not_run, stop_signal != 0, total_s, rs->tap_n);
    if (rc == PV_EXIT_NONE_SELECTED) {
        char *sel = selection_text(o);
        fprintf(stderr, "provium: no tests selected: %s kept none of the %d tests in %zu files (exit status %d)\n",
                sel, t->tests_deselected, rs->n, PV_EXIT_NONE_SELECTED);
        free(sel);
    }
    if (o->junit_path)
        rc = write_junit(rs, total_s, rc);
    events_emit("run_completed",
                json_pack("{s:i,s:i,s:i,s:I}", "files_passed", t->files_passed, "files_failed", t->files_failed,
                          "exit_code", rc, "duration_ns", (json_int_t)(total_s * 1e9)),
                0);
    return rc;
}

static int run_nothing(const run_opts *o)
{
    results_no_files(o);
    if (o->junit_path && junit_write(o->junit_path, NULL, NULL, 0, 0) != 0)
        fprintf(stderr, "provium: --junit: cannot write %s: %s\n", o->junit_path, strerror(errno));
    events_close();
    return 0;
}

int runner_run(const pv_config *cfg, const file_list *files, const run_opts *o)
{
    if (o->events_path && events_open(o->events_path) != 0)
        return 2;
    if (files->n == 0)
        return run_nothing(o);
    run_state rs = {.cfg = cfg, .o = o, .n = files->n, .timeout_s = o->timeout_ms / 1000.0};
    if (pool_init(&rs.pool, cfg, o) != 0) {
        events_close();
        return 2;
    }
    install_handlers();
    char *scratch = scratch_create();
    if (!scratch)
        return 2;
    rs.scratch = scratch;
    announce_accel(cfg, o);
    rs.prog.on = isatty(STDOUT_FILENO) && !o->json && !o->tap && !getenv("PROVIUM_NO_PROGRESS");
    rs.runs = xcalloc(rs.n, sizeof(file_run));
    rs.pfd = xcalloc(1 + 2 * rs.n, sizeof(struct pollfd));
    for (size_t i = 0; i < rs.n; i++) {
        file_run *f = &rs.runs[i];
        f->path = files->paths[i];
        f->shown = shown_path(f->path);
        f->sel = o->sel;
        f->report_fd = f->ctl_fd = -1;
        sb_init(&f->report);
    }
    rs.t0 = now_s();
    emit_discovered(rs.runs, rs.n);
    prepass(cfg, rs.runs, rs.n, o, &rs.deselected, &rs.t.tests_deselected);
    rs.done = rs.deselected;
    pool_emit(&rs.pool);
    if (o->tap)
        tap_begin(stdout);
    run_loop(&rs);
    int rc = finish(&rs);
    events_close();
    for (size_t i = 0; i < rs.n; i++) {
        sb_free(&rs.runs[i].report);
        free(rs.runs[i].log_path);
        free(rs.runs[i].file_log);
        free(rs.runs[i].boot_name);
        json_decref(rs.runs[i].result);
    }
    free(rs.runs);
    free(rs.pfd);
    rm_rf(scratch);
    free(scratch);
    return rc;
}
