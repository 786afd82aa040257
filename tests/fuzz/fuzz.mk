# libFuzzer targets, included from the top-level Makefile.
#
#   make fuzz                    build every target into $(B)/fuzz/ and run each
#                                for $(FUZZ_SECONDS) seconds (default 60)
#   make fuzz FUZZ_SECONDS=600   longer runs
#   make fuzz-build              only build the targets
#   make fuzz-seeds              regenerate the committed seed frames in tests/fuzz/corpus/
#
# `make fuzz` needs clang with libFuzzer (-fsanitize=fuzzer); on Debian:
#   apt-get install clang
#
# Targets:
#   fuzz_agent_request  the agent's request path: agent/conn.c framing + pv_msg_decode + accessors
#   fuzz_host_reply     the host's reply path: host/vmm/router.c (frame reader, channel router, reply and
#                       handshake decoding) driven as agent_conn.c drives it + accessors
#   fuzz_toml           the TOML parser (tests/fuzz/fuzz_toml.c, seeded from tests/unit/toml-corpus)
#   fuzz_ktap           the KTAP parser and flattener (host/health/ktap.c, seeded from tests/unit/ktap-corpus)
#   fuzz-lua            the Lua API boundary: tests/fuzz/lua_api.test.lua run by the ASan+UBSan build of
#                       provium against the local profile (random calls, random argument types);
#                       FUZZ_SEED=N repeats a run. Needs no clang: `make fuzz-lua FUZZ_SECONDS=600`
#
# New inputs found while fuzzing go to $(B)/fuzz/corpus/<target>/ (the seeds
# in tests/fuzz/corpus/ are only read); crashes are written to
# $(B)/fuzz/artifacts/<target>-crash-*. Reproduce one with
#   $(B)/fuzz/<target> $(B)/fuzz/artifacts/<target>-crash-...
#
# tests/fuzz/repro/ holds reproducers of product bugs found this way (not
# seeds). host_reply_read_file_answered_with_ok is a READ_FILE answered with
# OK: with PROVIUM_FUZZ_STRICT=1 (the host's unchecked field access) it used to
# crash the model; the real router refuses that reply type (pv_reply_matches),
# so it must now pass:
#   PROVIUM_FUZZ_STRICT=1 $(B)/fuzz/fuzz_host_reply tests/fuzz/repro/host_reply_read_file_answered_with_ok

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS  := -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Wno-string-plus-int
FUZZ_ARGS    := -max_len=70000 -rss_limit_mb=512 -print_final_stats=1

FUZZ_NAMES   := fuzz_agent_request fuzz_host_reply $(if $(wildcard tests/fuzz/fuzz_toml.c),fuzz_toml) fuzz_ktap
FUZZ_TARGETS := $(addprefix $(B)/fuzz/,$(FUZZ_NAMES))

# Extra seed directories per target (besides tests/fuzz/corpus/<target>).
FUZZ_SEEDS_fuzz_toml := $(wildcard tests/unit/toml-corpus/valid tests/unit/toml-corpus/invalid)
FUZZ_SEEDS_fuzz_ktap := tests/unit/ktap-corpus

$(B)/fuzz/fuzz_agent_request: tests/fuzz/fuzz_agent_request.c agent/conn.c common/proto.c \
		agent/agent.h common/proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@

$(B)/fuzz/fuzz_host_reply: tests/fuzz/fuzz_host_reply.c host/vmm/router.c host/util/util.c common/proto.c \
		host/vmm/router.h host/util/util.h common/proto.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) -lcrypto -lm -o $@

$(B)/fuzz/fuzz_toml: tests/fuzz/fuzz_toml.c host/config/toml.c host/config/toml.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ihost/config $(filter %.c,$^) -o $@

$(B)/fuzz/fuzz_ktap: tests/fuzz/fuzz_ktap.c host/health/ktap.c host/health/ktap.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(filter %.c,$^) -o $@

.PHONY: fuzz fuzz-build fuzz-seeds fuzz-lua

# The file times out well after its rounds end; a round past its own
# per-test timeout is a hang, a CRASH is a sanitizer report (in the output).
# It runs with a config in a sandbox directory: relative host paths of random
# calls resolve there, not in the checkout.
FUZZ_SANDBOX := $(B)/fuzz/lua-sandbox
fuzz-lua: asan-provium
	@rm -rf $(FUZZ_SANDBOX) && mkdir -p $(FUZZ_SANDBOX) && touch $(FUZZ_SANDBOX)/FUZZ_SANDBOX
	@printf '[profiles.local]\nlocal = true\n' >$(FUZZ_SANDBOX)/provium.toml
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(ASAN_B)/provium -v --config $(FUZZ_SANDBOX)/provium.toml \
	  --timeout $$(( $(FUZZ_SECONDS) * 2 + 120 )) $(CURDIR)/tests/fuzz/lua_api.test.lua

fuzz-build: $(FUZZ_TARGETS)

fuzz: $(FUZZ_TARGETS)
	@set -e; for t in $(FUZZ_NAMES); do \
	  mkdir -p $(B)/fuzz/corpus/$$t $(B)/fuzz/artifacts; \
	  seeds=""; [ -d tests/fuzz/corpus/$$t ] && seeds=tests/fuzz/corpus/$$t; \
	  [ $$t = fuzz_toml ] && seeds="$$seeds $(FUZZ_SEEDS_fuzz_toml)"; \
	  [ $$t = fuzz_ktap ] && seeds="$$seeds $(FUZZ_SEEDS_fuzz_ktap)"; \
	  echo "== $$t: $(FUZZ_SECONDS) s"; \
	  $(B)/fuzz/$$t $(FUZZ_ARGS) -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(B)/fuzz/artifacts/$$t- $(B)/fuzz/corpus/$$t $$seeds; \
	done
	@$(MAKE) --no-print-directory fuzz-lua

fuzz-seeds: tests/fuzz/gen_seeds.c common/proto.c common/proto.h
	@mkdir -p $(B)/fuzz
	$(CC) $(CSTD) $(WARN) -g tests/fuzz/gen_seeds.c common/proto.c -o $(B)/fuzz/gen_seeds
	$(B)/fuzz/gen_seeds
