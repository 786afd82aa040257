/* provium.toml: discovery, both profile table spellings, validation. */
#ifndef PROVIUM_CONFIG_H
#define PROVIUM_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One disk a VM gets before it boots (profile key `disks`, boot option
 * `disks`). Exactly one source: path (an image; the VM writes to a qcow2
 * overlay unless readonly or persist) or size (a blank sparse scratch disk). */
typedef struct {
    char *id;      /* the guest sees it as the disk's serial; NULL until named */
    char *path;    /* absolute source image, NULL for a scratch disk */
    char *format;  /* "raw" or "qcow2"; NULL: raw (checked against the image) */
    int64_t size;  /* bytes of a scratch disk, 0 with a path */
    bool readonly; /* the guest sees a read-only disk, the host may not write */
    bool persist;  /* writes go to path itself, not to an overlay */
    bool copy;     /* `template`: a private copy of path (the reference's key) */
    bool power_cut; /* writes are logged so disk:power_cut() can drop unflushed ones */
} pv_disk_spec;

/* Checks a spec's combination of keys; where names it in err ("profile
 * 'x' disks[2]", "vm 'a': disks[1]"). Fills id "disk<index>" when unset. */
int disk_spec_check(pv_disk_spec *d, size_t index, const char *where, char *err, size_t errlen);
void disk_spec_copy(pv_disk_spec *dst, const pv_disk_spec *src);
void disk_spec_free(pv_disk_spec *d);

typedef struct {
    char *name;
    char *kernel;      /* absolute path */
    char *initrd;      /* absolute path or NULL */
    char *rootfs;      /* absolute path or NULL: a raw disk image, the guest's /dev/vda */
    char *init;        /* guest path of the real init */
    char *cmdline;     /* replaces the default base command line when set */
    char *append;      /* appended to the command line */
    char *guest_os;
    char *machine;     /* "microvm", "pc", "q35" or NULL for automatic */
    char *accel;       /* "auto", "kvm", "tcg" or NULL (auto) */
    char **modules;    /* kernel modules the agent must load before connecting */
    size_t nmodules;
    char *modules_dir; /* where modules.dep lives (/lib/modules/<version>) */
    int64_t memory;    /* default guest RAM in bytes */
    int cpus;
    int64_t boot_timeout_ms;
    bool local; /* no VM: the agent runs as a process on the host (fast op tests) */
    bool kernel_reports_allowed; /* kernel_reports = "allow": oops/WARN/... are recorded, not failures */
    bool no_acpi; /* acpi = false: the guest runs without ACPI (no power button) */
    bool no_boot_cache; /* boot_cache = false: every boot() is a cold boot */
    bool rootfs_writable; /* rootfs_writable = true: the guest writes to a qcow2 overlay of rootfs */
    pv_disk_spec *disks; /* `disks`: attached before the kernel starts */
    size_t ndisks;
} pv_profile;

typedef struct {
    char *path; /* the file read, NULL when none was found */
    char *dir;  /* directory relative paths resolve against */
    char **roots;
    size_t nroots;
    char *cache_dir;
    int64_t cache_max_size;
    pv_profile *profiles;
    size_t nprofiles;
} pv_config;

#define PV_DEFAULT_MEMORY (256LL * 1024 * 1024)
#define PV_DEFAULT_BOOT_TIMEOUT_MS 60000
#define PV_MIN_MEMORY (32LL * 1024 * 1024)
#define PV_MAX_MEMORY (1024LL * 1024 * 1024 * 1024)
#define PV_MAX_CPUS 64

/* 0 when bytes is a guest RAM size QEMU can be given, else -1 with the
 * broken bound named in err. */
int config_check_memory(int64_t bytes, char *err, size_t errlen);

/* explicit_path NULL: look for provium.toml in the working directory and its
 * parents; finding none is not an error (an empty config results). */
int config_load(const char *explicit_path, pv_config *out, char *err, size_t errlen);
/* Parses text as if read from path (used by tests). */
int config_parse(const char *text, size_t len, const char *path, pv_config *out, char *err, size_t errlen);
const pv_profile *config_profile(const pv_config *c, const char *name);
/* Comma-separated profile names, for "unknown profile" messages; caller frees. */
char *config_profile_names(const pv_config *c);
void config_free(pv_config *c);
void profile_copy(pv_profile *dst, const pv_profile *src);
void profile_free(pv_profile *p);
#endif
