/*
 * test_config.c - tests for the provium.toml loader in host/config/config.c.
 *
 * config_parse is given texts "as if read from" /some/dir/provium.toml, so
 * relative paths must come out under /some/dir. Covers both profile
 * spellings ([profile.NAME] and [profiles.NAME]) with every key, defaults,
 * ~/ paths, the [provium] section, every validation error (each must carry
 * file:line:col), config_load with an explicit path and the upward search.
 *
 * It also carries regression tests for the bugs it found (an overflow, a leak).
 * Prints "FAIL [case] ..." for every failed check and "N passed, N failed".
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#include "check.h"

static bool streq(const char *a, const char *b) { return a && b ? strcmp(a, b) == 0 : a == b; }
#define CHECK_STR(got, want)                                                                                     \
    CHECKF(streq((got), (want)), "%s is \"%s\", expected \"%s\"", #got, (got) ? (got) : "(null)",                 \
           (want) ? (want) : "(null)")

#define TOML_PATH "/some/dir/provium.toml"

/* Parses text as TOML_PATH; returns config_parse's result. */
static int parse(const char *text, pv_config *c, char *err, size_t errlen)
{
    err[0] = 0;
    return config_parse(text, strlen(text), TOML_PATH, c, err, errlen);
}

TEST(profile_singular)
{
    set_case("[profile.NAME]");
    const char *text = "# comment\n"
                       "[profile.alpine]\n"
                       "kernel = \"images/vmlinuz\"\n"
                       "initrd = \"../shared/./initrd.img\"\n"
                       "rootfs = \"/abs/rootfs.ext4\"\n"
                       "init = \"/sbin/openrc-init\"\n"
                       "append = \"quiet loglevel=3\"\n";
    pv_config c;
    char err[512];
    if (CHECKF(parse(text, &c, err, sizeof(err)) == 0, "config_parse failed: %s", err)) {
        CHECK_STR(c.path, TOML_PATH);
        CHECK_STR(c.dir, "/some/dir");
        CHECK_EQ_INT(c.nprofiles, 1);
        const pv_profile *p = config_profile(&c, "alpine");
        if (CHECK(p != NULL)) {
            CHECK_STR(p->name, "alpine");
            CHECK_STR(p->kernel, "/some/dir/images/vmlinuz");
            CHECK_STR(p->initrd, "/some/shared/initrd.img");
            CHECK_STR(p->rootfs, "/abs/rootfs.ext4");
            CHECK_STR(p->init, "/sbin/openrc-init");
            CHECK_STR(p->append, "quiet loglevel=3");
            /* defaults */
            CHECK(p->cmdline == NULL && p->guest_os == NULL && p->machine == NULL);
            CHECK(p->modules == NULL && p->nmodules == 0 && p->modules_dir == NULL);
            CHECK(p->memory == PV_DEFAULT_MEMORY);
            CHECK(p->cpus == 1);
            CHECK(p->boot_timeout_ms == PV_DEFAULT_BOOT_TIMEOUT_MS);
        }
        CHECK(config_profile(&c, "missing") == NULL);
        /* [provium] defaults */
        CHECK(c.nroots == 0 && c.cache_dir == NULL);
        CHECK(c.cache_max_size == 20LL * 1024 * 1024 * 1024);
    }
    config_free(&c);
    CHECK(c.profiles == NULL && c.nprofiles == 0 && c.path == NULL);
}

