#!/bin/sh
# `dsc init`: random checkpoints for every golden config must load and run.
#
# usage: test_init.sh DSC GOLDEN_DIR
#
# For each golden config and each --dtype (bf16, f32, fp8): init, then the
# logits of a 10-token prompt in prefill and in --decode-only must agree
# (max|a-b| <= 1e-4 max|b|) and greedy generation must run. Also: the same
# seed gives identical files and a new seed different ones; --shards 3 gives
# the logits of one file; the tensor names, shapes and dtypes match the golden
# v3-tiny (bf16) and v3-fp8-tiny (fp8) checkpoints; FP8 values are the block
# quantisation of the BF16 ones; a MoE without shared experts gives the same
# logits from a 40-token prefill and from --decode-only; 700 positions of
# decode-only agree with prefill and give the same bits on 1 and 2 threads;
# bad input exits 1 with one line.
set -u
DSC=$1 GOLDEN=$2
HERE=$(cd "$(dirname "$0")" && pwd)
CHECK="python3 $HERE/check.py"
for p in "$DSC" "$GOLDEN/models/v3-tiny/model/config.json" "$GOLDEN/models/v3-fp8-tiny/model/config.json"; do
    [ -e "$p" ] || { echo "test_init.sh: $p not found"; exit 2; }
done
command -v python3 >/dev/null || { echo "test_init.sh: python3 not found"; exit 2; }

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
TOKS="1 5 9 200 17 3 77 42 100 8"

# check NAME COMMAND...: pass when COMMAND succeeds; its output is the detail.
check() {
    name=$1
    shift
    if out=$("$@" 2>&1); then ok "$name ($(echo "$out" | tail -1))"; else bad "$name: $(echo "$out" | tr '\n' ' ')"; fi
}

# run_model NAME DIR: prefill and decode-only logits agree, generate runs.
run_model() {
    if ! "$DSC" logits -m "$2" --tokens "$TOKS" -o "$2.prefill.safetensors" 2>"$tmp/err" ||
        ! "$DSC" logits -m "$2" --tokens "$TOKS" -o "$2.decode.safetensors" --decode-only 2>>"$tmp/err"; then
        bad "$1 logits: $(tr '\n' ' ' <"$tmp/err")"
    else
        check "$1 prefill = decode-only" $CHECK logits "$2.decode.safetensors" "$2.prefill.safetensors"
    fi
    got=$("$DSC" generate -m "$2" --tokens "$TOKS" -n 4 --temp 0 --ids 2>"$tmp/err")
    if [ $? -eq 0 ] && [ "$(echo "$got" | wc -w)" -eq 4 ]; then ok "$1 generate: $got"
    else bad "$1 generate: '$got' $(tr '\n' ' ' <"$tmp/err")"; fi
}

# init NAME ARGS...: dsc init must succeed with one summary line.
init() {
    name=$1
    shift
    if "$DSC" init "$@" 2>"$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ]; then return 0; fi
    bad "$name init: $(tr '\n' ' ' <"$tmp/err")"
    return 1
}

