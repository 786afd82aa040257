/* Turns provium.toml into a pv_config. Both spellings of the profile tables
 * are accepted: [profile.NAME] (kernel, initrd, rootfs, init, append) and
 * [profiles.NAME] (kernel, initrd, cmdline, guest_os); unknown keys are
 * reported with their position because a typo should never be silent. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/util.h"
#include "toml.h"

#define ERR(v, ...)                                                                                 \
    do {                                                                                            \
        int n_ = snprintf(err, errlen, "%s:%d:%d: ", c->path, toml_line(v), toml_col(v));         \
        if (n_ >= 0 && (size_t)n_ < errlen)                                                         \
            snprintf(err + n_, errlen - (size_t)n_, __VA_ARGS__);                                   \
        return -1;                                                                                  \
    } while (0)

static void free_strv(char **v, size_t n);

static int want_string(pv_config *c, const toml_value *v, const char *what, char **out, char *err, size_t errlen)
{
    if (toml_type_of(v) != TOML_STRING)
        ERR(v, "%s must be a string, not %s", what, toml_type_name(toml_type_of(v)));
    *out = xstrdup(toml_string(v));
    return 0;
}

static int want_path(pv_config *c, const toml_value *v, const char *what, char **out, char *err, size_t errlen)
{
    char *s;
    if (want_string(c, v, what, &s, err, errlen))
        return -1;
    char *joined = path_join(c->dir, s);
    *out = path_absolute(joined);
    free(joined);
    free(s);
    return 0;
}

static int want_string_array(pv_config *c, const toml_value *v, const char *what, char ***out, size_t *n,
                             char *err, size_t errlen)
{
    if (toml_type_of(v) != TOML_ARRAY)
        ERR(v, "%s must be an array of strings", what);
    *n = toml_array_len(v);
    *out = xcalloc(*n + 1, sizeof(char *));
    for (size_t i = 0; i < *n; i++) {
        const toml_value *e = toml_array_at(v, i);
        if (toml_type_of(e) != TOML_STRING)
            ERR(e, "%s must contain only strings", what);
        (*out)[i] = xstrdup(toml_string(e));
    }
    return 0;
}

static int want_size(pv_config *c, const toml_value *v, const char *what, int64_t *out, char *err, size_t errlen)
{
    if (toml_type_of(v) == TOML_INT && toml_int(v) > 0) {
        *out = toml_int(v);
        return 0;
    }
    if (toml_type_of(v) == TOML_STRING && (*out = parse_size(toml_string(v))) > 0)
        return 0;
    ERR(v, "%s must be a positive byte count or a size like \"512M\" or \"2G\"", what);
}

/* disks = [{ path = "...", format = "qcow2", readonly = true, id = "data" },
 *          { size = "64M", id = "scratch" }] */
