# Unit tests, built with $(SAN) and run by `make check`. Each adds itself to UNIT_TESTS.
UNIT_SUPPORT := host/util/util.c

UNIT_TESTS += $(B)/check/test_toml
$(B)/check/test_toml: tests/unit/test_toml.c host/config/toml.c host/config/toml.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) -g $(SAN) -Ihost/config $(filter %.c,$^) -o $@
