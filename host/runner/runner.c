/* The dispatcher: a resource pool (memory and vCPUs) that files reserve
 * from, one child process (own process group) per test file, an optional
 * cap on concurrent files, CPU-pressure gating, a per-file deadline, and
 * clean teardown on Ctrl-C. Children report one JSON document on a pipe and
 * talk to the dispatcher over a control socket (claims, events). */
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"
#include "../vmm/accel.h"
#include "../vmm/vm.h"
#include "ci.h"
#include "output.h"

typedef enum { F_PENDING, F_RUNNING, F_DONE, F_SKIPPED } file_phase;

typedef struct {
    const char *path;
    const char *shown; /* path relative to the working directory when possible */
    const test_select *sel;
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
    pool_amount live;       /* what the file's booted VMs use (charged to its claim or the pool) */
    bool boot_pending;      /* a VM boot waits for room in the pool */
    pool_amount boot_vm;    /* that VM's size */
    pool_amount boot_held;  /* what the file holds once that boot is granted */
    char *boot_name;
    double boot_wait_started;
    json_t *result; /* the --json object, kept for JUnit and the rerun state */
    char *file_log; /* captured output of a crashed or timed-out file */
    char *current_test; /* the test running now (test_started event), NULL: none */
    char *waiting_for;  /* what the file has waited for over 2 s, NULL: nothing */
    bool failed;
} file_run;

typedef struct {
    int files_passed, files_failed;
    int tests_passed, tests_failed, tests_skipped;
    int tests_deselected; /* left out by --filter / --tag / --tag-meta: not run, not skipped */
} totals;

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

/* Scratch directories of runs that were SIGKILLed cannot clean up after
 * themselves; the next run removes those whose owner is gone. Only our own:
 * a directory (not a link) of this user, whose owner.pid is ours as well;
 * another user's pid may live in another pid namespace, and it is not ours
 * to remove in any case. */
static void remove_stale_scratch(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "provium-", 8) != 0 || strlen(e->d_name) != 14)
            continue;
        char *pidfile = xasprintf("%s/%s/owner.pid", tmp, e->d_name);
        char *here = xasprintf("%s/%s", tmp, e->d_name);
        struct stat ds, ps;
        bool mine = lstat(here, &ds) == 0 && S_ISDIR(ds.st_mode) && ds.st_uid == geteuid() &&
                    lstat(pidfile, &ps) == 0 && S_ISREG(ps.st_mode) && ps.st_uid == geteuid();
        free(here);
        if (!mine) {
            free(pidfile);
            continue;
        }
        size_t len;
        char *text = read_whole_file(pidfile, &len);
        int pid = text ? atoi(text) : 0;
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            char *dir = xasprintf("%s/%s", tmp, e->d_name);
            rm_rf(dir);
            free(dir);
        }
        free(text);
        free(pidfile);
    }
    closedir(d);
}

/* Guest RAM files live in /dev/shm until QEMU has mapped them; a process
 * killed in that window leaves /dev/shm/provium-PID-N.ram behind. Remove
 * ours whose process is gone (its pid may be reused: a live pid keeps it). */
static void remove_stale_ram_files(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = 0, n = 0, used = 0;
        if (sscanf(e->d_name, "provium-%d-%d.ram%n", &pid, &n, &used) != 2 || e->d_name[used] || pid <= 0)
            continue;
        char *path = xasprintf("/dev/shm/%s", e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && kill(pid, 0) != 0 &&
            errno == ESRCH)
            unlink(path);
        free(path);
    }
    closedir(d);
}

static char *make_scratch(void)
{
    const char *tmp = getenv("TMPDIR");
    /* unix socket paths are limited to 107 bytes; stay well short */
    if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
    char *tmpl = xasprintf("%s/provium-XXXXXX", tmp);
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "provium: cannot create a scratch directory in %s: %s\n", tmp, strerror(errno));
        free(tmpl);
        return NULL;
    }
    char *pidfile = xasprintf("%s/owner.pid", tmpl);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    write_whole_file(pidfile, pid, strlen(pid), 0600);
    free(pidfile);
    remove_stale_scratch(tmp);
    remove_stale_ram_files();
    return tmpl; /* mkdtemp creates it 0700 */
}

/* ---------------------------------------------------------------- the pool */

typedef struct {
    pool_amount total, used, deflt;
    int running, jobs;
    double psi_threshold; /* percent; <= 0 disables */
} pool_state;

static json_t *amount_json(pool_amount a)
{
    return json_pack("{s:I,s:f}", "memory_bytes", (json_int_t)a.mem, "cpus", a.cpus);
}

static bool fits(const pool_state *p, pool_amount a)
{
    return p->used.mem + a.mem <= p->total.mem && p->used.cpus + a.cpus <= p->total.cpus + 1e-9;
}

static void emit_pool(const pool_state *p)
{
    if (!events_enabled())
        return;
    pool_amount avail = {p->total.mem - p->used.mem, p->total.cpus - p->used.cpus};
    events_emit("pool_state",
                json_pack("{s:o,s:o,s:o,s:i}", "used", amount_json(p->used), "available", amount_json(avail), "total",
                          amount_json(p->total), "running", p->running),
                0);
}

static void take(pool_state *p, file_run *f, pool_amount a)
{
    p->used.mem += a.mem;
    p->used.cpus += a.cpus;
    f->held = a;
}

static void give_back(pool_state *p, file_run *f)
{
    p->used.mem -= f->held.mem;
    p->used.cpus -= f->held.cpus;
    if (p->used.cpus < 1e-9)
        p->used.cpus = 0;
    f->held = (pool_amount){0, 0};
}

static char *amount_text(pool_amount a)
{
    return xasprintf("%lld MiB, %g vCPUs", (long long)(a.mem >> 20), a.cpus);
}

static void ctl_reply(file_run *f, const char *msg);

static pool_amount amount_add(pool_amount a, pool_amount b) { return (pool_amount){a.mem + b.mem, a.cpus + b.cpus}; }

static pool_amount amount_max(pool_amount a, pool_amount b)
{
    return (pool_amount){a.mem > b.mem ? a.mem : b.mem, a.cpus > b.cpus ? a.cpus : b.cpus};
}

