#!/bin/sh
# `dsc plot` end to end: a small `dsc train` log (val_loss, per-layer expert
# load with a dense layer's null, a skipped step and a rollback) and a small
# GRPO log become PNGs of the asked size with nothing on stderr; every kind of
# bad input exits 1 with one line "dsc: plot: ..." and leaves no file behind.
#   test_plot.sh DSC_BINARY [TRAIN_LOG]   (TRAIN_LOG: a real log to draw too)
set -u
DSC=$1
REAL=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
# Under ASan: fontconfig's and libltdl's memory lives until exit (lsan.supp).
LSAN_OPTIONS="suppressions=$HERE/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export LSAN_OPTIONS
W=$(mktemp -d)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }

# png_size FILE: "WIDTH HEIGHT" from the IHDR chunk, or nothing when FILE is no PNG
png_size() {
    [ "$(od -An -tx1 -N8 "$1" 2>/dev/null | tr -d ' \n')" = 89504e470d0a1a0a ] || return 0
    od -An -tu1 -j16 -N8 "$1" | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4, $5 * 16777216 + $6 * 65536 + $7 * 256 + $8 }'
}
# draws NAME SIZE OUT ARGS...: dsc plot ARGS -o OUT succeeds silently with a PNG of SIZE ("W H"), over 5 kB
draws() {
    name=$1 size=$2 out=$3
    shift 3
    "$DSC" plot "$@" -o "$out" >"$W/out" 2>"$W/err"
    rc=$?
    got=$(png_size "$out")
    bytes=$( (wc -c <"$out") 2>/dev/null || echo 0)
    if [ $rc -eq 0 ] && [ "$got" = "$size" ] && [ "$bytes" -gt 5000 ] && [ ! -s "$W/err" ]; then ok "$name"
    else ko "$name (rc $rc, size '$got', $bytes bytes)"; head -5 "$W/err"; fi
}
# fails NAME PATTERN ARGS...: dsc plot ARGS exits 1 with one stderr line "dsc: plot: ..." matching PATTERN
fails() {
    name=$1 pat=$2
    shift 2
    timeout 20 "$DSC" plot "$@" >"$W/out" 2>"$W/err"
    rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$W/err")" -eq 1 ] && grep -q "^dsc: plot: " "$W/err" && grep -q -- "$pat" "$W/err"
    then ok "$name"
    else ko "$name (rc $rc)"; head -5 "$W/err"; fi
}

# ---------------------------------------------------------------- logs
# A train log: 120 steps, val_loss every 20, a skipped step at 50, a rollback
# from 90 to 80 (steps 81-90 are logged twice), the last line still being written.
awk 'BEGIN {
    for (s = 1; s <= 120; s++) {
        if (s == 50) { printf "{\"step\":50,\"event\":\"skipped\",\"reason\":\"spike\",\"loss\":40.5,\"grad_norm\":null}\n"; continue }
        l = 4 + 4 * exp(-s / 25) + 0.1 * sin(s)
        printf "{\"step\":%d,\"loss\":%.5f", s, l
        if (s % 20 == 0) printf ",\"val_loss\":%.5f", l + 0.2
        printf ",\"lr\":%g,\"grad_norm\":%.4f,\"tokens_per_s\":3000.5", 0.002 * (s < 10 ? s / 10 : 1), 1 + 3 * exp(-s / 30)
        printf ",\"expert_load_max_mean\":[null,%.4f,%.4f],\"bias_min\":[null,-0.1,-0.2],\"bias_max\":[null,0.1,0.2]}\n", 1 + 1 / s, 1.2 + 0.1 * cos(s)
        if (s == 90) { printf "{\"step\":80,\"event\":\"rolled_back\",\"from_step\":90,\"to_step\":80,\"skipped_sequences\":160,\"rollbacks\":1}\n" }
        if (s == 90 && !again) { again = 1; s = 80 }
    }
    printf "{\"step\":121,\"loss\":4.0"
}' >"$W/train.jsonl"
# A GRPO log: 60 steps, eval_accuracy every 10.
awk 'BEGIN {
    for (s = 1; s <= 60; s++) {
        printf "{\"step\":%d,\"reward\":%.4f,\"accuracy\":%.4f,\"response_length\":%d,\"kl\":%.5f", s, s / 60, s / 80, 200 + 3 * s, 0.001 * s
        printf ",\"entropy\":%.4f,\"clip_frac\":%.4f,\"loss\":%.4f,\"lr\":1e-6", 1.5 - s / 100, 0.01 * (s % 7), 0.1 - s / 1000
        if (s % 10 == 0) printf ",\"eval_accuracy\":%.4f", s / 90
        printf "}\n"
    }
}' >"$W/grpo.jsonl"

# ---------------------------------------------------------------- charts
draws "train log: loss + val_loss + baseline, expert load, events" "1000 700" "$W/train.png" "$W/train.jsonl" --baseline 5.119
draws "GRPO log: a grid of six panels" "1000 700" "$W/grpo.png" "$W/grpo.jsonl" --title "GRPO #1"
draws "--keys lr,grad_norm --smooth 9 --width 640 --height 480" "640 480" "$W/keys.png" "$W/train.jsonl" \
    --keys lr,grad_norm --smooth 9 --width 640 --height 480
draws "--keys reward,accuracy,eval_accuracy --baseline (first panel)" "1000 700" "$W/keys2.png" "$W/grpo.jsonl" \
    --keys reward,accuracy,eval_accuracy --baseline 0.5
