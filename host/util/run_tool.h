/* Running a host tool (qemu-img, mke2fs) to completion under a deadline,
 * with what it printed kept for the error message when it fails. */
#ifndef PROVIUM_RUN_TOOL_H
#define PROVIUM_RUN_TOOL_H
#include <stddef.h>
#include <stdint.h>

/* Runs argv (argv[0] looked up in $PATH, then in /sbin and /usr/sbin, where
 * Debian puts mke2fs for users whose PATH lacks them) with stdin on
 * /dev/null, and waits at most timeout_ms. Returns 0 when it exited with
 * status 0. Otherwise -1, with "NAME failed (exit status N): its output",
 * "NAME did not finish within N s" or "NAME is not installed (...)" in
 * msg; the caller puts what it was doing in front. */
int run_tool(char *const argv[], int64_t timeout_ms, char *msg, size_t msglen);

/* The tool's absolute path ($PATH, /sbin, /usr/sbin), or NULL; caller frees. */
char *run_tool_find(const char *name);
#endif
