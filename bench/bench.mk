# Benchmarks: `make bench` prints each figure as a ratio against the limit
# measured in the same run (see bench/bench.c). One part only:
# build/bench ITERATIONS SECTION... (switch net boot rtt batch files transfer workers
# snapshot bootcache pool disks memory scaling peer). Sections with files of their
# own are listed in bench/bench.h.
BENCH_OBJS := $(filter-out $(B)/obj/host/main.o,$(HOST_OBJS)) $(EMBED_OBJS)
BENCH_SRCS := $(filter-out bench/bench_qpool.c,$(wildcard bench/*.c))

$(B)/bench: $(BENCH_SRCS) $(wildcard bench/*.h) $(BENCH_OBJS) $(HEADERS)
	$(CC) $(CSTD) $(WARN) $(OPT) $(LUA_CFLAGS) $(BENCH_SRCS) $(BENCH_OBJS) $(HOST_LIBS) -o $@

# The QEMU pool's rows (restore with a spare QEMU against without one).
$(B)/bench_qpool: bench/bench_qpool.c $(BENCH_OBJS) $(HEADERS)
	$(CC) $(CSTD) $(WARN) $(OPT) $(LUA_CFLAGS) bench/bench_qpool.c $(BENCH_OBJS) $(HOST_LIBS) -o $@

.PHONY: bench
bench: all image $(B)/bench $(B)/bench_qpool
	$(B)/bench $(BENCH_ITERATIONS)
	$(B)/bench_qpool $(BENCH_ITERATIONS)