# ------------------------------------------------------- every config x dtype
for cfg in "$GOLDEN"/models/*/model/config.json; do
    m=$(basename "$(dirname "$(dirname "$cfg")")")
    for dt in bf16 f32 fp8; do
        d=$tmp/$m-$dt
        init "$m $dt" -c "$cfg" -o "$d" --dtype $dt --seed 7 || continue
        check "$m $dt layout" $CHECK layout "$d"
        run_model "$m $dt" "$d"
    done
    [ -d "$tmp/$m-bf16" ] && [ -d "$tmp/$m-fp8" ] && check "$m fp8 = bf16 quantised" $CHECK fp8 "$tmp/$m-bf16" "$tmp/$m-fp8"
done

# ---------------------------------------------- MoE without shared experts
# v3-tiny's config with n_shared_experts 0: a 40-token prompt (32 tokens or
# more: each expert's tokens as one product, expert after expert) against
# --decode-only (few tokens: every chosen expert of a step under one barrier).
TOKS40="$TOKS 11 2 250 31 64 7 19 120 6 90 13 4 180 27 55 10 33 141 15 70 2 99 48 21 160 36 12 81 3 230"
python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); c["n_shared_experts"] = 0; json.dump(c, open(sys.argv[2], "w"))' \
    "$GOLDEN/models/v3-tiny/model/config.json" "$tmp/noshared.json"
d=$tmp/noshared
if init "v3-tiny without shared experts" -c "$tmp/noshared.json" -o "$d" --seed 7; then
    if "$DSC" logits -m "$d" --tokens "$TOKS40" -o "$d.prefill.safetensors" 2>"$tmp/err" &&
        "$DSC" logits -m "$d" --tokens "$TOKS40" -o "$d.decode.safetensors" --decode-only 2>>"$tmp/err"; then
        check "v3-tiny without shared experts: 40-token prefill = decode-only" $CHECK logits "$d.decode.safetensors" "$d.prefill.safetensors"
    else
        bad "v3-tiny without shared experts logits: $(tr '\n' ' ' <"$tmp/err")"
    fi
fi

# ------------------------------------------------- a long decode-only context
# 700 positions: the decode attention takes a token's positions in chunks
# (3 of 256 by the end) that threads split, merged per head in order. Its
# logits must agree with prefill's, and be the same bits on 1 and 2 threads.
TOKS700=$(python3 -c 'print(" ".join(str((i * 37 + 11) % 512) for i in range(700)))')
d=$tmp/v3-tiny-bf16
if [ -d "$d" ]; then
    if "$DSC" logits -m "$d" --tokens "$TOKS700" -o "$d.p700.safetensors" 2>"$tmp/err" &&
        "$DSC" logits -m "$d" --tokens "$TOKS700" -o "$d.d700.safetensors" --decode-only -t 2 2>>"$tmp/err" &&
        "$DSC" logits -m "$d" --tokens "$TOKS700" -o "$d.d700t1.safetensors" --decode-only -t 1 2>>"$tmp/err"; then
        check "v3-tiny: 700-token prefill = decode-only" $CHECK logits "$d.d700.safetensors" "$d.p700.safetensors"
        if cmp -s "$d.d700.safetensors" "$d.d700t1.safetensors"; then ok "v3-tiny: 700-token decode-only, 1 thread = 2 threads (bits)"
        else bad "v3-tiny: 700-token decode-only logits differ between 1 and 2 threads"; fi
    else
        bad "v3-tiny 700-token logits: $(tr '\n' ' ' <"$tmp/err")"
    fi
fi

# -------------------------------------------------------------------- shards
V3=$GOLDEN/models/v3-tiny/model
FP8=$GOLDEN/models/v3-fp8-tiny/model
for m in v3-tiny v3-fp8-tiny; do
    dt=bf16
    [ $m = v3-fp8-tiny ] && dt=fp8
    d=$tmp/$m-$dt-shards
    if init "$m $dt --shards 3" -c "$GOLDEN/models/$m/model/config.json" -o "$d" --dtype $dt --seed 7 --shards 3; then
        n=$(ls "$d" | grep -c '^model-0000[123]-of-00003\.safetensors$')
        if [ "$n" -eq 3 ] && [ -f "$d/model.safetensors.index.json" ]; then ok "$m --shards 3: 3 shards + index"
        else bad "$m --shards 3: files $(ls "$d" | tr '\n' ' ')"; fi
        check "$m --shards 3 layout" $CHECK layout "$d"
        run_model "$m $dt --shards 3" "$d"
        if cmp -s "$d.prefill.safetensors" "$tmp/$m-$dt.prefill.safetensors"; then ok "$m --shards 3: logits of one file"
        else bad "$m --shards 3: logits differ from the one-file checkpoint"; fi
    fi
done
# A one-file init over a sharded one: the stale index must go.
d=$tmp/v3-tiny-bf16-shards
if init "v3-tiny re-init" -c "$V3/config.json" -o "$d" --seed 7; then
    if [ ! -e "$d/model.safetensors.index.json" ] && "$DSC" logits -m "$d" --tokens "$TOKS" -o "$tmp/re.safetensors" 2>/dev/null &&
        cmp -s "$tmp/re.safetensors" "$tmp/v3-tiny-bf16.prefill.safetensors"; then ok "re-init into a sharded dir loads the new file"
    else bad "re-init into a sharded dir: stale index or other logits"; fi
fi

# ------------------------------------------------------------- determinism
init "seed 1" -c "$V3/config.json" -o "$tmp/s1a" --seed 1 && init "seed 1" -c "$V3/config.json" -o "$tmp/s1b" --seed 1 &&
    init "seed 2" -c "$V3/config.json" -o "$tmp/s2" --seed 2 && {
    if cmp -s "$tmp/s1a/model.safetensors" "$tmp/s1b/model.safetensors" &&
        cmp -s "$tmp/s1a/config.json" "$tmp/s1b/config.json"; then ok "seed 1 twice: identical files"
    else bad "seed 1 twice: files differ"; fi
    if cmp -s "$tmp/s1a/model.safetensors" "$tmp/s2/model.safetensors"; then bad "seeds 1 and 2: identical weights"
    else ok "seeds 1 and 2: different weights"; fi
}

# -------------------------------------------- the golden layout and values
check "v3-tiny bf16: golden names, shapes, dtypes" $CHECK same-header "$tmp/v3-tiny-bf16" "$V3"
check "v3-fp8-tiny fp8: golden names, shapes, dtypes" $CHECK same-header "$tmp/v3-fp8-tiny-fp8" "$FP8"
check "v3-tiny values (f32 statistics, bf16 = f32 rounded)" $CHECK values "$tmp/v3-tiny-f32" "$tmp/v3-tiny-bf16"
check "v3-tiny fp8 config: quantization_config set" $CHECK quant-config "$tmp/v3-tiny-fp8" fp8
check "v3-fp8-tiny bf16 config: quantization_config removed" $CHECK quant-config "$tmp/v3-fp8-tiny-bf16" none
if cmp -s "$tmp/v3-tiny-bf16/config.json" "$V3/config.json"; then ok "v3-tiny bf16: config.json copied verbatim"
else bad "v3-tiny bf16: config.json differs from the input"; fi

# ---------------------------------------------------------------- bad input
# expect_error NAME SUBSTRING ARGS...: exit 1, one line "dsc: ..." naming SUBSTRING.
expect_error() {
    name=$1 want=$2
    shift 2
    "$DSC" init "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q '^dsc: ' "$tmp/err" && grep -qF -- "$want" "$tmp/err" &&
        ! grep -qi sanitizer "$tmp/err"; then ok "$name: $(cat "$tmp/err")"
    else bad "$name: exit $rc, stderr: $(tr '\n' '|' <"$tmp/err")"; fi
}
printf '{"model_type": "deepseek_v3", "vocab_size": 512,' >"$tmp/malformed.json"
sed 's/"hidden_size": 64/"hidden_size": "64"/' "$V3/config.json" >"$tmp/badfield.json"
: >"$tmp/afile"
expect_error "missing config" "nonexistent.json" -c "$tmp/nonexistent.json" -o "$tmp/x1"
expect_error "malformed config" "malformed.json" -c "$tmp/malformed.json" -o "$tmp/x2"
expect_error "bad config field" "hidden_size" -c "$tmp/badfield.json" -o "$tmp/x3"
expect_error "unknown dtype" "fp16" -c "$V3/config.json" -o "$tmp/x4" --dtype fp16
expect_error "output is a file" "afile" -c "$V3/config.json" -o "$tmp/afile"
expect_error "output under a file" "afile" -c "$V3/config.json" -o "$tmp/afile/sub"
expect_error "no output" "-o" -c "$V3/config.json"
expect_error "no config" "-c" -o "$tmp/x5"
python3 -c "import json, sys; c = json.load(open(sys.argv[1])); c['hidden_size'] = 1048576; c['vocab_size'] = 16777215
json.dump(c, open(sys.argv[2], 'w'))" "$V3/config.json" "$tmp/huge.json"
expect_error "a checkpoint bigger than the free space, before writing" "needs 145.1 TB" -c "$tmp/huge.json" -o "$tmp/x6"
[ ! -e "$tmp/x6" ] && [ ! -e "$tmp/x1" ] && [ ! -e "$tmp/x2" ] && [ ! -e "$tmp/x3" ] && [ ! -e "$tmp/x4" ] && ok "failed inits create no directory" ||
    bad "a failed init left its output directory"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
