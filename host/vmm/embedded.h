/* Blobs linked into the provium binary (see the Makefile's .incbin rule). */
#ifndef PROVIUM_EMBEDDED_H
#define PROVIUM_EMBEDDED_H
#include <stddef.h>

extern const unsigned char provium_agent_blob[];
extern const unsigned char provium_agent_blob_end[];
extern const unsigned char provium_framework_lua[];
extern const unsigned char provium_framework_lua_end[];
extern const unsigned char provium_types_lua[];
extern const unsigned char provium_types_lua_end[];
extern const unsigned char provium_net_lua[];
extern const unsigned char provium_net_lua_end[];

#define EMBEDDED_SIZE(name) ((size_t)(name##_end - name))
#endif
