/* NICs of one VM: argument lists for boot and restore, hot-plug, link state.
 * See vm_nic.h. The list outlives a shutdown on purpose: a restore must
 * start QEMU with the same devices the snapshot was taken with. */
#include "vm_nic.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_internal.h"

/* microvm has eight virtio-mmio transports; provium's virtio-serial and a
 * seeded virtio-rng take one each (and the rootfs disk one more). */
#define MICROVM_TRANSPORTS 8
/* pc/q35 have 32 slots on bus 0; the host bridge, the south bridge and
 * provium's own devices take some, and a margin is left for disks. */
#define PCI_NIC_SLOTS 24

typedef struct vm_nic {
    char *id, *netdev, *mac;
} vm_nic;

struct vm_nics {
    vm_nic *v;
    size_t n;
    char **argv; /* rebuilt on every change */
};

static bool is_microvm(const pv_vm *vm) { return strcmp(vm_machine(&vm->profile), "microvm") == 0; }

int vm_nic_max(const pv_vm *vm)
{
    if (vm->profile.local)
        return 0; /* the agent runs as a host process: no machine, no NIC */
    if (is_microvm(vm))
        return MICROVM_TRANSPORTS - 2 - (vm->profile.rootfs ? 1 : 0);
    return PCI_NIC_SLOTS;
}

size_t vm_nic_count(const pv_vm *vm) { return vm->nics ? vm->nics->n : 0; }

static char *device_of(const pv_vm *vm, const vm_nic *n)
{
    return xasprintf("%s,netdev=%s,mac=%s,id=%s-dev", is_microvm(vm) ? "virtio-net-device" : "virtio-net-pci",
                     n->id, n->mac, n->id);
}

static void rebuild_argv(pv_vm *vm)
{
    struct vm_nics *s = vm->nics;
    for (char **a = s->argv; a && *a; a++)
        free(*a);
    free(s->argv);
    s->argv = xcalloc(s->n * 4 + 1, sizeof(char *));
    for (size_t i = 0; i < s->n; i++) {
        s->argv[i * 4] = xstrdup("-netdev");
        s->argv[i * 4 + 1] = xstrdup(s->v[i].netdev);
        s->argv[i * 4 + 2] = xstrdup("-device");
        s->argv[i * 4 + 3] = device_of(vm, &s->v[i]);
    }
}

char *const *vm_nic_argv(const pv_vm *vm) { return vm->nics ? vm->nics->argv : NULL; }

static vm_nic *find(pv_vm *vm, const char *id)
{
    for (size_t i = 0; vm->nics && i < vm->nics->n; i++)
        if (strcmp(vm->nics->v[i].id, id) == 0)
            return &vm->nics->v[i];
    return NULL;
}

int vm_nic_add(pv_vm *vm, const char *id, const char *netdev, const char *mac, char *err, size_t errlen)
{
    if (find(vm, id)) {
        snprintf(err, errlen, "VM '%s': a NIC with id '%s' already exists", vm->name, id);
        return -1;
    }
    if ((int)vm_nic_count(vm) >= vm_nic_max(vm)) {
        snprintf(err, errlen,
                 "VM '%s': too many NICs: machine '%s' takes at most %d (%s); attach the VM to fewer bridges, or "
                 "declare fewer bridges before it boots",
                 vm->name, vm_machine(&vm->profile), vm_nic_max(vm),
                 is_microvm(vm) ? "microvm has 8 virtio-mmio slots and provium's own devices use some"
                                : "free PCI slots on bus 0");
        return -1;
    }
    if (!vm->nics)
        vm->nics = xcalloc(1, sizeof(*vm->nics));
    struct vm_nics *s = vm->nics;
    s->v = xrealloc(s->v, (s->n + 1) * sizeof(vm_nic));
    s->v[s->n++] = (vm_nic){xstrdup(id), xstrdup(netdev), xstrdup(mac)};
    rebuild_argv(vm);
    return 0;
}

/* A -netdev value ("stream,id=x,server=off,addr.type=unix,addr.path=/p") as
 * the structured arguments of QMP netdev_add: QEMU 7.2's HMP netdev_add
 * cannot express the nested addr of a stream netdev. Dotted keys nest,
 * on/off are booleans, ",," is a literal comma. */
