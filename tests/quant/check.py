"""Checks on checkpoints written by `dsc quantize` (stdlib only).

usage: check.py COMMAND ARGS  (exit 0 and one line of figures on success,
exit 1 and the reason otherwise)

  header DIR SRC TYPE   DIR = SRC quantised to TYPE (q8 | q4): config.json has
                        quantization_config {"quant_method": "dsc", "type": TYPE,
                        "block_size": 32}; every I8 [r, c] / U8 [r, c / 2] tensor
                        W has W_qscale F16 [r, c / 32] and every _qscale its W;
                        under q4 only the routed experts are U8 (all else I8), under q8 nothing is
                        U8; no weight_scale_inv is left; every SRC tensor is there;
                        each file's data starts 64-aligned, without holes, each
                        tensor aligned to its element size (and to 64 where its
                        size is a multiple of 64); a shard index lists every
                        tensor in its file
  copy DIR SRC          DIR = SRC rewritten by --type copy: that layout, the same
                        tensors (names, dtypes, shapes, bytes), config.json
                        byte for byte
  kld MODEL Q8 Q4       `dsc kld --json` outputs of MODEL against its q8 and q4
                        copies: mean KLD of q8 < 1e-2 (v3-tiny) or 2e-2 (others),
                        2 x q8 < q4 < 0.5
  ppl JSON IDS CTX LOGITS...
                        `dsc perplexity --json` output against the NLLs computed
                        here from `dsc logits` of each chunk (IDS: the text's ids,
                        one line; chunk c's first id replaced by BOS): the second
                        half of each chunk (positions CTX/2 .. CTX-2 predicting the
                        next id) scored; perplexity to 1e-5, its error to 1e-3
  kldppl JSON KEY IDS LOGITS...
                        `dsc kld --json`'s perplexity KEY (ppl_a / ppl_b) against
                        the NLLs of every position with a next id, from the
                        logits of each window (windows in order over IDS)
"""
import math
import json
import os
import struct
import sys

ELEM = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "I8": 1, "U8": 1}
HEADS = ("lm_head.weight", ".shared_head.head.weight")


def fail(msg):
    print(msg)
    sys.exit(1)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


