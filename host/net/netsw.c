/* The switch's control side (host/net/netsw.h): start and stop the
 * forwarding thread, bridges, ports, rules, counters and captures. Every call
 * runs on the caller's thread under the switch mutex and validates its input
 * before touching state, so bad input gets an error naming the bridge and the
 * port, never a crash in the forwarding thread.
 *
 * Ports are QEMU `-netdev stream` clients (server=off) on a unix socket the
 * switch listens on: QEMU 7.2 has stream and dgram, and stream gives
 * ordered, flow-controlled delivery and lets a new QEMU (after a restore)
 * connect to the same path at any time. */
#include "netsw_int.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../util/util.h"


int netsw_fail(char *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PV_NETSW_ERR, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void wake(netsw *sw)
{
    uint64_t one = 1;
    if (write(sw->wakefd, &one, sizeof(one)) < 0) {
        /* the counter is saturated: the thread is awake anyway */
    }
}

netsw *netsw_start(const char *dir, char *err)
{
    if (!dir || !is_dir(dir)) {
        ERR("switch: start: %s is not a directory", dir ? dir : "(null)");
        return NULL;
    }
    netsw *sw = xcalloc(1, sizeof(*sw));
    pthread_mutex_init(&sw->lock, NULL);
    sw->dir = xstrdup(dir);
    sw->n_ports = 1; /* ids start at 1 */
    sw->ports = xcalloc(1, sizeof(port *));
    sw->next_capture = 1;
    sw->epfd = epoll_create1(EPOLL_CLOEXEC);
    sw->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sw->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_WAKE};
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = EV_TIMER};
    if (sw->epfd < 0 || sw->wakefd < 0 || sw->timerfd < 0 || epoll_ctl(sw->epfd, EPOLL_CTL_ADD, sw->wakefd, &ev) < 0 ||
        epoll_ctl(sw->epfd, EPOLL_CTL_ADD, sw->timerfd, &tev) < 0) {
        ERR("switch: start: cannot set up epoll: %s", strerror(errno));
        netsw_stop(sw);
        return NULL;
    }
    /* The thread must not take signals meant for the Lua thread (SIGINT, SIGCHLD). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&sw->thread, NULL, netsw_thread_main, sw);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        ERR("switch: start: cannot create the forwarding thread: %s", strerror(rc));
        netsw_stop(sw);
        return NULL;
    }
    sw->thread_started = true;
    return sw;
}

static void port_free(netsw *sw, port *p)
{
    netsw_port_disconnect(sw, p);
    if (p->lfd >= 0) {
        epoll_ctl(sw->epfd, EPOLL_CTL_DEL, p->lfd, NULL);
        close(p->lfd);
        unlink(p->path);
    }
    sw->ports[p->id] = NULL;
    free(p->rbuf);
    free(p->path);
    free(p);
}

static void capture_free(capture *c)
{
    pcap_close(c);
    free(c->path);
    free(c);
}

static void bridge_free(netsw *sw, bridge *br)
{
    if (br->uplink_pid > 0)
        uplink_kill(br->uplink_pid);
    for (int i = 1; i < sw->n_ports; i++)
        if (sw->ports[i] && sw->ports[i]->br == br)
            port_free(sw, sw->ports[i]);
    for (capture **cp = &sw->captures; *cp;) {
        capture *c = *cp;
        if (c->br == br) {
            *cp = c->next;
            capture_free(c);
        } else {
            cp = &c->next;
        }
    }
    while (br->pairs) {
        pair *p = br->pairs;
        br->pairs = p->next;
        free(p);
    }
    while (br->members) {
        member *m = br->members;
        br->members = m->next;
        free(m->name);
        free(m);
    }
    free(br->name);
    free(br);
}

void netsw_stop(netsw *sw)
{
    if (!sw)
        return;
    if (sw->thread_started) {
        pthread_mutex_lock(&sw->lock);
        sw->stopping = true;
        wake(sw);
        pthread_mutex_unlock(&sw->lock);
        pthread_join(sw->thread, NULL);
    }
    while (sw->bridges) {
        bridge *br = sw->bridges;
        sw->bridges = br->next;
        bridge_free(sw, br);
    }
    timerq_free(&sw->delayed);
    if (sw->epfd >= 0)
        close(sw->epfd);
    if (sw->wakefd >= 0)
        close(sw->wakefd);
    if (sw->timerfd >= 0)
        close(sw->timerfd);
    pthread_mutex_destroy(&sw->lock);
    free(sw->ports);
    free(sw->dir);
    free(sw);
}

static bridge *bridge_find(netsw *sw, const char *name)
{
    if (!name)
        return NULL;
    for (bridge *br = sw->bridges; br; br = br->next)
        if (strcmp(br->name, name) == 0)
            return br;
    return NULL;
}

/* The bridge or an error; every public call starts here with the lock held. */
static bridge *bridge_need(netsw *sw, const char *name, const char *op, char *err)
{
    bridge *br = bridge_find(sw, name);
    if (!br)
        ERR("switch: bridge '%s': %s: no such bridge", name ? name : "(null)", op);
    return br;
}

