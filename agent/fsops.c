/* Path operations: stat, listdir, mkdir, unlink, rename. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define FAIL(op, path) conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "%s %s: %s", op, path, strerror(errno))

void fs_stat(agent_conn *c, const pv_msg *m)
{
    char *path = request_path(c, m, PV_T_PATH, "stat");
    if (!path)
        return;
    struct stat st;
    if (lstat(path, &st) != 0)
        FAIL("stat", path);
    else {
        pv_frame_begin(&c->out, PV_MSG_STAT_RESULT, m->hdr.chan, m->hdr.req);
        pv_put_u64(&c->out, PV_T_SIZE, (uint64_t)st.st_size);
        pv_put_i64(&c->out, PV_T_MTIME_NS, (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
        pv_put_u64(&c->out, PV_T_MODE, st.st_mode);
        conn_send(c);
    }
    free(path);
}

void fs_listdir(agent_conn *c, const pv_msg *m)
{
    char *path = request_path(c, m, PV_T_PATH, "listdir");
    if (!path)
        return;
    DIR *d = opendir(path);
    if (!d) {
        FAIL("listdir", path);
        free(path);
        return;
    }
    pv_frame_begin(&c->out, PV_MSG_LISTDIR_RESULT, m->hdr.chan, m->hdr.req);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        struct stat st;
        mode_t mode = 0;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            mode = st.st_mode;
        pv_put_str(&c->out, PV_T_NAME, e->d_name);
        pv_put_u64(&c->out, PV_T_MODE, mode);
    }
    closedir(d);
    if (c->out.failed && c->out.err == ENOMEM) /* answered by conn_send */
        conn_send(c);
    else if (conn_try_send(c) != 0)
        conn_send_error(c, m->hdr.chan, m->hdr.req, E2BIG, "listdir %s: listing exceeds the frame limit", path);
    free(path);
}

static int mkdir_parents(char *path, mode_t mode)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    if (mkdir(path, mode) != 0) {
        struct stat st;
        if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        return -1;
    }
    return 0;
}

void fs_mkdir(agent_conn *c, const pv_msg *m)
{
    char *path = request_path(c, m, PV_T_PATH, "mkdir");
    if (!path)
        return;
    mode_t mode = (mode_t)pv_msg_u64(m, PV_T_MODE, 0755) & 07777;
    int rc = pv_msg_u64(m, PV_T_PARENTS, 0) ? mkdir_parents(path, mode) : mkdir(path, mode);
    if (rc != 0)
        FAIL("mkdir", path);
    else {
        chmod(path, mode); /* umask must not change what the test asked for */
        reply_ok(c, m);
    }
    free(path);
}

void fs_unlink(agent_conn *c, const pv_msg *m)
{
    char *path = request_path(c, m, PV_T_PATH, "unlink");
    if (!path)
        return;
    int rc = unlink(path);
    if (rc != 0 && (errno == EISDIR || errno == EPERM)) {
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rc = rmdir(path);
        else
            errno = EPERM;
    }
    if (rc != 0)
        FAIL("unlink", path);
    else
        reply_ok(c, m);
    free(path);
}

void fs_rename(agent_conn *c, const pv_msg *m)
{
    char *from = request_path(c, m, PV_T_PATH, "rename");
    char *to = from ? request_path(c, m, PV_T_PATH2, "rename") : NULL;
    if (from && to) {
        if (rename(from, to) != 0)
            conn_send_error(c, m->hdr.chan, m->hdr.req, errno, "rename %s -> %s: %s", from, to, strerror(errno));
        else
            reply_ok(c, m);
    }
    free(from);
    free(to);
}
