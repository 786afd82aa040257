/* Small helpers every part of the agent uses: the monotonic clock, closing a
 * descriptor once, non-blocking pipes, and draining a pipe into a sink.
 * Free of the protocol, so the spawn helper's unit test can link it alone. */
#ifndef PROVIUM_AGENT_UTIL_H
#define PROVIUM_AGENT_UTIL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One size for every error text the agent builds (an ERROR frame's message
 * is cut there). */
#define AGENT_ERROR_MAX 1024

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t now_ms(void);
/* Milliseconds from now until deadline (a now_ms() value): 0 when it has
 * passed, capped at cap so a far deadline still fits poll's int. */
int ms_until(int64_t deadline, int cap);
/* Closes *fd if it is open and marks it closed (-1). */
void close_fd(int *fd);
void set_nonblock(int fd);

/* Where drained bytes go: the sink is called once per read. */
typedef void drain_sink(void *ctx, const char *data, size_t n);
/* Reads what a non-blocking fd holds now and hands it to sink. Returns true
 * while more may come (EAGAIN), false at EOF or on a read error. */
bool drain_fd(int fd, drain_sink *sink, void *ctx);
#endif
