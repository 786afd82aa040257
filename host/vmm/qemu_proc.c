/* The QEMU process of a VM (and, for a local profile, the agent process
 * that stands in for it): starting it with the argv of qemu_argv.c,
 * connecting to its sockets, and telling how it ended when it dies. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"
#include "embedded.h"
#include "vm_internal.h"

/* In the child, before QEMU: copy the saved guest RAM into the VM's fresh
 * RAM file, off the critical path of the process that drives the VM. */
typedef struct {
    const char *from;
    int to;
} ram_fill;

static int fill_ram(void *arg)
{
    const ram_fill *f = arg;
    char why[1024];
    if (ram_copy_into(f->from, f->to, why, sizeof(why)) == 0)
        return 0;
    dprintf(2, "%s\n", why); /* qemu.stderr: the spare is dead and says why */
    return -1;
}

static pid_t spawn_qemu(pv_vm *vm, char **argv, const char *fill_from, char *err, size_t errlen)
{
    char *errpath = xasprintf("%s/qemu.stderr", vm->dir);
    int errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    free(errpath);
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* QEMU must never outlive the process that drives it. */
    ram_fill fill = {fill_from, vm->ram_fd};
    pid_t pid = spawn_tied_after(argv, nullfd, nullfd, errfd >= 0 ? errfd : nullfd, fill_from ? fill_ram : NULL, &fill);
    if (errfd >= 0)
        close(errfd);
    if (nullfd >= 0)
        close(nullfd);
    if (pid < 0)
        snprintf(err, errlen, "VM '%s': fork: %s", vm->name, strerror(errno));
    return pid;
}

/* Has QEMU exited? Reaps it and records why. */
bool qemu_exited(pv_vm *vm, int *status)
{
    if (vm->qemu_pid <= 0)
        return true;
    int st = 0;
    pid_t r = waitpid(vm->qemu_pid, &st, WNOHANG);
    if (r == vm->qemu_pid) {
        vm->qemu_pid = -1;
        if (status)
            *status = st;
        return true;
    }
    return false;
}