static member *member_find(bridge *br, const char *name)
{
    if (!name)
        return NULL;
    for (member *m = br->members; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

static bool member_attached(netsw *sw, member *m)
{
    for (int i = 1; i < sw->n_ports; i++)
        if (sw->ports[i] && sw->ports[i]->m == m)
            return true;
    return false;
}

/* A rule's endpoint: a VM with a port on this bridge right now. */
static member *endpoint_need(netsw *sw, bridge *br, const char *vm, const char *op, char *err)
{
    member *m = member_find(br, vm);
    if (!m || !member_attached(sw, m)) {
        ERR("switch: bridge '%s': %s: vm '%s' is not attached to this bridge (call bridge:attach first)", br->name, op,
            vm ? vm : "(null)");
        return NULL;
    }
    return m;
}

static bool name_ok(const char *s) { return s && *s && strlen(s) <= 64 && !strpbrk(s, "/\n"); }

int netsw_bridge_add(netsw *sw, const char *name, uint64_t seed, char *err)
{
    if (!name_ok(name))
        return ERR("switch: bridge '%s': add: the name must be 1-64 characters without '/'", name ? name : "(null)");
    pthread_mutex_lock(&sw->lock);
    int rc = 0;
    if (bridge_find(sw, name)) {
        rc = ERR("switch: bridge '%s': add: a bridge with this name exists", name);
    } else {
        bridge *br = xcalloc(1, sizeof(*br));
        br->name = xstrdup(name);
        br->seed = seed;
        br->next = sw->bridges;
        sw->bridges = br;
    }
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

int netsw_bridge_remove(netsw *sw, const char *name, char *err)
{
    pthread_mutex_lock(&sw->lock);
    int rc = -1;
    for (bridge **bp = &sw->bridges; *bp; bp = &(*bp)->next)
        if (strcmp((*bp)->name, name ? name : "") == 0) {
            bridge *br = *bp;
            *bp = br->next;
            bridge_free(sw, br);
            rc = 0;
            break;
        }
    if (rc < 0)
        ERR("switch: bridge '%s': remove: no such bridge", name ? name : "(null)");
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

uint64_t netsw_bridge_seed(netsw *sw, const char *name)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_find(sw, name);
    uint64_t seed = br ? br->seed : 0;
    pthread_mutex_unlock(&sw->lock);
    return seed;
}

static int listen_unix(const char *path, char *err, const char *what)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return ERR("%s: socket path %s is longer than %zu bytes", what, path, sizeof(a.sun_path) - 1);
    strcpy(a.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ERR("%s: socket: %s", what, strerror(errno));
    unlink(path);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 8) < 0) {
        int e = errno;
        close(fd);
        return ERR("%s: cannot listen on %s: %s", what, path, strerror(e));
    }
    return fd;
}

/* Adds a port (lock held). vm names the member; the uplink uses NETSW_UPLINK_NAME. */
static netsw_port_id port_create(netsw *sw, bridge *br, const char *vm, const uint8_t mac[6], char *err)
{
    netsw_port_id id = sw->n_ports;
    char what[200];
    snprintf(what, sizeof(what), "switch: bridge '%s': port %d (vm %s)", br->name, id, vm);
    char *path = xasprintf("%s/p%d.sock", sw->dir, id);
    int fd = listen_unix(path, err, what);
    if (fd < 0) {
        free(path);
        return -1;
    }
    member *m = member_find(br, vm);
    if (!m) {
        m = xcalloc(1, sizeof(*m));
        m->name = xstrdup(vm);
        m->next = br->members;
        br->members = m;
    }
    port *p = xcalloc(1, sizeof(*p));
    p->id = id;
    p->br = br;
    p->m = m;
    memcpy(p->mac, mac, 6);
    p->path = path;
    p->lfd = fd;
    p->cfd = -1;
    p->up = true;
    p->rbuf = xmalloc(NETSW_RBUF);
    sw->ports = xrealloc(sw->ports, (size_t)(id + 1) * sizeof(port *));
    sw->ports[id] = p;
    sw->n_ports = id + 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_LISTEN(id)};
    if (epoll_ctl(sw->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        ERR("%s: epoll: %s", what, strerror(errno));
        port_free(sw, p);
        return -1;
    }
    return id;
}

netsw_port_id netsw_port_add(netsw *sw, const char *bridge_name, const char *vm, const uint8_t mac[6], char *err)
{
    if (!name_ok(vm) || vm[0] == '@')
        return ERR("switch: bridge '%s': port_add: vm name '%s' must be 1-64 characters, not starting with '@'",
                   bridge_name ? bridge_name : "(null)", vm ? vm : "(null)");
    if (!mac)
        return ERR("switch: bridge '%s': port_add for vm %s: no MAC address", bridge_name ? bridge_name : "(null)", vm);
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, "port_add", err);
    netsw_port_id id = br ? port_create(sw, br, vm, mac, err) : -1;
    pthread_mutex_unlock(&sw->lock);
    return id;
}

