/* The C side of bridges and NICs: the file's user-space switch
 * (host/net/netsw.h, started on first use, stopped at exit) and the VM's
 * virtio-net NICs (host/vmm/vm_nic.h), as the internal table P.net. The
 * Bridge, Nic and Capture objects themselves are Lua (lua/net.lua): they
 * keep the graph state (members, partitions, impairments) that exists
 * before any VM boots, and push it here once a port exists. Every error
 * names the bridge or the VM. */
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../net/netsw.h"
#include "../util/util.h"
#include "../vmm/embedded.h"
#include "../vmm/vm_nic.h"
#include "lua_internal.h"

static netsw *the_sw;
static char *sw_dir;

static void stop_switch(void)
{
    if (the_sw)
        netsw_stop(the_sw);
    the_sw = NULL;
    if (sw_dir)
        rm_rf(sw_dir);
    free(sw_dir);
    sw_dir = NULL;
}

/* The file's switch, started on first use in a private directory under the
 * run's scratch dir (removed again at exit, and with the scratch dir). */
static netsw *sw(lua_State *L)
{
    if (the_sw)
        return the_sw;
    const pv_lua_env *env = pv_lua_env_get();
    const char *root = env && env->scratch_root ? env->scratch_root : "/tmp";
    char *tmpl = xasprintf("%s/net-XXXXXX", root);
    if (!mkdtemp(tmpl)) {
        int e = errno;
        free(tmpl);
        luaL_error(L, "network switch: cannot create its directory under %s: %s", root, strerror(e));
    }
    char err[PV_NETSW_ERR] = "";
    the_sw = netsw_start(tmpl, err);
    if (!the_sw) {
        rm_rf(tmpl);
        free(tmpl);
        luaL_error(L, "network switch: cannot start: %s", err);
    }
    sw_dir = tmpl;
    static bool registered;
    if (!registered)
        atexit(stop_switch);
    registered = true;
    return the_sw;
}

static int check_rc(lua_State *L, int rc, const char *err)
{
    if (rc != 0)
        return luaL_error(L, "%s", err);
    return 0;
}

static const char *opt_name(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NULL : luaL_checkstring(L, idx); }

static int l_dir(lua_State *L)
{
    sw(L);
    lua_pushstring(L, sw_dir);
    return 1;
}

static int l_bridge_add(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_bridge_add(sw(L), luaL_checkstring(L, 1), (uint64_t)luaL_checkinteger(L, 2), err), err);
    return 0;
}

static int l_bridge_remove(lua_State *L)
{
    if (!the_sw)
        return 0;
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_bridge_remove(the_sw, luaL_checkstring(L, 1), err), err);
    return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned b[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
        return -1;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)b[i];
    return 0;
}

/* P.net.port_add(bridge, vm_name, mac) -> port id */
static int l_port_add(lua_State *L)
{
    const char *bridge = luaL_checkstring(L, 1), *vm = luaL_checkstring(L, 2), *macs = luaL_checkstring(L, 3);
    uint8_t mac[6];
    if (parse_mac(macs, mac) != 0)
        return luaL_error(L, "bridge '%s': VM '%s': bad MAC address '%s'", bridge, vm, macs);
    char err[PV_NETSW_ERR] = "";
    netsw_port_id id = netsw_port_add(sw(L), bridge, vm, mac, err);
    if (id <= 0)
        return luaL_error(L, "%s", err);
    lua_pushinteger(L, id);
    return 1;
}

static int l_port_remove(lua_State *L)
{
    if (!the_sw)
        return 0;
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_port_remove(the_sw, (netsw_port_id)luaL_checkinteger(L, 1), err), err);
    return 0;
}

static int l_port_netdev(lua_State *L)
{
    char buf[1024];
    netsw_port_netdev(sw(L), (netsw_port_id)luaL_checkinteger(L, 1), luaL_checkstring(L, 2), buf, sizeof(buf));
    lua_pushstring(L, buf);
    return 1;
}

static int l_port_set_link(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_port_set_link(sw(L), (netsw_port_id)luaL_checkinteger(L, 1), lua_toboolean(L, 2), err), err);
    return 0;
}

