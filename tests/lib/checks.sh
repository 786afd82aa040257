# The check harness shared by the shell test scripts (tests/cli, tests/runner).
# A check is: begin "description"; any number of expect_*; end_check.
# Each expect_* reads RC (exit status) and OUT (output) set by the script's
# runner function; a failed expectation records a problem, and end_check
# prints "ok - ..." or "not ok - ..." with the problems and the output.
# check_summary prints the totals and returns non-zero if any check failed.
#
# Sections: a script puts each group of checks in a function section_NAME
# and ends with `run_sections NAME...`, which runs them in that order. The
# script's arguments (or ONLY="NAME..." in the environment) pick sections:
#     tests/cli/run.sh                 every section
#     tests/cli/run.sh timeout json    only those two
#     ONLY=timeout tests/cli/run.sh    the same through the environment
#     tests/cli/run.sh -l              the section names, one a line
# Code outside the sections (set-up, a final summary check) always runs. A
# script without sections runs whole and says that it ignored the names.
# Section bodies are not indented, so their heredocs and multi-line strings
# stay exactly as they were written.

# What the command line selected: sourced without arguments, this file sees
# the script's own "$@".
# shellcheck disable=SC2206 # ONLY is a list of words
CHECKS_SELECTED=(${ONLY:-} "$@")

NPASS=0
NFAIL=0
FAILED=()
CHECKS_START=$(date +%s.%N)

begin() {
    DESC=$1
    ERRS=()
}
problem() { ERRS+=("$1"); }
expect_rc() { [ "$RC" = "$1" ] || problem "exit status $RC, expected $1"; }
# expect_out TEXT: OUT contains TEXT (fixed string)
expect_out() { grep -qF -- "$1" <<<"$OUT" || problem "output lacks: $1"; }
# expect_re REGEX: OUT matches the extended regex
expect_re() { grep -qE -- "$1" <<<"$OUT" || problem "output does not match: $1"; }
expect_no_out() { ! grep -qF -- "$1" <<<"$OUT" || problem "output unexpectedly contains: $1"; }
# py_check ARGS... <<'PY' ... PY: runs the Python check on stdin with ARGS;
# RC is its exit status and OUT what it printed (its problems)
py_check() { OUT=$(python3 - "$@" 2>&1); RC=$?; }
end_check() {
    if [ ${#ERRS[@]} -eq 0 ]; then
        echo "ok - $DESC"
        NPASS=$((NPASS + 1))
    else
        echo "not ok - $DESC"
        NFAIL=$((NFAIL + 1))
        FAILED+=("$DESC")
        local e
        for e in "${ERRS[@]}"; do printf '%s\n' "$e" | sed 's/^/#   /'; done
        echo "#   observed (exit $RC, ${ELAPSED:-?} ms):"
        printf '%s\n' "$OUT" | head -n 60 | sed 's/^/#   | /'
    fi
}
check_summary() {
    local end
    end=$(date +%s.%N)
    if [ ${#CHECKS_SELECTED[@]} -gt 0 ] && [ -z "${CHECKS_IN_SECTIONS:-}" ]; then
        echo "# note: this script has no sections; every check ran (ignored: ${CHECKS_SELECTED[*]})"
    fi
    echo
    printf '# %d checks: %d passed, %d failed; %.1fs\n' $((NPASS + NFAIL)) "$NPASS" "$NFAIL" \
        "$(python3 -c "print($end - $CHECKS_START)")"
    local f
    for f in "${FAILED[@]}"; do echo "# FAILED: $f"; done
    [ "$NFAIL" -eq 0 ]
}
# run_sections NAME...: runs section_NAME for each NAME the command line
# selected (all when it selected none); -l lists the names instead. An
# unknown name is a bail-out, so a typo never passes as "0 checks failed".
run_sections() {
    local name known
    for name in "${CHECKS_SELECTED[@]}"; do
        if [ "$name" = -l ]; then
            printf '%s\n' "$@"
            exit 0
        fi
        for known in "$@"; do [ "$name" = "$known" ] && continue 2; done
        echo "Bail out! no section named '$name' (sections: $*)" >&2
        exit 2
    done
    CHECKS_IN_SECTIONS=1
    for name in "$@"; do
        if [ ${#CHECKS_SELECTED[@]} -eq 0 ] || [[ " ${CHECKS_SELECTED[*]} " == *" $name "* ]]; then
            "section_$name"
        fi
    done
}