static int want_disks(pv_config *c, const char *profile, const toml_value *v, pv_profile *p, char *err,
                      size_t errlen)
{
    if (toml_type_of(v) != TOML_ARRAY)
        ERR(v, "disks must be an array of tables like { size = \"64M\" } or { path = \"disk.img\" }");
    for (size_t i = 0; i < toml_array_len(v); i++) {
        const toml_value *t = toml_array_at(v, i);
        if (toml_type_of(t) != TOML_TABLE)
            ERR(t, "disks[%zu] must be a table, not %s", i + 1, toml_type_name(toml_type_of(t)));
        p->disks = xrealloc(p->disks, (p->ndisks + 1) * sizeof(pv_disk_spec));
        pv_disk_spec *d = &p->disks[p->ndisks++];
        memset(d, 0, sizeof(*d));
        for (size_t j = 0; j < toml_table_size(t); j++) {
            const char *k = toml_table_key(t, j);
            const toml_value *e = toml_table_value(t, j);
            int rc = 0;
            if (strcmp(k, "id") == 0)
                rc = want_string(c, e, "disks: id", &d->id, err, errlen);
            else if (strcmp(k, "path") == 0 || strcmp(k, "template") == 0) {
                if (d->path)
                    ERR(e, "disks[%zu] names two images (path and template); a disk takes exactly one source", i + 1);
                rc = want_path(c, e, "disks: path", &d->path, err, errlen);
                d->copy = strcmp(k, "template") == 0;
            } else if (strcmp(k, "format") == 0)
                rc = want_string(c, e, "disks: format", &d->format, err, errlen);
            else if (strcmp(k, "size") == 0 || strcmp(k, "scratch") == 0)
                rc = want_size(c, e, "disks: size", &d->size, err, errlen);
            else if (strcmp(k, "readonly") == 0 || strcmp(k, "persist") == 0 || strcmp(k, "power_cut") == 0) {
                if (toml_type_of(e) != TOML_BOOL)
                    ERR(e, "disks: %s must be true or false", k);
                *(k[0] == 'r' ? &d->readonly : k[1] == 'e' ? &d->persist : &d->power_cut) = toml_bool(e);
            } else
                ERR(e, "unknown key '%s' in disks[%zu] of profile '%s'; known keys: id, path, template, format, "
                       "size, scratch, readonly, persist, power_cut",
                    k, i + 1, profile);
            if (rc)
                return -1;
        }
        char where[200], why[512];
        snprintf(where, sizeof(where), "profile '%s' disks[%zu]", profile, i + 1);
        if (disk_spec_check(d, i, where, why, sizeof(why)) != 0)
            ERR(t, "%s", why);
        for (size_t j = 0; j + 1 < p->ndisks; j++)
            if (strcmp(p->disks[j].id, d->id) == 0)
                ERR(t, "profile '%s': two disks have the id '%s' (disks[%zu] and disks[%zu]); ids must be unique",
                    profile, d->id, j + 1, i + 1);
    }
    return 0;
}

int config_check_memory(int64_t bytes, char *err, size_t errlen)
{
    if (bytes < PV_MIN_MEMORY) {
        snprintf(err, errlen, "memory %lld bytes is below the minimum of %lld MiB a guest kernel needs",
                 (long long)bytes, PV_MIN_MEMORY >> 20);
        return -1;
    }
    if (bytes > PV_MAX_MEMORY) {
        snprintf(err, errlen, "memory %lld MiB is above the maximum of %lld GiB", (long long)(bytes >> 20),
                 PV_MAX_MEMORY >> 30);
        return -1;
    }
    if (bytes % (1024 * 1024)) {
        snprintf(err, errlen, "memory %lld bytes is not a whole number of MiB", (long long)bytes);
        return -1;
    }
    return 0;
}

