# Shared start of the shell test scripts that boot VMs (tests/cli/repl.sh,
# lsp.sh, guide_claims.sh), sourced with ROOT set to the repository root:
# cds there, loads the check harness (tests/lib/checks.sh), sets PROVIUM and
# LIMIT (PROVIUM_CLI_LIMIT, default 120 s, bounds any single provium run),
# bails out without a build or python3, and makes T, a short private scratch
# directory (provium ignores a TMPDIR over 40 bytes) that also holds the
# guest-initrd cache, removed with every QEMU of the script by the EXIT trap
# of tests/lib/cleanup.sh.
cd "$ROOT" || exit 2
# shellcheck source=checks.sh
. "$ROOT/tests/lib/checks.sh"
PROVIUM=$ROOT/build/provium
LIMIT=${PROVIUM_CLI_LIMIT:-120}
for f in "$PROVIUM" "$ROOT/build/image/vmlinux" "$ROOT/build/image/initrd.cpio"; do
    [ -e "$f" ] || { echo "Bail out! $f is missing; run 'make all image'" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "Bail out! python3 is needed" >&2; exit 2; }
# shellcheck source=cleanup.sh
. "$ROOT/tests/lib/cleanup.sh"
scratch_dir pvvm
export PROVIUM_CACHE_DIR=$T/cache
# pv_timed ARGS...: runs provium with ARGS (bounded by LIMIT, TMPDIR=T),
# setting OUT (stdout and stderr), RC and ELAPSED (ms).
pv_timed() {
    local t0
    t0=$(date +%s%N)
    OUT=$(TMPDIR=$T timeout -k 5 "$LIMIT" "$PROVIUM" "$@" 2>&1)
    RC=$?
    ELAPSED=$((($(date +%s%N) - t0) / 1000000))
}