static bool amount_within(pool_amount a, pool_amount limit)
{
    return a.mem <= limit.mem && a.cpus <= limit.cpus + 1e-9;
}

/* Would the pool have room if f held `held` instead of what it holds now? */
static bool fits_instead(const pool_state *p, const file_run *f, pool_amount held)
{
    pool_amount used = {p->used.mem - f->held.mem + held.mem, p->used.cpus - f->held.cpus + held.cpus};
    return amount_within(used, p->total);
}

static void hold(pool_state *p, file_run *f, pool_amount held)
{
    give_back(p, f);
    take(p, f, held);
}

/* The claim a file would need for its VMs so far plus one more, as Lua. */
static char *claim_hint(pool_amount a)
{
    return xasprintf("provium:claim({memory = \"%lldM\", cpus = %g})", (long long)((a.mem + (1 << 20) - 1) >> 20),
                     ceil(a.cpus));
}

/* What a file without a claim holds for VMs that use `live`: at least its
 * default reservation. vCPUs are time-shared: a file whose VMs have more of
 * them than the whole pool takes all of it (it runs alone on the CPUs). */
static pool_amount unclaimed_hold(const pool_state *pool, pool_amount live)
{
    pool_amount held = amount_max(pool->deflt, live);
    if (held.cpus > pool->total.cpus)
        held.cpus = pool->total.cpus;
    return held;
}

/* A VM boot asks for room. A file with a claim boots within it or fails at
 * once; a file without one holds max(default reservation, its VMs) and
 * waits when the pool has no room for the difference. */
static void boot_request(file_run *f, pool_state *pool, const char *name, pool_amount vm)
{
    pool_amount after = amount_add(f->live, vm);
    char *msg = NULL;
    if (f->claimed) {
        if (amount_within(after, f->want)) {
            f->live = after;
            ctl_reply(f, "ok");
            return;
        }
        char *need = amount_text(vm), *in_use = amount_text(f->live), *claim = amount_text(f->want),
             *hint = claim_hint(after);
        msg = xasprintf("err vm '%s': cannot boot: it needs %s on top of the %s the file's VMs already use, "
                        "and the file's claim is %s; raise %s",
                        name, need, in_use, claim, hint);
        free(need);
        free(in_use);
        free(claim);
        free(hint);
    } else {
        pool_amount held = unclaimed_hold(pool, after);
        if (held.mem > pool->total.mem) {
            char *need = amount_text(held), *tot = amount_text(pool->total);
            msg = xasprintf("err vm '%s': cannot boot: the file's VMs would need %s, which exceeds pool total %s; "
                            "raise --mem or boot smaller VMs",
                            name, need, tot);
            free(need);
            free(tot);
        } else if (fits_instead(pool, f, held)) {
            hold(pool, f, held);
            f->live = after;
            ctl_reply(f, "ok");
            emit_pool(pool);
            return;
        } else {
            f->boot_pending = true;
            f->boot_vm = vm;
            f->boot_held = held;
            free(f->boot_name);
            f->boot_name = xstrdup(name);
            f->boot_wait_started = now_s();
            f->blocked_noted = false;
            return;
        }
    }
    ctl_reply(f, msg);
    free(msg);
}

/* A VM of the file is gone: an unclaimed file gives back what it no longer needs. */
static void boot_release(file_run *f, pool_state *pool, pool_amount vm)
{
    f->live.mem = f->live.mem > vm.mem ? f->live.mem - vm.mem : 0;
    f->live.cpus = f->live.cpus > vm.cpus + 1e-9 ? f->live.cpus - vm.cpus : 0;
    if (!f->claimed && !f->claim_pending) {
        hold(pool, f, unclaimed_hold(pool, f->live));
        emit_pool(pool);
    }
}

/* ---------------------------------------------------------------- children */

static void start_file(const pv_config *cfg, const char *scratch, file_run *f, int index)
{
    int p[2], c[2];
    if (pipe2(p, O_CLOEXEC) != 0 || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c) != 0) {
        fprintf(stderr, "provium: pipe: %s\n", strerror(errno));
        exit(2);
    }
    f->log_path = xasprintf("%s/file-%d.log", scratch, index);
    pid_t parent = getpid();
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        /* Die with the runner, whatever kills it; QEMU dies with us. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(2);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        close(p[0]);
        close(c[0]);
        int log = open(f->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (log >= 0) {
            dup2(log, 1);
            dup2(log, 2);
            close(log);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, 0);
            close(null);
        }
        _exit(run_file_child(cfg, scratch, f->path, p[1], c[1], CHILD_RUN, f->sel, f->shown));
    }
    if (pid < 0) {
        fprintf(stderr, "provium: fork: %s\n", strerror(errno));
        exit(2);
    }
    setpgid(pid, pid);
    close(p[1]);
    close(c[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    fcntl(c[0], F_SETFL, O_NONBLOCK);
    f->pid = pid;
    f->report_fd = p[0];
    f->ctl_fd = c[0];
    f->phase = F_RUNNING;
    f->started = f->deadline_base = now_s();
    f->started_wall = wall_ns();
}

static void drain_report(file_run *f)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(f->report_fd, buf, sizeof(buf));
        if (n > 0) {
            sb_add(&f->report, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return;
    }
}

static void ctl_reply(file_run *f, const char *msg) { (void)!send(f->ctl_fd, msg, strlen(msg), MSG_NOSIGNAL); }

/* Messages from a child: {"t":"claim",...} and {"t":"event",...}. */
static void drain_ctl(file_run *f, pool_state *pool)
{
    if (f->ctl_fd < 0)
        return;
    char buf[262144];
    for (;;) {
        ssize_t n = recv(f->ctl_fd, buf, sizeof(buf) - 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        json_error_t je;
        json_t *m = json_loadb(buf, (size_t)n, 0, &je);
        const char *t = json_string_value(json_object_get(m, "t"));
        if (t && strcmp(t, "wait") == 0) {
            const char *what = json_string_value(json_object_get(m, "what"));
            free(f->waiting_for);
            f->waiting_for = what ? xstrdup(what) : NULL;
        } else if (t && strcmp(t, "event") == 0) {
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
        } else if (t && (strcmp(t, "boot") == 0 || strcmp(t, "release") == 0)) {
            pool_amount vm = {json_integer_value(json_object_get(m, "memory")),
                              json_number_value(json_object_get(m, "cpus"))};
            if (strcmp(t, "boot") == 0) {
                const char *name = json_string_value(json_object_get(m, "vm"));
                boot_request(f, pool, name ? name : "?", vm);
            } else {
                boot_release(f, pool, vm);
            }
        } else if (t && strcmp(t, "claim") == 0) {
            pool_amount want = {json_integer_value(json_object_get(m, "memory")),
                                json_number_value(json_object_get(m, "cpus"))};
            if (want.mem > pool->total.mem || want.cpus > pool->total.cpus + 1e-9) {
                char *w = amount_text(want), *tot = amount_text(pool->total);
                char *msg = xasprintf("err provium:claim: the claim (%s) can never fit the pool (%s); "
                                      "raise --mem / --cpus / --cpu-overcommit or claim less",
                                      w, tot);
                ctl_reply(f, msg);
                events_emit("claim_refused",
                            json_pack("{s:s,s:o,s:o}", "path", f->shown, "amount", amount_json(want), "pool",
                                      amount_json(pool->total)),
                            0);
                free(msg);
                free(w);
                free(tot);
            } else if (f->claimed || f->claim_pending) {
                ctl_reply(f, "err provium:claim: claim already taken");
            } else {
                /* the claim replaces the default reservation */
                give_back(pool, f);
                f->want = want;
                f->claim_pending = true;
                f->blocked_noted = false;
                f->wait_started = now_s();
            }
        }
        json_decref(m);
    }
}

/* Writes guest-controlled text for a terminal: control characters (C0
 * except tab, DEL, and C1 as UTF-8) become visible \xNN escapes, so an
 * escape sequence from the guest cannot retitle, recolour or clear the
 * user's terminal. */
static void put_clean(FILE *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len; i++) {
        if ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7f)
            fprintf(out, "\\x%02X", p[i]);
        else if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
            fprintf(out, "\\u%04X", p[++i]);
        else
            fputc(p[i], out);
    }
}

