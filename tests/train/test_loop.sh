#!/bin/sh
# The training loop and tokenizer training end to end, through the CLI:
#   test_loop.sh DSC_BINARY GOLDEN_DIR
# train-tokenizer (checked against a plain reference trainer, loaded and
# round-tripped by `dsc tokenize` / `dsc detokenize`), `dsc train` on a tiny
# DeepSeek-V3 config (the loss falls; --accum; --resume is exact; MTP), the
# stability machinery (an injected absurd batch is skipped; an lr burst
# diverges, rolls back and recovers), and the checkpoint in generate / run /
# logits. Deterministic; a few seconds on one thread.
set -u
DSC=$1
GOLDEN=$2
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/harness.sh"
# fails NAME PATTERN COMMAND...: the command must exit 1 with one line matching PATTERN
fails() {
    name=$1 pat=$2
    shift 2
    "$@" >"$W/out" 2>"$W/err"
    rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$W/err")" -eq 1 ] && grep -q -- "$pat" "$W/err"; then ok "$name"
    else ko "$name (rc $rc)"; cat "$W/err" | head -5; fi
}
py() { python3 - "$@"; }
# same_run DIR1 DIR2 KEY...: 20 logged steps with equal KEYs, and the same weights
same_run() {
    python3 -c '
import json, sys
d1, d2, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
def rows(d): return [(r["step"],) + tuple(r.get(k) for k in keys) for r in map(json.loads, open(d + "/log.jsonl"))]
a, b = rows(d1), rows(d2)
assert len(a) == 20 and a == b, [(x, y) for x, y in zip(a, b) if x != y][:3] or (len(a), len(b))
assert open(d1 + "/model.safetensors", "rb").read() == open(d2 + "/model.safetensors", "rb").read()
' "$@"
}

# ---------------------------------------------------------------- tokenizer
TEXT="$W/text.txt"
cat "$ROOT/tests/data/train_text.txt" "$ROOT/tests/train/bpe_ref.py" > "$TEXT"
[ -f "$GOLDEN/../STYLE.md" ] && cat "$GOLDEN/../STYLE.md" >> "$TEXT"
TOK="$W/tok"
mkdir -p "$TOK"
check "train-tokenizer --vocab 600" "$DSC" train-tokenizer --data "$ROOT/tests/data/train_text.txt" "$TEXT" --vocab 600 -o "$TOK/tokenizer.json"

check "tokenizer.json: 600 ids without gaps, added tokens 0-5 in vocab, DeepSeek-V3 pre-tokenizer" py "$TOK" "$GOLDEN" <<'EOF'
import json, sys
tok = json.load(open(sys.argv[1] + "/tokenizer.json"))
vocab = tok["model"]["vocab"]
assert sorted(vocab.values()) == list(range(600)), "ids are not 0..599"
added = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]
assert [(a["id"], a["content"]) for a in tok["added_tokens"]] == list(enumerate(added)), tok["added_tokens"]
assert all(vocab[a] == i for i, a in enumerate(added)), "added tokens not in model.vocab at their ids"
assert len(tok["model"]["merges"]) == 600 - 262
ref = json.load(open(sys.argv[2] + "/tokenizer/deepseek-v3/tokenizer.json"))
assert tok["pre_tokenizer"] == ref["pre_tokenizer"], "pre_tokenizer differs from DeepSeek-V3's"
cfg = json.load(open(sys.argv[1] + "/tokenizer_config.json"))
assert "<｜Assistant｜><think>\\n" in cfg["chat_template"] and cfg["bos_token"] == added[0] and cfg["eos_token"] == added[1]
EOF