TEST(profile_plural)
{
    set_case("[profiles.NAME]");
    const char *text = "[profiles.debian]\n"
                       "kernel = \"./k/vmlinuz\"\n"
                       "initrd = \"k//initrd\"\n"
                       "cmdline = \"console=ttyS0 root=/dev/vda\"\n"
                       "guest_os = \"debian\"\n"
                       "machine = \"q35\"\n"
                       "modules = [\"virtio_console\", \"9p\", \"virtio_net\"]\n"
                       "modules_dir = \"mods/6.1.0\"\n"
                       "memory = \"1G\"\n"
                       "cpus = 4\n"
                       "boot_timeout = \"90s\"\n"
                       "\n"
                       "[profiles.tiny]\n"
                       "kernel = \"/boot/vmlinuz\"\n"
                       "machine = \"microvm\"\n"
                       "memory = 134217728\n"
                       "cpus = 64\n"
                       "boot_timeout = 30\n"
                       "acpi = false\n"
                       "boot_cache = false\n"
                       "\n"
                       "[profiles.pc]\n"
                       "kernel = \"k\"\n"
                       "machine = \"pc\"\n"
                       "memory = \"512M\"\n"
                       "boot_timeout = \"500ms\"\n"
                       "modules = []\n";
    pv_config c;
    char err[512];
    if (CHECKF(parse(text, &c, err, sizeof(err)) == 0, "config_parse failed: %s", err)) {
        CHECK_EQ_INT(c.nprofiles, 3);
        const pv_profile *p = config_profile(&c, "debian");
        if (CHECK(p != NULL)) {
            CHECK_STR(p->kernel, "/some/dir/k/vmlinuz");
            CHECK_STR(p->initrd, "/some/dir/k/initrd");
            CHECK_STR(p->cmdline, "console=ttyS0 root=/dev/vda");
            CHECK_STR(p->guest_os, "debian");
            CHECK_STR(p->machine, "q35");
            CHECK_STR(p->modules_dir, "/some/dir/mods/6.1.0");
            if (CHECK(p->nmodules == 3 && p->modules)) {
                CHECK_STR(p->modules[0], "virtio_console");
                CHECK_STR(p->modules[1], "9p");
                CHECK_STR(p->modules[2], "virtio_net");
                CHECK(p->modules[3] == NULL);
            }
            CHECK(p->memory == 1024LL * 1024 * 1024);
            CHECK(p->cpus == 4);
            CHECK(p->boot_timeout_ms == 90000);
            CHECK(!p->no_boot_cache); /* default: boots go through the boot cache */
            CHECK_STR(p->init, "/sbin/init"); /* default */
            CHECK(p->rootfs == NULL && p->append == NULL);
            CHECK(!p->no_acpi); /* ACPI is on unless the profile says acpi = false */
        }
        p = config_profile(&c, "tiny");
        if (CHECK(p != NULL)) {
            CHECK_STR(p->kernel, "/boot/vmlinuz");
            CHECK_STR(p->machine, "microvm");
            CHECK(p->memory == 134217728);
            CHECK(p->cpus == 64);
            CHECK(p->boot_timeout_ms == 30000);
            CHECK(p->no_acpi);
            CHECK(p->no_boot_cache);
            CHECK_STR(p->init, "/sbin/init");
            CHECK(p->initrd == NULL);
        }
        p = config_profile(&c, "pc");
        if (CHECK(p != NULL)) {
            CHECK_STR(p->machine, "pc");
            CHECK(p->memory == 512LL * 1024 * 1024);
            CHECK(p->boot_timeout_ms == 500);
            CHECK(p->nmodules == 0);
        }
        char *names = config_profile_names(&c);
        CHECK_STR(names, "debian, tiny, pc");
        free(names);

        /* profile_copy is deep */
        set_case("profile_copy");
        pv_profile copy;
        profile_copy(&copy, config_profile(&c, "debian"));
        const pv_profile *orig = config_profile(&c, "debian");
        CHECK(copy.kernel != orig->kernel && streq(copy.kernel, orig->kernel));
        CHECK(copy.modules != orig->modules && copy.nmodules == 3 && streq(copy.modules[1], "9p"));
        CHECK(copy.memory == orig->memory && copy.cpus == orig->cpus && copy.boot_timeout_ms == orig->boot_timeout_ms);
        CHECK(copy.rootfs == NULL);
        profile_free(&copy);
        CHECK(copy.kernel == NULL && copy.modules == NULL);
    }
    config_free(&c);
}

