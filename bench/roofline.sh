#!/bin/sh
# roofline.sh — the speed figures of one checkpoint's shapes in every
# weight type, in one go: writes (once) a random BF16 checkpoint for CONFIG
# with `dsc init`, its Q8 and Q4 copies with `dsc quantize` and an FP8 one
# with `dsc init --dtype fp8`, then runs `dsc bench --json` on each at short
# context (prefill and decode) and, with BF16 and Q8 weights, decode at
# DEPTH positions with a BF16 and a Q8 latent cache, each checkpoint read
# once before its runs (as a user's page cache holds a model). Prints one
# table of what each run measured against this machine's roofline, then
# one of BF16 and Q8 weights on 1 thread against all (`dsc bench -t 1,N`:
# the counts in turn within each repetition).
#
# usage: bench/roofline.sh [-w WORKDIR] [-p N] [-n N] [-d DEPTH] [-r R]
#                          [-t THREADS] [-s LIST] CONFIG.json
#   defaults: -w /tmp/dsc-roofline -p 512 -n 64 -d 4096 -r 5 (3 at depth),
#   all CPUs; -d 0 skips the runs at depth; -s: the thread counts of the
#   scaling runs (default 1,THREADS; 0 skips them)
#   e.g. bench/roofline.sh tests/init/v2-lite-4layers.json
# Needs a build (make) and python3. The checkpoints stay in WORKDIR (one
# directory per type, remade only when missing: delete them after a
# change of CONFIG).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
dsc=${DSC:-$root/build/dsc}
work=/tmp/dsc-roofline P=512 N=64 D=4096 R=5 T= S=
usage() {
    sed -n '/^# usage:/,/^#   e.g./s/^# \{0,1\}//p' "$0" >&2
    exit 2
}
num() { # NAME VALUE: a whole number, else the usage
    case $2 in '' | *[!0-9]*) echo "roofline.sh: $1 wants a whole number, not '$2'" >&2 && usage ;; esac
}
while [ $# -gt 1 ]; do
    case $1 in
    -w) work=$2 ;;
    -p) num -p "$2" && P=$2 ;;
    -n) num -n "$2" && N=$2 ;;
    -d) num -d "$2" && D=$2 ;;
    -r) num -r "$2" && R=$2 ;;
    -t) num -t "$2" && T=$2 ;;
    -s) S=$2 ;;
    *) usage ;;
    esac
    shift 2
