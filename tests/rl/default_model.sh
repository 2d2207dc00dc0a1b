#!/bin/sh
# The bundled reasoning model is the default of run, chat and eval (no -m):
# it answers in the R1 format, its answer checks out, chat works through a
# pipe, and $DSC_MODEL overrides the default.
#   tests/rl/default_model.sh DSC
set -u
DSC=${1:?usage: default_model.sh DSC}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
unset DSC_MODEL

# run without -m: reasoning, then a boxed answer (greedy: the same every time)
"$DSC" run -p "What is 21 + 34?" --temp 0 -n 200 -t 1 > "$T/run" 2> "$T/err" && grep -q '\\boxed{[0-9]*}' "$T/run" &&
  ok || bad "run without -m: $(head -c 300 "$T/run") $(tail -n 2 "$T/err")"
grep -q '+' "$T/run" && ok || bad "run without -m shows no reasoning: $(head -c 200 "$T/run")"
# --reasoning-budget N: the reasoning cut after N tokens ("</think>" written), the answer after it
for B in 0 4; do
  "$DSC" run -p "What is 348 + 275?" --temp 0 -n 200 -t 1 --reasoning-budget $B > "$T/rb$B" 2> "$T/err" &&
    "$DSC" run -p "What is 348 + 275?" --temp 0 -n 200 -t 1 --reasoning-budget $B --hide-think > "$T/ans$B" 2>> "$T/err" ||
    bad "run --reasoning-budget $B: $(tail -n 2 "$T/err")"
done
"$DSC" run -p "What is 348 + 275?" --temp 0 -n 200 -t 1 > "$T/free" 2>/dev/null
"$DSC" run -p "What is 348 + 275?" --temp 0 -n 200 -t 1 --hide-think > "$T/ans" 2>/dev/null
python3 - "$T" "$DSC" "$(dirname "$0")/../../models/dsc-r1-tiny" <<'PY' && ok || bad "run --reasoning-budget: the reasoning is not cut"
import subprocess, sys
t, dsc, model = sys.argv[1:4]
def reasoning(full, ans):
    full, ans = open(full).read(), open(ans).read()
    assert full.endswith(ans), (full, ans)
    return full[:len(full) - len(ans)]
def tokens(text):
    out = subprocess.run([dsc, "tokenize", "-m", model, "-p", text], capture_output=True, text=True, check=True).stdout
    return len(out.split()) if text else 0
free = reasoning(t + "/free", t + "/ans")
r0, r4 = reasoning(t + "/rb0", t + "/ans0"), reasoning(t + "/rb4", t + "/ans4")
assert r0 == "" and 0 < tokens(r4) <= 4 and tokens(free) > 4 and free.startswith(r4), (r0, r4, free)
PY
"$DSC" run -p "hi" --reasoning-budget 2 --mtp > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "reasoning-budget: not with --mtp" "$T/err" && ok || bad "--reasoning-budget with --mtp: $(cat "$T/err")"
# chat without -m through a pipe: two questions, /exit
printf 'What is 3 + 4?\nWhat is 12 * 3?\n/exit\n' | "$DSC" chat --temp 0 -n 200 -t 1 > "$T/chat" 2> "$T/err" &&
  [ "$(grep -c 'boxed{' "$T/chat")" -ge 2 ] && ok || bad "chat without -m: $(head -c 300 "$T/chat") $(tail -n 2 "$T/err")"
# eval without -m on a few held-out problems
"$DSC" tasks --family add --n 4 --seed 777 --level 2 -o "$T/add.jsonl" &&
  "$DSC" eval --tasks "$T/add.jsonl" --samples 2 --vote -t 1 > "$T/eval" 2> "$T/err" &&
  grep -q '"pass_at_1": [0-9.]*, "cons_at_2"' "$T/eval" && ok || bad "eval without -m: $(cat "$T/eval" "$T/err")"
# $DSC_MODEL wins over the bundled model
DSC_MODEL="$T/none" "$DSC" run -p "hi" -n 4 > /dev/null 2> "$T/err"
[ $? -eq 1 ] && grep -q "$T/none" "$T/err" && ok || bad "DSC_MODEL is not used: $(cat "$T/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
