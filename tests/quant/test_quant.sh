#!/bin/sh
# `dsc quantize`, `dsc kld` and `dsc perplexity` on the golden models.
#
# usage: test_quant.sh DSC GOLDEN_DIR
#
# Every golden model (v3-fp8-tiny is FP8 in) is quantised to q8 and q4:
#   - one summary line, some tensors quantised (the counts are printed);
#   - the header: I8/U8 tensors with F16 _qscale companions of the right
#     shapes, the config's quantization_config, an aligned layout (check.py);
#   - the quantised model's logits from prefill and from --decode-only agree,
#     for 10 tokens (few-token kernels) and 40 (prefill on the gemm)
#     (max|a-b| <= 1e-4 max|b|, tests/init/check.py). Q4 rows multiply x
#     rounded to 8 bits, so a 1e-6 difference upstream now and then moves
#     one rounded value by a step: q4 allows 1 position in 10 beyond 1e-4
#     (up to 1e-2). Measured on v3-fp8-tiny, 40 tokens: one position at
#     1.7e-3, the others below 1e-6; prefill without x rounded for its gemm
#     put 28 of 40 beyond 1e-4.
#   - dsc kld against the original: q8 small, q4 larger (check.py kld).
# KLD thresholds: these are random models with hidden size 64-192, where each
# weight carries more of the output than in a real model and top-k routing
# flips experts under small perturbations (the max KLD spikes are such flips),
# so their KLDs are far above a real model's. Measured over 512 random tokens
# in windows of 128 (seed 0): q8 1.4e-4 (v2lite) .. 5.6e-3 (v2-grouped,
# routed_scaling 16), v3-tiny 2.7e-3 .. 4.4e-3 over seeds 0-4; q4 is 17-140x
# q8, at most 0.15. Asserted: q8 < 1e-2 on v3-tiny and < 2e-2 elsewhere,
# 2 x q8 < q4 < 0.5.
# Also: self-KLD is 0; kld over a text file (the tiny test tokenizer) and its
# perplexities against the logits of each window; dsc perplexity against
# the NLLs computed from `dsc logits` of each chunk (check.py ppl); a
# sharded input gives the same shards and index, and the same logits as the
# single file; bad input exits 1 with one line and leaves no output behind.
set -u
DSC=$1 GOLDEN=$2
HERE=$(cd "$(dirname "$0")" && pwd)
CHECK="python3 $HERE/check.py"
LOGITS="python3 $HERE/../init/check.py logits"
for p in "$DSC" "$GOLDEN/models/v3-tiny/model/config.json" "$HERE/../init/check.py"; do
    [ -e "$p" ] || { echo "test_quant.sh: $p not found"; exit 2; }
done
command -v python3 >/dev/null || { echo "test_quant.sh: python3 not found"; exit 2; }

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
TOKS="1 5 9 200 17 3 77 42 100 8"
TOKS40="$TOKS 11 2 250 31 64 7 19 120 6 90 13 4 180 27 55 10 33 141 15 70 2 99 48 21 160 36 12 81 3 230"

# check NAME COMMAND...: pass when COMMAND succeeds; its last line is the detail.
check() {
    name=$1
    shift
    if out=$("$@" 2>&1); then ok "$name ($(echo "$out" | tail -1))"; else bad "$name: $(echo "$out" | tr '\n' ' ')"; fi
}

# quantize NAME IN OUT TYPE: succeeds with one summary line naming some quantised tensors.
quantize() {
    if "$DSC" quantize -m "$2" -o "$3" --type "$4" 2>"$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
        grep -q ", [1-9][0-9]* tensors quantised" "$tmp/err"; then
        ok "$1 quantize ($(sed 's/^dsc: quantize: [^:]*: //' "$tmp/err"))"
        return 0
    fi
    bad "$1 quantize: $(tr '\n' ' ' <"$tmp/err")"
    return 1
}

# prefill_decode NAME DIR TYPE: the logits of prefill and --decode-only agree.
prefill_decode() {
    for toks in "$TOKS" "$TOKS40"; do
        flips=0
        [ "$3" = q4 ] && flips=$(($(echo $toks | wc -w) / 10))
        if "$DSC" logits -m "$2" --tokens "$toks" -o "$tmp/pf.st" 2>"$tmp/err" &&
            "$DSC" logits -m "$2" --tokens "$toks" -o "$tmp/dec.st" --decode-only 2>>"$tmp/err"; then
            check "$1 prefill = decode-only ($(echo $toks | wc -w) tokens)" $LOGITS "$tmp/dec.st" "$tmp/pf.st" $flips
        else
            bad "$1 logits: $(tr '\n' ' ' <"$tmp/err")"
        fi
    done
}

