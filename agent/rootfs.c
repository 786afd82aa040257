/* Disk boot: what an initramfs does before the real root takes over.
 *
 * The host gives a rootfs-only profile the shim as its only initramfs, with
 * /init pointing at the wrapper, and a command line as for a disk:
 * "root=/dev/vda ro init=/sbin/init" (rw for rootfs_writable). Here the
 * wrapper waits for the root device (provium.rootwait= seconds, 30 by
 * default), mounts it, puts a writable layer over a read-only root when the
 * kernel has overlayfs, moves /dev, /proc and /sys across and switches root.
 * Without overlayfs a read-only root stays read-only; /tmp and /run are
 * tmpfs as in every boot (sysinit_mount_scratch). The agent's binary is kept
 * open across the switch: the initramfs it lives in is gone afterwards.
 *
 * A failure is printed at KERN_CRIT (shown under "quiet") starting with
 * "provium-wrapper: cannot boot from ", which the host quotes in its boot
 * error (host/vmm/rootfs.c). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define DEFAULT_ROOTWAIT_S 30
#define DISK_DIR "/provium/disk"   /* the disk itself */
#define UPPER_DIR "/provium/rw"     /* overlay: the tmpfs with upper/ and work/ */
#define MERGED_DIR "/provium/root"  /* overlay: the root the guest gets */

static char cmdline[4096];

static void read_cmdline(void)
{
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline) - 1) : -1;
    if (fd >= 0)
        close(fd);
    cmdline[n > 0 ? n : 0] = 0;
    cmdline[strcspn(cmdline, "\n")] = 0;
}

/* The last "key=value" on the command line (the kernel's rule too: a later
 * root= wins), copied into out; false when there is none. */
static bool last_param(const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    bool found = false;
    for (const char *t = cmdline; *t;) {
        size_t len = strcspn(t, " ");
        if (len > klen && strncmp(t, key, klen) == 0 && t[klen] == '=') {
            snprintf(out, outlen, "%.*s", (int)(len - klen - 1), t + klen + 1);
            found = true;
        }
        t += len;
        t += strspn(t, " ");
    }
    return found;
}

/* Is word a bare token of the command line ("ro", "rw")? The last of
 * "ro"/"rw" counts, as for the kernel. */
static int last_flag(const char *a, const char *b)
{
    int which = 0;
    for (const char *t = cmdline; *t;) {
        size_t len = strcspn(t, " ");
        if (len == strlen(a) && strncmp(t, a, len) == 0)
            which = 1;
        else if (len == strlen(b) && strncmp(t, b, len) == 0)
            which = 2;
        t += len;
        t += strspn(t, " ");
    }
    return which;
}

static void fail(const char *dev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(const char *dev, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dprintf(fd, "<2>provium-wrapper: cannot boot from %s: %s\n", dev, msg);
        close(fd);
    } else {
        fprintf(stderr, "provium-wrapper: cannot boot from %s: %s\n", dev, msg);
    }
}

static bool kernel_has_fs(const char *name)
{
    FILE *f = fopen("/proc/filesystems", "re");
    char line[128];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f)) {
        char *tab = strchr(line, '\t');
        found = tab && strncmp(tab + 1, name, strlen(name)) == 0 && tab[1 + strlen(name)] == '\n';
    }
    if (f)
        fclose(f);
    return found;
}

static int wait_for_device(const char *dev)
{
    char value[32];
    long secs = last_param("provium.rootwait", value, sizeof(value)) ? strtol(value, NULL, 10) : DEFAULT_ROOTWAIT_S;
    if (secs <= 0)
        secs = DEFAULT_ROOTWAIT_S;
    for (long waited_ms = 0;; waited_ms += 50) {
        struct stat st;
        if (stat(dev, &st) == 0 && S_ISBLK(st.st_mode))
            return 0;
        if (stat(dev, &st) == 0) {
            fail(dev, "it is not a block device");
            return -1;
        }
        if (waited_ms >= secs * 1000) {
            fail(dev, "the root device did not appear within %ld s (is the disk attached and its driver, virtio_blk, "
                      "in the kernel or the profile's modules?)", secs);
            return -1;
        }
        usleep(50000);
    }
}

/* Mounts dev on dir as rootfstype=, else as each block filesystem the
 * kernel knows, like the kernel's own mount_root. */