# round trip of a text through dsc tokenize / detokenize
"$DSC" tokenize --tokenizer "$TOK/tokenizer.json" -f "$TEXT" >"$W/ids" 2>"$W/err"
"$DSC" detokenize --tokenizer "$TOK/tokenizer.json" --ids "$(cat "$W/ids")" >"$W/back" 2>>"$W/err"
check "dsc tokenize + detokenize round-trip the training text exactly ($(wc -w <"$W/ids") ids)" py "$TEXT" "$W/back" "$W/ids" <<'EOF'
import sys
text = open(sys.argv[1], "rb").read()
back = open(sys.argv[2], "rb").read()
ids = open(sys.argv[3]).read().split()
assert back[:-1] == text and back[-1:] == b"\n", "text differs after the round trip"
assert len(ids) < 0.6 * len(text), f"{len(ids)} ids for {len(text)} bytes: merges not used"
EOF
"$DSC" tokenize --tokenizer "$TOK/tokenizer.json" --special -p '<｜User｜>hi<｜Assistant｜><think>' >"$W/ids" 2>&1
check "special tokens are single ids (--special)" py "$W/ids" <<'EOF'
import sys
ids = open(sys.argv[1]).read().split()
assert ids[0] == "2" and ids[-2:] == ["3", "4"] and len(ids) <= 5, ids
EOF

python3 "$HERE/bpe_ref.py" gen "$W/ascii.txt"
"$DSC" train-tokenizer --data "$W/ascii.txt" --vocab 420 -o "$W/ref.json" 2>"$W/err"
check "merges and ids equal a plain reference trainer (ASCII corpus, 420 ids)" python3 "$HERE/bpe_ref.py" check "$W/ascii.txt" "$W/ref.json" 420
"$DSC" train-tokenizer --data "$W/ascii.txt" --vocab 5000 -o "$W/ref5000.json" 2>"$W/err"
check "vocabulary ends when no pair occurs twice (same as the reference)" python3 "$HERE/bpe_ref.py" check "$W/ascii.txt" "$W/ref5000.json" 5000

printf 'ok \377 bad\n' >"$W/bad.txt"
fails "train-tokenizer: invalid UTF-8 is one line naming the file" "bad.txt: invalid UTF-8 at byte offset 3" \
    "$DSC" train-tokenizer --data "$W/bad.txt" --vocab 300 -o "$W/x.json"
fails "train-tokenizer: a vocabulary below 262 is refused" "vocab" "$DSC" train-tokenizer --data "$TEXT" --vocab 100 -o "$W/x.json"
: >"$W/empty.txt"
fails "train-tokenizer: files without text are one line, no tokenizer written" "hold no text" \
    "$DSC" train-tokenizer --data "$W/empty.txt" --vocab 300 -o "$W/x.json"
fails "train-tokenizer: a missing file" "nope.txt: cannot open" "$DSC" train-tokenizer --data "$W/nope.txt" --vocab 300 -o "$W/x.json"
fails "train-tokenizer: an unknown option is one line" "unknown option '--foo'" \
    "$DSC" train-tokenizer --data "$TEXT" --vocab 300 --foo -o "$W/x.json"
fails "train-tokenizer: -o in a missing directory, before training" "nodir is not a directory" \
    "$DSC" train-tokenizer --data "$TEXT" --vocab 300 -o "$W/nodir/x.json"

# ---------------------------------------------------------------- training
# a tiny DeepSeek-V3 (MTP layer included, 2 layers of 4 routed experts)
cp "$HERE/tiny-v3.json" "$W/config.json"
TRAIN="$DSC train $W/config.json --data $ROOT/tests/data/train_text.txt $TEXT --tokenizer $TOK/tokenizer.json --batch 4 --seq 32"
TRAIN="$TRAIN --lr 1e-2 --warmup 5 --gamma 0.01 --eval-every 10 --threads 1"

check "train 30 steps from a config" $TRAIN --steps 30 -o "$W/run"
check "the loss falls clearly; val_loss, lr, grad_norm, tokens/s, expert loads and bias range logged" py "$W/run" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/log.jsonl")]
steps = [r for r in rows if "event" not in r]
assert [r["step"] for r in steps] == list(range(1, 31)), [r["step"] for r in rows]
first, last = steps[0]["loss"], sum(r["loss"] for r in steps[-5:]) / 5
assert last < first - 0.7, f"loss {first:.3f} -> {last:.3f}"
vals = [r["val_loss"] for r in steps if "val_loss" in r]
assert len(vals) == 3 and vals[-1] < first - 0.5, vals
for k in ("lr", "grad_norm", "tokens_per_s"):
    assert all(r[k] > 0 for r in steps), k
