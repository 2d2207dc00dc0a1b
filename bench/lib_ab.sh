#!/bin/sh
# lib_ab.sh — A/B of two whole builds of dsc inside one process: libdsc at
# git revision REV (A, default HEAD) and the working tree's (B), each built
# as a shared object and loaded with dlopen, each with its own model and
# context filled to DEPTH positions; then decode steps (prefills with -p)
# alternate between them (A B, B A, ...) and the median of the per-pair
# speed ratios is printed (bench/lib_ab.c). For changes outside avx2.c,
# which kernel_ab.sh -m cannot swap.
#
# usage: bench/lib_ab.sh [-r REV] [-b MODEL_B] [-p N] MODEL [DEPTH] [PAIRS] [KV: f32|bf16|q8]
#   e.g. bench/lib_ab.sh /tmp/v2l-q8 4096 60
#        bench/lib_ab.sh -p 512 /tmp/v2l-q8 0 10
#   -b: B runs MODEL_B (e.g. the same weights written another way), A MODEL;
#   (the same code for both when the working tree is at REV)
#   -p: each step a prefill of N tokens after DEPTH positions (0 allowed)
#   instead of a decode step
set -eu
rev=HEAD
model_b=
prefill=
while :; do
    case "${1:-}" in
    -r) rev=$2; shift 2 ;;
    -b) model_b=$2; shift 2 ;;
    -p)
        case "${2:-}" in
        '' | *[!0-9]* | 0) echo "bench/lib_ab.sh: -p wants a number of tokens (1 or more), not '${2:-}'" >&2; exit 2 ;;
        esac
        prefill=$2
        shift 2
        ;;
    *) break ;;
    esac
done
[ $# -ge 1 ] || { echo "usage: bench/lib_ab.sh [-r REV] [-b MODEL_B] [-p N] MODEL [DEPTH] [PAIRS] [KV]" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/A"
git -C "$root" archive "$rev" | tar -x -C "$tmp/A"
libs=$(pkg-config --libs libcjson libpcre2-8 libmicrohttpd)
for v in A B; do
    src=$tmp/A
    [ $v = B ] && src=$root
    # (no MPI: the objects are loaded by a program that does not link it)
    cmake -S "$src" -B "$tmp/build-$v" -DCMAKE_BUILD_TYPE=Release -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DDSC_WITH_MPI=OFF \
        --no-warn-unused-cli >/dev/null
    cmake --build "$tmp/build-$v" -j "$(nproc)" --target dsc_lib >/dev/null
    # shellcheck disable=SC2086
    cc -shared -o "$tmp/$v.so" -Wl,--whole-archive "$tmp/build-$v/libdsc.a" -Wl,--no-whole-archive $libs -lpthread -lm
done
cc -O2 -I"$root/include" "$root/bench/lib_ab.c" -ldl -o "$tmp/lib_ab"
DSC_AB_MODEL_B=$model_b DSC_AB_PREFILL=$prefill "$tmp/lib_ab" "$tmp/A.so" "$tmp/B.so" "$@"
