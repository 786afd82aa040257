/* Minimal QMP client: newline-delimited JSON over a unix socket. */
#ifndef PROVIUM_QMP_H
#define PROVIUM_QMP_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../util/util.h"

typedef struct {
    int fd;
    strbuf in;
    /* The guest side of the agent's virtio-serial port, from QEMU's
     * VSERPORT_CHANGE events: -1 no event yet, 0 closed, 1 open. */
    int port_open;
    strbuf deleted; /* ids of DEVICE_DELETED events not yet taken, one a line */
} qmp_conn;

/* Connects (the socket must exist), reads the greeting and negotiates
 * capabilities. deadline_ms is absolute (now_ms() clock). */
int qmp_open(qmp_conn *q, int fd, int64_t deadline_ms, char *err, size_t errlen);
/* Runs a command; args is stolen (may be NULL). Returns the "return" value
 * (new reference) or NULL with err set. Events received meanwhile are skipped. */
json_t *qmp_command(qmp_conn *q, const char *cmd, json_t *args, int64_t deadline_ms, char *err, size_t errlen);
/* Reads whatever events QEMU has sent, without waiting, and notes the
 * port's state. -1 when the connection is gone. */
int qmp_drain_events(qmp_conn *q);
/* True (and forgets it) when QEMU has reported DEVICE_DELETED for id. */
bool qmp_take_deleted(qmp_conn *q, const char *id);
void qmp_close(qmp_conn *q);
#endif
