# tests/lib.sh - sourced by tests/t_*.sh.  Gives a scratch directory $T
# (removed at exit) and helpers that print the PASS/FAIL/SKIP lines that
# tests/run.sh counts.  $STEMSPLIT is the binary under test, $SS_ROOT the repo.
set -u
T=$(mktemp -d "${TMPDIR:-/tmp}/ss-test.XXXXXX") || exit 70
trap 'rm -rf "$T"' EXIT INT TERM
: "${SS_ROOT:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${STEMSPLIT:=$SS_ROOT/stemsplit}"
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
skip() { echo "SKIP $1: $2"; }
# check NAME CONDITION-COMMAND... : PASS if the command succeeds
check() { n=$1; shift; if "$@"; then pass "$n"; else fail "$n" "failed: $*"; fi; }
# expect_exit NAME CODE CMD... : run CMD (stdout/stderr to $T/out.NAME), PASS if it exits CODE
expect_exit() {
    n=$1; want=$2; shift 2
    "$@" >"$T/out.$n" 2>&1; got=$?
    if [ "$got" -eq "$want" ]; then pass "$n"; else fail "$n" "exit $got, want $want: $(tail -n 3 "$T/out.$n" | tr '\n' ' ')"; fi
}
