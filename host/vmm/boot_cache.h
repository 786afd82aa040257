/* The boot cache: a plain boot() restores a snapshot taken right after an
 * earlier cold boot of exactly the same configuration, made by that cold
 * boot itself. Entries live in the fixture cache (same lock, atomic install,
 * LRU eviction, corrupt entries rebuilt). */
#ifndef PROVIUM_BOOT_CACHE_H
#define PROVIUM_BOOT_CACHE_H
#include "../config/config.h"
#include "vm.h"

/* Boots vm like vm_boot, through the boot cache when cfg, the profile, the
 * options and $PROVIUM_BOOT_CACHE allow it; vm->boot_seconds is what this
 * call took, vm->boot_cached whether it restored. */
int boot_cache_boot(pv_vm *vm, const vm_boot_opts *opts, const pv_config *cfg, char *err, size_t errlen);
/* Why a boot of vm with opts would not use the cache, or NULL if it would. */
const char *boot_cache_bypass(const pv_vm *vm, const vm_boot_opts *opts, const pv_config *cfg);
/* Starts console_path with the console log saved in the boot-cache entry:
 * a restored VM's console begins with the boot it stands for. */
void boot_cache_seed_console(const char *entry, const char *console_path);
#endif