static double num_field(lua_State *L, int idx, const char *k)
{
    lua_getfield(L, idx, k);
    double v = lua_isnil(L, -1) ? 0 : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* P.net.set_impair(bridge, from|nil, to|nil, {latency_ms, jitter_ms, drop_pct, rate_bps}) */
static int l_set_impair(lua_State *L)
{
    luaL_checktype(L, 4, LUA_TTABLE);
    netsw_impair im = {num_field(L, 4, "latency_ms"), num_field(L, 4, "jitter_ms"), num_field(L, 4, "drop_pct"),
                       (uint64_t)num_field(L, 4, "rate_bps")};
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_set_impair(sw(L), luaL_checkstring(L, 1), opt_name(L, 2), opt_name(L, 3), &im, err), err);
    return 0;
}

static int l_reset(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_reset(sw(L), luaL_checkstring(L, 1), err), err);
    return 0;
}

static int l_set_blocked(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_set_blocked(sw(L), luaL_checkstring(L, 1), luaL_checkstring(L, 2), luaL_checkstring(L, 3),
                                  lua_toboolean(L, 4), err),
             err);
    return 0;
}

static int l_set_isolated(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_set_isolated(sw(L), luaL_checkstring(L, 1), luaL_checkstring(L, 2), lua_toboolean(L, 3), err),
             err);
    return 0;
}

static int l_counters(lua_State *L)
{
    netsw_counters c = {0};
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_port_counters(sw(L), (netsw_port_id)luaL_checkinteger(L, 1), &c, err), err);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, (lua_Integer)c.rx_bytes);
    lua_setfield(L, -2, "rx_bytes");
    lua_pushinteger(L, (lua_Integer)c.tx_bytes);
    lua_setfield(L, -2, "tx_bytes");
    lua_pushinteger(L, (lua_Integer)c.rx_packets);
    lua_setfield(L, -2, "rx_packets");
    lua_pushinteger(L, (lua_Integer)c.tx_packets);
    lua_setfield(L, -2, "tx_packets");
    lua_pushinteger(L, (lua_Integer)c.dropped);
    lua_setfield(L, -2, "dropped");
    lua_pushinteger(L, 0);
    lua_setfield(L, -2, "errors");
    return 1;
}

/* P.net.capture_start(bridge, port or 0, path) -> capture id */
static int l_capture_start(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    int id = netsw_capture_start(sw(L), luaL_checkstring(L, 1), (netsw_port_id)luaL_checkinteger(L, 2),
                                 luaL_checkstring(L, 3), err);
    if (id <= 0)
        return luaL_error(L, "%s", err);
    lua_pushinteger(L, id);
    return 1;
}

static int l_capture_stop(lua_State *L)
{
    if (!the_sw)
        return 0;
    char err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_capture_stop(the_sw, (int)luaL_checkinteger(L, 1), err), err);
    return 0;
}

static int l_capture_packets(lua_State *L)
{
    lua_pushinteger(L, the_sw ? (lua_Integer)netsw_capture_packets(the_sw, (int)luaL_checkinteger(L, 1)) : 0);
    return 1;
}

static int l_uplink(lua_State *L)
{
    char err[PV_NETSW_ERR] = "";
    const char *bridge = luaL_checkstring(L, 1);
    if (lua_toboolean(L, 2))
        check_rc(L, netsw_uplink_enable(sw(L), bridge, luaL_checkstring(L, 3), err), err);
    else if (the_sw)
        check_rc(L, netsw_uplink_disable(the_sw, bridge, err), err);
    return 0;
}

/* P.net.uplink_gateway(cidr) -> the uplink's gateway address (the switch decides it). */
static int l_uplink_gateway(lua_State *L)
{
    char gw[16], dns[16], err[PV_NETSW_ERR] = "";
    check_rc(L, netsw_uplink_addresses(luaL_checkstring(L, 1), gw, dns, err), err);
    lua_pushstring(L, gw);
    return 1;
}

/* A seed for a bridge without one: from the kernel's RNG. */
static int l_random_seed(lua_State *L)
{
    uint64_t s = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &s, sizeof(s)) != (ssize_t)sizeof(s))
        s = (uint64_t)now_ms() * 6364136223846793005ULL + (uint64_t)getpid();
    if (fd >= 0)
        close(fd);
    lua_pushinteger(L, (lua_Integer)(s & 0x7fffffffffffffffULL));
    return 1;
}

