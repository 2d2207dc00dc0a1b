#!/bin/sh
# Bad input must give a one-line error naming the thing at fault, never a crash.
#
# usage: run.sh DSC GOLDEN_DIR   (BADINPUT_VERBOSE=1 shows each message)
#
# Every case copies a golden checkpoint into a fresh temporary directory,
# breaks one thing (config.json field, safetensors header, shard index, CLI
# argument) and runs the CLI. A case passes when the exit status is exactly 1,
# stderr is exactly one line starting with "dsc: " that contains every
# expected substring, and nothing mentions a sanitizer. A few positive
# controls check that the unbroken copies (and the sharded one) still load,
# so that each broken copy differs from a good one in one thing only.
set -u
DSC=$1 GOLDEN=$2
V3=$GOLDEN/models/v3-tiny/model
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FP8=$GOLDEN/models/v3-fp8-tiny/model
for p in "$DSC" "$V3/config.json" "$FP8/config.json"; do
    [ -e "$p" ] || { echo "run.sh: $p not found"; exit 2; }
done
command -v python3 >/dev/null || { echo "run.sh: python3 not found"; exit 2; }

tmp=$(mktemp -d) || exit 2
trap 'rm -rf "$tmp"' EXIT
trap 'exit 2' HUP INT TERM
pass=0 fail=0

# ------------------------------------------------------------------ crafting
cat >"$tmp/mk.py" <<'EOF'
"""Edits checkpoint copies: python3 mk.py COMMAND ARGS (see each function)."""
import json, os, struct, sys

def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]

def write_st(path, hdr, data, raw=None):
    h = raw if raw is not None else json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)           # keep the data 8-byte aligned
    if os.path.lexists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)

def st_path(d):
    return os.path.join(d, "model.safetensors")

def cfg(d, key, value):
    """cfg DIR a.b JSON: set a (dotted) field; JSON '@del' deletes it."""
    p = os.path.join(d, "config.json")
    c = json.load(open(p))
    *parents, last = key.split(".")
    o = c
    for k in parents:
        o = o[k]
    if value == "@del":
        del o[last]
    else:
        o[last] = json.loads(value)
    os.unlink(p)
    json.dump(c, open(p, "w"), indent=2)

def st(d, tensor, field, value):
    """st DIR TENSOR FIELD JSON: set dtype/shape/data_offsets of one entry;
    JSON '@del' deletes that field; FIELD '@del' deletes the entry,
    '@entry' replaces it by JSON,
    '@copy-offsets' gives it the data_offsets of tensor VALUE,
    '@past-end' moves it just past the end of the data."""
    hdr, data = read_st(st_path(d))
    if field == "@del":
        del hdr[tensor]
    elif field == "@entry":
        hdr[tensor] = json.loads(value)
    elif field == "@copy-offsets":
        hdr[tensor]["data_offsets"] = list(hdr[value]["data_offsets"])
    elif field == "@past-end":
        b, e = hdr[tensor]["data_offsets"]
        hdr[tensor]["data_offsets"] = [len(data), len(data) + e - b]
    elif value == "@del":
        del hdr[tensor][field]
    else:
        hdr[tensor][field] = json.loads(value)
    write_st(st_path(d), hdr, data)

def rename(d, old, new):
    """rename DIR OLD NEW: rename one tensor."""
    hdr, data = read_st(st_path(d))
    hdr[new] = hdr.pop(old)
    write_st(st_path(d), hdr, data)

def dupkey(d, tensor):
    """dupkey DIR TENSOR: the header names TENSOR twice (same entry)."""
    hdr, data = read_st(st_path(d))
    raw = json.dumps(hdr, separators=(",", ":"))
    extra = json.dumps({tensor: hdr[tensor]}, separators=(",", ":"))[1:-1]
    write_st(st_path(d), None, data, (raw[:-1] + "," + extra + "}").encode())

def rawhdr(d, text):
    """rawhdr DIR TEXT: replace the header by TEXT (padded with spaces)."""
    _, data = read_st(st_path(d))
    write_st(st_path(d), None, data, text.encode())

def hdrlen(path, n):
    """hdrlen FILE N: overwrite the u64 header length (N may be 'size')."""
    b = bytearray(open(path, "rb").read())
    b[:8] = struct.pack("<Q", len(b) if n == "size" else int(n))
    os.unlink(path)
    open(path, "wb").write(bytes(b))

def cut(path, where):
    """cut FILE WHERE: truncate to N bytes, 'header/2' (inside the header)
    or 'data/2' (halfway through the data section)."""
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    if where == "header/2":
        k = 8 + n // 2
    elif where == "data/2":
        k = 8 + n + (len(b) - 8 - n) // 2
    else:
        k = int(where)
    os.unlink(path)
    open(path, "wb").write(b[:k])

def shard(d):
    """shard DIR: split model.safetensors into two shards plus an index."""
    hdr, data = read_st(st_path(d))
    names = sorted(k for k in hdr if k != "__metadata__")
    half = len(names) // 2
    wm = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = "model-%05d-of-00002.safetensors" % (i + 1)
        out, blob = {}, b""
        for k in part:
            b, e = hdr[k]["data_offsets"]
            out[k] = dict(hdr[k], data_offsets=[len(blob), len(blob) + e - b])
            blob += data[b:e]
            wm[k] = fname
        write_st(os.path.join(d, fname), out, blob)
    os.unlink(st_path(d))
    json.dump({"metadata": {"total_size": len(data)}, "weight_map": wm},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)

