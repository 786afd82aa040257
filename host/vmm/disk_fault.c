/* Disks of a VM, part three: faults the guest sees, and power cuts.
 *
 * Guest-visible rules become a QEMU blkdebug node (inject-error rules,
 * with set-state rules counting operations for "after N"), under a throttle
 * node when a rule asks for a delay. blkdebug reads its rules only when it
 * is opened, so every change builds a fresh filter over the disk's lower
 * node and swaps it in under pvd<N>-top with blockdev-reopen; the old one
 * is deleted. The guest's requests see the new rules from the next one on.
 *
 * A power cut uses the write log of QEMU's blklogwrites driver (the
 * dm-log-writes format): QEMU is killed, the disk is rebuilt from the copy
 * taken when QEMU started plus the logged writes up to the last completed
 * flush, and what came after is dropped, as a volatile write cache would
 * lose it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "disk.h"
#include "vm_internal.h"

#define MAX_BLKDEBUG_RULES 4096

static const char *event_of(const char *op)
{
    return strcmp(op, "read") == 0 ? "read_aio" : strcmp(op, "write") == 0 ? "write_aio" : "flush_to_disk";
}

/* Appends the blkdebug rules for one of our rules on one I/O type. */
static int add_rules(json_t *inject, json_t *set_state, const json_t *r, const char *op, int *state_base,
                     char *err, size_t errlen)
{
    int64_t after = json_integer_value(json_object_get(r, "after"));
    int state = 0;
    if (after > 0) {
        /* states 1..after count the operations; the error fires in after+1 */
        if (*state_base) {
            snprintf(err, errlen, "only one rule with after = N can be in force at a time");
            return -1;
        }
        for (int64_t k = 1; k <= after; k++)
            json_array_append_new(set_state, json_pack("{s:s, s:I, s:I}", "event", event_of(op), "state", k,
                                                       "new_state", k + 1));
        state = (int)after + 1;
        *state_base = state;
    }
    int64_t sector = json_object_get(r, "sector") ? json_integer_value(json_object_get(r, "sector")) : -1;
    int64_t count = sector >= 0 ? json_integer_value(json_object_get(r, "count")) : 1;
    if (count < 1)
        count = 1;
    for (int64_t s = 0; s < count; s++) {
        if (json_array_size(inject) >= MAX_BLKDEBUG_RULES) {
            snprintf(err, errlen, "the rules cover more than %d sectors; use fewer or smaller ranges",
                     MAX_BLKDEBUG_RULES);
            return -1;
        }
        json_t *e = json_pack("{s:s, s:s, s:I, s:b, s:b}", "event", event_of(op), "iotype", op, "errno",
                              json_integer_value(json_object_get(r, "errno")), "once",
                              json_is_true(json_object_get(r, "once")), "immediately", 0);
        if (sector >= 0)
            json_object_set_new(e, "sector", json_integer(sector + s));
        if (state)
            json_object_set_new(e, "state", json_integer(state));
        json_array_append_new(inject, e);
    }
    return 0;
}

json_t *disk_filter_json(const vm_disk *d, const char *node_name, const json_t *rules, char *err, size_t errlen)
{
    json_t *inject = json_array(), *set_state = json_array();
    int state_base = 0;
    int64_t delay_ms = 0;
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        const char *op = json_string_value(json_object_get(r, "op"));
        int64_t delay = json_integer_value(json_object_get(r, "delay_ms"));
        if (delay > delay_ms)
            delay_ms = delay;
        if (!json_object_get(r, "errno"))
            continue; /* a pure delay */
        int rc = 0;
        if (strcmp(op, "any") == 0 || strcmp(op, "read") == 0)
            rc |= add_rules(inject, set_state, r, "read", &state_base, err, errlen);
        if (!rc && (strcmp(op, "any") == 0 || strcmp(op, "write") == 0))
            rc |= add_rules(inject, set_state, r, "write", &state_base, err, errlen);
        if (!rc && strcmp(op, "flush") == 0)
            rc |= add_rules(inject, set_state, r, "flush", &state_base, err, errlen);
        if (rc) {
            json_decref(inject);
            json_decref(set_state);
            return NULL;
        }
    }
    char *below = disk_node(d, d->power_cut ? "log" : "fmt");
    char *dbg_name = delay_ms ? xasprintf("%s-dbg", node_name) : xstrdup(node_name);
    json_t *dbg = json_pack("{s:s, s:s, s:s}", "driver", "blkdebug", "node-name", dbg_name, "image", below);
    /* an empty list is not an empty option to QEMU's option parser: leave it out */
    if (json_array_size(inject))
        json_object_set(dbg, "inject-error", inject);
    if (json_array_size(set_state))
        json_object_set(dbg, "set-state", set_state);
    json_decref(inject);
    json_decref(set_state);
    free(below);
    free(dbg_name);
    if (!delay_ms)
        return dbg;
    /* a delay is a throttle: one request per delay interval at most */
    char *group = xasprintf("%s-tg", node_name);
    json_t *thr = json_pack("{s:s, s:s, s:s, s:o}", "driver", "throttle", "node-name", node_name, "throttle-group",
                            group, "file", dbg);
    free(group);
    return thr;
}

