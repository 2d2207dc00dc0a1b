"""Checks on checkpoints written by `dsc init` (stdlib only).

usage: check.py COMMAND ARGS  (exit 0 and one line of figures on success,
exit 1 and the reason otherwise)

  logits A B            max|a - b| <= 1e-4 max|b| over the F32 tensor 'logits'
  same-header DIR REF   DIR's tensors have REF's names, shapes and dtypes
  layout DIR            every file: data from a 64-byte boundary, no holes, each
                        tensor aligned to its element size and, where its size
                        is a multiple of 64, to 64; the index (if any) lists every
                        tensor in its shard and the right total_size
  fp8 BF16_DIR FP8_DIR  the FP8 weights dequantise to the BF16 ones of the same
                        seed: scale_inv = max|w| / 448 per 128x128 block, and
                        e4m3 round-to-nearest error bounds
  values F32_DIR BF16_DIR  matrices have std 1/sqrt(in), norms mean 1 and sd 0.1,
                        correction bias in [-0.05, 0.05]; BF16 = F32 rounded
  quant-config DIR WANT  config.json's quantization_config is the fp8 one
                        (WANT=fp8) or absent (WANT=none)
"""
import array
import json
import math
import os
import struct
import sys

FP8_QCFG = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8", "weight_block_size": [128, 128]}
ELEM = {"F32": 4, "BF16": 2, "F8_E4M3": 1, "F16": 2}


def fail(msg):
    print(msg)
    sys.exit(1)


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    return n, hdr


def files_of(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        return sorted(set(wm.values()))
    return ["model.safetensors"]


def tensors_of(d):
    """name -> (file, header entry, data start)"""
    out = {}
    for fn in files_of(d):
        n, hdr = read_header(os.path.join(d, fn))
        for k, v in hdr.items():
            if k != "__metadata__":
                out[k] = (fn, v, 8 + n)
    return out


def load(d, name, tensors=None):
    """A tensor as a flat list of floats (F8_E4M3 as its raw codes)."""
    tensors = tensors or tensors_of(d)
    fn, e, base = tensors[name]
    b, en = e["data_offsets"]
    with open(os.path.join(d, fn), "rb") as f:
        f.seek(base + b)
        raw = f.read(en - b)
    if e["dtype"] == "F32":
        return array.array("f", raw).tolist()
    if e["dtype"] == "BF16":
        h = array.array("H", raw)
        w = array.array("I", (x << 16 for x in h))
        return array.array("f", w.tobytes()).tolist()
    if e["dtype"] == "F8_E4M3":
        return list(raw)
    fail("%s: dtype %s" % (name, e["dtype"]))


def e4m3(b):
    s = -1.0 if b & 0x80 else 1.0
    e, m = (b >> 3) & 15, b & 7
    if e == 15 and m == 7:
        return float("nan")
    return s * (m / 8 * 2.0 ** -6 if e == 0 else (1 + m / 8) * 2.0 ** (e - 7))


E4M3 = [e4m3(b) for b in range(256)]


def cmd_logits(a, b, flips="0"):
    """Logits a = b to 1e-4 x max|b|. flips: how many positions (rows) may
    differ by more, up to 1e-2 x max|b|: a model whose Q4 rows round x to
    8 bits turns a 1e-6 difference upstream (prefill's and decode's
    attention sum in different orders) into a whole step of one rounded
    value now and then, at a position it then moves by ~1e-3."""
    def logits(p):
        n, hdr = read_header(p)
        e = hdr["logits"]
        assert e["dtype"] == "F32"
        with open(p, "rb") as f:
            f.seek(8 + n + e["data_offsets"][0])
            return array.array("f", f.read(e["data_offsets"][1] - e["data_offsets"][0])), e["shape"]
    (x, sx), (y, sy) = logits(a), logits(b)
    if sx != sy:
        fail("shapes %s and %s differ" % (sx, sy))
    if not all(math.isfinite(v) for v in x) or not all(math.isfinite(v) for v in y):
        fail("non-finite logits")
    m = max(abs(q) for q in y)
    V = sx[-1] if sx else 1
    rows = [max(abs(p - q) for p, q in zip(x[i:i + V], y[i:i + V])) for i in range(0, len(y), V)]
    d = max(rows)
    far = sorted((r for r in rows if not r <= 1e-4 * m), reverse=True)
    if len(far) > int(flips) or (far and not far[0] <= 1e-2 * m):
        fail("max|a-b| = %.3g > 1e-4 x max|b| = %.3g at %d of %d positions (%s allowed up to 1e-2 x max|b|)"
             % (d, 1e-4 * m, len(far), len(rows), flips))
    print("max|a-b| = %.2g, max|b| = %.3g%s" % (d, m, ", beyond 1e-4 at %d of %d positions" % (len(far), len(rows))
                                                  if int(flips) else ""))


def cmd_same_header(d, ref):
    a = {k: (v[1]["dtype"], v[1]["shape"]) for k, v in tensors_of(d).items()}
    b = {k: (v[1]["dtype"], v[1]["shape"]) for k, v in tensors_of(ref).items()}
    if a != b:
        missing = sorted(set(b) - set(a))[:3]
        extra = sorted(set(a) - set(b))[:3]
        differ = [(k, a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]][:3]
        fail("missing %s extra %s differ %s" % (missing, extra, differ))
    print("%d tensors match" % len(a))


def cmd_layout(d):
    total, n = 0, 0
    for fn in files_of(d):
        p = os.path.join(d, fn)
        hl, hdr = read_header(p)
        if (8 + hl) % 64:
            fail("%s: data starts at %d, not 64-aligned" % (fn, 8 + hl))
        spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k, v["dtype"]) for k, v in hdr.items()
                       if k != "__metadata__")
        end = 0
        for b, en, k, dt in spans:
            if b != end:
                fail("%s: %s starts at %d, previous ends at %d" % (fn, k, b, end))
            if b % ELEM[dt] or ((en - b) % 64 == 0 and b % 64):
                fail("%s: %s at %d is not aligned to %d" % (fn, k, b, 64 if b % ELEM[dt] == 0 else ELEM[dt]))
            end = en
        if os.path.getsize(p) != 8 + hl + end:
            fail("%s: %d bytes, header says %d" % (fn, os.path.getsize(p), 8 + hl + end))
        total += end
        n += len(spans)
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        j = json.load(open(idx))
        if j["metadata"]["total_size"] != total:
            fail("index total_size %s, tensors hold %d bytes" % (j["metadata"]["total_size"], total))
        t = tensors_of(d)
        if set(j["weight_map"]) != set(t) or any(t[k][0] != v for k, v in j["weight_map"].items()):
            fail("index weight_map does not match the shards")
    print("%d files, %d tensors, %d bytes" % (len(files_of(d)), n, total))


