/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The pure helpers behind PROVIUM_DEMO_IOC_XFORM, shared by the module
 * (provium_demo.c) and its KUnit suite (provium_demo_kunit.c).
 */
#ifndef PROVIUM_DEMO_XFORM_H
#define PROVIUM_DEMO_XFORM_H

#include <linux/kernel.h>
#include <linux/minmax.h>

static inline void xform_upper(char *p, size_t len)
{
	size_t i;

	/* ASCII only: the kernel's toupper() would also map Latin-1 bytes. */
	for (i = 0; i < len; i++)
		if (p[i] >= 'a' && p[i] <= 'z')
			p[i] -= 'a' - 'A';
}

static inline void xform_reverse(char *p, size_t len)
{
	size_t i;

	for (i = 0; i < len / 2; i++)
		swap(p[i], p[len - 1 - i]);
}

#endif
