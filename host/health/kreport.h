/* Kernel reports: the kernel's own failure reports (oops, WARN_ON, KASAN,
 * UBSAN, KFENCE, lockdep, hung task, soft/hard lockup, RCU stall, kmemleak,
 * panic) found in kernel log text by their own markers, each cut to its
 * frame. Pure text in, reports out: no I/O, so it is unit tested on real
 * splats and fuzzable. */
#ifndef PROVIUM_KREPORT_H
#define PROVIUM_KREPORT_H
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *kind; /* "oops", "warning", "kasan", "ubsan", "kfence", "lockdep", "hung_task",
                         "soft_lockup", "hard_lockup", "rcu_stall", "kmemleak", "panic", "bug" */
    char *title;      /* one line, e.g. "kernel WARNING in f+0x3c/0x90 [mod]" */
    char *text;       /* the report's lines, from its first marker to its end */
} kreport;

typedef struct {
    kreport *v;
    size_t n;
} kreport_list;

/* Turns /dev/kmsg records ("prio,seq,usec,flags;message\n" followed by
 * " KEY=value" dictionary lines) into plain log lines "message\n" with
 * non-printable bytes kept as the kernel escaped them. New string. */
char *kmsg_to_text(const char *records, size_t len);

/* Finds every report in text (plain log lines) and appends it to out. */
void kreport_scan(const char *text, kreport_list *out);
void kreport_list_free(kreport_list *l);

/* A line that starts an oops-class report (the console watch uses this to
 * end a call at once when the kernel oopses under it). */
bool kreport_is_oops_line(const char *line, size_t len);

/* Names of the taint flags set in taint, e.g. "W (warning) O (out-of-tree module)"; new string. */
char *kreport_taint_text(unsigned long long taint);
#endif
