/*
 * Writes the seed corpora of the protocol fuzz targets:
 *   tests/fuzz/corpus/fuzz_agent_request/  (byte 0: delivery chunk size, then request frames)
 *   tests/fuzz/corpus/fuzz_host_reply/     (byte 0: awaited request, bytes 1..4: request id, then agent frames)
 * Run from the repository root: `make fuzz-seeds` (tests/fuzz/fuzz.mk).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../common/proto.h"

static pv_buf b;

static void save(const char *dir, const char *name, const uint8_t *prefix, size_t plen)
{
    char path[512];
    snprintf(path, sizeof(path), "tests/fuzz/corpus/%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(prefix, 1, plen, f) != plen || (b.len && fwrite(b.buf, 1, b.len, f) != b.len) || fclose(f)) {
        fprintf(stderr, "gen_seeds: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    pv_buf_reset(&b);
}

static void end(void)
{
    if (pv_frame_end(&b) != 0) {
        fprintf(stderr, "gen_seeds: frame too large\n");
        exit(1);
    }
}

static void agent_seeds(void)
{
    const char *d = "fuzz_agent_request";
    uint8_t whole = 0, small = 1, mid = 5;

    pv_frame_begin(&b, PV_MSG_PING, 0, 1);
    pv_put_str(&b, PV_T_ECHO, "hello");
    end();
    save(d, "ping", &whole, 1);

    pv_frame_begin(&b, PV_MSG_EXEC, 0, 2);
    pv_put_str(&b, PV_T_SHELL, "echo out; echo err >&2; exit 3");
    pv_put_str(&b, PV_T_ENV, "FOO=bar");
    pv_put_str(&b, PV_T_ENV, "NOEQUALS");
    pv_put_u64(&b, PV_T_ENV_CLEAR, 0);
    pv_put_str(&b, PV_T_CWD, "/tmp");
    pv_put_bytes(&b, PV_T_STDIN, "in\0put", 6);
    pv_put_u64(&b, PV_T_TIMEOUT_MS, 300);
    end();
    save(d, "exec_shell", &whole, 1);

    pv_frame_begin(&b, PV_MSG_EXEC, 7, 3);
    pv_put_str(&b, PV_T_ARGV, "printf");
    pv_put_str(&b, PV_T_ARGV, "%s|%s");
    pv_put_str(&b, PV_T_ARGV, "a b");
    pv_put_bytes(&b, PV_T_ARGV, "", 0);
    pv_put_u64(&b, PV_T_ENV_CLEAR, 1);
    end();
    save(d, "exec_argv_split", &small, 1);

    pv_frame_begin(&b, PV_MSG_READ_FILE, 0, 4);
    pv_put_str(&b, PV_T_PATH, "/etc/hostname");
    end();
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, 5);
    pv_put_str(&b, PV_T_PATH, "/tmp/x");
    pv_put_bytes(&b, PV_T_DATA, "\x00\x01\x02\xff", 4);
    pv_put_u64(&b, PV_T_MODE, 0600);
    end();
    pv_frame_begin(&b, PV_MSG_SHUTDOWN, 0, 6);
    pv_put_u64(&b, PV_T_POWEROFF, 0);
    end();
    save(d, "files_and_shutdown", &mid, 1);

    /* a whole frame inside a bytes field, as batched operations carry them */
    pv_buf inner;
    pv_buf_init(&inner);
    pv_frame_begin(&inner, PV_MSG_READ_FILE, 0, 9);
    pv_put_str(&inner, PV_T_PATH, "/proc/version");
    pv_frame_end(&inner);
    pv_frame_begin(&b, PV_MSG_PING, 0, 8);
    pv_put_bytes(&b, PV_T_ECHO, inner.buf, inner.len);
    end();
    pv_buf_free(&inner);
    save(d, "nested_frame", &whole, 1);

    /* errors: unknown type, reply type as request, bad width, missing field */
    pv_frame_begin(&b, 999, 0, 10);
    pv_put_str(&b, PV_T_PATH, "x");
    end();
    pv_frame_begin(&b, PV_MSG_PONG, 0, 11);
    end();
    pv_frame_begin(&b, PV_MSG_EXEC, 0, 12);
    pv_put_str(&b, PV_T_SHELL, "true");
    pv_put_bytes(&b, PV_T_TIMEOUT_MS, "\x01\x02\x03\x04", 4);
    end();
    pv_frame_begin(&b, PV_MSG_WRITE_FILE, 0, 13);
    pv_put_str(&b, PV_T_PATH, "/tmp/y");
    end();
    save(d, "errors", &whole, 1);

    /* an oversized header followed by a valid frame */
    uint8_t hdr[PV_HDR_SIZE];
    pv_hdr h = {PV_MAX_PAYLOAD + 1, 0, 14, PV_MSG_PING, 0};
    pv_hdr_encode(&h, hdr);
    uint8_t pre[1 + PV_HDR_SIZE] = {whole};
    memcpy(pre + 1, hdr, PV_HDR_SIZE);
    pv_frame_begin(&b, PV_MSG_PING, 0, 15);
    end();
    save(d, "oversized_header", pre, sizeof(pre));
}

