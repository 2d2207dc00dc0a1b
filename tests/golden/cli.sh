#!/bin/sh
# The CLI contract on every golden checkpoint:
#   dsc logits -m DIR --tokens IDS -o OUT [--decode-only]   matches expected logits
#   dsc logits ... --batch-invariant [-b 5]   the same bytes as --decode-only
#   dsc generate -m DIR --tokens IDS -n 8 --temp 0 --ids [--decode-only]   prints the greedy ids
#   dsc bench -m DIR --json [--parallel N]   one JSON object with the figures named below
#   dsc generate ... --mlock   the same ids, the weights locked or a warning
# usage: cli.sh DSC TEST_GOLDEN GOLDEN_DIR
set -u
DSC=$1 TG=$2 GOLDEN=$(cd "$3" && pwd) || exit 1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
for m in v3-tiny v2lite-tiny v2-grouped-tiny v3-fp8-tiny; do
    root=$GOLDEN/models/$m
    toks=$("$TG" --ids "$root/expected.safetensors" tokens)
    want=$("$TG" --ids "$root/expected.safetensors" greedy)
    for mode in "" --decode-only; do
        name="$m ${mode:-prefill}"
        if "$DSC" logits -m "$root/model" --tokens "$toks" -o "$tmp/l.safetensors" $mode 2>"$tmp/err" &&
            "$TG" --compare "$tmp/l.safetensors" "$root/expected.safetensors" >"$tmp/cmp"; then
            ok "$name logits ($(cat "$tmp/cmp"))"
        else
            bad "$name logits ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"
        fi
        got=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 8 --temp 0 --ids $mode 2>"$tmp/err")
        if [ "$got" = "$want" ]; then ok "$name generate: $got"; else bad "$name generate: got '$got' want '$want' $(cat "$tmp/err")"; fi
    done
    # --batch-invariant: the prompt's logits (in one call, in chunks of 5) the
    # bits of one token a call, and the reference's within its tolerance
    if "$DSC" logits -m "$root/model" --tokens "$toks" -o "$tmp/d.safetensors" --decode-only 2>"$tmp/err" &&
        "$DSC" logits -m "$root/model" --tokens "$toks" -o "$tmp/i.safetensors" --batch-invariant 2>>"$tmp/err" &&
        "$DSC" logits -m "$root/model" --tokens "$toks" -o "$tmp/i5.safetensors" --batch-invariant -b 5 2>>"$tmp/err" &&
        cmp -s "$tmp/d.safetensors" "$tmp/i.safetensors" && cmp -s "$tmp/d.safetensors" "$tmp/i5.safetensors" &&
        "$TG" --compare "$tmp/i.safetensors" "$root/expected.safetensors" >"$tmp/cmp"; then
        ok "$m logits --batch-invariant [-b 5]: the bytes of --decode-only ($(cat "$tmp/cmp"))"
    else
        bad "$m logits --batch-invariant ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"
    fi
    # --mtp (speculative decoding, the MTP layer drafting): the same ids, greedy
    # (the golden ones) and sampled; a checkpoint without an MTP layer is one line.
    if grep -q '"num_nextn_predict_layers": *[1-9]' "$root/model/config.json"; then
        got=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 8 --temp 0 --ids --mtp 2>"$tmp/err")
        if [ "$got" = "$want" ] && grep -q "MTP drafts: [0-9]* of [1-9]" "$tmp/err"; then ok "$m generate --mtp: $got ($(tail -1 "$tmp/err"))"
        else bad "$m generate --mtp: got '$got' want '$want' $(cat "$tmp/err")"; fi
        a=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 40 --temp 0.9 --seed 5 --ids 2>/dev/null)
        b=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 40 --temp 0.9 --seed 5 --ids --mtp 2>/dev/null)
        if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "$m generate --mtp sampled = plain sampled"
        else bad "$m generate --mtp sampled: '$b' want '$a'"; fi
        # --mtp-p-min: the random module's guesses fall on both sides of 0.02 and
        # all below 1; the ids do not change, only how many guesses are verified.
        a=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 40 --temp 0 --ids 2>/dev/null)
        for p in 0.02 1; do
            b=$("$DSC" generate -m "$root/model" --tokens "$toks" -n 40 --temp 0 --ids --mtp --mtp-p-min $p 2>"$tmp/err")
            if [ "$p" = 1 ]; then drafted="0 of 0 taken"; else drafted="[0-9]* of [1-9][0-9]* taken"; fi
            if [ -n "$a" ] && [ "$a" = "$b" ] && grep -q "MTP drafts: $drafted (.*); [1-9][0-9]* withheld (below --mtp-p-min)" "$tmp/err"
            then ok "$m generate --mtp --mtp-p-min $p: the plain ids ($(tail -1 "$tmp/err"))"
            else bad "$m generate --mtp --mtp-p-min $p: '$b' want '$a' $(cat "$tmp/err")"; fi
        done
    else
        if "$DSC" generate -m "$root/model" --tokens "$toks" -n 4 --mtp >"$tmp/out" 2>"$tmp/err"; then
            bad "$m generate --mtp without an MTP layer succeeded"
        elif [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "num_nextn_predict_layers 0" "$tmp/err" && [ ! -s "$tmp/out" ]; then
            ok "$m generate --mtp without an MTP layer: $(cat "$tmp/err")"
        else bad "$m generate --mtp without an MTP layer: $(cat "$tmp/err")"; fi
    fi
done
# dsc bench --json: the model's path is a JSON string whatever its characters
ln -s "$GOLDEN/models/v3-tiny/model" "$tmp/a\"b\\c"
if "$DSC" bench -m "$tmp/a\"b\\c" -p 4 -n 2 -r 1 --json 2>/dev/null |
    python3 -c 'import json, sys; assert json.load(sys.stdin)["model"].endswith("/a\"b\\c")'; then
    ok "bench --json: a path with a quote and a backslash"
else bad "bench --json: a path with a quote and a backslash is not valid JSON"; fi
# dsc bench --json: the fields outside checks read, each a positive number
# (a batched decode test included with --parallel).
root=$GOLDEN/models/v3-tiny/model
if "$DSC" bench -m "$root" -p 16 -n 8 -r 2 --parallel 3 --json >"$tmp/bench.json" 2>"$tmp/err" &&
    python3 - "$tmp/bench.json" "$root/config.json" >"$tmp/cmp" 2>&1 <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
c = json.load(open(sys.argv[2]))
# the attention's FLOPs per step at the mean position (depth 0 + 8 / 2, then the new token)
want = 2 * c["num_hidden_layers"] * c["num_attention_heads"] * (0 + 8 / 2 + 1) * (2 * c["kv_lora_rank"] + c["qk_rope_head_dim"])
assert abs(j["attn_flops_per_token"] - want) < 1, f"attn_flops_per_token = {j['attn_flops_per_token']}, want {want}"
# prefill: per prompt token the causal attention over the decompressed heads, (16 + 1) / 2 positions on average,
# inside the FLOPs that the prefill's share of the FMA peak counts
want = 2 * c["num_hidden_layers"] * c["num_attention_heads"] * (16 + 1) / 2 * \
    (c["qk_nope_head_dim"] + c["qk_rope_head_dim"] + c["v_head_dim"])
assert abs(j["pp_attn_flops_per_token"] - want) < 1, f"pp_attn_flops_per_token = {j['pp_attn_flops_per_token']}, want {want}"
assert j["flops_per_prompt_token"] > want, f"flops_per_prompt_token {j['flops_per_prompt_token']} <= {want}"
# adding the attention's time at the FMA peak can only lower the bound, so raise the ratio
assert j["tg_attn_roofline_pct"] >= j["tg_roofline_pct"] * 0.999, f"{j['tg_attn_roofline_pct']} < {j['tg_roofline_pct']}"
# the most of the bytes' roofline a step that reads, then attends, can reach: below 100% once it attends
assert 0 < j["tg_attn_ceiling_pct"] < 100, f"tg_attn_ceiling_pct = {j['tg_attn_ceiling_pct']}"
for k in ("pp_tokens_per_s", "tg_tokens_per_s", "bytes_per_token", "bandwidth_gb_s", "threads", "tgb_tokens_per_s",
          "tgb_speedup", "tg_roofline_pct", "pp_peak_pct", "tgi_tokens_per_s", "bandwidth_interleaved_gb_s",
          "tgi_roofline_pct"):
    assert isinstance(j[k], (int, float)) and j[k] > 0, f"{k} = {j.get(k)}"
assert j["parallel"] == 3, f"parallel = {j['parallel']}"
assert j["mtp"] == 0 and j["mtp_step_tokens"] == 0, "no speculative steps without --mtp"
assert j["batch_invariant"] == 0 and j["pp_attn_form"] == "decompressed", "from an empty cache: decompressed"
# where decode time went: the weight products and the attention, separate phases of a step
assert 0 < j["tg_rows_pct"] <= 100 and 0 < j["tg_attn_pct"] < 100 and j["tg_rows_gb_s"] > 0, \
    f"tg_rows_pct = {j['tg_rows_pct']}, tg_attn_pct = {j['tg_attn_pct']}, tg_rows_gb_s = {j['tg_rows_gb_s']}"
assert j["tg_rows_pct"] + j["tg_attn_pct"] <= 100.5, f"{j['tg_rows_pct']} + {j['tg_attn_pct']} > 100"
# the attention's arithmetic rate while it ran: positive, and no faster than a machine could be
assert 0 < j["tg_attn_gflop_s"] < 1e5, f"tg_attn_gflop_s = {j['tg_attn_gflop_s']}"
# share of the resident weights on 2 MiB pages; -1 only where smaps is unreadable
assert j["weights_huge_pct"] == -1 or 0 <= j["weights_huge_pct"] <= 100, f"weights_huge_pct = {j['weights_huge_pct']}"
print(f"tg {j['tg_tokens_per_s']:.0f} t/s, x3 {j['tgb_speedup']:.2f}x")
PY
then ok "bench --json ($(cat "$tmp/cmp"))"; else bad "bench --json ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"; fi
# one run: its ceiling is bytes / bandwidth over that + attention FLOPs / FMA peak, with that run's own figures
if "$DSC" bench -m "$root" -p 0 -n 4 -d 96 -r 1 --json >"$tmp/bench1.json" 2>"$tmp/err" &&
    python3 - "$tmp/bench1.json" >"$tmp/cmp" 2>&1 <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
t_bytes, t_attn = j["bytes_per_token"] / j["bandwidth_gb_s"], j["attn_flops_per_token"] / j["fma_peak_gflop_s"]
want = 100 * t_bytes / (t_bytes + t_attn)
assert j["depth"] == 96 and j["reps"] == 1 and t_attn > 0, f"depth {j['depth']}, reps {j['reps']}"
assert abs(j["tg_attn_ceiling_pct"] - want) < 0.01 + 1e-3 * (100 - want), \
    f"tg_attn_ceiling_pct = {j['tg_attn_ceiling_pct']}, want {want:.3f}"
print(f"{j['tg_attn_ceiling_pct']:.2f}% at 96 positions")
PY
then ok "bench --json: ceiling of one run ($(cat "$tmp/cmp"))"; else bad "bench --json: ceiling ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"; fi
# --batch-invariant: the prefill in the absorbed form, its attention's FLOPs counted so
if "$DSC" bench -m "$root" -p 16 -n 0 -r 1 --batch-invariant --json >"$tmp/bi.json" 2>"$tmp/err" &&
    python3 - "$tmp/bi.json" >"$tmp/cmp" 2>&1 <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["batch_invariant"] == 1 and j["pp_attn_form"] == "absorbed", f"{j['batch_invariant']} {j['pp_attn_form']}"
assert j["pp_attn_flops_per_token"] > 0 and j["pp_tokens_per_s"] > 0
print(f"pp16 {j['pp_tokens_per_s']:.0f} t/s, absorbed")
PY
then ok "bench --batch-invariant --json ($(cat "$tmp/cmp"))"; else bad "bench --batch-invariant --json ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"; fi
# --mtp: a speculative step's cost in plain tokens; the bytes a plain token reads are the same
if "$DSC" bench -m "$root" -p 16 -n 8 -r 2 --mtp --json >"$tmp/mtp.json" 2>"$tmp/err" &&
    python3 - "$tmp/mtp.json" "$tmp/bench.json" >"$tmp/cmp" 2>&1 <<'PY'
import json, sys
j, plain = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert j["mtp"] == 1, f"mtp = {j['mtp']}"
assert 0.5 < j["mtp_step_tokens_min"] <= j["mtp_step_tokens"] <= j["mtp_step_tokens_max"] < 20, \
    f"mtp_step_tokens {j['mtp_step_tokens_min']} {j['mtp_step_tokens']} {j['mtp_step_tokens_max']}"
assert j["mtp_draft_ms"] > 0, f"mtp_draft_ms = {j['mtp_draft_ms']}"
assert j["bytes_per_token"] == plain["bytes_per_token"], \
    f"bytes_per_token {j['bytes_per_token']} with --mtp, {plain['bytes_per_token']} without (the MTP layer's cache counted)"
print(f"a step {j['mtp_step_tokens']:.2f} plain tokens, the module's pass {j['mtp_draft_ms']:.3f} ms")
PY
then ok "bench --mtp --json ($(cat "$tmp/cmp"))"; else bad "bench --mtp --json ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"; fi
# -t A,B: a JSON line per thread count, each with the plain run's fields; the second's
# speedups are its rates over the first's in the same repetition (-r 1: the ratio itself)
if "$DSC" bench -m "$root" -p 16 -n 8 -r 1 -t 1,2 --json >"$tmp/threads.json" 2>"$tmp/err" &&
    "$DSC" bench -m "$root" -p 16 -n 8 -r 1 -t 2,1 >"$tmp/threads.txt" 2>>"$tmp/err" &&
    python3 - "$tmp/threads.json" "$tmp/bench.json" "$tmp/threads.txt" >"$tmp/cmp" 2>&1 <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2, f"{len(lines)} lines"
a, b = (json.loads(l) for l in lines)
plain = json.load(open(sys.argv[2]))
vs = {"vs_threads", "pp_speedup_vs", "pp_speedup_vs_min", "pp_speedup_vs_max", "tg_speedup_vs", "tg_speedup_vs_min",
      "tg_speedup_vs_max"}
assert set(a) == set(b) == set(plain) | vs, f"fields {sorted(set(a) ^ (set(plain) | vs))}"
assert (a["threads"], b["threads"], a["vs_threads"], b["vs_threads"]) == (1, 2, 1, 1), "thread counts"
assert a["pp_speedup_vs"] == a["tg_speedup_vs"] == 1, "the first count against itself"
for k, t in (("pp_speedup_vs", "pp_tokens_per_s"), ("tg_speedup_vs", "tg_tokens_per_s")):
    want = b[t] / a[t]
    assert abs(b[k] - want) <= 2e-3 * want + 1e-3 and b[k + "_min"] == b[k] == b[k + "_max"], f"{k} {b[k]}, want {want}"
txt = open(sys.argv[3]).read()
assert "| 2 | " in txt and "| 1 | " in txt and "threads: 1 against 2, the same repetitions: prefill " in txt, txt
print(f"2 threads against 1: prefill {b['pp_speedup_vs']:.2f}x, decode {b['tg_speedup_vs']:.2f}x")
PY
then ok "bench -t 1,2 ($(cat "$tmp/cmp"))"; else bad "bench -t 1,2 ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"; fi
# -p, -n, -d lists: llama-bench's tests one by one, a JSON line each, the
# prefills and the decodes at each depth; a decode test at depth 64 reads 64
# positions of latent cache more than at depth 0; a prefill at depth counts
# the attention of the form it takes (absorbed for 8 or 16 after 64 here,
# decompressed from an empty cache)
if "$DSC" bench -m "$root" -p 8,16 -n 4 -d 0,64 -r 1 --json >"$tmp/lists.json" 2>"$tmp/err" &&
    "$DSC" bench -m "$root" -p 8,16 -n 4 -d 0,64 -r 1 >"$tmp/lists.txt" 2>>"$tmp/err" &&
    python3 - "$tmp/lists.json" "$tmp/lists.txt" "$root/config.json" >"$tmp/cmp" 2>&1 <<'PY'
import json, sys
js = [json.loads(l) for l in open(sys.argv[1])]
got = [(j["n_prompt"], j["n_gen"], j["depth"]) for j in js]
assert got == [(8, 0, 0), (16, 0, 0), (0, 4, 0), (8, 0, 64), (16, 0, 64), (0, 4, 64)], f"tests {got}"
for j in js:
    assert (j["pp_tokens_per_s"] > 0) == (j["n_prompt"] > 0) and (j["tg_tokens_per_s"] > 0) == (j["n_gen"] > 0), j
c = json.load(open(sys.argv[3]))
# bf16 latent rows of kv_lora_rank + rope dim per layer
row = 2 * c["num_hidden_layers"] * (c["kv_lora_rank"] + c["qk_rope_head_dim"])
assert js[5]["bytes_per_token"] - js[2]["bytes_per_token"] == 64 * row, \
    f"{js[5]['bytes_per_token']} - {js[2]['bytes_per_token']} != 64 x {row}"
R, dn, dr, dv = c["kv_lora_rank"], c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
for j, form in zip(js[:2] + js[3:5], ("decompressed", "decompressed", "absorbed", "absorbed")):
    n, pos0 = j["n_prompt"], j["depth"]
    seen = pos0 + (n + 1) / 2
    dec, ab = pos0 * R * (dn + dv) + n * seen * (dn + dr + dv), n * seen * (2 * R + dr)
    want = 2 * c["num_hidden_layers"] * c["num_attention_heads"] * min(dec, ab) / n
    assert j["pp_depth"] == pos0 and j["pp_attn_form"] == form, (j["pp_depth"], j["pp_attn_form"], pos0, form)
    assert abs(j["pp_attn_flops_per_token"] - want) < 1, f"pp{n} @ d{pos0}: {j['pp_attn_flops_per_token']}, want {want}"
txt = open(sys.argv[2]).read()
for t in ("| pp8 |", "| pp16 |", "| tg4 |", "| pp8 @ d64 |", "| pp16 @ d64 |", "| tg4 @ d64 |"):
    assert t in txt, f"no row {t}"
print(f"pp8 {js[0]['pp_tokens_per_s']:.0f}, pp8 @ d64 {js[3]['pp_tokens_per_s']:.0f}, "
      f"tg4 @ d64 {js[5]['tg_tokens_per_s']:.0f} t/s")
PY
then ok "bench -p 8,16 -n 4 -d 0,64 ($(cat "$tmp/cmp"))"; else bad "bench lists ($(cat "$tmp/err" "$tmp/cmp" 2>/dev/null | tr '\n' ' '))"; fi
if "$DSC" bench -m "$root" -p 4 -n 2 -r 1 --no-warmup --json >"$tmp/out" 2>"$tmp/err" &&
    python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); assert j["tg_tokens_per_s"] > 0' "$tmp/out"; then
    ok "bench --no-warmup"
