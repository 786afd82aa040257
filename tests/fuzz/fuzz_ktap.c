/* libFuzzer target: the KTAP parser and flattener (host/health/ktap.c) on
 * any bytes. Seeded from tests/unit/ktap-corpus. Besides memory errors it
 * checks that every case has a name and a known status. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../host/health/ktap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ktap_node *root = ktap_parse((const char *)data, size);
    ktap_cases c = {0};
    ktap_flatten(root, size & 1 ? "suite" : NULL, &c);
    for (size_t i = 0; i < c.n; i++) {
        if (!c.v[i].name || c.v[i].status > KTAP_TODO)
            abort();
        (void)strlen(c.v[i].name);
    }
    ktap_cases_free(&c);
    ktap_free(root);
    return 0;
}
