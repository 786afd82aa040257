/* --save-events: one JSON object per line, {"ts","kind","payload"}. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runner.h"

static FILE *events_file;

int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int events_open(const char *path)
{
    events_file = fopen(path, "w");
    if (!events_file) {
        fprintf(stderr, "provium: --save-events: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

bool events_enabled(void) { return events_file != NULL; }

void events_emit(const char *kind, json_t *payload, int64_t ts)
{
    if (!events_file) {
        json_decref(payload);
        return;
    }
    json_t *ev = json_object();
    json_object_set_new(ev, "ts", json_integer(ts ? ts : wall_ns()));
    json_object_set_new(ev, "kind", json_string(kind));
    json_object_set_new(ev, "payload", payload ? payload : json_object());
    char *s = json_dumps(ev, JSON_COMPACT);
    if (s) {
        fprintf(events_file, "%s\n", s);
        free(s);
    }
    fflush(events_file);
    json_decref(ev);
}

void events_close(void)
{
    if (events_file)
        fclose(events_file);
    events_file = NULL;
}
