#!/bin/sh
# kernel_ab.sh — A/B of the AVX2 kernels: src/kernels/x86/avx2.c at git
# revision REV (A, default HEAD) against the working tree (B), both linked
# into one program that runs them in alternation (bench/kernel_ab.c).
#
# usage: bench/kernel_ab.sh [-r REV] TYPE TOKENS [COLS] [PAIRS]
#   e.g. bench/kernel_ab.sh -r HEAD~1 bf16 8
#        bench/kernel_ab.sh [-r REV] attn f32|bf16|q8 POSITIONS [HEADS] [PAIRS]
#   attn: MLA decode attention's two products on one core
#        bench/kernel_ab.sh [-r REV] hot TYPE TOKENS [ROWS] [REPS]
#   hot: the kernels' arithmetic alone, weights in L2, one core
#        bench/kernel_ab.sh [-r REV] -m MODEL [STEPS] [THREADS] [DEPTH] [KV]
#   -m: the two builds inside the whole model, decode steps alternating
#   between them (bench/model_kernel_ab.c), e.g. -m /tmp/v2l-q8 64
# Needs a build of the library (make; DSC_LIB names another libdsc.a) and
# binutils' objcopy.
set -eu
rev=HEAD
if [ "${1:-}" = -r ]; then rev=$2; shift 2; fi
prog=kernel_ab
if [ "${1:-}" = -m ]; then prog=model_kernel_ab; shift; fi
root=$(cd "$(dirname "$0")/.." && pwd)
lib=${DSC_LIB:-$root/build/libdsc.a}
[ -f "$lib" ] || { echo "kernel_ab.sh: build the library first (make)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$root" show "$rev:src/kernels/x86/avx2.c" >"$tmp/A.c"
cp "$root/src/kernels/x86/avx2.c" "$tmp/B.c"
pids=
for v in A B; do # the two compiles at once
    cc -O2 -g -mavx2 -mfma -mf16c -I"$root/src" -I"$root/include" -c "$tmp/$v.c" -o "$tmp/$v.o" &
    pids="$pids $!"
done
for p in $pids; do wait "$p" || exit 1; done
for v in A B; do
    # one table renamed, every other global symbol of the copy made local
    syms=$(nm --defined-only -g "$tmp/$v.o" | awk '$2 == "T" { printf " --localize-symbol=%s", $3 }')
    # shellcheck disable=SC2086
    objcopy --redefine-sym kern_avx2=kern_$v $syms "$tmp/$v.o"
done
# shellcheck disable=SC2046
cc -O2 -I"$root/src" -I"$root/include" "$root/bench/$prog.c" "$tmp/A.o" "$tmp/B.o" "$lib" -o "$tmp/$prog" \
    $(pkg-config --libs libcjson libpcre2-8) -lpthread -lm
"$tmp/$prog" "$@"