TEST(both_spellings_and_home)
{
    set_case("both spellings side by side, ~/ paths");
    const char *home = getenv("HOME");
    char *saved = home ? strdup(home) : NULL;
    setenv("HOME", "/home/tester", 1);
    const char *text = "[profile.a]\n"
                       "kernel = \"~/kernels/a\"\n"
                       "[profiles.b]\n"
                       "kernel = \"~/kernels/../b\"\n"
                       "modules_dir = \"~/m\"\n";
    pv_config c;
    char err[512];
    if (CHECKF(parse(text, &c, err, sizeof(err)) == 0, "config_parse failed: %s", err)) {
        const pv_profile *a = config_profile(&c, "a"), *b = config_profile(&c, "b");
        if (CHECK(a && b)) {
            CHECK_STR(a->kernel, "/home/tester/kernels/a");
            CHECK_STR(b->kernel, "/home/tester/b");
            CHECK_STR(b->modules_dir, "/home/tester/m");
        }
    }
    config_free(&c);
    if (saved) {
        setenv("HOME", saved, 1);
        free(saved);
    } else {
        unsetenv("HOME");
    }

    set_case("empty file");
    if (CHECKF(parse("", &c, err, sizeof(err)) == 0, "%s", err)) {
        CHECK_EQ_INT(c.nprofiles, 0);
        char *names = config_profile_names(&c);
        CHECK_STR(names, "(none)");
        free(names);
    }
    config_free(&c);
}

TEST(provium_section)
{
    set_case("[provium]");
    const char *text = "[provium]\n"
                       "roots = [\"tests\", \"../other/./x\", \"/abs/suite\"]\n"
                       "cache_dir = \"cache\"\n"
                       "cache_max_size = \"5G\"\n";
    pv_config c;
    char err[512];
    if (CHECKF(parse(text, &c, err, sizeof(err)) == 0, "config_parse failed: %s", err)) {
        if (CHECK(c.nroots == 3 && c.roots)) {
            CHECK_STR(c.roots[0], "/some/dir/tests");
            CHECK_STR(c.roots[1], "/some/other/x");
            CHECK_STR(c.roots[2], "/abs/suite");
        }
        CHECK_STR(c.cache_dir, "/some/dir/cache");
        CHECK(c.cache_max_size == 5LL * 1024 * 1024 * 1024);
        CHECK_EQ_INT(c.nprofiles, 0);
    }
    config_free(&c);

    set_case("[provium] cache_max_size as an integer");
    if (CHECKF(parse("[provium]\ncache_max_size = 1048576\nroots = []\n", &c, err, sizeof(err)) == 0, "%s", err)) {
        CHECK_EQ_INT(c.cache_max_size, 1048576);
        CHECK_EQ_INT(c.nroots, 0);
    }
    config_free(&c);
}

/* Expects config_parse to fail with "/some/dir/provium.toml:LINE:COL: ..."
 * where the message contains `what`. Errors about a whole profile point at
 * its table header. line 0: any line. */
static void expect_error(int srcline, const char *label, const char *text, int line, const char *what)
{
    set_case("error: %s", label);
    pv_config c;
    char err[1024];
    int rc = parse(text, &c, err, sizeof(err));
    if (check_(rc == -1, __FILE__, srcline, "accepted invalid config")) {
        char prefix[64];
        int l = 0, col = 0, used = 0;
        snprintf(prefix, sizeof(prefix), "%s:%%d:%%d: %%n", TOML_PATH);
        int got = sscanf(err, prefix, &l, &col, &used);
        check_(got == 2 && used > 0, __FILE__, srcline, "message lacks \"%s:line:col: \": \"%s\"", TOML_PATH, err);
        if (got == 2) {
            check_(line == 0 || l == line, __FILE__, srcline, "reported line %d, expected %d: \"%s\"", l, line, err);
            check_(col >= 1, __FILE__, srcline, "column %d is not positive", col);
        }
        check_(strstr(err, what) != NULL, __FILE__, srcline, "message \"%s\" lacks \"%s\"", err, what);
    }
    config_free(&c);
}
#define EXPECT_ERROR(label, text, line, what) expect_error(__LINE__, label, text, line, what)

/* A profile without a kernel loads: only the boots that use it fail. */
TEST(profile_without_kernel)
{
    set_case("a profile without a kernel loads");
    pv_config c;
    char err[512];
    if (CHECKF(parse("[profile.nokernel]\ninitrd = \"i\"\n\n[profiles.empty]\n\n[profiles.k]\nkernel = \"k\"\n", &c, err,
                     sizeof(err)) == 0,
               "config_parse failed: %s", err)) {
        const pv_profile *p = config_profile(&c, "nokernel");
        CHECK(p != NULL && p->kernel == NULL && p->initrd != NULL);
        p = config_profile(&c, "empty");
        CHECK(p != NULL && p->kernel == NULL && !p->local);
        p = config_profile(&c, "k");
        if (CHECK(p != NULL))
            CHECK_STR(p->kernel, "/some/dir/k");
    }
    config_free(&c);
}

