#include "vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include <time.h>
#include <unistd.h>

#include "../util/util.h"
#include "../health/kreport.h"
#include "accel.h"
#include "embedded.h"
#include "vm_nic.h"

#define AGENT_PORT_NAME "org.provium.agent.0"
#define QMP_TIMEOUT_MS 10000
#define SHUTDOWN_TIMEOUT_MS 15000
#define DEFAULT_CMDLINE "console=ttyS0 quiet tsc=reliable noapictimer"
/* microvm with ACPI: its ACPI tables route the PIT to the wrong IOAPIC pin
 * (no IRQ0 override), so the local APIC timer must stay on or the guest
 * has no timer tick at all. */
#define DEFAULT_CMDLINE_ACPI_MICROVM "console=ttyS0 quiet tsc=reliable"

const char *vm_state_name(vm_state s)
{
    static const char *names[] = {"created", "booted", "paused", "shutdown", "dead"};
    return names[s];
}

pv_vm *vm_new(const char *name, const pv_profile *profile, const char *scratch_root)
{
    static unsigned counter;
    pv_vm *vm = xcalloc(1, sizeof(*vm));
    vm->name = xstrdup(name);
    profile_copy(&vm->profile, profile);
    vm->state = VM_CREATED;
    vm->qemu_pid = -1;
    vm->pidfd = -1;
    vm->agent_fd = -1;
    vm->qmp.fd = -1;
    vm->next_req = 1;
    vm->ram_fd = -1;
    pv_buf_init(&vm->out);
    vm->dir = xasprintf("%s/vm-%d-%u", scratch_root, (int)getpid(), counter++);
    /* beside, not inside, the VM directory: it outlives the VM for reports */
    vm->console_path = xasprintf("%s.console.log", vm->dir);
    return vm;
}

/* ---- launching ---- */

static bool is_elf(const char *path)
{
    unsigned char magic[4] = {0};
    int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return false;
    ssize_t n = read(fd, magic, 4);
    close(fd);
    return n == 4 && memcmp(magic, "\177ELF", 4) == 0;
}

/* Explicit profile choice, else microvm for ELF kernels (PVH entry, the
 * fastest boot) and pc for bzImage. */
const char *vm_machine(const pv_profile *p)
{
    if (p->local)
        return "local";
    return p->machine ? p->machine : is_elf(p->kernel) ? "microvm" : "pc";
}

typedef struct {
    char **v;
    size_t n;
} argv_list;