if [ -s "$W/train.png" ] && [ -s "$W/grpo.png" ] && ! cmp -s "$W/train.png" "$W/grpo.png"; then ok "the train and GRPO charts differ"
else ko "the train and GRPO charts differ"; fi
# mkstemp makes 0600; the chart gets 0666 less the umask, like any new file
mode=$(umask 022 && "$DSC" plot "$W/train.jsonl" -o "$W/mode.png" 2>/dev/null && stat -c %a "$W/mode.png")
if [ "$mode" = 644 ]; then ok "the PNG has the umask's permissions"; else ko "the PNG has mode '$mode'"; fi
if [ -n "$REAL" ] && [ -f "$REAL" ]; then draws "a real train log ($REAL)" "1000 700" "$W/real.png" "$REAL" --baseline 5.119; fi

# ---------------------------------------------------------------- bad input
printf '' >"$W/empty.jsonl"
printf '\n  \n' >"$W/blank.jsonl"
printf '{"step":1,"event":"checkpoint"}\n{"note":"no step"}\n{"step":2,"name":"x","ok":true}\n' >"$W/nonum.jsonl"
printf '{"step":1,"loss":5}\n{"step":2,"loss":4}\n{"step":3,"loss":\n{"step":4,"loss":3}\n' >"$W/bad.jsonl"
printf '{"step":1,"loss":5}\n[1,2]\n' >"$W/array.jsonl"
printf '{"step":1,"loss":5}\n{"step":"two","loss":4}\n' >"$W/step.jsonl"
printf '{"step":1,"loss":5} {"step":2}\n' >"$W/trailing.jsonl"
printf '{"step":1,"loss":5}\n{"step":1e300,"loss":4}\n' >"$W/huge.jsonl"
fails "missing log" "$W/nope.jsonl: cannot open" "$W/nope.jsonl" -o "$W/x.png"
fails "a directory as the log" "$W: is a directory" "$W" -o "$W/x.png"
mkfifo "$W/fifo.jsonl"
fails "a FIFO as the log (refused, not waited on)" "fifo.jsonl: not a regular file" "$W/fifo.jsonl" -o "$W/x.png"
fails "empty log" "empty log" "$W/empty.jsonl" -o "$W/x.png"
fails "blank lines only" "empty log" "$W/blank.jsonl" -o "$W/x.png"
fails "no numeric key" "no numeric key to plot" "$W/nonum.jsonl" -o "$W/x.png"
fails "malformed JSON names the line" "bad.jsonl:3: malformed JSON" "$W/bad.jsonl" -o "$W/x.png"
fails "a line that is not an object" "array.jsonl:2: not a JSON object" "$W/array.jsonl" -o "$W/x.png"
fails "a step that is not a number" "step.jsonl:2: \"step\" is not a number" "$W/step.jsonl" -o "$W/x.png"
fails "a step beyond 2^53" "huge.jsonl:2: \"step\" 1e+300 is out of range" "$W/huge.jsonl" -o "$W/x.png"
fails "trailing text after the object" "trailing.jsonl:1: malformed JSON" "$W/trailing.jsonl" -o "$W/x.png"
fails "unknown --keys name" "no values for key 'nope'" "$W/train.jsonl" -o "$W/x.png" --keys loss,nope
fails "--keys of a null-only member" "no values for key 'reason'" "$W/train.jsonl" -o "$W/x.png" --keys reason
fails "empty --keys" "no key given" "$W/train.jsonl" -o "$W/x.png" --keys ,
fails "unwritable output" "cannot write $W/no/such/dir/x.png" "$W/train.jsonl" -o "$W/no/such/dir/x.png"
fails "output is a directory" "cannot write" "$W/train.jsonl" -o "$W"
fails "no -o" "no output given" "$W/train.jsonl"
fails "no log" "no log given" -o "$W/x.png"
fails "two logs" "one log at a time" "$W/train.jsonl" "$W/grpo.jsonl" -o "$W/x.png"
fails "unknown option" "unknown option '--colour'" "$W/train.jsonl" -o "$W/x.png" --colour red
fails "option without its value" "--width needs a value" "$W/train.jsonl" -o "$W/x.png" --width
fails "bad --width" "--width: '9x' is not an integer" "$W/train.jsonl" -o "$W/x.png" --width 9x
fails "bad --smooth" "--smooth: '0' is not an integer" "$W/train.jsonl" -o "$W/x.png" --smooth 0
fails "bad --baseline" "--baseline: 'nan' is not a number" "$W/train.jsonl" -o "$W/x.png" --baseline nan
if [ ! -e "$W/x.png" ]; then ok "no output from the failures"; else ko "a failure left $W/x.png"; fi
echo "an older chart" >"$W/keep.png"
cp "$W/keep.png" "$W/kept.png"
fails "a failure keeps the old chart" "malformed JSON" "$W/bad.jsonl" -o "$W/keep.png"
if cmp -s "$W/kept.png" "$W/keep.png"; then ok "the old chart is untouched"; else ko "the old chart changed"; fi
leftover=$(find "$W" -name '*.png.*' | head -1)
if [ -z "$leftover" ]; then ok "no temporary files left"; else ko "temporary file left: $leftover"; fi

echo "plot: $pass passed, $fail failed"
[ $fail -eq 0 ]
