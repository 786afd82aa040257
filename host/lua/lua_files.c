/* File operations on a VM: path ops, push_file, and File handles. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/util.h"
#include "lua_internal.h"

typedef struct {
    int fd;
    bool closed;
    char *site; /* where open_file was called, for leak reports */
    unsigned item;
    unsigned generation; /* of the guest boot the descriptor belongs to */
} lfile;

static const char *entry_type(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG: return "file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFBLK: return "block_device";
    case S_IFCHR: return "char_device";
    default: return "other";
    }
}

static lvm *path_op(lua_State *L, uint16_t type, const char *op)
{
    lvm *v = pv_check_vm(L, 1);
    const char *path = pv_check_cstr(L, 2, "path");
    pv_require_booted(L, v, op);
    vm_begin_on(v->vm, type, v->chan_base);
    pv_put_str(&v->vm->out, PV_T_PATH, path);
    return v;
}

static int l_stat(lua_State *L)
{
    lvm *v = path_op(L, PV_MSG_STAT, "stat");
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    pv_push_stat(L, &r.msg);
    vm_reply_free(&r);
    return 1;
}

void pv_push_stat(lua_State *L, const pv_msg *m)
{
    int64_t mtime_ns = pv_msg_i64(m, PV_T_MTIME_NS, 0);
    unsigned mode = (unsigned)pv_msg_u64(m, PV_T_MODE, 0);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, (lua_Integer)pv_msg_u64(m, PV_T_SIZE, 0));
    lua_setfield(L, -2, "size");
    lua_pushinteger(L, mtime_ns);
    lua_setfield(L, -2, "mtime_ns");
    lua_pushnumber(L, (double)mtime_ns / 1e9);
    lua_setfield(L, -2, "mtime");
    lua_pushinteger(L, mode & 07777);
    lua_setfield(L, -2, "perm");
    lua_pushstring(L, entry_type(mode));
    lua_setfield(L, -2, "entry_type");
}

static int l_listdir(lua_State *L)
{
    lvm *v = path_op(L, PV_MSG_LISTDIR, "listdir");
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    pv_push_listdir(L, &r.msg);
    vm_reply_free(&r);
    return 1;
}

void pv_push_listdir(lua_State *L, const pv_msg *m)
{
    lua_newtable(L);
    size_t pn = 0, pm = 0;
    const pv_field *name, *mode;
    int i = 1;
    while ((name = pv_msg_next(m, PV_T_NAME, &pn)) && (mode = pv_msg_next(m, PV_T_MODE, &pm))) {
        lua_createtable(L, 0, 2);
        lua_pushlstring(L, (const char *)name->data, name->len);
        lua_setfield(L, -2, "name");
        uint64_t mv = 0;
        memcpy(&mv, mode->data, 8);
        lua_pushstring(L, entry_type((unsigned)mv));
        lua_setfield(L, -2, "entry_type");
        lua_rawseti(L, -2, i++);
    }
}

static lua_Integer opt_perm(lua_State *L, int idx, const char *key, lua_Integer dflt)
{
    lua_Integer perm = dflt;
    if (lua_istable(L, idx) && lua_getfield(L, idx, key) != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0 || lua_tointeger(L, -1) > 07777)
            luaL_error(L, "%s must be an integer between 0 and 0o7777 (e.g. tonumber(\"755\", 8))", key);
        perm = lua_tointeger(L, -1);
    }
    if (lua_istable(L, idx))
        lua_pop(L, 1);
    return perm;
}