static json_t *netdev_json(const char *netdev)
{
    json_t *root = json_object();
    strbuf item;
    sb_init(&item);
    for (const char *p = netdev;; p++) {
        if (*p == ',' && p[1] == ',') {
            sb_add(&item, ",", 1);
            p++;
            continue;
        }
        if (*p && *p != ',') {
            sb_add(&item, p, 1);
            continue;
        }
        char *eq = strchr(item.s ? item.s : "", '=');
        if (item.len && !eq) {
            json_object_set_new(root, "type", json_string(item.s));
        } else if (eq) {
            *eq = 0;
            const char *v = eq + 1;
            json_t *val = strcmp(v, "on") == 0 ? json_true() : strcmp(v, "off") == 0 ? json_false() : json_string(v);
            json_t *obj = root;
            char *key = item.s;
            for (char *dot; (dot = strchr(key, '.')); key = dot + 1) {
                *dot = 0;
                json_t *sub = json_object_get(obj, key);
                if (!json_is_object(sub)) {
                    sub = json_object();
                    json_object_set_new(obj, key, sub);
                }
                obj = sub;
            }
            json_object_set_new(obj, key, val);
        }
        sb_free(&item);
        sb_init(&item);
        if (!*p)
            break;
    }
    sb_free(&item);
    return root;
}

int vm_nic_hotplug(pv_vm *vm, const char *id, const char *netdev, const char *mac, char *err, size_t errlen)
{
    if (vm->profile.local) {
        snprintf(err, errlen, "VM '%s': cannot add a NIC: profile '%s' runs the agent as a host process (no machine)",
                 vm->name, vm->profile.name);
        return -1;
    }
    if (is_microvm(vm)) {
        snprintf(err, errlen,
                 "VM '%s': cannot add a NIC to the running VM: machine 'microvm' has no hot-plug; declare the bridge "
                 "before the VM boots (its NIC is then made at boot), or use a profile on machine 'pc'",
                 vm->name);
        return -1;
    }
    if (vm_nic_add(vm, id, netdev, mac, err, errlen) != 0)
        return -1;
    vm_nic *n = find(vm, id);
    int rc = vm_qmp(vm, "netdev_add", netdev_json(netdev), NULL, err, errlen);
    if (rc == 0) {
        char *dev = xasprintf("%s-dev", id);
        rc = vm_qmp(vm, "device_add",
                    json_pack("{s:s,s:s,s:s,s:s}", "driver", "virtio-net-pci", "netdev", id, "mac", n->mac, "id", dev),
                    NULL, err, errlen);
        free(dev);
        if (rc != 0) {
            char ignored[256];
            vm_qmp(vm, "netdev_del", json_pack("{s:s}", "id", id), NULL, ignored, sizeof(ignored));
        }
    }
    if (rc != 0) {
        char ignored[256];
        vm_nic_unplug(vm, id, ignored, sizeof(ignored));
    }
    return rc;
}

int vm_nic_unplug(pv_vm *vm, const char *id, char *err, size_t errlen)
{
    vm_nic *n = find(vm, id);
    if (!n) {
        snprintf(err, errlen, "VM '%s': no NIC with id '%s'", vm->name, id);
        return -1;
    }
    int rc = 0;
    if ((vm->state == VM_BOOTED || vm->state == VM_PAUSED) && !is_microvm(vm)) {
        char *dev = xasprintf("%s-dev", id);
        rc = vm_qmp(vm, "device_del", json_pack("{s:s}", "id", dev), NULL, err, errlen);
        free(dev);
        char ignored[256];
        vm_qmp(vm, "netdev_del", json_pack("{s:s}", "id", id), NULL, ignored, sizeof(ignored));
    }
    struct vm_nics *s = vm->nics;
    free(n->id);
    free(n->netdev);
    free(n->mac);
    size_t i = (size_t)(n - s->v);
    memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(vm_nic));
    s->n--;
    rebuild_argv(vm);
    return rc;
}

int vm_nic_set_link(pv_vm *vm, const char *id, bool up, char *err, size_t errlen)
{
    if (!find(vm, id)) {
        snprintf(err, errlen, "VM '%s': set_link: no NIC with id '%s'", vm->name, id);
        return -1;
    }
    return vm_qmp(vm, "set_link", json_pack("{s:s,s:b}", "name", id, "up", up), NULL, err, errlen);
}

void vm_nic_clear(pv_vm *vm)
{
    struct vm_nics *s = vm->nics;
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        free(s->v[i].id);
        free(s->v[i].netdev);
        free(s->v[i].mac);
    }
    s->n = 0;
    rebuild_argv(vm);
}

void vm_nic_free(pv_vm *vm)
{
    if (!vm->nics)
        return;
    vm_nic_clear(vm);
    free(vm->nics->argv);
    free(vm->nics->v);
    free(vm->nics);
    vm->nics = NULL;
}
