# Provium-C. `make` builds build/provium (with the guest agent embedded).
# `make test` and `make demo` install what they need first; see README.md.

CC       ?= gcc
MUSL_CC  ?= musl-gcc
CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror
OPT      ?= -O2 -g
LUA_CFLAGS := $(shell pkg-config --cflags lua5.4 2>/dev/null)
LUA_LIBS   := $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2)
HOST_LIBS  := $(LUA_LIBS) -ljansson -lcrypto -lreadline -larchive -lxml2 -lzstd -lnbd -lm
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

B := build
COMMON_SRCS := common/proto.c
AGENT_SRCS  := $(wildcard agent/*.c)
HOST_SRCS   := $(wildcard host/*.c host/*/*.c)
HOST_OBJS   := $(patsubst %.c,$(B)/obj/%.o,$(HOST_SRCS) $(COMMON_SRCS))
EMBED_OBJS  := $(B)/obj/embed_agent.o $(B)/obj/embed_framework.o $(B)/obj/embed_types.o $(B)/obj/embed_net.o
HEADERS     := $(wildcard common/*.h agent/*.h host/*/*.h)

.PHONY: asan-provium all deps image image-default image-debug test check e2e cli-tests runner-tests demo bench clean fuzz kmod kselftests

all: $(B)/provium

deps:
	@scripts/install-deps.sh

# ---- guest agent: static musl binary ----
$(B)/musl-include/.stamp:
	@mkdir -p $(B)/musl-include
	@ln -sfn /usr/include/linux $(B)/musl-include/linux
	@ln -sfn /usr/include/asm-generic $(B)/musl-include/asm-generic
	@ln -sfn /usr/include/x86_64-linux-gnu/asm $(B)/musl-include/asm
	@touch $@