static int parse_profile(pv_config *c, const char *name, const toml_value *t, bool plural, char *err,
                         size_t errlen)
{
    if (toml_type_of(t) != TOML_TABLE)
        ERR(t, "profile %s must be a table", name);
    if (config_profile(c, name))
        ERR(t, "profile '%s' is defined twice ([profile.%s] and [profiles.%s])", name, name, name);
    c->profiles = xrealloc(c->profiles, (c->nprofiles + 1) * sizeof(pv_profile));
    pv_profile *p = &c->profiles[c->nprofiles++];
    memset(p, 0, sizeof(*p));
    p->name = xstrdup(name);
    p->memory = PV_DEFAULT_MEMORY;
    p->cpus = 1;
    p->boot_timeout_ms = PV_DEFAULT_BOOT_TIMEOUT_MS;
    const char *section = plural ? "profiles" : "profile";
    for (size_t i = 0; i < toml_table_size(t); i++) {
        const char *k = toml_table_key(t, i);
        const toml_value *v = toml_table_value(t, i);
        int rc;
        if (strcmp(k, "kernel") == 0)
            rc = want_path(c, v, "kernel", &p->kernel, err, errlen);
        else if (strcmp(k, "initrd") == 0)
            rc = want_path(c, v, "initrd", &p->initrd, err, errlen);
        else if (strcmp(k, "rootfs") == 0)
            rc = want_path(c, v, "rootfs", &p->rootfs, err, errlen);
        else if (strcmp(k, "init") == 0)
            rc = want_string(c, v, "init", &p->init, err, errlen);
        else if (strcmp(k, "cmdline") == 0)
            rc = want_string(c, v, "cmdline", &p->cmdline, err, errlen);
        else if (strcmp(k, "append") == 0)
            rc = want_string(c, v, "append", &p->append, err, errlen);
        else if (strcmp(k, "guest_os") == 0)
            rc = want_string(c, v, "guest_os", &p->guest_os, err, errlen);
        else if (strcmp(k, "machine") == 0) {
            rc = want_string(c, v, "machine", &p->machine, err, errlen);
            if (!rc && strcmp(p->machine, "microvm") && strcmp(p->machine, "pc") && strcmp(p->machine, "q35"))
                ERR(v, "machine must be \"microvm\", \"pc\" or \"q35\", not \"%s\"", p->machine);
        } else if (strcmp(k, "modules") == 0)
            rc = want_string_array(c, v, "modules", &p->modules, &p->nmodules, err, errlen);
        else if (strcmp(k, "modules_dir") == 0)
            rc = want_path(c, v, "modules_dir", &p->modules_dir, err, errlen);
        else if (strcmp(k, "memory") == 0) {
            rc = want_size(c, v, "memory", &p->memory, err, errlen);
            char why[160];
            if (!rc && config_check_memory(p->memory, why, sizeof(why)) != 0)
                ERR(v, "%s", why);
        } else if (strcmp(k, "kernel_reports") == 0) {
            char *s = NULL;
            rc = want_string(c, v, "kernel_reports", &s, err, errlen);
            if (!rc && strcmp(s, "fail") && strcmp(s, "allow")) {
                free(s);
                ERR(v, "kernel_reports must be \"fail\" or \"allow\"");
            }
            if (!rc)
                p->kernel_reports_allowed = strcmp(s, "allow") == 0;
            free(s);
        } else if (strcmp(k, "accel") == 0) {
            rc = want_string(c, v, "accel", &p->accel, err, errlen);
            if (!rc && strcmp(p->accel, "auto") && strcmp(p->accel, "kvm") && strcmp(p->accel, "tcg"))
                ERR(v, "accel must be \"auto\", \"kvm\" or \"tcg\", not \"%s\"", p->accel);
        }
        else if (strcmp(k, "cpus") == 0) {
            if (toml_type_of(v) != TOML_INT || toml_int(v) < 1 || toml_int(v) > 64)
                ERR(v, "cpus must be an integer from 1 to 64");
            p->cpus = (int)toml_int(v);
            rc = 0;
        } else if (strcmp(k, "acpi") == 0) {
            if (toml_type_of(v) != TOML_BOOL)
                ERR(v, "acpi must be true or false");
            p->no_acpi = !toml_bool(v);
            rc = 0;
        } else if (strcmp(k, "local") == 0) {
            if (toml_type_of(v) != TOML_BOOL)
                ERR(v, "local must be true or false");
            p->local = toml_bool(v);
            rc = 0;
        } else if (strcmp(k, "rootfs_writable") == 0) {
            if (toml_type_of(v) != TOML_BOOL)
                ERR(v, "rootfs_writable must be true or false");
            p->rootfs_writable = toml_bool(v);
            rc = 0;
        } else if (strcmp(k, "boot_cache") == 0) {
            if (toml_type_of(v) != TOML_BOOL)
                ERR(v, "boot_cache must be true or false");
            p->no_boot_cache = !toml_bool(v);
            rc = 0;
        } else if (strcmp(k, "boot_timeout") == 0) {
            if (toml_type_of(v) == TOML_INT && toml_int(v) > 0 && toml_int(v) <= 86400)
                p->boot_timeout_ms = toml_int(v) * 1000;
            else if (toml_type_of(v) == TOML_INT)
                ERR(v, "boot_timeout must be between 1 and 86400 seconds");
            else if (toml_type_of(v) != TOML_STRING || (p->boot_timeout_ms = parse_duration_ms(toml_string(v))) <= 0)
                ERR(v, "boot_timeout must be seconds or a duration like \"90s\"");
            rc = 0;
        } else if (strcmp(k, "disks") == 0)
            rc = want_disks(c, name, v, p, err, errlen);
        else
            ERR(v, "unknown key '%s' in [%s.%s]; known keys: kernel, initrd, rootfs, rootfs_writable, init, cmdline, append, "
                   "guest_os, machine, accel, acpi, kernel_reports, modules, modules_dir, memory, cpus, boot_timeout, local, "
                   "boot_cache, disks",
                k, section, name);
        if (rc)
            return -1;
    }
    /* a profile without a kernel loads; only the boots that use it fail (vm_boot) */
    if (!p->init)
        p->init = xstrdup("/sbin/init");
    if (p->nmodules && !p->modules_dir)
        ERR(t, "profile '%s' lists modules but no modules_dir to resolve them in", name);
    if (p->rootfs_writable && !p->rootfs)
        ERR(t, "profile '%s' sets rootfs_writable but no rootfs image to write to", name);
    if (p->rootfs && p->local)
        ERR(t, "profile '%s' sets rootfs and local = true; a local profile has no VM to attach a disk to", name);
    return 0;
}

