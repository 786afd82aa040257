/* The QEMU pool (see qpool.h).
 *
 * Most of a boot-cache restore is QEMU starting up and the guest RAM being
 * copied into the VM's own shared RAM file. Right after a VM of the file has
 * booted through the boot cache, the next boot of the same configuration is
 * likely, and its entry is known: a spare QEMU is started for that entry the
 * way the restore would start it (same argv builder, RAM copied from the
 * entry into a fresh file, the entry's console log ahead of its own), in a
 * scratch directory of its own, and waits in `-incoming defer`. The next
 * restore adopts it only when its key matches: the argv with each VM's own
 * paths as placeholders (vm_qemu_argv_shape; whatever devices other parts
 * add to the argv are compared with it) plus the identity of the RAM file
 * and the migration stream it will load. Anything else launches as before.
 *
 * While the test works (a wait for its guest that lasts over 5 ms calls
 * vm_idle_hook), a spare whose QEMU is up is connected and loads the
 * migration stream (it runs with -S: paused once loaded), then runs and is
 * sent HELLO (step). Adopting finishes whatever steps are left, moves the
 * spare's directory entries (sockets, stderr) into the VM's directory and
 * its console log over the VM's (QEMU keeps its open files, and its
 * listening sockets answer at the new paths), hands over the QMP and agent
 * connections, and the restore goes on from where the spare is: at most
 * migrate-incoming and HELLO, then the clock and the reseed, which make
 * the VM itself.
 *
 * Accounting: each spare is charged to the file like a VM of its memory
 * (no vCPUs: it does not run) through the runner, which grants it only from
 * room nobody waits for. Before any boot is charged, the spares give their
 * charge back; the one that matches the booting configuration may then be
 * adopted by that boot, and whatever is left is stopped when the boot ends.
 * The pool belongs to the process that installed it: a forked process
 * (fixture builder) sees no spares. QEMU is tied to the file's process
 * (spawn_tied, PDEATHSIG), and qpool_drain runs at the file's end.
 *
 * Off: $PROVIUM_QEMU_POOL=0, and implicitly where a restore is not a
 * boot-cache restore (a test's own snapshots), for rng_seed boots (the
 * boot cache bypasses them), and for rootfs_writable profiles (the overlay
 * would stay under the spare's path in QEMU's block layer).
 *
 * $PROVIUM_QPOOL_TRACE=FILE appends one line per spare event (tests). */
#include "qpool.h"

#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "boot_cache.h"
#include "disk.h"
#include "vm_internal.h"
#include "vm_nic.h"

#define QPOOL_MAX 8
#define QPOOL_DEFAULT 1

typedef struct {
    pv_vm *vm; /* stands in for the VM to come; owns the QEMU process */
    char *key;
    char *profile;
    int64_t mem;
    int cpus;
    bool charged;
    char *state; /* the migration stream it loads */
    int qmp_fd;  /* connected to its QMP socket, greeting not read yet (-1: not yet) */
    enum { STARTED, LOADING, GREETING } phase;
} spare;

static spare spares[QPOOL_MAX];
static int nspares;
static pid_t owner;
static qpool_charge_fn charger;
static int adopted;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    const char *path = getenv("PROVIUM_QPOOL_TRACE");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(f, "%d ", (int)getpid());
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    va_end(ap);
    fclose(f);
}

void qpool_install(qpool_charge_fn charge)
{
    owner = getpid();
    charger = charge;
}

int qpool_capacity(void)
{
    const char *env = getenv("PROVIUM_QEMU_POOL");
    if (!env || !*env)
        return QPOOL_DEFAULT;
    if (strcmp(env, "off") == 0)
        return 0;
    int n = atoi(env);
    return n < 0 ? 0 : n > QPOOL_MAX ? QPOOL_MAX : n;
}

static bool mine(void) { return owner && owner == getpid(); }

int qpool_count(void) { return mine() ? nspares : 0; }

int qpool_used(void) { return adopted; }

static void uncharge(spare *s)
{
    if (s->charged && charger)
        charger(s->mem, false);
    s->charged = false;
}

/* Stops spare i and closes the gap. */
static void drop(int i, const char *why)
{
    spare *s = &spares[i];
    trace("drop %s pid=%d (%s)", s->profile, (int)s->vm->qemu_pid, why);
    uncharge(s);
    vm_free(s->vm); /* kills QEMU, removes its RAM file, directory and console log */
    free(s->key);
    free(s->profile);
    free(s->state);
    if (s->qmp_fd >= 0)
        close(s->qmp_fd);
    memmove(&spares[i], &spares[i + 1], (size_t)(nspares - i - 1) * sizeof(spare));
    nspares--;
}