static void drop_group(pv_vm *vm, const char *node_name)
{
    char *group = xasprintf("%s-tg", node_name);
    char why[256];
    disk_qmp(vm, "object-del", json_pack("{s:s}", "id", group), why, sizeof(why));
    free(group);
}

void disk_drop_filter(pv_vm *vm, vm_disk *d)
{
    if (d->filter_gen == 0)
        return; /* the first filter lives inside the top node's definition */
    char name[32], why[256];
    snprintf(name, sizeof(name), "flt%u", d->filter_gen);
    char *node = disk_node(d, name);
    disk_qmp(vm, "blockdev-del", json_pack("{s:s}", "node-name", node), why, sizeof(why));
    if (d->filter_throttled)
        drop_group(vm, node);
    free(node);
}

static int64_t max_delay(const json_t *rules)
{
    int64_t m = 0;
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        int64_t v = json_integer_value(json_object_get(r, "delay_ms"));
        m = v > m ? v : m;
    }
    return m;
}

int disk_set_rules(pv_vm *vm, vm_disk *d, json_t *rules, char *err, size_t errlen)
{
    if (!rules)
        rules = json_array();
    char name[32], why[1024];
    snprintf(name, sizeof(name), "flt%u", d->filter_gen + 1);
    char *node = disk_node(d, name);
    json_t *filter = disk_filter_json(d, node, rules, why, sizeof(why));
    if (!filter) {
        snprintf(err, errlen, "disk '%s' of VM '%s': %s", d->id, vm->name, why);
        json_decref(rules);
        free(node);
        return -1;
    }
    int64_t delay = max_delay(rules);
    if (delay) {
        char *group = xasprintf("%s-tg", node);
        int64_t iops = delay >= 1000 ? 1 : 1000 / delay;
        int rc = disk_qmp(vm, "object-add",
                          /* no burst allowance: QEMU's bucket then holds a tenth of a request */
                          json_pack("{s:s, s:s, s:{s:I}}", "qom-type", "throttle-group", "id", group, "limits",
                                    "iops-total", iops),
                          err, errlen);
        free(group);
        if (rc != 0) {
            json_decref(filter);
            json_decref(rules);
            free(node);
            return -1;
        }
    }
    char *top = disk_node(d, "top");
    int rc = disk_qmp(vm, "blockdev-add", filter, err, errlen);
    if (rc == 0) {
        rc = disk_qmp(vm, "blockdev-reopen",
                      json_pack("{s:[{s:s, s:s, s:b, s:s}]}", "options", "driver", "raw", "node-name", top,
                                "read-only", d->readonly, "file", node),
                      err, errlen);
        if (rc != 0)
            disk_qmp(vm, "blockdev-del", json_pack("{s:s}", "node-name", node), why, sizeof(why));
    }
    if (rc != 0 && delay)
        drop_group(vm, node);
    free(top);
    free(node);
    if (rc != 0) {
        json_decref(rules);
        return -1;
    }
    disk_drop_filter(vm, d);
    d->filter_gen++;
    d->filter_throttled = delay > 0;
    json_decref(d->rules);
    d->rules = rules;
    return 0;
}

/* ---- power cut ---- */

#define LOG_MAGIC 0x6a736677736872ULL
#define LOG_FLUSH 1u
#define LOG_DISCARD 4u

typedef struct {
    uint64_t sector, nr_sectors, flags, data_len;
} log_entry;

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Rebuilds d's file: its base copy plus the logged writes up to the last
 * flush. Counts the writes kept and dropped. */
