#!/bin/sh
# train_compare.sh — training tokens/s of dsc and of PyTorch (eager, CPU) on
# the same DeepSeek-V3 config, batch, sequence length and thread count, run
# back to back.
#
#   bench/train_compare.sh [CONFIG] [BATCH] [SEQ] [STEPS] [THREADS] [RUNS]
#   defaults:  models/configs/dsc-brown-v3.json 8 128 10 2 5
#
# dsc: `dsc train` from a random start; figure = median of the per-step
# tokens_per_s in DIR/log.jsonl, leaving out the first 2 steps.
# torch: bench/train_torch.py, 2 untimed steps then STEPS - 2 timed ones.
# Both time the whole step (forward, backward, grad norm and clipping, AdamW,
# bias update).
#
# PyTorch is a benchmark-only dependency: Debian's python3-torch, seen only
# by the system interpreter /usr/bin/python3 (a pyenv/venv python3 earlier on
# PATH does not see Debian packages), hence the explicit path.
#
# Data and tokenizer (README.md + `dsc tasks` text, a BPE of the config's
# vocab_size) are made once under build/train_compare/ and reused.
set -eu

cd "$(dirname "$0")/.."
config=${1:-models/configs/dsc-brown-v3.json}
batch=${2:-8}
seq=${3:-128}
steps=${4:-10}
threads=${5:-2}
runs=${6:-5}
py=/usr/bin/python3
dsc=build/dsc
work=build/train_compare

if ! "$py" -c 'import torch' 2>/dev/null; then
    echo "train_compare.sh: $py cannot import torch (apt-get install python3-torch)" >&2
    exit 1
fi
[ -x "$dsc" ] || { echo "train_compare.sh: $dsc not found; run make first" >&2; exit 1; }
[ -f "$config" ] || { echo "train_compare.sh: config $config not found" >&2; exit 1; }
[ "$runs" -ge 1 ] || { echo "train_compare.sh: RUNS must be at least 1" >&2; exit 1; }
[ "$steps" -ge 3 ] || { echo "train_compare.sh: STEPS must be at least 3 (the first 2 are not counted)" >&2; exit 1; }

vocab=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$config")
mkdir -p "$work"
if [ ! -f "$work/tasks.txt" ]; then
    "$dsc" tasks --family all --n 20000 --format text -o "$work/tasks.txt"
fi
tok="$work/tokenizer-$vocab.json"
if [ ! -f "$tok" ]; then
    "$dsc" train-tokenizer --data README.md "$work/tasks.txt" --vocab "$vocab" -o "$tok"
fi

# One dsc run: the median per-step tokens/s of its log.
run_dsc() {
    run="$work/run"
    rm -rf "$run"
    "$dsc" train "$config" --data README.md "$work/tasks.txt" --tokenizer "$tok" -o "$run" \
        --batch "$batch" --seq "$seq" --steps "$steps" --threads "$threads" --eval-every 0 --save-every 0 \
        2>"$work/dsc_train.log" || { tail -n 5 "$work/dsc_train.log" >&2; exit 1; }
    "$py" - "$run/log.jsonl" <<'EOF2'
import json, statistics, sys
v = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "tokens_per_s" in r and "event" not in r and r["step"] > 2:
        v.append(r["tokens_per_s"])
print(f"{statistics.median(v):.1f}" if v else "nan")
EOF2
}

# One PyTorch run. OpenMP's default (spin ~300k rounds before sleeping)
# collapses when another process holds the cores (20x slower at 2 threads on
# a busy 2-core VM); passive waiting is the default here, set
# OMP_WAIT_POLICY to override (ACTIVE can be a little faster on an idle
# machine).
wait_policy=${OMP_WAIT_POLICY:-PASSIVE}
run_torch() {
    OMP_WAIT_POLICY=$wait_policy OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads \
        "$py" bench/train_torch.py --config "$config" --batch "$batch" --seq "$seq" \
        --steps $((steps - 2)) --warmup-steps 2 --threads "$threads" 2>"$work/torch.log" | sed -n 's/.*, \([0-9.]*\) tokens\/s.*/\1/p'
}

# RUNS pairs, dsc then torch back to back: on a shared machine the figure is
# the median of the per-pair ratios.
echo "config $config, batch $batch x seq $seq, $steps steps (first 2 not counted), $threads threads, $runs pairs"
echo "torch $("$py" -c 'import torch; print(torch.__version__)'), OMP_WAIT_POLICY=$wait_policy"
printf '%-6s %12s %12s %8s\n' pair "dsc tok/s" "torch tok/s" ratio
ratios=""
i=1
while [ "$i" -le "$runs" ]; do
    d=$(run_dsc)
    t=$(run_torch)
    r=$(awk -v a="$d" -v b="$t" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    printf '%-6s %12s %12s %7sx\n' "$i" "$d" "$t" "$r"
    ratios="$ratios $r"
    i=$((i + 1))
done
sed -n 's/^/# /p' "$work/torch.log"
echo "$ratios" | "$py" -c 'import statistics, sys; v = [float(x) for x in sys.stdin.read().split()]; print(f"dsc / torch = {statistics.median(v):.2f}x (median of {len(v)} pairs; min {min(v):.2f}, max {max(v):.2f})")'