# kld A B OUT: dsc kld --json into OUT.
kld() {
    "$DSC" kld -m "$1" -m "$2" -n 512 -c 128 --json >"$3" 2>"$tmp/err" || { cat "$tmp/err"; return 1; }
}

# ------------------------------------------------------- every golden model
for dir in "$GOLDEN"/models/*/model; do
    m=$(basename "$(dirname "$dir")")
    for t in q8 q4; do
        d=$tmp/$m-$t
        quantize "$m $t" "$dir" "$d" $t || continue
        check "$m $t header" $CHECK header "$d" "$dir" $t
        prefill_decode "$m $t" "$d" $t
        # the MTP layer is quantised too and drafts from the quantised weights: the same ids
        if grep -q '"num_nextn_predict_layers": *[1-9]' "$dir/config.json"; then
            a=$("$DSC" generate -m "$d" --tokens "$TOKS" -n 24 --temp 0 --ids 2>"$tmp/err") &&
                b=$("$DSC" generate -m "$d" --tokens "$TOKS" -n 24 --temp 0 --ids --mtp 2>"$tmp/err") &&
                [ -n "$a" ] && [ "$a" = "$b" ] && ok "$m $t generate --mtp = plain ($(tail -1 "$tmp/err"))" ||
                bad "$m $t generate --mtp: '$b' want '$a' $(cat "$tmp/err")"
        fi
    done
    if [ -d "$tmp/$m-q8" ] && [ -d "$tmp/$m-q4" ]; then
        if kld "$dir" "$tmp/$m-q8" "$tmp/$m-q8.json" && kld "$dir" "$tmp/$m-q4" "$tmp/$m-q4.json"; then
            check "$m kld" $CHECK kld "$m" "$tmp/$m-q8.json" "$tmp/$m-q4.json"
        else
            bad "$m kld: $(tr '\n' ' ' <"$tmp/err")"
        fi
    fi
done

# --------------------------------------------------------------- kld itself
V3=$GOLDEN/models/v3-tiny/model
out=$("$DSC" kld -m "$V3" -m "$V3" -n 200 -c 64 2>/dev/null)
case $out in
"mean KLD 0 (max 0, p99 0), top-1 agreement 100.0% over 200 positions
perplexity over the 199 positions with a next token: A "*", B "*" (B/A 1.00000)") ok "self-KLD is 0 ($(echo $out))" ;;
*) bad "self-KLD: '$out'" ;;
esac

TOK=$HERE/../data/tiny-tokenizer/tokenizer.json
if [ -d "$tmp/v3-tiny-q8" ] && [ -f "$TOK" ]; then
    out=$("$DSC" kld -m "$V3" -m "$tmp/v3-tiny-q8" -f "$0" --tokenizer "$TOK" -n 200 -c 64 2>"$tmp/err")
    case $out in
    "mean KLD "*" over 200 positions
perplexity over the 199 positions with a next token: A "*", B "*" (B/A "*")") ok "kld over a text file ($(echo $out))" ;;
    *) bad "kld over a text file: '$out' $(tr '\n' ' ' <"$tmp/err")" ;;
    esac
fi

# ------------------------------------------- perplexities against dsc logits
# ids WORDS FROM COUNT: COUNT ids of the text from id FROM (1-based), one line.
ids() { tr -s ' \n' '\n\n' <"$tmp/ids.all" | sed -n "$1,$(($1 + $2 - 1))p" | tr '\n' ' '; }
if [ -d "$tmp/v3-tiny-q8" ] && [ -f "$TOK" ] && "$DSC" tokenize -f "$0" --tokenizer "$TOK" >"$tmp/ids.all" 2>"$tmp/err"; then
    # kld: windows of 64 from an empty cache over 200 ids, every position with a next id
    ids 1 200 >"$tmp/ids200"
    okk=1
    for m in a b; do
        dir=$V3
        [ $m = b ] && dir=$tmp/v3-tiny-q8
        files=""
        for w in 0 1 2 3; do
            n=64
            [ $w = 3 ] && n=8
            "$DSC" logits -m "$dir" --tokens "$(ids $((w * 64 + 1)) $n)" -o "$tmp/kw$m$w.st" 2>>"$tmp/err" || okk=0
            files="$files $tmp/kw$m$w.st"
        done
        eval "files_$m=\$files"
    done
    if [ $okk = 1 ] && "$DSC" kld -m "$V3" -m "$tmp/v3-tiny-q8" -f "$0" --tokenizer "$TOK" -n 200 -c 64 --json \
        >"$tmp/kld.json" 2>>"$tmp/err"; then
        check "kld --json: ppl_a = the NLLs of A's logits, window by window" $CHECK kldppl "$tmp/kld.json" ppl_a \
            "$tmp/ids200" $files_a
        check "kld --json: ppl_b = the NLLs of B's logits" $CHECK kldppl "$tmp/kld.json" ppl_b "$tmp/ids200" $files_b
    else bad "kld perplexities: $(tr '\n' ' ' <"$tmp/err")"; fi
    # perplexity: 4 chunks of 64, each with BOS first, the second halves scored
    bos=$(sed -n 's/.*"bos_token_id": *\([0-9]*\).*/\1/p' "$V3/config.json")
    ids 1 256 >"$tmp/ids256"
    files=""
    for c in 0 1 2 3; do
        "$DSC" logits -m "$V3" --tokens "$bos $(ids $((c * 64 + 2)) 63)" -o "$tmp/pc$c.st" 2>>"$tmp/err"
        files="$files $tmp/pc$c.st"
    done
    if "$DSC" perplexity -m "$V3" -f "$0" --tokenizer "$TOK" -c 64 -n 256 --json >"$tmp/ppl.json" 2>>"$tmp/err"; then
        check "perplexity = the NLLs of dsc logits of each chunk" $CHECK ppl "$tmp/ppl.json" "$tmp/ids256" 64 $files
    else bad "perplexity: $(tr '\n' ' ' <"$tmp/err")"; fi
    # the text form; --kv-type is used (a BF16 cache moves the figure, a little)
    out=$("$DSC" perplexity -m "$V3" -f "$0" --tokenizer "$TOK" -c 64 -n 300 2>"$tmp/err")
    pf=$(sed -n 's/.*"perplexity": \([0-9.]*\),.*/\1/p' "$tmp/ppl.json")
    pt=$(echo "$out" | sed -n 's/^perplexity \([0-9.]*\) +\/- .*/\1/p')
    case $out in
    "perplexity "*" +/- "*" over 124 tokens (4 chunks of 64, the second half of each scored)")
        if awk -v a="$pt" -v b="$pf" 'BEGIN { d = a - b; exit !(a != "" && d < 6e-5 && d > -6e-5) }'; then
            ok "perplexity, text: the JSON's figure, whole chunks only ($out)"
        else bad "perplexity, text: $pt, JSON $pf"; fi ;;
    *) bad "perplexity, text: '$out' (JSON $pf) $(tr '\n' ' ' <"$tmp/err")" ;;
    esac
    if "$DSC" perplexity -m "$V3" -f "$0" --tokenizer "$TOK" -c 64 -n 256 --kv-type bf16 --json >"$tmp/pbf.json" 2>"$tmp/err" &&
        python3 -c "
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert b['kv_type'] == 'bf16' and a['kv_type'] == 'f32', (a['kv_type'], b['kv_type'])
r = b['perplexity'] / a['perplexity']
assert r != 1 and abs(r - 1) < 0.05, r
print('bf16 cache: %.6f against %.6f with f32' % (b['perplexity'], a['perplexity']))" "$tmp/ppl.json" "$tmp/pbf.json" >"$tmp/cmp" 2>&1
    then ok "perplexity --kv-type bf16 ($(cat "$tmp/cmp"))"
    else bad "perplexity --kv-type bf16: $(cat "$tmp/cmp" "$tmp/err" | tr '\n' ' ')"; fi
