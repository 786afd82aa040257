// SPDX-License-Identifier: GPL-2.0
/*
 * A module that breaks the kernel on request, for provium's own kernel
 * health tests: writing a word to /proc/provium_faulty makes the kernel
 * report it exactly as a buggy driver would.
 *   warn  WARN_ON(1): a "cut here" WARNING splat, the writer carries on
 *   oops  a NULL pointer dereference: an oops that kills the writer
 *   bug   BUG(): "kernel BUG at", kills the writer
 *   hang  takes a mutex it already holds: the writer blocks forever in D
 *         state, for the hung task detector
 * and, visible only on the debug kernel (KASAN, lockdep, UBSAN):
 *   kasan    writes one byte past a kmalloc'ed buffer
 *   lockdep  takes two mutexes in both orders (no real deadlock)
 *   ubsan    shifts an int by more than its width
 * A proc file, not a module parameter: parameter writes hold a lock that a
 * killed writer would never release, and the next write would hang.
 */
#include <linux/bug.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/proc_fs.h>
#include <linux/string.h>
#include <linux/uaccess.h>

static noinline void provium_faulty_warn(void)
{
	WARN_ON(1);
}

static noinline void provium_faulty_oops(void)
{
	int *volatile nowhere = NULL;

	*nowhere = 42;
}

static noinline void provium_faulty_bug(void)
{
	BUG();
}

static DEFINE_MUTEX(lock_a);
static DEFINE_MUTEX(lock_b);

static noinline void provium_faulty_hang(void)
{
	mutex_lock(&lock_a);
	mutex_lock(&lock_a);
}

static noinline void provium_faulty_kasan(void)
{
	char *volatile buf = kmalloc(8, GFP_KERNEL);

	if (buf)
		buf[8] = 1;
	kfree(buf);
}

static noinline void provium_faulty_lockdep(void)
{
	mutex_lock(&lock_b);
	mutex_lock(&lock_a);
	mutex_unlock(&lock_a);
	mutex_unlock(&lock_b);
	mutex_lock(&lock_a);
	mutex_lock(&lock_b);
	mutex_unlock(&lock_b);
	mutex_unlock(&lock_a);
}

static noinline int provium_faulty_ubsan(void)
{
	volatile int width = 40;

	return 1 << width;
}

static ssize_t trigger_write(struct file *file, const char __user *ubuf, size_t len, loff_t *pos)
{
	char word[16] = "";

	if (copy_from_user(word, ubuf, min(len, sizeof(word) - 1)))
		return -EFAULT;
	if (sysfs_streq(word, "warn"))
		provium_faulty_warn();
	else if (sysfs_streq(word, "oops"))
		provium_faulty_oops();
	else if (sysfs_streq(word, "bug"))
		provium_faulty_bug();
	else if (sysfs_streq(word, "hang"))
		provium_faulty_hang();
	else if (sysfs_streq(word, "kasan"))
		provium_faulty_kasan();
	else if (sysfs_streq(word, "lockdep"))
		provium_faulty_lockdep();
	else if (sysfs_streq(word, "ubsan"))
		pr_info("provium_faulty: %d\n", provium_faulty_ubsan());
	else
		return -EINVAL;
	return len;
}

static const struct proc_ops trigger_ops = {
	.proc_write = trigger_write,
};

static int __init provium_faulty_init(void)
{
	return proc_create("provium_faulty", 0200, NULL, &trigger_ops) ? 0 : -ENOMEM;
}

static void __exit provium_faulty_exit(void)
{
	remove_proc_entry("provium_faulty", NULL);
}

module_init(provium_faulty_init);
module_exit(provium_faulty_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Breaks the kernel on request (provium's kernel health tests)");