def cmd_fp8(bf16_dir, fp8_dir):
    tb, tf = tensors_of(bf16_dir), tensors_of(fp8_dir)
    n_w, n_el, worst = 0, 0, 0.0
    for name, (fn, e, base) in sorted(tf.items()):
        if name.endswith("_scale_inv"):
            continue
        if e["dtype"] != "F8_E4M3":  # kept as in the bf16 checkpoint
            if tb[name][1]["dtype"] != e["dtype"] or load(fp8_dir, name, tf) != load(bf16_dir, name, tb):
                fail("%s: not quantised but differs from the bf16 checkpoint" % name)
            continue
        rows, cols = e["shape"]
        q = load(fp8_dir, name, tf)
        s = load(fp8_dir, name + "_scale_inv", tf)
        w = load(bf16_dir, name, tb)
        sc = tf[name + "_scale_inv"][1]["shape"]
        if sc != [(rows + 127) // 128, (cols + 127) // 128]:
            fail("%s: scale shape %s" % (name, sc))
        nbc = sc[1]
        amax = [0.0] * (sc[0] * nbc)
        for r in range(rows):
            for c in range(cols):
                k = (r // 128) * nbc + c // 128
                amax[k] = max(amax[k], abs(w[r * cols + c]))
        for k in range(len(amax)):
            # the scale comes from the F32 values, amax from their BF16 roundings
            if abs(s[k] - amax[k] / 448) > 2.0 ** -8 * s[k]:
                fail("%s: block %d scale_inv %g, max|w|/448 = %g" % (name, k, s[k], amax[k] / 448))
        for r in range(rows):
            for c in range(cols):
                i = r * cols + c
                sk = s[(r // 128) * nbc + c // 128]
                deq, x = E4M3[q[i]] * sk, w[i]
                tol = 2.0 ** -4 * abs(x) * 1.01 + 2.0 ** -10 * sk + 2.0 ** -8 * abs(x)
                if not abs(deq - x) <= tol:
                    fail("%s[%d, %d]: fp8 %g (code 0x%02x x %g), bf16 %g" % (name, r, c, deq, q[i], sk, x))
                worst = max(worst, abs(deq - x) / sk)
        n_w += 1
        n_el += rows * cols
    if n_w == 0:
        fail("no F8_E4M3 tensors")
    print("%d fp8 weights, %d values, max |deq - w| = %.3f x scale_inv" % (n_w, n_el, worst))


def cmd_values(f32_dir, bf16_dir):
    tf, tb = tensors_of(f32_dir), tensors_of(bf16_dir)
    n = 0
    for name, (fn, e, base) in sorted(tf.items()):
        x = load(f32_dir, name, tf)
        shape = e["shape"]
        m = sum(x) / len(x)
        sd = math.sqrt(sum((v - m) ** 2 for v in x) / len(x))
        if name.endswith("e_score_correction_bias"):
            ok = all(-0.05 <= v <= 0.05 for v in x) and tb[name][1]["dtype"] == "F32"
        elif len(shape) == 1:
            ok = len(x) < 64 or (abs(m - 1) < 0.05 and 0.07 < sd < 0.13)
        else:
            ok = len(x) < 2000 or (abs(m) * math.sqrt(shape[1]) < 0.1 and abs(sd * math.sqrt(shape[1]) - 1) < 0.1)
        if not ok:
            fail("%s %s: mean %g sd %g" % (name, shape, m, sd))
        y = load(bf16_dir, name, tb)
        if tb[name][1]["dtype"] == "BF16":
            for a, b in zip(x, y):
                if abs(a - b) > 2.0 ** -8 * abs(a):
                    fail("%s: bf16 %r is not f32 %r rounded" % (name, b, a))
        elif x != y:
            fail("%s: F32 in both checkpoints but different" % name)
        n += 1
    print("%d tensors" % n)


def cmd_quant_config(d, want):
    c = json.load(open(os.path.join(d, "config.json")))
    q = c.get("quantization_config")
    if (want == "fp8" and q != FP8_QCFG) or (want == "none" and q is not None):
        fail("quantization_config = %s" % q)
    print("quantization_config %s" % want)


if __name__ == "__main__":
    cmds = {"logits": cmd_logits, "same-header": cmd_same_header, "layout": cmd_layout, "fp8": cmd_fp8,
            "values": cmd_values, "quant-config": cmd_quant_config}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        fail(__doc__)
    try:
        cmds[sys.argv[1]](*sys.argv[2:])
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as ex:
        fail("%s: %s" % (type(ex).__name__, ex))
