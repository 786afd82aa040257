/* Disks of a VM: the files behind them, the QEMU block graph that serves
 * them to the guest, host-side sector access and the faults the guest sees.
 *
 * Every disk QEMU serves is the same small graph of block nodes (pvd<N> is
 * the disk's node prefix):
 *
 *   virtio-blk device  ->  pvd<N>-top (raw)  ->  filter  ->  [pvd<N>-log]  ->  pvd<N>-fmt  ->  pvd<N>-proto (file)
 *
 * The filter is a blkdebug node (guest-visible error rules), under an
 * optional throttle node (delays). Rules are fixed when a blkdebug node is
 * opened, so changing them builds a new filter and swaps it in under the top
 * node with blockdev-reopen: the guest never notices the swap. pvd<N>-log
 * (blklogwrites) exists only on disks declared with power_cut = true: it
 * records every write and flush, so a power cut can drop what was never
 * flushed. Host-side sector I/O goes through an NBD export of the node below
 * the filter, served by that same QEMU: it sees what the guest wrote, and
 * guest fault rules never touch it.
 *
 * Files live in "<vm dir>.disks/", beside the VM's scratch directory, so
 * they survive a shutdown and the next boot of the same VM sees them. */
#ifndef PROVIUM_DISK_H
#define PROVIUM_DISK_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../config/config.h"

struct pv_vm;
struct nbd_handle;

#define DISK_SECTOR 512
/* host-side faults: the reference's modes, on read_sectors/write_sectors only */
enum { DISK_HOST_EIO_READ = 1, DISK_HOST_EIO_WRITE = 2, DISK_HOST_SLOW = 4 };
#define DISK_SLOW_MS 50

typedef struct vm_disk {
    char *id;
    char *source;        /* the user's image, or NULL */
    char *file;          /* what QEMU (or local I/O) opens; NULL: modeled only */
    const char *format;  /* of file: "raw" or "qcow2" */
    int64_t size;        /* virtual size in bytes */
    bool readonly;
    bool persist;        /* file is the user's image itself */
    bool power_cut;      /* writes are logged (blklogwrites) for power_cut */
    bool hotplugged;     /* added with device_add while QEMU ran */
    bool detached;
    unsigned index;      /* node names pvd<index>-... */
    unsigned filter_gen; /* 0: the filter built at attach time, n: the n-th swap */
    bool filter_throttled;
    unsigned host_faults;
    json_t *rules;       /* guest-visible rules in force (the caller's words), array */
    bool exported;       /* NBD export added in this QEMU */
    pid_t export_pid;
    struct nbd_handle *nbd;
} vm_disk;

typedef struct vm_disks {
    vm_disk **v;
    size_t n;
    unsigned next_index;
    char *dir;          /* <vm dir>.disks */
    pid_t nbd_pid;      /* the QEMU whose NBD server is running, 0: none */
    char **args;        /* QEMU arguments built by disk_qemu_args */
} vm_disks;

/* Readies the disks a boot declares (the profile's, then the boot option's):
 * creates scratch files and overlays, checks images and formats, and refuses
 * duplicate ids and more disks than the machine has slots for (rng: the
 * boot adds a virtio RNG, which takes one). Disks kept
 * from an earlier boot of the same VM are reused as they are. */
int disk_prepare(struct pv_vm *vm, const pv_disk_spec *specs, size_t n, bool rng, char *err, size_t errlen);
/* The QEMU arguments for the disks (NULL-terminated, owned by vm->disks);
 * called by the command-line builder. Also re-arms power-cut logging. */
char *const *disk_qemu_args(const struct pv_vm *vm, bool microvm);
vm_disk *disk_find(const struct pv_vm *vm, const char *id);
/* Adds a disk while the VM runs (pc/q35: blockdev-add + device_add); on a
 * local profile only the host side exists. */
vm_disk *disk_attach(struct pv_vm *vm, const pv_disk_spec *spec, bool modeled, char *err, size_t errlen);
int disk_detach(struct pv_vm *vm, vm_disk *d, int64_t timeout_ms, char *err, size_t errlen);
/* Host-side sector I/O: bytes at byte offset off (sector aligned). */
int disk_host_read(struct pv_vm *vm, vm_disk *d, int64_t off, void *buf, size_t len, char *err, size_t errlen);
int disk_host_write(struct pv_vm *vm, vm_disk *d, int64_t off, const void *buf, size_t len, char *err,
                    size_t errlen);
/* Current size in bytes (the image's live size for a local disk). */
int64_t disk_size(const vm_disk *d);
/* Replaces the guest-visible rules (an array of rule objects, stolen; NULL
 * or empty: none) by building a new filter and swapping it in. */
int disk_set_rules(struct pv_vm *vm, vm_disk *d, json_t *rules, char *err, size_t errlen);
/* Cuts power: kills QEMU, then rewrites every power_cut disk of the VM as
 * it was after the last flush. *lost gets the number of writes dropped. */
int disk_power_cut(struct pv_vm *vm, long *lost, long *kept, char *err, size_t errlen);
/* Drops NBD connections and exports (QEMU stopped or is about to). */
void disk_forget_qemu(struct pv_vm *vm);
/* A snapshot: copies the VM's private disk files into dir and lists the
 * disks in meta (key "disks"). A restore: rebuilds the disk set from meta
 * and copies the files back, before QEMU starts. */
int disk_save(struct pv_vm *vm, const char *dir, json_t *meta, char *err, size_t errlen);
int disk_load(struct pv_vm *vm, const char *dir, json_t *meta, char *err, size_t errlen);
void disk_free_all(struct pv_vm *vm);
/* Ends the NBD exports: a migration cannot inactivate an image a writable
 * export holds (the next host I/O adds them again). */
void disk_drop_exports(struct pv_vm *vm);

/* Internal to the disk files. */
vm_disks *disk_set(struct pv_vm *vm); /* vm->disks, made on first use */
void disk_add(vm_disks *ds, vm_disk *d);
void disk_free(vm_disk *d);
void disk_forget_export(struct pv_vm *vm, vm_disk *d);
void disk_close_nbd(vm_disk *d);
/* Deletes the swapped-in filter node of d (and its throttle group), if any. */
void disk_drop_filter(struct pv_vm *vm, vm_disk *d);
int disk_qmp(struct pv_vm *vm, const char *cmd, json_t *args, char *err, size_t errlen);
char *disk_node(const vm_disk *d, const char *part);
json_t *disk_filter_json(const vm_disk *d, const char *node_name, const json_t *rules, char *err, size_t errlen);
#endif
