/* The transfer section: file data through the Lua API, as tests move it.
 * write_file, read_file and push_file of 16 MiB are timed against the raw
 * channel (16 MiB echoed by a PING) on the same VM, best of 5, interleaved
 * so that host load hits all alike; each is printed as a fraction of the
 * channel's one-way throughput. Before them (while the VM's buffers are
 * still small), a 1 GiB file (mostly holes) is pushed to the guest's
 * /dev/null: its throughput against the channel, and the rise of this
 * process's peak RSS (VmHWM, reset first through clear_refs) as a fraction
 * of the file's size, as push_file streams through a bounded buffer. */
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../host/lua/lua_internal.h"
#include "../host/util/util.h"
#include "bench.h"

/* Boots a VM through the Lua API and leaves, on the stack, the table of
 * operations the section times. */
static const char *ops_chunk =
    "local vm = provium:vm('bench-lua', 'default'):boot()\n"
    "return vm, {\n"
    "  write = function(data) vm:write_file('/tmp/bench-lua.bin', data) end,\n"
    "  read = function() return #vm:read_file('/tmp/bench-lua.bin') end,\n"
    "  push = function(path, to) vm:push_file(path, to or '/tmp/bench-push.bin') end,\n"
    "  shutdown = function() vm:shutdown() end,\n"
    "}\n";

/* Calls ops[name](arg, arg2) and returns its wall time; dies on an error. */
static double time_op(lua_State *L, int ops, const char *name, const char *arg, size_t arglen, const char *arg2)
{
    lua_getfield(L, ops, name);
    int nargs = 0;
    if (arg) {
        lua_pushlstring(L, arg, arglen);
        nargs++;
    }
    if (arg2) {
        lua_pushstring(L, arg2);
        nargs++;
    }
    double t0 = now_s();
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK)
        die(name, lua_tostring(L, -1));
    return now_s() - t0;
}

static void set_peak_rss_to_current(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "5", 1) != 1)
        die("transfer", "cannot reset the peak RSS through /proc/self/clear_refs");
    close(fd);
}

/* A file of mib MiB, all holes but a marker at the start of every MiB. */
static char *sparse_file(const char *tmpl, long mib)
{
    char *path = xasprintf("%s/sparse-%ldM.bin", tmpl, mib);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)mib << 20) != 0)
        die("transfer", "cannot create the sparse file");
    for (long i = 0; i < mib; i++) {
        char mark[32];
        int n = snprintf(mark, sizeof(mark), "%016ld", i);
        if (pwrite(fd, mark, (size_t)n, (off_t)i << 20) != n)
            die("transfer", "cannot write the sparse file");
    }
    close(fd);
    return path;
}

void bench_transfer(const pv_config *cfg, const char *tmpl)
{
    char err[PV_ERR_MAX];
    pv_lua_env env = {cfg, tmpl, NULL};
    lua_State *L = pv_lua_new(&env, err, sizeof(err));
    if (!L)
        die("lua", err);
    if (luaL_loadstring(L, ops_chunk) != LUA_OK || lua_pcall(L, 0, 2, 0) != LUA_OK)
        die("boot through the Lua API", lua_tostring(L, -1));
    int ops = lua_gettop(L);
    lvm *v = luaL_checkudata(L, ops - 1, VM_MT);

    long mib = bench_env("BENCH_PUSH_MIB", 1024, 1);
    char *big = sparse_file(tmpl, mib);
    set_peak_rss_to_current();
    long long rss0 = proc_field_kb(0, "status", "VmRSS");
    double t = time_op(L, ops, "push", big, strlen(big), "/dev/null");
    long long peak = proc_field_kb(0, "status", "VmHWM");
    unlink(big);
    free(big);
    char label[64];
    snprintf(label, sizeof(label), "push_file %ld MiB to /dev/null", mib);
    double big_mib_s = mib / t;
    size_t size = 16u << 20;
    char *data = xmalloc(size);
    for (size_t i = 0; i < size; i++)
        data[i] = (char)(i * 7 + (i >> 12));
    char *host = xasprintf("%s/push16.bin", tmpl);
    if (write_whole_file(host, data, size, 0644) != 0)
        die("transfer", "cannot write the 16 MiB host file");
    double chan = 1e9, wr = 1e9, rd = 1e9, push = 1e9, null = 1e9;
    for (int i = 0; i < 5; i++) {
        double c = time_ping(v->vm, size);
        double w = time_op(L, ops, "write", data, size, NULL);
        double r = time_op(L, ops, "read", NULL, 0, NULL);
        double p = time_op(L, ops, "push", host, strlen(host), NULL);
        double d = time_op(L, ops, "push", host, strlen(host), "/dev/null");
        null = d < null ? d : null;
        chan = c < chan ? c : chan;
        wr = w < wr ? w : wr;
        rd = r < rd ? r : rd;
        push = p < push ? p : push;
    }
    free(data);
    unlink(host);
    free(host);
    double chan_mib = 32.0 / chan; /* the echo moves 16 MiB each way */
    printf("\n%-44s %9.1f MiB/s\n", "raw channel, 16 MiB echoed (best of 5)", chan_mib);
    printf("%-44s %9.2f x of the channel   (target >= 0.8)\n", "  vm:write_file 16 MiB (Lua API)", 16.0 / wr / chan_mib);
    printf("%-44s %9.2f x of the channel   (target >= 0.8)\n", "  vm:read_file 16 MiB (Lua API)", 16.0 / rd / chan_mib);
    printf("%-44s %9.2f x of the channel   (target >= 0.8)\n", "  vm:push_file 16 MiB (Lua API)", 16.0 / push / chan_mib);
    printf("%-44s %9.2f x of the channel   (the guest's tmpfs write left out)\n",
           "  vm:push_file 16 MiB to /dev/null", 16.0 / null / chan_mib);
    printf("%-44s %9.2f x of the channel\n", label, big_mib_s / chan_mib);
    printf("%-44s %9.1f MiB   (%.4f x of the file; bounded: << 1)\n", "  host peak RSS growth while it ran",
           (peak - rss0) / 1024.0, (peak - rss0) / 1024.0 / (double)mib);

    time_op(L, ops, "shutdown", NULL, 0, NULL);
    lua_close(L);
}