assert all(len(r["expert_load_max_mean"]) == 2 and all(1 <= x <= 2 for x in r["expert_load_max_mean"]) for r in steps)
assert steps[-1]["bias_max"][0] > steps[-1]["bias_min"][0], "the correction bias did not move"
print(f"loss {first:.3f} -> {last:.3f} (val {vals[-1]:.3f})")
EOF
check "checkpoint in the published layout, config without MTP, F32" py "$W/run" <<'EOF'
import json, os, struct, sys
d = sys.argv[1]
for f in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "optimizer.safetensors",
          "trainer_state.json", "log.jsonl"):
    assert os.path.exists(os.path.join(d, f)), f
cfg = json.load(open(d + "/config.json"))
assert cfg["num_nextn_predict_layers"] == 0 and cfg["torch_dtype"] == "float32"
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
names = [k for k in hdr if k != "__metadata__"]
assert all(hdr[k]["dtype"] == "F32" for k in names)
assert "model.layers.1.mlp.gate.e_score_correction_bias" in names and "lm_head.weight" in names
assert not any(k.startswith("model.layers.2.") for k in names), "an MTP layer was written"
EOF

check "the checkpoint loads in dsc generate" "$DSC" generate -m "$W/run" --tokens "0 40 50" -n 6 --ids -t 1
check "the checkpoint loads in dsc logits" "$DSC" logits -m "$W/run" --tokens "0 40 50" -o "$W/logits.safetensors" -t 1
check "the checkpoint answers in dsc run --tokenizer (R1 template found)" sh -c \
    "'$DSC' run -m '$W/run' --tokenizer '$W/run/tokenizer.json' -p 'What is dsc?' -n 12 --temp 0 -t 1 --verbose-prompt 2>&1 | grep -q 'prompt'"

# gradient accumulation: 2 x 2 sequences = one batch of 4 (the same mean gradient)
check "train --accum 2 --batch 2 matches --batch 4 (first steps)" sh -c "
  $DSC train $W/config.json --data $ROOT/tests/data/train_text.txt $TEXT --tokenizer $TOK/tokenizer.json --seq 32 --lr 1e-2 \
    --warmup 5 --gamma 0.01 --eval-every 0 --threads 1 --steps 3 --batch 2 --accum 2 -o $W/acc2 2>/dev/null &&
  $DSC train $W/config.json --data $ROOT/tests/data/train_text.txt $TEXT --tokenizer $TOK/tokenizer.json --seq 32 --lr 1e-2 \
    --warmup 5 --gamma 0.01 --eval-every 0 --threads 1 --steps 3 --batch 4 --accum 1 -o $W/acc1 2>/dev/null &&
  python3 -c '
