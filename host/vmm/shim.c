#include "shim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "cpio.h"
#include "embedded.h"
#include "rootfs.h"

const char *shim_agent_hash(void)
{
    static char hex[65];
    if (!hex[0])
        sha256_hex(provium_agent_blob, EMBEDDED_SIZE(provium_agent_blob), hex);
    return hex;
}

/* "virtio-pci" and "virtio_pci" name the same module. */
static char *module_key(const char *s, size_t n)
{
    char *k = strndup(s, n);
    for (char *p = k; p && *p; p++)
        if (*p == '-')
            *p = '_';
    return k;
}

/* Name of the module in a modules.dep path: "kernel/x/virtio_pci.ko" -> "virtio_pci". */
static char *module_name_of(const char *path, size_t n)
{
    const char *start = path;
    for (size_t i = 0; i < n; i++)
        if (path[i] == '/')
            start = path + i + 1;
    const char *dot = memchr(start, '.', (size_t)(path + n - start));
    return module_key(start, (size_t)((dot ? dot : path + n) - start));
}

typedef struct {
    char **paths;
    size_t n;
} path_list;

static bool list_has(const path_list *l, const char *p)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->paths[i], p) == 0)
            return true;
    return false;
}

static void list_push(path_list *l, const char *p)
{
    l->paths = xrealloc(l->paths, (l->n + 2) * sizeof(char *));
    l->paths[l->n++] = xstrdup(p);
    l->paths[l->n] = NULL;
}

static bool is_builtin(const char *modules_dir, const char *name)
{
    char *path = xasprintf("%s/modules.builtin", modules_dir);
    size_t len;
    char *text = read_whole_file(path, &len);
    free(path);
    bool found = false;
    for (char *line = text ? strtok(text, "\n") : NULL; line && !found; line = strtok(NULL, "\n")) {
        char *k = module_name_of(line, strlen(line));
        found = strcmp(k, name) == 0;
        free(k);
    }
    free(text);
    return found;
}

char **shim_resolve_modules(const char *modules_dir, char *const *names, size_t n, char *err, size_t errlen)
{
    char *dep_path = xasprintf("%s/modules.dep", modules_dir);
    size_t len;
    char *dep = read_whole_file(dep_path, &len);
    if (!dep) {
        snprintf(err, errlen, "cannot read %s: %s", dep_path, read_error_text(errno));
        free(dep_path);
        return NULL;
    }
    free(dep_path);
    path_list out = {xcalloc(1, sizeof(char *)), 0};
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        char *want = module_key(names[i], strlen(names[i]));
        const char *line = NULL;
        for (const char *p = dep; p && *p;) {
            const char *colon = strchr(p, ':');
            const char *eol = strchr(p, '\n');
            if (!eol)
                eol = p + strlen(p);
            if (colon && colon < eol) {
                char *name = module_name_of(p, (size_t)(colon - p));
                bool match = strcmp(name, want) == 0;
                free(name);
                if (match) {
                    line = p;
                    break;
                }
            }
            p = *eol ? eol + 1 : NULL;
        }
        if (!line) {
            if (!is_builtin(modules_dir, want)) {
                snprintf(err, errlen, "kernel module '%s' is not in %s/modules.dep (nor built in)", names[i],
                         modules_dir);
                ok = false;
            }
            free(want);
            continue;
        }
        free(want);
        /* "mod.ko: dep1.ko dep2.ko": modprobe loads the dependencies in
         * reverse order of that list, then the module itself. */
        const char *eol = strchr(line, '\n');
        char *l = strndup(line, eol ? (size_t)(eol - line) : strlen(line));
        char *colon = strchr(l, ':');
        *colon = 0;
        /* as many dependencies as the line names: no fixed cap */
        char **deps = NULL;
        size_t nd = 0;
        for (char *tok = strtok(colon + 1, " "); tok; tok = strtok(NULL, " ")) {
            deps = xrealloc(deps, (nd + 1) * sizeof(char *));
            deps[nd++] = tok;
        }
        for (size_t d = nd; d-- > 0;) {
            char *abs = xasprintf("%s/%s", modules_dir, deps[d]);
            if (!list_has(&out, abs))
                list_push(&out, abs);
            free(abs);
        }
        free(deps);
        char *abs = xasprintf("%s/%s", modules_dir, l);
        if (!list_has(&out, abs))
            list_push(&out, abs);
        free(abs);
        free(l);
    }
    free(dep);
    for (size_t i = 0; ok && i < out.n; i++) {
        size_t pl = strlen(out.paths[i]);
        if (pl < 3 || strcmp(out.paths[i] + pl - 3, ".ko") != 0) {
            snprintf(err, errlen, "kernel module %s is compressed; only uncompressed .ko files are supported",
                     out.paths[i]);
            ok = false;
        }
    }
    if (!ok) {
        for (size_t i = 0; i < out.n; i++)
            free(out.paths[i]);
        free(out.paths);
        return NULL;
    }
    return out.paths;
}

/* The most module files one shim carries: their names' 3-digit index. */
#define SHIM_MAX_MODULES 999