static int parse_provium_section(pv_config *c, const toml_value *t, char *err, size_t errlen)
{
    if (toml_type_of(t) != TOML_TABLE)
        ERR(t, "[provium] must be a table");
    for (size_t i = 0; i < toml_table_size(t); i++) {
        const char *k = toml_table_key(t, i);
        const toml_value *v = toml_table_value(t, i);
        int rc;
        if (strcmp(k, "roots") == 0) {
            char **rel = NULL;
            size_t n = 0;
            rc = want_string_array(c, v, "roots", &rel, &n, err, errlen);
            if (rc)
                free_strv(rel, n);
            else {
                c->roots = xcalloc(n + 1, sizeof(char *));
                c->nroots = n;
                for (size_t r = 0; r < n; r++) {
                    char *j = path_join(c->dir, rel[r]);
                    c->roots[r] = path_absolute(j);
                    free(j);
                    free(rel[r]);
                }
                free(rel);
            }
        } else if (strcmp(k, "cache_dir") == 0) {
            rc = want_path(c, v, "cache_dir", &c->cache_dir, err, errlen);
        } else if (strcmp(k, "cache_max_size") == 0) {
            rc = want_size(c, v, "cache_max_size", &c->cache_max_size, err, errlen);
        } else
            ERR(v, "unknown key '%s' in [provium]; known keys: roots, cache_dir, cache_max_size", k);
        if (rc)
            return -1;
    }
    return 0;
}

int config_parse(const char *text, size_t len, const char *path, pv_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    c->path = path_absolute(path);
    c->dir = path_dirname(c->path);
    c->cache_max_size = 20LL * 1024 * 1024 * 1024;
    toml_value *root = toml_parse(text, len, path, err, errlen);
    if (!root)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < toml_table_size(root) && !rc; i++) {
        const char *k = toml_table_key(root, i);
        const toml_value *v = toml_table_value(root, i);
        if (strcmp(k, "provium") == 0)
            rc = parse_provium_section(c, v, err, errlen);
        else if (strcmp(k, "profile") == 0 || strcmp(k, "profiles") == 0) {
            if (toml_type_of(v) != TOML_TABLE) {
                snprintf(err, errlen, "%s:%d:%d: %s must be a table of profiles", c->path, toml_line(v),
                         toml_col(v), k);
                rc = -1;
            }
            for (size_t p = 0; p < toml_table_size(v) && !rc; p++)
                rc = parse_profile(c, toml_table_key(v, p), toml_table_value(v, p), k[7] == 's', err, errlen);
        } else {
            snprintf(err, errlen, "%s:%d:%d: unknown top-level key '%s'; expected [provium], [profile.NAME] or "
                                  "[profiles.NAME]",
                     c->path, toml_line(v), toml_col(v), k);
            rc = -1;
        }
    }
    toml_free(root);
    return rc;
}