static void print_indented(FILE *out, const char *text, const char *indent)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fputs(indent, out);
        /* a serial console ends its lines with \r\n: that \r is no escape */
        put_clean(out, p, len && p[len - 1] == '\r' ? len - 1 : len);
        fputc('\n', out);
        p += len + (nl ? 1 : 0);
    }
}

static char *log_tail(const file_run *f, int lines)
{
    size_t len = 0;
    char *text = read_whole_file(f->log_path, &len);
    char *tail = xstrdup(text ? tail_lines(text, len, lines) : "");
    free(text);
    return tail;
}

/* ---------------------------------------------------------------- progress */

static bool progress_on;
static bool progress_shown;

static void progress_clear(void)
{
    if (progress_shown) {
        fputs("\r\033[K", stdout);
        fflush(stdout);
        progress_shown = false;
    }
}

static void progress_draw(size_t running, size_t done, size_t total, int failed, double elapsed)
{
    if (!progress_on)
        return;
    printf("\r\033[K[provium] %zu running, %zu/%zu done, %d failed, %.0fs", running, done, total, failed, elapsed);
    fflush(stdout);
    progress_shown = true;
}

/* ---------------------------------------------------------------- results */

static void count_status(json_t *tc, int *passed, int *failed, int *skipped)
{
    const char *st = json_string_value(json_object_get(tc, "status"));
    if (st && strcmp(st, "passed") == 0)
        (*passed)++;
    else if (st && strcmp(st, "skipped") == 0)
        (*skipped)++;
    else
        (*failed)++;
}

/* The "log" string of a test or sub-test becomes a list of lines (upstream's shape). */
static void log_to_lines(json_t *tc)
{
    const char *log = json_string_value(json_object_get(tc, "log"));
    json_t *lines = json_array();
    if (log && *log) {
        const char *p = log;
        for (;;) {
            const char *nl = strchr(p, '\n');
            json_array_append_new(lines, nl ? json_stringn(p, (size_t)(nl - p)) : json_string(p));
            if (!nl)
                break;
            p = nl + 1;
        }
    }
    json_object_set_new(tc, "log", lines);
}

/* One test or sub-test in the text output: a failure always, the rest with -v. */
static void print_case(json_t *tc, const run_opts *o, const char *indent)
{
    const char *st = json_string_value(json_object_get(tc, "status"));
    const char *name = json_string_value(json_object_get(tc, "name"));
    const char *msg = json_string_value(json_object_get(tc, "message"));
    bool is_fail = st && strcmp(st, "failed") == 0;
    if (!is_fail && !o->verbose)
        return;
    printf("%s%s ", indent, is_fail ? "FAIL" : st && strcmp(st, "skipped") == 0 ? "SKIP" : "ok  ");
    print_indented(stdout, name ? name : "?", ""); /* escapes what the guest or the test put there */
    char deeper[32];
    snprintf(deeper, sizeof(deeper), "%s    ", indent);
    if (msg)
        print_indented(stdout, msg, deeper);
    json_t *log = json_object_get(tc, "log");
    size_t k;
    json_t *l;
    if (o->verbose)
        json_array_foreach(log, k, l)
        {
            const char *line = json_string_value(l) ? json_string_value(l) : "";
            char lead[48];
            snprintf(lead, sizeof(lead), "%slog: ", deeper);
            if (*line)
                print_indented(stdout, line, lead);
            else
                printf("%s\n", lead);
        }
    const char *console = json_string_value(json_object_get(tc, "console"));
    if (is_fail && o->verbose && console && *console) {
        char bar[40];
        snprintf(bar, sizeof(bar), "%s| ", deeper);
        print_indented(stdout, console, bar);
    }
}

/* Turns the child's report into the --json object (upstream shape plus a
 * few extras: duration, started, console) and prints the outcome. */
