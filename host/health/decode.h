/* Stack frames of kernel reports decoded to file:line with gdb: kernel
 * frames against the profile's vmlinux, "[module]" frames against the
 * module's .ko (tests push them; see lua_health.c), both of which carry
 * line tables when the kernel was built with debug info. */
#ifndef PROVIUM_DECODE_H
#define PROVIUM_DECODE_H
#include <stddef.h>

typedef struct {
    const char *name; /* as the kernel prints it: "provium_demo" */
    const char *path; /* host path of its .ko */
} decode_module;

/* text with " (file:line)" after every frame gdb could place; NULL when no
 * frame could be decoded (no gdb, no debug info, unknown modules). At most
 * timeout_ms per object file. New string. */
char *kreport_decode(const char *text, const char *vmlinux, const decode_module *mods, size_t nmods,
                     int timeout_ms);
#endif