else bad "perplexity tests: no q8 copy or tokenizer, or tokenize failed: $(tr '\n' ' ' <"$tmp/err" 2>/dev/null)"; fi

# ------------------------------------------- sharded input: same shards, same logits
if "$DSC" init -c "$V3/config.json" -o "$tmp/one" --seed 3 2>/dev/null &&
    "$DSC" init -c "$V3/config.json" -o "$tmp/three" --seed 3 --shards 3 2>/dev/null &&
    quantize "shards" "$tmp/three" "$tmp/three-q4" q4 && quantize "one file" "$tmp/one" "$tmp/one-q4" q4; then
    n=$(ls "$tmp/three-q4" | grep -c '^model-0000[123]-of-00003\.safetensors$')
    if [ "$n" -eq 3 ] && [ -f "$tmp/three-q4/model.safetensors.index.json" ]; then ok "3 shards in, 3 shards + index out"
    else bad "sharded output: $(ls "$tmp/three-q4" | tr '\n' ' ')"; fi
    check "sharded q4 header" $CHECK header "$tmp/three-q4" "$tmp/three" q4
    if "$DSC" logits -m "$tmp/three-q4" --tokens "$TOKS" -o "$tmp/a.st" 2>/dev/null &&
        "$DSC" logits -m "$tmp/one-q4" --tokens "$TOKS" -o "$tmp/b.st" 2>/dev/null && cmp -s "$tmp/a.st" "$tmp/b.st"; then
        ok "sharded and single-file q4 give identical logits"
    else bad "sharded and single-file q4 logits differ"; fi
