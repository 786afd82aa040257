/* The serial console of a VM: its log (the last lines quoted in errors,
 * the watch for a kernel oops while a request waits) and its input socket
 * (vm:console_write). QEMU writes the log; nothing here blocks on it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../health/kreport.h"
#include "../util/util.h"
#include "rootfs.h"
#include "vm_internal.h"

char *vm_console_tail(const pv_vm *vm, int lines)
{
    size_t len = 0;
    char *text = read_whole_file(vm->console_path, &len);
    char *out = xstrdup(text ? tail_lines(text, len, lines) : "");
    free(text);
    return out;
}

/* Builds "... last console lines:\n  | ..." for boot failures. A kernel
 * panic line is always quoted, even when a long trace follows it. */
void vm_console_explain(const pv_vm *vm, char *err, size_t errlen)
{
    char *tail = vm_console_tail(vm, 15);
    strbuf b;
    sb_init(&b);
    sb_adds(&b, err);
    size_t len = 0;
    char *all = read_whole_file(vm->console_path, &len);
    const char *panic = all ? strstr(all, "Kernel panic") : NULL;
    if (panic && !strstr(tail, "Kernel panic")) {
        const char *eol = strchr(panic, '\n');
        sb_addf(&b, "\n  guest kernel: %.*s", (int)(eol ? eol - panic : (long)strlen(panic)), panic);
    }
    free(all);
    rootfs_quote_wrapper_error(vm->console_path, &b);
    if (!*tail)
        sb_adds(&b, "\n  (the console is empty: the kernel printed nothing)");
    else {
        sb_adds(&b, "\n  last console lines:");
        for (char *line = strtok(tail, "\n"); line; line = strtok(NULL, "\n"))
            sb_addf(&b, "\n  | %s", line);
    }
    snprintf(err, errlen, "%s", b.s);
    sb_free(&b);
    free(tail);
}

/* Looks at console bytes written since the last look for a line that opens
 * an oops-class report, and remembers the first one. */
void vm_console_watch(pv_vm *vm)
{
    struct stat st;
    if (vm->oops_seen_ms || !vm->console_path || stat(vm->console_path, &st) != 0 ||
        st.st_size <= vm->console_scanned)
        return;
    int fd = open(vm->console_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    /* from the start of the last, maybe incomplete, line */
    int64_t from = vm->console_scanned;
    size_t n = (size_t)(st.st_size - from);
    char *buf = xmalloc(n + 1);
    ssize_t got = pread(fd, buf, n, from);
    close(fd);
    if (got <= 0) {
        free(buf);
        return;
    }
    buf[got] = 0;
    const char *line = buf, *last_eol = NULL;
    for (const char *eol; (eol = memchr(line, '\n', (size_t)(buf + got - line))); line = eol + 1) {
        last_eol = eol;
        size_t len = (size_t)(eol - line);
        if (len && line[len - 1] == '\r')
            len--;
        if (kreport_is_oops_line(line, len)) {
            snprintf(vm->oops_line, sizeof(vm->oops_line), "%.*s", (int)len, line);
            vm->oops_seen_ms = now_ms();
            break;
        }
    }
    if (last_eol)
        vm->console_scanned = from + (last_eol - buf) + 1;
    free(buf);
}

int vm_console_write(pv_vm *vm, const void *data, size_t len, int64_t timeout_ms, char *err, size_t errlen)
{
    char *path = xasprintf("%s/console.sock", vm->dir);
    int fd = connect_unix(path);
    free(path);
    if (fd < 0) {
        snprintf(err, errlen, "VM '%s': cannot connect to the serial console: %s", vm->name, strerror(errno));
        return -1;
    }
    int64_t deadline = vm_cap_deadline(vm, timeout_ms > 0 ? now_ms() + timeout_ms : -1);
    int rc = 0;
    size_t total = len;
    const char *p = data;
    while (len) {
        struct pollfd wp = {fd, POLLOUT, 0};
        int wait = deadline < 0 ? -1 : (int)(deadline - now_ms());
        if (deadline >= 0 && wait <= 0) {
            snprintf(err, errlen, "VM '%s': console write: timed out after %lld ms with %zu of %zu bytes written",
                     vm->name, (long long)(timeout_ms > 0 ? timeout_ms : 0), total - len, total);
            rc = -1;
            break;
        }
        if (poll(&wp, 1, wait) <= 0)
            continue;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            snprintf(err, errlen, "VM '%s': console write: %s", vm->name, strerror(errno));
            rc = -1;
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    /* give QEMU a moment to take the bytes before the connection closes;
     * output echoed to us meanwhile is already in the log file */
    char sink[4096];
    struct pollfd pf = {fd, POLLIN, 0};
    for (int i = 0; i < 5 && poll(&pf, 1, 10) > 0 && read(fd, sink, sizeof(sink)) > 0; i++) {
    }
    close(fd);
    return rc;
}
