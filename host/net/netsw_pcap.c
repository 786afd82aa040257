/* Captures written by the switch thread itself, in the classic pcap format
 * every tool reads (magic a1b2c3d4 in host order, version 2.4,
 * LINKTYPE_ETHERNET, microsecond timestamps): no tcpdump, no privileges.
 * A bridge-wide capture sees each frame once, as it enters the bridge; a
 * port's capture sees what that guest sent and what was delivered to it. */
#include "netsw_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "../util/util.h"

struct pcap_file_header {
    uint32_t magic;
    uint16_t version_major, version_minor;
    int32_t thiszone;
    uint32_t sigfigs, snaplen, linktype;
};

struct pcap_record_header {
    uint32_t ts_sec, ts_usec, incl_len, orig_len;
};

int pcap_open(capture *c, char *err)
{
    c->f = fopen(c->path, "wbe");
    if (!c->f) {
        snprintf(err, PV_NETSW_ERR, "cannot create %s: %s", c->path, strerror(errno));
        return -1;
    }
    struct pcap_file_header h = {0xa1b2c3d4, 2, 4, 0, 0, NETSW_MAX_FRAME, 1};
    if (fwrite(&h, sizeof(h), 1, c->f) != 1 || fflush(c->f) != 0) {
        snprintf(err, PV_NETSW_ERR, "cannot write %s: %s", c->path, strerror(errno));
        fclose(c->f);
        c->f = NULL;
        return -1;
    }
    return 0;
}

void pcap_write(capture *c, const uint8_t *frame, size_t len)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct pcap_record_header r = {(uint32_t)ts.tv_sec, (uint32_t)(ts.tv_nsec / 1000), (uint32_t)len, (uint32_t)len};
    if (fwrite(&r, sizeof(r), 1, c->f) == 1 && fwrite(frame, 1, len, c->f) == len)
        c->packets++;
    c->dirty = true;
}

void pcap_close(capture *c)
{
    if (c->f)
        fclose(c->f);
    c->f = NULL;
}

void netsw_capture_frame(netsw *sw, bridge *br, netsw_port_id p, const uint8_t *frame, size_t len)
{
    for (capture *c = sw->captures; c; c = c->next)
        if (c->br == br && c->port == p && c->f)
            pcap_write(c, frame, len);
}

/* Once per batch of events, so a reader of the file sees every frame the
 * switch has handled so far without a flush per frame. */
void netsw_captures_flush(netsw *sw)
{
    for (capture *c = sw->captures; c; c = c->next)
        if (c->dirty && c->f) {
            fflush(c->f);
            c->dirty = false;
        }
}
