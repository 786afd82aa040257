/* The dispatcher: one child process (own process group) per test file, a
 * cap on concurrent files, a per-file deadline, and clean teardown on
 * Ctrl-C. Children report one JSON document on a pipe. */
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"
#include "../vmm/vm.h"

typedef enum { F_PENDING, F_RUNNING, F_DONE } file_phase;

typedef struct {
    const char *path;
    const char *shown; /* path relative to the working directory when possible */
    file_phase phase;
    pid_t pid;
    int report_fd;
    strbuf report;
    char *log_path;
    double started, elapsed;
    int wstatus;
    bool timed_out;
} file_run;

typedef struct {
    int files_passed, files_failed;
    int tests_passed, tests_failed, tests_skipped;
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
 * themselves; the next run removes those whose owner is gone. */
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
    return tmpl; /* mkdtemp creates it 0700 */
}

static void start_file(const pv_config *cfg, const char *scratch, file_run *f, int index)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        fprintf(stderr, "provium: pipe: %s\n", strerror(errno));
        exit(2);
    }
    f->log_path = xasprintf("%s/file-%d.log", scratch, index);
    pid_t parent = getpid();
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
        _exit(run_file_child(cfg, scratch, f->path, p[1]));
    }
    if (pid < 0) {
        fprintf(stderr, "provium: fork: %s\n", strerror(errno));
        exit(2);
    }
    setpgid(pid, pid);
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    f->pid = pid;
    f->report_fd = p[0];
    f->phase = F_RUNNING;
    f->started = now_s();
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

static void print_indented(FILE *out, const char *text, const char *indent)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(out, "%s%.*s\n", indent, (int)len, p);
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

