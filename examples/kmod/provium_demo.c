// SPDX-License-Identifier: GPL-2.0
/*
 * provium_demo - a small misc character device, written to be tested.
 *
 * /dev/provium_demo gives every open file description its own 4 KiB buffer:
 *
 *   write()  appends to the buffer (partial write if it only partly fits,
 *            -ENOSPC once it is full) and leaves the file position at the
 *            end of the data;
 *   read()   returns the buffer's content from the file position;
 *   lseek()  moves within the data (SEEK_END is relative to its length);
 *   ioctl()  PROVIUM_DEMO_IOC_GET_STATS reports module-wide counters,
 *            PROVIUM_DEMO_IOC_XFORM transforms a caller buffer in place.
 *
 * Two opens never see each other's data. The interface (ioctl numbers and
 * structs) is in provium_demo.h.
 *
 * Module parameter: greeting (string), printed when the module loads.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "provium_demo.h"
#include "provium_demo_xform.h"

static char *greeting = "hello";
module_param(greeting, charp, 0444);
MODULE_PARM_DESC(greeting, "Text printed in the load message");

/* Module-wide counters, read by PROVIUM_DEMO_IOC_GET_STATS. */
static atomic64_t stat_bytes_written = ATOMIC64_INIT(0);
static atomic64_t stat_opens_total = ATOMIC64_INIT(0);
static atomic_t stat_open_now = ATOMIC_INIT(0);

/* State of one open file description (file->private_data). */
struct demo_file {
	struct mutex lock; /* protects len and data (the file may be shared) */
	size_t len;        /* bytes of data in use */
	char data[PROVIUM_DEMO_BUF_SIZE];
};

static int demo_open(struct inode *inode, struct file *file)
{
	struct demo_file *df;

	df = kzalloc(sizeof(*df), GFP_KERNEL);
	if (!df)
		return -ENOMEM;
	mutex_init(&df->lock);

	/* misc_open() set private_data to the miscdevice; replace it. */
	file->private_data = df;
	atomic64_inc(&stat_opens_total);
	atomic_inc(&stat_open_now);
	return 0;
}

static int demo_release(struct inode *inode, struct file *file)
{
	struct demo_file *df = file->private_data;

	mutex_destroy(&df->lock);
	kfree(df);
	atomic_dec(&stat_open_now);
	return 0;
}

static ssize_t demo_read(struct file *file, char __user *buf, size_t count,
			 loff_t *ppos)
{
	struct demo_file *df = file->private_data;
	ssize_t ret;

	mutex_lock(&df->lock);
	ret = simple_read_from_buffer(buf, count, ppos, df->data, df->len);
	mutex_unlock(&df->lock);
	return ret;
}

static ssize_t demo_write(struct file *file, const char __user *buf,
			  size_t count, loff_t *ppos)
{
	struct demo_file *df = file->private_data;
	size_t space, n;
	ssize_t ret;

	if (count == 0)
		return 0;

	mutex_lock(&df->lock);
	space = sizeof(df->data) - df->len;
	if (space == 0) {
		ret = -ENOSPC;
		goto out;
	}
	n = min(count, space);
	if (copy_from_user(df->data + df->len, buf, n)) {
		ret = -EFAULT;
		goto out;
	}
	df->len += n;
	*ppos = df->len; /* append semantics: position follows the data */
	atomic64_add(n, &stat_bytes_written);
	ret = n;
out:
	mutex_unlock(&df->lock);
	return ret;
}

static loff_t demo_llseek(struct file *file, loff_t offset, int whence)
{
	struct demo_file *df = file->private_data;
	loff_t ret;

	mutex_lock(&df->lock);
	ret = fixed_size_llseek(file, offset, whence, df->len);
	mutex_unlock(&df->lock);
	return ret;
}

static long demo_get_stats(void __user *arg)
{
	struct provium_demo_stats st = {
		.bytes_written = atomic64_read(&stat_bytes_written),
		.opens_total = atomic64_read(&stat_opens_total),
		.open_count_now = atomic_read(&stat_open_now),
		.pad = 0,
	};

	if (copy_to_user(arg, &st, sizeof(st)))
		return -EFAULT;
	return 0;
}

static long demo_xform(void __user *arg)
{
	struct provium_demo_xform x;
	void __user *payload;
	char *kbuf;
	long ret = 0;

	if (copy_from_user(&x, arg, sizeof(x)))
		return -EFAULT;
	if (x.op != PROVIUM_DEMO_XFORM_UPPER &&
	    x.op != PROVIUM_DEMO_XFORM_REVERSE)
		return -EINVAL;
	if (x.len == 0 || x.len > PROVIUM_DEMO_XFORM_MAX)
		return -EINVAL;

	/* The struct holds a pointer to a second user buffer: fetch it too. */
	payload = u64_to_user_ptr(x.user_ptr);
	kbuf = memdup_user(payload, x.len);
	if (IS_ERR(kbuf))
		return PTR_ERR(kbuf); /* -EFAULT for a bad pointer */

	if (x.op == PROVIUM_DEMO_XFORM_UPPER)
		xform_upper(kbuf, x.len);
	else
		xform_reverse(kbuf, x.len);

	if (copy_to_user(payload, kbuf, x.len))
		ret = -EFAULT;
	kfree(kbuf);
	return ret;
}

/* noinline: the warning's trace names this function and its line */
static noinline long demo_deliberate_warn(void)
{
	WARN_ON(1);
	return 0;
}

static long demo_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case PROVIUM_DEMO_IOC_GET_STATS:
		return demo_get_stats(uarg);
	case PROVIUM_DEMO_IOC_XFORM:
		return demo_xform(uarg);
	case PROVIUM_DEMO_IOC_WARN:
		return demo_deliberate_warn();
	default:
		return -ENOTTY; /* "inappropriate ioctl for device" */
	}
}

static const struct file_operations demo_fops = {
	.owner = THIS_MODULE,
	.open = demo_open,
	.release = demo_release,
	.read = demo_read,
	.write = demo_write,
	.llseek = demo_llseek,
	.unlocked_ioctl = demo_ioctl,
	.compat_ioctl = compat_ptr_ioctl, /* same layout for 32-bit callers */
};

static struct miscdevice demo_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = PROVIUM_DEMO_DEVICE, /* devtmpfs creates /dev/provium_demo */
	.fops = &demo_fops,
	.mode = 0666,
};

static int __init demo_init(void)
{
	int ret;

	ret = misc_register(&demo_misc);
	if (ret) {
		pr_err("misc_register failed: %d\n", ret);
		return ret;
	}
	pr_info("loaded: greeting=%s, /dev/%s (misc minor %d)\n", greeting,
		PROVIUM_DEMO_DEVICE, demo_misc.minor);
	return 0;
}

static void __exit demo_exit(void)
{
	misc_deregister(&demo_misc);
	pr_info("unloaded\n");
}

module_init(demo_init);
module_exit(demo_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("Provium-C examples");
MODULE_DESCRIPTION("Per-open buffer misc device with ioctls, tested by Provium");