def fill(d, tensor, value):
    """fill DIR TENSOR VALUE: every element of an F32 or BF16 tensor := VALUE."""
    hdr, data = read_st(st_path(d))
    t = hdr[tensor]
    b, e = t["data_offsets"]
    v = struct.pack("<f", float(value))
    if t["dtype"] == "BF16":
        v = v[2:]
    elif t["dtype"] != "F32":
        raise SystemExit("fill: %s is %s" % (tensor, t["dtype"]))
    data = data[:b] + v * ((e - b) // len(v)) + data[e:]
    write_st(st_path(d), hdr, data)

def idx(d, tensor, value):
    """idx DIR TENSOR JSON: set weight_map[TENSOR] (JSON '@del' deletes)."""
    p = os.path.join(d, "model.safetensors.index.json")
    j = json.load(open(p))
    if value == "@del":
        del j["weight_map"][tensor]
    else:
        j["weight_map"][tensor] = json.loads(value)
    os.unlink(p)
    json.dump(j, open(p, "w"), indent=2)

globals()[sys.argv[1]](*sys.argv[2:])
EOF
mk() { python3 "$tmp/mk.py" "$@" || { echo "run.sh: mk.py $* failed"; exit 2; }; }

# model SRC: a fresh writable copy of a golden checkpoint in $d.
n_case=0
model() {
    n_case=$((n_case + 1))
    d=$tmp/case$n_case/model
    mkdir -p "$tmp/case$n_case" && cp -R "$1" "$d" && chmod -R u+w "$d" || exit 2
}

# ------------------------------------------------------------------ checking
# expect NAME 'SUBSTR[|SUBSTR...]' CMD...: CMD must fail cleanly (see top).
# expect_late: the same for an error found while the model runs, where the
# session's one announcement line (latent kv cache) may come first.
expect() { check_fail 0 "$@"; }
expect_late() { check_fail 1 "$@"; }

check_fail() {
    late=$1 name=$2 want=$3
    shift 3
    timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    n=$(wc -l <"$tmp/err" | tr -d ' ')
    if [ "$late" = 1 ] && [ "$n" -eq 2 ] && head -n 1 "$tmp/err" | grep -q '^dsc: latent kv cache'; then
        line=$(tail -n 1 "$tmp/err") n=1
    else
        line=$(head -n 1 "$tmp/err")
    fi
    why=
    if [ "$rc" -ne 1 ]; then
        case $rc in
        124) why="timed out" ;;
        0) why="exit status 0" ;;
        *) why="exit status $rc" ;;
        esac
    elif grep -q -e Sanitizer -e 'runtime error' "$tmp/err"; then
        why="sanitizer report"
    elif [ "$n" -ne 1 ] || [ -n "$(tail -c 1 "$tmp/err" | tr -d '\n')" ]; then
        why="stderr has $(wc -l <"$tmp/err" | tr -d ' ') lines, want 1"
    else
        case $line in
        "dsc: "*) ;;
        *) why="stderr does not start with 'dsc: '" ;;
        esac
    fi
    if [ -z "$why" ]; then
        rest=$want
        while [ -n "$rest" ]; do
            s=${rest%%|*}
            case $rest in *"|"*) rest=${rest#*|} ;; *) rest= ;; esac
            case $line in
            *"$s"*) ;;
            *) why="message lacks '$s'" ;;
            esac
        done
    fi
    finish "$name" "$why"
}

# expect_ok NAME CMD...: a positive control; exit 0 and no sanitizer output.
expect_ok() {
    name=$1
    shift
    timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    why=
    if [ "$rc" -ne 0 ]; then why="exit status $rc"
    elif grep -q -e Sanitizer -e 'runtime error' "$tmp/err"; then why="sanitizer report"
    fi
    finish "$name" "$why"
}

finish() {
    if [ -z "$2" ]; then
        echo "PASS $1${BADINPUT_VERBOSE:+: $(head -n 1 "$tmp/err")}"
        pass=$((pass + 1))
    else
        echo "FAIL $1: $2; stderr: $(head -c 400 "$tmp/err" | tr '\n' ' ')"
        fail=$((fail + 1))
    fi
    rm -rf "$tmp/case$n_case"
}

# (timeout runs programs, not shell functions, so the commands are spelt out.)
T3="0 1 2"

