/* The resource pool that test files reserve from: memory and vCPUs.
 *
 * Every running file holds a reservation. A file without a claim holds the
 * default profile's size, or what its booted VMs use if that is more; a
 * file with provium:claim holds exactly its claim and boots within it. A
 * request that does not fit waits, in FIFO order, and waiting for the pool
 * does not count against the file's timeout. When every running file waits
 * and one of them holds booted VMs while it waits, nothing would ever be
 * given back: the newest waiting boot then fails (break_deadlock). A
 * file's spare QEMUs (host/vmm/qpool.c) count like VMs of their memory but
 * are only granted from free room, at once or not at all.
 *
 * The pool is sized from the host (memory, CPUs) and the options; CPU
 * pressure (PSI) can hold back new files. Answers go to the child over its
 * control socket (child_reply); pool_state events go to --save-events. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run.h"

/* ---------------------------------------------------------------- the host */

int64_t host_memory_bytes(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = 0;
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "MemTotal: %lld kB", &kb) == 1)
                break;
        fclose(f);
    }
    if (kb > 0)
        return (int64_t)kb * 1024;
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (int64_t)pages * size : (int64_t)4 << 30;
}

int host_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double psi_cpu_some_avg10(void)
{
    const char *path = getenv("PROVIUM_PSI_FILE"); /* tests point this at a fake */
    FILE *f = fopen(path && *path ? path : "/proc/pressure/cpu", "r");
    if (!f)
        return -1;
    char line[256];
    double v = -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "some avg10=%lf", &v) == 1)
            break;
    fclose(f);
    return v;
}

/* ---------------------------------------------------------------- sizing */

int pool_init(pool_state *p, const pv_config *cfg, const run_opts *o)
{
    *p = (pool_state){0};
    p->total.mem = o->pool_mem ? o->pool_mem : (int64_t)(host_memory_bytes() * 0.8);
    double over = o->overcommit > 0 ? o->overcommit : 1.0;
    over = over < 0.5 ? 0.5 : over > 8 ? 8 : over;
    p->total.cpus = (o->pool_cpus > 0 ? o->pool_cpus : host_cpu_count()) * over;
    const pv_profile *dp = config_profile(cfg, "default");
    p->deflt.mem = dp && dp->memory ? dp->memory : PV_DEFAULT_MEMORY;
    p->deflt.cpus = dp && dp->cpus ? dp->cpus : 1;
    p->jobs = o->jobs;
    const char *psi = getenv("PROVIUM_PSI_THRESHOLD");
    p->psi_threshold = psi && *psi ? (strcmp(psi, "off") == 0 ? 0 : atof(psi)) : 90;
    if (pool_fits(p, p->deflt))
        return 0;
    char *a = amount_text(p->total), *b = amount_text(p->deflt);
    fprintf(stderr, "provium: the pool (%s) cannot hold one default VM (%s); raise --mem / --cpus\n", a, b);
    free(a);
    free(b);
    return 2;
}

/* ---------------------------------------------------------------- amounts and holds */

json_t *amount_json(pool_amount a)
{
    return json_pack("{s:I,s:f}", "memory_bytes", (json_int_t)a.mem, "cpus", a.cpus);
}

bool pool_fits(const pool_state *p, pool_amount a)
{
    return p->used.mem + a.mem <= p->total.mem && p->used.cpus + a.cpus <= p->total.cpus + 1e-9;
}

void pool_emit(const pool_state *p)
{
    if (!events_enabled())
        return;
    pool_amount avail = {p->total.mem - p->used.mem, p->total.cpus - p->used.cpus};
    events_emit("pool_state",
                json_pack("{s:o,s:o,s:o,s:i}", "used", amount_json(p->used), "available", amount_json(avail), "total",
                          amount_json(p->total), "running", p->running),
                0);
}

void pool_take(pool_state *p, file_run *f, pool_amount a)
{
    p->used.mem += a.mem;
    p->used.cpus += a.cpus;
    f->held = a;
}

void pool_give_back(pool_state *p, file_run *f)
{
    p->used.mem -= f->held.mem;
    p->used.cpus -= f->held.cpus;
    if (p->used.cpus < 1e-9)
        p->used.cpus = 0;
    f->held = (pool_amount){0, 0};
}