else bad "bench --no-warmup ($(cat "$tmp/err"))"; fi
if "$DSC" bench -m "$root" -p 0 -n 4 -r 1 --parallel 0 >"$tmp/out" 2>"$tmp/err"; then bad "bench --parallel 0 accepted"
else ok "bench --parallel 0 refused: $(cat "$tmp/err")"; fi
# --mlock: the weights locked (-v says so), the same greedy ids; under a
# memory-lock limit too low for them, one warning line and an unlocked run
# with the same ids. CAP_IPC_LOCK (root's, outside containers) ignores the
# limit: the second run then drops it with setpriv. Each part is skipped,
# saying why, where this environment cannot set it up (both in a sanitizer
# build, whose mlock returns 0 and locks nothing: dsc then says so).
root=$GOLDEN/models/v3-tiny
toks=$("$TG" --ids "$root/expected.safetensors" tokens)
want=$("$TG" --ids "$root/expected.safetensors" greedy)
capeff=$(awk '/^CapEff:/ {print $2}' /proc/self/status 2>/dev/null)
has_cap=$(( (0x${capeff:-0} >> 14) & 1 ))
hard=$(ulimit -H -l)
asan=
grep -aq __asan_init "$DSC" && asan=1
if [ -n "$asan" ]; then echo "SKIP --mlock: AddressSanitizer's mlock does nothing"
elif [ "$has_cap" = 1 ] || [ "$hard" = unlimited ] || [ "$hard" -ge 4096 ]; then
    got=$(ulimit -l "$hard" && "$DSC" generate -m "$root/model" --tokens "$toks" -n 8 --temp 0 --ids --mlock -v 2>"$tmp/err")
    if [ "$got" = "$want" ] && grep -q "MiB of weights locked in memory" "$tmp/err"; then ok "--mlock: $(grep locked "$tmp/err")"
    else bad "--mlock: got '$got' want '$want' $(cat "$tmp/err")"; fi
else echo "SKIP --mlock: no CAP_IPC_LOCK and a hard memory-lock limit of $hard KiB"; fi
drop=
[ "$has_cap" = 1 ] && drop="setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock"
if [ -n "$asan" ]; then echo "SKIP --mlock over the limit: AddressSanitizer's mlock does nothing"
elif [ -n "$drop" ] && ! $drop true 2>/dev/null; then echo "SKIP --mlock over the limit: cannot drop CAP_IPC_LOCK here"
else
    got=$(ulimit -l 16 && $drop "$DSC" generate -m "$root/model" --tokens "$toks" -n 8 --temp 0 --ids --mlock 2>"$tmp/err")
    if [ "$got" = "$want" ] &&
        grep -q "^dsc: .*--mlock: cannot lock .* (.*; the memory-lock limit is 16 KiB, ulimit -l); loaded unlocked$" "$tmp/err"
    then ok "--mlock over the limit: $(grep mlock "$tmp/err")"
    else bad "--mlock over the limit: got '$got' want '$want' $(cat "$tmp/err")"; fi
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