done
[ $# = 1 ] || usage
config=$1
[ -f "$config" ] || { echo "roofline.sh: no config file at $config" >&2; exit 2; }
[ -x "$dsc" ] || { echo "roofline.sh: build dsc first (make)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "roofline.sh: needs python3" >&2; exit 2; }
mkdir -p "$work"
out=$work/runs.jsonl
: >"$out"

# The checkpoints, each written once.
[ -f "$work/bf16/config.json" ] || "$dsc" init -c "$config" -o "$work/bf16"
[ -f "$work/fp8/config.json" ] || "$dsc" init -c "$config" -o "$work/fp8" --dtype fp8
for q in q8 q4; do
    [ -f "$work/$q/config.json" ] || "$dsc" quantize -m "$work/bf16" -o "$work/$q" --type $q
done

bench() { # TYPE CACHE ARGS...: one dsc bench --json run, tagged, appended to runs.jsonl
    ty=$1 kv=$2
    shift 2
    cat "$work/$ty"/*.safetensors >/dev/null
    j=$("$dsc" bench -m "$work/$ty" --kv-type "$kv" ${T:+-t "$T"} --json "$@") ||
        { echo "roofline.sh: dsc bench failed on $work/$ty" >&2; exit 1; }
    printf '{"weights": "%s", "cache": "%s", "run": %s}\n' "$ty" "$kv" "$j" >>"$out"
}
for ty in bf16 q8 q4 fp8; do bench "$ty" bf16 -p "$P" -n "$N" -r "$R"; done
if [ "$D" -gt 0 ]; then
    rd=$((R < 3 ? R : 3))
    # a Q8 cache holds rows of kv_lora_rank + qk_rope_head_dim values in blocks of 32
    kvs=$(python3 -c 'import json, sys; c = json.load(open(sys.argv[1]))
print("bf16 q8" if (c["kv_lora_rank"] + c["qk_rope_head_dim"]) % 32 == 0 else "bf16")' "$work/bf16/config.json")
    for ty in bf16 q8; do
        for kv in $kvs; do bench "$ty" "$kv" -p 0 -n "$((N < 32 ? N : 32))" -d "$D" -r "$rd"; done
    done
fi

# Threads: 1 against all (or -s), BF16 and Q8 weights, short context.
if [ -z "$S" ]; then
    nt=${T:-$(getconf _NPROCESSORS_ONLN)}
    S=$([ "$nt" -gt 1 ] && echo "1,$nt" || echo 0)
fi
if [ "$S" != 0 ]; then
    for ty in bf16 q8; do
        cat "$work/$ty"/*.safetensors >/dev/null
        js=$("$dsc" bench -m "$work/$ty" -t "$S" --json -p "$P" -n "$((N < 32 ? N : 32))" -r "$((R < 3 ? R : 3))") ||
            { echo "roofline.sh: dsc bench -t $S failed on $work/$ty" >&2; exit 1; }
        printf '%s\n' "$js" | while read -r j; do
            printf '{"weights": "%s", "cache": "bf16", "scaling": 1, "run": %s}\n' "$ty" "$j"
        done >>"$out"
    done
fi

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r0 = rows[0]["run"]
print(f"{r0['model_type']}, {r0['threads']} threads, {r0['isa']}; decode against the read bandwidth measured "
      "before each run (roofline) and against single reads between its steps (interleaved); medians of the runs")
print("| weights | cache | test | t/s | GB/s read | decode / roofline (range) | interleaved | attention share "
      "| products / bandwidth | ceiling | prefill t/s | prefill / FMA peak |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for row in (r for r in rows if not r.get("scaling")):
    j = row["run"]
    test = f"tg{j['n_gen']}" + (f" @ d{j['depth']}" if j["depth"] else "")
    pp = f"{j['pp_tokens_per_s']:.1f}" if j["n_prompt"] else ""
    ppp = f"{j['pp_peak_pct']:.1f}%" if j["n_prompt"] else ""
    rows_bw = 100 * j["tg_rows_gb_s"] / j["bandwidth_gb_s"] if j["bandwidth_gb_s"] > 0 else 0
    print(f"| {row['weights'].upper()} | {row['cache'].upper()} | {test} | {j['tg_tokens_per_s']:.2f} | "
          f"{j['bandwidth_gb_s']:.1f} | {j['tg_roofline_pct']:.1f}% ({j['tg_roofline_pct_min']:.1f}-"
          f"{j['tg_roofline_pct_max']:.1f}) | {j['tgi_roofline_pct']:.1f}% | {j['tg_attn_pct']:.1f}% | "
          f"{rows_bw:.0f}% | {j.get('tg_attn_ceiling_pct', 100):.1f}% | {pp} | {ppp} |")
sc = [r for r in rows if r.get("scaling")]
if sc:
    print("\nthreads, each count's runs in turn within a repetition (dsc bench -t); speedup: the median of the "
          "per-repetition ratios to the first count (range)")
    print("| weights | threads | pp t/s | tg t/s | prefill speedup | decode speedup |")
    print("|---|---|---|---|---|---|")
    for row in sc:
        j = row["run"]
        x = lambda k: f"{j[k]:.2f}x ({j[k + '_min']:.2f}-{j[k + '_max']:.2f})"
        print(f"| {row['weights'].upper()} | {j['threads']} | {j['pp_tokens_per_s']:.1f} | {j['tg_tokens_per_s']:.2f} | "
              f"{x('pp_speedup_vs') if j['threads'] != j['vs_threads'] else ''} | "
              f"{x('tg_speedup_vs') if j['threads'] != j['vs_threads'] else ''} |")
PY
echo "(each run's JSON: $out)"