import json, sys
a = [json.loads(l) for l in open(\"$W/acc2/log.jsonl\")]
b = [json.loads(l) for l in open(\"$W/acc1/log.jsonl\")]
for x, y in zip(a, b):
    for k in (\"loss\", \"grad_norm\"):
        assert abs(x[k] - y[k]) <= 2e-4 * abs(y[k]), (k, x[k], y[k])
    assert x[\"expert_load_max_mean\"] == y[\"expert_load_max_mean\"]
'"

# resume: 20 steps at once = 10, then --resume to 20 (schedule of 20 both times)
check "20 steps in one run" $TRAIN --steps 20 --save-every 7 -o "$W/one"
check "10 steps (--stop-at 10), then --resume" sh -c "$TRAIN --steps 20 --save-every 7 --stop-at 10 -o $W/two 2>/dev/null &&
    $TRAIN --steps 20 --save-every 7 --resume -o $W/two"
check "resume is exact: identical log losses and identical weights" same_run "$W/one" "$W/two" loss val_loss grad_norm
fails "--resume without a checkpoint is one line" "empty" $TRAIN --steps 5 --resume -o "$W/empty"

# a run's directory is left whole by a fresh run that fails on its inputs
cp -R "$W/two" "$W/keep" && cp -R "$W/two" "$W/keep0"
printf 'ok \377 bad\n' >"$W/bad.txt"
fails "a fresh run into a finished run's directory, on bad data, is one line" "bad.txt: invalid UTF-8" \
    "$DSC" train "$W/config.json" --data "$W/bad.txt" --tokenizer "$TOK/tokenizer.json" --batch 2 --seq 16 --steps 2 -o "$W/keep"
fails "... and with an unknown --isa" "kernel set 'nope'" $TRAIN --steps 2 --isa nope -o "$W/keep"
check "... which leaves that run's files as they were" diff -r "$W/keep0" "$W/keep"
fails "--resume with another --seed is one line naming it" "seed 0, not 5" \
    $TRAIN --steps 20 --save-every 7 --resume --seed 5 -o "$W/keep"
py "$W/config.json" "$W/other.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["rms_norm_eps"] = 1e-5; json.dump(c, open(sys.argv[2], "w"))
EOF
OTHER=$(echo "$TRAIN" | sed "s|$W/config.json|$W/other.json|")
fails "--resume with another CONFIG is one line naming the field" "its rms_norm_eps differs from the run's" \
    $OTHER --steps 22 --save-every 7 --resume -o "$W/keep"
cp -R "$W/keep" "$W/keep2"
OWN=$(echo "$TRAIN" | sed "s|$W/config.json|$W/keep2|")
check "... with the run's own directory as CONFIG_OR_DIR, it goes on" $OWN --steps 22 --save-every 7 --resume -o "$W/keep2"
check "--resume of a run already at --steps says there is nothing to train, and leaves it as it was" sh -c "
    cp -R $W/keep2 $W/keep3 && $OWN --steps 22 --save-every 7 --resume -o $W/keep2 2>$W/nothing.err &&
    grep -q 'at step 22 already.*nothing to train' $W/nothing.err && diff -r $W/keep2 $W/keep3"
py "$W/keep/trainer_state.json" <<'EOF'
import json, sys
st = json.load(open(sys.argv[1])); st["log_bytes"] = 10**11; json.dump(st, open(sys.argv[1], "w"))
EOF
fails "--resume with log_bytes beyond log.jsonl is one line (no 100 GB file)" "log_bytes 100000000000 is beyond" \
    $TRAIN --steps 20 --save-every 7 --resume -o "$W/keep"
mkdir -p "$W/fifo" && mkfifo "$W/fifo/log.jsonl"
fails "log.jsonl a FIFO nothing reads is one line, not a wait" "a FIFO that nothing reads" \
    timeout 20 $TRAIN --steps 2 -o "$W/fifo"
fails "--mtp-lambda with --seq 1 is one line (no token t + 2 to predict)" "mtp-lambda needs sequences of 2" \
    "$DSC" train "$W/config.json" --data "$TEXT" --tokenizer "$TOK/tokenizer.json" --batch 2 --seq 1 --steps 2 \
    --mtp-lambda 0.3 -o "$W/mtpseq1"
mkdir -p "$W/tokdir/tokenizer_config.json" && cp "$TOK/tokenizer.json" "$W/tokdir/"
fails "a bad tokenizer_config.json beside the tokenizer is found before training" "tokenizer_config.json: is a directory" \
    "$DSC" train "$W/config.json" --data "$TEXT" --tokenizer "$W/tokdir/tokenizer.json" --batch 2 --seq 16 --steps 2 -o "$W/tc"

# ---------------------------------------------------------------- multi-token prediction
check "--mtp-lambda 0.3: 20 steps with MTP module 0" $TRAIN --steps 20 --save-every 7 --mtp-lambda 0.3 -o "$W/mtp"
check "... logs mtp_loss, which falls; the checkpoint keeps the MTP layer (V3 names, num_nextn_predict_layers 1)" py "$W/mtp" <<'EOF'
import json, struct, sys
d = sys.argv[1]
rows = [json.loads(l) for l in open(d + "/log.jsonl") if '"event"' not in l]
m = [r["mtp_loss"] for r in rows]
assert len(m) == 20 and all(x == x for x in m) and m[-1] < m[0] - 0.5, m
assert json.load(open(d + "/config.json"))["num_nextn_predict_layers"] == 1
f = open(d + "/model.safetensors", "rb")
h = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
for k in ("eh_proj.weight", "enorm.weight", "hnorm.weight", "embed_tokens.weight", "shared_head.head.weight",
          "shared_head.norm.weight", "mlp.gate.e_score_correction_bias", "self_attn.kv_b_proj.weight"):
    assert "model.layers.2." + k in h, k
print("mtp_loss", m[0], "->", m[-1])
EOF
check "... 10 steps, then --resume with MTP" sh -c "$TRAIN --steps 20 --save-every 7 --mtp-lambda 0.3 --stop-at 10 -o $W/mtp2 2>/dev/null &&
    $TRAIN --steps 20 --save-every 7 --mtp-lambda 0.3 --resume -o $W/mtp2"
check "... is exact: identical losses (main and MTP) and weights" same_run "$W/mtp" "$W/mtp2" loss mtp_loss grad_norm
check "... and the checkpoint decodes (the MTP layer is not used)" "$DSC" generate -m "$W/mtp" --tokens "0 40 50" -n 6 --ids -t 1
sed 's/"num_nextn_predict_layers": 1/"num_nextn_predict_layers": 0/' "$W/config.json" > "$W/config0.json"
fails "--mtp-lambda with a config without an MTP layer is one line" "num_nextn_predict_layers 0" \
    "$DSC" train "$W/config0.json" --data "$TEXT" --tokenizer "$TOK/tokenizer.json" --batch 2 --seq 16 --steps 2 \
    --mtp-lambda 0.3 -o "$W/mtp0"
fails "--mtp-lambda out of range is one line" "mtp-lambda" $TRAIN --steps 2 --mtp-lambda -1 -o "$W/mtpneg"

# ---------------------------------------------------------------- stability
check "an absurd batch (one token repeated) injected at step 15" $TRAIN --steps 30 --inject-batch 15:300 -o "$W/inject"
check "... is skipped (logged), and training goes on to step 30" py "$W/inject" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/log.jsonl")]
sk = [r for r in rows if r.get("event") == "skipped"]
assert len(sk) == 1 and sk[0]["step"] == 15 and sk[0]["reason"] in ("loss", "grad_norm"), sk
steps = [r["step"] for r in rows if "event" not in r]
assert steps == list(range(1, 31)), steps
assert not any(r.get("event") == "rolled_back" for r in rows)
print("skipped:", sk[0])
EOF
check "an lr burst (x100 at step 15) with snapshots every 5 steps" $TRAIN --steps 30 --lr-burst 15:100:2 --snapshot-every 5 -o "$W/burst"
check "... diverges, is skipped, rolls back to step 10, and recovers" py "$W/burst" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/log.jsonl")]
ev = [(r["step"], r["event"]) for r in rows if r.get("event") in ("skipped", "rolled_back")]
assert ev == [(16, "skipped")] * 3 + [(10, "rolled_back")], ev
rb = next(r for r in rows if r.get("event") == "rolled_back")
assert rb["from_step"] == 15 and rb["to_step"] == 10 and rb["skipped_sequences"] == 32, rb
burst = next(r for r in rows if r.get("step") == 15 and "event" not in r)
assert burst["lr"] > 0.1, burst
after = [r for r in rows[rows.index(rb) + 1:] if "event" not in r]
assert [r["step"] for r in after] == list(range(11, 31)), [r["step"] for r in after]
assert all(r["lr"] < 0.02 for r in after), "the burst came back after the rollback"
first = rows[0]["loss"]
assert after[-1]["loss"] < first - 0.5 and after[-1]["val_loss"] < first - 0.5, after[-1]
print("rolled back:", rb)
EOF
check "without rollbacks allowed the same burst ends the run with 'diverged'" sh -c \
    "! $TRAIN --steps 30 --lr-burst 15:100:2 --max-rollbacks 0 -o $W/diverge 2>$W/err && grep -q 'giving up' $W/err &&
     grep -q '\"event\":\"diverged\"' $W/diverge/log.jsonl"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
