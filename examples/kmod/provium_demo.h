/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * provium_demo.h - user/kernel interface of the provium_demo misc device.
 *
 * Shared by the module (provium_demo.c) and by C programs that talk to
 * /dev/provium_demo. Only <linux/types.h> and <linux/ioctl.h> are needed, and
 * both exist in the kernel and in the UAPI headers, so this file compiles on
 * either side.
 *
 * Lua tests (kmod.test.lua) cannot include this file. They rebuild the same
 * numbers and layouts by hand; the values below are what they must match:
 *
 *   ioctl number = dir << 30 | size << 16 | type << 8 | nr
 *                  (dir: 0 none, 1 write (_IOW), 2 read (_IOR), 3 both)
 *
 *   PROVIUM_DEMO_IOC_GET_STATS  _IOR('P', 1, 24 bytes)  = 0x80185001
 *   PROVIUM_DEMO_IOC_XFORM      _IOWR('P', 2, 16 bytes) = 0xC0105002
 *
 *   struct provium_demo_stats    provium:pack/unpack format "<I8I8I4I4"
 *   struct provium_demo_xform    provium:pack/unpack format "<I8I4I4"
 */
#ifndef PROVIUM_DEMO_H
#define PROVIUM_DEMO_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define PROVIUM_DEMO_DEVICE "provium_demo" /* appears as /dev/provium_demo */

/* Capacity of the buffer each open file description owns. */
#define PROVIUM_DEMO_BUF_SIZE 4096

/* Largest payload PROVIUM_DEMO_IOC_XFORM accepts. */
#define PROVIUM_DEMO_XFORM_MAX 4096

/* Output of PROVIUM_DEMO_IOC_GET_STATS: module-wide counters. 24 bytes. */
struct provium_demo_stats {
	__u64 bytes_written;  /* bytes accepted by write(), all files, ever */
	__u64 opens_total;    /* successful open() calls since load */
	__u32 open_count_now; /* files currently open */
	__u32 pad;            /* always 0 */
};

/* Transformations PROVIUM_DEMO_IOC_XFORM applies to the payload. */
enum provium_demo_xform_op {
	PROVIUM_DEMO_XFORM_UPPER = 1,   /* ASCII a-z -> A-Z, other bytes kept */
	PROVIUM_DEMO_XFORM_REVERSE = 2, /* reverse the byte order */
};

/*
 * Input of PROVIUM_DEMO_IOC_XFORM. 16 bytes. The struct itself is only read;
 * the payload it points to is read, transformed and written back in place.
 */
struct provium_demo_xform {
	__u64 user_ptr; /* address of the payload in the caller's memory */
	__u32 len;      /* payload length, 1..PROVIUM_DEMO_XFORM_MAX */
	__u32 op;       /* enum provium_demo_xform_op */
};

#define PROVIUM_DEMO_IOC_MAGIC 'P'

/* Fill a struct provium_demo_stats. Never fails except -EFAULT. */
#define PROVIUM_DEMO_IOC_GET_STATS \
	_IOR(PROVIUM_DEMO_IOC_MAGIC, 1, struct provium_demo_stats)

/*
 * Transform a user buffer in place. Returns 0, or
 *   -EINVAL  op unknown, len == 0 or len > PROVIUM_DEMO_XFORM_MAX
 *   -EFAULT  the struct or the payload is not accessible
 *   -ENOMEM  no memory for the kernel-side copy
 */
#define PROVIUM_DEMO_IOC_XFORM \
	_IOWR(PROVIUM_DEMO_IOC_MAGIC, 2, struct provium_demo_xform)

/* Fires a deliberate WARN_ON (a "cut here" kernel warning) and returns 0:
 * the kernel-health showcase of kmod.test.lua uses it to show that a
 * warning fails a test unless the test expects it. */
#define PROVIUM_DEMO_IOC_WARN \
	_IO(PROVIUM_DEMO_IOC_MAGIC, 9)

#endif /* PROVIUM_DEMO_H */
