/* The run's scratch directory under $TMPDIR (or /tmp): file logs, VM
 * directories and sockets live there, and it is removed when the run ends.
 * Runs that were SIGKILLed cannot clean up after themselves, so each new
 * run removes the scratch directories and guest RAM files of dead runs;
 * only its own user's, and only when their owner process is gone. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run.h"

/* Scratch directories of runs that were SIGKILLed cannot clean up after
 * themselves; the next run removes those whose owner is gone. Only our own:
 * a directory (not a link) of this user, whose owner.pid is ours as well;
 * another user's pid may live in another pid namespace, and it is not ours
 * to remove in any case. */
static void remove_stale_scratch(const char *tmp)
{
    DIR *d = opendir(tmp);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "provium-", 8) != 0 || strlen(e->d_name) != 14)
            continue;
        char *pidfile = xasprintf("%s/%s/owner.pid", tmp, e->d_name);
        char *here = xasprintf("%s/%s", tmp, e->d_name);
        struct stat ds, ps;
        bool mine = lstat(here, &ds) == 0 && S_ISDIR(ds.st_mode) && ds.st_uid == geteuid() &&
                    lstat(pidfile, &ps) == 0 && S_ISREG(ps.st_mode) && ps.st_uid == geteuid();
        free(here);
        if (!mine) {
            free(pidfile);
            continue;
        }
        size_t len;
        char *text = read_whole_file(pidfile, &len);
        int pid = text ? atoi(text) : 0;
        if (pid > 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            char *dir = xasprintf("%s/%s", tmp, e->d_name);
            rm_rf(dir);
            free(dir);
        }
        free(text);
        free(pidfile);
    }
    closedir(d);
}

/* Guest RAM files live in /dev/shm until QEMU has mapped them; a process
 * killed in that window leaves /dev/shm/provium-PID-N.ram behind. Remove
 * ours whose process is gone (its pid may be reused: a live pid keeps it). */
static void remove_stale_ram_files(void)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid = 0, n = 0, used = 0;
        if (sscanf(e->d_name, "provium-%d-%d.ram%n", &pid, &n, &used) != 2 || e->d_name[used] || pid <= 0)
            continue;
        char *path = xasprintf("/dev/shm/%s", e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && kill(pid, 0) != 0 &&
            errno == ESRCH)
            unlink(path);
        free(path);
    }
    closedir(d);
}

char *scratch_create(void)
{
    const char *tmp = getenv("TMPDIR");
    /* unix socket paths are limited to 107 bytes; stay well short */
    if (!tmp || !*tmp || strlen(tmp) > 40)
        tmp = "/tmp";
    char *tmpl = xasprintf("%s/provium-XXXXXX", tmp);
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "provium: cannot create a scratch directory in %s: %s\n", tmp, strerror(errno));
        free(tmpl);
        return NULL;
    }
    char *pidfile = xasprintf("%s/owner.pid", tmpl);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    write_whole_file(pidfile, pid, strlen(pid), 0600);
    free(pidfile);
    remove_stale_scratch(tmp);
    remove_stale_ram_files();
    return tmpl; /* mkdtemp creates it 0700 */
}