static void host_seeds(void)
{
    const char *d = "fuzz_host_reply";
    /* byte 0: index into {PING, EXEC, READ_FILE, WRITE_FILE, SHUTDOWN}, 0x80 = READY first */
    uint8_t exec_hs[5] = {0x81, 7, 0, 0, 0};
    pv_frame_begin(&b, PV_MSG_READY, 0, 0);
    pv_put_u64(&b, PV_T_PROTO_VERSION, PV_PROTO_VERSION);
    pv_put_str(&b, PV_T_AGENT_VERSION, "0.1.0");
    pv_put_u64(&b, PV_T_PID, 1);
    end();
    pv_frame_begin(&b, PV_MSG_PONG, 3, 0); /* pushed on a channel */
    end();
    pv_frame_begin(&b, PV_MSG_EXEC_RESULT, 0, 6); /* late reply to an older request */
    pv_put_u64(&b, PV_T_STATUS, PV_EXEC_TIMED_OUT);
    pv_put_i64(&b, PV_T_EXIT_CODE, -2);
    end();
    pv_frame_begin(&b, PV_MSG_EXEC_RESULT, 0, 7);
    pv_put_u64(&b, PV_T_STATUS, PV_EXEC_SIGNALLED);
    pv_put_i64(&b, PV_T_EXIT_CODE, -1);
    pv_put_u64(&b, PV_T_SIGNAL, 15);
    pv_put_bytes(&b, PV_T_STDOUT, "out\n", 4);
    pv_put_bytes(&b, PV_T_STDERR, "", 0);
    end();
    save(d, "ready_then_exec", exec_hs, sizeof(exec_hs));

    uint8_t rf[5] = {2, 9, 0, 0, 0};
    pv_frame_begin(&b, PV_MSG_FILE_DATA, 0, 9);
    pv_put_bytes(&b, PV_T_DATA, "\x7f" "ELF\0\0", 6);
    end();
    save(d, "read_file_data", rf, sizeof(rf));

    uint8_t wf[5] = {3, 1, 1, 0, 0};
    pv_frame_begin(&b, PV_MSG_ERROR, 0, 257);
    pv_put_i64(&b, PV_T_ERRNO, 2);
    pv_put_str(&b, PV_T_MESSAGE, "write_file /x/y: No such file or directory");
    end();
    save(d, "error_reply", wf, sizeof(wf));

    uint8_t ping[5] = {0, 0xff, 0xff, 0xff, 0xff};
    pv_frame_begin(&b, PV_MSG_PONG, 0, 0xffffffffu);
    pv_put_bytes(&b, PV_T_ECHO, "\x00\x01", 2);
    end();
    save(d, "pong", ping, sizeof(ping));

    uint8_t sd[5] = {4, 2, 0, 0, 0};
    pv_frame_begin(&b, PV_MSG_OK, 0, 2);
    pv_put_str(&b, PV_T_MESSAGE, "bye");
    end();
    save(d, "ok", sd, sizeof(sd));
}

int main(void)
{
    pv_buf_init(&b);
    mkdir("tests/fuzz/corpus", 0755);
    mkdir("tests/fuzz/corpus/fuzz_agent_request", 0755);
    mkdir("tests/fuzz/corpus/fuzz_host_reply", 0755);
    agent_seeds();
    host_seeds();
    pv_buf_free(&b);
    return 0;
}