static void report_file(file_run *f, const run_opts *o, totals *t, double timeout_s, int *tap_n)
{
    json_error_t je;
    json_t *r = f->report.len ? json_loadb(f->report.s, f->report.len, 0, &je) : NULL;
    if (r && !json_is_object(r)) {
        json_decref(r);
        r = NULL;
    }
    int passed = 0, failed = 0, skipped = 0;
    /* an empty Lua table encodes as {}; the schema says tests is an array */
    if (r && !json_is_array(json_object_get(r, "tests")))
        json_object_set_new(r, "tests", json_array());
    json_t *tests = r ? json_object_get(r, "tests") : NULL;
    size_t i;
    json_t *tc;
    /* sub-tests (t:ktap, vm:kselftest) count like tests */
    json_array_foreach(tests, i, tc)
    {
        count_status(tc, &passed, &failed, &skipped);
        size_t k;
        json_t *sub;
        json_array_foreach(json_object_get(tc, "subtests"), k, sub)
        {
            count_status(sub, &passed, &failed, &skipped);
        }
    }
    const char *chunk_error = r ? json_string_value(json_object_get(r, "chunk_error")) : NULL;
    const char *verdict;
    char *extra = NULL;
    if (f->timed_out) {
        verdict = "TIMEOUT";
        /* which test, and what it was blocked on, if it was */
        char *in = f->current_test ? xasprintf(" in test '%s'", f->current_test) : xstrdup(" outside any test");
        char *on = f->waiting_for ? xasprintf(", waiting for %s", f->waiting_for) : xstrdup("");
        extra = xasprintf("timed out after %.0f s%s%s", timeout_s, in, on);
        free(in);
        free(on);
    } else if (!r) {
        verdict = "CRASH";
        if (WIFSIGNALED(f->wstatus))
            extra = xasprintf("the test process was killed by signal %d (%s)", WTERMSIG(f->wstatus),
                              strsignal(WTERMSIG(f->wstatus)));
        else
            extra = xasprintf("the test process exited with status %d without a report", WEXITSTATUS(f->wstatus));
    } else if (chunk_error) {
        verdict = "ERROR";
    } else {
        verdict = failed ? "FAIL" : "PASS";
    }
    bool ok = strcmp(verdict, "PASS") == 0;
    f->failed = !ok;
    if (ok)
        t->files_passed++;
    else
        t->files_failed++;
    t->tests_passed += passed;
    t->tests_failed += failed;
    t->tests_skipped += skipped;
    if (r)
        t->tests_deselected += (int)json_integer_value(json_object_get(r, "deselected"));

    json_t *line = r ? json_incref(r) : json_object();
    json_object_set_new(line, "path", json_string(f->shown));
    json_object_set_new(line, "timeout", json_string(f->timed_out ? "timed_out" : "in_time"));
    json_object_set_new(line, "passed", json_boolean(ok));
    if (!r)
        json_object_set_new(line, "tests", json_array());
    if (extra && !chunk_error)
        json_object_set_new(line, "chunk_error", json_string(extra));
    if (!json_object_get(line, "chunk_error"))
        json_object_set_new(line, "chunk_error", json_null());
    if (f->timed_out)
        json_object_set_new(line, "timed_out", json_true());
    if (!r)
        json_object_set_new(line, "crashed", json_true());
    json_object_set_new(line, "duration", json_real(f->elapsed));
    json_object_set_new(line, "started", json_integer(f->started_wall / 1000000000));
    json_t *lt = json_object_get(line, "tests");
    json_array_foreach(lt, i, tc)
    {
        if (!json_is_string(json_object_get(tc, "message")))
            json_object_set_new(tc, "message", json_null());
        /* upstream: log is a list of lines */
        log_to_lines(tc);
        json_t *subs = json_object_get(tc, "subtests");
        if (subs && !json_is_array(subs)) {
            json_object_del(tc, "subtests");
        } else {
            size_t k;
            json_t *sub;
            json_array_foreach(subs, k, sub)
            {
                log_to_lines(sub);
                if (!json_is_string(json_object_get(sub, "message")))
                    json_object_set_new(sub, "message", json_null());
            }
        }
    }
    if (extra)
        f->file_log = log_tail(f, 40);
    f->result = line;

    progress_clear();
    if (o->json) {
        char *s = json_dumps(line, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
    } else if (o->tap) {
        *tap_n = tap_file(stdout, line, *tap_n);
    } else if (!(o->quiet && ok)) {
        printf("%s %s (%d passed, %d failed, %d skipped) %.1fs\n", verdict, f->shown, passed, failed, skipped,
               f->elapsed);
        if (extra) {
            print_indented(stdout, extra, "    ");
            char *tail = log_tail(f, 20);
            if (*tail) {
                printf("    last output:\n");
                print_indented(stdout, tail, "    | ");
            }
            free(tail);
        }
        if (chunk_error)
            print_indented(stdout, chunk_error, "    ");
        /* a corrupt fixture cache entry was discarded and rebuilt: say so
         * here too, not only in --json */
        json_t *fx = r ? json_object_get(r, "fixtures") : NULL;
        size_t fi;
        json_t *fw;
        json_array_foreach(fx, fi, fw)
        {
            const char *w = json_string_value(json_object_get(fw, "warning"));
            if (w)
                print_indented(stdout, w, "    ");
        }
        json_array_foreach(tests, i, tc)
        {
            print_case(tc, o, "    ");
            size_t k;
            json_t *sub;
            json_array_foreach(json_object_get(tc, "subtests"), k, sub)
            {
                print_case(sub, o, "      ");
            }
        }
    }
    fflush(stdout);
    free(extra);
    json_decref(r);
}

static void kill_group(file_run *f, int sig)
{
    if (f->phase == F_RUNNING && f->pid > 0)
        kill(-f->pid, sig);
}

/* ---------------------------------------------------------------- selection */

static const char *shown_path(const char *path)
{
    static char cwd[4096];
    static size_t cwdlen = (size_t)-1;
    if (cwdlen == (size_t)-1)
        cwdlen = getcwd(cwd, sizeof(cwd)) ? strlen(cwd) : 0;
    if (cwdlen && strncmp(path, cwd, cwdlen) == 0 && path[cwdlen] == '/')
        return path + cwdlen + 1;
    return path;
}

char *rerun_state_path(const pv_config *cfg)
{
    const char *env = getenv("PROVIUM_RERUN_STATE");
    if (env && *env)
        return xstrdup(env);
    /* outside the fixture cache: `fixture clean` leaves it alone */
    return project_state_path(cfg, "rerun");
}

static json_t *rerun_load(const pv_config *cfg)
{
    char *p = rerun_state_path(cfg);
    json_error_t je;
    json_t *st = json_load_file(p, 0, &je);
    free(p);
    json_t *failed = json_object_get(st, "failed");
    if (!json_is_array(failed)) {
        json_decref(st);
        return NULL;
    }
    json_incref(failed);
    json_decref(st);
    return failed;
}

static bool in_array(json_t *a, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v)
    {
        if (json_string_value(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

int runner_select_files(const pv_config *cfg, file_list *files, const run_opts *o, const char **notice)
{
    *notice = NULL;
    json_t *failed = NULL;
    if (o->rerun_failed && !o->watch) {
        failed = rerun_load(cfg);
        if (!failed || json_array_size(failed) == 0) {
            *notice = failed ? "--rerun-failed: the previous runs left no failed files; nothing to re-run."
                             : "--rerun-failed: no prior failure state for this project; nothing to re-run.";
            json_decref(failed);
            for (size_t i = 0; i < files->n; i++)
                free(files->paths[i]);
            files->n = 0;
            return 0;
        }
    }
    struct stat ref;
    if (o->since && stat(o->since, &ref) != 0) {
        fprintf(stderr, "provium: --since %s: %s\n", o->since, strerror(errno));
        json_decref(failed);
        return 2;
    }
    size_t keep = 0;
    bool *in_shard = NULL;
    if (o->shard_n) {
        char err[PV_ERR_MAX];
        in_shard = xcalloc(files->n ? files->n : 1, sizeof(bool));
        if (shard_select(cfg, o->timings_path, files->paths, files->n, o->shard_k, o->shard_n, in_shard, err,
                         sizeof(err)) != 0) {
            fprintf(stderr, "provium: --shard %d/%d: %s\n", o->shard_k, o->shard_n, err);
            free(in_shard);
            json_decref(failed);
            return 2;
        }
    }
    for (size_t i = 0; i < files->n; i++) {
        char *p = files->paths[i];
        bool ok = true;
        if (failed && !in_array(failed, p))
            ok = false;
        struct stat st;
        if (ok && o->since && stat(p, &st) == 0 &&
            !(st.st_mtim.tv_sec > ref.st_mtim.tv_sec ||
              (st.st_mtim.tv_sec == ref.st_mtim.tv_sec && st.st_mtim.tv_nsec > ref.st_mtim.tv_nsec)))
            ok = false;
        if (ok && in_shard)
            ok = in_shard[i];
        if (ok)
            files->paths[keep++] = p;
        else
            free(p);
    }
    files->n = keep;
    free(in_shard);
    json_decref(failed);
    return 0;
}

/* The rerun state after a run: earlier failures of files that did not run
 * this time, plus this run's failures. A clean run of everything empties it. */
static void rerun_save(const pv_config *cfg, file_run *runs, size_t n)
{
    json_t *prev = rerun_load(cfg);
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(prev, i, v)
    {
        const char *p = json_string_value(v);
        bool ran = false;
        for (size_t k = 0; k < n && p && !ran; k++)
            ran = runs[k].phase == F_DONE && strcmp(runs[k].path, p) == 0;
        if (p && !ran)
            json_array_append(out, v);
    }
    for (size_t k = 0; k < n; k++)
        if (runs[k].phase == F_DONE && runs[k].failed)
            json_array_append_new(out, json_string(runs[k].path));
    json_decref(prev);
    char *path = rerun_state_path(cfg);
    char *dir = path_dirname(path);
    mkdir_p(dir, 0755);
    json_t *doc = json_pack("{s:s,s:o}", "project", cfg->dir ? cfg->dir : "/", "failed", out);
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    if (json_dump_file(doc, tmp, JSON_INDENT(1)) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "provium: cannot write the rerun state %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    json_decref(doc);
    free(dir);
    free(path);
}

/* Lists one file in a throw-away child (VMs are inert there). */
int list_file(const pv_config *cfg, const char *path, const char *shown, const test_select *sel, char **json)
{
    *json = NULL;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(p[0]);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        _exit(run_file_child(cfg, "/tmp", path, p[1], -1, CHILD_LIST, sel, shown));
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return -1;
    }
    strbuf b;
    sb_init(&b);
    int64_t deadline = now_ms() + 20000;
    for (;;) {
        struct pollfd pfd = {p[0], POLLIN, 0};
        int left = (int)(deadline - now_ms());
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&pfd, 1, left) < 0 && errno != EINTR)
            break;
        char buf[65536];
        ssize_t n = read(p[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        sb_add(&b, buf, (size_t)n);
    }
    close(p[0]);
    waitpid(pid, NULL, 0);
    if (!b.len) {
        sb_free(&b);
        return -1;
    }
    *json = sb_take(&b);
    return 0;
}

/* --filter / --tag / --tag-meta: which files have any test the selection
 * keeps. Files whose path matches --filter run whole. */
static bool needs_prepass(const run_opts *o)
{
    const test_select *s = &o->sel;
    return o->filter || s->ntags || s->nno_tags || s->ntag_meta || s->nno_tag_meta;
}

static test_select no_name_filter;

/* The selection options as given, e.g. "--filter alpha --tag smoke". */
static const char *selection_text(const run_opts *o)
{
    static char buf[1024];
    strbuf b;
    sb_init(&b);
    const test_select *s = &o->sel;
    if (o->filter)
        sb_addf(&b, " --filter %s", o->filter);
    for (size_t i = 0; i < s->ntags; i++)
        sb_addf(&b, " --tag %s", s->tags[i]);
    for (size_t i = 0; i < s->nno_tags; i++)
        sb_addf(&b, " --no-tag %s", s->no_tags[i]);
    for (size_t i = 0; i < s->ntag_meta; i++)
        sb_addf(&b, " --tag-meta %s", s->tag_meta[i]);
    for (size_t i = 0; i < s->nno_tag_meta; i++)
        sb_addf(&b, " --no-tag-meta %s", s->no_tag_meta[i]);
    snprintf(buf, sizeof(buf), "%s", b.s ? b.s + 1 : "the selection");
    sb_free(&b);
    return buf;
}

static void prepass(const pv_config *cfg, file_run *runs, size_t n, const run_opts *o, size_t *deselected,
                    int *tests_deselected)
{
    no_name_filter = o->sel;
    no_name_filter.filter = NULL;
    for (size_t i = 0; i < n; i++) {
        file_run *f = &runs[i];
        f->sel = &o->sel;
        if (o->filter && strstr(f->shown, o->filter))
            f->sel = &no_name_filter;
        if (!needs_prepass(o) || (f->sel == &no_name_filter && !o->sel.ntags && !o->sel.nno_tags &&
                                  !o->sel.ntag_meta && !o->sel.nno_tag_meta))
            continue;
        char *js = NULL;
        if (list_file(cfg, f->path, f->shown, f->sel, &js) != 0)
            continue; /* cannot tell: run it */
        json_error_t je;
        json_t *r = json_loads(js, 0, &je);
        free(js);
        bool any = false;
        size_t k;
        json_t *tc;
        json_array_foreach(json_object_get(r, "tests"), k, tc)
        {
            any = any || json_is_true(json_object_get(tc, "selected"));
        }
        bool broken = json_is_string(json_object_get(r, "chunk_error"));
        if (!any && !broken) {
            f->phase = F_SKIPPED;
            (*deselected)++;
            *tests_deselected += (int)json_array_size(json_object_get(r, "tests"));
            events_emit("file_deselected", json_pack("{s:s}", "path", f->shown), 0);
        }
        json_decref(r);
    }
}

/* ---------------------------------------------------------------- the run */

static void note_blocked(file_run *f, pool_amount want, const char *reason)
{
    if (f->blocked_noted)
        return;
    f->blocked_noted = true;
    events_emit("file_blocked",
                json_pack("{s:s,s:o,s:s}", "path", f->shown, "waiting_for", amount_json(want), "reason", reason), 0);
}

static bool psi_high(const pool_state *p)
{
    if (p->psi_threshold <= 0)
        return false;
    double v = psi_cpu_some_avg10();
    return v >= 0 && v >= p->psi_threshold;
}

/* Grants waiting VM boots that now fit, oldest first. */
static bool grant_boots(file_run *runs, size_t n, pool_state *pool)
{
    bool changed = false;
    for (;;) {
        file_run *oldest = NULL;
        for (size_t i = 0; i < n; i++) {
            file_run *f = &runs[i];
            if (f->phase == F_RUNNING && f->boot_pending && fits_instead(pool, f, f->boot_held) &&
                (!oldest || f->boot_wait_started < oldest->boot_wait_started))
                oldest = f;
        }
        if (!oldest)
            break;
        hold(pool, oldest, oldest->boot_held);
        oldest->live = amount_add(oldest->live, oldest->boot_vm);
        oldest->boot_pending = false;
        /* waiting for the pool does not count against the file's timeout */
        oldest->deadline_base += now_s() - oldest->boot_wait_started;
        ctl_reply(oldest, "ok");
        changed = true;
    }
    for (size_t i = 0; i < n; i++)
        if (runs[i].phase == F_RUNNING && runs[i].boot_pending)
            note_blocked(&runs[i], amount_add(runs[i].live, runs[i].boot_vm), "pool_full");
    return changed;
}

/* Hold and wait: when every running file waits for the pool and at least
 * one of them holds booted VMs while it waits, nothing will ever be given
 * back. The newest waiting boot fails, so its file can end and release. */
static void break_deadlock(file_run *runs, size_t n, pool_state *pool)
{
    file_run *victim = NULL;
    size_t running = 0;
    for (size_t i = 0; i < n; i++) {
        file_run *f = &runs[i];
        if (f->phase != F_RUNNING)
            continue;
        running++;
        if (!f->boot_pending && !f->claim_pending)
            return; /* this one can still give something back */
        if (f->boot_pending && (!victim || f->boot_wait_started >= victim->boot_wait_started))
            victim = f;
    }
    if (!victim)
        return;
    pool_amount peak = amount_add(victim->live, victim->boot_vm);
    char *held = amount_text(victim->held), *vm = amount_text(victim->boot_vm), *tot = amount_text(pool->total),
         *hint = claim_hint(peak);
    char *msg = xasprintf("err vm '%s': cannot boot: the pool is deadlocked: all %zu running files hold resources "
                          "and wait for more (this file holds %s and its next VM needs %s; pool total %s); "
                          "reserve the file's peak before its first boot with %s",
                          victim->boot_name, running, held, vm, tot, hint);
    victim->boot_pending = false;
    victim->deadline_base += now_s() - victim->boot_wait_started;
    ctl_reply(victim, msg);
    events_emit("boot_refused",
                json_pack("{s:s,s:s,s:o,s:s}", "path", victim->shown, "vm_name", victim->boot_name, "waiting_for",
                          amount_json(victim->boot_vm), "reason", "deadlock"),
                0);
    free(msg);
    free(held);
    free(vm);
    free(tot);
    free(hint);
}

/* Grants waiting claims (in dispatch order), then starts new files, as the
 * pool, -j and CPU pressure allow. FIFO: the first file that cannot go
 * blocks the ones behind it. */
static void schedule(const pv_config *cfg, const char *scratch, file_run *runs, size_t n, size_t *next,
                     pool_state *pool, bool stop_dispatch)
{
    bool changed = grant_boots(runs, n, pool);
    bool waiting = false;
    for (size_t i = 0; i < n; i++) {
        file_run *f = &runs[i];
        if (f->phase != F_RUNNING)
            continue;
        waiting = waiting || f->boot_pending;
        if (!f->claim_pending)
            continue;
        if (!fits(pool, f->want)) {
            note_blocked(f, f->want, "pool_full");
            break_deadlock(runs, n, pool);
            if (changed)
                emit_pool(pool);
            return;
        }
        take(pool, f, f->want);
        f->claim_pending = false;
        f->claimed = true;
        /* waiting for the pool does not count against the file's timeout */
        f->deadline_base += now_s() - f->wait_started;
        events_emit("claim_acquired", json_pack("{s:s,s:o}", "path", f->shown, "amount", amount_json(f->want)), 0);
        ctl_reply(f, "ok");
        changed = true;
    }
    if (waiting) {
        break_deadlock(runs, n, pool);
        stop_dispatch = true; /* FIFO: a waiting boot goes before new files */
    }
    while (!stop_dispatch && *next < n) {
        file_run *f = &runs[*next];
        if (f->phase == F_SKIPPED) {
            (*next)++;
            continue;
        }
        if (pool->jobs && pool->running >= pool->jobs) {
            note_blocked(f, pool->deflt, "jobs_limit");
            break;
        }
        if (!fits(pool, pool->deflt)) {
            note_blocked(f, pool->deflt, "pool_full");
            break;
        }
        if (pool->running > 0 && psi_high(pool)) {
            note_blocked(f, pool->deflt, "psi_pressure");
            break;
        }
        take(pool, f, pool->deflt);
        start_file(cfg, scratch, f, (int)*next);
        pool->running++;
        (*next)++;
        events_emit("file_dispatched",
                    json_pack("{s:s,s:o,s:i}", "path", f->shown, "reservation", amount_json(f->held), "pid", f->pid),
                    0);
        changed = true;
    }
    if (changed)
        emit_pool(pool);
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

/* Durations of the files that ran whole (no per-test selection) go into
 * the timings file that --shard balances by. */
static void record_timings(const pv_config *cfg, const file_run *runs, size_t n, const run_opts *o)
{
    char **keys = xcalloc(n, sizeof(char *));
    double *secs = xcalloc(n, sizeof(double));
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const test_select *s = runs[i].sel;
        bool whole = !s->filter && !s->ntags && !s->nno_tags && !s->ntag_meta && !s->nno_tag_meta;
        if (runs[i].phase == F_DONE && whole) {
            keys[m] = timings_key(cfg, runs[i].path);
            secs[m++] = runs[i].elapsed;
        }
    }
    char *path = timings_path(cfg, o->timings_path), err[PV_ERR_MAX];
    if (timings_record(path, keys, secs, m, o->shard_n > 0, err, sizeof(err)) != 0)
        fprintf(stderr, "provium: %s\n", err);
    for (size_t i = 0; i < m; i++)
        free(keys[i]);
    free(keys);
    free(secs);
    free(path);
}

int runner_run(const pv_config *cfg, const file_list *files, const run_opts *o)
{
    if (o->events_path && events_open(o->events_path) != 0)
        return 2;
    if (files->n == 0) {
        if (o->tap) {
            tap_begin(stdout);
            tap_end(stdout, 0);
        } else if (o->json) {
            json_t *nf = json_pack("{s:{s:s,s:s}}", "no_files", "pattern", "*.test.lua", "searched",
                                   o->searched ? o->searched : ".");
            char *line = json_dumps(nf, JSON_COMPACT);
            printf("%s\n", line);
            free(line);
            json_decref(nf);
        } else if (!o->explained_empty) {
            printf("no *.test.lua files found (searched: %s)\n", o->searched ? o->searched : ".");
        }
        if (o->junit_path && junit_write(o->junit_path, NULL, NULL, 0, 0) != 0)
            fprintf(stderr, "provium: --junit: cannot write %s: %s\n", o->junit_path, strerror(errno));
        events_close();
        return 0;
    }
    /* the pool */
    pool_state pool = {0};
    pool.total.mem = o->pool_mem ? o->pool_mem : (int64_t)(host_memory_bytes() * 0.8);
    double over = o->overcommit > 0 ? o->overcommit : 1.0;
    over = over < 0.5 ? 0.5 : over > 8 ? 8 : over;
    pool.total.cpus = (o->pool_cpus > 0 ? o->pool_cpus : host_cpu_count()) * over;
    const pv_profile *dp = config_profile(cfg, "default");
    pool.deflt.mem = dp && dp->memory ? dp->memory : PV_DEFAULT_MEMORY;
    pool.deflt.cpus = dp && dp->cpus ? dp->cpus : 1;
    pool.jobs = o->jobs;
    const char *psi = getenv("PROVIUM_PSI_THRESHOLD");
    pool.psi_threshold = psi && *psi ? (strcmp(psi, "off") == 0 ? 0 : atof(psi)) : 90;
    if (!fits(&pool, pool.deflt)) {
        char *a = amount_text(pool.total), *b = amount_text(pool.deflt);
        fprintf(stderr, "provium: the pool (%s) cannot hold one default VM (%s); raise --mem / --cpus\n", a, b);
        free(a);
        free(b);
        events_close();
        return 2;
    }

    install_handlers();
    char *scratch = make_scratch();
    if (!scratch)
        return 2;
    announce_accel(cfg, o);
    progress_on = isatty(STDOUT_FILENO) && !o->json && !o->tap && !getenv("PROVIUM_NO_PROGRESS");
    file_run *runs = xcalloc(files->n, sizeof(file_run));
    for (size_t i = 0; i < files->n; i++) {
        runs[i].path = files->paths[i];
        runs[i].shown = shown_path(runs[i].path);
        runs[i].sel = &o->sel;
        runs[i].report_fd = runs[i].ctl_fd = -1;
        sb_init(&runs[i].report);
    }
    double t0 = now_s();
    for (size_t i = 0; i < files->n && events_enabled(); i++) {
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
    size_t deselected = 0;
    totals t = {0};
    prepass(cfg, runs, files->n, o, &deselected, &t.tests_deselected);
    emit_pool(&pool);
    if (o->tap)
        tap_begin(stdout);
    int tap_n = 0;
    size_t next = 0, done = deselected;
    double timeout_s = o->timeout_ms / 1000.0;
    bool fail_stop = false;
    double last_pool_event = now_s();
    while (done < files->n) {
        if (!stop_signal)
            schedule(cfg, scratch, runs, files->n, &next, &pool, fail_stop);
        if (stop_signal)
            break;
        if (pool.running == 0 && (fail_stop || next >= files->n)) {
            /* fail-fast left the rest undispatched */
            break;
        }
        struct pollfd pfd[1 + 2 * 256];
        size_t np = 0;
        pfd[np++] = (struct pollfd){signal_pipe[0], POLLIN, 0};
        int wait_ms = 1000;
        bool blocked = false;
        for (size_t i = 0; i < files->n && np < 1 + 2 * 256; i++) {
            if (runs[i].phase != F_RUNNING)
                continue;
            pfd[np++] = (struct pollfd){runs[i].report_fd, POLLIN, 0};
            pfd[np++] = (struct pollfd){runs[i].ctl_fd, POLLIN, 0};
            blocked = blocked || runs[i].claim_pending;
            if (o->timeout_ms && !runs[i].claim_pending && !runs[i].boot_pending) {
                double left = runs[i].deadline_base + timeout_s - now_s();
                int ms = left < 0 ? 0 : (int)(left * 1000) + 1;
                if (ms < wait_ms)
                    wait_ms = ms;
            }
        }
        if (next < files->n && !fail_stop && wait_ms > 250)
            wait_ms = 250; /* re-check pressure and room */
        if (progress_on && wait_ms > 250)
            wait_ms = 250;
        (void)blocked;
        poll(pfd, np, wait_ms);
        char sink[64];
        while (read(signal_pipe[0], sink, sizeof(sink)) > 0) {
        }
        for (size_t i = 0; i < files->n; i++) {
            file_run *f = &runs[i];
            if (f->phase != F_RUNNING)
                continue;
            drain_ctl(f, &pool);
            drain_report(f);
            if (o->timeout_ms && !f->claim_pending && !f->boot_pending && now_s() - f->deadline_base > timeout_s &&
                !f->timed_out) {
                f->timed_out = true;
                kill_group(f, SIGKILL);
            }
            int st;
            if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
                /* make sure nothing the file started survives it */
                kill(-f->pid, SIGKILL);
                drain_ctl(f, &pool);
                drain_report(f);
                close(f->report_fd);
                close(f->ctl_fd);
                f->ctl_fd = -1;
                f->wstatus = st;
                f->phase = F_DONE;
                f->elapsed = now_s() - f->started;
                pool.running--;
                done++;
                if (f->timed_out)
                    sb_free(&f->report);
                report_file(f, o, &t, timeout_s, &tap_n);
                free(f->current_test);
                free(f->waiting_for);
                f->current_test = f->waiting_for = NULL;
                const char *status = f->timed_out ? "timed_out" : !f->report.len ? "crashed" : f->failed ? "failed" : "passed";
                events_emit("file_completed",
                            json_pack("{s:s,s:s,s:I}", "path", f->shown, "status", status, "duration_ns",
                                      (json_int_t)(f->elapsed * 1e9)),
                            0);
                if (f->claimed)
                    events_emit("claim_released",
                                json_pack("{s:s,s:o}", "path", f->shown, "amount", amount_json(f->want)), 0);
                give_back(&pool, f);
                f->claim_pending = f->boot_pending = false;
                f->live = (pool_amount){0, 0};
                emit_pool(&pool);
                if (f->failed && o->fail_fast)
                    fail_stop = true;
            }
        }
        if (now_s() - last_pool_event >= 1.0) {
            emit_pool(&pool);
            last_pool_event = now_s();
        }
        progress_draw((size_t)pool.running, done, files->n, t.files_failed, now_s() - t0);
    }
    progress_clear();
    int rc;
    size_t not_run = 0;
    for (size_t i = 0; i < files->n; i++)
        not_run += runs[i].phase == F_PENDING;
    if (stop_signal) {
        for (size_t i = 0; i < files->n; i++)
            kill_group(&runs[i], SIGTERM);
        int64_t deadline = now_ms() + 3000;
        for (size_t i = 0; i < files->n; i++) {
            file_run *f = &runs[i];
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
                done - deselected, files->n - deselected);
        rc = 130;
    } else {
        rc = t.files_failed ? 1 : 0;
        rerun_save(cfg, runs, files->n);
        /* a selection that keeps nothing is a mistake (a typo in CI), not a pass */
        if (!rc && needs_prepass(o) && t.tests_passed + t.tests_failed + t.tests_skipped == 0)
            rc = PV_EXIT_NONE_SELECTED;
    }
    record_timings(cfg, runs, files->n, o);
    double total_s = now_s() - t0;
    char summary[512];
    snprintf(summary, sizeof(summary), "%zu files: %d passed, %d failed; %d tests: %d passed, %d failed, %d skipped; %.1fs",
             done - deselected, t.files_passed, t.files_failed, t.tests_passed + t.tests_failed + t.tests_skipped,
             t.tests_passed, t.tests_failed, t.tests_skipped, total_s);
    if (o->tap) {
        tap_end(stdout, tap_n);
        printf("# %s\n", summary);
    } else if (!o->json) {
        printf("\n%s\n", summary);
        if (deselected)
            printf("%zu files deselected (no test matches the selection)\n", deselected);
        if (t.tests_deselected)
            printf("%d tests deselected (not run, not counted)\n", t.tests_deselected);
        if (not_run && !stop_signal)
            printf("%zu files not run (--fail-fast)\n", not_run);
    }
    fflush(stdout);
    if (rc == PV_EXIT_NONE_SELECTED)
        fprintf(stderr, "provium: no tests selected: %s kept none of the %d tests in %zu files (exit status %d)\n",
                selection_text(o), t.tests_deselected, files->n, PV_EXIT_NONE_SELECTED);
    if (o->junit_path) {
        json_t **results = xcalloc(files->n, sizeof(json_t *));
        const char **logs = xcalloc(files->n, sizeof(char *));
        for (size_t i = 0; i < files->n; i++) {
            results[i] = runs[i].result;
            logs[i] = runs[i].file_log;
        }
        if (junit_write(o->junit_path, results, logs, files->n, total_s) != 0) {
            fprintf(stderr, "provium: --junit: cannot write %s: %s\n", o->junit_path, strerror(errno));
            if (rc == 0)
                rc = 2;
        }
        free(results);
        free(logs);
    }
    events_emit("run_completed",
                json_pack("{s:i,s:i,s:i,s:I}", "files_passed", t.files_passed, "files_failed", t.files_failed,
                          "exit_code", rc, "duration_ns", (json_int_t)(total_s * 1e9)),
                0);
    events_close();
    for (size_t i = 0; i < files->n; i++) {
        sb_free(&runs[i].report);
        free(runs[i].log_path);
        free(runs[i].file_log);
        free(runs[i].boot_name);
        json_decref(runs[i].result);
    }
    free(runs);
    rm_rf(scratch);
    free(scratch);
    return rc;
}
