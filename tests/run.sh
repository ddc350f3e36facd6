#!/bin/sh
# tests/run.sh - run every test binary and shell test, count PASS/FAIL/SKIP lines.
# Called by `make check` with STEMSPLIT (the binary) and SS_TEST_BIN (test binaries).
# A test program that exits non-zero without printing a FAIL line counts as one failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
: "${STEMSPLIT:?}" "${SS_TEST_BIN:?}"
export STEMSPLIT SS_TESTS_DIR="$here" SS_ROOT="$(dirname "$here")"
log=$(mktemp "${TMPDIR:-/tmp}/stemsplit-check.XXXXXX") || exit 70
trap 'rm -f "$log"' EXIT INT TERM
pass=0 fail=0 skip=0
run_one() {
    name=$1; shift
    out=$("$@" 2>"$log.err"); rc=$?
    printf '%s\n' "$out" | grep -E '^(PASS|FAIL|SKIP) ' | sed "s|^|  [$name] |"
    p=$(printf '%s\n' "$out" | grep -c '^PASS ')
    f=$(printf '%s\n' "$out" | grep -c '^FAIL ')
    s=$(printf '%s\n' "$out" | grep -c '^SKIP ')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "  [$name] FAIL exited with status $rc without reporting a failure"
        sed 's/^/      /' "$log.err" | tail -n 20
        f=1
    elif [ "$f" -ne 0 ]; then
        sed 's/^/      /' "$log.err" | tail -n 20
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    rm -f "$log.err"
}
for t in "$SS_TEST_BIN"/test_*; do
    [ -x "$t" ] || continue
    case $t in *.d|*.o) continue ;; esac
    run_one "$(basename "$t")" "$t"
done
for t in "$here"/t_*.sh; do
    [ -f "$t" ] || continue
    run_one "$(basename "$t" .sh)" sh "$t"
done
if [ "$skip" -gt 0 ]; then
    echo "$pass passed, $fail failed, $skip skipped"
else
    echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ]