void qpool_drain(void)
{
    while (mine() && nspares > 0)
        drop(nspares - 1, "the file ends");
}

void qpool_before_boot(const char *profile, int64_t memory, int cpus)
{
    for (int i = mine() ? nspares - 1 : -1; i >= 0; i--) {
        spare *s = &spares[i];
        uncharge(s);
        if (strcmp(s->profile, profile) != 0 || s->mem != memory || s->cpus != cpus)
            drop(i, "another configuration boots");
    }
}

void qpool_settle(void)
{
    for (int i = mine() ? nspares - 1 : -1; i >= 0; i--)
        if (!spares[i].charged)
            drop(i, "not used by the boot it waited for");
}

/* The identity of a file a spare was started for: path, device, inode and
 * size, and the modification time unless the file's users touch it (an
 * unpacked RAM file is touched by every restore; its name already carries
 * the version of its ram.zst, see ramzst.c). */
static void add_file_identity(strbuf *b, const char *what, const char *path, bool with_mtime)
{
    struct stat st;
    if (!path || stat(path, &st) != 0) {
        sb_addf(b, "%s:none\n", what);
        return;
    }
    sb_addf(b, "%s:%s %llu %llu %lld", what, path, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
            (long long)st.st_size);
    if (with_mtime)
        sb_addf(b, " %lld.%09ld", (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    sb_adds(b, "\n");
}

/* What a spare must have been started with to serve this restore. */
static char *launch_key(const pv_vm *vm, const restore_plan *pl)
{
    char *argv = vm_qemu_argv_shape(vm, &pl->o, restore_plan_initrd(pl), restore_plan_cmdline(pl), pl->ram, true);
    if (!argv)
        return NULL;
    strbuf b;
    sb_init(&b);
    sb_adds(&b, argv);
    free(argv);
    add_file_identity(&b, "ram", pl->ram, false);
    add_file_identity(&b, "state", pl->state, true);
    return sb_take(&b);
}

/* The status of a spare's guest ("paused", "inmigrate"), or "" when QMP fails. */
static void spare_status(spare *s, char *status, size_t len, char *err, size_t errlen)
{
    json_t *st = NULL;
    status[0] = 0;
    if (vm_qmp(s->vm, "query-status", NULL, &st, err, errlen) != 0)
        return;
    const char *v = json_string_value(json_object_get(st, "status"));
    snprintf(status, len, "%s", v ? v : "?");
    json_decref(st);
}

/* One step of a spare that waits while the test works: once its QEMU is up
 * it is connected and loads its migration stream (-S: it stays paused);
 * once loaded it runs and is sent HELLO, so that the restore that adopts it
 * finds the agent's READY waiting. Nothing here waits for the guest. */
static bool step(spare *s, char *err, size_t errlen)
{
    if (s->phase == STARTED) {
        if (s->qmp_fd < 0) {
            /* the QMP socket is made after the others: then all listen */
            char *sock = xasprintf("%s/qmp.sock", s->vm->dir);
            s->qmp_fd = connect_unix(sock);
            free(sock);
        }
        /* QEMU greets once its main loop runs: until then, do not wait for it */
        struct pollfd p = {s->qmp_fd, POLLIN, 0};
        if (s->qmp_fd < 0 || poll(&p, 1, 0) <= 0)
            return !qemu_exited(s->vm, NULL) || (snprintf(err, errlen, "its QEMU exited"), false);
        int fd = s->qmp_fd;
        s->qmp_fd = -1;
        char *uri = restore_incoming_uri(s->state);
        int rc = vm_launch_connected(s->vm, fd, true, true, err, errlen);
        if (rc == 0)
            rc = vm_qmp(s->vm, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err, errlen);
        free(uri);
        if (rc != 0)
            return false;
        s->phase = LOADING;
        trace("load %s pid=%d", s->profile, (int)s->vm->qemu_pid);
        return true;
    }
    if (s->phase == LOADING) {
        char status[64];
        spare_status(s, status, sizeof(status), err, errlen);
        if (strcmp(status, "inmigrate") == 0)
            return true;
        if (strcmp(status, "paused") != 0) {
            if (status[0])
                snprintf(err, errlen, "its guest is '%s' after loading", status);
            return false;
        }
        if (vm_qmp(s->vm, "cont", NULL, NULL, err, errlen) != 0 || vm_hello_send(s->vm, err, errlen) != 0)
            return false;
        s->phase = GREETING;
        trace("greet %s pid=%d", s->profile, (int)s->vm->qemu_pid);
    }
    return true;
}

static void tick(void)
{
    bool more = false;
    for (int i = mine() ? nspares - 1 : -1; i >= 0; i--) {
        char err[PV_ERR_MAX];
        if (!step(&spares[i], err, sizeof(err)))
            drop(i, err);
        else
            more = more || spares[i].phase != GREETING;
    }
    if (!more)
        vm_idle_hook = NULL;
}

/* Brings the spare being adopted as far as the restore can use it. */
static int finish_spare(spare *s, const restore_plan *pl, char *err, size_t errlen)
{
    if (s->phase == STARTED) {
        int fd = s->qmp_fd;
        s->qmp_fd = -1;
        int rc = fd >= 0 ? vm_launch_connected(s->vm, fd, true, pl->ram != NULL, err, errlen)
                         : vm_launch_connect(s->vm, true, pl->ram != NULL, err, errlen);
        return rc == 0 ? QPOOL_LAUNCHED : QPOOL_NONE;
    }
    int64_t deadline = now_ms() + QMP_TIMEOUT_MS;
    while (s->phase == LOADING) {
        if (!step(s, err, errlen))
            return QPOOL_NONE;
        if (s->phase == LOADING && now_ms() > deadline) {
            snprintf(err, errlen, "it did not load its state within %d s", QMP_TIMEOUT_MS / 1000);
            return QPOOL_NONE;
        }
        if (s->phase == LOADING)
            sleep_ms(2);
    }
    return vm_wait_ready(s->vm, now_ms() + 30000, err, errlen) == 0 ? QPOOL_GREETED : QPOOL_NONE;
}

static const char *unfit(const pv_vm *vm)
{
    if (!mine())
        return "no pool in this process";
    if (qpool_capacity() == 0)
        return "PROVIUM_QEMU_POOL=0";
    if (vm->profile.local)
        return "a local profile";
    if (vm->profile.rootfs_writable)
        return "rootfs_writable";
    /* the boot cache bypasses these already; a spare would not hold their state either */
    if (vm_nic_count(vm) || vm->profile.ndisks || (vm->disks && vm->disks->n))
        return "the VM has NICs or disks";
    return NULL;
}

/* Moves every entry of the spare's directory into the VM's, and its console
 * log over the VM's (QEMU keeps writing to it through its open file). */
static int move_files(pv_vm *from, pv_vm *to)
{
    if (mkdir_p(to->dir, 0700) != 0)
        return -1;
    DIR *d = opendir(from->dir);
    if (!d)
        return -1;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *src = xasprintf("%s/%s", from->dir, e->d_name), *dst = xasprintf("%s/%s", to->dir, e->d_name);
        if (rename(src, dst) != 0)
            rc = -1;
        free(src);
        free(dst);
    }
    closedir(d);
    rmdir(from->dir);
    if (rc == 0 && rename(from->console_path, to->console_path) != 0)
        rc = -1;
    return rc;
}

int qpool_adopt(pv_vm *vm, const restore_plan *pl)
{
    if (!vm->ram_copy || unfit(vm) || nspares == 0)
        return QPOOL_NONE; /* only boot-cache restores: they copy RAM into a fresh file, as a spare does */
    char *key = launch_key(vm, pl);
    int i = 0;
    while (key && i < nspares && strcmp(spares[i].key, key) != 0)
        i++;
    free(key);
    if (!key || i == nspares) {
        trace("miss %s", vm->profile.name);
        return QPOOL_NONE;
    }
    spare s = spares[i];
    memmove(&spares[i], &spares[i + 1], (size_t)(nspares - i - 1) * sizeof(spare));
    nspares--;
    uncharge(&s); /* the VM that adopts it is charged for itself */
    char err[PV_ERR_MAX] = "its QEMU has exited";
    /* QEMU must have made its sockets (connected: it listens on all of
     * them) before they can be moved */
    int got = qemu_exited(s.vm, NULL) ? QPOOL_NONE : finish_spare(&s, pl, err, sizeof(err));
    bool ok = got != QPOOL_NONE &&
              vm_launch_settings(vm, &pl->o, restore_plan_initrd(pl), restore_plan_cmdline(pl), err, sizeof(err)) ==
                  0;
    if (ok && move_files(s.vm, vm) != 0) {
        snprintf(err, sizeof(err), "cannot move its files into %s: %s", vm->dir, strerror(errno));
        ok = false;
    }
    if (ok) {
        vm->qemu_pid = s.vm->qemu_pid;
        vm->pidfd = s.vm->pidfd;
        vm->ram_fd = s.vm->ram_fd;
        free(vm->ram_path);
        vm->ram_path = s.vm->ram_path;
        vm->ram_shared = s.vm->ram_shared;
        qmp_close(&vm->qmp);
        vm->qmp = s.vm->qmp;
        vm->agent_fd = s.vm->agent_fd;
        if (!vm->qemu_version) {
            vm->qemu_version = s.vm->qemu_version;
            s.vm->qemu_version = NULL;
        }
        if (got == QPOOL_GREETED) { /* the agent connection, READY received */
            uint8_t *in = vm->in;
            size_t cap = vm->in_cap;
            vm->in = s.vm->in;
            vm->in_len = s.vm->in_len;
            vm->in_cap = s.vm->in_cap;
            s.vm->in = in;
            s.vm->in_cap = cap;
            s.vm->in_len = 0;
            vm->next_req = s.vm->next_req;
            vm->agent_up = s.vm->agent_up;
            vm->port_closed_ms = 0;
            free(vm->agent_version);
            vm->agent_version = s.vm->agent_version;
            s.vm->agent_version = NULL;
        }
        s.vm->qemu_pid = s.vm->pidfd = s.vm->ram_fd = s.vm->agent_fd = -1;
        s.vm->qmp = (qmp_conn){.fd = -1};
        s.vm->ram_path = NULL;
        struct stat cst;
        vm->console_scanned = stat(vm->console_path, &cst) == 0 ? (int64_t)cst.st_size : 0;
        vm->oops_seen_ms = 0;
    }
    adopted += ok;
    trace("%s %s pid=%d%s%s", ok ? "use" : "unusable", vm->profile.name, (int)(ok ? vm->qemu_pid : -1),
          ok ? "" : ": ", ok ? "" : err);
    if (s.qmp_fd >= 0)
        close(s.qmp_fd);
    vm_free(s.vm);
    free(s.key);
    free(s.profile);
    free(s.state);
    return ok ? got : QPOOL_NONE;
}

void qpool_prepare(const pv_vm *vm, const char *entry)
{
    const char *why = unfit(vm);
    int cap = qpool_capacity();
    if (why || cap == 0) {
        if (mine())
            trace("none %s (%s)", vm->profile.name, why ? why : "PROVIUM_QEMU_POOL=0");
        return;
    }
    char *root = xstrdup(vm->dir), *slash = strrchr(root, '/');
    if (slash)
        *slash = 0;
    char *name = xasprintf("%s (spare)", vm->name);
    pv_vm *t = vm_new(name, &vm->profile, root);
    free(name);
    free(root);
    t->ram_copy = true;
    t->console_append = true;
    char err[PV_ERR_MAX];
    restore_plan pl;
    char *key = NULL;
    if (restore_plan_make(t, entry, &pl, err, sizeof(err)) != 0) {
        trace("none %s (%s)", vm->profile.name, err);
        vm_free(t);
        return;
    }
    if (pl.ram_copy || !pl.ram) { /* a read-only cache: its private copy would go before QEMU read it */
        trace("none %s (%s)", vm->profile.name, pl.ram ? "read-only RAM file" : "RAM in the stream");
        goto discard;
    }
    key = launch_key(t, &pl);
    bool have = false;
    for (int i = 0; key && i < nspares; i++)
        have = have || strcmp(spares[i].key, key) == 0;
    if (!key || have) {
        trace("none %s (%s)", vm->profile.name, key ? "a spare is waiting already" : "no argv to compare");
        goto discard;
    }
    while (nspares >= cap)
        drop(0, "the pool is full: the oldest spare goes");
    spare s = {t, key, xstrdup(vm->profile.name), pl.o.memory, pl.o.cpus ? pl.o.cpus : vm->profile.cpus, false,
               xstrdup(pl.state), -1, STARTED};
    if (charger && charger(s.mem, true) != 0) {
        trace("refused %s (no room in the resource pool)", vm->profile.name);
        free(s.profile);
        free(s.state);
        goto discard;
    }
    s.charged = charger != NULL;
    boot_cache_seed_console(entry, t->console_path);
    /* the RAM file is made here, filled by the new process before it execs QEMU */
    if (vm_launch_start(t, &pl.o, restore_plan_initrd(&pl), restore_plan_cmdline(&pl), NULL, pl.ram, true, err,
                        sizeof(err)) != 0) {
        trace("none %s (%s)", vm->profile.name, err);
        uncharge(&s);
        free(s.profile);
        free(s.state);
        goto discard;
    }
    restore_plan_free(&pl);
    spares[nspares++] = s;
    vm_idle_hook = tick;
    trace("start %s pid=%d", vm->profile.name, (int)t->qemu_pid);
    return;
discard:
    restore_plan_free(&pl);
    free(key);
    vm_free(t);
}