/* Forgets the MACs learnt on a port that goes away. */
static void macs_forget(bridge *br, netsw_port_id id)
{
    int j = 0;
    for (int i = 0; i < br->n_macs; i++)
        if (br->macs[i].port != id)
            br->macs[j++] = br->macs[i];
    br->n_macs = j;
}

static port *port_need(netsw *sw, netsw_port_id id, const char *op, char *err)
{
    port *p = netsw_port_get(sw, id);
    if (!p)
        ERR("switch: port %d: %s: no such port", id, op);
    return p;
}

int netsw_port_remove(netsw *sw, netsw_port_id id, char *err)
{
    pthread_mutex_lock(&sw->lock);
    port *p = port_need(sw, id, "remove", err);
    if (p) {
        if (p->br->uplink_port == id) {
            ERR("switch: bridge '%s': port %d is the uplink: use netsw_uplink_disable", p->br->name, id);
            p = NULL;
        } else {
            macs_forget(p->br, id);
            port_free(sw, p);
        }
    }
    pthread_mutex_unlock(&sw->lock);
    return p ? 0 : -1;
}

/* QEMU's option parser splits on ',' and reads ",," as a literal comma. */
static void add_escaped(char *buf, size_t len, size_t *at, const char *s)
{
    for (; *s && *at + 2 < len; s++) {
        buf[(*at)++] = *s;
        if (*s == ',')
            buf[(*at)++] = ',';
    }
    buf[*at] = 0;
}

const char *netsw_port_netdev(netsw *sw, netsw_port_id id, const char *netdev_id, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = 0;
    pthread_mutex_lock(&sw->lock);
    port *p = netsw_port_get(sw, id);
    if (p && netdev_id) {
        int n = snprintf(buf, len, "stream,id=%s,server=off,addr.type=unix,addr.path=", netdev_id);
        size_t at = n > 0 && (size_t)n < len ? (size_t)n : 0;
        if (at)
            add_escaped(buf, len, &at, p->path);
        else
            buf[0] = 0;
    }
    pthread_mutex_unlock(&sw->lock);
    return buf;
}

