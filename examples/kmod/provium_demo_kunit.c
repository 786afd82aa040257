// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit suite for provium_demo's pure helpers (provium_demo_xform.h).
 * Built only against a kernel with CONFIG_KUNIT (see Kbuild); loaded by
 * kmod.test.lua with vm:kunit, which reports each case as a sub-test.
 */
#include <kunit/test.h>
#include <linux/module.h>
#include <linux/string.h>

#include "provium_demo_xform.h"

static void upper_maps_ascii_letters(struct kunit *test)
{
	char buf[] = "Hello, world 42";

	xform_upper(buf, strlen(buf));
	KUNIT_EXPECT_STREQ(test, buf, "HELLO, WORLD 42");
}

static void upper_leaves_other_bytes(struct kunit *test)
{
	/* Latin-1 e-acute and a NUL inside the range stay as they are */
	char buf[] = { 'a', (char)0xe9, 0, 'z' };

	xform_upper(buf, sizeof(buf));
	KUNIT_EXPECT_EQ(test, buf[0], 'A');
	KUNIT_EXPECT_EQ(test, (unsigned char)buf[1], 0xe9);
	KUNIT_EXPECT_EQ(test, buf[2], 0);
	KUNIT_EXPECT_EQ(test, buf[3], 'Z');
}

static void upper_of_nothing(struct kunit *test)
{
	char buf[] = "x";

	xform_upper(buf, 0);
	KUNIT_EXPECT_STREQ(test, buf, "x");
}

static void reverse_even_and_odd(struct kunit *test)
{
	char even[] = "abcd", odd[] = "abcde";

	xform_reverse(even, strlen(even));
	xform_reverse(odd, strlen(odd));
	KUNIT_EXPECT_STREQ(test, even, "dcba");
	KUNIT_EXPECT_STREQ(test, odd, "edcba");
}

static void reverse_twice_is_identity(struct kunit *test)
{
	char buf[] = "provium";

	xform_reverse(buf, strlen(buf));
	xform_reverse(buf, strlen(buf));
	KUNIT_EXPECT_STREQ(test, buf, "provium");
}

static void reverse_one_byte(struct kunit *test)
{
	char buf[] = "q";

	xform_reverse(buf, 1);
	KUNIT_EXPECT_STREQ(test, buf, "q");
}

static struct kunit_case provium_demo_xform_cases[] = {
	KUNIT_CASE(upper_maps_ascii_letters),
	KUNIT_CASE(upper_leaves_other_bytes),
	KUNIT_CASE(upper_of_nothing),
	KUNIT_CASE(reverse_even_and_odd),
	KUNIT_CASE(reverse_twice_is_identity),
	KUNIT_CASE(reverse_one_byte),
	{}
};

static struct kunit_suite provium_demo_xform_suite = {
	.name = "provium_demo_xform",
	.test_cases = provium_demo_xform_cases,
};
kunit_test_suite(provium_demo_xform_suite);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("KUnit tests of provium_demo's helpers");