TEST(errors)
{
    EXPECT_ERROR("unknown key in [profile.x]", "[profile.x]\nkernel = \"k\"\nkernal = \"k\"\n", 3,
                 "unknown key 'kernal' in [profile.x]");
    EXPECT_ERROR("unknown key in [profiles.x]", "[profiles.x]\nkernel = \"k\"\n\nmemroy = \"1G\"\n", 4,
                 "unknown key 'memroy' in [profiles.x]");
    EXPECT_ERROR("unknown top-level key", "[profile.x]\nkernel = \"k\"\n[server]\nport = 1\n", 3,
                 "unknown top-level key 'server'");
    EXPECT_ERROR("unknown top-level scalar", "version = 2\n", 1, "unknown top-level key 'version'");
    EXPECT_ERROR("unknown key in [provium]", "[provium]\nroot = [\"x\"]\n", 2, "unknown key 'root' in [provium]");
    EXPECT_ERROR("profile in both spellings", "[profile.x]\nkernel = \"a\"\n[profiles.x]\nkernel = \"b\"\n", 3,
                 "profile 'x' is defined twice");
    EXPECT_ERROR("profile in both spellings (plural first)",
                 "[profiles.dup]\nkernel = \"a\"\n\n[profile.dup]\nkernel = \"b\"\n", 4, "defined twice");
    EXPECT_ERROR("bad machine", "[profiles.x]\nkernel = \"k\"\nmachine = \"virt\"\n", 3,
                 "machine must be \"microvm\", \"pc\" or \"q35\", not \"virt\"");
    EXPECT_ERROR("machine in upper case", "[profiles.x]\nkernel = \"k\"\nmachine = \"Q35\"\n", 3, "machine must be");
    EXPECT_ERROR("modules without modules_dir", "[profiles.x]\nkernel = \"k\"\nmodules = [\"virtio_console\"]\n", 1,
                 "lists modules but no modules_dir");

    /* wrong types */
    EXPECT_ERROR("kernel not a string", "[profile.x]\nkernel = 5\n", 2, "kernel must be a string, not integer");
    EXPECT_ERROR("initrd not a string", "[profile.x]\nkernel = \"k\"\ninitrd = true\n", 3, "initrd must be a string");
    EXPECT_ERROR("append not a string", "[profile.x]\nkernel = \"k\"\nappend = [\"a\"]\n", 3, "append must be a string");
    EXPECT_ERROR("init not a string", "[profile.x]\nkernel = \"k\"\ninit = 1.5\n", 3, "init must be a string");
    EXPECT_ERROR("cmdline not a string", "[profiles.x]\nkernel = \"k\"\ncmdline = {a = 1}\n", 3,
                 "cmdline must be a string");
    EXPECT_ERROR("modules not an array", "[profiles.x]\nkernel = \"k\"\nmodules_dir = \"m\"\nmodules = \"9p\"\n", 4,
                 "modules must be an array of strings");
    EXPECT_ERROR("modules with a number", "[profiles.x]\nkernel = \"k\"\nmodules_dir = \"m\"\nmodules = [\"a\", 2]\n",
                 4, "modules must contain only strings");
    EXPECT_ERROR("cpus as a string", "[profiles.x]\nkernel = \"k\"\ncpus = \"4\"\n", 3, "cpus must be an integer");
    EXPECT_ERROR("cpus zero", "[profiles.x]\nkernel = \"k\"\ncpus = 0\n", 3, "cpus must be an integer from 1 to 64");
    EXPECT_ERROR("cpus too many", "[profiles.x]\nkernel = \"k\"\ncpus = 65\n", 3, "cpus must be");
    EXPECT_ERROR("acpi not a bool", "[profiles.x]\nkernel = \"k\"\nacpi = \"off\"\n", 3, "acpi must be true or false");
    EXPECT_ERROR("memory malformed", "[profiles.x]\nkernel = \"k\"\nmemory = \"lots\"\n", 3,
                 "memory must be a positive byte count");
    EXPECT_ERROR("memory zero", "[profiles.x]\nkernel = \"k\"\nmemory = 0\n", 3, "memory must be");
    EXPECT_ERROR("memory negative", "[profiles.x]\nkernel = \"k\"\nmemory = -1\n", 3, "memory must be");
    EXPECT_ERROR("memory float", "[profiles.x]\nkernel = \"k\"\nmemory = 1.5\n", 3, "memory must be");
    EXPECT_ERROR("boot_timeout malformed", "[profiles.x]\nkernel = \"k\"\nboot_timeout = \"soon\"\n", 3,
                 "boot_timeout must be");
    EXPECT_ERROR("boot_timeout zero", "[profiles.x]\nkernel = \"k\"\nboot_timeout = 0\n", 3, "boot_timeout must be");
    EXPECT_ERROR("boot_cache string", "[profiles.x]\nkernel = \"k\"\nboot_cache = \"no\"\n", 3,
                 "boot_cache must be true or false");
    EXPECT_ERROR("boot_timeout bool", "[profiles.x]\nkernel = \"k\"\nboot_timeout = true\n", 3, "boot_timeout must be");
    EXPECT_ERROR("profile not a table", "[profile]\nx = 1\n", 2, "profile x must be a table");
    EXPECT_ERROR("profiles not a table", "profiles = 3\n", 1, "profiles must be a table of profiles");
    EXPECT_ERROR("[provium] not a table", "provium = \"x\"\n", 1, "[provium] must be a table");
    EXPECT_ERROR("roots not an array", "[provium]\nroots = \"tests\"\n", 2, "roots must be an array of strings");
    EXPECT_ERROR("cache_dir not a string", "[provium]\ncache_dir = 1\n", 2, "cache_dir must be a string");
    EXPECT_ERROR("cache_max_size malformed", "[provium]\ncache_max_size = \"big\"\n", 2, "cache_max_size must be");

    /* the first error wins, later profiles are not needed */
    EXPECT_ERROR("error in the second profile", "[profile.ok]\nkernel = \"k\"\n[profile.bad]\nkernel = \"k\"\nx = 1\n",
                 5, "unknown key 'x' in [profile.bad]");

    /* malformed TOML: the parser's own file:line:col error comes through */
    EXPECT_ERROR("malformed TOML: unterminated table header", "[profile.x\nkernel = \"k\"\n", 1, "");
    EXPECT_ERROR("malformed TOML: unterminated string", "[profile.x]\nkernel = \"k\n", 2, "");
    EXPECT_ERROR("malformed TOML: missing value", "[profile.x]\nkernel =\n", 2, "");
    EXPECT_ERROR("malformed TOML: duplicate key", "[profile.x]\nkernel = \"a\"\nkernel = \"b\"\n", 3, "");
    EXPECT_ERROR("malformed TOML: garbage line", "[profile.x]\nkernel = \"a\"\n!!!\n", 3, "");
}

