# Sources of the standalone TOML parser test (tests/unit/test_toml.c).
# Included from the top-level Makefile; run the binary from the repository
# root so it finds tests/unit/toml-corpus.
TOML_TEST_SRCS := tests/unit/test_toml.c host/config/toml.c
