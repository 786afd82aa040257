#!/usr/bin/env python3
"""Drives `provium repl PROFILE` through a pseudo-terminal, as a user would.

usage: repl_pty.py TMPDIR PROVIUM [ARGS...]

Runs PROVIUM ARGS on a new pty (with TMPDIR in its environment, so its QEMU
command line contains TMPDIR), then plays the steps below: each sends keys
and waits, with a deadline, for a regular expression in the output. For each
step it prints a block that tests/cli/repl.sh checks:

    ### step NAME
    ### found yes|no  SECONDS
    <what the REPL printed during the step>
    ### end NAME

It never waits without a deadline and kills the REPL at the end if it is
still there. Exit status 0 when the driver itself ran (the checks are the
shell script's business)."""
import os
import pty
import re
import select
import signal
import sys
import time

tmpdir, argv = sys.argv[1], sys.argv[2:]
env = dict(os.environ, TMPDIR=tmpdir, TERM="dumb")
pid, fd = pty.fork()
if pid == 0:
    os.execvpe(argv[0], argv, env)

buf = b""  # output not yet consumed by a step


def read_some(until):
    """Reads what the REPL printed until the monotonic time `until`."""
    global buf
    left = until - time.monotonic()
    if left <= 0:
        return False
    r, _, _ = select.select([fd], [], [], left)
    if not r:
        return False
    try:
        data = os.read(fd, 4096)
    except OSError:  # EIO: the REPL closed the terminal
        return None
    if not data:
        return None
    buf += data
    return True


def step(name, keys, pattern, timeout, pause=0.0):
    """Sends keys (a list of byte strings, `pause` seconds apart) and waits
    up to `timeout` seconds after the last one for `pattern`."""
    global buf
    for i, k in enumerate(keys):
        if i and pause:
            end = time.monotonic() + pause
            while read_some(end):
                pass
        os.write(fd, k)
    start = time.monotonic()
    deadline = start + timeout
    rx = re.compile(pattern, re.S)
    found = None
    while True:
        found = rx.search(buf.decode("utf-8", "replace"))
        if found:
            break
        if read_some(deadline) is None or time.monotonic() >= deadline:
            break  # the REPL closed the terminal, or the deadline passed
    text = buf.decode("utf-8", "replace")
    cut = found.end() if found else len(text)
    shown, rest = text[:cut], text[cut:]
    buf = rest.encode()
    print("### step %s" % name)
    print("### found %s  %.1f" % ("yes" if found else "no", time.monotonic() - start))
    print(shown.replace("\r", ""))
    print("### end %s" % name)
    sys.stdout.flush()
    return bool(found)


def qemu_pids():
    pids = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open("/proc/%s/stat" % p) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cmd.startswith("qemu-system") and tmpdir in cmd and state != "Z":
            pids.append(int(p))
    return sorted(pids)


def report(name, ok, text):
    print("### step %s" % name)
    print("### found %s  0.0" % ("yes" if ok else "no"))
    print(text)
    print("### end %s" % name)
    sys.stdout.flush()


PROMPT = r"provium> $"
limit = float(os.environ.get("PROVIUM_CLI_LIMIT", "120"))
try:
    if step("boot", [], r"Ctrl-D quits.*" + PROMPT, limit):
        before = qemu_pids()
        step("help", [b"help\r"], r"help\(vm\).*" + PROMPT, 10)
        step("help-vm", [b"help(vm)\r"], r"run_async.*" + PROMPT, 10)
        step("multiline", [b"for i=1,3 do\r", b"print('n' .. i*7)\r", b"end\r"],
             r"provium>> .*provium>> .*n7\s+n14\s+n21\s+" + PROMPT, 20, pause=0.5)
        step("interrupt-run", [b'vm:run("sleep 30")\r', b"\x03"],
             r"interrupted.*" + PROMPT, 10, pause=2.0)
        after = qemu_pids()
        report("qemu-survives", before != [] and before == after,
               "QEMU before Ctrl-C: %s, after: %s" % (before, after))
        step("alive", [b'print(vm:run("echo alive; echo $((6*7))").stdout)\r'],
             r"alive\s+42\s.*" + PROMPT, 30)
        step("state", [b"vm:state()\r"], r"booted\s+" + PROMPT, 10)
        step("interrupt-lua", [b"while true do end\r", b"\x03"], r"interrupted.*" + PROMPT, 10, pause=1.0)
        step("cancel-line", [b"print('dropped' .. 'line'", b"\x03", b"print('kept' .. 'line')\r"],
             r"\^C.*keptline\s+" + PROMPT, 10, pause=0.5)
        step("cancel-chunk", [b"for i=1,2 do\r", b"\x03", b"print(6*7)\r"],
             r"provium>> \^C\s+provium> print\(6\*7\)\s+42\s+" + PROMPT, 10, pause=0.5)
        step("typeahead", [b'vm:run("sleep 2")\r', b"print('typed' .. 'ahead')\r"],
             r"typedahead\s+" + PROMPT, 20, pause=0.5)
        step("quit", [b"\x04"], r"(?!)", 30)  # reads until the REPL closes the terminal
    # the exit status; a REPL still there after Ctrl-D is killed
    end = time.monotonic() + 30
    status = None
    while time.monotonic() < end:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(st)
            break
        read_some(time.monotonic() + 0.2)
    report("exit", status == 0, "exit status %s" % status)
finally:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
