#!/bin/sh
# Builds and briefly runs the A/B tools, so that CI keeps them working:
# kernel_ab.sh (attention on one core, a product's arithmetic from L2, then
# inside a model) and lib_ab.sh (decode, and prefill with -p),
# each comparing HEAD with the working tree (the same code in CI) on the
# golden v3-tiny checkpoint; then roofline.sh on its config. Their figures
# mean nothing at these sizes; the script fails when a tool does not
# build, run or print its ratio (roofline.sh: its table's rows).
#   bench/smoke.sh [MODEL]      default ../shared/golden/models/v3-tiny/model
# Needs a build of the library (make). Skips the AVX2 tools on a CPU
# without AVX2.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/../shared/golden/models/v3-tiny/model}
[ -f "$model/config.json" ] || { echo "bench/smoke.sh: no checkpoint at $model" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { # NAME COMMAND...: runs it, wants "B / A speed" in its output
    name=$1
    shift
    rc=0
    "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" = 77 ]; then
        echo "$name: skipped (no AVX2)"
    elif [ "$rc" != 0 ] || ! grep -q "B / A speed" "$log"; then
        cat "$log" >&2
        echo "bench/smoke.sh: $name failed (exit status $rc)" >&2
        exit 1
    else
        echo "$name: $(grep "B / A speed" "$log")"
    fi
}
if grep -q avx2 /proc/cpuinfo 2>/dev/null; then
    run "kernel_ab attn" "$root/bench/kernel_ab.sh" attn bf16 256 8 3
    run "kernel_ab hot" "$root/bench/kernel_ab.sh" hot q8 1 48 50
    run "kernel_ab -m" "$root/bench/kernel_ab.sh" -m "$model" 4 2 8
else
    echo "kernel_ab: skipped (no AVX2)"
fi
run "lib_ab" "$root/bench/lib_ab.sh" "$model" 8 3
run "lib_ab -p" "$root/bench/lib_ab.sh" -p 40 "$model" 0 3
# roofline.sh: four weight types at short context, two at depth (and two
# more with a Q8 cache where the latent rows fill 32-value blocks; v3-tiny's
# do not), and with more than one CPU, BF16 and Q8 on 1 thread and on all
work=$(mktemp -d)
trap 'rm -f "$log"; rm -rf "$work"' EXIT
if ! "$root/bench/roofline.sh" -w "$work" -p 16 -n 4 -d 64 -r 1 "$model/config.json" >"$log" 2>&1 ||
    [ "$(grep -c -E '^\| (BF16|Q8|Q4|FP8) \| (BF16|Q8) \| tg4' "$log")" -lt 6 ] ||
    { [ "$(getconf _NPROCESSORS_ONLN)" -gt 1 ] && [ "$(grep -c -E '^\| (BF16|Q8) \| [0-9]+ \| ' "$log")" -ne 4 ]; }; then
    cat "$log" >&2
    echo "bench/smoke.sh: roofline.sh failed" >&2
    exit 1
fi
echo "roofline.sh: $(grep -c -E '^\| (BF16|Q8|Q4|FP8) \| (BF16|Q8) ' "$log") runs in its table, \
$(grep -c -E '^\| (BF16|Q8) \| [0-9]+ \| ' "$log") in its threads table"