static void arg(argv_list *a, const char *s)
{
    a->v = xrealloc(a->v, (a->n + 2) * sizeof(char *));
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

static void argv_free(argv_list *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

/* The host's TSC rate in kHz, measured once against CLOCK_MONOTONIC_RAW;
 * 0 when the TSC is not constant or cannot be measured. Under TCG the
 * guest reads the host's TSC, so this is the guest's rate too. */
static long measure_tsc_khz(void);

/* The TSC rate goes into the kernel command line, which keys the boot cache
 * and snapshots: measure it once per host boot (boot_id) and keep it under
 * the cache dir, so every process of every run passes the same figure. */
static long host_tsc_khz(void)
{
    static long khz = -1;
    if (khz >= 0)
        return khz;
    size_t len = 0;
    char *boot = read_whole_file("/proc/sys/kernel/random/boot_id", &len);
    if (boot)
        boot[strcspn(boot, "\n")] = 0;
    char *path = xasprintf("%s/tsc-khz", cache_root());
    char *saved = read_whole_file(path, &len);
    char id[64];
    long k = 0;
    if (boot && saved && sscanf(saved, "%63s %ld", id, &k) == 2 && strcmp(id, boot) == 0 && k >= 0) {
        khz = k;
    } else {
        khz = measure_tsc_khz();
        if (boot) {
            mkdir_p(cache_root(), 0755);
            char *tmp = xasprintf("%s.%d", path, (int)getpid());
            char *text = xasprintf("%s %ld\n", boot, khz);
            if (write_whole_file(tmp, text, strlen(text), 0644) != 0 || rename(tmp, path) != 0)
                unlink(tmp);
            free(text);
            free(tmp);
        }
    }
    free(saved);
    free(path);
    free(boot);
    return khz;
}

static long measure_tsc_khz(void)
{
    long khz = 0;
#if defined(__x86_64__)
    size_t len = 0;
    char *info = read_whole_file("/proc/cpuinfo", &len);
    bool constant = info && strstr(info, " constant_tsc") && strstr(info, " nonstop_tsc");
    free(info);
    if (!constant)
        return khz;
    long best = 0;
    for (int tries = 0, good = 0; tries < 10 && good < 3; tries++) {
        struct timespec a, b;
        uint64_t a0 = __builtin_ia32_rdtsc();
        clock_gettime(CLOCK_MONOTONIC_RAW, &a);
        uint64_t a1 = __builtin_ia32_rdtsc();
        struct timespec nap = {0, 10 * 1000 * 1000};
        nanosleep(&nap, NULL);
        uint64_t b0 = __builtin_ia32_rdtsc();
        clock_gettime(CLOCK_MONOTONIC_RAW, &b);
        uint64_t b1 = __builtin_ia32_rdtsc();
        if (a1 - a0 > 20000 || b1 - b0 > 20000)
            continue; /* preempted between the reads: try again */
        double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
        long k = (long)((double)((b0 + b1) / 2 - (a0 + a1) / 2) / ns * 1e6 + 0.5);
        if (k > best)
            best = k; /* a late wake-up can only lower the figure */
        good++;
    }
    khz = best;
#endif
    return khz;
}
/* COMMAND_LINE_SIZE of x86 (and arm64) Linux, less its terminating NUL */
#define CMDLINE_MAX 2047

static char *build_cmdline(const pv_vm *vm, const vm_boot_opts *o, bool microvm)
{
    const pv_profile *p = &vm->profile;
    strbuf b;
    sb_init(&b);
    const char *base = microvm && !p->no_acpi ? DEFAULT_CMDLINE_ACPI_MICROVM : DEFAULT_CMDLINE;
    sb_adds(&b, o->kernel_cmdline ? o->kernel_cmdline : p->cmdline ? p->cmdline : base);
    if (p->append && !o->kernel_cmdline)
        sb_addf(&b, " %s", p->append);
    /* panic=-1 + -no-reboot: a panicking guest ends QEMU at once instead of
     * hanging until the boot deadline. reboot=t: microvm has no other way. */
    sb_addf(&b, " panic=-1 reboot=t rdinit=/provium-wrapper provium.init=%s", p->init);
    /* microvm has no PCI: say so, or the kernel spends boot time probing
     * and logs errors about it. Its ACPI (hardware-reduced, with a generic
     * event device for the power button) is on unless the profile says
     * acpi = false. */
    if (microvm)
        sb_adds(&b, " pci=off");
    if (p->no_acpi)
        sb_adds(&b, " acpi=off");
    /* Under TCG the kernel's quick TSC calibration against the PIT fails
     * when the host is busy; the slow fallback needs a timer tick, which
     * a microvm with ACPI lacks at that point (the boot hangs), and costs
     * boot time elsewhere. Tell the kernel the rate instead. */
    bool kvm = false;
    char aerr[256];
    long khz = host_tsc_khz();
    if (khz > 0 && !strstr(b.s, "tsc_early_khz=") && accel_decide(p, vm_machine(p), &kvm, aerr, sizeof(aerr)) == 0 &&
        !kvm)
        sb_addf(&b, " tsc_early_khz=%ld", khz);
    return sb_take(&b);
}

static void build_argv(const pv_vm *vm, const vm_boot_opts *o, const char *initrd, const char *cmdline,
                       argv_list *a);

char *vm_build_cmdline(const pv_vm *vm, const vm_boot_opts *o)
{
    return build_cmdline(vm, o, strcmp(vm_machine(&vm->profile), "microvm") == 0);
}

/* splitmix64: a small, well-known generator; quality is not the point,
 * reproducibility from the seed is. */
static void write_seeded_stream(const char *path, uint64_t seed, size_t len)
{
    uint8_t *buf = xmalloc(len);
    uint64_t x = seed;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        memcpy(buf + i, &z, 8);
    }
    write_whole_file(path, buf, len, 0600);
    free(buf);
}

char **vm_qemu_argv(pv_vm *vm, const vm_boot_opts *opts, char *err, size_t errlen)
{
    vm_boot_opts none = {0};
    if (!opts)
        opts = &none;
    char *initrd = shim_prepare_initrd(&vm->profile, opts->files, opts->nfiles, err, errlen);
    if (!initrd)
        return NULL;
    char *cmdline = build_cmdline(vm, opts, strcmp(vm_machine(&vm->profile), "microvm") == 0);
    vm->mem_bytes = opts->memory ? opts->memory : vm->profile.memory;
    vm->cpus = opts->cpus ? opts->cpus : vm->profile.cpus;
    free(vm->ram_path);
    vm->ram_path = xasprintf("%s.ram", vm->dir);
    vm->ram_shared = true;
    vm->ram_fd = open(vm->ram_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (vm->ram_fd >= 0 && ftruncate(vm->ram_fd, vm->mem_bytes) != 0)
        snprintf(err, errlen, "ftruncate: %s", strerror(errno));
    if (accel_decide(&vm->profile, vm_machine(&vm->profile), &vm->kvm, err, errlen) != 0) {
        free(initrd);
        free(cmdline);
        return NULL;
    }
    argv_list a = {0};
    build_argv(vm, opts, initrd, cmdline, &a);
    free(initrd);
    free(cmdline);
    return a.v;
}

static void build_argv(const pv_vm *vm, const vm_boot_opts *o, const char *initrd, const char *cmdline,
                       argv_list *a)
{
    const pv_profile *p = &vm->profile;
    bool kvm = vm->kvm;
    const char *machine = vm_machine(p);
    bool microvm = strcmp(machine, "microvm") == 0;
    char *s;
    arg(a, "qemu-system-x86_64");
    arg(a, "-nodefaults");
    arg(a, "-no-user-config");
    arg(a, "-display");
    arg(a, "none");
    arg(a, "-no-reboot");
    arg(a, "-machine");
    s = xasprintf("%s,memory-backend=pvram", !microvm ? machine : p->no_acpi ? "microvm,acpi=off" : "microvm,acpi=on");
    arg(a, s);
    free(s);
    /* Guest RAM lives in a file: shared while the VM runs (a snapshot then
     * leaves RAM out of the migration stream and copies the file), private
     * copy-on-write when restoring (nothing is copied per restore). */
    arg(a, "-object");
    s = xasprintf("memory-backend-file,id=pvram,size=%lldM,mem-path=%s,share=%s",
                  (long long)(vm->mem_bytes / (1024 * 1024)), vm->ram_path, vm->ram_shared ? "on" : "off");
    arg(a, s);
    free(s);
    arg(a, "-accel");
    arg(a, kvm ? "kvm" : "tcg");
    arg(a, "-cpu");
    arg(a, kvm ? "host" : "max");
    (void)o;
    arg(a, "-m");
    s = xasprintf("%lldM", (long long)(vm->mem_bytes / (1024 * 1024)));
    arg(a, s);
    free(s);
    arg(a, "-smp");
    s = xasprintf("%d", vm->cpus);
    arg(a, s);
    free(s);
    arg(a, "-kernel");
    arg(a, p->kernel);
    arg(a, "-initrd");
    arg(a, initrd);
    arg(a, "-append");
    arg(a, cmdline);
    arg(a, "-chardev");
    /* The socket takes console input (vm:console():write); the logfile gets
     * every byte of output from the first, whether a client is connected or not. */
    s = xasprintf("socket,id=con0,path=%s/console.sock,server=on,wait=off,logfile=%s%s", vm->dir, vm->console_path,
                  vm->console_append ? ",logappend=on" : "");
    arg(a, s);
    free(s);
    arg(a, "-serial");
    arg(a, "chardev:con0");
    arg(a, "-device");
    arg(a, microvm ? "virtio-serial-device" : "virtio-serial-pci");
    arg(a, "-chardev");
    s = xasprintf("socket,id=agent0,path=%s/agent.sock,server=on,wait=off", vm->dir);
    arg(a, s);
    free(s);
    arg(a, "-device");
    /* the id makes QEMU send VSERPORT_CHANGE events (the agent died) */
    arg(a, "virtserialport,chardev=agent0,id=pvagent0,name=" AGENT_PORT_NAME);
    arg(a, "-qmp");
    s = xasprintf("unix:%s/qmp.sock,server=on,wait=off", vm->dir);
    arg(a, s);
    free(s);
    if (o->has_rng_seed) {
        /* virtio-rng reads a file of bytes generated from the seed, so the
         * guest's hardware RNG (/dev/hwrng) yields the same stream each run */
        char *path = xasprintf("%s/rng-%016llx", vm->dir, (unsigned long long)o->rng_seed);
        write_seeded_stream(path, o->rng_seed, 4u << 20);
        arg(a, "-object");
        s = xasprintf("rng-random,id=pvrng,filename=%s", path);
        arg(a, s);
        free(s);
        free(path);
        arg(a, "-device");
        arg(a, microvm ? "virtio-rng-device,rng=pvrng" : "virtio-rng-pci,rng=pvrng");
    }
    if (p->rootfs) {
        arg(a, "-drive");
        s = xasprintf("file=%s,if=none,id=rootfs,format=raw,readonly=on", p->rootfs);
        arg(a, s);
        free(s);
        arg(a, "-device");
        arg(a, microvm ? "virtio-blk-device,drive=rootfs" : "virtio-blk-pci,drive=rootfs");
    }
    for (char *const *nic = vm_nic_argv(vm); nic && *nic; nic++) /* NICs on bridges (vm_nic.h) */
        arg(a, *nic);
}

static pid_t spawn_qemu(pv_vm *vm, char **argv, char *err, size_t errlen)
{
    char *errpath = xasprintf("%s/qemu.stderr", vm->dir);
    int errfd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    free(errpath);
    int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
    /* QEMU must never outlive the process that drives it. */
    pid_t pid = spawn_tied(argv, nullfd, nullfd, errfd >= 0 ? errfd : nullfd);
    if (errfd >= 0)
        close(errfd);
    if (nullfd >= 0)
        close(nullfd);
    if (pid < 0)
        snprintf(err, errlen, "VM '%s': fork: %s", vm->name, strerror(errno));
    return pid;
}

/* Has QEMU exited? Reaps it and records why. */
static bool qemu_exited(pv_vm *vm, int *status)
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

static char *describe_exit(int st)
{
    if (WIFEXITED(st))
        return xasprintf("exit status %d", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return xasprintf("killed by signal %d", WTERMSIG(st));
    return xstrdup("unknown status");
}

/* After a socket error: waits up to 0.5 s for QEMU to be reaped and, if it
 * was, writes how it ended ("killed by signal 9") into how. */
static bool qemu_death(pv_vm *vm, char *how, size_t howlen)
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

static char *qemu_stderr_tail(const pv_vm *vm)
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

char *vm_console_tail(const pv_vm *vm, int lines)
{
    size_t len = 0;
    char *text = read_whole_file(vm->console_path, &len);
    char *out = xstrdup(text ? tail_lines(text, len, lines) : "");
    free(text);
    return out;
}

/* Builds "... last console lines:\n  | ..." for boot failures. A kernel
 * panic line is always quoted, even when a long trace follows it. */
static void append_console(const pv_vm *vm, char *err, size_t errlen)
{
    char *tail = vm_console_tail(vm, 15);
    strbuf b;
    sb_init(&b);
    sb_adds(&b, err);
    size_t len = 0;
    char *all = read_whole_file(vm->console_path, &len);
    const char *panic = all ? strstr(all, "Kernel panic") : NULL;
    if (panic && !strstr(tail, "Kernel panic")) {
        const char *eol = strchr(panic, '\n');
        sb_addf(&b, "\n  guest kernel: %.*s", (int)(eol ? eol - panic : (long)strlen(panic)), panic);
    }
    free(all);
    if (!*tail)
        sb_adds(&b, "\n  (the console is empty: the kernel printed nothing)");
    else {
        sb_adds(&b, "\n  last console lines:");
        for (char *line = strtok(tail, "\n"); line; line = strtok(NULL, "\n"))
            sb_addf(&b, "\n  | %s", line);
    }
    snprintf(err, errlen, "%s", b.s);
    sb_free(&b);
    free(tail);
}

static int connect_unix(const char *path)
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
static int connect_when_ready(pv_vm *vm, const char *what, int64_t deadline, char *err, size_t errlen)
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

/* ---- agent framing ---- */

static void mark_dead(pv_vm *vm, const char *why)
{
    vm->state = VM_DEAD;
    free(vm->dead_reason);
    vm->dead_reason = xstrdup(why);
}

/* Per-test deadline set by the framework: no wait outlives it. */
static volatile int64_t global_deadline;

void vm_set_global_deadline(int64_t deadline_ms) { global_deadline = deadline_ms; }

/* Waits until a whole frame is buffered. Returns 1, 0 on timeout, -1 when
 * the connection or QEMU is gone (err set). */
/* After an oops line, how long a reply may still come (the oops may have
 * hit an unrelated process, or the one the agent waits for, which then
 * reports a signal) before the wait ends as "kernel oops". */
#define OOPS_GRACE_MS 1000
#define PORT_GRACE_MS 300
#define AGENT_DIED "the guest closed its virtio-serial port: the agent was killed or crashed"

/* Looks at console bytes written since the last look for a line that opens
 * an oops-class report, and remembers the first one. */
static void watch_console(pv_vm *vm)
{
    struct stat st;
    if (vm->oops_seen_ms || !vm->console_path || stat(vm->console_path, &st) != 0 ||
        st.st_size <= vm->console_scanned)
        return;
    int fd = open(vm->console_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    /* from the start of the last, maybe incomplete, line */
    int64_t from = vm->console_scanned;
    size_t n = (size_t)(st.st_size - from);
    char *buf = xmalloc(n + 1);
    ssize_t got = pread(fd, buf, n, from);
    close(fd);
    if (got <= 0) {
        free(buf);
        return;
    }
    buf[got] = 0;
    const char *line = buf, *last_eol = NULL;
    for (const char *eol; (eol = memchr(line, '\n', (size_t)(buf + got - line))); line = eol + 1) {
        last_eol = eol;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (kreport_is_oops_line(line, len)) {
            snprintf(vm->oops_line, sizeof(vm->oops_line), "%.*s", (int)len, line);
            vm->oops_seen_ms = now_ms();
            break;
        }
    }
    if (last_eol)
        vm->console_scanned = from + (last_eol - buf) + 1;
    free(buf);
}

void (*vm_wait_hook)(const char *what);

static int read_frame_inner(pv_vm *vm, pv_hdr *hdr, int64_t deadline, char *err, size_t errlen, int64_t *told);

/* "exec" for PV_MSG_EXEC: the protocol name, lower case, spaces */
static void op_name(uint16_t type, char *buf, size_t len)
{
    snprintf(buf, len, "%s", pv_msg_name(type));
    for (char *c = buf; *c; c++)
        *c = *c == '_' ? ' ' : (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
}

static int read_frame(pv_vm *vm, pv_hdr *hdr, int64_t deadline, char *err, size_t errlen)
{
    int64_t told = 0;
    int r = read_frame_inner(vm, hdr, deadline, err, errlen, &told);
    if (told && vm_wait_hook)
        vm_wait_hook(NULL);
    return r;
}

/* After 2 s of waiting, tells the hook once what this wait is for. */
static void note_long_wait(pv_vm *vm, int64_t started, int64_t *told)
{
    if (*told || !vm_wait_hook || now_ms() - started < 2000)
        return;
    char what[300], op[40];
    if (vm->wait_op) {
        op_name(vm->wait_op, op, sizeof(op));
        snprintf(what, sizeof(what), "VM '%s': the guest agent's reply to %s", vm->name, op);
    } else {
        snprintf(what, sizeof(what), "VM '%s': output of a process or stream, or the guest agent", vm->name);
    }
    vm_wait_hook(what);
    *told = 1;
}

static int read_frame_inner(pv_vm *vm, pv_hdr *hdr, int64_t deadline, char *err, size_t errlen, int64_t *told)
{
    int64_t started = now_ms();
    for (;;) {
        note_long_wait(vm, started, told);
        /* re-read each slice: the REPL's Ctrl-C moves it during a wait */
        if (global_deadline > 0 && (deadline < 0 || deadline > global_deadline))
            deadline = global_deadline;
        if (vm->in_len >= PV_HDR_SIZE) {
            if (pv_hdr_decode(vm->in, hdr) != 0) {
                snprintf(err, errlen, "VM '%s': agent sent a frame of %u bytes, over the %u byte limit", vm->name,
                         hdr->len, PV_MAX_PAYLOAD);
                return -1;
            }
            if (vm->in_len >= PV_HDR_SIZE + (size_t)hdr->len)
                return 1;
        }
        size_t need = vm->in_len + 65536;
        if (vm->in_len >= PV_HDR_SIZE)
            need = PV_HDR_SIZE + (size_t)hdr->len;
        if (need > vm->in_cap) {
            vm->in = xrealloc(vm->in, need);
            vm->in_cap = need;
        }
        int64_t left = deadline < 0 ? -1 : deadline - now_ms();
        if (deadline >= 0 && left <= 0)
            return 0;
        /* QMP too: QEMU tells when the guest closes the agent's port, which
         * happens when the agent dies (kill -9, a crash) */
        bool watch_port = vm->agent_up && vm->qmp.fd >= 0;
        struct pollfd p[3] = {{vm->agent_fd, POLLIN, 0}, {vm->pidfd, POLLIN, 0}};
        int np = vm->pidfd >= 0 ? 2 : 1;
        if (watch_port)
            p[np++] = (struct pollfd){vm->qmp.fd, POLLIN, 0};
        int r = poll(p, (nfds_t)np, left < 0 || left > 100 ? 100 : (int)left);
        if (r < 0 && errno != EINTR) {
            snprintf(err, errlen, "VM '%s': poll: %s", vm->name, strerror(errno));
            return -1;
        }
        if (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = read(vm->agent_fd, vm->in + vm->in_len, vm->in_cap - vm->in_len);
            if (n > 0) {
                vm->in_len += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            /* EOF: QEMU closed the socket, so it is exiting; give it a moment
             * to be reaped, and say how it ended (a signal, a status). */
            char how[64];
            if (qemu_death(vm, how, sizeof(how))) {
                snprintf(err, errlen, "VM '%s': the agent connection closed: QEMU exited unexpectedly (%s)", vm->name,
                         how);
            } else {
                snprintf(err, errlen, "VM '%s': the agent connection closed (QEMU exited)", vm->name);
            }
            return -1;
        }
        int st = 0;
        if (qemu_exited(vm, &st)) {
            char *why = describe_exit(st);
            snprintf(err, errlen, "VM '%s': QEMU exited unexpectedly (%s)", vm->name, why);
            free(why);
            return -1;
        }
        if (watch_port) {
            if (r > 0 && p[np - 1].revents)
                qmp_drain_events(&vm->qmp);
            if (vm->qmp.port_open == 0 && !vm->port_closed_ms)
                vm->port_closed_ms = now_ms();
            else if (vm->qmp.port_open == 1)
                vm->port_closed_ms = 0;
        }
        watch_console(vm);
        /* a short grace lets a last reply (SHUTDOWN's) arrive first; an
         * agent killed by a kernel oops is reported as the oops */
        if (watch_port && vm->port_closed_ms && now_ms() - vm->port_closed_ms >= PORT_GRACE_MS) {
            if (vm->oops_seen_ms) {
                snprintf(err, errlen, "VM '%s': kernel oops: %s", vm->name, vm->oops_line);
                return -2;
            }
            snprintf(err, errlen, "VM '%s': the guest agent died (%s)", vm->name, AGENT_DIED);
            return -3;
        }
        if (vm->oops_seen_ms && now_ms() - vm->oops_seen_ms >= OOPS_GRACE_MS) {
            snprintf(err, errlen, "VM '%s': kernel oops: %s", vm->name, vm->oops_line);
            return -2;
        }
    }
}

static void drop_frame(pv_vm *vm, const pv_hdr *hdr)
{
    size_t used = PV_HDR_SIZE + hdr->len;
    memmove(vm->in, vm->in + used, vm->in_len - used);
    vm->in_len -= used;
}

static int send_all(pv_vm *vm, const void *data, size_t len, char *err, size_t errlen)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(vm->agent_fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            char how[64];
            if (qemu_death(vm, how, sizeof(how)))
                snprintf(err, errlen, "VM '%s': cannot send to the agent: QEMU exited unexpectedly (%s)", vm->name,
                         how);
            else
                snprintf(err, errlen, "VM '%s': cannot send to the agent: %s", vm->name, strerror(e));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int wait_ready(pv_vm *vm, int64_t deadline, char *err, size_t errlen)
{
    vm->agent_up = false;
    vm->port_closed_ms = 0;
    for (;;) {
        pv_hdr hdr;
        int r = read_frame(vm, &hdr, deadline, err, errlen);
        if (r == 0) {
            snprintf(err, errlen, "VM '%s' (profile '%s'): the guest agent did not connect within %.0f s", vm->name,
                     vm->profile.name, vm->profile.boot_timeout_ms / 1000.0);
            return -1;
        }
        if (r < 0)
            return -1;
        if (hdr.type != PV_MSG_READY) {
            drop_frame(vm, &hdr);
            continue;
        }
        pv_msg m;
        char why[256];
        int rc = pv_msg_decode(&hdr, vm->in + PV_HDR_SIZE, &m, why, sizeof(why));
        if (rc != 0) {
            snprintf(err, errlen, "VM '%s': malformed handshake from the agent: %s", vm->name, why);
            drop_frame(vm, &hdr);
            return -1;
        }
        uint64_t proto = pv_msg_u64(&m, PV_T_PROTO_VERSION, 0);
        free(vm->agent_version);
        vm->agent_version = pv_msg_strdup(&m, PV_T_AGENT_VERSION);
        pv_msg_free(&m);
        drop_frame(vm, &hdr);
        if (proto != PV_PROTO_VERSION) {
            snprintf(err, errlen,
                     "VM '%s': the guest agent speaks protocol version %llu but this provium speaks %d; "
                     "the initrd probably carries a stale agent",
                     vm->name, (unsigned long long)proto, PV_PROTO_VERSION);
            return -1;
        }
        vm->agent_up = true;
        return 0;
    }
}

static int check_readable(const pv_vm *vm, const char *what, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(err, errlen, "VM '%s': profile '%s': %s %s: %s%s", vm->name, vm->profile.name, what, path,
             strerror(errno), errno == ENOENT ? " (relative paths in provium.toml resolve against its directory)" : "");
    return -1;
}

/* Guest RAM backing for a booting VM: tmpfs when available (no disk I/O for
 * guest memory), else the scratch directory. The file is unlinked once QEMU
 * has mapped it; the host keeps a descriptor to copy it for snapshots. */
static int make_ram_file(pv_vm *vm, int64_t bytes, char *err, size_t errlen)
{
    static unsigned n;
    free(vm->ram_path);
    if (access("/dev/shm", W_OK) == 0)
        vm->ram_path = xasprintf("/dev/shm/provium-%d-%u.ram", (int)getpid(), n++);
    else
        vm->ram_path = xasprintf("%s.ram", vm->dir);
    vm->ram_fd = open(vm->ram_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (vm->ram_fd < 0 && errno == EEXIST) {
        /* the name carries our pid: the file is the leftover of a killed
         * process that had the same pid before us */
        unlink(vm->ram_path);
        vm->ram_fd = open(vm->ram_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (vm->ram_fd < 0 || ftruncate(vm->ram_fd, bytes) != 0) {
        snprintf(err, errlen, "VM '%s': cannot create guest RAM file %s: %s", vm->name, vm->ram_path,
                 strerror(errno));
        if (vm->ram_fd >= 0)
            close(vm->ram_fd);
        vm->ram_fd = -1;
        unlink(vm->ram_path);
        return -1;
    }
    vm->ram_shared = true;
    return 0;
}

int vm_qmp(pv_vm *vm, const char *cmd, json_t *args, json_t **ret, char *err, size_t errlen)
{
    if (vm->profile.local) {
        json_decref(args);
        snprintf(err, errlen, "VM '%s': %s needs a real VM; profile '%s' runs the agent as a host process", vm->name,
                 cmd, vm->profile.name);
        return -1;
    }
    char why[1024];
    json_t *r = qmp_command(&vm->qmp, cmd, args, now_ms() + QMP_TIMEOUT_MS, why, sizeof(why));
    if (!r) {
        /* a QEMU that died (a signal, a failed restore) makes the VM dead,
         * with how it ended, instead of a bare socket error */
        char how[64];
        if (qemu_death(vm, how, sizeof(how))) {
            snprintf(err, errlen, "VM '%s': %s: QEMU exited unexpectedly (%s)", vm->name, cmd, how);
            mark_dead(vm, err);
            return -1;
        }
        snprintf(err, errlen, "VM '%s': %s", vm->name, why);
        return -1;
    }
    if (ret)
        *ret = r;
    else
        json_decref(r);
    return 0;
}

int vm_set_ignore_shared(pv_vm *vm, bool on, char *err, size_t errlen)
{
    return vm_qmp(vm, "migrate-set-capabilities",
                  json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared", "state", on), NULL,
                  err, errlen);
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

int vm_launch(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline, const char *ram_file,
              bool incoming, char *err, size_t errlen)
{
    /* QEMU starts the console log afresh, or after the boot log the boot
     * cache wrote (already looked at when that boot ran) */
    struct stat cst;
    vm->console_scanned = vm->console_append && stat(vm->console_path, &cst) == 0 ? (int64_t)cst.st_size : 0;
    vm->oops_seen_ms = 0;
    if (mkdir_p(vm->dir, 0700) != 0) {
        snprintf(err, errlen, "VM '%s': cannot create %s: %s", vm->name, vm->dir, strerror(errno));
        return -1;
    }
    vm->mem_bytes = opts->memory ? opts->memory : vm->profile.memory;
    vm->cpus = opts->cpus ? opts->cpus : vm->profile.cpus;
    char why[200];
    /* before QEMU starts (a local profile's memory is only a pool charge) */
    if (config_check_memory(vm->mem_bytes, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "VM '%s': boot option %s", vm->name, why);
        return -1;
    }
    vm->has_rng_seed = opts->has_rng_seed;
    vm->rng_seed = opts->rng_seed;
    free(vm->cmdline);
    vm->cmdline = xstrdup(cmdline);
    free(vm->initrd_path);
    vm->initrd_path = xstrdup(initrd);
    if (ram_file && !vm->ram_copy) {
        free(vm->ram_path);
        vm->ram_path = xstrdup(ram_file);
        vm->ram_shared = false;
        vm->ram_fd = -1;
    } else if (make_ram_file(vm, vm->mem_bytes, err, errlen) != 0) {
        return -1;
    } else if (ram_file) {
        char why[1024];
        if (ram_copy_into(ram_file, vm->ram_fd, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "VM '%s': %s", vm->name, why);
            close(vm->ram_fd);
            vm->ram_fd = -1;
            unlink(vm->ram_path);
            return -1;
        }
    }
    if (accel_decide(&vm->profile, vm_machine(&vm->profile), &vm->kvm, err, errlen) != 0) {
        char why[1024];
        snprintf(why, sizeof(why), "%s", err);
        snprintf(err, errlen, "VM '%s': %s", vm->name, why);
        return -1;
    }
    argv_list a = {0};
    build_argv(vm, opts, initrd, cmdline, &a);
    if (incoming) {
        arg(&a, "-incoming");
        arg(&a, "defer");
    }
    vm->qemu_pid = spawn_qemu(vm, a.v, err, errlen);
    argv_free(&a);
    if (vm->qemu_pid < 0)
        return -1;
    vm->pidfd = (int)syscall(SYS_pidfd_open, vm->qemu_pid, 0);
    int64_t qmp_deadline = now_ms() + QMP_TIMEOUT_MS;
    int fd = connect_when_ready(vm, "qmp.sock", qmp_deadline, err, errlen);
    if (fd < 0)
        return -1;
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

/* A local profile: the agent binary runs on the host over a socketpair, in
 * the VM's scratch directory. Same protocol, no kernel: for fast op tests. */
static int launch_local(pv_vm *vm, char *err, size_t errlen)
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

int vm_boot(pv_vm *vm, const vm_boot_opts *opts, char *err, size_t errlen)
{
    vm_boot_opts none = {0};
    if (!opts)
        opts = &none;
    double t0 = now_s();
    vm->boot_cached = false;
    if (vm->profile.local) {
        if (launch_local(vm, err, errlen) != 0 || wait_ready(vm, now_ms() + vm->profile.boot_timeout_ms, err, errlen) != 0) {
            vm_kill(vm);
            vm->state = VM_CREATED;
            return -1;
        }
        vm->state = VM_BOOTED;
        vm->boot_seconds = now_s() - t0;
        return 0;
    }
    if (!vm->profile.kernel) {
        snprintf(err, errlen,
                 "VM '%s': cannot boot: profile '%s' has no kernel (set kernel = \"PATH\" in [profiles.%s] of "
                 "provium.toml, or local = true for a VM without one)",
                 vm->name, vm->profile.name, vm->profile.name);
        return -1;
    }
    if (check_readable(vm, "kernel", vm->profile.kernel, err, errlen) ||
        (vm->profile.rootfs && check_readable(vm, "rootfs", vm->profile.rootfs, err, errlen)))
        return -1;
    char *initrd = shim_prepare_initrd(&vm->profile, opts->files, opts->nfiles, err, errlen);
    if (!initrd) {
        char *why = xstrdup(err);
        snprintf(err, errlen, "VM '%s': %s%s", vm->name, why,
                 strstr(why, "No such file") ? " (relative paths in provium.toml resolve against its directory)" : "");
        free(why);
        return -1;
    }
    const char *machine = vm_machine(&vm->profile);
    char *cmdline = build_cmdline(vm, opts, strcmp(machine, "microvm") == 0);
    /* x86's COMMAND_LINE_SIZE: the kernel silently cuts a longer line, and
     * what goes first is provium's own panic=-1 rdinit=... at the end */
    if (strlen(cmdline) > CMDLINE_MAX) {
        snprintf(err, errlen,
                 "VM '%s': the kernel command line is %zu bytes, over the kernel's limit of %d: the kernel would cut "
                 "off its end, where provium puts panic=-1 and rdinit=/provium-wrapper; shorten kernel_cmdline (or "
                 "profile '%s''s cmdline/append) by %zu bytes",
                 vm->name, strlen(cmdline), CMDLINE_MAX, vm->profile.name, strlen(cmdline) - CMDLINE_MAX);
        free(cmdline);
        free(initrd);
        return -1;
    }
    int rc = vm_launch(vm, opts, initrd, cmdline, NULL, false, err, errlen);
    free(cmdline);
    free(initrd);
    if (rc != 0 || wait_ready(vm, now_ms() + vm->profile.boot_timeout_ms, err, errlen) != 0)
        goto fail;
    vm->state = VM_BOOTED;
    /* The guest boots with the host's clock (the kvmclock/RTC); a pinned
     * start time is applied before the first test op. */
    vm->time_pinned = opts->initial_time > 0;
    if (vm->time_pinned && vm_set_clock(vm, opts->initial_time, err, errlen) != 0)
        goto fail;
    vm->boot_seconds = now_s() - t0;
    return 0;
fail:
    append_console(vm, err, errlen);
    vm_kill(vm);
    vm->state = VM_CREATED;
    return -1;
}

int vm_set_clock(pv_vm *vm, double seconds, char *err, size_t errlen)
{
    vm_reply r;
    vm_begin(vm, PV_MSG_CLOCK_SET);
    pv_put_i64(&vm->out, PV_T_TIME_NS, (int64_t)(seconds * 1e9));
    if (vm_call(vm, &r, 30000, NULL, err, errlen) != 0)
        return -1;
    vm_reply_free(&r);
    return 0;
}

static void chans_end(pv_vm *vm);

/* Drops the agent connection and makes a new one, as a restore does. The
 * agent abandons the old connection's work (its commands are killed, its
 * streams closed) and greets the new host. */
int vm_reconnect(pv_vm *vm, char *err, size_t errlen)
{
    if (vm->profile.local) {
        snprintf(err, errlen, "VM '%s': reconnect needs a real VM", vm->name);
        return -1;
    }
    close(vm->agent_fd);
    vm->in_len = 0;
    chans_end(vm);
    vm->agent_fd = connect_when_ready(vm, "agent.sock", now_ms() + QMP_TIMEOUT_MS, err, errlen);
    if (vm->agent_fd < 0 || vm_hello(vm, now_ms() + 30000, err, errlen) != 0) {
        vm_launch_failed(vm, err, errlen);
        mark_dead(vm, err);
        return -1;
    }
    return 0;
}

void vm_launch_failed(pv_vm *vm, char *err, size_t errlen)
{
    char *qerr = qemu_stderr_tail(vm);
    if (*qerr) {
        size_t l = strlen(err);
        snprintf(err + l, errlen - l, "\n  QEMU said: %s", qerr);
    }
    free(qerr);
    append_console(vm, err, errlen);
    vm_kill(vm);
}

/* After a restore the agent believes its host never left: ask it to say
 * hello again, which also proves the channel works. */
int vm_hello(pv_vm *vm, int64_t deadline, char *err, size_t errlen)
{
    vm_begin(vm, PV_MSG_HELLO);
    pv_put_u64(&vm->out, PV_T_PROTO_VERSION, PV_PROTO_VERSION);
    if (pv_frame_end(&vm->out) != 0 || send_all(vm, vm->out.buf, vm->out.len, err, errlen) != 0)
        return -1;
    return wait_ready(vm, deadline, err, errlen);
}

/* ---- requests ---- */

uint32_t vm_begin_on(pv_vm *vm, uint16_t type, uint32_t chan)
{
    if (chan == 0) /* the request channel of the current target: the VM's, or a worker's */
        chan = vm->chan_base;
    uint32_t req = vm->next_req++;
    if (vm->next_req == 0)
        vm->next_req = 1;
    pv_buf_reset(&vm->out);
    pv_frame_begin(&vm->out, type, chan, req);
    return req;
}

/* chan_base: 0 for the VM's agent, a worker's channel while a worker's
 * operation is built (see host/lua/lua_worker.c). */
uint32_t vm_begin(pv_vm *vm, uint16_t type) { return vm_begin_on(vm, type, vm->chan_base); }

int vm_send(pv_vm *vm, char *err, size_t errlen)
{
    if (pv_frame_end(&vm->out) != 0) {
        snprintf(err, errlen, "VM '%s': request larger than the %u byte protocol limit", vm->name, PV_MAX_PAYLOAD);
        return -1;
    }
    return send_all(vm, vm->out.buf, vm->out.len, err, errlen);
}

vm_chan *vm_chan_open(pv_vm *vm)
{
    vm_chan *ch = xcalloc(1, sizeof(*ch));
    /* ids stay below the worker bits; a worker's channels carry its id above */
    if (++vm->next_chan >= (1u << PV_WORKER_SHIFT))
        vm->next_chan = 1;
    ch->id = vm->next_chan | vm->chan_base;
    for (int i = 0; i < VM_STREAMS; i++)
        sb_init(&ch->log[i]);
    ch->next = vm->chans;
    vm->chans = ch;
    return ch;
}

vm_chan *vm_chan_find(pv_vm *vm, uint32_t id)
{
    for (vm_chan *ch = vm->chans; ch; ch = ch->next)
        if (ch->id == id)
            return ch;
    return NULL;
}

void vm_chan_free(pv_vm *vm, uint32_t id)
{
    for (vm_chan **p = &vm->chans; *p; p = &(*p)->next) {
        if ((*p)->id != id)
            continue;
        vm_chan *ch = *p;
        *p = ch->next;
        for (int i = 0; i < VM_STREAMS; i++)
            sb_free(&ch->log[i]);
        vm_reply_free(&ch->result);
        free(ch);
        return;
    }
}

/* The VM is gone: every channel has reached its end. */
static void chans_end(pv_vm *vm)
{
    vm->generation++;
    for (vm_chan *ch = vm->chans; ch; ch = ch->next) {
        for (int i = 0; i < VM_STREAMS; i++)
            ch->eof[i] = true;
        if (!ch->done)
            ch->lost = true;
    }
}

/* Delivers a frame the agent pushed on a channel (req 0), or the reply to a
 * request sent with vm_send and awaited on its channel (ch->await_req). */
static void route_push(pv_vm *vm, const pv_hdr *hdr)
{
    vm_chan *ch = vm_chan_find(vm, hdr->chan);
    if (!ch)
        return; /* closed on our side; late data is dropped */
    if (hdr->req != 0 && hdr->req != ch->await_req)
        return; /* a late reply to a request that timed out */
    pv_msg m;
    char why[256];
    if (pv_msg_decode(hdr, vm->in + PV_HDR_SIZE, &m, why, sizeof(why)) != 0)
        return;
    uint64_t stream = pv_msg_u64(&m, PV_T_STREAM, 3);
    int idx = stream >= 1 && stream <= VM_STREAMS ? (int)stream - 1 : VM_STREAMS - 1;
    if (hdr->type == PV_MSG_STREAM_DATA) {
        const pv_field *d = pv_msg_get(&m, PV_T_DATA);
        sb_add(&ch->log[idx], d->data, d->len);
    } else if (hdr->type == PV_MSG_STREAM_EOF) {
        ch->eof[idx] = true;
    } else if ((hdr->type == PV_MSG_EXEC_RESULT || hdr->type == PV_MSG_WORKER_EXIT || hdr->req != 0) && !ch->done) {
        ch->done = true;
        ch->eof[0] = ch->eof[1] = true;
        ch->result.payload = xmalloc(hdr->len ? hdr->len : 1);
        memcpy(ch->result.payload, vm->in + PV_HDR_SIZE, hdr->len);
        pv_msg_decode(hdr, ch->result.payload, &ch->result.msg, why, sizeof(why));
    }
    pv_msg_free(&m);
}

int vm_pump(pv_vm *vm, int64_t deadline_ms, char *err, size_t errlen)
{
    if (vm->state == VM_DEAD || vm->agent_fd < 0) {
        snprintf(err, errlen, "VM '%s' is not running", vm->name);
        return -1;
    }
    pv_hdr hdr;
    int r = read_frame(vm, &hdr, deadline_ms, err, errlen);
    if (r < 0) {
        char *why = xstrdup(err);
        mark_dead(vm, why);
        append_console(vm, err, errlen);
        free(vm->dead_reason);
        vm->dead_reason = xstrdup(err);
        free(why);
        vm_kill(vm);
        return -1;
    }
    if (r == 0)
        return 0;
    if (hdr.chan != 0)
        route_push(vm, &hdr);
    drop_frame(vm, &hdr);
    return 1;
}

void vm_reply_free(vm_reply *r)
{
    pv_msg_free(&r->msg);
    free(r->payload);
    r->payload = NULL;
}

const char *vm_who(pv_vm *vm, bool refresh, char *buf, size_t len)
{
    if (vm->chan_base && vm->who_fn)
        vm->who_fn(vm, refresh, buf, len);
    else
        snprintf(buf, len, "VM '%s'", vm->name);
    return buf;
}

int vm_call(pv_vm *vm, vm_reply *reply, int64_t timeout_ms, int *guest_errno, char *err, size_t errlen)
{
    char who[256];
    memset(reply, 0, sizeof(*reply));
    if (guest_errno)
        *guest_errno = 0;
    uint32_t req = 0, chan = 0;
    uint16_t req_type = 0;
    if (vm->out.len >= PV_HDR_SIZE) {
        pv_hdr h;
        pv_hdr_decode(vm->out.buf, &h);
        req = h.req;
        chan = h.chan;
        req_type = h.type;
    }
    if (pv_frame_end(&vm->out) != 0) {
        snprintf(err, errlen, "VM '%s': request larger than the %u byte protocol limit", vm->name, PV_MAX_PAYLOAD);
        return -1;
    }
    /* an oops from before this call is the health check's business, not a
     * reason to cut this call short */
    watch_console(vm);
    vm->oops_seen_ms = 0;
    if (send_all(vm, vm->out.buf, vm->out.len, err, errlen) != 0)
        goto dead;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        pv_hdr hdr;
        vm->wait_op = req_type;
        int r = read_frame(vm, &hdr, deadline, err, errlen);
        vm->wait_op = 0;
        if (r == 0) {
            if (global_deadline > 0 && now_ms() >= global_deadline)
                snprintf(err, errlen, "test timeout: gave up waiting for %s (the request is abandoned)",
                         vm_who(vm, false, who, sizeof(who)));
            else
                snprintf(err, errlen, "%s: no reply from the guest agent within %.1f s",
                         vm_who(vm, false, who, sizeof(who)), timeout_ms / 1000.0);
            return -1;
        }
        if (r == -2 || r == -3) {
            /* the agent, or the process serving this call, died in the oops;
             * or the agent itself died (-3) */
            char op[40];
            op_name(req_type, op, sizeof(op));
            if (r == -2)
                snprintf(err, errlen, "VM '%s': kernel oops while running %s: %s", vm->name, op, vm->oops_line);
            else
                snprintf(err, errlen, "VM '%s': the guest agent died while running %s (%s); the VM is marked dead",
                         vm->name, op, AGENT_DIED);
            goto dead;
        }
        if (r < 0)
            goto dead;
        if (hdr.req != req || hdr.chan != chan) {
            if (hdr.chan != 0)
                route_push(vm, &hdr);
            drop_frame(vm, &hdr); /* pushed data, or a late reply to a request that timed out */
            continue;
        }
        reply->payload = xmalloc(hdr.len ? hdr.len : 1);
        memcpy(reply->payload, vm->in + PV_HDR_SIZE, hdr.len);
        drop_frame(vm, &hdr);
        char why[256];
        if (pv_msg_decode(&hdr, reply->payload, &reply->msg, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "VM '%s': malformed reply from the agent: %s", vm->name, why);
            vm_reply_free(reply);
            return -1;
        }
        if (!pv_reply_matches(req_type, hdr.type)) {
            snprintf(err, errlen, "VM '%s': the agent answered %s with %s", vm->name, pv_msg_name(req_type),
                     pv_msg_name(hdr.type));
            vm_reply_free(reply);
            return -1;
        }
        if (hdr.type == PV_MSG_ERROR) {
            char *msg = pv_msg_strdup(&reply->msg, PV_T_MESSAGE);
            int ge = (int)pv_msg_i64(&reply->msg, PV_T_ERRNO, 0);
            if (guest_errno)
                *guest_errno = ge;
            vm_reply_free(reply);
            /* a worker is named with its current uid: that decides most
             * refusals (this may ask the worker, so the reply is done with) */
            bool refresh = ge == EACCES || ge == EPERM;
            if (msg && strncmp(msg, "worker ", 7) == 0) /* the agent named the worker already */
                snprintf(who, sizeof(who), "VM '%s'", vm->name);
            else
                vm_who(vm, refresh, who, sizeof(who));
            snprintf(err, errlen, "%s: %s", who, msg ? msg : "error");
            free(msg);
            return -1;
        }
        return 0;
    }
dead:
    mark_dead(vm, err);
    append_console(vm, err, errlen);
    free(vm->dead_reason);
    vm->dead_reason = xstrdup(err);
    vm_kill(vm);
    vm->state = VM_DEAD;
    return -1;
}

static bool wait_exit(pv_vm *vm, int64_t deadline);

/* ---- lifecycle ---- */

int vm_console_write(pv_vm *vm, const void *data, size_t len, int64_t timeout_ms, char *err, size_t errlen)
{
    char *path = xasprintf("%s/console.sock", vm->dir);
    int fd = connect_unix(path);
    free(path);
    if (fd < 0) {
        snprintf(err, errlen, "VM '%s': cannot connect to the serial console: %s", vm->name, strerror(errno));
        return -1;
    }
    int64_t deadline = timeout_ms > 0 ? now_ms() + timeout_ms : -1;
    if (global_deadline > 0 && (deadline < 0 || deadline > global_deadline))
        deadline = global_deadline;
    int rc = 0;
    size_t total = len;
    const char *p = data;
    while (len) {
        struct pollfd wp = {fd, POLLOUT, 0};
        int wait = deadline < 0 ? -1 : (int)(deadline - now_ms());
        if (deadline >= 0 && wait <= 0) {
            snprintf(err, errlen, "VM '%s': console write: timed out after %lld ms with %zu of %zu bytes written",
                     vm->name, (long long)(timeout_ms > 0 ? timeout_ms : 0), total - len, total);
            rc = -1;
            break;
        }
        if (poll(&wp, 1, wait) <= 0)
            continue;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            snprintf(err, errlen, "VM '%s': console write: %s", vm->name, strerror(errno));
            rc = -1;
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    /* give QEMU a moment to take the bytes before the connection closes;
     * output echoed to us meanwhile is already in the log file */
    char sink[4096];
    struct pollfd pf = {fd, POLLIN, 0};
    for (int i = 0; i < 5 && poll(&pf, 1, 10) > 0 && read(fd, sink, sizeof(sink)) > 0; i++) {
    }
    close(fd);
    return rc;
}


int vm_pause(pv_vm *vm, char *err, size_t errlen)
{
    if (vm_qmp(vm, "stop", NULL, NULL, err, errlen) != 0)
        return -1;
    vm->state = VM_PAUSED;
    return 0;
}

int vm_resume(pv_vm *vm, char *err, size_t errlen)
{
    if (vm_qmp(vm, "cont", NULL, NULL, err, errlen) != 0)
        return -1;
    vm->state = VM_BOOTED;
    return 0;
}

/* Warm reboot. QEMU runs with -no-reboot (so a guest "reboot" ends it);
 * for the duration of the reset the reboot action becomes "reset". */
int vm_reset(pv_vm *vm, char *err, size_t errlen)
{
    if (vm_qmp(vm, "set-action", json_pack("{s:s}", "reboot", "reset"), NULL, err, errlen) != 0 ||
        vm_qmp(vm, "system_reset", NULL, NULL, err, errlen) != 0)
        return -1;
    /* everything on the old connection is void: its replies, its channels */
    vm->in_len = 0;
    chans_end(vm);
    int rc = wait_ready(vm, now_ms() + vm->profile.boot_timeout_ms, err, errlen);
    if (rc != 0) {
        append_console(vm, err, errlen);
        vm_kill(vm);
        mark_dead(vm, err);
        return -1;
    }
    return vm_qmp(vm, "set-action", json_pack("{s:s}", "reboot", "shutdown"), NULL, err, errlen);
}

/* ACPI power button: the guest's init shuts down and powers off.
 * A press is an input event for whoever has the button's event device
 * open at that moment; right after boot() the guest's handler (acpid in
 * the default image) may not run yet and the press is lost. So the button
 * is pressed again every POWER_BUTTON_REPEAT_MS until QEMU exits or the
 * deadline passes; a guest already shutting down ignores the extra ones. */
#define POWER_BUTTON_REPEAT_MS 1000
int vm_power_button(pv_vm *vm, char *err, size_t errlen)
{
    if (vm->profile.no_acpi) {
        snprintf(err, errlen,
                 "VM '%s': power_button needs ACPI, which profile '%s' turns off (acpi = false); remove that "
                 "line to get the power button",
                 vm->name, vm->profile.name);
        return -1;
    }
    int64_t deadline = now_ms() + SHUTDOWN_TIMEOUT_MS;
    int presses = 0;
    bool off = false;
    while (!off && now_ms() < deadline) {
        if (vm_qmp(vm, "system_powerdown", NULL, NULL, err, errlen) != 0) {
            if (qemu_exited(vm, NULL)) { /* it powered off while we pressed again */
                off = true;
                break;
            }
            return -1;
        }
        presses++;
        int64_t until = now_ms() + POWER_BUTTON_REPEAT_MS;
        off = wait_exit(vm, until < deadline ? until : deadline);
    }
    if (!off) {
        char *tail = vm_console_tail(vm, 10);
        snprintf(err, errlen,
                 "VM '%s': the guest did not power off within %d s of the ACPI power button (pressed %d times; "
                 "does its init handle it?); QEMU killed. Last console lines:\n%s",
                 vm->name, SHUTDOWN_TIMEOUT_MS / 1000, presses, tail);
        free(tail);
        vm_kill(vm);
        vm->state = VM_SHUTDOWN;
        return -1;
    }
    vm_kill(vm);
    vm->state = VM_SHUTDOWN;
    return 0;
}

/* ---- teardown ---- */

static bool wait_exit(pv_vm *vm, int64_t deadline)
{
    while (!qemu_exited(vm, NULL)) {
        if (now_ms() > deadline)
            return false;
        if (vm->pidfd >= 0) {
            struct pollfd p = {vm->pidfd, POLLIN, 0};
            poll(&p, 1, 50);
        } else {
            sleep_ms(5);
        }
    }
    return true;
}

int vm_shutdown(pv_vm *vm, char *err, size_t errlen)
{
    int rc = 0;
    if (vm->state == VM_BOOTED || vm->state == VM_PAUSED) {
        if (vm->state == VM_PAUSED) {
            json_t *r = qmp_command(&vm->qmp, "cont", NULL, now_ms() + QMP_TIMEOUT_MS, err, errlen);
            json_decref(r);
        }
        vm_reply reply;
        vm->chan_base = 0;
        vm_begin(vm, PV_MSG_SHUTDOWN);
        pv_put_u64(&vm->out, PV_T_POWEROFF, 1);
        if (vm_call(vm, &reply, SHUTDOWN_TIMEOUT_MS, NULL, err, errlen) == 0) {
            vm_reply_free(&reply);
            if (!wait_exit(vm, now_ms() + SHUTDOWN_TIMEOUT_MS)) {
                /* The guest acknowledged but did not power off: ask QEMU. */
                char qerr[256];
                json_decref(qmp_command(&vm->qmp, "quit", NULL, now_ms() + QMP_TIMEOUT_MS, qerr, sizeof(qerr)));
                if (!wait_exit(vm, now_ms() + 2000)) {
                    snprintf(err, errlen, "VM '%s': guest did not power off within %d s; QEMU killed", vm->name,
                             SHUTDOWN_TIMEOUT_MS / 1000);
                    rc = -1;
                }
            }
        } else if (vm->state != VM_DEAD) {
            rc = -1;
        }
    }
    vm_kill(vm);
    if (vm->state != VM_DEAD)
        vm->state = VM_SHUTDOWN;
    return rc;
}

void vm_kill(pv_vm *vm)
{
    chans_end(vm);
    if (vm->ram_fd >= 0) {
        close(vm->ram_fd);
        vm->ram_fd = -1;
        unlink(vm->ram_path); /* normally unlinked already */
    }
    if (vm->qemu_pid > 0) {
        kill(vm->qemu_pid, SIGKILL);
        waitpid(vm->qemu_pid, NULL, 0);
        vm->qemu_pid = -1;
    }
    if (vm->pidfd >= 0)
        close(vm->pidfd);
    vm->pidfd = -1;
    if (vm->agent_fd >= 0)
        close(vm->agent_fd);
    vm->agent_fd = -1;
    vm->in_len = 0;
    qmp_close(&vm->qmp);
    if (vm->dir && is_dir(vm->dir))
        rm_rf(vm->dir);
}

void vm_free(pv_vm *vm)
{
    if (!vm)
        return;
    vm_kill(vm);
    unlink(vm->console_path);
    free(vm->name);
    profile_free(&vm->profile);
    free(vm->dir);
    free(vm->console_path);
    free(vm->in);
    pv_buf_free(&vm->out);
    free(vm->agent_version);
    free(vm->dead_reason);
    free(vm->boot_warning);
    free(vm->cmdline);
    free(vm->initrd_path);
    free(vm->qemu_version);
    free(vm->ram_path);
    while (vm->chans)
        vm_chan_free(vm, vm->chans->id);
    vm_nic_free(vm);
    free(vm);
}