static int build_shim(const pv_profile *p, const pv_inject_file *files, size_t nfiles, cpio_writer *w, char *err,
                      size_t errlen)
{
    const unsigned char *agent = provium_agent_blob;
    size_t agent_len = EMBEDDED_SIZE(provium_agent_blob);
    cpio_add_file(w, "provium-wrapper", 0755, agent, agent_len);
    cpio_add_file(w, "provium-agent", 0755, agent, agent_len);
    if (rootfs_boots_from_disk(p)) {
        /* the kernel runs an initramfs's /init; the wrapper then boots the disk */
        cpio_add_symlink(w, "init", "provium-wrapper");
        if (nfiles) {
            snprintf(err, errlen, "profile '%s' boots from its rootfs disk, and the boot option files needs an "
                                  "initramfs to put them in (the disk's root replaces it); write them with "
                                  "vm:write_file after the boot, or give the profile an initrd", p->name);
            return -1;
        }
    }
    if (p->nmodules) {
        char **mods = shim_resolve_modules(p->modules_dir, p->modules, p->nmodules, err, errlen);
        if (!mods)
            return -1;
        size_t nmods = 0;
        while (mods[nmods])
            nmods++;
        /* the agent loads them in name order: a 3-digit index keeps that
         * order for up to 999 files, beyond which it would silently break */
        if (nmods > SHIM_MAX_MODULES) {
            snprintf(err, errlen,
                     "the profile's %zu kernel modules need %zu files with their dependencies; the shim loads at "
                     "most %d in order",
                     p->nmodules, nmods, SHIM_MAX_MODULES);
            for (size_t k = 0; k < nmods; k++)
                free(mods[k]);
            free(mods);
            return -1;
        }
        cpio_add_dir(w, "provium", 0755);
        cpio_add_dir(w, "provium/modules", 0755);
        for (size_t i = 0; mods[i]; i++) {
            size_t len;
            char *data = read_whole_file(mods[i], &len);
            if (!data) {
                snprintf(err, errlen, "cannot read kernel module %s: %s", mods[i], read_error_text(errno));
                for (size_t k = i; mods[k]; k++)
                    free(mods[k]);
                free(mods);
                return -1;
            }
            const char *base = strrchr(mods[i], '/') + 1;
            char *name = xasprintf("provium/modules/%03zu-%s", i, base);
            cpio_add_file(w, name, 0644, data, len);
            free(name);
            free(data);
            free(mods[i]);
        }
        free(mods);
    }
    if (nfiles && p->initrd) {
        /* Parents that the profile's initramfs already has keep their mode
         * and owner (an entry for /tmp or /home/user would reset them). */
        size_t len;
        char *base = read_whole_file(p->initrd, &len);
        if (base)
            cpio_know_dirs(w, base, len);
        free(base);
    }
    for (size_t i = 0; i < nfiles; i++) {
        cpio_add_parents(w, files[i].path);
        cpio_add_file(w, files[i].path, 0644, files[i].content, files[i].len);
    }
    cpio_finish(w);
    return 0;
}

char *shim_prepare_initrd(const pv_profile *p, const pv_inject_file *files, size_t nfiles, char *err, size_t errlen)
{
    struct stat st = {0};
    if (p->initrd && stat(p->initrd, &st) != 0) {
        snprintf(err, errlen, "profile '%s': initrd %s: %s", p->name, p->initrd, strerror(errno));
        return NULL;
    }
    if (p->initrd && !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "profile '%s': initrd %s is a %s; it must be a regular file (a cpio archive)", p->name,
                 p->initrd, file_type_name(st.st_mode));
        return NULL;
    }
    if (p->initrd && access(p->initrd, R_OK) != 0) {
        snprintf(err, errlen, "profile '%s': initrd %s is not readable: %s", p->name, p->initrd, strerror(errno));
        return NULL;
    }
    cpio_writer w;
    cpio_init(&w);
    if (build_shim(p, files, nfiles, &w, err, errlen) != 0) {
        cpio_free(&w);
        return NULL;
    }
    /* Key: the shim's bytes plus the identity of the user's initrd (hashing
     * a large initrd on every boot would cost more than it saves). */
    char shim_hash[65], key[65];
    sha256_hex(w.out.s, w.out.len, shim_hash);
    char *ident = xasprintf("%s|%s|%lld|%lld.%09ld|%llu", shim_hash, p->initrd ? p->initrd : "",
                            (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
                            (unsigned long long)st.st_ino);
    sha256_hex(ident, strlen(ident), key);
    free(ident);
    char *dir = xasprintf("%s/initrd", cache_root());
    char *path = xasprintf("%s/%.32s.cpio", dir, key);
    if (file_exists(path)) {
        free(dir);
        cpio_free(&w);
        return path;
    }
    if (mkdir_p(dir, 0755) != 0) {
        snprintf(err, errlen, "cannot create cache directory %s: %s", dir, strerror(errno));
        goto fail;
    }
    strbuf all;
    sb_init(&all);
    if (p->initrd) {
        size_t len;
        char *user = read_whole_file(p->initrd, &len);
        if (!user) {
            snprintf(err, errlen, "profile '%s': initrd %s: %s", p->name, p->initrd, read_error_text(errno));
            sb_free(&all);
            goto fail;
        }
        sb_add(&all, user, len);
        free(user);
        /* The kernel looks for the next archive at a 4-byte boundary and
         * skips zero padding. */
        static const char zeros[4];
        if (all.len & 3)
            sb_add(&all, zeros, 4 - (all.len & 3));
    }
    sb_add(&all, w.out.s, w.out.len);
    /* Write then rename, so a concurrent boot never sees half a file. */
    char *tmp = xasprintf("%s.%d.tmp", path, (int)getpid());
    int rc = write_whole_file(tmp, all.s, all.len, 0644);
    if (rc == 0)
        rc = rename(tmp, path);
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    sb_free(&all);
    if (rc != 0)
        goto fail;
    free(dir);
    cpio_free(&w);
    return path;
fail:
    free(dir);
    free(path);
    cpio_free(&w);
    return NULL;
}
