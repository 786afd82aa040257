#!/usr/bin/env bash
# Networking from the outside. A failing impaired test names each bridge's
# switch seed and how to replay it, and the replay drops the same frames.
# Ctrl-C in the middle of a network test leaves nothing behind: no QEMU
# (neither the VMs nor the switch's uplink helper), no switch socket, no
# capture file and no scratch directory. The switch is a thread of the test
# file's process, so "no switch process" is "no provium process".
#
# Run after `make all image-default`:   bash tests/cli/net_cleanup.sh
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
# shellcheck source=../lib/checks.sh
. "$ROOT/tests/lib/checks.sh"
PROVIUM=$ROOT/build/provium
CONF=$ROOT/tests/cli/configs/cli.toml
[ -x "$PROVIUM" ] && [ -e build/image/vmlinux ] || { echo "Bail out! make all image-default first" >&2; exit 2; }

T=$(mktemp -d /tmp/pvnet.XXXXXX) # short: provium ignores a TMPDIR over 40 bytes
BG=
cleanup() {
    local p
    [ -n "$BG" ] && kill -KILL "$BG" 2>/dev/null
    for p in $(pgrep -f -- "$T/"); do kill -KILL "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
export PROVIUM_CACHE_DIR=$T/cache NET_READY=$T/ready

# everything still running whose command line names a path under $T
leftovers() { pgrep -a -f -- "$T/" | grep -v pgrep; }

# SIGINT restored to its default (bash makes background jobs ignore it)
TMPDIR=$T python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execv(sys.argv[1], sys.argv[1:])' "$PROVIUM" --config "$CONF" tests/cli/fixtures/net/interrupt.test.lua \
    >"$T/out" 2>&1 &
BG=$!
for _ in $(seq 1200); do # 120 s for two boots under TCG
    [ -s "$NET_READY" ] && break
    kill -0 "$BG" 2>/dev/null || break
    sleep 0.1
done
CAPTURE=$(head -n1 "$NET_READY" 2>/dev/null)
SOCKETS=$(find "$T" -type s 2>/dev/null | wc -l)
HELPERS=$(leftovers | grep -c -- "-M none")

t0=$(date +%s%N)
kill -INT "$BG"
RC=999
for _ in $(seq 200); do # 10 s
    if ! kill -0 "$BG" 2>/dev/null; then wait "$BG"; RC=$?; break; fi
    sleep 0.05
done
sleep 1 # children tied to provium by PR_SET_PDEATHSIG are gone by now
ELAPSED=$((($(date +%s%N) - t0) / 1000000))
OUT=$(cat "$T/out")

begin "the interrupted test had a live network: switch sockets, an uplink helper and a capture file"
[ -n "$CAPTURE" ] || problem "the test never got ready"
[ "$SOCKETS" -ge 3 ] || problem "only $SOCKETS unix sockets under $T before the interrupt"
[ "$HELPERS" -ge 1 ] || problem "no uplink helper (qemu -M none) was running"
end_check

begin "SIGINT: provium exits 130 and leaves no process, socket, capture or scratch file"
expect_rc 130
left=$(leftovers)
[ -z "$left" ] || problem "still running: $left"
[ -z "$CAPTURE" ] || [ ! -e "$CAPTURE" ] || problem "capture file $CAPTURE left behind"
socks=$(find "$T" -type s 2>/dev/null)
[ -z "$socks" ] || problem "sockets left behind: $socks"
scratch=$(find "$T" -mindepth 1 -maxdepth 1 ! -name cache ! -name out ! -name ready 2>/dev/null)
[ -z "$scratch" ] || problem "left in \$TMPDIR: $scratch"
end_check

# ---------------------------------------------------------------- seeds
run_seed() { # [seed]: runs the seed_report fixture; OUT, RC
    OUT=$(NET_SEED=$1 TMPDIR=$T timeout 180 "$PROVIUM" --config "$CONF" tests/cli/fixtures/net/seed_report.test.lua 2>&1)
    RC=$?
}
unset NET_SEED
OUT=$(TMPDIR=$T timeout 180 "$PROVIUM" --config "$CONF" tests/cli/fixtures/net/seed_report.test.lua 2>&1)
RC=$?
begin "a failing test reports a random switch seed and how to replay it"
expect_rc 1
expect_re "bridge 'lan': switch seed [0-9]+ \\(random\\); replay with provium:bridge\\(\"lan\", \\{seed = [0-9]+\\}\\)"
end_check
SEED=$(sed -n 's/.*switch seed \([0-9]*\) (random).*/\1/p' <<<"$OUT" | head -n1)
FIRST=$(grep -o 'answered: [0-9,]*' <<<"$OUT")

run_seed "$SEED"
begin "the replay with that seed drops the same frames"
expect_rc 1
expect_out "switch seed $SEED (the bridge's seed option)"
[ -n "$FIRST" ] && [ "$(grep -o 'answered: [0-9,]*' <<<"$OUT")" = "$FIRST" ] ||
    problem "answered differs: first run '$FIRST'"
end_check

check_summary
