#!/bin/sh
# The CLI contract on every golden checkpoint:
#   dsc logits -m DIR --tokens IDS -o OUT [--decode-only]   matches expected logits
#   dsc generate -m DIR --tokens IDS -n 8 --temp 0 --ids [--decode-only]   prints the greedy ids
# usage: cli.sh DSC TEST_GOLDEN GOLDEN_DIR
set -u
DSC=$1 TG=$2 GOLDEN=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
for m in v3-tiny v2lite-tiny v2-grouped-tiny v3-fp8-tiny; do
    root=$GOLDEN/models/$m
    toks=$("$TG" --ids "$root/expected.safetensors" tokens)
    want=$("$TG" --ids "$root/expected.safetensors" greedy)
    for mode in "" --decode-only; do
        name="$m ${mode:-prefill}"
        if "$DSC" logits -m "$root/model" --tokens "$toks" -o "$tmp/l.safetensors" $mode 2>"$tmp/err" &&
            "$TG" --compare "$tmp/l.safetensors" "$root/expected.safetensors" >"$tmp/cmp"; then
            ok "$name logits ($(cat "$tmp/cmp"))"
        else
            bad "$name logits ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"
        fi
        got=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 8 --temp 0 --ids $mode 2>"$tmp/err")
        if [ "$got" = "$want" ]; then ok "$name generate: $got"; else bad "$name generate: got '$got' want '$want' $(cat "$tmp/err")"; fi
    done
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
