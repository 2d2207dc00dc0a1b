#!/bin/sh
# test_cli.sh — the R1 pipeline's commands end to end on a tiny model, in
# seconds: pretrain -> sft -> grpo -> eval and run --samples --vote, and
# rejection sampling (eval --keep) into sft; their outputs, determinism for a
# seed, and bad input.
#
#   tests/rl/test_cli.sh DSC
set -u
DSC=${1:?usage: test_cli.sh DSC}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
# expect_fail NAME PATTERN CMD...: exit 1, exactly one stderr line, matching PATTERN
expect_fail() {
  name=$1 pat=$2; shift 2
  "$@" > "$T/out" 2> "$T/err"; rc=$?
  n=$(wc -l < "$T/err" | tr -d ' ')
  if [ $rc -eq 1 ] && [ "$n" = 1 ] && grep -q -- "$pat" "$T/err"; then ok
  else bad "$name: exit $rc, $n stderr lines: $(head -c 300 "$T/err")"; fi
}

cat > "$T/tiny.json" <<'CFG'
{"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 384,
 "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32, "num_hidden_layers": 2,
 "num_nextn_predict_layers": 0, "num_attention_heads": 2, "num_key_value_heads": 2, "q_lora_rank": 32,
 "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16, "n_routed_experts": 4,
 "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1, "topk_method": "noaux_tc",
 "scoring_func": "sigmoid", "norm_topk_prob": true, "routed_scaling_factor": 2.5, "first_k_dense_replace": 1,
 "moe_layer_freq": 1, "hidden_act": "silu", "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "rope_scaling": null,
 "max_position_embeddings": 512, "attention_bias": false, "tie_word_embeddings": false, "bos_token_id": 0,
 "eos_token_id": 1, "torch_dtype": "float32"}
CFG

"$DSC" tasks --family all --n 600 --seed 1 --format text -o "$T/pre.txt" &&
"$DSC" tasks --family all --n 120 --seed 2 --format sft -o "$T/sft.jsonl" &&
"$DSC" tasks --family all --n 9 --seed 777 -o "$T/held.jsonl" &&
"$DSC" train-tokenizer --data "$T/pre.txt" --vocab 384 --split-digits -o "$T/tok.json" 2>/dev/null &&
"$DSC" train "$T/tiny.json" --data "$T/pre.txt" --tokenizer "$T/tok.json" -o "$T/pre" --batch 4 --seq 128 \
  --steps 3 --eval-every 0 -t 1 2>/dev/null && ok || bad "pretraining a tiny model"
# the tokenizer keeps digits apart
[ "$("$DSC" tokenize --tokenizer "$T/tok.json" -p "12345" | wc -w)" = 5 ] && ok || bad "--split-digits: 5 digits are not 5 tokens"

# SFT: the log has one line per step and the loss counts answer tokens only
"$DSC" sft "$T/pre" --data "$T/sft.jsonl" -o "$T/sft" --batch 4 --seq 320 --steps 3 --eval-every 0 -t 1 2>/dev/null &&
  [ "$(grep -c '"step"' "$T/sft/log.jsonl")" = 3 ] && "$DSC" info -m "$T/sft" > /dev/null && ok || bad "sft"
expect_fail "sft: example longer than a sequence" "sft.jsonl:1: the example has" \
  "$DSC" sft "$T/pre" --data "$T/sft.jsonl" -o "$T/x" --seq 16 --steps 1 -t 1
printf '{"messages": [{"role": "user", "content": "hi"}]}\n' > "$T/one.jsonl"
expect_fail "sft: no answer" "one.jsonl:1: messages" "$DSC" sft "$T/pre" --data "$T/one.jsonl" -o "$T/x" --steps 1 -t 1
expect_fail "sft: missing data" "nope.jsonl" "$DSC" sft "$T/pre" --data "$T/nope.jsonl" -o "$T/x" --steps 1 -t 1
[ ! -e "$T/x" ] && ok || bad "sft: a run refused on its inputs left its output directory behind"