else
    bad "sharded input: init or quantize failed"
fi

# ------------------------------------------------- --type copy: the layout only
# copy NAME SRC OUT: quantises nothing, rewrites every tensor as it is.
copy() {
    if "$DSC" quantize -m "$2" -o "$3" --type copy 2>"$tmp/err" && [ "$(wc -l <"$tmp/err")" -eq 1 ] &&
        grep -q ": copy, [1-9][0-9]* tensors as they were" "$tmp/err"; then
        check "$1 copy: same tensors and config, 64-byte layout" $CHECK copy "$3" "$2"
        if "$DSC" logits -m "$2" --tokens "$TOKS" -o "$tmp/cs.st" 2>/dev/null &&
            "$DSC" logits -m "$3" --tokens "$TOKS" -o "$tmp/cc.st" 2>/dev/null && cmp -s "$tmp/cs.st" "$tmp/cc.st"; then
            ok "$1 copy: identical logits"
        else bad "$1 copy: logits differ from the source's"; fi
    else bad "$1 copy: $(tr '\n' ' ' <"$tmp/err")"; fi
}
copy "v3-fp8-tiny (FP8 + scales)" "$GOLDEN/models/v3-fp8-tiny/model" "$tmp/fp8-copy"
# -v names misaligned weights (the golden files are 8-byte aligned) and not the copy's.
hint() { "$DSC" generate -m "$1" --tokens "1 2 3" -n 1 -v 2>&1 | grep -c "not 32-byte aligned.*--type copy"; }
if [ "$(hint "$GOLDEN/models/v3-fp8-tiny/model")" -eq 1 ] && [ -d "$tmp/fp8-copy" ] && [ "$(hint "$tmp/fp8-copy")" -eq 0 ]; then
    ok "-v: the misaligned source gets the --type copy hint, its copy none"
else bad "-v: --type copy hint wrong (source $(hint "$GOLDEN/models/v3-fp8-tiny/model"), copy $(hint "$tmp/fp8-copy"))"; fi
[ -d "$tmp/three" ] && copy "3 shards" "$tmp/three" "$tmp/three-copy"
[ -d "$tmp/v3-tiny-q8" ] && copy "a q8 checkpoint" "$tmp/v3-tiny-q8" "$tmp/q8-copy"

# ------------------------------------- links into another checkpoint (cp -al, cp -rs)
# An output directory whose files are links to the input's (or another
# checkpoint's): each is replaced, never written through.
mkdir -p "$tmp/src" "$tmp/linked" "$tmp/init-linked"
cp "$V3/config.json" "$V3/model.safetensors" "$tmp/src/" && ln "$tmp/src/model.safetensors" "$tmp/linked/model.safetensors" &&
    ln -s "$tmp/src/config.json" "$tmp/linked/config.json" && ln -s "$tmp/src/model.safetensors" "$tmp/init-linked/model.safetensors"
