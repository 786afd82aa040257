# Unit tests, built with $(SAN) and run by `make check`. Each adds itself to UNIT_TESTS.
# Every test uses the harness in tests/unit/check.h: `build/check/test_x -l`
# lists its cases, `build/check/test_x CASE...` runs only those.
UNIT_SUPPORT := host/util/util.c

UNIT_TESTS += $(B)/check/test_toml
$(B)/check/test_toml: tests/unit/test_toml.c host/config/toml.c host/config/toml.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/config $(filter %.c,$^) -o $@

# ---- codec, cpio writer, config loader, helpers, agent in local mode ----
# Each rule lists the product sources the test links; $(filter %.c,$^) picks
# them out, so headers and other prerequisites only trigger rebuilds.
UNIT_TESTS += $(B)/check/test_proto
$(B)/check/test_proto: tests/unit/test_proto.c common/proto.c common/proto.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Icommon $(filter %.c,$^) -o $@

UNIT_TESTS += $(B)/check/test_util
$(B)/check/test_util: tests/unit/test_util.c $(UNIT_SUPPORT) host/util/util.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/util $(filter %.c,$^) -lcrypto -lm -o $@

UNIT_TESTS += $(B)/check/test_cpio
$(B)/check/test_cpio: tests/unit/test_cpio.c host/vmm/cpio.c $(UNIT_SUPPORT) host/vmm/cpio.h host/util/util.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/vmm -Ihost/util $(filter %.c,$^) -lcrypto -lm -o $@

UNIT_TESTS += $(B)/check/test_scan
# scan.c reads declarations with the one Lua tokenizer, host/fixtures/lua_scan.c.
$(B)/check/test_scan: tests/unit/test_scan.c host/runner/scan.c host/fixtures/lua_scan.c $(UNIT_SUPPORT) \
		host/runner/runner.h \
		host/fixtures/lua_scan.h host/util/util.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/runner -Ihost/util $(filter %.c,$^) -lcrypto -lm -o $@

UNIT_TESTS += $(B)/check/test_config
$(B)/check/test_config: tests/unit/test_config.c host/config/config.c host/config/disk_spec.c host/config/toml.c $(UNIT_SUPPORT) \
		host/config/config.h host/config/toml.h host/util/util.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/config -Ihost/util $(filter %.c,$^) -lcrypto -lm -o $@

# Runs the real (static, musl) agent as a child over a socketpair; only the
# test driver is sanitized. The agent binary is a prerequisite so it is built first.
UNIT_TESTS += $(B)/check/test_agent_local
$(B)/check/test_agent_local: tests/unit/test_agent_local.c common/proto.c common/proto.h tests/unit/check.h \
		$(B)/provium-agent
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Icommon $(filter %.c,$^) -o $@

# The accelerator probe against the real QEMU (and, after make image, a real kernel).
UNIT_TESTS += $(B)/check/test_accel
$(B)/check/test_accel: tests/unit/test_accel.c host/vmm/accel.c $(UNIT_SUPPORT) host/vmm/accel.h host/util/util.h \
		host/config/config.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) $(filter %.c,$^) -lcrypto -lm -o $@

# The Lua tokenizer behind the fixture cache key: self-contained, so it links alone.
UNIT_TESTS += $(B)/check/test_lua_scan
$(B)/check/test_lua_scan: tests/unit/test_lua_scan.c host/fixtures/lua_scan.c host/fixtures/lua_scan.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/fixtures $(filter %.c,$^) -o $@
# Kernel report classification on real splats.
UNIT_TESTS += $(B)/check/test_kreport
$(B)/check/test_kreport: tests/unit/test_kreport.c host/health/kreport.c $(UNIT_SUPPORT) host/health/kreport.h \
		host/util/util.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) $(filter %.c,$^) -lcrypto -lm -o $@
# The shard split: balance on a skewed synthetic set, determinism (pure, links alone).
UNIT_TESTS += $(B)/check/test_shard
$(B)/check/test_shard: tests/unit/test_shard.c host/runner/shard.c host/runner/ci.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/runner $(filter %.c,$^) -o $@

# The KTAP parser on real KUnit and kselftest output (tests/unit/ktap-corpus/).
UNIT_TESTS += $(B)/check/test_ktap
$(B)/check/test_ktap: tests/unit/test_ktap.c host/health/ktap.c host/health/ktap.h tests/unit/check.h \
		$(wildcard tests/unit/ktap-corpus/*.inc)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) $(filter %.c,$^) -o $@

# The root disk (image checks, drive, command line, overlay, snapshot record)
# and the ext4 helper, with the real qemu-img and mke2fs.
UNIT_TESTS += $(B)/check/test_rootfs
$(B)/check/test_rootfs: tests/unit/test_rootfs.c host/vmm/rootfs.c host/tools/ext4_image.c host/util/run_tool.c \
		$(UNIT_SUPPORT) host/vmm/rootfs.h host/tools/ext4_image.h host/util/run_tool.h tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) $(filter %.c,$^) -lcrypto -lm -o $@

# The user-space switch through real unix sockets (fake QEMU ports); the
# uplink case starts the slirp helper QEMU, the capture case runs tcpdump -r if present.
NETSW_SRCS := $(wildcard host/net/*.c)
UNIT_TESTS += $(B)/check/test_netsw
$(B)/check/test_netsw: tests/unit/test_netsw.c $(NETSW_SRCS) $(UNIT_SUPPORT) $(wildcard host/net/*.h) host/util/util.h \
		tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/net $(filter %.c,$^) -lcrypto -lm -o $@

# The agent's spawn helper and small helpers, linked alone (glibc, sanitized).
UNIT_TESTS += $(B)/check/test_agent_spawn
$(B)/check/test_agent_spawn: tests/unit/test_agent_spawn.c agent/spawn.c agent/util.c agent/spawn.h agent/util.h \
		tests/unit/check.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Iagent $(filter %.c,$^) -lpthread -o $@

# The real agent at its limits (every slot in use, out of memory); like
# test_agent_local, only the driver is sanitized.
UNIT_TESTS += $(B)/check/test_agent_limits
$(B)/check/test_agent_limits: tests/unit/test_agent_limits.c common/proto.c common/proto.h tests/unit/check.h \
		$(B)/provium-agent
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Icommon $(filter %.c,$^) -o $@