/* rootfs and rootfs_writable: the disk-boot keys (docs/configuration.md). */
TEST(rootfs_keys)
{
    set_case("rootfs relative path and rootfs_writable");
    const char *text = "[profiles.disk]\nkernel = \"k\"\nrootfs = \"images/root.ext4\"\nrootfs_writable = true\n"
                       "[profiles.ro]\nkernel = \"k\"\nrootfs = \"/abs/root.ext4\"\n"
                       "[profiles.off]\nkernel = \"k\"\nrootfs = \"r\"\nrootfs_writable = false\n";
    pv_config c;
    char err[512];
    if (CHECKF(parse(text, &c, err, sizeof(err)) == 0, "config_parse failed: %s", err)) {
        const pv_profile *p = config_profile(&c, "disk");
        if (CHECK(p != NULL)) {
            CHECK_STR(p->rootfs, "/some/dir/images/root.ext4");
            CHECK(p->rootfs_writable);
            pv_profile copy;
            profile_copy(&copy, p);
            CHECK(copy.rootfs_writable && copy.rootfs != p->rootfs && streq(copy.rootfs, p->rootfs));
            profile_free(&copy);
        }
        p = config_profile(&c, "ro");
        if (CHECK(p != NULL))
            CHECK(streq(p->rootfs, "/abs/root.ext4") && !p->rootfs_writable); /* read-only by default */
        p = config_profile(&c, "off");
        if (CHECK(p != NULL))
            CHECK(!p->rootfs_writable);
    }
    config_free(&c);

    EXPECT_ERROR("rootfs_writable not a bool", "[profiles.x]\nkernel = \"k\"\nrootfs = \"r\"\nrootfs_writable = 1\n",
                 4, "rootfs_writable must be true or false");
    EXPECT_ERROR("rootfs_writable as a string",
                 "[profiles.x]\nkernel = \"k\"\nrootfs = \"r\"\nrootfs_writable = \"yes\"\n", 4,
                 "rootfs_writable must be true or false");
    EXPECT_ERROR("rootfs_writable without rootfs", "[profiles.x]\nkernel = \"k\"\nrootfs_writable = true\n", 1,
                 "profile 'x' sets rootfs_writable but no rootfs image to write to");
    EXPECT_ERROR("rootfs not a string", "[profiles.x]\nkernel = \"k\"\nrootfs = 3\n", 3,
                 "rootfs must be a string, not integer");
    EXPECT_ERROR("rootfs on a local profile", "[profiles.x]\nlocal = true\nrootfs = \"r\"\n", 1,
                 "sets rootfs and local = true");
    EXPECT_ERROR("rootfs_writable is listed as a known key", "[profiles.x]\nkernel = \"k\"\nrootfs_writeable = true\n",
                 3, "known keys: kernel, initrd, rootfs, rootfs_writable,");
}