char *amount_text(pool_amount a)
{
    return xasprintf("%lld MiB, %g vCPUs", (long long)(a.mem >> 20), a.cpus);
}

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
    pool_give_back(p, f);
    pool_take(p, f, held);
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
void pool_boot_request(file_run *f, pool_state *pool, const char *name, pool_amount vm)
{
    pool_amount after = amount_add(f->live, vm);
    char *msg = NULL;
    if (f->claimed) {
        if (amount_within(after, f->want)) {
            f->live = after;
            child_reply(f, "ok");
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
            child_reply(f, "ok");
            pool_emit(pool);
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
    child_reply(f, msg);
    free(msg);
}

/* A VM of the file is gone: an unclaimed file gives back what it no longer needs. */
void pool_boot_release(file_run *f, pool_state *pool, pool_amount vm)
{
    f->live.mem = f->live.mem > vm.mem ? f->live.mem - vm.mem : 0;
    f->live.cpus = f->live.cpus > vm.cpus + 1e-9 ? f->live.cpus - vm.cpus : 0;
    if (!f->claimed && !f->claim_pending) {
        hold(pool, f, unclaimed_hold(pool, f->live));
        pool_emit(pool);
    }
}

/* A spare is charged like a VM (pool_boot_release gives it back), but only
 * from room that is free: within a claim, or in an unclaimed file's hold if
 * the pool still has room for one more file at its default reservation
 * afterwards and no boot of this file waits. */
void pool_spare_request(file_run *f, pool_state *pool, pool_amount spare)
{
    pool_amount after = amount_add(f->live, spare);
    bool ok;
    if (f->claimed)
        ok = amount_within(after, f->want);
    else if (f->claim_pending || f->boot_pending)
        ok = false;
    else {
        pool_amount held = unclaimed_hold(pool, after);
        pool_amount with_next = {held.mem + pool->deflt.mem, held.cpus};
        ok = held.mem <= pool->total.mem && fits_instead(pool, f, with_next);
        if (ok)
            hold(pool, f, held);
    }
    if (ok) {
        f->live = after;
        pool_emit(pool);
    }
    child_reply(f, ok ? "ok" : "err no room for a spare QEMU");
}

/* A claim replaces the default reservation; it waits for room in
 * pool_grant_waiting, or is refused at once when it can never fit. */
void pool_claim_request(file_run *f, pool_state *pool, pool_amount want)
{
    if (want.mem > pool->total.mem || want.cpus > pool->total.cpus + 1e-9) {
        char *w = amount_text(want), *tot = amount_text(pool->total);
        char *msg = xasprintf("err provium:claim: the claim (%s) can never fit the pool (%s); "
                              "raise --mem / --cpus / --cpu-overcommit or claim less",
                              w, tot);
        child_reply(f, msg);
        events_emit("claim_refused",
                    json_pack("{s:s,s:o,s:o}", "path", f->shown, "amount", amount_json(want), "pool",
                              amount_json(pool->total)),
                    0);
        free(msg);
        free(w);
        free(tot);
    } else if (f->claimed || f->claim_pending) {
        child_reply(f, "err provium:claim: claim already taken");
    } else {
        pool_give_back(pool, f);
        f->want = want;
        f->claim_pending = true;
        f->blocked_noted = false;
        f->wait_started = now_s();
    }
}

/* ---------------------------------------------------------------- waiting requests */

void pool_note_blocked(file_run *f, pool_amount want, const char *reason)
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
        child_reply(oldest, "ok");
        changed = true;
    }
    for (size_t i = 0; i < n; i++)
        if (runs[i].phase == F_RUNNING && runs[i].boot_pending)
            pool_note_blocked(&runs[i], amount_add(runs[i].live, runs[i].boot_vm), "pool_full");
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
    child_reply(victim, msg);
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

bool pool_grant_waiting(file_run *runs, size_t n, pool_state *pool, bool *changed)
{
    *changed = grant_boots(runs, n, pool);
    bool boot_waiting = false;
    for (size_t i = 0; i < n; i++) {
        file_run *f = &runs[i];
        if (f->phase != F_RUNNING)
            continue;
        boot_waiting = boot_waiting || f->boot_pending;
        if (!f->claim_pending)
            continue;
        if (!pool_fits(pool, f->want)) {
            pool_note_blocked(f, f->want, "pool_full");
            break_deadlock(runs, n, pool);
            return true;
        }
        pool_take(pool, f, f->want);
        f->claim_pending = false;
        f->claimed = true;
        /* waiting for the pool does not count against the file's timeout */
        f->deadline_base += now_s() - f->wait_started;
        events_emit("claim_acquired", json_pack("{s:s,s:o}", "path", f->shown, "amount", amount_json(f->want)), 0);
        child_reply(f, "ok");
        *changed = true;
    }
    if (boot_waiting)
        break_deadlock(runs, n, pool);
    return boot_waiting;
}

const char *pool_admit(const pool_state *p)
{
    if (p->jobs && p->running >= p->jobs)
        return "jobs_limit";
    if (!pool_fits(p, p->deflt))
        return "pool_full";
    if (p->running > 0 && psi_high(p))
        return "psi_pressure";
    return NULL;
}