# ------------------------------------------------------------------ controls
model "$V3"
expect_ok "control: v3-tiny copy loads" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"
expect_ok "control: v3-fp8-tiny copy loads" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"
expect_ok "control: sharded v3-tiny loads" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk rawhdr "$d" "$(python3 -c 'import json,struct,sys
b=open(sys.argv[1],"rb").read(); print(b[8:8+struct.unpack("<Q",b[:8])[0]].decode().strip())' "$d/model.safetensors")"
expect_ok "control: header rewrite is lossless" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ directory
expect "missing model directory" "$tmp/no-such-dir" "$DSC" logits -m "$tmp/no-such-dir" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; : >"$tmp/case$n_case/plainfile"
expect "model path is a file" "plainfile" "$DSC" logits -m "$tmp/case$n_case/plainfile" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; rm "$d/config.json"
expect "directory without config.json" "config.json" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; rm "$d/model.safetensors"
expect "directory without weights" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; rm "$d/config.json"; mkdir "$d/config.json"
expect "config.json is a directory" "config.json" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; rm "$d/model.safetensors"; mkdir "$d/model.safetensors"
expect "model.safetensors is a directory" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
# a FIFO would block an open() for reading until a writer came: refused at once
model "$V3"; rm "$d/model.safetensors"; mkfifo "$d/model.safetensors"
expect "model.safetensors is a FIFO" "model.safetensors|not a regular file" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; rm "$d/config.json"; mkfifo "$d/config.json"
expect "config.json is a FIFO" "config.json|not a regular file" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ config.json
model "$V3"; printf '{"model_type": "deepseek_v3", "vocab_size": 512,' >"$d/config.json"
expect "config.json malformed JSON" "config.json" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; printf 'garbage{]' >>"$d/config.json"
expect "config.json with bytes after its object" "config.json" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
# a key given twice: cJSON would take the first value, Python's json the last
model "$V3"; sed 's/^{/{"num_hidden_layers": 1, /' "$V3/config.json" >"$d/config.json"
expect "config.json with a key twice" "config.json|num_hidden_layers|twice" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; : >"$d/config.json"
expect "config.json empty" "config.json" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; printf '[1, 2, 3]' >"$d/config.json"
expect "config.json not an object" "config.json" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" model_type '"llama"'
expect "unknown model_type" "model_type|llama" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" model_type '"llama\nthree"'
expect "model_type with a newline" "model_type" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" model_type @del
expect "model_type missing" "model_type" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" topk_method '"best_k"'
expect "unknown topk_method" "topk_method|best_k" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" scoring_func '"tanh"'
expect "unknown scoring_func" "scoring_func|tanh" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" hidden_act '"gelu"'
expect "unsupported hidden_act" "hidden_act" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" hidden_size @del
expect "hidden_size missing" "hidden_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" kv_lora_rank @del
expect "kv_lora_rank missing" "kv_lora_rank" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" hidden_size '"64"'
expect "hidden_size is a string" "hidden_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" num_hidden_layers 2.5
expect "num_hidden_layers not an integer" "num_hidden_layers" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" num_hidden_layers -3
expect "num_hidden_layers negative" "num_hidden_layers" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" vocab_size 1e30
expect "vocab_size huge" "vocab_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" norm_topk_prob '"yes"'
expect "norm_topk_prob not a bool" "norm_topk_prob" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" eos_token_id '"</s>"'
expect "eos_token_id a string" "eos_token_id" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" rms_norm_eps '"tiny"'
expect "rms_norm_eps a string" "rms_norm_eps" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" attention_bias true
expect "attention_bias true" "attention_bias" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" rope_scaling '{"type": "linear", "factor": 2.0}'
expect "rope_scaling of type linear" "rope_scaling|linear" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" model_type '"deepseek_v32"'
expect "deepseek_v32 without its indexer's fields" "index_n_heads" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" model_type '"deepseek_v32"'; mk cfg "$d" index_n_heads 4; mk cfg "$d" index_head_dim 192; mk cfg "$d" index_topk 8
expect "deepseek_v32 with index_head_dim 192" "index_head_dim|power of two" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" model_type '"deepseek_v32"'; mk cfg "$d" index_n_heads 4; mk cfg "$d" index_head_dim 128; mk cfg "$d" index_topk 8
expect "deepseek_v32 with kv_lora_rank 32" "kv_lora_rank|128" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" rope_scaling '"yarn"'
expect "rope_scaling not an object" "rope_scaling" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" rope_scaling.factor @del
expect "rope_scaling.factor missing" "rope_scaling.factor" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" n_routed_experts 15
expect "n_routed_experts not divisible by n_group" "n_routed_experts|n_group" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" topk_group 5
expect "topk_group > n_group" "topk_group" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" num_experts_per_tok 17
expect "num_experts_per_tok > n_routed_experts" "num_experts_per_tok" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" qk_rope_head_dim 7
expect "qk_rope_head_dim odd" "qk_rope_head_dim" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" qk_nope_head_dim 0; mk cfg "$d" qk_rope_head_dim 0
expect "qk head dims both zero" "qk_nope_head_dim" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" num_attention_heads 65536; mk cfg "$d" qk_nope_head_dim 65536; mk cfg "$d" v_head_dim 65536
expect "heads x head dims overflow int32" "num_attention_heads" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk cfg "$d" quantization_config.quant_method '"gptq"'
expect "quant_method gptq" "quant_method" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk cfg "$d" quantization_config.weight_block_size '[128]'
expect "weight_block_size of one entry" "weight_block_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
# tensors the config does not ask for: the config and the weights disagree
# (v3-tiny: 3 layers and the MTP layer 3, which the config declares)
model "$V3"; mk cfg "$d" num_hidden_layers 2
expect "fewer layers than the weights hold" "model.layers.3.|not part of the model|2 layers" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" n_shared_experts 0
expect "shared experts the config does not declare" "shared_experts|not part of the model" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" num_nextn_predict_layers 0
expect "an MTP layer the config does not declare" "model.layers.3.|0 MTP layers" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" bos_token_id 100000
expect "bos_token_id beyond the vocabulary" "bos_token_id|vocab_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" eos_token_id '[100000]'
expect "eos_token_id beyond the vocabulary" "eos_token_id|vocab_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" bos_token_id 1.5
expect "bos_token_id not an integer" "bos_token_id" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk cfg "$d" quantization_config '"fp8"'
expect "quantization_config a string" "quantization_config" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk cfg "$d" quantization_config.weight_block_size '[1.5, 2.5]'
expect "weight_block_size not integers" "weight_block_size" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cfg "$d" hidden_size 32
expect "hidden_size disagrees with the weights" "model.embed_tokens.weight|[512, 64]" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ safetensors
model "$V3"; mk rawhdr "$d" "this is not JSON"
expect "header not JSON" "model.safetensors|JSON" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk rawhdr "$d" "$(python3 -c 'import json,struct,sys
b=open(sys.argv[1],"rb").read(); print(b[8:8+struct.unpack("<Q",b[:8])[0]].decode().strip() + "}x")' "$d/model.safetensors")"
expect "header with bytes after its object" "model.safetensors|JSON" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk rawhdr "$d" "$(python3 -c 'import json,struct,sys
b=open(sys.argv[1],"rb").read(); h=b[8:8+struct.unpack("<Q",b[:8])[0]].decode().strip()
k="model.norm.weight"; v=json.dumps(json.loads(h)[k]); print("{" + json.dumps(k) + ": " + v + ", " + h[1:])' "$d/model.safetensors")"
expect "header naming a tensor twice" "model.safetensors|model.norm.weight|twice" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk rawhdr "$d" '[{"dtype": "F32"}]'
expect "header a JSON array" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk rawhdr "$d" '{}'
expect "header without tensors" "model.embed_tokens.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk hdrlen "$d/model.safetensors" 0
expect "header length 0" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk hdrlen "$d/model.safetensors" size
expect "header length larger than the file" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk hdrlen "$d/model.safetensors" 18446744073709551615
expect "header length 2^64-1" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight @past-end x
expect "data_offsets outside the file" "model.norm.weight|data_offsets" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight data_offsets '[128, 0]'
expect "data_offsets reversed" "model.norm.weight|data_offsets" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight data_offsets '[-128, 0]'
expect "data_offsets negative" "model.norm.weight|data_offsets" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight data_offsets '[0]'
expect "data_offsets one number" "model.norm.weight|data_offsets" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight data_offsets '[1e300, 1e300]'
expect "data_offsets 1e300" "model.norm.weight|data_offsets" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.embed_tokens.weight @copy-offsets lm_head.weight
expect "two tensors overlapping" "model.embed_tokens.weight|lm_head.weight|overlap" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight dtype '"F7"'
expect "unknown dtype" "model.norm.weight|F7" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight dtype @del
expect "dtype missing" "model.norm.weight|dtype" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight dtype '"F32"'
expect "span not dtype x shape (dtype)" "model.norm.weight|span" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.embed_tokens.weight shape '[512, 32]'
expect "span not dtype x shape (shape)" "model.embed_tokens.weight|span" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight shape '[64, -1]'
expect "shape negative" "model.norm.weight|shape" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight shape '[1, 1, 1, 1, 1, 1, 1, 1, 64]'
expect "shape of 9 dimensions" "model.norm.weight|dimensions" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight shape '[4294967296, 4294967296, 4294967296]'
expect "shape product overflows" "model.norm.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight @entry '"F32"'
expect "entry not an object" "model.norm.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
NL=$(printf 'evil\nname')
model "$V3"; mk st "$d" "$NL" @entry '{"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}'
expect "tensor name with a newline" "evil" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk dupkey "$d" model.norm.weight
expect "tensor named twice" "model.norm.weight|twice" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cut "$d/model.safetensors" data/2
expect "truncated in the data section" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cut "$d/model.safetensors" header/2
expect "truncated inside the header" "model.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk cut "$d/model.safetensors" 5
expect "file of 5 bytes" "model.safetensors|truncated" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; : >"$d/model.safetensors"
expect "file of 0 bytes" "model.safetensors|truncated" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ tensors vs config
model "$V3"; mk st "$d" model.layers.1.mlp.experts.3.up_proj.weight @del x
expect "tensor missing" "model.layers.1.mlp.experts.3.up_proj.weight|missing" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.layers.2.mlp.gate.e_score_correction_bias @del x
expect "router bias missing (noaux_tc)" "model.layers.2.mlp.gate.e_score_correction_bias" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" lm_head.weight @del x
expect "lm_head missing" "lm_head.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight shape '[32]'; mk st "$d" model.norm.weight dtype '"F32"'
expect "tensor of the wrong shape" "model.norm.weight|[32]|[64]" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.layers.0.self_attn.o_proj.weight shape '[48, 64]'
expect "matrix transposed" "model.layers.0.self_attn.o_proj.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight shape '[8, 8]'
expect "vector stored as a matrix" "model.norm.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk st "$d" model.norm.weight dtype '"I16"'
expect "tensor of an unusable dtype" "model.norm.weight|I16" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ FP8
W=model.layers.0.mlp.down_proj.weight
model "$FP8"; mk st "$d" ${W}_scale_inv @del x
expect "FP8 weight without weight_scale_inv" "${W}_scale_inv" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk st "$d" ${W}_scale_inv shape '[3, 2]'
expect "weight_scale_inv of the wrong shape" "${W}_scale_inv|[3, 2]" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk st "$d" ${W}_scale_inv dtype '"I32"'
expect "weight_scale_inv of the wrong dtype" "${W}_scale_inv|I32" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$FP8"; mk cfg "$d" quantization_config.weight_block_size '[64, 64]'
expect "weight_block_size disagrees with the scales" "_scale_inv" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ shards
S1=model-00001-of-00002.safetensors S2=model-00002-of-00002.safetensors
IX=model.safetensors.index.json
model "$V3"; mk shard "$d"; rm "$d/$S2"
expect "index names a missing shard" "$S2" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mv "$d/$S2" "$d/../$S2"; mk idx "$d" lm_head.weight "\"../$S2\""
expect "index names a shard in ../" "$IX|lm_head.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mk idx "$d" lm_head.weight '"/etc/passwd"'
expect "index names an absolute path" "$IX|lm_head.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mk idx "$d" lm_head.weight '""'
expect "index names an empty file name" "$IX|lm_head.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mk idx "$d" model.norm.weight "\"$S1\""
expect "weight_map lists a tensor not in that shard" "model.norm.weight|$S1" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mk idx "$d" model.no_such.weight "\"$S1\""
expect "weight_map lists a tensor in no shard" "model.no_such.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mk idx "$d" lm_head.weight 7
expect "weight_map value not a string" "$IX|lm_head.weight" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; printf '{"weight_map": ' >"$d/$IX"
expect "index not JSON" "$IX" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; printf '{"weight_map": {}}' >"$d/$IX"
expect "index with an empty weight_map" "$IX|weight_map" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; cp "$d/$S1" "$d/model-00003-of-00002.safetensors"
mk idx "$d" model.embed_tokens.weight '"model-00003-of-00002.safetensors"'
expect "tensor in two shards" "in both|model-00003-of-00002.safetensors" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
model "$V3"; mk shard "$d"; mk cut "$d/$S2" data/2
expect "shard truncated" "$S2" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"

