/* CONTRACT between the switch engineer (implements) and the networking-API
 * engineer (uses). Both build against exactly this; change it only by
 * agreement (write a note in /work/wt/contract/CHANGES.md and tell the other
 * side in your report). Final location: host/net/netsw.h.
 *
 * A user-space Ethernet switch owned by one test file: one forwarding thread
 * serving every bridge of the file. Each port is a unix socket in the file's
 * private scratch dir that one QEMU virtio-net NIC connects to (QEMU 7.2
 * -netdev stream (4-byte big-endian length prefix per frame) or dgram; the
 * implementer chooses and documents, and netsw_port_netdev() returns the
 * exact -netdev option string so callers never build it themselves).
 * No root, nothing in the host's network namespace. The thread dies with the
 * process; netsw_stop joins it and unlinks every socket.
 *
 * Thread safety: every function may be called from the Lua thread while the
 * forwarding thread runs (internally one mutex). Every function returning int
 * returns 0 on success, -1 with a message in err (PV_NETSW_ERR bytes) naming
 * the bridge and port.
 */
#ifndef PROVIUM_NETSW_H
#define PROVIUM_NETSW_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PV_NETSW_ERR 512

typedef struct netsw netsw;  /* the file's switch (all its bridges) */
typedef int netsw_port_id;    /* > 0 */

/* dir: an existing private directory for the sockets. */
netsw *netsw_start(const char *dir, char *err);
void netsw_stop(netsw *sw);

/* A bridge: a broadcast domain. seed feeds the bridge's PRNG (drops, jitter):
 * same seed + same traffic = same decisions. */
int netsw_bridge_add(netsw *sw, const char *bridge, uint64_t seed, char *err);
int netsw_bridge_remove(netsw *sw, const char *bridge, char *err);
uint64_t netsw_bridge_seed(netsw *sw, const char *bridge);

/* A port on a bridge for one NIC of VM `vm` (names used in errors and in
 * directional rules: rules are keyed by VM name). mac is the NIC's MAC.
 * Returns the port id, or -1. */
netsw_port_id netsw_port_add(netsw *sw, const char *bridge, const char *vm, const uint8_t mac[6], char *err);
int netsw_port_remove(netsw *sw, netsw_port_id port, char *err);
/* The value of QEMU's -netdev (and netdev_add) for this port, with the given
 * netdev id, e.g. "stream,id=nd0,server=off,addr.type=unix,addr.path=/x/p1.sock".
 * Written into buf; returns buf. */
const char *netsw_port_netdev(netsw *sw, netsw_port_id port, const char *netdev_id, char *buf, size_t len);
/* The port's unix socket path, for QMP netdev_add (hot-plug). QEMU 7.2's
 * HMP netdev_add cannot express stream's nested addr (it fails with
 * "Parameter 'type' is missing"); QMP takes it structured:
 *   {"type":"stream","id":ID,"server":false,"addr":{"type":"unix","path":PATH}}
 * Written into buf (empty when the port is unknown or buf too small); returns buf.
 * (Added after the first contract; see CHANGES.md.) */
const char *netsw_port_path(netsw *sw, netsw_port_id port, char *buf, size_t len);
/* A QEMU process (re)connected for this port (after a restore the new QEMU
 * connects again): the switch must accept a new connection on the same port
 * at any time, dropping the old one. */

/* Link state as the switch sees it (the caller also does QMP set_link so the
 * guest sees carrier loss): a down port neither sends nor receives. */
int netsw_port_set_link(netsw *sw, netsw_port_id port, bool up, char *err);

/* Impairments. from/to are VM names on that bridge; NULL/NULL = the whole
 * bridge (default for every pair without its own rule). A pair rule applies
 * to frames from `from` delivered to `to` (directional). */
typedef struct {
    double latency_ms;   /* one way, >= 0 */
    double jitter_ms;    /* >= 0, uniform +-jitter, never below 0 total */
    double drop_pct;     /* 0..100 */
    uint64_t rate_bps;   /* bits per second, 0 = unlimited; token bucket */
} netsw_impair;
int netsw_set_impair(netsw *sw, const char *bridge, const char *from, const char *to, const netsw_impair *im, char *err);
int netsw_get_impair(netsw *sw, const char *bridge, const char *from, const char *to, netsw_impair *out, char *err);
/* Remove all impairments, partitions and isolation on the bridge. */
int netsw_reset(netsw *sw, const char *bridge, char *err);
/* Directional partition: frames from -> to are dropped (blocked=true). */
int netsw_set_blocked(netsw *sw, const char *bridge, const char *from, const char *to, bool blocked, char *err);
bool netsw_is_blocked(netsw *sw, const char *bridge, const char *from, const char *to);
/* Isolation: the VM's ports on the bridge neither send nor receive. */
int netsw_set_isolated(netsw *sw, const char *bridge, const char *vm, bool isolated, char *err);
bool netsw_is_isolated(netsw *sw, const char *bridge, const char *vm);

/* Counters of one port from the guest's point of view: tx = frames the guest
 * sent into the switch, rx = frames delivered to the guest; dropped = frames
 * the switch dropped that the guest sent (impairment, partition, link down). */
typedef struct {
    uint64_t tx_packets, tx_bytes, rx_packets, rx_bytes, dropped;
} netsw_counters;
int netsw_port_counters(netsw *sw, netsw_port_id port, netsw_counters *out, char *err);

/* Captures in standard pcap (LINKTYPE_ETHERNET, microsecond timestamps),
 * written by the switch thread itself. port 0 = the whole bridge (every frame
 * the bridge forwards, once); else frames sent or received by that port.
 * Returns a capture id > 0. netsw_capture_stop flushes and closes the file.
 * netsw_capture_packets tells how many frames were written so far. */
int netsw_capture_start(netsw *sw, const char *bridge, netsw_port_id port, const char *path, char *err);
int netsw_capture_stop(netsw *sw, int capture_id, char *err);
uint64_t netsw_capture_packets(netsw *sw, int capture_id);

/* Uplink: one more port on the bridge, backed by NAT to the host. The
 * implementer chooses (QEMU user networking in a tiny helper is NOT
 * available in-process; options: passt/slirp4netns speaking the qemu stream
 * protocol on a unix socket, spawned tied to the provium process). gateway
 * address and DNS are documented in the implementation's header comment. */
/* The uplink's addresses in a subnet (len 8..29): gateway = broadcast - 1
 * (e.g. 10.77.0.254 in 10.77.0.0/24), which is also the NAT's alias for the
 * host's 127.0.0.1; dns = broadcast - 2. Guests must not use these two.
 * (Added after the first contract; see CHANGES.md.) */
int netsw_uplink_addresses(const char *subnet_cidr, char gateway[16], char dns[16], char *err);
int netsw_uplink_enable(netsw *sw, const char *bridge, const char *subnet_cidr, char *err);
int netsw_uplink_disable(netsw *sw, const char *bridge, char *err);
bool netsw_uplink_enabled(netsw *sw, const char *bridge);
#endif