/* Regression tests for bugs found by these tests and since fixed. */
TEST(known_bugs)
{
    /* config.c parse_profile: `toml_int(v) * 1000` overflows int64 (UB; UBSan aborts). */
    EXPECT_ERROR("regression: boot_timeout overflow", "[profiles.x]\nkernel = \"k\"\nboot_timeout = 9223372036854775807\n",
                 3, "boot_timeout must be");
    /* config.c parse_provium_section: the `rel` array leaks when roots holds a non-string (LeakSanitizer). */
    EXPECT_ERROR("regression: roots with a number (leak)", "[provium]\nroots = [\"a\", 1]\n", 2,
                 "roots must contain only strings");
}

/* ---- config_load ---- */

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    if (write_whole_file(path, text, strlen(text), 0644) != 0)
        printf("cannot write %s: %s\n", path, strerror(errno));
    return path;
}

static bool any_ancestor_has_config(const char *dir)
{
    char *d = xstrdup(dir);
    bool found = false;
    for (;;) {
        char *cand = xasprintf("%s/provium.toml", strcmp(d, "/") ? d : "");
        found |= file_exists(cand);
        free(cand);
        if (strcmp(d, "/") == 0)
            break;
        char *up = path_dirname(d);
        free(d);
        d = up;
    }
    free(d);
    return found;
}