/* Prints the outcome of one file and adds it to the totals. */
static void report_file(file_run *f, const run_opts *o, totals *t, double timeout_s)
{
    json_error_t je;
    json_t *r = f->report.len ? json_loadb(f->report.s, f->report.len, 0, &je) : NULL;
    int passed = 0, failed = 0, skipped = 0;
    /* an empty Lua table encodes as {}; the schema says tests is an array */
    if (r && !json_is_array(json_object_get(r, "tests")))
        json_object_set_new(r, "tests", json_array());
    json_t *tests = r ? json_object_get(r, "tests") : NULL;
    size_t i;
    json_t *tc;
    json_array_foreach(tests, i, tc)
    {
        const char *st = json_string_value(json_object_get(tc, "status"));
        if (st && strcmp(st, "passed") == 0)
            passed++;
        else if (st && strcmp(st, "skipped") == 0)
            skipped++;
        else
            failed++;
    }
    const char *chunk_error = r ? json_string_value(json_object_get(r, "chunk_error")) : NULL;
    const char *verdict;
    char *extra = NULL;
    if (f->timed_out) {
        verdict = "TIMEOUT";
        extra = xasprintf("timed out after %.0f s", timeout_s);
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
    if (ok)
        t->files_passed++;
    else
        t->files_failed++;
    t->tests_passed += passed;
    t->tests_failed += failed;
    t->tests_skipped += skipped;

    if (o->json) {
        json_t *line = r ? json_incref(r) : json_object();
        json_object_set_new(line, "path", json_string(f->shown));
        json_object_set_new(line, "timeout", json_boolean(f->timed_out));
        json_object_set_new(line, "passed", json_boolean(ok));
        if (!r)
            json_object_set_new(line, "tests", json_array());
        if (extra && !chunk_error)
            json_object_set_new(line, "chunk_error", json_string(extra));
        json_object_set_new(line, "duration", json_real(f->elapsed));
        char *s = json_dumps(line, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(line);
    } else if (!(o->quiet && ok)) {
        printf("%s %s (%d passed, %d failed, %d skipped) %.1fs\n", verdict, f->shown, passed, failed, skipped,
               f->elapsed);
        if (extra) {
            printf("    %s\n", extra);
            char *tail = log_tail(f, 20);
            if (*tail) {
                printf("    last output:\n");
                print_indented(stdout, tail, "    | ");
            }
            free(tail);
        }
        if (chunk_error)
            print_indented(stdout, chunk_error, "    ");
        json_array_foreach(tests, i, tc)
        {
            const char *st = json_string_value(json_object_get(tc, "status"));
            const char *name = json_string_value(json_object_get(tc, "name"));
            const char *msg = json_string_value(json_object_get(tc, "message"));
            bool is_fail = st && strcmp(st, "failed") == 0;
            if (is_fail || o->verbose) {
                printf("    %s %s\n", is_fail ? "FAIL" : st && strcmp(st, "skipped") == 0 ? "SKIP" : "ok  ",
                       name ? name : "?");
                if (msg && (is_fail || o->verbose))
                    print_indented(stdout, msg, "        ");
                const char *log = json_string_value(json_object_get(tc, "log"));
                if (o->verbose && log && *log)
                    print_indented(stdout, log, "        log: ");
                const char *console = json_string_value(json_object_get(tc, "console"));
                if (is_fail && o->verbose && console && *console)
                    print_indented(stdout, console, "        | ");
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

int runner_run(const pv_config *cfg, const file_list *files, const run_opts *o)
{
    if (files->n == 0) {
        printf("No test files found.\n");
        return 0;
    }
    install_handlers();
    char *scratch = make_scratch();
    if (!scratch)
        return 2;
    if (!vm_kvm_available())
        fprintf(stderr, "provium: /dev/kvm is not usable; VMs run under TCG software emulation (slower)\n");
    int jobs = o->jobs > 0 ? o->jobs : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (jobs < 1)
        jobs = 1;
    char cwd[4096];
    size_t cwdlen = getcwd(cwd, sizeof(cwd)) ? strlen(cwd) : 0;
    file_run *runs = xcalloc(files->n, sizeof(file_run));
    for (size_t i = 0; i < files->n; i++) {
        runs[i].path = files->paths[i];
        runs[i].shown = runs[i].path;
        if (cwdlen && strncmp(runs[i].path, cwd, cwdlen) == 0 && runs[i].path[cwdlen] == '/')
            runs[i].shown = runs[i].path + cwdlen + 1;
        runs[i].report_fd = -1;
        sb_init(&runs[i].report);
    }
    double t0 = now_s();
    totals t = {0};
    size_t next = 0, done = 0;
    int running = 0;
    double timeout_s = o->timeout_ms / 1000.0;
    while (done < files->n) {
        while (!stop_signal && running < jobs && next < files->n) {
            start_file(cfg, scratch, &runs[next], (int)next);
            next++;
            running++;
        }
        if (stop_signal)
            break;
        struct pollfd pfd[1 + 64];
        size_t n = 0;
        pfd[n++] = (struct pollfd){signal_pipe[0], POLLIN, 0};
        int wait_ms = 1000;
        for (size_t i = 0; i < files->n && n < 65; i++) {
            if (runs[i].phase != F_RUNNING)
                continue;
            pfd[n++] = (struct pollfd){runs[i].report_fd, POLLIN, 0};
            if (o->timeout_ms) {
                double left = runs[i].started + timeout_s - now_s();
                int ms = left < 0 ? 0 : (int)(left * 1000) + 1;
                if (ms < wait_ms)
                    wait_ms = ms;
            }
        }
        poll(pfd, n, wait_ms);
        char sink[64];
        while (read(signal_pipe[0], sink, sizeof(sink)) > 0) {
        }
        for (size_t i = 0; i < files->n; i++) {
            file_run *f = &runs[i];
            if (f->phase != F_RUNNING)
                continue;
            drain_report(f);
            if (o->timeout_ms && now_s() - f->started > timeout_s && !f->timed_out) {
                f->timed_out = true;
                kill_group(f, SIGKILL);
            }
            int st;
            if (waitpid(f->pid, &st, WNOHANG) == f->pid) {
                /* make sure nothing the file started survives it */
                kill(-f->pid, SIGKILL);
                drain_report(f);
                close(f->report_fd);
                f->wstatus = st;
                f->phase = F_DONE;
                f->elapsed = now_s() - f->started;
                running--;
                done++;
                if (f->timed_out) {
                    sb_free(&f->report);
                }
                report_file(f, o, &t, timeout_s);
            }
        }
    }
    int rc;
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
            f->phase = F_DONE;
        }
        fprintf(stderr, "\nprovium: interrupted by %s; %zu of %zu files finished\n", strsignal(stop_signal), done,
                files->n);
        rc = 130;
    } else {
        rc = t.files_failed ? 1 : 0;
    }
    if (!o->json)
        printf("\n%zu files: %d passed, %d failed; %d tests: %d passed, %d failed, %d skipped; %.1fs\n", done,
               t.files_passed, t.files_failed, t.tests_passed + t.tests_failed + t.tests_skipped, t.tests_passed,
               t.tests_failed, t.tests_skipped, now_s() - t0);
    for (size_t i = 0; i < files->n; i++) {
        sb_free(&runs[i].report);
        free(runs[i].log_path);
    }
    free(runs);
    rm_rf(scratch);
    free(scratch);
    return rc;
}
