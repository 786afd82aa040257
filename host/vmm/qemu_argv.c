/* The QEMU command line of a VM and what it needs before QEMU starts: the
 * kernel command line, the machine type, the guest RAM file and the seeded
 * RNG stream. vm_qemu_argv is the one place a QEMU argv is built; vm_launch
 * (qemu_proc.c) and the benchmark both run what it returns. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "accel.h"
#include "disk.h"
#include "rootfs.h"
#include "vm_nic.h"
#include "vm_internal.h"

#define DEFAULT_CMDLINE "console=ttyS0 quiet tsc=reliable noapictimer"
/* microvm with ACPI: its ACPI tables route the PIT to the wrong IOAPIC pin
 * (no IRQ0 override), so the local APIC timer must stay on or the guest
 * has no timer tick at all. */
#define DEFAULT_CMDLINE_ACPI_MICROVM "console=ttyS0 quiet tsc=reliable"

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
    sb_adds(&b, " panic=-1 reboot=t");
    rootfs_add_cmdline(p, &b); /* rdinit=/provium-wrapper, or a disk boot's init= */
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

/* Devices only some boots have: the seeded virtio-rng, the root disk. */
static void add_optional_devices(const pv_vm *vm, const vm_boot_opts *o, bool microvm, argv_list *a)
{
    char *s;
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
    char **disk = rootfs_qemu_args(vm, microvm); /* first block device: the guest's /dev/vda */
    for (size_t i = 0; disk && disk[i]; i++) {
        arg(a, disk[i]);
        free(disk[i]);
    }
    free(disk);
    for (char *const *d = disk_qemu_args(vm, microvm); d && *d; d++) /* the disks after it (disk.h) */
        arg(a, *d);
    for (char *const *nic = vm_nic_argv(vm); nic && *nic; nic++) /* NICs on bridges (vm_nic.h) */
        arg(a, *nic);
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
    arg(a, kvm ? ACCEL_CPU_KVM : ACCEL_CPU_TCG);
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
    add_optional_devices(vm, o, microvm, a);
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

int vm_launch_settings(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline, char *err,
                       size_t errlen)
{
    vm->mem_bytes = opts->memory ? opts->memory : vm->profile.memory;
    vm->cpus = opts->cpus ? opts->cpus : vm->profile.cpus;
    char why[1024];
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
    if (accel_decide(&vm->profile, vm_machine(&vm->profile), &vm->kvm, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "VM '%s': %s", vm->name, why);
        return -1;
    }
    return 0;
}

char **vm_qemu_argv(pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline,
                    const char *ram_file, bool incoming, char *err, size_t errlen)
{
    if (mkdir_p(vm->dir, 0700) != 0) {
        snprintf(err, errlen, "VM '%s': cannot create %s: %s", vm->name, vm->dir, strerror(errno));
        return NULL;
    }
    if (vm_launch_settings(vm, opts, initrd, cmdline, err, errlen) != 0)
        return NULL;
    char why[1024];
    if (ram_file && !vm->ram_copy) {
        free(vm->ram_path);
        vm->ram_path = xstrdup(ram_file);
        vm->ram_shared = false;
        vm->ram_fd = -1;
    } else if (make_ram_file(vm, vm->mem_bytes, err, errlen) != 0) {
        return NULL;
    } else if (ram_file && ram_copy_into(ram_file, vm->ram_fd, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "VM '%s': %s", vm->name, why);
        close(vm->ram_fd);
        vm->ram_fd = -1;
        unlink(vm->ram_path);
        return NULL;
    }
    argv_list a = {0};
    build_argv(vm, opts, initrd, cmdline, &a);
    if (incoming) {
        arg(&a, "-incoming");
        arg(&a, "defer");
    }
    return a.v;
}

/* The argv vm_qemu_argv would build, without its side effects, with the
 * parts every VM has its own of (scratch directory, console log, RAM file)
 * written as placeholders: two launches with equal shapes differ only in
 * where their files are. */
char *vm_qemu_argv_shape(const pv_vm *vm, const vm_boot_opts *opts, const char *initrd, const char *cmdline,
                         const char *ram_file, bool incoming)
{
    if (opts->has_rng_seed)
        return NULL; /* its device reads a file written per launch */
    pv_vm shape = *vm; /* shallow: only read by build_argv */
    shape.dir = "@DIR@";
    shape.console_path = "@CONSOLE@";
    shape.ram_path = ram_file && !vm->ram_copy ? (char *)ram_file : "@RAM@";
    shape.ram_shared = !ram_file || vm->ram_copy;
    shape.mem_bytes = opts->memory ? opts->memory : vm->profile.memory;
    shape.cpus = opts->cpus ? opts->cpus : vm->profile.cpus;
    char why[1024];
    if (accel_decide(&vm->profile, vm_machine(&vm->profile), &shape.kvm, why, sizeof(why)) != 0)
        return NULL;
    argv_list a = {0};
    build_argv(&shape, opts, initrd, cmdline, &a);
    if (incoming) {
        arg(&a, "-incoming");
        arg(&a, "defer");
    }
    strbuf b;
    sb_init(&b);
    for (size_t i = 0; i < a.n; i++) {
        sb_adds(&b, a.v[i]);
        sb_add(&b, "\n", 1);
    }
    vm_argv_free(a.v);
    return sb_take(&b);
}

void vm_argv_free(char **argv)
{
    for (size_t i = 0; argv && argv[i]; i++)
        free(argv[i]);
    free(argv);
}
