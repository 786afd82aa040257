# The scratch directory and the clean-up shared by the shell test scripts
# (tests/cli, tests/runner). Sourced; ROOT need not be set.
#
# scratch_dir PREFIX makes T, a short private directory /tmp/PREFIX.XXXXXX
# (provium ignores a TMPDIR longer than 40 bytes), and the EXIT trap that
# cleans up after the script, whatever ends it: it kills the background
# provium runs listed in BG_PIDS, runs the script's cleanup_hook if it
# defines one, kills every QEMU whose command line names T (each provium run
# of these scripts gets a TMPDIR under T, so its QEMU sockets carry T), and
# removes T. SIGINT and SIGTERM end the script with 130 through that trap.

BG_PIDS=()

# live_qemu TEXT: PIDs of live (not zombie) QEMU processes whose command line
# contains TEXT.
live_qemu() {
    local p cmd st
    # comm is truncated to 15 characters: "qemu-system-x86"
    for p in $(pgrep '^qemu-system'); do
        cmd=$({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
        case $cmd in
        *"$1"*) ;;
        *) continue ;;
        esac
        st=$({ sed -n 's/^.*) \(.\).*/\1/p' "/proc/$p/stat"; } 2>/dev/null)
        [ -n "$st" ] && [ "$st" != Z ] && echo "$p"
    done
}

# qemu_gone_within TEXT S: waits up to S seconds for every QEMU matching TEXT
# to die; true if none is left.
qemu_gone_within() {
    local deadline=$(($(date +%s%N) + $2 * 1000000000))
    while [ -n "$(live_qemu "$1")" ]; do
        [ "$(date +%s%N)" -gt "$deadline" ] && return 1
        sleep 0.05
    done
    return 0
}

scratch_cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    if declare -F cleanup_hook >/dev/null; then cleanup_hook; fi
    if [ -n "${T:-}" ]; then
        for p in $(live_qemu "$T"); do
            echo "# killing leftover QEMU $p" >&2
            kill -KILL "$p" 2>/dev/null
        done
        rm -rf "$T"
    fi
}

scratch_dir() {
    T=$(mktemp -d "/tmp/$1.XXXXXX") || { echo "Bail out! mktemp failed" >&2; exit 2; }
    trap scratch_cleanup EXIT
    trap 'exit 130' INT TERM
}
