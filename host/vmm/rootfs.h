/* The profile's root disk (rootfs): checking the image, the copy-on-write
 * overlay of rootfs_writable, the QEMU drive and the kernel command line of
 * a disk boot. vm.c calls these at fixed points; nothing else here touches
 * the VM. See docs/user-guide.md, "Booting from a root filesystem image". */
#ifndef PROVIUM_ROOTFS_H
#define PROVIUM_ROOTFS_H
#include <stdbool.h>
#include <stddef.h>

#include "../config/config.h"
#include "../util/util.h"

struct pv_vm;

/* The guest's name for the root disk: the first virtio block device. */
#define ROOTFS_GUEST_DEVICE "/dev/vda"
/* The overlay file of rootfs_writable, inside the VM's scratch directory. */
#define ROOTFS_OVERLAY_NAME "rootfs.qcow2"

/* A rootfs-only profile: the kernel boots from the disk (init= semantics)
 * with the agent's shim as its only initramfs. */
bool rootfs_boots_from_disk(const pv_profile *p);

/* Before a boot: the image must be a readable, non-empty regular file in
 * raw format; with rootfs_writable a fresh qcow2 overlay is made in the
 * VM's scratch directory (the image itself is never opened for writing).
 * 0, or -1 with err naming the VM, the profile, the image and the cause. */
int rootfs_prepare(struct pv_vm *vm, char *err, size_t errlen);

/* The last part of the kernel command line: how init is found. Disk boot:
 * "root=/dev/vda ro|rw init=INIT" (root= only when the line has none yet);
 * otherwise "rdinit=/provium-wrapper provium.init=INIT". */
void rootfs_add_cmdline(const pv_profile *p, strbuf *cmdline);

/* The QEMU arguments that attach the disk ("-drive", ..., "-device", ...),
 * NULL-terminated; NULL without a rootfs. Caller frees each and the list. */
char **rootfs_qemu_args(const struct pv_vm *vm, bool microvm);

/* What identifies the image's bytes for cache keys without reading them:
 * path, device, inode, size, mtime and ctime, and the writable flag
 * (a new string; "-" without a rootfs). */
char *rootfs_identity(const pv_profile *p);

/* Snapshots (snapshot.c): save records the image's identity in the snapshot
 * directory and, with rootfs_writable, copies the overlay (the VM is stopped
 * and QEMU has flushed it); restore refuses a snapshot of another image, or
 * of a VM with(out) a root disk, and puts the saved overlay in the VM's
 * scratch directory before QEMU opens it. 0, or -1 with err. */
int rootfs_snapshot_save(const struct pv_vm *vm, const char *dir, char *err, size_t errlen);
int rootfs_snapshot_restore(struct pv_vm *vm, const char *dir, char *err, size_t errlen);

/* A boot failure: when the console log has the wrapper's own error (the
 * root device never appeared, it could not be mounted), appends it to msg as
 * "\n  guest: provium-wrapper: ...", so the host error quotes its cause. */
void rootfs_quote_wrapper_error(const char *console_path, strbuf *msg);
#endif
