# harness.sh — sourced by the training tests: a scratch directory $W removed
# at exit, pass / fail counts, ok / ko / check. HERE must be set.
ROOT=$(cd "$HERE/../.." && pwd)
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...: passes when the command succeeds
    name=$1
    shift
    if "$@" >"$W/out" 2>&1; then ok "$name"; else ko "$name"; sed 's/^/     /' "$W/out" | tail -15; fi
}
