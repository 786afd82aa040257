/* The shim initramfs: the agent (in both roles), the kernel modules a profile
 * needs before the agent can reach its port, and per-boot injected files.
 * It is appended to the profile's initrd; the result is cached by content.
 * A profile with only a rootfs gets the shim alone, with /init (see rootfs.h). */
#ifndef PROVIUM_SHIM_H
#define PROVIUM_SHIM_H
#include <stddef.h>

#include "../config/config.h"

typedef struct {
    char *path;
    char *content;
    size_t len;
} pv_inject_file;

/* Returns the path of a ready initrd (in the cache), or NULL with err set. */
char *shim_prepare_initrd(const pv_profile *p, const pv_inject_file *files, size_t nfiles, char *err, size_t errlen);

/* Resolves modules (names like "virtio_console") through modules.dep into
 * load order, dependencies first. Returns a NULL-terminated list of
 * absolute .ko paths (caller frees each and the list) or NULL with err. */
char **shim_resolve_modules(const char *modules_dir, char *const *names, size_t n, char *err, size_t errlen);

/* SHA-256 of the embedded agent; part of every cache key. */
const char *shim_agent_hash(void);
#endif