# ------------------------------------------------------------------ CLI
expect "token id >= vocab_size" "512|vocab_size" "$DSC" logits -m "$V3" --tokens "0 1 512" -o "$tmp/o.st"
expect "token id >= vocab_size (generate)" "512|vocab_size" "$DSC" generate -m "$V3" --temp 0 --ids --tokens "0 600" -n 2
expect "negative token" "--tokens|-1" "$DSC" logits -m "$V3" --tokens "0 -1 2" -o "$tmp/o.st"
expect "non-numeric token" "--tokens|abc" "$DSC" logits -m "$V3" --tokens "0 abc" -o "$tmp/o.st"
expect "token glued to garbage" "--tokens" "$DSC" logits -m "$V3" --tokens "0 1x" -o "$tmp/o.st"
expect "token beyond int32" "--tokens|99999999999" "$DSC" logits -m "$V3" --tokens "99999999999" -o "$tmp/o.st"
expect "empty --tokens" "--tokens" "$DSC" logits -m "$V3" --tokens "" -o "$tmp/o.st"
expect "blank --tokens" "--tokens" "$DSC" generate -m "$V3" --temp 0 --ids --tokens "  , " -n 2
expect "no --tokens" "--tokens" "$DSC" logits -m "$V3" -o "$tmp/o.st"
expect "prompt longer than the context" "context" "$DSC" logits -m "$V3" -c 4 --tokens "0 1 2 3 4 5" -o "$tmp/o.st"
expect "prompt longer than the context (decode-only)" "context" "$DSC" logits -m "$V3" -c 4 --decode-only \
    --tokens "0 1 2 3 4 5" -o "$tmp/o.st"