const char *netsw_port_path(netsw *sw, netsw_port_id id, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = 0;
    pthread_mutex_lock(&sw->lock);
    port *p = netsw_port_get(sw, id);
    if (p && strlen(p->path) < len)
        strcpy(buf, p->path);
    pthread_mutex_unlock(&sw->lock);
    return buf;
}

int netsw_port_set_link(netsw *sw, netsw_port_id id, bool up, char *err)
{
    pthread_mutex_lock(&sw->lock);
    port *p = port_need(sw, id, up ? "link up" : "link down", err);
    if (p)
        p->up = up;
    pthread_mutex_unlock(&sw->lock);
    return p ? 0 : -1;
}

int netsw_port_counters(netsw *sw, netsw_port_id id, netsw_counters *out, char *err)
{
    if (!out)
        return ERR("switch: port %d: counters: no output buffer", id);
    pthread_mutex_lock(&sw->lock);
    port *p = port_need(sw, id, "counters", err);
    if (p)
        *out = p->c;
    pthread_mutex_unlock(&sw->lock);
    return p ? 0 : -1;
}

static int impair_check(const char *bridge_name, const netsw_impair *im, char *err)
{
    if (!im)
        return ERR("switch: bridge '%s': set_impair: no impairment given", bridge_name);
    if (!isfinite(im->latency_ms) || im->latency_ms < 0 || im->latency_ms > NETSW_MAX_DELAY_MS)
        return ERR("switch: bridge '%s': latency %g ms is not a number of milliseconds in 0..%g", bridge_name,
                   im->latency_ms, NETSW_MAX_DELAY_MS);
    if (!isfinite(im->jitter_ms) || im->jitter_ms < 0 || im->jitter_ms > NETSW_MAX_DELAY_MS)
        return ERR("switch: bridge '%s': jitter %g ms is not a number of milliseconds in 0..%g", bridge_name,
                   im->jitter_ms, NETSW_MAX_DELAY_MS);
    if (!isfinite(im->drop_pct) || im->drop_pct < 0 || im->drop_pct > 100)
        return ERR("switch: bridge '%s': drop rate %g%% is outside 0..100", bridge_name, im->drop_pct);
    if (im->rate_bps != 0 && im->rate_bps < NETSW_MIN_RATE_BPS)
        return ERR("switch: bridge '%s': bandwidth %llu bit/s is below the minimum %u bit/s (0 means unlimited)",
                   bridge_name, (unsigned long long)im->rate_bps, NETSW_MIN_RATE_BPS);
    return 0;
}

/* The pair a rule names (lock held): both ends given and attached, or both NULL (*out = NULL). */
static int pair_need(netsw *sw, bridge *br, const char *from, const char *to, const char *op, bool allow_bridge,
                     pair **out, char *err)
{
    *out = NULL;
    if (!from && !to && allow_bridge)
        return 0;
    if (!from || !to)
        return ERR("switch: bridge '%s': %s: give both from and to VMs%s", br->name, op,
                   allow_bridge ? ", or neither for the whole bridge" : "");
    member *f = endpoint_need(sw, br, from, op, err);
    member *t = f ? endpoint_need(sw, br, to, op, err) : NULL;
    if (!t)
        return -1;
    if (f == t)
        return ERR("switch: bridge '%s': %s: from and to are the same vm '%s'", br->name, op, from);
    pair *p = netsw_pair_get(br, f, t);
    *out = p;
    return 0;
}

int netsw_set_impair(netsw *sw, const char *bridge_name, const char *from, const char *to, const netsw_impair *im,
                     char *err)
{
    if (impair_check(bridge_name ? bridge_name : "(null)", im, err) < 0)
        return -1;
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, "set_impair", err);
    pair *p = NULL;
    int rc = br ? pair_need(sw, br, from, to, "set_impair", true, &p, err) : -1;
    if (rc == 0 && p) {
        p->rule = *im;
        p->has_rule = true;
    } else if (rc == 0) {
        br->def = *im;
    }
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

