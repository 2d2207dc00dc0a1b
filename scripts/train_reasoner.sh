#!/usr/bin/env bash
# Reproduces models/dsc-r1-tiny, the bundled default: a DeepSeek-V3-architecture
# model (MLA, sigmoid-routed MoE with a shared expert) taught to reason on
# verifiable tasks the R1 way, on two CPU cores:
#   1. pretrain  on task-domain text: questions with worked solutions (dsc tasks --format text)
#   2. SFT       cold start on the R1 chat format, loss on the answers (dsc sft)
#   3. GRPO      reinforcement learning with verifiable rewards (dsc grpo), three stages
#   4. evaluate  the SFT and final models on held-out problems (seed 777, never used in
#                training): pass@1 and cons@8 with majority vote (dsc eval)
# About 50 minutes on two idle cores (pretraining 12, SFT 2, GRPO 10 + 5 + 7, evaluation 4 x 1.5).
#   scripts/train_reasoner.sh [WORK_DIR]       (default /tmp/dsc-r1)
# Stages whose output exists are skipped (delete WORK_DIR/STAGE to redo one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/dsc-r1}
dsc=${DSC:-$root/build/dsc}
out=$root/models/dsc-r1-tiny
cfg=$root/models/configs/dsc-r1-tiny.json
PRE_STEPS=${PRE_STEPS:-800}
SFT_STEPS=${SFT_STEPS:-150}
GRPO_STEPS=${GRPO_STEPS:-150}
mkdir -p "$work"
[ -x "$dsc" ] || make -C "$root" >/dev/null

# Data: training seeds 1-3; the held-out problems use seed 777.
if [ ! -f "$work/pretrain.txt" ]; then
    "$dsc" tasks --family all --n 150000 --seed 1 --format text -o "$work/pretrain.txt"
    "$dsc" tasks --family all --n 30000 --seed 2 --format sft -o "$work/sft.jsonl"
    for f in add mul countdown; do
        "$dsc" tasks --family $f --n 500 --seed 777 -o "$work/heldout-$f.jsonl"
    done
    cat "$work"/heldout-{add,mul,countdown}.jsonl > "$work/heldout.jsonl"
fi
[ -f "$work/tokenizer.json" ] ||
    "$dsc" train-tokenizer --data "$work/pretrain.txt" --vocab 384 --split-digits -o "$work/tokenizer.json"

# 1. Pretraining on the task domain.
[ -f "$work/pretrain/model.safetensors" ] ||
    "$dsc" train "$cfg" --data "$work/pretrain.txt" --tokenizer "$work/tokenizer.json" -o "$work/pretrain" \
        --batch 16 --seq 256 --steps "$PRE_STEPS" --lr 2e-3 --warmup 50 --min-lr 1e-4 --gamma 0.01 \
        --eval-every 100 --save-every 100 --seed 1

# 2. Cold-start SFT on the chat format.
[ -f "$work/sft/model.safetensors" ] ||
    "$dsc" sft "$work/pretrain" --data "$work/sft.jsonl" -o "$work/sft" \
        --batch 16 --seq 320 --steps "$SFT_STEPS" --lr 5e-4 --warmup 10 --min-lr 5e-5 --gamma 0.01 \
        --eval-every 50 --save-every 50 --seed 3

# 3. GRPO with verifiable rewards, in three stages (each a fresh optimizer state;
#    the KL in the logs is measured against the SFT model):
#    a. all three families;  b. Countdown only (its rewards still vary: addition and
#    multiplication errors of this model are systematic, their groups mostly get equal
#    rewards);  c. all three again, which recovers the arithmetic that (b) wore down.
grpo() { # STAGE FROM TASKS STEPS SEED
    [ -f "$work/$1/model.safetensors" ] ||
        "$dsc" grpo "$work/$2" -o "$work/$1" --ref "$work/sft" --tasks "$3" --steps "$4" --seed "$5" \
            --prompts 8 --group 8 --max-new 192 --temp 1 --lr 5e-5 --warmup 5 --inner 2 --beta 0
}
grpo grpo-a sft add,mul,countdown "$GRPO_STEPS" 3
grpo grpo-b grpo-a countdown "$GRPO_STEPS" 4
grpo grpo-c grpo-b add,mul,countdown $((GRPO_STEPS * 2 / 3)) 5

# 4. Held-out evaluation of both models: pass@1 (temperature 0.6) and cons@8.
for m in sft grpo-a grpo-b grpo-c; do
    [ -f "$work/eval-$m.json" ] ||
        "$dsc" eval -m "$work/$m" --tasks "$work/heldout.jsonl" --samples 8 --vote --temp 0.6 --max-new 192 --seed 777 \
            > "$work/eval-$m.json"
done

# The bundled copy and its charts.
mkdir -p "$out"
find "$out" -mindepth 1 ! -name README.md -delete   # the model card stays
cp "$work/grpo-c"/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json} "$out/"
cp "$work/pretrain/log.jsonl" "$out/pretrain_log.jsonl"
cp "$work/sft/log.jsonl" "$out/sft_log.jsonl"
for st in a b c; do cp "$work/grpo-$st/log.jsonl" "$out/grpo_${st}_log.jsonl"; done
cp "$work"/eval-{sft,grpo-a,grpo-b,grpo-c}.json "$out/"
"$dsc" plot "$work/pretrain/log.jsonl" -o "$out/pretrain.png" --title "dsc-r1-tiny: pretraining on task text"
"$dsc" plot "$work/sft/log.jsonl" -o "$out/sft.png" --title "dsc-r1-tiny: cold-start SFT (loss on the answers)"
"$dsc" plot "$work/grpo-a/log.jsonl" -o "$out/grpo_a.png" --smooth 9 --title "dsc-r1-tiny: GRPO (a) on add, mul, countdown"
"$dsc" plot "$work/grpo-b/log.jsonl" -o "$out/grpo_b.png" --smooth 9 --title "dsc-r1-tiny: GRPO (b) on countdown"
"$dsc" plot "$work/grpo-c/log.jsonl" -o "$out/grpo_c.png" --smooth 9 --title "dsc-r1-tiny: GRPO (c) on add, mul, countdown"
cat "$out"/eval-{sft,grpo-a,grpo-b,grpo-c}.json