expect "generation does not fit the context" "context" "$DSC" generate -m "$V3" --temp 0 --ids -c 8 --tokens "0 1 2" -n 10
expect "context beyond max_position_embeddings" "max_position_embeddings" "$DSC" generate -m "$V3" --temp 0 --ids -c 1000000 --tokens "0 1" -n 2
expect "unknown CLI option" "--bogus" "$DSC" logits -m "$V3" --bogus --tokens "0 1 2" -o "$tmp/o.st"
expect "unknown command" "frobnicate" "$DSC" frobnicate -m "$V3"
expect "bench with nothing to measure" "-p 0|-n 0" "$DSC" bench -m "$V3" -p 0 -n 0 -r 1
expect "bench -t with a count twice" "-t: 2 is given twice" "$DSC" bench -m "$V3" -p 4 -n 2 -r 1 -t 2,1,2
expect "bench -t with an empty count" "-t: '' is not an integer" "$DSC" bench -m "$V3" -p 4 -n 2 -r 1 -t 1,
expect "bench -t with 9 counts" "-t: at most 8 values" "$DSC" bench -m "$V3" -p 4 -n 2 -r 1 -t 1,2,3,4,5,6,7,8,9
expect "bench -t with 0 threads" "-t: '0'" "$DSC" bench -m "$V3" -p 4 -n 2 -r 1 -t 0,1
expect "a thread list outside bench" "-t: '1,2' is not an integer" "$DSC" run -m "$V3" -p hi -n 2 -t 1,2
expect "run with -n 0" "-n 0" "$DSC" run -m "$V3" --tokenizer "$ROOT/tests/data/tiny-tokenizer/tokenizer.json" -p "hi" -n 0
expect "a stray argument" "stray|unexpected" "$DSC" generate -m "$V3" --tokens "0 1 2" stray
expect "option without its value" "--tokens" "$DSC" logits -m "$V3" -o "$tmp/o.st" --tokens
expect "missing -o for logits" "-o" "$DSC" logits -m "$V3" --tokens "0 1 2"
expect "an option as the value of -o" "option -o needs a value, and '--verbose' after it is an option" \
    "$DSC" logits -m "$V3" --tokens "0 1 2" -o --verbose
