#!/bin/sh
# The bundled model loads, runs the README's main job, and its prefill and
# token-by-token logits agree. usage: default_model.sh DSC TEST_GOLDEN MODEL_DIR
set -u
DSC=$1 TG=$2 M=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
out=$("$DSC" run -m "$M" --raw -p "The jury said" -n 12 --temp 0 2>"$tmp/err")
case $out in "The jury said"?*) ok "run --raw continues the prompt: $(echo "$out" | head -c 80)" ;; *) bad "run --raw: '$out' $(cat "$tmp/err")" ;; esac
ids=$("$DSC" tokenize -m "$M" -p "It was a dark and stormy night, and the rain fell." 2>>"$tmp/err")
toks="0 $ids"
if "$DSC" logits -m "$M" --tokens "$toks" -o "$tmp/a.st" 2>>"$tmp/err" &&
    "$DSC" logits -m "$M" --tokens "$toks" --decode-only -o "$tmp/b.st" 2>>"$tmp/err" &&
    "$TG" --compare "$tmp/a.st" "$tmp/b.st" >"$tmp/cmp"; then
    ok "prefill = decode-only ($(cat "$tmp/cmp"))"
else
    bad "prefill vs decode-only: $(cat "$tmp/cmp" "$tmp/err" 2>/dev/null | tr '\n' ' ')"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