# GRPO: every group kept (--no-dynamic) so the update runs (an untrained model earns no
# reward, so only the weight decay moves the weights); logged keys; same seed, same run
grpo() { "$DSC" grpo "$T/sft" -o "$1" --steps 2 --prompts 2 --group 3 --max-new 24 --threads 1 --beta 0.05 \
           --inner 2 --no-dynamic --wd 0.01 --seed 5 2>/dev/null; }
grpo "$T/g1" && grpo "$T/g2" && ok || bad "grpo runs"
[ "$(grep -c '"step"' "$T/g1/log.jsonl")" = 2 ] && ok || bad "grpo: log lines"
for k in reward accuracy format response_length kl entropy clip_frac loss grad_norm groups_kept; do
  grep -q "\"$k\": [-0-9.e]*[,}]" "$T/g1/log.jsonl" && ok || bad "grpo: log has no $k"
done
[ "$(sed 's/"sample_s".*//' "$T/g1/log.jsonl" | md5sum)" = "$(sed 's/"sample_s".*//' "$T/g2/log.jsonl" | md5sum)" ] &&
  cmp -s "$T/g1/model.safetensors" "$T/g2/model.safetensors" && ok || bad "grpo: two runs with one seed differ"
cmp -s "$T/g1/model.safetensors" "$T/sft/model.safetensors" && bad "grpo: no update was applied" || ok
expect_fail "grpo: unknown family" "unknown family 'sub'" "$DSC" grpo "$T/sft" -o "$T/gx" --tasks add,sub
expect_fail "grpo: group of 1" "group" "$DSC" grpo "$T/sft" -o "$T/gx" --group 1
expect_fail "grpo: a fractional count" "--steps: '1.5' is not an integer" "$DSC" grpo "$T/sft" -o "$T/gx" --steps 1.5
expect_fail "grpo: 'all' in a list" "'all' goes alone" "$DSC" grpo "$T/sft" -o "$T/gx" --tasks add,all
expect_fail "grpo: --max-new beyond the positions" "--max-new 8192 .* max_position_embeddings 512" \
  "$DSC" grpo "$T/sft" -o "$T/gx" --max-new 8192
expect_fail "grpo: --ref of another vocabulary" "vocab_size .* differs" "$DSC" grpo "$T/sft" -o "$T/gx" --steps 1 \
  --prompts 1 --group 2 --max-new 8 --threads 1 --ref "$(dirname "$0")/../../models/dsc-brown-v3" --beta 0.1
[ ! -e "$T/gx" ] && ok || bad "grpo: a run refused on its inputs created its output directory"
expect_fail "grpo: level too high" "level 4" "$DSC" grpo "$T/sft" -o "$T/x" --tasks mul --level 4 --steps 1
expect_fail "grpo: no output" "-o OUT" "$DSC" grpo "$T/sft"

# eval: JSON with the fields, the same figures twice, per-sample details
ev() { "$DSC" eval -m "$T/g1" --tasks "$T/held.jsonl" --samples 4 --vote --max-new 24 --threads 1 --seed 3 "$@"; }
ev --details "$T/det.jsonl" > "$T/e1" 2>/dev/null && ev > "$T/e2" 2>/dev/null && ok || bad "eval runs"
grep -q '"n": 9, "samples": 4, "temp": 0.6, "pass_at_1": [0-9.]*, "cons_at_4": [0-9.]*' "$T/e1" &&
  grep -q '"add": {"n": 3' "$T/e1" && grep -q '"countdown": {"n": 3' "$T/e1" && ok || bad "eval output: $(cat "$T/e1")"
cmp -s "$T/e1" "$T/e2" && ok || bad "eval: two runs with one seed differ"
[ "$(wc -l < "$T/det.jsonl" | tr -d ' ')" = 36 ] && grep -q '"completion":' "$T/det.jsonl" && ok || bad "eval details"
printf '{"question": "What is 2 + 2?", "answer": "5"}\n' > "$T/wrong.jsonl"
expect_fail "eval: wrong answer in the file" "wrong.jsonl:1:" "$DSC" eval -m "$T/g1" --tasks "$T/wrong.jsonl"
printf '{"question": "What is 2 + 2?", "answer": "4"}\n{"question": 7}\n' > "$T/bad.jsonl"
expect_fail "eval: malformed line" "bad.jsonl:2:" "$DSC" eval -m "$T/g1" --tasks "$T/bad.jsonl"
expect_fail "eval: no task file" "--tasks" "$DSC" eval -m "$T/g1"
expect_fail "eval: no model" "nope" "$DSC" eval -m "$T/nope" --tasks "$T/held.jsonl"
expect_fail "eval: samples 0" "samples" "$DSC" eval -m "$T/g1" --tasks "$T/held.jsonl" --samples 0