expect "an option as the value of --tokenizer" "option --tokenizer needs a value, and '-p' after it" \
    "$DSC" run -m "$V3" --tokenizer -p "hi" -n 2
expect "train: an option as the value of --tokenizer" "train: option --tokenizer needs a value, and '-o' after it" \
    "$DSC" train "$V3" --data "$ROOT/tests/data/train_text.txt" --tokenizer -o "$tmp/train-out"
expect_ok "control: a prompt may start with '-'" "$DSC" run -m "$V3" \
    --tokenizer "$ROOT/tests/data/tiny-tokenizer/tokenizer.json" -p "-x" -n 2
expect "missing -m" "-m" "$DSC" logits --tokens "0 1 2" -o "$tmp/o.st"
expect "kld with three models" "-m twice" "$DSC" kld -m "$V3" -m "$V3" -m "$V3" -n 16
expect "-c not a number" "-c|abc" "$DSC" generate -m "$V3" --temp 0 --ids -c abc --tokens "0 1" -n 2
expect "-c zero" "-c" "$DSC" generate -m "$V3" --temp 0 --ids -c 0 --tokens "0 1" -n 2
expect "-n negative" "-n" "$DSC" generate -m "$V3" --temp 0 --ids -n -1 --tokens "0 1"
expect "-b zero" "-b" "$DSC" generate -m "$V3" --temp 0 --ids -b 0 --tokens "0 1" -n 2
expect "--temp not a number" "--temp" "$DSC" generate -m "$V3" --temp 0 --ids --temp hot --tokens "0 1" -n 2
expect "output file in a missing directory" "$tmp/no-dir/o.st" \
    "$DSC" logits -m "$V3" --tokens "0 1 2" -o "$tmp/no-dir/o.st"


# ------------------------------------------------------------------ non-finite output
# Weights that make the logits NaN or Inf: an error, never a crash in the
# sampler nor NaN written out with exit status 0.
for v in nan inf; do
    model "$V3" && mk fill "$d" model.norm.weight $v
    expect_late "logits with $v weights" "not finite" "$DSC" logits -m "$d" --tokens "$T3" -o "$tmp/o.st"
    model "$V3" && mk fill "$d" model.norm.weight $v
    expect_late "sampling with $v weights" "not finite" "$DSC" generate -m "$d" --temp 0.6 --ids --tokens "$T3" -n 3
    model "$V3" && mk fill "$d" model.norm.weight $v
    expect_late "greedy decoding with $v weights" "not finite" "$DSC" generate -m "$d" --temp 0 --ids --tokens "$T3" -n 3
    model "$V3" && mk fill "$d" model.norm.weight $v
    expect "gradients with $v weights" "not finite" "$DSC" grad -m "$d" --batch "$GOLDEN/models/v3-tiny/train.safetensors" -o "$tmp/g.st"
done

# ------------------------------------------------------------------ tokenizer and chat
TOK=$ROOT/tests/data/tiny-tokenizer/tokenizer.json
expect "tokenizer file missing" "$tmp/none.json" "$DSC" tokenize --tokenizer "$tmp/none.json" -p "hi"
printf '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [' >"$tmp/trunc.json"
expect "tokenizer.json truncated" "$tmp/trunc.json" "$DSC" tokenize --tokenizer "$tmp/trunc.json" -p "hi"
{ cat "$TOK"; printf '}}}garbage'; } >"$tmp/tail.json"
expect "tokenizer.json with bytes after its object" "$tmp/tail.json|after" "$DSC" tokenize --tokenizer "$tmp/tail.json" -p "hi"
sed 's/"vocab": *{/"vocab": {"a": 7, /' "$TOK" >"$tmp/dupvocab.json"
expect "tokenizer.json vocab with a key twice" "$tmp/dupvocab.json|\"a\"|twice" "$DSC" tokenize --tokenizer "$tmp/dupvocab.json" -p "hi"
expect "tokenize -f a directory" "$tmp|directory" "$DSC" tokenize --tokenizer "$TOK" -f "$tmp"
expect "tokenize --jsonl a directory" "$tmp|directory" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp"
mkdir "$tmp/tc" && cp "$TOK" "$tmp/tc/tokenizer.json" && printf '{"chat_template": ' >"$tmp/tc/tokenizer_config.json"
expect "tokenizer_config.json cut short" "tokenizer_config.json" "$DSC" run -m "$V3" --tokenizer "$tmp/tc/tokenizer.json" -p "hi" -n 2
printf '{"chat_template": 5}' >"$tmp/tc/tokenizer_config.json"
expect "chat_template a number" "tokenizer_config.json|chat_template" "$DSC" run -m "$V3" --tokenizer "$tmp/tc/tokenizer.json" -p "hi" -n 2
printf '{"model": {"type": "WordPiece", "vocab": {}}}' >"$tmp/wp.json"
expect "tokenizer model not BPE" "$tmp/wp.json" "$DSC" tokenize --tokenizer "$tmp/wp.json" -p "hi"
expect "detokenize id out of range" "99999" "$DSC" detokenize --tokenizer "$TOK" --ids "3 99999"
expect "detokenize negative id" "-5" "$DSC" detokenize --tokenizer "$TOK" --ids "3 -5"
expect "invalid UTF-8 in the prompt" "UTF-8" "$DSC" tokenize --tokenizer "$TOK" -p "$(printf 'ab\377cd')"
expect "invalid UTF-8 in a run prompt" "the conversation|UTF-8" "$DSC" run -m "$V3" --tokenizer "$TOK" -p "$(printf 'ab\300\300')" -n 2
printf '{"text": "ok"}\n{"txt": "no"}\n' >"$tmp/bad.jsonl"
expect "jsonl line without text" "text" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp/bad.jsonl"
printf '{"text": "a\\u0000bcd"}\n' >"$tmp/nul.jsonl"
expect "jsonl text holding \\u0000" "nul.jsonl:1|NUL" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp/nul.jsonl"
printf '{"text": "ok"} x\n' >"$tmp/tail.jsonl"
expect "jsonl line with bytes after its object" "tail.jsonl:1" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp/tail.jsonl"
printf '{"text": "ok"}\n{"text": "a", "text": "b"}\n' >"$tmp/dup.jsonl"
expect "jsonl line with a key twice" "dup.jsonl:2|twice" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp/dup.jsonl"
printf '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "messages": []}\n' >"$tmp/dup.sft"
expect "sft example with a key twice" "dup.sft:1|messages|twice" "$DSC" sft "$V3" --tokenizer "$TOK" --data "$tmp/dup.sft" -o "$tmp/sft-out"
printf '{"messages": [{"role": "user", "content": "q\\u0000x"}, {"role": "assistant", "content": "a"}]}\n' >"$tmp/nul.sft"
expect "sft example holding \\u0000" "nul.sft:1|NUL" "$DSC" sft "$V3" --tokenizer "$TOK" --data "$tmp/nul.sft" -o "$tmp/sft-out"
expect "grpo --ref with another vocabulary" "--ref|vocab_size 512|384" "$DSC" grpo "$ROOT/models/dsc-r1-tiny" --steps 1 \
    --prompts 1 --group 2 --max-new 8 -t 1 --ref "$V3" --beta 0.1 -o "$tmp/grpo-out"