static int replay(pv_vm *vm, vm_disk *d, long *lost, long *kept, char *err, size_t errlen)
{
    char *logp = xasprintf("%s/%s.wlog", vm->disks->dir, d->id);
    char *basep = xasprintf("%s/%s.base", vm->disks->dir, d->id);
    int lfd = open(logp, O_RDONLY | O_CLOEXEC);
    int bfd = open(basep, O_RDWR | O_CLOEXEC);
    unsigned char sec[DISK_SECTOR];
    int rc = -1;
    const char *why = NULL;
    if (lfd < 0 || bfd < 0)
        why = "the write log or the copy taken at boot is missing";
    else if (pread(lfd, sec, sizeof(sec), 0) != (ssize_t)sizeof(sec) || le64(sec) != LOG_MAGIC)
        why = "the write log has no valid header";
    if (why)
        goto out;
    struct stat st;
    fstat(lfd, &st);
    /* pass 1: where is the last flush? */
    uint64_t pos = 1, last_flush_end = 1, nwrites = 0, writes_before_flush = 0;
    while ((int64_t)((pos + 1) * DISK_SECTOR) <= st.st_size) {
        if (pread(lfd, sec, sizeof(sec), (off_t)(pos * DISK_SECTOR)) != (ssize_t)sizeof(sec))
            break;
        log_entry e = {le64(sec), le64(sec + 8), le64(sec + 16), le64(sec + 24)};
        uint64_t data = e.flags & LOG_DISCARD ? 0 : e.nr_sectors;
        if (e.flags & ~(uint64_t)0x1f || (int64_t)((pos + 1 + data) * DISK_SECTOR) > st.st_size ||
            (e.sector + e.nr_sectors) * DISK_SECTOR > (uint64_t)d->size + DISK_SECTOR)
            break; /* past the last complete entry */
        pos += 1 + data;
        if (e.flags & LOG_FLUSH) {
            last_flush_end = pos;
            writes_before_flush = nwrites;
        } else
            nwrites++;
    }
    /* pass 2: apply what the last flush made durable */
    static char buf[1 << 20];
    for (uint64_t p = 1; p < last_flush_end;) {
        if (pread(lfd, sec, sizeof(sec), (off_t)(p * DISK_SECTOR)) != (ssize_t)sizeof(sec))
            break;
        log_entry e = {le64(sec), le64(sec + 8), le64(sec + 16), le64(sec + 24)};
        uint64_t data = e.flags & LOG_DISCARD ? 0 : e.nr_sectors;
        for (uint64_t s = 0; s < e.nr_sectors && !(e.flags & LOG_FLUSH);) {
            uint64_t n = e.nr_sectors - s < sizeof(buf) / DISK_SECTOR ? e.nr_sectors - s : sizeof(buf) / DISK_SECTOR;
            if (data && pread(lfd, buf, n * DISK_SECTOR, (off_t)((p + 1 + s) * DISK_SECTOR)) != (ssize_t)(n * DISK_SECTOR))
                break;
            if (!data)
                memset(buf, 0, n * DISK_SECTOR);
            if (pwrite(bfd, buf, n * DISK_SECTOR, (off_t)((e.sector + s) * DISK_SECTOR)) != (ssize_t)(n * DISK_SECTOR)) {
                why = strerror(errno);
                goto out;
            }
            s += n;
        }
        p += 1 + data;
    }
    if (fsync(bfd) != 0 || rename(basep, d->file) != 0) {
        why = strerror(errno);
        goto out;
    }
    *kept += (long)writes_before_flush;
    *lost += (long)(nwrites - writes_before_flush);
    rc = 0;
out:
    if (why)
        snprintf(err, errlen, "disk '%s' of VM '%s': power_cut: cannot rebuild the disk: %s", d->id, vm->name, why);
    if (lfd >= 0)
        close(lfd);
    if (bfd >= 0)
        close(bfd);
    unlink(logp);
    free(logp);
    free(basep);
    return rc;
}

int disk_power_cut(pv_vm *vm, long *lost, long *kept, char *err, size_t errlen)
{
    *lost = *kept = 0;
    disk_forget_qemu(vm);
    vm_kill(vm); /* SIGKILL: QEMU gets no chance to write anything more */
    vm->state = VM_SHUTDOWN;
    int rc = 0;
    for (size_t i = 0; vm->disks && i < vm->disks->n; i++) {
        vm_disk *d = vm->disks->v[i];
        if (d->power_cut && !d->detached && rc == 0)
            rc = replay(vm, d, lost, kept, err, errlen);
    }
    return rc;
}
