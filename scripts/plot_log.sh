#!/usr/bin/env bash
# Loss curves (train, validation) and expert-load balance of a `dsc train`
# log.jsonl, drawn by gnuplot (Debian: gnuplot-nox):
#   scripts/plot_log.sh RUN_DIR/log.jsonl OUT.png [BASELINE_LOSS]
set -euo pipefail
log=$1 out=$2 base=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$log" "$tmp" <<'PY'
import json, sys
log, tmp = sys.argv[1], sys.argv[2]
tr, va, ld = open(tmp + "/train.dat", "w"), open(tmp + "/val.dat", "w"), open(tmp + "/load.dat", "w")
for line in open(log):
    try:
        r = json.loads(line)
    except ValueError:  # a line still being written
        continue
    if "loss" not in r or "event" in r:
        continue
    tr.write("%d %g\n" % (r["step"], r["loss"]))
    if "val_loss" in r:
        va.write("%d %g\n" % (r["step"], r["val_loss"]))
    loads = [x for x in r.get("expert_load_max_mean", []) if x is not None]
    if loads:
        ld.write("%d %g\n" % (r["step"], max(loads)))
PY
{
    echo "set terminal pngcairo size 1000,700 font 'sans,11'; set output '$out'"
    echo "set multiplot layout 2,1 title 'dsc train: $(basename "$(dirname "$log")")'"
    echo "set xlabel 'step'; set ylabel 'loss (nats/token)'; set grid; set key top right"
    if [ -n "$base" ]; then
        echo "plot '$tmp/train.dat' w l lc rgb '#4477aa' t 'train', '$tmp/val.dat' w lp pt 7 lc rgb '#cc3311' t 'validation', $base w l dt 2 lc rgb '#555555' t 'bigram baseline (validation)'"
    else
        echo "plot '$tmp/train.dat' w l lc rgb '#4477aa' t 'train', '$tmp/val.dat' w lp pt 7 lc rgb '#cc3311' t 'validation'"
    fi
    echo "set ylabel 'max expert load / mean (worst layer)'; set yrange [1:*]"
    echo "plot '$tmp/load.dat' w l lc rgb '#228833' t 'expert load'"
    echo "unset multiplot"
} | gnuplot
echo "wrote $out"
