# Benchmarks: `make bench` prints each figure as a ratio against the limit
# measured in the same run (see bench/bench.c). One part only:
# build/bench ITERATIONS SECTION... (switch net boot rtt batch files transfer workers
# snapshot bootcache pool disks memory scaling peer). Sections with files of their
# own are listed in bench/bench.h.
BENCH_OBJS := $(filter-out $(B)/obj/host/main.o,$(HOST_OBJS)) $(EMBED_OBJS)
BENCH_SRCS := $(wildcard bench/*.c)

$(B)/bench: $(BENCH_SRCS) $(wildcard bench/*.h) $(BENCH_OBJS) $(HEADERS)
	$(CC) $(CSTD) $(WARN) $(OPT) $(LUA_CFLAGS) $(BENCH_SRCS) $(BENCH_OBJS) $(HOST_LIBS) -o $@

.PHONY: bench
bench: all image $(B)/bench
	$(B)/bench $(BENCH_ITERATIONS)
