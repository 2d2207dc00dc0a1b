#!/bin/sh
# End-to-end and load tests of `dsc serve` with the official `openai` and
# `@anthropic-ai/sdk` npm clients, installed here from the committed
# package-lock.json (npm ci).
#
# usage: run.sh DSC_BINARY GOLDEN_DIR
#
# Prints one PASS/FAIL line per check and "N passed, M failed"; exits 1 on
# any failure. Servers listen on 127.0.0.1 with ports they pick themselves;
# every server process and the temporary directory are removed on exit,
# whatever happens (node writes each server's pid to $tmp/pids).
set -u
DSC=${1:-} GOLDEN=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -x "$DSC" ] && [ -d "$GOLDEN/models/v3-tiny/model" ] || { echo "usage: run.sh DSC_BINARY GOLDEN_DIR"; exit 2; }
command -v node >/dev/null && command -v npm >/dev/null || { echo "run.sh: node and npm are needed"; exit 2; }
"$DSC" serve -m /nonexistent 2>&1 | grep -q "without libmicrohttpd" && { echo "run.sh: $DSC was built without the server"; exit 2; }

tmp=$(mktemp -d) || exit 2
cleanup() {
    if [ -f "$tmp/pids" ]; then
        while read -r pid; do kill -9 "$pid" 2>/dev/null; done <"$tmp/pids"
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 2' HUP INT TERM

# The client library: reinstalled only when the lock file changed.
stamp=$(cksum <"$HERE/package-lock.json")
if [ "$(cat "$HERE/node_modules/.dsc-stamp" 2>/dev/null)" != "$stamp" ]; then
    if (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1); then
        echo "$stamp" >"$HERE/node_modules/.dsc-stamp"
    else
        echo "FAIL npm ci: $(tail -n 3 "$tmp/npm.log" | tr '\n' ' ')"
        echo "0 passed, 1 failed"
        exit 1
    fi
fi

status=0
for t in e2e load mtp busy tools anthropic responses dsml; do
    { timeout 90 node "$HERE/$t.mjs" "$DSC" "$GOLDEN" "$tmp" 2>&1; echo $? >"$tmp/rc"; } | tee -a "$tmp/out"
    rc=$(cat "$tmp/rc")
    if [ "$rc" -ne 0 ]; then
        echo "FAIL $t.mjs exited with status $rc" | tee -a "$tmp/out"
        status=1
    fi
done
pass=$(grep -c '^PASS' "$tmp/out")
fail=$(grep -c '^FAIL' "$tmp/out")
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ] && [ $status -eq 0 ]