/* ---- the VM side ---- */

static int l_vm_nic_add(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    char err[PV_ERR_MAX];
    if (vm_nic_add(v->vm, luaL_checkstring(L, 2), luaL_checkstring(L, 3), luaL_checkstring(L, 4), err, sizeof(err)))
        return luaL_error(L, "%s", err);
    return 0;
}

static int l_vm_nic_hotplug(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    char err[PV_ERR_MAX];
    if (vm_nic_hotplug(v->vm, luaL_checkstring(L, 2), luaL_checkstring(L, 3), luaL_checkstring(L, 4), err,
                       sizeof(err)))
        return luaL_error(L, "%s", err);
    return 0;
}

static int l_vm_nic_unplug(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    char err[PV_ERR_MAX];
    if (vm_nic_unplug(v->vm, luaL_checkstring(L, 2), err, sizeof(err)))
        return luaL_error(L, "%s", err);
    return 0;
}

static int l_vm_nic_clear(lua_State *L)
{
    vm_nic_clear(pv_check_vm(L, 1)->vm);
    return 0;
}

static int l_vm_nic_count(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    lua_pushinteger(L, (lua_Integer)vm_nic_count(v->vm));
    lua_pushinteger(L, vm_nic_max(v->vm));
    return 2;
}

static int l_vm_set_link(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    if (v->vm->state != VM_BOOTED && v->vm->state != VM_PAUSED)
        return 0; /* takes effect as the port's state; QEMU starts with the link up */
    char err[PV_ERR_MAX];
    if (vm_nic_set_link(v->vm, luaL_checkstring(L, 2), lua_toboolean(L, 3), err, sizeof(err)))
        return luaL_error(L, "%s", err);
    return 0;
}

static int l_vm_machine(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    lua_pushstring(L, v->vm->profile.local ? "local" : vm_machine(&v->vm->profile));
    return 1;
}

/* The VM's rng_seed (booted with, else given at creation), or nil. */
static int l_vm_rng_seed(lua_State *L)
{
    lvm *v = pv_check_vm(L, 1);
    if (v->vm->has_rng_seed)
        lua_pushinteger(L, (lua_Integer)v->vm->rng_seed);
    else if (v->opts.has_rng_seed)
        lua_pushinteger(L, (lua_Integer)v->opts.rng_seed);
    else
        lua_pushnil(L);
    return 1;
}

void pv_lua_net_init(lua_State *L, int internal_idx)
{
    static const luaL_Reg fns[] = {
        {"dir", l_dir},
        {"bridge_add", l_bridge_add},
        {"bridge_remove", l_bridge_remove},
        {"port_add", l_port_add},
        {"port_remove", l_port_remove},
        {"port_netdev", l_port_netdev},
        {"port_set_link", l_port_set_link},
        {"set_impair", l_set_impair},
        {"reset", l_reset},
        {"set_blocked", l_set_blocked},
        {"set_isolated", l_set_isolated},
        {"counters", l_counters},
        {"capture_start", l_capture_start},
        {"capture_stop", l_capture_stop},
        {"capture_packets", l_capture_packets},
        {"uplink", l_uplink},
        {"uplink_gateway", l_uplink_gateway},
        {"random_seed", l_random_seed},
        {"vm_nic_add", l_vm_nic_add},
        {"vm_nic_hotplug", l_vm_nic_hotplug},
        {"vm_nic_unplug", l_vm_nic_unplug},
        {"vm_nic_clear", l_vm_nic_clear},
        {"vm_nic_count", l_vm_nic_count},
        {"vm_set_link", l_vm_set_link},
        {"vm_machine", l_vm_machine},
        {"vm_rng_seed", l_vm_rng_seed},
        {NULL, NULL},
    };
    internal_idx = lua_absindex(L, internal_idx);
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    /* the Lua half (lua/net.lua), a chunk the framework calls with its glue */
    if (luaL_loadbuffer(L, (const char *)provium_net_lua, EMBEDDED_SIZE(provium_net_lua), "=provium/net.lua") != LUA_OK)
        luaL_error(L, "internal error loading provium/net.lua: %s", lua_tostring(L, -1));
    lua_setfield(L, -2, "module");
    lua_setfield(L, internal_idx, "net");
}