def files_of(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        return sorted(set(json.load(open(idx))["weight_map"].values()))
    return ["model.safetensors"]


def check_layout(d, ours=True):
    """name -> (dtype, shape) of every tensor, after the per-file layout checks
    (ours: dsc's writer's 64-byte alignment too)."""
    al = 64 if ours else 8
    out = {}
    for fn in files_of(d):
        p = os.path.join(d, fn)
        hl, hdr = read_header(p)
        if (8 + hl) % al:
            fail("%s: data starts at %d, not %d-aligned" % (fn, 8 + hl, al))
        end = 0
        for b, en, k, dt in sorted((v["data_offsets"][0], v["data_offsets"][1], k, v["dtype"])
                                   for k, v in hdr.items() if k != "__metadata__"):
            if b != end or b % ELEM[dt] or (ours and (en - b) % 64 == 0 and b % 64):
                fail("%s: %s at %d (previous ends at %d) is misplaced or not aligned (to its element size, and to 64 "
                     "when its size is a multiple of 64)" % (fn, k, b, end))
            end = en
            out[k] = (dt, hdr[k]["shape"], fn)
        if os.path.getsize(p) != 8 + hl + end:
            fail("%s: %d bytes, header says %d" % (fn, os.path.getsize(p), 8 + hl + end))
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        if set(wm) != set(out) or any(out[k][2] != v for k, v in wm.items()):
            fail("index weight_map does not match the shards")
    return out


def cmd_header(d, src, qtype):
    q = json.load(open(os.path.join(d, "config.json"))).get("quantization_config")
    if q != {"quant_method": "dsc", "type": qtype, "block_size": 32}:
        fail("quantization_config = %s" % q)
    t = check_layout(d)
    s = check_layout(src, ours=False)
    missing = [k for k in s if k not in t and not k.endswith("_scale_inv")]
    if missing:
        fail("tensors of %s missing: %s" % (src, missing[:3]))
    if any(k.endswith("_scale_inv") for k in t):
        fail("weight_scale_inv tensors left")
    n8 = n4 = 0
    for k, (dt, shape, _) in t.items():
        if k.endswith("_qscale"):
            w = t.get(k[:-len("_qscale")])
            if not w or w[0] not in ("I8", "U8"):
                fail("%s has no quantised weight" % k)
            continue
        if dt not in ("I8", "U8"):
            continue
        routed = ".mlp.experts." in k
        if (qtype == "q8" and dt != "I8") or (qtype == "q4" and (dt == "U8") != routed):
            fail("%s is %s under %s" % (k, dt, qtype))
        r, c = shape[0], shape[1] * (2 if dt == "U8" else 1)
        if [r, c] != s[k][1] or c % 32:
            fail("%s has shape %s, source %s" % (k, shape, s[k][1]))
        qs = t.get(k + "_qscale")
        if not qs or qs[0] != "F16" or qs[1] != [r, c // 32]:
            fail("%s_qscale is %s, want F16 [%d, %d]" % (k, qs and qs[:2], r, c // 32))
        n8 += dt == "I8"
        n4 += dt == "U8"
    if n8 + n4 == 0:
        fail("nothing is quantised")
    print("%d I8 + %d U8 tensors with F16 qscales, %d kept, %d file(s)" %
          (n8, n4, len(t) - 2 * (n8 + n4), len(files_of(d))))


def cmd_copy(d, src):
    t, s = check_layout(d), check_layout(src, ours=False)
    if set(t) != set(s):
        fail("tensors differ: %s" % sorted(set(t) ^ set(s))[:5])
    hd, hs = {}, {}
    for dd, h in ((d, hd), (src, hs)):
        for fn in files_of(dd):
            n, hdr = read_header(os.path.join(dd, fn))
            for k, v in hdr.items():
                if k != "__metadata__":
                    h[k] = (os.path.join(dd, fn), 8 + n + v["data_offsets"][0], v["data_offsets"][1] - v["data_offsets"][0])
    total = 0
    for k in sorted(t):
        if t[k][:2] != s[k][:2]:
            fail("%s: %s %s, source %s %s" % (k, t[k][0], t[k][1], s[k][0], s[k][1]))
        (pa, oa, na), (pb, ob, nb) = hd[k], hs[k]
        with open(pa, "rb") as fa, open(pb, "rb") as fb:
            fa.seek(oa)
            fb.seek(ob)
            if na != nb or fa.read(na) != fb.read(nb):
                fail("%s: bytes differ from the source" % k)
        total += na
    if open(os.path.join(d, "config.json"), "rb").read() != open(os.path.join(src, "config.json"), "rb").read():
        fail("config.json differs from the source")
    print("%d tensors, %d bytes, all as in the source" % (len(t), total))


def cmd_kld(model, q8_json, q4_json):
    """Thresholds are 2-3x the figures measured on the golden models (512
    random tokens, windows of 128; test_quant.sh says why they are loose)."""
    a, b = json.load(open(q8_json)), json.load(open(q4_json))
    q8, q4 = a["mean_kld"], b["mean_kld"]
    fig = "q8 %.3g (max %.3g, top-1 %.1f%%), q4 %.3g (max %.3g, top-1 %.1f%%)" % (
        q8, a["max_kld"], 100 * a["top1_agreement"], q4, b["max_kld"], 100 * b["top1_agreement"])
    limit = 1e-2 if model == "v3-tiny" else 2e-2
    if not q8 < limit:
        fail("q8 mean KLD %.3g >= %g: %s" % (q8, limit, fig))
    if not (2 * q8 < q4 < 0.5):
        fail("q4 mean KLD %.3g not in (2 x q8, 0.5): %s" % (q4, fig))
    print(fig)


def read_logits(path):
    """The F32 tensor 'logits' [T, V] of `dsc logits -o` as T rows."""
    n, hdr = read_header(path)
    t = hdr["logits"]
    if t["dtype"] != "F32" or len(t["shape"]) != 2:
        fail("%s: logits %s %s, want F32 [T, V]" % (path, t["dtype"], t["shape"]))
    rows, v = t["shape"]
    a, _ = t["data_offsets"]
    with open(path, "rb") as f:
        f.seek(8 + n + a)
        flat = struct.unpack("<%df" % (rows * v), f.read(4 * rows * v))
    return [flat[r * v:(r + 1) * v] for r in range(rows)]


def nll(row, target):
    m = max(row)
    return m + math.log(sum(math.exp(x - m) for x in row)) - row[target]


def close(got, want, rel, what):
    if not abs(got - want) <= rel * abs(want):
        fail("%s %.9g, computed here %.9g (relative difference %.3g > %g)" % (what, got, want,
                                                                            abs(got - want) / abs(want), rel))


def cmd_ppl(out_json, ids_file, ctx, *logits):
    j, ids, ctx = json.load(open(out_json)), [int(x) for x in open(ids_file).read().split()], int(ctx)
    nlls = []
    for c, path in enumerate(logits):
        rows, chunk = read_logits(path), ids[c * ctx:(c + 1) * ctx]
        if len(rows) != ctx:
            fail("%s: %d rows, want %d" % (path, len(rows), ctx))
        nlls += [nll(rows[p], chunk[p + 1]) for p in range(ctx // 2, ctx - 1)]
    n = len(nlls)
    mean = sum(nlls) / n
    var = sum(x * x for x in nlls) / n - mean * mean
    ppl = math.exp(mean)
    err = ppl * math.sqrt(var / (n - 1))
    if j["tokens_scored"] != n or j["chunks"] != len(logits) or j["ctx"] != ctx:
        fail("scored %d tokens in %d chunks of %d, want %d in %d of %d" % (j["tokens_scored"], j["chunks"], j["ctx"],
                                                                         n, len(logits), ctx))
    close(j["perplexity"], ppl, 1e-5, "perplexity")
    close(j["perplexity_err"], err, 1e-3, "its error")
    print("perplexity %.6f +/- %.6f over %d tokens in %d chunks = computed here %.6f +/- %.6f" % (
        j["perplexity"], j["perplexity_err"], n, len(logits), ppl, err))


def cmd_kldppl(out_json, key, ids_file, *logits):
    j, ids = json.load(open(out_json)), [int(x) for x in open(ids_file).read().split()]
    rows = [r for path in logits for r in read_logits(path)]
    if len(rows) != len(ids):
        fail("%d rows of logits for %d ids" % (len(rows), len(ids)))
    nlls = [nll(rows[p], ids[p + 1]) for p in range(len(ids) - 1)]
    ppl = math.exp(sum(nlls) / len(nlls))
    if j["ppl_positions"] != len(nlls):
        fail("ppl_positions %d, want %d" % (j["ppl_positions"], len(nlls)))
    close(j[key], ppl, 1e-5, key)
    print("%s %.6f over %d positions = computed here %.6f" % (key, j[key], len(nlls), ppl))


if __name__ == "__main__":
    cmds = {"header": cmd_header, "copy": cmd_copy, "kld": cmd_kld, "ppl": cmd_ppl, "kldppl": cmd_kldppl}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        fail(__doc__)
    try:
        cmds[sys.argv[1]](*sys.argv[2:])
    except (OSError, ValueError, KeyError, TypeError, IndexError, ZeroDivisionError) as ex:
        fail("%s: %s" % (type(ex).__name__, ex))
