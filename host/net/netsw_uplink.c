/* The uplink's NAT: QEMU's own user networking (libslirp) in a helper QEMU
 * with no machine (-M none), whose `user` netdev is joined by a hub to a
 * `stream` netdev that connects to one more port of the switch, exactly as a
 * VM's NIC does. slirp is a small router that serves any number of guests on
 * the bridge (passt serves one guest per instance: it replies to the last
 * MAC and address it saw), needs no root and touches nothing on the host but
 * ordinary sockets. The helper is tied to provium (spawn_tied): it dies with
 * the process even on SIGKILL. (PR_SET_PDEATHSIG follows the thread that
 * forked, so netsw_uplink_enable belongs on a thread that lives as long as
 * the switch: the Lua thread.)
 *
 * Addresses, for a bridge subnet N/len (len 8..29): the gateway is the last
 * usable address (broadcast - 1, e.g. 10.77.0.254 in a /24) and DNS is the
 * one before it (broadcast - 2). The gateway is also slirp's alias for the
 * host's loopback: a guest connecting to gateway:port reaches a server on
 * 127.0.0.1:port of the host, which is how the tests use the uplink. */
#include "netsw_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"


static void ip_text(uint32_t host_order, char out[16])
{
    struct in_addr a = {htonl(host_order)};
    inet_ntop(AF_INET, &a, out, 16);
}

int uplink_addresses(const char *cidr, char net[32], char gw[16], char dns[16], char *err)
{
    char addr[32];
    const char *slash = cidr ? strchr(cidr, '/') : NULL;
    if (!slash || (size_t)(slash - cidr) >= sizeof(addr))
        return ERR("subnet '%s' is not an IPv4 address/prefix such as 10.77.0.0/24", cidr ? cidr : "(null)");
    memcpy(addr, cidr, (size_t)(slash - cidr));
    addr[slash - cidr] = 0;
    char *end;
    long len = strtol(slash + 1, &end, 10);
    struct in_addr a;
    if (*end || end == slash + 1 || inet_pton(AF_INET, addr, &a) != 1)
        return ERR("subnet '%s' is not an IPv4 address/prefix such as 10.77.0.0/24", cidr);
    if (len < 8 || len > 29)
        return ERR("subnet '%s': the prefix must be 8..29 to leave room for the gateway and DNS", cidr);
    uint32_t mask = len == 32 ? 0xffffffffu : ~(0xffffffffu >> len);
    uint32_t base = ntohl(a.s_addr) & mask, bcast = base | ~mask;
    char base_text[16];
    ip_text(base, base_text);
    snprintf(net, 32, "%s/%ld", base_text, len);
    ip_text(bcast - 1, gw);
    ip_text(bcast - 2, dns);
    return 0;
}

pid_t uplink_spawn(const char *cidr, const char *sock_path, char *err)
{
    char net[32], gw[16], dns[16];
    if (uplink_addresses(cidr, net, gw, dns, err) < 0)
        return -1;
    char *user = xasprintf("user,id=nat,net=%s,host=%s,dns=%s,ipv6=off", net, gw, dns);
    char *stream = xasprintf("stream,id=port,server=off,addr.type=unix,addr.path=%s", sock_path);
    char *argv[] = {"qemu-system-x86_64", "-M", "none", "-nodefaults", "-display", "none", "-monitor", "none",
                    "-serial", "none", "-netdev", user, "-netdev", stream,
                    "-netdev", "hubport,id=h0,hubid=0,netdev=nat", "-netdev", "hubport,id=h1,hubid=0,netdev=port",
                    NULL};
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    pid_t pid = devnull >= 0 ? spawn_tied(argv, devnull, devnull, devnull) : -1;
    if (pid < 0)
        ERR("cannot start the NAT helper qemu-system-x86_64: %s", strerror(errno));
    if (devnull >= 0)
        close(devnull);
    free(user);
    free(stream);
    return pid;
}

void uplink_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}
