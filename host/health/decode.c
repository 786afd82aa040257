/* Stack-trace decoding; see decode.h. One gdb run per object file, with a
 * marker echoed between the answers so each answer finds its frame. */
#include "decode.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../util/util.h"

#define MAX_FRAMES 64

typedef struct {
    size_t line_start, line_len; /* the frame's line in the text */
    char sym[160];               /* "func+0x3c" */
    char mod[64];                /* "" for the kernel */
    char *where;                 /* "file.c:42", once decoded */
} frame;

/* "func+0x3c/0x90 [mod]" at p (after "? " or "RIP: 0010:"): fills f. */
static bool parse_frame(const char *p, const char *end, frame *f)
{
    const char *plus = memchr(p, '+', (size_t)(end - p));
    if (!plus || plus == p)
        return false;
    for (const char *c = p; c < plus; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '.'))
            return false;
    const char *slash = memchr(plus, '/', (size_t)(end - plus));
    if (!slash || strncmp(plus, "+0x", 3) != 0)
        return false;
    snprintf(f->sym, sizeof(f->sym), "%.*s", (int)(slash - p), p);
    f->mod[0] = 0;
    const char *br = memchr(slash, '[', (size_t)(end - slash));
    const char *close = br ? memchr(br, ']', (size_t)(end - br)) : NULL;
    if (br && close)
        snprintf(f->mod, sizeof(f->mod), "%.*s", (int)(close - br - 1), br + 1);
    return true;
}

static size_t find_frames(const char *text, frame *out)
{
    size_t n = 0;
    for (const char *l = text; *l && n < MAX_FRAMES;) {
        const char *eol = strchr(l, '\n');
        const char *end = eol ? eol : l + strlen(l);
        const char *p = l;
        while (p < end && *p == ' ')
            p++;
        if (end - p > 2 && p[0] == '?' && p[1] == ' ')
            p += 2;
        else if (end - p > 10 && strncmp(p, "RIP: ", 5) == 0 && memchr(p, ':', 10))
            p = (const char *)memchr(p + 5, ':', (size_t)(end - p - 5)) + 1;
        frame f = {0};
        if (parse_frame(p, end, &f)) {
            f.line_start = (size_t)(l - text);
            f.line_len = (size_t)(end - l);
            out[n++] = f;
        }
        l = eol ? eol + 1 : end;
    }
    return n;
}

static void shell_quote(strbuf *b, const char *s)
{
    sb_adds(b, "'");
    for (; *s; s++) {
        if (*s == '\'')
            sb_adds(b, "'\\''");
        else
            sb_add(b, s, 1);
    }
    sb_adds(b, "'");
}

/* Answers "info line" for every frame of frames[] whose module is mod ("" =
 * kernel) against object. */
static void decode_object(const char *object, const char *mod, frame *frames, size_t n, int timeout_ms)
{
    strbuf cmd;
    sb_init(&cmd);
    sb_addf(&cmd, "timeout -k 1 %d gdb -batch -nx -ex 'set width 0' -ex 'set pagination off'", timeout_ms / 1000 + 1);
    size_t asked = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(frames[i].mod, mod) != 0 || frames[i].where)
            continue;
        sb_addf(&cmd, " -ex 'echo @@%zu\\n' -ex 'info line *(%s)'", i, frames[i].sym);
        asked++;
    }
    if (!asked) {
        sb_free(&cmd);
        return;
    }
    sb_adds(&cmd, " ");
    shell_quote(&cmd, object);
    sb_adds(&cmd, " 2>/dev/null");
    FILE *p = popen(cmd.s, "r");
    sb_free(&cmd);
    if (!p)
        return;
    char line[1024];
    long cur = -1;
    while (fgets(line, sizeof(line), p)) {
        if (strncmp(line, "@@", 2) == 0) {
            cur = strtol(line + 2, NULL, 10);
            continue;
        }
        /* Line 20 of "/path/file.c" starts at address ... */
        int ln;
        char file[512];
        if (cur >= 0 && (size_t)cur < n && !frames[cur].where &&
            sscanf(line, "Line %d of \"%511[^\"]\"", &ln, file) == 2)
            frames[cur].where = xasprintf("%s:%d", file, ln);
    }
    pclose(p);
}

char *kreport_decode(const char *text, const char *vmlinux, const decode_module *mods, size_t nmods, int timeout_ms)
{
    frame *frames = xcalloc(MAX_FRAMES, sizeof(frame));
    size_t n = find_frames(text, frames);
    if (vmlinux && access(vmlinux, R_OK) == 0)
        decode_object(vmlinux, "", frames, n, timeout_ms);
    for (size_t m = 0; m < nmods; m++)
        decode_object(mods[m].path, mods[m].name, frames, n, timeout_ms);
    strbuf out;
    sb_init(&out);
    size_t pos = 0, decoded = 0;
    for (size_t i = 0; i < n; i++) {
        if (!frames[i].where)
            continue;
        size_t end = frames[i].line_start + frames[i].line_len;
        sb_add(&out, text + pos, end - pos);
        sb_addf(&out, " (%s)", frames[i].where);
        pos = end;
        decoded++;
        free(frames[i].where);
    }
    free(frames);
    if (!decoded) {
        sb_free(&out);
        return NULL;
    }
    sb_adds(&out, text + pos);
    return sb_take(&out);
}