# rejection sampling: the bundled reasoner's correct samples as SFT examples, then a
# student of another tokenizer fine-tuned on them (distillation)
R1="$(dirname "$0")/../../models/dsc-r1-tiny"
{ "$DSC" tasks --family add --n 10 --seed 778 && "$DSC" tasks --family countdown --n 10 --seed 778; } > "$T/addq.jsonl" 2>/dev/null
"$DSC" eval -m "$R1" --tasks "$T/addq.jsonl" --samples 6 --temp 1 --max-new 200 --threads 1 --seed 4 \
  --keep "$T/kept.jsonl" --keep-max 1 --details "$T/kdet.jsonl" > "$T/ke" 2>/dev/null && ok || bad "eval --keep runs"
python3 - "$T/addq.jsonl" "$T/kdet.jsonl" "$T/kept.jsonl" "$T/ke" <<'PY' && ok || bad "eval --keep: the kept examples"
import json, re, sys
probs = [json.loads(l) for l in open(sys.argv[1])]
det = [json.loads(l) for l in open(sys.argv[2])]
kept = [json.loads(l) for l in open(sys.argv[3])]
summary = json.loads(open(sys.argv[4]).read())
# what should be kept, from the details: per question the first two distinct texts of the
# samples that are correct, well formatted and ended (the sums checked by the test itself)
want, capped = [], 0
for q in probs:
    add = re.fullmatch(r"What is (\d+) \+ (\d+)\?", q["question"])
    texts = []
    for d in det:
        if d["question"] != q["question"] or not (d["correct"] and d["format_ok"] and d["finished"]): continue
        box = re.findall(r"\\boxed\{(-?\d+)\}", d["completion"])
        assert not add or (box and int(box[-1]) == int(add[1]) + int(add[2])), ("marked correct, but wrong", d)
        if d["completion"] not in texts: texts.append(d["completion"])
    want += [(q["question"], "<think>\n" + t) for t in texts[:1]]
    capped += len(texts) > 1
got = []
for k in kept:
    m = k["messages"]
    assert [x["role"] for x in m] == ["user", "assistant"], k
    got.append((m[0]["content"], m[1]["content"]))
assert got == want, (got, want)
assert len(got) > 3 and capped > 0, (len(got), capped)  # some kept, and --keep-max 1 left some out
assert summary["kept"] == len(got) and summary["kept_problems"] == len({q for q, _ in got}), summary
print(f"kept {len(got)} of {len(det)} samples, {capped} problems capped")
PY
"$DSC" sft "$T/pre" --data "$T/kept.jsonl" -o "$T/distilled" --batch 2 --seq 320 --steps 2 --eval-every 0 --val-frac 0 \
  -t 1 2>/dev/null && [ "$(grep -c '"step"' "$T/distilled/log.jsonl")" = 2 ] && ok || bad "sft on the kept examples"
expect_fail "eval --keep: an unwritable file" "nodir/k.jsonl" "$DSC" eval -m "$R1" --tasks "$T/addq.jsonl" \
  --keep "$T/nodir/k.jsonl" --threads 1
expect_fail "eval --keep-max: a negative count" "--keep-max" "$DSC" eval -m "$R1" --tasks "$T/addq.jsonl" \
  --keep "$T/k.jsonl" --keep-max -1

# run --samples --vote: one line per sample and the vote
"$DSC" run -m "$T/g1" -p "What is 12 + 34?" --samples 3 --vote -n 24 -t 1 > "$T/v" 2>/dev/null &&
  [ "$(grep -c '^sample [123]:' "$T/v")" = 3 ] && grep -q '^vote: ' "$T/v" && ok || bad "run --vote: $(cat "$T/v")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