TEST(load)
{
    char err[1024];
    pv_config c;

    set_case("config_load of a nonexistent explicit path");
    const char *missing = "/nonexistent-provium-dir/sub/provium.toml";
    err[0] = 0;
    CHECK_EQ_INT(config_load(missing, &c, err, sizeof(err)), -1);
    CHECKF(strstr(err, missing) != NULL, "message \"%s\" does not name the path", err);
    CHECKF(strstr(err, strerror(ENOENT)) != NULL, "message \"%s\" does not give the reason", err);
    config_free(&c);

    char tmpl[] = "/tmp/provium-test-config-XXXXXX";
    if (!CHECK(mkdtemp(tmpl) != NULL))
        return;
    char *root = realpath(tmpl, NULL);
    char old[PATH_MAX];
    CHECK(getcwd(old, sizeof(old)) != NULL);

    /* a/b/c with provium.toml in a */
    char *a = xasprintf("%s/a", root), *b = xasprintf("%s/a/b", root), *cdir = xasprintf("%s/a/b/c", root);
    CHECK_EQ_INT(mkdir_p(cdir, 0755), 0);
    char *cfg_a = write_file(a, "provium.toml", "[profile.found]\nkernel = \"kernels/vmlinuz\"\n");

    set_case("config_load with an explicit existing path");
    if (CHECKF(config_load(cfg_a, &c, err, sizeof(err)) == 0, "%s", err)) {
        CHECK_STR(c.path, cfg_a);
        CHECK_STR(c.dir, a);
        const pv_profile *p = config_profile(&c, "found");
        char *k = xasprintf("%s/kernels/vmlinuz", a);
        if (CHECK(p))
            CHECK_STR(p->kernel, k);
        free(k);
    }
    config_free(&c);

    set_case("config_load with an explicit relative path");
    if (CHECK_EQ_INT(chdir(root), 0)) {
        if (CHECKF(config_load("a/provium.toml", &c, err, sizeof(err)) == 0, "%s", err)) {
            CHECK_STR(c.path, cfg_a);
            CHECK_STR(c.dir, a);
        }
        config_free(&c);
    }

    set_case("config_load(NULL) searches upwards from a/b/c");
    if (CHECK_EQ_INT(chdir(cdir), 0)) {
        if (CHECKF(config_load(NULL, &c, err, sizeof(err)) == 0, "%s", err)) {
            CHECK_STR(c.path, cfg_a);
            CHECK_STR(c.dir, a);
            CHECK(config_profile(&c, "found") != NULL);
        }
        config_free(&c);
    }

    set_case("config_load(NULL) prefers the nearest provium.toml");
    char *cfg_b = write_file(b, "provium.toml", "[profiles.nearer]\nkernel = \"/k\"\n");
    if (CHECK_EQ_INT(chdir(cdir), 0)) {
        if (CHECKF(config_load(NULL, &c, err, sizeof(err)) == 0, "%s", err)) {
            CHECK_STR(c.path, cfg_b);
            CHECK(config_profile(&c, "nearer") != NULL && config_profile(&c, "found") == NULL);
        }
        config_free(&c);
    }

    set_case("config_load(NULL) finds one in the working directory itself");
    if (CHECK_EQ_INT(chdir(b), 0)) {
        if (CHECKF(config_load(NULL, &c, err, sizeof(err)) == 0, "%s", err))
            CHECK_STR(c.path, cfg_b);
        config_free(&c);
    }

    set_case("config_load(NULL) reports errors of the file it found");
    char *bad = write_file(b, "provium.toml", "[profiles.nearer]\nkernel = \"/k\"\nbogus = 1\n");
    if (CHECK_EQ_INT(chdir(cdir), 0)) {
        err[0] = 0;
        CHECK_EQ_INT(config_load(NULL, &c, err, sizeof(err)), -1);
        char *want = xasprintf("%s:3:", cfg_b);
        CHECKF(strstr(err, want) != NULL, "message \"%s\" lacks \"%s\"", err, want);
        free(want);
        config_free(&c);
    }
    free(bad);

    set_case("config_load(NULL) without any provium.toml");
    char *lone = xasprintf("%s/lone/dir", root);
    CHECK_EQ_INT(mkdir_p(lone, 0755), 0);
    if (any_ancestor_has_config(lone)) {
        printf("test_config: skipping the no-config case: an ancestor of %s has a provium.toml\n", lone);
    } else if (CHECK_EQ_INT(chdir(lone), 0)) {
        if (CHECKF(config_load(NULL, &c, err, sizeof(err)) == 0, "%s", err)) {
            CHECK(c.path == NULL);
            CHECK_STR(c.dir, lone);
            CHECK(c.nprofiles == 0 && c.nroots == 0);
            CHECK(c.cache_max_size == 20LL * 1024 * 1024 * 1024);
        }
        config_free(&c);
    }

    CHECK_EQ_INT(chdir(old), 0);
    rm_rf(root);
    free(lone);
    free(cfg_a);
    free(cfg_b);
    free(a);
    free(b);
    free(cdir);
    free(root);
}

/* The `disks` key: each source kind, relative paths, defaults, and the
 * combinations disk_spec_check refuses. */
