#!/bin/sh
# `dsc grad` against the golden train files, and its bad-input behaviour:
#   dsc grad -m DIR --batch BATCH.safetensors [--alpha A] -o OUT.safetensors
# usage: test_grad_cli.sh DSC GOLDEN_DIR
set -u
DSC=$1 GOLDEN=$2
HERE=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
# exit status 1 and exactly one line on stderr
one_line_error() {
    if [ "$1" -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then ok "$2: $(cat "$tmp/err")"; else bad "$2: rc $1, $(cat "$tmp/err")"; fi
}

for m in v3-tiny v2lite-tiny; do
    root=$GOLDEN/models/$m
    if "$DSC" grad -m "$root/model" --batch "$root/train.safetensors" -o "$tmp/g.safetensors" 2>"$tmp/err" &&
        python3 "$HERE/check_grads.py" "$tmp/g.safetensors" "$root/train.safetensors" >"$tmp/cmp"; then
        ok "$m dsc grad ($(cat "$tmp/cmp"))"
    else
        bad "$m dsc grad ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"
    fi
done

root=$GOLDEN/models/v3-tiny
"$DSC" grad -m "$root/model" --batch "$root/train.safetensors" --alpha 0 -o "$tmp/g0.safetensors" 2>"$tmp/err"
aux=$(python3 -c "
import sys; sys.path.insert(0, '$HERE'); import check_grads as c
print(c.load('$tmp/g0.safetensors')['loss_aux'][2][0])" 2>&1)
if [ "$aux" = "0.0" ]; then ok "--alpha 0 gives loss_aux 0"; else bad "--alpha 0 gives loss_aux $aux $(cat "$tmp/err")"; fi

"$DSC" grad -m "$root/model" -o "$tmp/x" 2>"$tmp/err"
one_line_error $? "no --batch"
"$DSC" grad -m "$root/model" --batch "$root/train.safetensors" 2>"$tmp/err"
one_line_error $? "no -o"
"$DSC" grad -m "$root/model" --batch "$root/expected.safetensors" -o "$tmp/x" 2>"$tmp/err"
one_line_error $? "tokens of the wrong shape"
python3 - "$tmp/big.safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"tokens": {"dtype": "I32", "shape": [1, 3], "data_offsets": [0, 12]}}).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + struct.pack("<3i", 0, 99999, 1))
PY
"$DSC" grad -m "$root/model" --batch "$tmp/big.safetensors" -o "$tmp/x" 2>"$tmp/err"
one_line_error $? "token id out of range"
"$DSC" grad -m "$root/model" --batch "$root/train.safetensors" -o "$tmp/no/such/dir/x" 2>"$tmp/err"
one_line_error $? "unwritable output"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
