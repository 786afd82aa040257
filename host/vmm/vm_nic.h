/* The virtio-net NICs of one VM (host/lua/lua_net.c decides which): the
 * QEMU arguments a boot or restore adds for them, hot-plug on machines with
 * PCI, and link state through QMP set_link so the guest sees carrier loss.
 * Kept apart from vm.c, which only asks for the arguments. */
#ifndef PROVIUM_VM_NIC_H
#define PROVIUM_VM_NIC_H
#include <stdbool.h>
#include <stddef.h>

struct pv_vm;

/* How many NICs the VM's machine can take beyond provium's own devices
 * (microvm: eight virtio-mmio transports in all; pc/q35: free PCI slots). */
int vm_nic_max(const struct pv_vm *vm);
size_t vm_nic_count(const struct pv_vm *vm);
/* Forgets every NIC (the next boot has none). */
void vm_nic_clear(struct pv_vm *vm);
/* A NIC for the next boot or restore: id names its netdev (the device is
 * "<id>-dev"), netdev is the -netdev value (with id=<id> in it), mac
 * "52:54:00:xx:xx:xx". Fails naming the VM when the machine is full. */
int vm_nic_add(struct pv_vm *vm, const char *id, const char *netdev, const char *mac, char *err, size_t errlen);
/* Hot-plugs a NIC into the running VM (pc/q35: QMP netdev_add + device_add)
 * and keeps it for later boots; microvm has no hot-plug and gets an error
 * that says what to do instead. */
int vm_nic_hotplug(struct pv_vm *vm, const char *id, const char *netdev, const char *mac, char *err, size_t errlen);
/* Removes a NIC (device_del + netdev_del when the VM runs). */
int vm_nic_unplug(struct pv_vm *vm, const char *id, char *err, size_t errlen);
/* QMP set_link on the NIC's netdev: the guest's carrier follows. */
int vm_nic_set_link(struct pv_vm *vm, const char *id, bool up, char *err, size_t errlen);
/* The QEMU arguments of every NIC, NULL-terminated (owned by the VM). */
char *const *vm_nic_argv(const struct pv_vm *vm);
void vm_nic_free(struct pv_vm *vm);
#endif