TEST(disks)
{
    const char *text = "[profiles.d]\nkernel = \"k\"\n"
                       "disks = [{ size = \"64M\", id = \"scratch\" },\n"
                       "         { path = \"img/base.qcow2\", format = \"qcow2\", readonly = true },\n"
                       "         { path = \"/abs/data.raw\", persist = true, id = \"data\" },\n"
                       "         { template = \"t.img\", id = \"tpl\" }]\n";
    pv_config c;
    char err[512];
    if (CHECKF(parse(text, &c, err, sizeof(err)) == 0, "config_parse failed: %s", err)) {
        const pv_profile *p = config_profile(&c, "d");
        if (CHECK(p && p->ndisks == 4)) {
            CHECK_STR(p->disks[0].id, "scratch");
            CHECK(p->disks[0].size == 64LL << 20);
            CHECK(p->disks[0].path == NULL);
            CHECK_STR(p->disks[1].id, "disk1"); /* unnamed: disk<index> */
            CHECK_STR(p->disks[1].path, "/some/dir/img/base.qcow2");
            CHECK_STR(p->disks[1].format, "qcow2");
            CHECK(p->disks[1].readonly && !p->disks[1].persist);
            CHECK_STR(p->disks[2].path, "/abs/data.raw");
            CHECK(p->disks[2].persist && !p->disks[2].readonly);
            CHECK(p->disks[3].copy);
            pv_profile copy;
            profile_copy(&copy, p);
            CHECK(copy.ndisks == 4 && copy.disks[1].path != p->disks[1].path);
            CHECK_STR(copy.disks[1].path, p->disks[1].path);
            profile_free(&copy);
        }
        config_free(&c);
    }
    EXPECT_ERROR("disks not an array", "[profiles.x]\nkernel = \"k\"\ndisks = \"a.img\"\n", 3,
                 "disks must be an array of tables");
    EXPECT_ERROR("disk not a table", "[profiles.x]\nkernel = \"k\"\ndisks = [\"a.img\"]\n", 3,
                 "disks[1] must be a table");
    EXPECT_ERROR("disk with two sources", "[profiles.x]\nkernel = \"k\"\ndisks = [{ path = \"a\", size = 4096 }]\n", 0,
                 "names both path and scratch/size: a disk takes exactly one source");
    EXPECT_ERROR("disk with no source", "[profiles.x]\nkernel = \"k\"\ndisks = [{ id = \"a\" }]\n", 0,
                 "profile 'x' disks[1] names no source");
    EXPECT_ERROR("disk format", "[profiles.x]\nkernel = \"k\"\ndisks = [{ path = \"a\", format = \"vmdk\" }]\n", 0,
                 "format must be \"raw\" or \"qcow2\", not \"vmdk\"");
    EXPECT_ERROR("disk size", "[profiles.x]\nkernel = \"k\"\ndisks = [{ size = \"12Q\" }]\n", 3,
                 "disks: size must be a positive byte count");
    EXPECT_ERROR("disk size not sectors", "[profiles.x]\nkernel = \"k\"\ndisks = [{ size = 1000 }]\n", 0,
                 "not a whole number of 512-byte sectors");
    EXPECT_ERROR("disk persist and readonly",
                 "[profiles.x]\nkernel = \"k\"\ndisks = [{ path = \"a\", persist = true, readonly = true }]\n", 0,
                 "persist (write through to the image) contradicts readonly");
    EXPECT_ERROR("scratch persist", "[profiles.x]\nkernel = \"k\"\ndisks = [{ size = 4096, persist = true }]\n", 0,
                 "a scratch disk is a blank raw file; persist needs a path");
    EXPECT_ERROR("disk bad id", "[profiles.x]\nkernel = \"k\"\ndisks = [{ size = 4096, id = \"a b\" }]\n", 0,
                 "id \"a b\" must be 1 to 20 letters");
    EXPECT_ERROR("disk duplicate id",
                 "[profiles.x]\nkernel = \"k\"\ndisks = [{ size = 4096, id = \"a\" }, { size = 4096, id = \"a\" }]\n", 3,
                 "two disks have the id 'a' (disks[1] and disks[2])");
    EXPECT_ERROR("disk unknown key", "[profiles.x]\nkernel = \"k\"\ndisks = [{ size = 4096, sise = 1 }]\n", 3,
                 "unknown key 'sise' in disks[1] of profile 'x'");
    EXPECT_ERROR("disk readonly type", "[profiles.x]\nkernel = \"k\"\ndisks = [{ path = \"a\", readonly = 1 }]\n", 3,
                 "disks: readonly must be true or false");
}

CHECK_MAIN()