int config_load(const char *explicit_path, pv_config *out, char *err, size_t errlen)
{
    char *path = NULL;
    if (explicit_path) {
        path = xstrdup(explicit_path);
    } else {
        char dir[PATH_MAX];
        if (!getcwd(dir, sizeof(dir)))
            strcpy(dir, "/");
        for (;;) {
            char *cand = xasprintf("%s/provium.toml", strcmp(dir, "/") ? dir : "");
            if (file_exists(cand)) {
                path = cand;
                break;
            }
            free(cand);
            char *slash = strrchr(dir, '/');
            if (!slash || slash == dir)
                break;
            *slash = 0;
        }
        if (!path && file_exists("/provium.toml"))
            path = xstrdup("/provium.toml");
    }
    if (!path) {
        memset(out, 0, sizeof(*out));
        char cwd[PATH_MAX];
        out->dir = xstrdup(getcwd(cwd, sizeof(cwd)) ? cwd : "/");
        out->cache_max_size = 20LL * 1024 * 1024 * 1024;
        return 0;
    }
    size_t len;
    char *text = read_whole_file(path, &len);
    if (!text) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(path);
        memset(out, 0, sizeof(*out));
        return -1;
    }
    int rc = config_parse(text, len, path, out, err, errlen);
    free(text);
    free(path);
    return rc;
}

const pv_profile *config_profile(const pv_config *c, const char *name)
{
    for (size_t i = 0; i < c->nprofiles; i++)
        if (strcmp(c->profiles[i].name, name) == 0)
            return &c->profiles[i];
    return NULL;
}

char *config_profile_names(const pv_config *c)
{
    strbuf b;
    sb_init(&b);
    for (size_t i = 0; i < c->nprofiles; i++)
        sb_addf(&b, "%s%s", i ? ", " : "", c->profiles[i].name);
    if (!c->nprofiles)
        sb_adds(&b, "(none)");
    return sb_take(&b);
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static char **dup_strv(char *const *v, size_t n)
{
    char **out = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

#define DUP(f) (src->f ? xstrdup(src->f) : NULL)

void profile_copy(pv_profile *dst, const pv_profile *src)
{
    *dst = *src;
    dst->name = DUP(name);
    dst->kernel = DUP(kernel);
    dst->initrd = DUP(initrd);
    dst->rootfs = DUP(rootfs);
    dst->init = DUP(init);
    dst->cmdline = DUP(cmdline);
    dst->append = DUP(append);
    dst->guest_os = DUP(guest_os);
    dst->machine = DUP(machine);
    dst->accel = DUP(accel);
    dst->modules_dir = DUP(modules_dir);
    dst->modules = dup_strv(src->modules, src->nmodules);
    dst->disks = src->ndisks ? xcalloc(src->ndisks, sizeof(pv_disk_spec)) : NULL;
    for (size_t i = 0; i < src->ndisks; i++)
        disk_spec_copy(&dst->disks[i], &src->disks[i]);
}

void profile_free(pv_profile *p)
{
    free(p->name);
    free(p->kernel);
    free(p->initrd);
    free(p->rootfs);
    free(p->init);
    free(p->cmdline);
    free(p->append);
    free(p->guest_os);
    free(p->machine);
    free(p->accel);
    free(p->modules_dir);
    free_strv(p->modules, p->nmodules);
    for (size_t i = 0; i < p->ndisks; i++)
        disk_spec_free(&p->disks[i]);
    free(p->disks);
    memset(p, 0, sizeof(*p));
}

void config_free(pv_config *c)
{
    for (size_t i = 0; i < c->nprofiles; i++)
        profile_free(&c->profiles[i]);
    free(c->profiles);
    free_strv(c->roots, c->nroots);
    free(c->cache_dir);
    free(c->path);
    free(c->dir);
    memset(c, 0, sizeof(*c));
}
