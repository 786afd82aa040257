/* Placeholder of the user-space switch (host/net/netsw.h): every function
 * exists so callers link; the real switch replaces this file. */
#include "netsw.h"

#include <stdio.h>
#include <stdlib.h>

struct netsw {
    int unused;
};

static int not_yet(char *err, const char *op)
{
    if (err)
        snprintf(err, PV_NETSW_ERR, "switch: %s: not implemented yet", op);
    return -1;
}

netsw *netsw_start(const char *dir, char *err) { (void)dir; not_yet(err, "start"); return NULL; }
void netsw_stop(netsw *sw) { free(sw); }
int netsw_bridge_add(netsw *sw, const char *b, uint64_t s, char *err) { (void)sw; (void)b; (void)s; return not_yet(err, "bridge_add"); }
int netsw_bridge_remove(netsw *sw, const char *b, char *err) { (void)sw; (void)b; return not_yet(err, "bridge_remove"); }
uint64_t netsw_bridge_seed(netsw *sw, const char *b) { (void)sw; (void)b; return 0; }
netsw_port_id netsw_port_add(netsw *sw, const char *b, const char *vm, const uint8_t mac[6], char *err) { (void)sw; (void)b; (void)vm; (void)mac; return not_yet(err, "port_add"); }
int netsw_port_remove(netsw *sw, netsw_port_id p, char *err) { (void)sw; (void)p; return not_yet(err, "port_remove"); }
const char *netsw_port_netdev(netsw *sw, netsw_port_id p, const char *id, char *buf, size_t len) { (void)sw; (void)p; (void)id; if (len) buf[0] = 0; return buf; }
int netsw_port_set_link(netsw *sw, netsw_port_id p, bool up, char *err) { (void)sw; (void)p; (void)up; return not_yet(err, "set_link"); }
int netsw_set_impair(netsw *sw, const char *b, const char *f, const char *t, const netsw_impair *im, char *err) { (void)sw; (void)b; (void)f; (void)t; (void)im; return not_yet(err, "set_impair"); }
int netsw_get_impair(netsw *sw, const char *b, const char *f, const char *t, netsw_impair *o, char *err) { (void)sw; (void)b; (void)f; (void)t; (void)o; return not_yet(err, "get_impair"); }
int netsw_reset(netsw *sw, const char *b, char *err) { (void)sw; (void)b; return not_yet(err, "reset"); }
int netsw_set_blocked(netsw *sw, const char *b, const char *f, const char *t, bool x, char *err) { (void)sw; (void)b; (void)f; (void)t; (void)x; return not_yet(err, "set_blocked"); }
bool netsw_is_blocked(netsw *sw, const char *b, const char *f, const char *t) { (void)sw; (void)b; (void)f; (void)t; return false; }
int netsw_set_isolated(netsw *sw, const char *b, const char *vm, bool x, char *err) { (void)sw; (void)b; (void)vm; (void)x; return not_yet(err, "set_isolated"); }
bool netsw_is_isolated(netsw *sw, const char *b, const char *vm) { (void)sw; (void)b; (void)vm; return false; }
int netsw_port_counters(netsw *sw, netsw_port_id p, netsw_counters *o, char *err) { (void)sw; (void)p; (void)o; return not_yet(err, "counters"); }
int netsw_capture_start(netsw *sw, const char *b, netsw_port_id p, const char *path, char *err) { (void)sw; (void)b; (void)p; (void)path; return not_yet(err, "capture_start"); }
int netsw_capture_stop(netsw *sw, int c, char *err) { (void)sw; (void)c; return not_yet(err, "capture_stop"); }
uint64_t netsw_capture_packets(netsw *sw, int c) { (void)sw; (void)c; return 0; }
int netsw_uplink_enable(netsw *sw, const char *b, const char *s, char *err) { (void)sw; (void)b; (void)s; return not_yet(err, "uplink_enable"); }
int netsw_uplink_disable(netsw *sw, const char *b, char *err) { (void)sw; (void)b; return not_yet(err, "uplink_disable"); }
bool netsw_uplink_enabled(netsw *sw, const char *b) { (void)sw; (void)b; return false; }
