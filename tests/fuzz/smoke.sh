#!/bin/sh
# Builds every libFuzzer target (build.sh) and runs each for a fixed number
# of inputs from a fixed seed, starting from its checked-in corpus, so that
# CI keeps the targets building and catches a parser that crashes within
# the first mutations:
#   tests/fuzz/smoke.sh [OUT_DIR] [RUNS]      defaults build-fuzz, 50000
# New inputs go to a scratch directory, never into the corpus. A crash
# leaves its input in OUT_DIR (crash-<sha1>) and fails the script.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-build-fuzz}
runs=${2:-50000}
"$root/tests/fuzz/build.sh" "$out" >/dev/null
out=$(cd "$out" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tok=${DSC_FUZZ_TOKENIZER:-$root/../shared/golden/tokenizer/deepseek-v3/tokenizer.json}
# target, its corpus (or none), its dictionary (or none), max input length
while read -r t corpus dict len; do
    if [ "$t" = tokenizer ] && [ ! -f "$tok" ]; then
        echo "fuzz_tokenizer: skipped, no tokenizer at $tok"
        continue
    fi
    mkdir "$scratch/$t"
    set -- "$scratch/$t"
    [ "$corpus" = - ] || set -- "$@" "$root/$corpus"
    [ "$dict" = - ] || set -- "$@" "-dict=$root/$dict"
    DSC_FUZZ_TOKENIZER=$tok "$out/fuzz_$t" "$@" -seed=1 -runs="$runs" -max_len="$len" -timeout=20 \
        -rss_limit_mb=2048 -artifact_prefix="$out/" >"$scratch/$t.log" 2>&1 || {
        tail -n 40 "$scratch/$t.log"
        echo "fuzz_$t: failed (input saved in $out/)"
        exit 1
    }
    echo "fuzz_$t: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$scratch/$t.log")"
done <<EOF
safetensors tests/fuzz/corpus/safetensors tests/fuzz/safetensors.dict 65536
config tests/fuzz/corpus/config tests/fuzz/config.dict 8192
tasks tests/fuzz/corpus/tasks - 4096
tokenizer - - 4096
tokenizer_json - - 65536
json_mode tests/fuzz/corpus/json_mode - 4096
json_schema tests/fuzz/corpus/json_schema - 8192
dsml tests/fuzz/corpus/dsml - 8192
request tests/server/corpus - 4096
EOF
