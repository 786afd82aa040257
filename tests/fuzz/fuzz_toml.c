/*
 * libFuzzer harness for the TOML parser:
 *   clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -Ihost/config \
 *         tests/fuzz/fuzz_toml.c host/config/toml.c -o fuzz_toml
 *   ./fuzz_toml -dict=... tests/unit/toml-corpus/valid
 * Parses the input, walks the whole tree through the public API, frees it.
 */
#include "toml.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static size_t walk(const toml_value *v)
{
    size_t n = (size_t)toml_line(v) + (size_t)toml_col(v);
    switch (toml_type_of(v)) {
    case TOML_TABLE:
        for (size_t i = 0; i < toml_table_size(v); i++) {
            const char *k = toml_table_key(v, i);
            if (toml_get(v, k) != toml_table_value(v, i))
                __builtin_trap(); /* lookup must agree with iteration */
            n += strlen(k) + walk(toml_table_value(v, i));
        }
        break;
    case TOML_ARRAY:
        for (size_t i = 0; i < toml_array_len(v); i++)
            n += walk(toml_array_at(v, i));
        break;
    case TOML_STRING:
    case TOML_DATETIME:
        n += strlen(toml_string(v));
        break;
    default:
        n += (size_t)toml_int(v) + (size_t)toml_bool(v) + (toml_float(v) > 0);
        break;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[128];
    toml_value *root = toml_parse((const char *)data, size, "fuzz.toml", err, sizeof err);
    if (root) {
        volatile size_t sink = walk(root);
        (void)sink;
    } else if (strncmp(err, "fuzz.toml:", 10) != 0) {
        __builtin_trap(); /* every failure must carry a position */
    }
    toml_free(root);
    return 0;
}