int netsw_get_impair(netsw *sw, const char *bridge_name, const char *from, const char *to, netsw_impair *out,
                     char *err)
{
    if (!out)
        return ERR("switch: bridge '%s': get_impair: no output buffer", bridge_name ? bridge_name : "(null)");
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, "get_impair", err);
    pair *p = NULL;
    int rc = br ? pair_need(sw, br, from, to, "get_impair", true, &p, err) : -1;
    if (rc == 0) /* a pair without its own rule follows the bridge */
        *out = p && p->has_rule ? p->rule : br->def;
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

int netsw_reset(netsw *sw, const char *bridge_name, char *err)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, "reset", err);
    if (br) {
        br->def = (netsw_impair){0};
        for (pair *p = br->pairs; p; p = p->next) {
            p->has_rule = p->blocked = false;
            p->bucket_ns = 0;
        }
        for (member *m = br->members; m; m = m->next)
            m->isolated = false;
    }
    pthread_mutex_unlock(&sw->lock);
    return br ? 0 : -1;
}

int netsw_set_blocked(netsw *sw, const char *bridge_name, const char *from, const char *to, bool blocked, char *err)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, blocked ? "partition" : "unpartition", err);
    pair *p = NULL;
    int rc = br ? pair_need(sw, br, from, to, blocked ? "partition" : "unpartition", false, &p, err) : -1;
    if (rc == 0)
        p->blocked = blocked;
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

bool netsw_is_blocked(netsw *sw, const char *bridge_name, const char *from, const char *to)
{
    pthread_mutex_lock(&sw->lock);
    bool blocked = false;
    bridge *br = bridge_find(sw, bridge_name);
    member *f = br ? member_find(br, from) : NULL, *t = br ? member_find(br, to) : NULL;
    for (pair *p = f && t ? br->pairs : NULL; p; p = p->next)
        if (p->from == f && p->to == t)
            blocked = p->blocked;
    pthread_mutex_unlock(&sw->lock);
    return blocked;
}

int netsw_set_isolated(netsw *sw, const char *bridge_name, const char *vm, bool isolated, char *err)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, isolated ? "isolate" : "unisolate", err);
    member *m = br ? endpoint_need(sw, br, vm, isolated ? "isolate" : "unisolate", err) : NULL;
    if (m)
        m->isolated = isolated;
    pthread_mutex_unlock(&sw->lock);
    return m ? 0 : -1;
}

bool netsw_is_isolated(netsw *sw, const char *bridge_name, const char *vm)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_find(sw, bridge_name);
    member *m = br ? member_find(br, vm) : NULL;
    bool isolated = m && m->isolated;
    pthread_mutex_unlock(&sw->lock);
    return isolated;
}

