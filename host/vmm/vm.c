/* One VM's lifecycle: created, booted (cold, or through the boot cache and
 * snapshot.c), paused, reset, shut down, dead; and the QMP commands that
 * move it between those states. The QEMU command line is built in
 * qemu_argv.c, the process started in qemu_proc.c, the agent connection
 * driven by agent_conn.c over router.c, the console read by console.c. */
#include "vm.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"
#include "disk.h"
#include "rootfs.h"
#include "vm_nic.h"
#include "vm_internal.h"

#define SHUTDOWN_TIMEOUT_MS 15000
/* COMMAND_LINE_SIZE of x86 (and arm64) Linux, less its terminating NUL */
#define CMDLINE_MAX 2047

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

static int check_readable(const pv_vm *vm, const char *what, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return 0;
    snprintf(err, errlen, "VM '%s': profile '%s': %s %s: %s%s", vm->name, vm->profile.name, what, path,
             strerror(errno), errno == ENOENT ? " (relative paths in provium.toml resolve against its directory)" : "");
    return -1;
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
            vm_mark_dead(vm, err);
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

int vm_boot(pv_vm *vm, const vm_boot_opts *opts, char *err, size_t errlen)
{
    vm_boot_opts none = {0};
    if (!opts)
        opts = &none;
    double t0 = now_s();
    vm->boot_cached = false;
    if (vm->profile.local) {
        if (vm_launch_local(vm, err, errlen) != 0 || vm_wait_ready(vm, now_ms() + vm->profile.boot_timeout_ms, err, errlen) != 0) {
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
    if (check_readable(vm, "kernel", vm->profile.kernel, err, errlen) || rootfs_prepare(vm, err, errlen) != 0)
        return -1;
    char *initrd = shim_prepare_initrd(&vm->profile, opts->files, opts->nfiles, err, errlen);
    if (!initrd) {
        char *why = xstrdup(err);
        snprintf(err, errlen, "VM '%s': %s%s", vm->name, why,
                 strstr(why, "No such file") ? " (relative paths in provium.toml resolve against its directory)" : "");
        free(why);
        return -1;
    }
    char *cmdline = vm_build_cmdline(vm, opts);
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
    if (rc != 0 || vm_wait_ready(vm, now_ms() + vm->profile.boot_timeout_ms, err, errlen) != 0)
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
    vm_console_explain(vm, err, errlen);
    vm_kill(vm);
    vm->state = VM_CREATED;
    return -1;
}

void vm_note_clock_set(pv_vm *vm) { vm->time_pinned = true; }

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
    vm_connection_reset(vm);
    vm->agent_fd = connect_when_ready(vm, "agent.sock", now_ms() + QMP_TIMEOUT_MS, err, errlen);
    if (vm->agent_fd < 0 || vm_hello(vm, now_ms() + 30000, err, errlen) != 0) {
        vm_launch_failed(vm, err, errlen);
        vm_mark_dead(vm, err);
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
    vm_console_explain(vm, err, errlen);
    vm_kill(vm);
}


static bool wait_exit(pv_vm *vm, int64_t deadline);

/* ---- lifecycle ---- */

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
    vm_connection_reset(vm);
    if (vm_wait_ready(vm, now_ms() + vm->profile.boot_timeout_ms, err, errlen) != 0) {
        vm_die(vm, err, errlen);
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
    vm_connection_reset(vm);
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
    disk_free_all(vm);
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
    chans_free_all(&vm->chans);
    vm_nic_free(vm);
    free(vm);
}
