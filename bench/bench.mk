# Benchmarks: `make bench` prints each figure as a ratio against the limit
# measured in the same run (see bench/bench.c). One part only:
# build/bench ITERATIONS SECTION... (switch boot rtt batch files workers snapshot bootcache pool disks).
BENCH_OBJS := $(filter-out $(B)/obj/host/main.o,$(HOST_OBJS)) $(EMBED_OBJS)

$(B)/bench: bench/bench.c bench/bench_net.c bench/bench_net.h $(BENCH_OBJS) $(HEADERS)
	$(CC) $(CSTD) $(WARN) $(OPT) $(LUA_CFLAGS) bench/bench.c bench/bench_net.c $(BENCH_OBJS) $(HOST_LIBS) -o $@

# The QEMU pool's rows (restore with a spare QEMU against without one).
$(B)/bench_qpool: bench/bench_qpool.c $(BENCH_OBJS) $(HEADERS)
	$(CC) $(CSTD) $(WARN) $(OPT) $(LUA_CFLAGS) bench/bench_qpool.c $(BENCH_OBJS) $(HOST_LIBS) -o $@

.PHONY: bench
bench: all image $(B)/bench $(B)/bench_qpool
	$(B)/bench $(BENCH_ITERATIONS)
	$(B)/bench_qpool $(BENCH_ITERATIONS)
