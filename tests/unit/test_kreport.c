/* Kernel report classification on real splats (captured from the default
 * 6.1 kernel with tests/kmod/provium_faulty.ko, and, for KASAN, lockdep,
 * hung task and RCU, in the exact layout the 6.1 sources print). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/health/kreport.h"
#include "check.h"

static const char *warn_splat =
    "provium_faulty: loading out-of-tree module taints kernel.\n"
    "------------[ cut here ]------------\n"
    "WARNING: CPU: 0 PID: 24 at /b/provium_faulty.c:20 provium_faulty_warn+0x0/0x3 [provium_faulty]\n"
    "Modules linked in: provium_faulty(O)\n"
    "RIP: 0010:provium_faulty_warn+0x0/0x3 [provium_faulty]\n"
    "Call Trace:\n <TASK>\n ? trigger_write+0x45/0x94 [provium_faulty]\n </TASK>\n"
    "---[ end trace 0000000000000000 ]---\n"
    "random: crng init done\n";

static const char *oops_splat =
    "BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
    "#PF: supervisor write access in kernel mode\n"
    "Oops: 0002 [#1] PREEMPT SMP\n"
    "RIP: 0010:provium_faulty_oops+0xb/0x13 [provium_faulty]\n"
    "Call Trace:\n <TASK>\n </TASK>\n"
    "---[ end trace 0000000000000000 ]---\n";

static const char *kasan_splat =
    "==================================================================\n"
    "BUG: KASAN: slab-out-of-bounds in demo_write+0x5a/0x90 [demo]\n"
    "Write of size 1 at addr ffff888003a1c2c8 by task sh/80\n"
    "\n"
    "Memory state around the buggy address:\n"
    "==================================================================\n"
    "after\n";

static const char *lockdep_splat =
    "======================================================\n"
    "WARNING: possible circular locking dependency detected\n"
    "6.1.192 #1 Tainted: G           O\n"
    "------------------------------------------------------\n"
    "stack backtrace:\n"
    "Call Trace:\n <TASK>\n dump_stack_lvl+0x45/0x5e\n </TASK>\n";

static kreport_list scan(const char *text)
{
    kreport_list l = {0};
    kreport_scan(text, &l);
    return l;
}

TEST(warn)
{
    kreport_list l = scan(warn_splat);
    CHECK_EQ_INT(l.n, 1);
    if (l.n == 1) {
        CHECK_EQ_STR(l.v[0].kind, "warning");
        CHECKF(strcmp(l.v[0].title, "kernel WARNING in provium_faulty_warn+0x0/0x3 [provium_faulty]") == 0, "%s",
               l.v[0].title);
        CHECK(strstr(l.v[0].text, "cut here") && strstr(l.v[0].text, "end trace"));
        CHECK(!strstr(l.v[0].text, "crng") && !strstr(l.v[0].text, "taints kernel"));
    }
    kreport_list_free(&l);
}

TEST(oops)
{
    kreport_list l = scan(oops_splat);
    CHECK_EQ_INT(l.n, 1); /* BUG + Oops lines are one report */
    if (l.n == 1) {
        CHECK_EQ_STR(l.v[0].kind, "oops");
        CHECKF(strstr(l.v[0].title, "in provium_faulty_oops+0xb/0x13 [provium_faulty]") != NULL, "%s", l.v[0].title);
    }
    kreport_list_free(&l);
}

TEST(kasan)
{
    kreport_list l = scan(kasan_splat);
    CHECK_EQ_INT(l.n, 1);
    if (l.n == 1) {
        CHECK_EQ_STR(l.v[0].kind, "kasan");
        CHECKF(strcmp(l.v[0].title, "kernel KASAN: slab-out-of-bounds in demo_write+0x5a/0x90 [demo]") == 0, "%s",
               l.v[0].title);
        CHECK(strstr(l.v[0].text, "after") == NULL);
    }
    kreport_list_free(&l);
}

TEST(lockdep)
{
    kreport_list l = scan(lockdep_splat);
    CHECK(l.n == 1 && strcmp(l.v[0].kind, "lockdep") == 0);
    kreport_list_free(&l);
}

TEST(other_kinds)
{
    struct {
        const char *line, *kind;
    } one[] = {
        {"INFO: task cat:77 blocked for more than 5 seconds.\n", "hung_task"},
        {"watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:70]\n", "soft_lockup"},
        {"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n", "rcu_stall"},
        {"kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\n", "kmemleak"},
        {"Kernel panic - not syncing: sysrq triggered crash\n", "panic"},
        {"[    3.100000] kernel BUG at /b/x.c:33!\n", "oops"},
        {"UBSAN: shift-out-of-bounds in /b/x.c:12:9\n", "ubsan"},
        {"BUG: scheduling while atomic: sh/70/0x00000002\n", "bug"},
    };
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        kreport_list l = scan(one[i].line);
        CHECKF(l.n == 1 && strcmp(l.v[0].kind, one[i].kind) == 0, "%s -> %s", one[i].line,
               l.n ? l.v[0].kind : "(none)");
        kreport_list_free(&l);
    }
}

TEST(not_reports)
{
    const char *quiet = "a WARNING: in the middle is not a marker\nprintk: BUG: quoted\nLinux version 6.1\n"
                        "the word Oops: inside\n";
    kreport_list l = scan(quiet);
    CHECKF(l.n == 0, "%zu reports in ordinary lines", l.n);
    kreport_list_free(&l);
}

TEST(kmsg_records)
{
    const char rec[] = "4,120,5000,-;------------[ cut here ]------------\n SUBSYSTEM=x\n 4,121,5001,-;hi\n"
                       "6,122,5002,c;plain; with semicolon\n";
    char *text = kmsg_to_text(rec, sizeof(rec) - 1);
    CHECKF(strcmp(text, "------------[ cut here ]------------\nplain; with semicolon\n") == 0, "%s", text);
    free(text);
}

TEST(taint)
{
    char *t = kreport_taint_text((1u << 9) | (1u << 12));
    CHECKF(strcmp(t, "W (warning), O (out-of-tree module)") == 0, "%s", t);
    free(t);
}

CHECK_MAIN()