$(B)/provium-agent: $(AGENT_SRCS) $(COMMON_SRCS) $(wildcard agent/*.h) common/proto.h $(B)/musl-include/.stamp
	$(MUSL_CC) -static $(CSTD) $(WARN) -Os -I$(B)/musl-include $(AGENT_SRCS) $(COMMON_SRCS) -o $@
	strip $@

# ---- blobs linked into provium ----
define EMBED
	@mkdir -p $(dir $@)
	@printf '\t.section .rodata\n\t.balign 16\n\t.global %s\n%s:\n\t.incbin "%s"\n\t.global %s_end\n%s_end:\n\t.byte 0\n\t.section .note.GNU-stack,"",@progbits\n' $(2) $(2) $(CURDIR)/$(1) $(2) $(2) > $@.S
	$(CC) -c $@.S -o $@
endef

$(B)/obj/embed_agent.o: $(B)/provium-agent
	$(call EMBED,$(B)/provium-agent,provium_agent_blob)
$(B)/obj/embed_framework.o: lua/framework.lua
	$(call EMBED,lua/framework.lua,provium_framework_lua)
$(B)/obj/embed_types.o: lua/types.lua
	$(call EMBED,lua/types.lua,provium_types_lua)
$(B)/obj/embed_net.o: lua/net.lua
	$(call EMBED,lua/net.lua,provium_net_lua)

# ---- host ----
$(B)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) $(LUA_CFLAGS) $(XML_CFLAGS) -c $< -o $@

$(B)/provium: $(HOST_OBJS) $(EMBED_OBJS)
	$(CC) $(OPT) $^ $(HOST_LIBS) -o $@

# ---- guest image (cached outside the checkout, linked into build/image) ----
# `image` is every guest image the tests use; `image-default` is what the
# examples need (make demo), without the debug kernel's extra build.
image: image-default image-debug

image-default: deps
	@mkdir -p $(B)/image
	@k=$$(image/build-kernel.sh) && ln -sfn $$k/vmlinux $(B)/image/vmlinux && ln -sfn $$k/bzImage $(B)/image/bzImage && ln -sfn $$k/src $(B)/image/kernel-build
	@i=$$(image/build-initrd.sh) && ln -sfn $$i/initrd.cpio $(B)/image/initrd.cpio
	@v=$$(ls /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n1) && ln -sfn $$v $(B)/image/debian-vmlinuz && \
	  ln -sfn /lib/modules/$${v#/boot/vmlinuz-} $(B)/image/debian-modules

# the debug kernel (image/debug.fragment: KASAN, lockdep, UBSAN, KUnit)
image-debug: deps
	@mkdir -p $(B)/image
	@k=$$(image/build-kernel.sh debug) && ln -sfn $$k/bzImage $(B)/image/debug-bzImage && ln -sfn $$k/vmlinux $(B)/image/debug-vmlinux && \
	  ln -sfn $$k/src $(B)/image/debug-kernel-build

# ---- the kernel's own selftests for the default image (examples/kselftest),
# static, cached by content like the image; a few seconds once
kselftests: image-default
	@k=$$(image/build-kselftests.sh $(B)/image/kernel-build) && ln -sfn $$k $(B)/image/kselftest

# ---- unit tests under AddressSanitizer + UBSan (tests/unit/unit.mk) ----
UNIT_TESTS :=
include tests/unit/unit.mk

# The host binary itself, built with the sanitizers, runs the suites that need
# no kernel (the agent as a host process): memory errors in the host fail here.
ASAN_B := $(B)/asan
asan-provium:
	@$(MAKE) --no-print-directory B=$(ASAN_B) OPT="-O1 -g $(SAN)" \
	  WARN="$(WARN) -Wno-error=format-truncation" HOST_LIBS="$(HOST_LIBS) $(SAN)" $(ASAN_B)/provium

check: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; $$t; done
	@$(MAKE) --no-print-directory asan-provium
	@echo "== $(ASAN_B)/provium (ASan+UBSan) on the suites that need no VM"
	$(ASAN_B)/provium --cpu-overcommit 4 tests/e2e/ops_local.test.lua tests/e2e/framework.test.lua tests/e2e/assertions.test.lua \
	  tests/e2e/faults.test.lua tests/e2e/net_graph.test.lua tests/e2e/disk_local.test.lua

# ---- fuzzing (tests/fuzz/fuzz.mk) and benchmarks (bench/bench.mk) ----
-include tests/fuzz/fuzz.mk
-include bench/bench.mk
include examples/kmod.mk
include tests/kmod/faulty.mk

# ---- end-to-end ----
# Several of these files boot more than one VM at a time without a claim, and
# booted VMs are charged to the pool: on a host with few CPUs two such files
# would hold one vCPU each and wait for another (the dispatcher then fails a
# boot). A larger vCPU budget, with as many files at once as there are CPUs,
# keeps them apart; TCG time-shares the vCPUs anyway.
e2e: all image kmod kmod-faulty kselftests
	$(B)/provium -v --cpu-overcommit 4 -j $(shell nproc) tests/e2e examples

cli-tests: all image kmod kmod-faulty
	tests/cli/run.sh
	tests/cli/fixture_cache.sh
	tests/cli/boot_cache.sh
	tests/cli/qpool.sh
	tests/cli/rootfs.sh
	tests/cli/accel.sh
	tests/cli/kernel_health.sh
	tests/cli/repl.sh
	tests/cli/lsp.sh
	tests/cli/guide_claims.sh
	tests/cli/net_cleanup.sh
	tests/cli/ci.sh
	tests/cli/report.sh
	tests/cli/faults.sh

runner-tests: all image
	tests/runner/run.sh

test: deps
	@$(MAKE) --no-print-directory all image
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory cli-tests
	@$(MAKE) --no-print-directory runner-tests
	@$(MAKE) --no-print-directory e2e

demo: deps
	@$(MAKE) --no-print-directory all image-default kmod kselftests
	$(B)/provium examples/

clean:
	rm -rf $(B)