printf '{"question": "Using the numbers [1, 2], make 3.", "question": "x"}\n' >"$tmp/dup.tasks"
printf '{"text": "1 + 2"}\n' >"$tmp/compl.jsonl"
expect "task with a key twice" "dup.tasks:1|question|twice" "$DSC" tasks --check "$tmp/dup.tasks" --completions "$tmp/compl.jsonl"
expect "model without tokenizer.json" "tokenizer.json" "$DSC" run -m "$V3" -p "hi" -n 2
expect "conversation longer than the context" "context" "$DSC" run -m "$V3" --tokenizer "$TOK" -c 8 -p "a long question"
expect "unknown kv cache type" "--kv-type|f8" "$DSC" generate -m "$V3" --kv-type f8 --tokens "0 1" -n 2
expect "q8 kv cache with rows not in 32-blocks" "Q8|32" "$DSC" generate -m "$V3" --kv-type q8 --tokens "0 1" -n 2

# outputs: not the model's own files, not a directory, not lost
mkdir -p "$tmp/own" && cp "$V3/config.json" "$V3/model.safetensors" "$tmp/own/"
expect "logits -o into the model's own weights" "own/model.safetensors|a file of the model" \
    "$DSC" logits -m "$tmp/own" --tokens "$T3" -o "$tmp/own/model.safetensors"
expect "logits -o a directory" "is a directory" "$DSC" logits -m "$V3" --tokens "$T3" -o "$tmp"
expect "logits -o an empty path" "empty" "$DSC" logits -m "$V3" --tokens "$T3" -o ""
expect "an empty option value" "--isa|empty value" "$DSC" generate -m "$V3" --tokens "$T3" -n 2 --isa ""
expect "bench -p beyond -c, before loading" "-c 50|fewer positions|-p 100" "$DSC" bench -m "$V3" -p 100 -n 4 -r 1 -c 50
expect "bench -d + -n beyond -c, before loading" "-c 50|-d 100 + -n 4" "$DSC" bench -m "$V3" -p 8 -n 4 -r 1 -d 100 -c 50
expect "bench lists: a test beyond -c, before loading" "-c 50|pp16 @ d100 needs, 116" "$DSC" bench -m "$V3" -p 8,16 -n 4 -r 1 -d 0,100 -c 50
expect "bench lists: nothing to measure" "-p 0 and -n 0" "$DSC" bench -m "$V3" -p 0 -n 0 -d 0,8 -r 1
if [ -w /dev/full ]; then
    "$DSC" tokenize --tokenizer "$TOK" -p "hello" >/dev/full 2>"$tmp/err"; rc=$?
    [ $rc -eq 1 ] && grep -q "stdout: No space" "$tmp/err" && finish "tokenize to /dev/full is exit 1" "" ||
        finish "tokenize to /dev/full is exit 1" "exit $rc"