char *describe_exit(int st)
{
    if (WIFEXITED(st))
        return xasprintf("exit status %d", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return xasprintf("killed by signal %d", WTERMSIG(st));
    return xstrdup("unknown status");
}

/* After a socket error: waits up to 0.5 s for QEMU to be reaped and, if it
 * was, writes how it ended ("killed by signal 9") into how. */
bool qemu_death(pv_vm *vm, char *how, size_t howlen)
{
    if (vm->qemu_pid <= 0)
        return false;
    int st = 0;
    for (int i = 0; i < 50; i++) {
        if (qemu_exited(vm, &st)) {
            char *d = describe_exit(st);
            snprintf(how, howlen, "%s", d);
            free(d);
            return true;
        }
        sleep_ms(10);
    }
    return false;
}

char *qemu_stderr_tail(const pv_vm *vm)
{
    char *path = xasprintf("%s/qemu.stderr", vm->dir);
    size_t len = 0;
    char *text = read_whole_file(path, &len);
    free(path);
    char *out = xstrdup(text ? tail_lines(text, len, 5) : "");
    free(text);
    size_t l = strlen(out);
    while (l && out[l - 1] == '\n')
        out[--l] = 0;
    return out;
}

int connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* QEMU creates its listening sockets while it initialises: retry until they
 * accept, QEMU dies, or the deadline passes. */
int connect_when_ready(pv_vm *vm, const char *what, int64_t deadline, char *err, size_t errlen)
{
    char *path = xasprintf("%s/%s", vm->dir, what);
    int fd;
    int delay = 1;
    while ((fd = connect_unix(path)) < 0) {
        int st = 0;
        if (qemu_exited(vm, &st)) {
            char *why = describe_exit(st), *qerr = qemu_stderr_tail(vm);
            snprintf(err, errlen, "VM '%s': QEMU failed to start (%s): %s", vm->name, why,
                     *qerr ? qerr : "no message");
            free(why);
            free(qerr);
            break;
        }
        if (now_ms() > deadline) {
            snprintf(err, errlen, "VM '%s': QEMU did not open %s within %d s", vm->name, what,
                     QMP_TIMEOUT_MS / 1000);
            break;
        }
        sleep_ms(delay);
        if (delay < 20)
            delay *= 2;
    }
    free(path);
    return fd;
}

/* QEMU can accept the QMP connection and then die of a bad argument: the
 * socket error alone ("connection closed") says nothing. Give QEMU a moment
 * to exit, and if it did, report its exit and its own stderr instead. */
static void quote_qemu_death(pv_vm *vm, char *err, size_t errlen)
{
    int st = 0;
    for (int waited = 0; waited < 2000; waited += 10) {
        if (vm->qemu_pid > 0 && qemu_exited(vm, &st)) {
            char *why = describe_exit(st), *qerr = qemu_stderr_tail(vm);
            snprintf(err, errlen, "VM '%s': QEMU failed to start (%s): %s", vm->name, why,
                     *qerr ? qerr : "no message");
            free(why);
            free(qerr);
            return;
        }
        sleep_ms(10);
    }
}

int vm_launch_start(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline,
                    const char *ram_file, const char *fill_ram_from, bool incoming, char *err, size_t errlen)
{
    /* QEMU starts the console log afresh, or after the boot log the boot
     * cache wrote (already looked at when that boot ran) */
    struct stat cst;
    vm->console_scanned = vm->console_append && stat(vm->console_path, &cst) == 0 ? (int64_t)cst.st_size : 0;
    vm->oops_seen_ms = 0;
    char **argv = vm_qemu_argv(vm, opts, initrd, cmdline, ram_file, incoming, err, errlen);
    if (!argv)
        return -1;
    if (fill_ram_from) {
        /* a spare: paused once its state is loaded, until it is handed over */
        size_t n = 0;
        while (argv[n])
            n++;
        argv = xrealloc(argv, (n + 2) * sizeof(char *));
        argv[n] = xstrdup("-S");
        argv[n + 1] = NULL;
    }
    vm->qemu_pid = spawn_qemu(vm, argv, fill_ram_from, err, errlen);
    vm_argv_free(argv);
    if (vm->qemu_pid < 0)
        return -1;
    vm->pidfd = (int)syscall(SYS_pidfd_open, vm->qemu_pid, 0);
    return 0;
}

int vm_launch_connect(pv_vm *vm, bool incoming, bool ram_file, char *err, size_t errlen)
{
    int fd = connect_when_ready(vm, "qmp.sock", now_ms() + QMP_TIMEOUT_MS, err, errlen);
    return fd < 0 ? -1 : vm_launch_connected(vm, fd, incoming, ram_file, err, errlen);
}

int vm_launch_connected(pv_vm *vm, int fd, bool incoming, bool ram_file, char *err, size_t errlen)
{
    int64_t qmp_deadline = now_ms() + QMP_TIMEOUT_MS;
    if (qmp_open(&vm->qmp, fd, qmp_deadline, err, errlen) != 0) {
        quote_qemu_death(vm, err, errlen);
        return -1;
    }
    /* QEMU has mapped guest RAM by now: nothing else needs the name */
    if (vm->ram_shared)
        unlink(vm->ram_path);
    json_t *ver = NULL;
    if (!vm->qemu_version && vm_qmp(vm, "query-version", NULL, &ver, err, errlen) == 0) {
        json_t *q = json_object_get(json_object_get(ver, "qemu"), "major");
        json_t *mi = json_object_get(json_object_get(ver, "qemu"), "minor");
        json_t *mc = json_object_get(json_object_get(ver, "qemu"), "micro");
        const char *pkg = json_string_value(json_object_get(ver, "package"));
        vm->qemu_version = xasprintf("%lld.%lld.%lld%s", (long long)json_integer_value(q),
                                     (long long)json_integer_value(mi), (long long)json_integer_value(mc),
                                     pkg ? pkg : "");
        json_decref(ver);
    }
    /* a restore from a RAM file must not expect RAM in the stream */
    if (incoming && ram_file && vm_set_ignore_shared(vm, true, err, errlen) != 0) {
        quote_qemu_death(vm, err, errlen);
        return -1;
    }
    vm->agent_fd = connect_when_ready(vm, "agent.sock", qmp_deadline, err, errlen);
    if (vm->agent_fd < 0)
        return -1;
    return 0;
}

int vm_launch(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline, const char *ram_file,
              bool incoming, char *err, size_t errlen)
{
    if (vm_launch_start(vm, opts, initrd, cmdline, ram_file, NULL, incoming, err, errlen) != 0)
        return -1;
    return vm_launch_connect(vm, incoming, ram_file != NULL, err, errlen);
}

/* A local profile: the agent binary runs on the host over a socketpair, in
 * the VM's scratch directory. Same protocol, no kernel: for fast op tests. */
int vm_launch_local(pv_vm *vm, char *err, size_t errlen)
{
    if (mkdir_p(vm->dir, 0700) != 0) {
        snprintf(err, errlen, "VM '%s': cannot create %s: %s", vm->name, vm->dir, strerror(errno));
        return -1;
    }
    char *agent = xasprintf("%s/provium-agent", vm->dir);
    if (write_whole_file(agent, provium_agent_blob, EMBEDDED_SIZE(provium_agent_blob), 0755) != 0) {
        snprintf(err, errlen, "VM '%s': cannot write %s: %s", vm->name, agent, strerror(errno));
        free(agent);
        return -1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        snprintf(err, errlen, "VM '%s': socketpair: %s", vm->name, strerror(errno));
        free(agent);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(sv[1], 3); /* dup2 clears close-on-exec */
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        dup2(null, 1);
        if (chdir(vm->dir) != 0)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execl(agent, "provium-agent", "--fd", "3", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    free(agent);
    if (pid < 0) {
        close(sv[0]);
        snprintf(err, errlen, "VM '%s': fork: %s", vm->name, strerror(errno));
        return -1;
    }
    vm->qemu_pid = pid;
    vm->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    vm->agent_fd = sv[0];
    return 0;
}