before=$(cat "$tmp/src/config.json" "$tmp/src/model.safetensors" | cksum)
if "$DSC" quantize -m "$tmp/src" -o "$tmp/linked" --type q8 2>/dev/null &&
    "$DSC" init -c "$V3/config.json" -o "$tmp/init-linked" --seed 3 2>/dev/null &&
    [ "$(cat "$tmp/src/config.json" "$tmp/src/model.safetensors" | cksum)" = "$before" ] &&
    "$DSC" info -m "$tmp/linked" >/dev/null && grep -q '"quant_method":[[:space:]]*"dsc"' "$tmp/linked/config.json" && [ ! -L "$tmp/init-linked/model.safetensors" ]; then
    ok "quantize and init replace linked output files and leave the files linked to as they were"
else bad "quantize or init wrote through a link into another checkpoint's files"; fi

# ------------------------------------------------------------------ bad input
# bad_input NAME WANT ARGS...: exit 1, one line starting "dsc: " that contains WANT.
bad_input() {
    name=$1 want=$2
    shift 2
    "$DSC" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^dsc: .*$want" "$tmp/err" && [ ! -s "$tmp/out" ]; then
        ok "$name ($(cat "$tmp/err"))"
    else
        bad "$name: exit $rc, stderr '$(tr '\n' ' ' <"$tmp/err")'"
    fi
}
touch "$tmp/a-file"
bad_input "unknown --type" "type 'q5'" quantize -m "$V3" -o "$tmp/x" --type q5
bad_input "no --type" "--type" quantize -m "$V3" -o "$tmp/x"
bad_input "no -o" "-o DIR" quantize -m "$V3" --type q8
bad_input "missing input dir" "$tmp/nope" quantize -m "$tmp/nope" -o "$tmp/x" --type q8
bad_input "output is a file" "$tmp/a-file: exists and is not a directory" quantize -m "$V3" -o "$tmp/a-file" --type q8
bad_input "output = input" "is the input directory" quantize -m "$V3" -o "$V3/" --type q8
[ -d "$tmp/v3-tiny-q8" ] && bad_input "already quantised" "already quantised" quantize -m "$tmp/v3-tiny-q8" -o "$tmp/x" --type q4
mkdir -p "$tmp/wrong" && cp "$V3/model.safetensors" "$tmp/wrong/" &&
    sed 's/"hidden_size": 64/"hidden_size": 32/' "$V3/config.json" >"$tmp/wrong/config.json"
bad_input "input whose config disagrees with its weights, before writing" "config expects" \
    quantize -m "$tmp/wrong" -o "$tmp/x" --type q8
bad_input "kld with one model" "two models" kld -m "$V3"
bad_input "kld of different architectures" "v2lite-tiny" kld -m "$V3" -m "$GOLDEN/models/v2lite-tiny/model" -n 8
bad_input "perplexity without a text" "perplexity: give the text to score (-f FILE)" perplexity -m "$V3"
bad_input "perplexity: a text shorter than a chunk" "fewer than one chunk of 64" \
    perplexity -m "$V3" -f "$0" --tokenizer "$TOK" -c 64 -n 63
bad_input "perplexity: -c 3" "too short to score" perplexity -m "$V3" -f "$0" --tokenizer "$TOK" -c 3
bad_input "perplexity: a chunk beyond max_position_embeddings" "max_position_embeddings (163840)" \
    perplexity -m "$V3" -f "$0" --tokenizer "$TOK" -c 200000
bad_input "perplexity: a missing text" "$tmp/no-such.txt" perplexity -m "$V3" -f "$tmp/no-such.txt" --tokenizer "$TOK"
[ -e "$tmp/x" ] && bad "a failed quantize left $tmp/x behind" || ok "failed runs create no output directory"

# The summary counts the checkpoint's weights, not a training run's files beside them.
mkdir -p "$tmp/run" && cp "$V3/config.json" "$V3/model.safetensors" "$tmp/run/" &&
    cp "$V3/model.safetensors" "$tmp/run/optimizer.safetensors" &&
    cp "$V3/model.safetensors" "$tmp/run/rollback.safetensors"
want=$(awk -v b="$(wc -c <"$V3/model.safetensors")" 'BEGIN { printf "%.1f MiB ->", b / 1048576 }')
if "$DSC" quantize -m "$tmp/run" -o "$tmp/run-q8" --type q8 2>"$tmp/err" && grep -q "$want" "$tmp/err"; then
    ok "quantize beside optimizer files: the input's size is its weights' ($want)"
else bad "quantize beside optimizer files: want '$want': $(cat "$tmp/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
