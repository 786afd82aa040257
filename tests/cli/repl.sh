#!/usr/bin/env bash
# `provium repl` with a real booted VM, driven through a pseudo-terminal as a
# user would (tests/cli/repl_pty.py): `help`, multi-line chunks, Ctrl-C during
# vm:run("sleep 30") and during a Lua loop (the call stops, QEMU survives, the
# VM answers the next command), Ctrl-C at the prompt drops the line, input typed
# during a call is kept, Ctrl-D ends the REPL with status 0 and no QEMU left.
# Then scripted input from a pipe: a SIGINT to the REPL's pid interrupts the
# running line only, and the exit status says a line failed.
#
# Run after `make all image`: tests/cli/repl.sh (every REPL run is bounded by
# timeout(1); PROVIUM_CLI_LIMIT, default 120 s, bounds the boot).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=../lib/vm_scripts.sh
. "$ROOT/tests/lib/vm_scripts.sh"
CONF=$ROOT/tests/cli/configs/cli.toml
REPL_PID=
# the EXIT trap of tests/lib/cleanup.sh (vm_scripts.sh) also ends the REPL
cleanup_hook() { [ -n "$REPL_PID" ] && kill -KILL "$REPL_PID" 2>/dev/null; }

# step NAME: sets OUT to what the REPL printed during that step of the driver
step() {
    OUT=$(awk -v s="$1" '$0 == "### step " s {on = 1} on {print} $0 == "### end " s {on = 0}' <<<"$TRANSCRIPT")
}
# expect_text TEXT: OUT contains TEXT, newlines included (grep -F would take
# each line of TEXT as a pattern of its own)
expect_text() { [[ $OUT == *"$1"* ]] || problem "output lacks: $1"; }
# expect_found: the step saw what it waited for (within its own deadline)
expect_found() { grep -q '^### found yes' <<<"$OUT" || problem "the step did not see its expected output in time"; }
# expect_within S: the step's wait took less than S seconds
expect_within() {
    local s
    s=$(sed -n 's/^### found [a-z]*  \([0-9.]*\)$/\1/p' <<<"$OUT")
    python3 -c "import sys; sys.exit(0 if float('${s:-999}') < $1 else 1)" || problem "the step took ${s:-?} s, expected under $1 s"
}

# ---------------------------------------------------------------- on a terminal
section_terminal() {
mkdir -p "$T/pty"
t0=$(date +%s%N)
TRANSCRIPT=$(timeout -k 5 $((LIMIT + 180)) python3 "$ROOT/tests/cli/repl_pty.py" "$T/pty" \
    "$PROVIUM" repl -c "$CONF" default 2>&1)
RC=$?
ELAPSED=$((($(date +%s%N) - t0) / 1000000))

begin "the pty driver ran"
expect_rc 0
OUT=$TRANSCRIPT
expect_out "### step exit"
end_check

step boot
begin "repl boots the VM and shows a prompt with a hint about help"
expect_found
expect_out '`help` lists what there is'
end_check

step help
begin "help prints the objects and how to get help on them (not nil)"
expect_found
expect_out "vm        the booted VM"
expect_out "provium   the API"
expect_out "help(obj) lists the methods of obj"
! grep -qx nil <<<"$OUT" || problem "help printed nil"
end_check

step help-vm
begin "help(vm) lists the VM's methods"
expect_found
expect_re 'VM\(repl, default, booted\): .*run, run_async, '
end_check

step multiline
begin "an unfinished chunk (for ... do) continues on the next line with a >> prompt"
expect_found
expect_text $'provium>> end\nn7\nn14\nn21'
expect_no_out "error:"
end_check

step interrupt-run
begin "Ctrl-C during vm:run(\"sleep 30\") interrupts the call and gives the prompt back"
expect_found
expect_within 5
expect_out "interrupted: the call was abandoned"
expect_no_out "test timeout"
end_check

step qemu-survives
begin "QEMU is the same live process after the Ctrl-C"
expect_found
end_check

step alive
begin "after the Ctrl-C the VM still runs commands"
expect_found
expect_text $'alive\n42'
end_check

step state
begin "after the Ctrl-C the VM is still booted"
expect_found
end_check

step interrupt-lua
begin "Ctrl-C stops a Lua loop (while true do end)"
expect_found
expect_within 5
end_check

step cancel-line
begin "Ctrl-C at the prompt drops the line being typed, the next one runs"
expect_found
expect_no_out "droppedline"
end_check

step cancel-chunk
begin "Ctrl-C in a continued chunk drops the chunk"
expect_found
end_check

step typeahead
begin "a line typed while a call runs is kept and runs next"
expect_found
end_check

step exit
begin "Ctrl-D ends the REPL with status 0 and its QEMU exits"
expect_found
n=0
while [ -n "$(live_qemu "$T/pty")" ] && [ $n -lt 40 ]; do sleep 0.05; n=$((n + 1)); done
[ -z "$(live_qemu "$T/pty")" ] || problem "QEMU still running after the REPL ended: $(live_qemu "$T/pty")"
end_check
}

# ---------------------------------------------------------------- scripted
section_scripted() {
# The lines come from a pipe; a SIGINT sent to the REPL's pid (not its
# process group) while line 2 sleeps must end that line only.
mkdir -p "$T/pipe"
FIFO=$T/in.fifo
mkfifo "$FIFO"
(cd "$ROOT" && TMPDIR=$T/pipe exec timeout -k 5 $((LIMIT + 60)) "$PROVIUM" repl -c "$CONF" default \
    <"$FIFO" >"$T/pipe.out" 2>&1) &
REPL_PID=$!
exec 7>"$FIFO"
printf '%s\n' 'print("sleep" .. "ing")' 'vm:run("sleep 30")' 'print(vm:run("echo alive").stdout)' >&7
deadline=$(($(date +%s) + LIMIT))
until grep -q '^sleeping' "$T/pipe.out" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; do sleep 0.1; done
sleep 1
t0=$(date +%s%N)
pkill -INT -P "$REPL_PID" -x provium
deadline=$(($(date +%s) + 20))
until grep -q '^alive' "$T/pipe.out" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; do sleep 0.1; done
ELAPSED=$((($(date +%s%N) - t0) / 1000000))
exec 7>&-
wait "$REPL_PID"
RC=$?
REPL_PID=
OUT=$(cat "$T/pipe.out")
begin "piped input: SIGINT to the REPL interrupts the running line only; the exit status is 1"
expect_rc 1
expect_out "interrupted: the call was abandoned"
expect_text $'\nalive'
[ "$ELAPSED" -lt 15000 ] || problem "the next line ran ${ELAPSED} ms after the SIGINT, expected well under the 30 s sleep"
end_check

begin "piped input: a chunk left unfinished at the end of the input is an error"
OUT=$(printf 'for i=1,2 do\n' | TMPDIR=$T/pipe timeout -k 5 "$LIMIT" "$PROVIUM" repl -c "$CONF" default 2>&1)
RC=$?
expect_rc 1
expect_out "the input ended inside an unfinished chunk"
end_check
}

run_sections terminal scripted
check_summary