int netsw_capture_start(netsw *sw, const char *bridge_name, netsw_port_id port_id, const char *path, char *err)
{
    if (!path || !*path)
        return ERR("switch: bridge '%s': capture: no file given", bridge_name ? bridge_name : "(null)");
    pthread_mutex_lock(&sw->lock);
    int rc = -1;
    bridge *br = bridge_need(sw, bridge_name, "capture", err);
    port *p = br && port_id ? port_need(sw, port_id, "capture", err) : NULL;
    if (br && port_id && p && p->br != br)
        ERR("switch: bridge '%s': capture: port %d belongs to bridge '%s'", br->name, port_id, p->br->name);
    else if (br && (!port_id || p)) {
        capture *c = xcalloc(1, sizeof(*c));
        c->br = br;
        c->port = port_id;
        c->path = xstrdup(path);
        char why[PV_NETSW_ERR];
        if (pcap_open(c, why) < 0) {
            ERR("switch: bridge '%s': capture: %s", br->name, why);
            capture_free(c);
        } else {
            c->id = rc = sw->next_capture++;
            c->next = sw->captures;
            sw->captures = c;
        }
    }
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

int netsw_capture_stop(netsw *sw, int capture_id, char *err)
{
    pthread_mutex_lock(&sw->lock);
    int rc = -1;
    for (capture **cp = &sw->captures; *cp; cp = &(*cp)->next)
        if ((*cp)->id == capture_id) {
            capture *c = *cp;
            *cp = c->next;
            capture_free(c);
            rc = 0;
            break;
        }
    if (rc < 0)
        ERR("switch: capture %d: stop: no such capture (already stopped, or its bridge was removed)", capture_id);
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

uint64_t netsw_capture_packets(netsw *sw, int capture_id)
{
    pthread_mutex_lock(&sw->lock);
    uint64_t n = 0;
    for (capture *c = sw->captures; c; c = c->next)
        if (c->id == capture_id)
            n = c->packets;
    pthread_mutex_unlock(&sw->lock);
    return n;
}

/* Waits (without the lock) until the helper has connected to its port, so
 * the uplink works when enable returns; fails if the helper exits first. */
static int uplink_wait_connected(netsw *sw, bridge *br, netsw_port_id id, pid_t pid, char *err)
{
    int64_t deadline = now_ms() + 20000;
    for (;;) {
        pthread_mutex_lock(&sw->lock);
        port *p = netsw_port_get(sw, id);
        bool connected = p && p->cfd >= 0;
        pthread_mutex_unlock(&sw->lock);
        if (connected)
            return 0;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            pthread_mutex_lock(&sw->lock);
            br->uplink_pid = 0; /* reaped here: nothing left to kill */
            pthread_mutex_unlock(&sw->lock);
            return ERR("switch: bridge '%s': uplink: the NAT helper (qemu user networking) exited before connecting",
                       br->name);
        }
        if (now_ms() > deadline)
            return ERR("switch: bridge '%s': uplink: the NAT helper did not connect within 20 s", br->name);
        sleep_ms(10);
    }
}

int netsw_uplink_addresses(const char *subnet_cidr, char gateway[16], char dns[16], char *err)
{
    char net[32];
    return uplink_addresses(subnet_cidr, net, gateway, dns, err);
}

int netsw_uplink_enable(netsw *sw, const char *bridge_name, const char *subnet_cidr, char *err)
{
    char net[32], gw[16], dns[16], why[PV_NETSW_ERR];
    if (uplink_addresses(subnet_cidr, net, gw, dns, why) < 0)
        return ERR("switch: bridge '%s': uplink: %s", bridge_name ? bridge_name : "(null)", why);
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, "uplink", err);
    netsw_port_id id = -1;
    pid_t pid = -1;
    if (br && br->uplink_port) {
        ERR("switch: bridge '%s': uplink: already enabled", br->name);
        br = NULL;
    }
    if (br) {
        static const uint8_t slirp_mac[6] = {0x52, 0x55, 0, 0, 0, 0};
        id = port_create(sw, br, NETSW_UPLINK_NAME, slirp_mac, err);
    }
    if (br && id > 0) {
        pid = uplink_spawn(net, sw->ports[id]->path, why);
        if (pid < 0) {
            ERR("switch: bridge '%s': uplink: %s", br->name, why);
            port_free(sw, sw->ports[id]);
            br = NULL;
        } else {
            br->uplink_port = id;
            br->uplink_pid = pid;
        }
    }
    pthread_mutex_unlock(&sw->lock);
    if (!br || id < 0)
        return -1;
    if (uplink_wait_connected(sw, br, id, pid, err) < 0) {
        char ignored[PV_NETSW_ERR];
        netsw_uplink_disable(sw, bridge_name, ignored);
        return -1;
    }
    return 0;
}

int netsw_uplink_disable(netsw *sw, const char *bridge_name, char *err)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_need(sw, bridge_name, "uplink disable", err);
    int rc = br ? 0 : -1;
    if (br && br->uplink_port) {
        uplink_kill(br->uplink_pid);
        port *p = netsw_port_get(sw, br->uplink_port);
        if (p) {
            macs_forget(br, p->id);
            port_free(sw, p);
        }
        br->uplink_port = 0;
        br->uplink_pid = 0;
    }
    pthread_mutex_unlock(&sw->lock);
    return rc;
}

bool netsw_uplink_enabled(netsw *sw, const char *bridge_name)
{
    pthread_mutex_lock(&sw->lock);
    bridge *br = bridge_find(sw, bridge_name);
    bool on = br && br->uplink_port;
    pthread_mutex_unlock(&sw->lock);
    return on;
}