fi
printf '{"text":"a"}\n\000{"text":"b"}\n{"text":"c"}\n' >"$tmp/nulbyte.jsonl"
expect "jsonl line with a NUL byte" "nulbyte.jsonl:2|NUL byte" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp/nulbyte.jsonl"
printf '{"text":"ok"}\n{"text":"bad \377"}\n' >"$tmp/utf8.jsonl"
expect "jsonl line with invalid UTF-8 names the line" "utf8.jsonl:2|invalid UTF-8" "$DSC" tokenize --tokenizer "$TOK" --jsonl "$tmp/utf8.jsonl"
printf 'ok \377\n' >"$tmp/utf8.txt"
expect "-f with invalid UTF-8 names the file" "utf8.txt|invalid UTF-8" "$DSC" tokenize --tokenizer "$TOK" -f "$tmp/utf8.txt"
printf 'a\000b' >"$tmp/nul.txt"
ids=$("$DSC" tokenize --tokenizer "$TOK" -f "$tmp/nul.txt" 2>/dev/null)
"$DSC" detokenize --tokenizer "$TOK" --ids "$ids" 2>"$tmp/err" >"$tmp/out"
if printf '\n' | cat "$tmp/nul.txt" - | cmp -s - "$tmp/out"; then finish "detokenize prints a NUL byte (a NUL between two letters, round trip)" ""
else finish "detokenize prints a NUL byte (a NUL between two letters, round trip)" "ids '$ids' gave $(od -An -c "$tmp/out")"; fi
mkdir -p "$tmp/mp128" && cp "$V3/model.safetensors" "$tmp/mp128/" &&
    python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['max_position_embeddings']=128; c['rope_scaling']=None; json.dump(c,open(sys.argv[2],'w'))" \
        "$V3/config.json" "$tmp/mp128/config.json"
expect_ok "kld of models of 128 positions: windows of 128" "$DSC" kld -m "$tmp/mp128" -m "$tmp/mp128" -n 200
expect "tokenize with -p and -f" "one way" "$DSC" tokenize --tokenizer "$TOK" -p "a" -f "$tmp/utf8.txt"

# run --samples takes the options a single run takes
R1=$ROOT/models/dsc-r1-tiny
expect "run --samples beyond -c" "does not fit the context of 10" "$DSC" run -m "$R1" -p "What is 2+3?" -n 4 -c 10 --samples 2
expect "run --samples with -n 0" "-n 0" "$DSC" run -m "$R1" -p "hi" -n 0 --samples 2
expect "run --samples with --raw" "--raw" "$DSC" run -m "$R1" -p "hi" -n 4 --raw --samples 2
expect "run --samples with a kv type the model cannot take" "Q8|32" "$DSC" run -m "$R1" -p "hi" -n 4 --kv-type q8 --samples 2
# --mtp: only where tokens are generated, and only with an MTP layer
expect "--mtp with --samples" "--mtp" "$DSC" run -m "$R1" -p "hi" -n 4 --mtp --samples 2
expect "--mtp on logits" "--mtp: only run, chat, generate, serve and bench" "$DSC" logits -m "$R1" --tokens "0 1" -o "$tmp/l.st" --mtp
if "$DSC" serve -m /nonexistent 2>&1 | grep -q "without libmicrohttpd"; then :; else
    expect "serve --mtp on a model without an MTP layer" "num_nextn_predict_layers 0" "$DSC" serve -m "$R1" --port 0 --mtp
fi
expect "run --mtp on a model without an MTP layer" "num_nextn_predict_layers 0" "$DSC" run -m "$R1" -p "hi" -n 4 --mtp
expect "bench --mtp on a model without an MTP layer" "num_nextn_predict_layers 0" "$DSC" bench -m "$R1" -p 4 -n 2 -r 1 --mtp
expect "--mtp-max-batch without --mtp" "--mtp-max-batch: only with serve --mtp" "$DSC" serve -m "$R1" --port 0 --mtp-max-batch 2
expect "--mtp-max-batch 0" "--mtp-max-batch" "$DSC" serve -m "$R1" --port 0 --mtp --mtp-max-batch 0
expect "--mtp-p-min without --mtp" "--mtp-p-min: only with --mtp" "$DSC" generate -m "$R1" --tokens "1 2" --mtp-p-min 0.5
expect "bench --mtp --mtp-p-min" "--mtp-p-min: only with --mtp (run, chat, generate, serve)" "$DSC" bench -m "$R1" --mtp --mtp-p-min 0.5
expect "--mtp-p-min 1.5" "--mtp-p-min" "$DSC" generate -m "$R1" --tokens "1 2" --mtp --mtp-p-min 1.5
expect "--mtp-p-min nan" "--mtp-p-min" "$DSC" generate -m "$R1" --tokens "1 2" --mtp --mtp-p-min nan
expect "quantize --batch-invariant" "--batch-invariant: only run, chat, generate, logits, serve, bench, kld and perplexity" "$DSC" quantize -m "$R1" -o "$tmp/never" --type q8 --batch-invariant
# a tokenizer with ids beyond the model's vocabulary: one line naming both, before any output
expect "run with a tokenizer larger than the model" "tokenizer.json|128815 token ids|vocab_size 384|dsc-r1-tiny" \
    "$DSC" run -m "$R1" -p "hi" -n 4 --tokenizer "$GOLDEN/tokenizer/deepseek-v3/tokenizer.json"
expect "run --samples with a tokenizer larger than the model" "128815 token ids|vocab_size 384" \
    "$DSC" run -m "$R1" -p "hi" -n 4 --samples 2 --tokenizer "$GOLDEN/tokenizer/deepseek-v3/tokenizer.json"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