static int mount_device(const char *dev, const char *dir, unsigned long flags)
{
    char type[64];
    mkdir("/provium", 0755);
    mkdir(dir, 0755);
    if (last_param("rootfstype", type, sizeof(type))) {
        if (mount(dev, dir, type, flags, NULL) == 0)
            return 0;
        fail(dev, "mount as %s (rootfstype=) on %s: %s", type, dir, strerror(errno));
        return -1;
    }
    FILE *f = fopen("/proc/filesystems", "re");
    char line[128], tried[300] = "";
    int why = ENODEV;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "nodev", 5) == 0)
            continue;
        char *name = line + strspn(line, " \t");
        name[strcspn(name, "\n")] = 0;
        if (!*name)
            continue;
        if (mount(dev, dir, name, flags, NULL) == 0) {
            fclose(f);
            return 0;
        }
        if (errno != EINVAL || why == ENODEV)
            why = errno;
        size_t used = strlen(tried);
        snprintf(tried + used, sizeof(tried) - used, "%s%s", used ? " " : "", name);
    }
    if (f)
        fclose(f);
    fail(dev, "no filesystem of this kernel could mount it (tried: %s): %s; is the image a filesystem (not a "
              "partitioned disk), made with provium mkimage or mke2fs?", *tried ? tried : "none", strerror(why));
    return -1;
}

/* A tmpfs upper layer over the read-only disk, as *root. Without overlayfs
 * in the kernel *root stays the disk, read-only. -1 on failure. */
static int overlay_root(const char *dev, const char **root)
{
    if (!kernel_has_fs("overlay")) {
        agent_log("no overlayfs in this kernel: / is the read-only disk %s; /tmp and /run are tmpfs", dev);
        return 0;
    }
    mkdir(UPPER_DIR, 0755); /* /provium exists: mount_device made it */
    mkdir(MERGED_DIR, 0755);
    if (mount("tmpfs", UPPER_DIR, "tmpfs", 0, "mode=755") != 0 || mkdir(UPPER_DIR "/upper", 0755) != 0 ||
        mkdir(UPPER_DIR "/work", 0755) != 0) {
        fail(dev, "the tmpfs for the overlay on %s: %s", UPPER_DIR, strerror(errno));
        return -1;
    }
    if (mount("overlay", MERGED_DIR, "overlay", 0,
              "lowerdir=" DISK_DIR ",upperdir=" UPPER_DIR "/upper,workdir=" UPPER_DIR "/work") != 0) {
        fail(dev, "overlay of tmpfs on the disk: %s", strerror(errno));
        return -1;
    }
    *root = MERGED_DIR;
    return 0;
}

/* /dev, /proc and /sys go along into the new root. */
static int move_mount(const char *dev, const char *root, const char *what)
{
    char target[256];
    snprintf(target, sizeof(target), "%s%s", root, what);
    mkdir(target, 0755); /* fails on a read-only root; the image then needs the directory */
    if (mount(what, target, NULL, MS_MOVE, NULL) == 0)
        return 0;
    fail(dev, "moving %s into the new root: %s%s", what, strerror(errno),
         errno == ENOENT ? " (the read-only image has no such directory; add it)" : "");
    return -1;
}

int rootfs_enter(const char *agent_path, int *agent_fd)
{
    read_cmdline();
    char dev[256];
    if (!last_param("root", dev, sizeof(dev)))
        snprintf(dev, sizeof(dev), "/dev/vda");
    if (strncmp(dev, "/dev/", 5) != 0) {
        fail(dev, "root= must name a device node under /dev (LABEL= and UUID= need udev)");
        return -1;
    }
    /* a modular kernel's virtio_blk and overlay come with the shim */
    sysinit_load_modules("/provium/modules");
    bool writable = last_flag("ro", "rw") == 2;
    if (wait_for_device(dev) != 0 || mount_device(dev, DISK_DIR, writable ? 0 : MS_RDONLY) != 0)
        return -1;
    const char *root = DISK_DIR;
    if (!writable && overlay_root(dev, &root) != 0)
        return -1;
    *agent_fd = open(agent_path, O_RDONLY | O_CLOEXEC);
    if (*agent_fd < 0) {
        fail(dev, "open %s: %s", agent_path, strerror(errno));
        return -1;
    }
    if (move_mount(dev, root, "/dev") || move_mount(dev, root, "/proc") || move_mount(dev, root, "/sys"))
        return -1;
    /* the initramfs cannot be unmounted: free the agent's two copies */
    unlink(agent_path);
    unlink("/provium-wrapper");
    unlink("/init");
    if (chdir(root) != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 || chdir("/") != 0) {
        fail(dev, "switching the root to %s: %s", root, strerror(errno));
        return -1;
    }
    return 0;
}

bool rootfs_is_disk_boot(const char *argv0)
{
    /* the kernel runs an initramfs's /init only in a disk boot: otherwise the
     * host names rdinit=/provium-wrapper */
    const char *slash = argv0 ? strrchr(argv0, '/') : NULL;
    return slash && strcmp(slash + 1, "init") == 0;
}

const char *rootfs_init_path(void)
{
    static char init[256];
    if (!last_param("init", init, sizeof(init)) || !*init)
        snprintf(init, sizeof(init), "/sbin/init");
    return init;
}