static int l_mkdir(lua_State *L)
{
    lvm *v = path_op(L, PV_MSG_MKDIR, "mkdir");
    if (!lua_isnoneornil(L, 3))
        luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const keys[] = {"parents", "perm", NULL};
    pv_check_opt_keys(L, 3, "mkdir", keys);
    bool parents = false;
    if (lua_istable(L, 3)) {
        lua_getfield(L, 3, "parents");
        parents = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    pv_put_u64(&v->vm->out, PV_T_MODE, (uint64_t)opt_perm(L, 3, "perm", 0755));
    pv_put_u64(&v->vm->out, PV_T_PARENTS, parents);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    vm_reply_free(&r);
    return 0;
}

static int l_unlink(lua_State *L)
{
    lvm *v = path_op(L, PV_MSG_UNLINK, "unlink");
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    vm_reply_free(&r);
    return 0;
}

static int l_rename(lua_State *L)
{
    lvm *v = path_op(L, PV_MSG_RENAME, "rename");
    pv_put_str(&v->vm->out, PV_T_PATH2, pv_check_cstr(L, 3, "rename: new path"));
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    vm_reply_free(&r);
    return 0;
}

/* push_file moves a host file in chunks of PV_STREAM_CHUNK bytes, each read
 * straight from the file into the request frame (one copy on the host): the
 * host holds one chunk at a time whatever the file's size, and the
 * per-chunk round trip costs about 1 % of the chunk's transfer time. A file
 * that fits in one chunk goes as one WRITE_FILE (one write(2) in the guest,
 * as a /proc or /sys file needs); a larger one as OPEN, FD_WRITEs and
 * FD_CLOSE. write_file streams its string the same way when it is longer
 * than a chunk: the agent then receives 1 MiB frames instead of one of the
 * whole size, which is also faster in the guest (docs/performance.md). */

/* Where a stream's bytes come from: a host file, or write_file's string. */
typedef struct {
    const char *op;   /* "push_file" or "write_file", for messages */
    int fd;           /* the host file, or -1 */
    const char *host; /* its path */
    const char *data; /* with fd -1: the bytes */
    size_t len, off;
} stream_src;

/* Appends up to want bytes of fd to the bytes field being built in out;
 * returns how many (short only at EOF) or -1 with errno set. */
static ssize_t read_into_frame(pv_buf *out, int fd, size_t want)
{
    uint8_t *p = pv_put_room(out, want);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, p + got, want - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    pv_put_commit(out, got);
    return (ssize_t)got;
}

/* The next chunk of src into the bytes field being built in out. */
static ssize_t next_chunk(stream_src *src, pv_buf *out)
{
    if (src->fd >= 0)
        return read_into_frame(out, src->fd, PV_STREAM_CHUNK);
    size_t n = src->len - src->off < PV_STREAM_CHUNK ? src->len - src->off : PV_STREAM_CHUNK;
    uint8_t *p = pv_put_room(out, n);
    if (!p) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(p, src->data + src->off, n);
    pv_put_commit(out, n);
    src->off += n;
    return (ssize_t)n;
}

/* Sends the request built in v->vm->out; on failure err says why, prefixed
 * with the operation and what it was doing. */
static int stream_call(lvm *v, vm_reply *r, const stream_src *src, const char *doing, char *err, size_t errlen)
{
    char why[4096];
    if (vm_call(v->vm, r, OP_TIMEOUT_MS, NULL, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, errlen, "%s: %s: %s", src->op, doing, why);
    return -1;
}

/* Waits for the reply to the FD_WRITE of sent bytes awaited on ch; 0 when
 * it wrote them all, else -1 with err set (short is set for a write that
 * wrote fewer, with no error). */
static int await_write(lvm *v, uint32_t id, ssize_t sent, const stream_src *src, const char *guest, bool *short_write,
                       char *err, size_t errlen)
{
    char why[4096];
    int64_t deadline = now_ms() + OP_TIMEOUT_MS;
    const vm_chan *ch;
    while ((ch = vm_chan_find(v->vm, id)) && !ch->done) {
        int r = vm_pump(v->vm, deadline, why, sizeof(why));
        if (r < 0 || ch->lost) {
            snprintf(err, errlen, "%s: writing guest file %s: %s", src->op, guest,
                     r < 0 ? why : "the guest rebooted or died");
            return -1;
        }
        if (r == 0) {
            snprintf(err, errlen, "%s: writing guest file %s: VM '%s': no reply from the guest agent within %.1f s",
                     src->op, guest, v->vm->name, OP_TIMEOUT_MS / 1000.0);
            return -1;
        }
    }
    if (!ch) {
        snprintf(err, errlen, "%s: writing guest file %s: VM '%s': the reply's channel is gone", src->op, guest,
                 v->vm->name);
        return -1;
    }
    const pv_msg *m = &ch->result.msg;
    if (m->hdr.type == PV_MSG_ERROR) {
        char *msg = pv_msg_strdup(m, PV_T_MESSAGE);
        snprintf(err, errlen, "%s: writing guest file %s: VM '%s': %s", src->op, guest, v->vm->name,
                 msg ? msg : "error");
        free(msg);
        return -1;
    }
    int64_t wrote = pv_msg_i64(m, PV_T_COUNT, -1);
    if (m->hdr.type != PV_MSG_COUNT || wrote != sent) {
        *short_write = m->hdr.type == PV_MSG_COUNT;
        snprintf(err, errlen, "%s: writing guest file %s: VM '%s': the guest wrote %lld of %lld bytes", src->op, guest,
                 v->vm->name, (long long)wrote, (long long)sent);
        return -1;
    }
    return 0;
}

/* The chunked transfer of src into guest path guest, opened with perm; 0 or
 * -1 with err set. Two FD_WRITEs are in flight at a time, each on a channel
 * of its own so that its reply is kept for it: while the agent writes one
 * chunk into the file, QEMU already fills the guest's receive buffers with
 * the next (docs/performance.md). A short write therefore ends the transfer
 * (the next chunk went out behind it): its error is the other chunk's when
 * that one failed (a full file system), else a count. */
static int stream_to_guest(lvm *v, stream_src *src, const char *guest, lua_Integer perm, char *err, size_t errlen)
{
    char doing[512];
    snprintf(doing, sizeof(doing), "opening guest file %s", guest);
    vm_reply r;
    vm_begin_on(v->vm, PV_MSG_OPEN, v->chan_base);
    pv_put_str(&v->vm->out, PV_T_PATH, guest);
    pv_put_u64(&v->vm->out, PV_T_FLAGS, O_WRONLY | O_CREAT | O_TRUNC);
    pv_put_u64(&v->vm->out, PV_T_MODE, (uint64_t)perm);
    if (stream_call(v, &r, src, doing, err, errlen) != 0)
        return -1;
    int64_t gfd = pv_msg_i64(&r.msg, PV_T_FD, -1);
    vm_reply_free(&r);
    uint32_t ids[2] = {0, 0}; /* the channel of the FD_WRITE in flight in each slot, 0: none */
    ssize_t sent[2] = {0, 0};  /* bytes in flight in each slot */
    int rc = 0, k = 0;
    bool eof = false;
    while (!eof || sent[0] || sent[1]) {
        if (sent[k]) {
            bool short_write = false;
            if (await_write(v, ids[k], sent[k], src, guest, &short_write, err, errlen) != 0) {
                bool again = false; /* after a short write, the chunk behind it may say why */
                char why[4096];
                if (short_write && sent[1 - k] &&
                    await_write(v, ids[1 - k], sent[1 - k], src, guest, &again, why, sizeof(why)) != 0 && !again)
                    snprintf(err, errlen, "%s", why);
                rc = -1; /* a reply still due is dropped with its channel */
                break;
            }
            vm_chan_free(v->vm, ids[k]);
            ids[k] = 0;
            sent[k] = 0;
        }
        if (!eof) {
            /* each chunk's reply lands in a channel of its own */
            ids[k] = vm_chan_open_await(v->vm, v->chan_base, PV_MSG_FD_WRITE)->id;
            pv_put_i64(&v->vm->out, PV_T_FD, gfd);
            size_t at = pv_put_open(&v->vm->out, PV_T_DATA);
            ssize_t n = next_chunk(src, &v->vm->out);
            if (n < 0) {
                snprintf(err, errlen, "%s: reading host file %s: %s", src->op, src->host, strerror(errno));
                rc = -1;
                break;
            }
            eof = n == 0;
            if (n > 0) {
                pv_put_close(&v->vm->out, at);
                char why[4096];
                if (vm_send(v->vm, why, sizeof(why)) != 0) {
                    snprintf(err, errlen, "%s: writing guest file %s: %s", src->op, guest, why);
                    rc = -1;
                    break;
                }
                sent[k] = n;
            } else {
                vm_chan_free(v->vm, ids[k]); /* the end of the file: that request is never sent */
                ids[k] = 0;
            }
        }
        k = 1 - k;
    }
    for (int i = 0; i < 2; i++)
        if (ids[i])
            vm_chan_free(v->vm, ids[i]);
    if (v->vm->state != VM_BOOTED)
        return -1; /* the guest is gone, and its descriptor with it */
    vm_begin_on(v->vm, PV_MSG_FD_CLOSE, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_FD, gfd);
    char cerr[4096];
    snprintf(doing, sizeof(doing), "closing guest file %s", guest);
    if (stream_call(v, &r, src, doing, rc ? cerr : err, rc ? sizeof(cerr) : errlen) != 0)
        return -1;
    vm_reply_free(&r);
    return rc;
}

int pv_write_stream(lvm *v, const char *guest, const char *data, size_t len, lua_Integer perm, char *err,
                    size_t errlen)
{
    stream_src src = {"write_file", -1, NULL, data, len, 0};
    return stream_to_guest(v, &src, guest, perm, err, errlen);
}

/* The whole transfer of the open host file fd (st: its status). */
static int push_open_file(lvm *v, int fd, const struct stat *st, const char *host, const char *guest,
                          lua_Integer perm, char *err, size_t errlen)
{
    stream_src src = {"push_file", fd, host, NULL, 0, 0};
    if (st->st_size > (off_t)PV_STREAM_CHUNK)
        return stream_to_guest(v, &src, guest, perm, err, errlen);
    vm_begin_on(v->vm, PV_MSG_WRITE_FILE, v->chan_base);
    pv_put_str(&v->vm->out, PV_T_PATH, guest);
    pv_put_u64(&v->vm->out, PV_T_MODE, (uint64_t)perm);
    size_t at = pv_put_open(&v->vm->out, PV_T_DATA);
    if (read_into_frame(&v->vm->out, fd, PV_STREAM_CHUNK) < 0) {
        snprintf(err, errlen, "push_file: reading host file %s: %s", host, strerror(errno));
        return -1;
    }
    pv_put_close(&v->vm->out, at);
    char doing[512];
    snprintf(doing, sizeof(doing), "writing guest file %s", guest);
    vm_reply r;
    if (stream_call(v, &r, &src, doing, err, errlen) != 0)
        return -1;
    vm_reply_free(&r);
    return 0;
}

/* vm:push_file(host_path, guest_path [, {perm=}]): a relative host path is
 * resolved against the directory of the Lua file that calls push_file (a
 * required helper's own directory when the helper calls it; a string chunk
 * counts as the file that runs it); with no Lua file on the call stack (the
 * REPL), against the current directory. */
static int l_push_file(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    const char *host = pv_check_cstr(L, 2, "push_file: host path");
    const char *guest = pv_check_cstr(L, 3, "push_file: guest path");
    pv_require_booted(L, v, "push_file");
    /* options first: nothing below may raise once the file is open */
    static const char *const keys[] = {"perm", NULL};
    pv_check_opt_keys(L, 4, "push_file", keys);
    lua_Integer perm = opt_perm(L, 4, "perm", -1);
    bool relative = host[0] != '/' && strncmp(host, "~/", 2) != 0;
    char *caller = relative ? pv_caller_file(L) : NULL;
    char *dir = caller ? path_dirname(caller) : xstrdup(".");
    char *joined = path_join(dir, host);
    char *full = path_absolute(joined);
    free(joined);
    free(dir);
    struct stat st;
    int fd = open_regular_file(full, &st);
    if (fd < 0) {
        int e = errno;
        if (!relative)
            lua_pushfstring(L, "push_file: cannot read host file %s: %s", full, read_error_text(e));
        else if (caller)
            lua_pushfstring(L,
                            "push_file: cannot read host file %s: %s (the relative path '%s' is resolved against "
                            "the directory of %s, the Lua file that called push_file)",
                            full, read_error_text(e), host, caller);
        else
            lua_pushfstring(L,
                            "push_file: cannot read host file %s: %s (the relative path '%s' is resolved against "
                            "the current directory: no Lua file called push_file)",
                            full, read_error_text(e), host);
        free(caller);
        free(full);
        return lua_error(L);
    }
    free(caller);
    if (perm < 0)
        perm = (lua_Integer)(st.st_mode & 07777);
    /* a fixture that pushes a host file is rebuilt when that file changes */
    lua_getfield(L, LUA_REGISTRYINDEX, "provium.deps");
    if (lua_istable(L, -1)) {
        lua_pushstring(L, full);
        lua_rawseti(L, -2, luaL_len(L, -2) + 1);
    }
    lua_pop(L, 1);
    pv_health_note_module(full); /* a pushed .ko: its frames can be decoded */
    char err[PV_ERR_MAX];
    int rc = push_open_file(v, fd, &st, full, guest, perm, err, sizeof(err));
    close(fd);
    free(full);
    if (rc != 0)
        return luaL_error(L, "%s", err);
    return 0;
}

/* ---- File handles ---- */

static const char *const mode_keys[] = {"read", "write", "create", "truncate", "append", "exclusive", "perm", NULL};

static int l_open_file(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    const char *path = pv_check_cstr(L, 2, "open_file: path");
    if (!lua_istable(L, 3))
        return luaL_error(L, "open_file(path, mode): mode must be a table with any of read, write, create, "
                             "truncate, append, exclusive, perm");
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        bool known = false;
        for (int i = 0; mode_keys[i] && lua_type(L, -2) == LUA_TSTRING; i++)
            known |= strcmp(lua_tostring(L, -2), mode_keys[i]) == 0;
        if (!known)
            return luaL_error(L, "open_file: unknown mode key '%s' (known: read, write, create, truncate, append, "
                                 "exclusive, perm)",
                              luaL_tolstring(L, -2, NULL));
        lua_pop(L, 1);
    }
    bool b[6];
    for (int i = 0; i < 6; i++) {
        lua_getfield(L, 3, mode_keys[i]);
        b[i] = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    bool rd = b[0], wr = b[1], append = b[4];
    if (!rd && !wr && !append)
        return luaL_error(L, "open_file: the mode table needs read=true, write=true or append=true");
    int flags = (rd && (wr || append)) ? O_RDWR : rd ? O_RDONLY : O_WRONLY;
    if (b[2])
        flags |= O_CREAT;
    if (b[3])
        flags |= O_TRUNC;
    if (append)
        flags |= O_APPEND;
    if (b[5])
        flags |= O_EXCL;
    lua_Integer perm = opt_perm(L, 3, "perm", 0644);
    pv_require_booted(L, v, "open_file");
    vm_begin_on(v->vm, PV_MSG_OPEN, v->chan_base);
    pv_put_str(&v->vm->out, PV_T_PATH, path);
    pv_put_u64(&v->vm->out, PV_T_FLAGS, (uint64_t)flags);
    pv_put_u64(&v->vm->out, PV_T_MODE, (uint64_t)perm);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    lfile *f = lua_newuserdatauv(L, sizeof(lfile), 1);
    f->fd = (int)pv_msg_i64(&r.msg, PV_T_FD, -1);
    f->closed = false;
    f->generation = v->vm->generation;
    f->site = pv_caller_site(L);
    vm_reply_free(&r);
    luaL_setmetatable(L, FILE_MT);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    v->open_files++;
    f->item = pv_item_add(v, "file", f->site);
    pv_track(L);
    return 1;
}

/* The file at index 1 and its VM; raises if closed or the VM is not up. */
static lvm *file_vm(lua_State *L, lfile **fp, const char *op)
{
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    if (f->closed)
        luaL_error(L, "file:%s: the file is closed", op);
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_check_vm(L, -1);
    lua_pop(L, 1);
    pv_require_booted(L, v, op);
    if (f->generation != v->vm->generation)
        luaL_error(L, "file:%s: the file was opened before the guest rebooted or was restored; its descriptor is gone",
                   op);
    *fp = f;
    return v;
}

static int l_file_read(lua_State *L)
{
    lfile *f;
    lvm *v = file_vm(L, &f, "read");
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n < 0)
        return luaL_error(L, "file:read: count must not be negative");
    vm_begin_on(v->vm, PV_MSG_FD_READ, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_FD, f->fd);
    pv_put_u64(&v->vm->out, PV_T_COUNT, (uint64_t)n);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    const pv_field *d = pv_msg_get(&r.msg, PV_T_DATA);
    lua_pushlstring(L, (const char *)d->data, d->len);
    vm_reply_free(&r);
    return 1;
}

static int l_file_read_all(lua_State *L)
{
    lfile *f;
    lvm *v = file_vm(L, &f, "read_all");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (;;) {
        vm_begin_on(v->vm, PV_MSG_FD_READ, v->chan_base);
        pv_put_i64(&v->vm->out, PV_T_FD, f->fd);
        pv_put_u64(&v->vm->out, PV_T_COUNT, 1u << 20);
        vm_reply r;
        pv_call(L, v, &r, OP_TIMEOUT_MS);
        const pv_field *d = pv_msg_get(&r.msg, PV_T_DATA);
        size_t len = d->len;
        luaL_addlstring(&b, (const char *)d->data, len);
        vm_reply_free(&r);
        if (len == 0)
            break;
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_file_write(lua_State *L)
{
    lfile *f;
    lvm *v = file_vm(L, &f, "write");
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    vm_begin_on(v->vm, PV_MSG_FD_WRITE, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_FD, f->fd);
    pv_put_bytes(&v->vm->out, PV_T_DATA, data, len);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    lua_pushinteger(L, pv_msg_i64(&r.msg, PV_T_COUNT, 0));
    vm_reply_free(&r);
    return 1;
}

static int do_seek(lua_State *L, lfile *f, lvm *v, int64_t off, int whence)
{
    vm_begin_on(v->vm, PV_MSG_FD_SEEK, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_FD, f->fd);
    pv_put_i64(&v->vm->out, PV_T_OFFSET, off);
    pv_put_u64(&v->vm->out, PV_T_WHENCE, (uint64_t)whence);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    lua_pushinteger(L, pv_msg_i64(&r.msg, PV_T_COUNT, 0));
    vm_reply_free(&r);
    return 1;
}

static int l_file_seek(lua_State *L)
{
    lfile *f;
    lvm *v = file_vm(L, &f, "seek");
    lua_Integer off = luaL_checkinteger(L, 2);
    static const char *const whences[] = {"set", "cur", "end", NULL};
    const char *w = luaL_optstring(L, 3, "set");
    int whence = 0;
    while (whences[whence] && strcmp(whences[whence], w) != 0)
        whence++;
    if (!whences[whence])
        return luaL_error(L, "VM '%s': file:seek: whence must be \"set\", \"cur\" or \"end\", not \"%s\"", v->vm->name,
                          w);
    return do_seek(L, f, v, off, whence);
}

static int l_file_tell(lua_State *L)
{
    lfile *f;
    lvm *v = file_vm(L, &f, "tell");
    return do_seek(L, f, v, 0, SEEK_CUR);
}

static int l_file_fd(lua_State *L)
{
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    if (f->closed)
        return luaL_error(L, "file:fd: the file is closed");
    lua_pushinteger(L, f->fd);
    return 1;
}

/* Idempotent. Closing after the VM went away only marks the handle. */
static int l_file_close(lua_State *L)
{
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    if (f->closed)
        return 0;
    f->closed = true;
    lua_getiuservalue(L, 1, 1);
    lvm *v = pv_check_vm(L, -1);
    if (v->open_files > 0 && f->generation == v->vm->generation)
        v->open_files--;
    pv_item_remove(v, f->item);
    /* a descriptor from an earlier boot is gone: closing its number now
     * would close somebody else's file */
    if (v->vm->state != VM_BOOTED || f->generation != v->vm->generation)
        return 0;
    vm_begin_on(v->vm, PV_MSG_FD_CLOSE, v->chan_base);
    pv_put_i64(&v->vm->out, PV_T_FD, f->fd);
    vm_reply r;
    pv_call(L, v, &r, OP_TIMEOUT_MS);
    vm_reply_free(&r);
    return 0;
}

/* file:tail_stream(): a stream of what is appended, from the handle's position. */
static int l_file_tail_stream(lua_State *L)
{
    lfile *f;
    lvm *v = file_vm(L, &f, "tail_stream");
    lua_getiuservalue(L, 1, 1);
    return pv_open_fd_stream(L, v, lua_gettop(L), f->fd, "file_tail_stream");
}

lua_Integer pv_check_fd(lua_State *L, int idx, const char *op)
{
    if (!lua_isuserdata(L, idx)) {
        lua_Integer fd = luaL_checkinteger(L, idx);
        if (fd < 0 || fd > INT32_MAX)
            return luaL_error(L, "%s: descriptor %I is out of range (0 to %d)", op, fd, (int)INT32_MAX);
        return fd;
    }
    lfile *f = luaL_testudata(L, idx, FILE_MT);
    if (!f)
        return luaL_error(L, "%s: expected a descriptor number or a File", op);
    if (f->closed)
        return luaL_error(L, "%s: the file is closed", op);
    return f->fd;
}

static int l_file_creation_site(lua_State *L)
{
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    lua_pushstring(L, f->site);
    return 1;
}

static int l_file_gc(lua_State *L)
{
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    free(f->site);
    f->site = NULL;
    return 0;
}

static int l_file_tostring(lua_State *L)
{
    lfile *f = luaL_checkudata(L, 1, FILE_MT);
    lua_pushfstring(L, "File(fd %d%s)", f->fd, f->closed ? ", closed" : "");
    return 1;
}

static int l_open_file_count(lua_State *L)
{
    lua_pushinteger(L, pv_check_vm(L, 1)->open_files);
    return 1;
}

void pv_lua_files_init(lua_State *L, int methods_idx)
{
    static const luaL_Reg vm_fns[] = {
        {"stat", l_stat},           {"listdir", l_listdir},
        {"mkdir", l_mkdir},         {"unlink", l_unlink},
        {"rename", l_rename},       {"push_file", l_push_file},
        {"open_file", l_open_file}, {"open_file_count", l_open_file_count},
        {NULL, NULL},
    };
    pv_add_methods(L, methods_idx, vm_fns);
    static const luaL_Reg file_fns[] = {
        {"read", l_file_read}, {"read_all", l_file_read_all}, {"write", l_file_write},
        {"seek", l_file_seek}, {"tell", l_file_tell},         {"fd", l_file_fd},
        {"close", l_file_close}, {"creation_site", l_file_creation_site}, {"tail_stream", l_file_tail_stream},
        {NULL, NULL},
    };
    luaL_newmetatable(L, FILE_MT);
    luaL_newlib(L, file_fns);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_file_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_file_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}
