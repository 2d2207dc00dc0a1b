#!/usr/bin/env python3
"""Independent float64 reference of the DeepSeek-V2/V3 forward pass (pure Python).

Library:
    m = Model("path/to/checkpoint_dir")
    res = m.run([0, 5, 17], greedy=8)   # res.logits (list of T lists), res.greedy, res.margins

CLI:
    dsref.py MODEL_DIR --tokens "0 5 17" [--greedy N] -o OUT.safetensors
    dsref.py MODEL_DIR --check EXPECTED.safetensors     (tokens / greedy length from EXPECTED)

MODEL_DIR holds config.json and model.safetensors, or shards listed by
model.safetensors.index.json.  A directory whose config lives in MODEL_DIR/model/
(the layout of shared/golden/models/NAME) is accepted too.

Semantics follow the Hugging Face modelling code of DeepSeek-V2/V3 (see README.md).
Everything is computed in float64 from the stored (dequantized) weights.
"""
import argparse
import array
import bisect
import json
import math
import operator
import os
import struct
import sys
import time

_mul = operator.mul

# --------------------------------------------------------------------------
# safetensors I/O
# --------------------------------------------------------------------------

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1,
              "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _e4m3_table():
    t = []
    for b in range(256):
        s = -1.0 if b & 0x80 else 1.0
        e = (b >> 3) & 0xF
        m = b & 0x7
        if e == 0xF and m == 0x7:
            t.append(float("nan"))
        elif e == 0:
            t.append(s * m / 8.0 * 2.0 ** -6)
        else:
            t.append(s * (1.0 + m / 8.0) * 2.0 ** (e - 7))
    return t


E4M3 = _e4m3_table()
_BIG = sys.byteorder == "big"


def _arr(code, raw):
    a = array.array(code)
    a.frombytes(raw)
    if _BIG:
        a.byteswap()
    return a


def decode(dtype, raw):
    """Raw little-endian bytes -> flat list of Python floats / ints."""
    if dtype == "F32":
        return _arr("f", raw).tolist()
    if dtype == "F64":
        return _arr("d", raw).tolist()
    if dtype == "BF16":
        h = _arr("H", raw)
        w = array.array("I", map((16).__rlshift__, h))
        return array.array("f", w.tobytes()).tolist()
    if dtype == "F16":
        return list(struct.unpack("<%de" % (len(raw) // 2), raw))
    if dtype == "F8_E4M3":
        return list(map(E4M3.__getitem__, raw))
    if dtype == "I32":
        return _arr("i", raw).tolist()
    if dtype == "I64":
        return _arr("q", raw).tolist()
    if dtype == "I16":
        return _arr("h", raw).tolist()
    if dtype == "I8":
        return _arr("b", raw).tolist()
    if dtype in ("U8", "BOOL"):
        return list(raw)
    raise ValueError("unsupported dtype %s" % dtype)


def f32_to_bf16_bits(values):
    """Round-to-nearest-even float -> bf16 bit patterns (array 'H')."""
    bits = array.array("I", array.array("f", values).tobytes())
    out = array.array("H")
    for b in bits:
        if (b & 0x7F800000) == 0x7F800000 and (b & 0x7FFFFF):   # NaN
            out.append(0x7FC0 | ((b >> 16) & 0x8000))
        else:
            out.append(((b + 0x7FFF + ((b >> 16) & 1)) >> 16) & 0xFFFF)
    return out


def encode(dtype, values):
    """Flat list of numbers -> little-endian bytes (values are rounded to dtype)."""
    if dtype == "F32":
        a = array.array("f", values)
    elif dtype == "F64":
        a = array.array("d", values)
    elif dtype == "BF16":
        a = f32_to_bf16_bits(values)
    elif dtype == "F16":
        return struct.pack("<%de" % len(values), *values)
    elif dtype == "F8_E4M3":
        return bytes(values)            # values must already be e4m3 codes
    elif dtype == "I32":
        a = array.array("i", values)
    elif dtype == "I64":
        a = array.array("q", values)
    elif dtype in ("U8", "BOOL"):
        return bytes(values)
    else:
        raise ValueError("unsupported dtype %s" % dtype)
    if _BIG:
        a.byteswap()
    return a.tobytes()


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n).decode("utf-8"))
    return hdr, 8 + n


def read_safetensors(path):
    """Whole file -> ({name: (dtype, shape, flat values)}, metadata)."""
    hdr, start = read_header(path)
    meta = hdr.pop("__metadata__", {}) or {}
    out = {}
    with open(path, "rb") as f:
        for name, info in hdr.items():
            b, e = info["data_offsets"]
            f.seek(start + b)
            out[name] = (info["dtype"], info["shape"], decode(info["dtype"], f.read(e - b)))
    return out, meta


def write_safetensors(path, tensors, metadata=None, sort=True):
    """tensors: {name: (dtype, shape, flat values or raw bytes)}.

    Like the reference Python implementation, tensors are laid out by
    decreasing element size then name, and the header is space-padded to a
    multiple of 8, so every tensor is aligned to its element size.
    """
    names = list(tensors)
    if sort:
        names.sort(key=lambda n: (-DTYPE_SIZE[tensors[n][0]], n))
    hdr = {}
    if metadata is not None:
        hdr["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for n in names:
        dt, shape, vals = tensors[n]
        raw = vals if isinstance(vals, (bytes, bytearray)) else encode(dt, vals)
        cnt = 1
        for d in shape:
            cnt *= d
        if len(raw) != cnt * DTYPE_SIZE[dt]:
            raise ValueError("%s: %d bytes for shape %s %s" % (n, len(raw), shape, dt))
        hdr[n] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
    h += b" " * ((-len(h)) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    return off


class Store:
    """Tensor lookup over a single-file or sharded checkpoint directory."""

    def __init__(self, d):
        self.dir = d
        self.where = {}         # name -> (path, dtype, shape, begin, end)
        idx = os.path.join(d, "model.safetensors.index.json")
        single = os.path.join(d, "model.safetensors")
        if os.path.exists(single):
            files = [single]
        elif os.path.exists(idx):
            with open(idx) as f:
                wm = json.load(f)["weight_map"]
            files = sorted(set(os.path.join(d, v) for v in wm.values()))
        else:
            files = sorted(os.path.join(d, x) for x in os.listdir(d) if x.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError("no safetensors in %s" % d)
        for p in files:
            hdr, start = read_header(p)
            hdr.pop("__metadata__", None)
            for n, info in hdr.items():
                b, e = info["data_offsets"]
                if n in self.where:
                    raise ValueError("tensor %s in two files" % n)
                self.where[n] = (p, info["dtype"], info["shape"], start + b, start + e)
        if os.path.exists(idx) and not os.path.exists(single):
            for n, fn in wm.items():
                if n not in self.where or os.path.basename(self.where[n][0]) != fn:
                    raise ValueError("index says %s in %s, not found there" % (n, fn))

    def __contains__(self, n):
        return n in self.where

    def get(self, n):
        p, dt, shape, b, e = self.where[n]
        with open(p, "rb") as f:
            f.seek(b)
            raw = f.read(e - b)
        return dt, shape, decode(dt, raw)


# --------------------------------------------------------------------------
# math helpers
# --------------------------------------------------------------------------

def matvec(W, x):
    return [sum(map(_mul, row, x)) for row in W]


def rmsnorm(x, w, eps):
    r = 1.0 / math.sqrt(sum(map(_mul, x, x)) / len(x) + eps)
    return [a * r * b for a, b in zip(x, w)]


def sigmoid(z):
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def silu(z):
    return z * sigmoid(z)


def softmax(v):
    m = max(v)
    e = [math.exp(a - m) for a in v]
    s = sum(e)
    return [a / s for a in e]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


# the non-negative finite e4m3 values, increasing with their codes 0x00..0x7e
_E4M3_POS = [E4M3[b] for b in range(0x7F)]


def e4m3_round(y):
    """-> (y rounded to e4m3, nearest even code on a tie; |y| <= 448), and the
    distance of |y| from the nearest rounding midpoint in steps of the grid there."""
    a = abs(y)
    j = bisect.bisect_left(_E4M3_POS, a)
    if j >= len(_E4M3_POS):
        return math.copysign(448.0, y), math.inf
    if _E4M3_POS[j] == a:
        return y, 0.5
    lo, hi = _E4M3_POS[j - 1], _E4M3_POS[j]
    mid = (lo + hi) / 2
    r = lo if a < mid or (a == mid and (j - 1) % 2 == 0) else hi
    return math.copysign(r, y), abs(a - mid) / (hi - lo)


def hadamard(x):
    """Walsh-Hadamard transform of 2^k values, scaled by (2^k)^-0.5."""
    x = list(x)
    n, h = len(x), 1
    while h < n:
        for i in range(0, n, 2 * h):
            for j in range(i, i + h):
                a, b = x[j], x[j + h]
                x[j], x[j + h] = a + b, a - b
        h *= 2
    s = n ** -0.5
    return [a * s for a in x]


def get_mscale(factor, m):
    return 0.1 * m * math.log(factor) + 1.0 if factor > 1 else 1.0


def rope_params(cfg):
    """-> (inv_freq list, cos/sin multiplier, softmax scale)."""
    dim = cfg["qk_rope_head_dim"]
    base = float(cfg.get("rope_theta", 10000.0))
    scale = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling")
    freq_extra = [base ** (-(2.0 * i) / dim) for i in range(dim // 2)]
    if not rs:
        return freq_extra, 1.0, scale
    kind = rs.get("type", rs.get("rope_type"))
    if kind != "yarn":
        raise NotImplementedError("rope_scaling type %r" % kind)
    factor = float(rs["factor"])
    orig = rs.get("original_max_position_embeddings", 4096)
    beta_fast = rs.get("beta_fast", 32)
    beta_slow = rs.get("beta_slow", 1)
    mscale = rs.get("mscale", 1)
    mscale_all_dim = rs.get("mscale_all_dim", 0)

    def corr_dim(r):
        return (dim * math.log(orig / (r * 2 * math.pi))) / (2 * math.log(base))

    low = max(math.floor(corr_dim(beta_fast)), 0)
    high = min(math.ceil(corr_dim(beta_slow)), dim - 1)
    if low == high:
        high += 0.001
    inv = []
    for i in range(dim // 2):
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        mask = 1.0 - ramp
        fe = freq_extra[i]
        fi = fe / factor
        inv.append(fi * (1.0 - mask) + fe * mask)
    cs_mul = get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)
    if mscale_all_dim:
        m = get_mscale(factor, mscale_all_dim)
        scale = scale * m * m
    return inv, cs_mul, scale


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

class Result:
    def __init__(self):
        self.logits = []            # one list per prompt position
        self.greedy = []
        self.margins = {"route": math.inf, "group": math.inf, "argmax": math.inf}
        self.warnings = []
        # deepseek_v32: the smallest gap between the last kept and first dropped
        # index score (relative to the largest |score| of that query), and the
        # smallest distance of a latent rounded to FP8 from a rounding midpoint,
        # in FP8 steps (kept apart from the margins above: other units)
        self.index_margin = math.inf
        self.fp8_margin = math.inf


class Model:
    def __init__(self, model_dir, log=None):
        if not os.path.exists(os.path.join(model_dir, "config.json")) and \
                os.path.exists(os.path.join(model_dir, "model", "config.json")):
            model_dir = os.path.join(model_dir, "model")
        self.dir = model_dir
        self.log = log or (lambda *a: None)
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = cfg = json.load(f)
        self.st = Store(model_dir)
        self.v3 = cfg.get("model_type") in ("deepseek_v3", "deepseek_v32")
        if cfg.get("model_type") not in ("deepseek_v2", "deepseek_v3", "deepseek_v32"):
            raise ValueError("model_type %r" % cfg.get("model_type"))
        # DeepSeek-V3.2: the lightning indexer picks index_topk positions per query
        self.topk = cfg.get("index_topk", 0) if cfg.get("model_type") == "deepseek_v32" else 0
        self.Hi = cfg.get("index_n_heads", 0)
        self.Di = cfg.get("index_head_dim", 0)
        self._res = None
        qc = cfg.get("quantization_config") or {}
        self.block = qc.get("weight_block_size") or [128, 128]
        self.H = cfg["num_attention_heads"]
        self.dn = cfg["qk_nope_head_dim"]
        self.dr = cfg["qk_rope_head_dim"]
        self.dv = cfg["v_head_dim"]
        self.kvr = cfg["kv_lora_rank"]
        self.qr = cfg.get("q_lora_rank")
        self.eps = cfg.get("rms_norm_eps", 1e-6)
        self.L = cfg["num_hidden_layers"]
        self.inv_freq, self.cs_mul, self.scale = rope_params(cfg)
        self.n_fp8 = 0
        t0 = time.time()
        self.embed = self.mat("model.embed_tokens.weight")
        self.norm = self.vec("model.norm.weight")
        if "lm_head.weight" in self.st:
            self.head = self.mat("lm_head.weight")
        elif cfg.get("tie_word_embeddings"):
            self.head = self.embed
        else:
            raise KeyError("lm_head.weight missing and tie_word_embeddings is false")
        self.layers = [self._layer(i) for i in range(self.L)]
        self.log("loaded %s in %.2fs (%d FP8 matrices)" % (model_dir, time.time() - t0, self.n_fp8))

    # -- weights
    def vec(self, n):
        dt, shape, v = self.st.get(n)
        if len(shape) != 1:
            raise ValueError("%s: shape %s" % (n, shape))
        return v

    def mat(self, n, shape=None):
        dt, sh, v = self.st.get(n)
        if len(sh) != 2:
            raise ValueError("%s: shape %s, want 2-D" % (n, sh))
        if shape is not None and list(sh) != list(shape):
            raise ValueError("%s: shape %s, want %s" % (n, sh, shape))
        R, C = sh
        sn = n[:-len("weight")] + "weight_scale_inv" if n.endswith("weight") else None
        if dt == "F8_E4M3":
            if sn not in self.st:
                raise KeyError("FP8 tensor %s without %s" % (n, sn))
            sdt, ssh, s = self.st.get(sn)
            b0, b1 = self.block
            want = [-(-R // b0), -(-C // b1)]
            if list(ssh) != want:
                raise ValueError("%s: scale shape %s, want %s" % (sn, ssh, want))
            self.n_fp8 += 1
            rows = []
            for r in range(R):
                srow = s[(r // b0) * want[1]:(r // b0 + 1) * want[1]]
                cs = [srow[c // b1] for c in range(C)]
                rows.append(list(map(_mul, v[r * C:(r + 1) * C], cs)))
            return rows
        if sn in self.st:
            raise ValueError("%s has a scale but dtype %s" % (n, dt))
        return [v[r * C:(r + 1) * C] for r in range(R)]

    def is_moe(self, i):
        c = self.cfg
        return bool(c.get("n_routed_experts")) and i >= c.get("first_k_dense_replace", 0) \
            and i % c.get("moe_layer_freq", 1) == 0

    def _mlp(self, p, inter, hid):
        return (self.mat(p + "gate_proj.weight", [inter, hid]),
                self.mat(p + "up_proj.weight", [inter, hid]),
                self.mat(p + "down_proj.weight", [hid, inter]))

    def _layer(self, i):
        c = self.cfg
        hid = c["hidden_size"]
        H, dn, dr, dv, kvr, qr = self.H, self.dn, self.dr, self.dv, self.kvr, self.qr
        p = "model.layers.%d." % i
        a = p + "self_attn."
        L = {"in_norm": self.vec(p + "input_layernorm.weight"),
             "post_norm": self.vec(p + "post_attention_layernorm.weight")}
        if qr:
            L["q_a"] = self.mat(a + "q_a_proj.weight", [qr, hid])
            L["q_a_norm"] = self.vec(a + "q_a_layernorm.weight")
            L["q_b"] = self.mat(a + "q_b_proj.weight", [H * (dn + dr), qr])
        else:
            L["q"] = self.mat(a + "q_proj.weight", [H * (dn + dr), hid])
        L["kv_a"] = self.mat(a + "kv_a_proj_with_mqa.weight", [kvr + dr, hid])
        L["kv_a_norm"] = self.vec(a + "kv_a_layernorm.weight")
        L["kv_b"] = self.mat(a + "kv_b_proj.weight", [H * (dn + dv), kvr])
        L["o"] = self.mat(a + "o_proj.weight", [hid, H * dv])
        if self.topk:
            ix = a + "indexer."
            L["iq"] = self.mat(ix + "wq_b.weight", [self.Hi * self.Di, qr])
            L["ik"] = self.mat(ix + "wk.weight", [self.Di, hid])
            L["ik_w"] = self.vec(ix + "k_norm.weight")
            L["ik_b"] = self.vec(ix + "k_norm.bias")
            L["iw"] = self.mat(ix + "weights_proj.weight", [self.Hi, hid])
        m = p + "mlp."
        if self.is_moe(i):
            E = c["n_routed_experts"]
            mi = c["moe_intermediate_size"]
            L["gate"] = self.mat(m + "gate.weight", [E, hid])
            bn = m + "gate.e_score_correction_bias"
            L["bias"] = self.vec(bn) if bn in self.st else None
            if c.get("topk_method") == "noaux_tc" and L["bias"] is None:
                raise KeyError(bn)
            L["experts"] = [self._mlp(m + "experts.%d." % e, mi, hid) for e in range(E)]
            ns = c.get("n_shared_experts") or 0
            L["shared"] = self._mlp(m + "shared_experts.", mi * ns, hid) if ns else None
        else:
            L["mlp"] = self._mlp(m, c["intermediate_size"], hid)
        return L

    # -- forward pieces
    def rope(self, x, pos):
        out = list(x)
        k = self.cs_mul
        for i, f in enumerate(self.inv_freq):
            ang = pos * f
            co, si = math.cos(ang) * k, math.sin(ang) * k
            a, b = x[2 * i], x[2 * i + 1]
            out[2 * i] = a * co - b * si
            out[2 * i + 1] = b * co + a * si
        return out

    def rope_halves(self, x, pos):
        """RoPE of the indexer: value i turns with value i + dr/2 (not interleaved)."""
        out = list(x)
        k, half = self.cs_mul, self.dr // 2
        for i, f in enumerate(self.inv_freq):
            co, si = math.cos(pos * f) * k, math.sin(pos * f) * k
            a, b = x[i], x[i + half]
            out[i] = a * co - b * si
            out[i + half] = a * si + b * co
        return out

    def fp8_round(self, v, track=False):
        """DeepSeek's act_quant with UE8M0 scales, dequantized: per 128 values
        s = 2^ceil(log2(f32(amax * f32(1/448)))), v -> e4m3(clamp(v / s)) * s.
        track: count the distance to a rounding midpoint in fp8_margin (the
        latents, whose roundings reach the logits directly; those of the
        indexer's queries and keys move index scores, which index_margin covers)."""
        out = []
        for b in range(0, len(v), 128):
            blk = v[b:b + 128]
            amax = max(max(abs(a) for a in blk), f32(1e-4))
            q = f32(amax * f32(1.0 / 448.0))
            mant, ex = math.frexp(q)
            s = 2.0 ** (ex - 1 if mant == 0.5 else ex)
            for a in blk:
                y = min(max(a / s, -448.0), 448.0)
                r, margin = e4m3_round(y)
                if track and self._res is not None:
                    self._res.fp8_margin = min(self._res.fp8_margin, margin)
                out.append(r * s)
        return out

    def index_keep(self, L, x, qa, pos, cache):
        """The positions this query keeps (a set), or None when it keeps all."""
        Hi, Di, dr = self.Hi, self.Di, self.dr
        k = matvec(L["ik"], x)
        mu = sum(k) / Di
        var = sum((a - mu) ** 2 for a in k) / Di
        k = [(a - mu) / math.sqrt(var + 1e-6) * w + b for a, w, b in zip(k, L["ik_w"], L["ik_b"])]
        k = self.rope_halves(k[:dr], pos) + k[dr:]
        cache["ik"].append(self.fp8_round(hadamard(k)))
        if pos + 1 <= self.topk:
            return None
        q = matvec(L["iq"], qa)
        w = [a * Hi ** -0.5 * Di ** -0.5 for a in matvec(L["iw"], x)]
        qs = []
        for h in range(Hi):
            qh = q[h * Di:(h + 1) * Di]
            qs.append(self.fp8_round(hadamard(self.rope_halves(qh[:dr], pos) + qh[dr:])))
        sc = []
        for kp in cache["ik"]:
            sc.append(sum(wh * max(0.0, sum(map(_mul, qh, kp))) for wh, qh in zip(w, qs)))
        order = sorted(range(len(sc)), key=lambda p: (-sc[p], p))   # ties: the earlier position
        K = self.topk
        big = max(abs(a) for a in sc) or 1.0
        if self._res is not None:
            self._res.index_margin = min(self._res.index_margin, (sc[order[K - 1]] - sc[order[K]]) / big)
        return set(order[:K])

    def attention(self, L, x, pos, cache):
        H, dn, dr, dv, kvr = self.H, self.dn, self.dr, self.dv, self.kvr
        qa = None
        if self.qr:
            qa = rmsnorm(matvec(L["q_a"], x), L["q_a_norm"], self.eps)
            q = matvec(L["q_b"], qa)
        else:
            q = matvec(L["q"], x)
        ckv = matvec(L["kv_a"], x)
        c = rmsnorm(ckv[:kvr], L["kv_a_norm"], self.eps)
        keep = None
        if self.topk:   # V3.2's reference caches the latent rounded to FP8
            c = self.fp8_round(c, track=True)
            keep = self.index_keep(L, x, qa, pos, cache)
        k_pe = self.rope(ckv[kvr:], pos)
        kv = matvec(L["kv_b"], c)
        cache["k_pe"].append(k_pe)
        out = []
        for h in range(H):
            qh = q[h * (dn + dr):(h + 1) * (dn + dr)]
            q_nope, q_pe = qh[:dn], self.rope(qh[dn:], pos)
            kvh = kv[h * (dn + dv):(h + 1) * (dn + dv)]
            cache["k_nope"][h].append(kvh[:dn])
            cache["v"][h].append(kvh[dn:])
            sc = [(sum(map(_mul, q_nope, kn)) + sum(map(_mul, q_pe, kp))) * self.scale
                  for kn, kp in zip(cache["k_nope"][h], cache["k_pe"])]
            if keep is not None:
                sc = [a if i in keep else -math.inf for i, a in enumerate(sc)]
            p = softmax(sc)
            o = [0.0] * dv
            for pi, vv in zip(p, cache["v"][h]):
                o = [a + pi * b for a, b in zip(o, vv)]
            out.extend(o)
        return matvec(L["o"], out)

    @staticmethod
    def swiglu(mlp, x):
        g, u, d = mlp
        hmid = [silu(a) * b for a, b in zip(matvec(g, x), matvec(u, x))]
        return matvec(d, hmid)

    def route(self, L, x, res):
        """-> list of (expert, weight)."""
        c = self.cfg
        E = c["n_routed_experts"]
        K = c["num_experts_per_tok"]
        logits = matvec(L["gate"], x)
        sf = c.get("scoring_func", "softmax")
        if sf == "softmax":
            scores = softmax(logits)
        elif sf == "sigmoid":
            scores = [sigmoid(z) for z in logits]
        else:
            raise NotImplementedError("scoring_func %r" % sf)
        method = c.get("topk_method", "greedy")
        if method == "noaux_tc":
            choice = [s + b for s, b in zip(scores, L["bias"])]
        else:
            choice = scores
        if method == "greedy":
            cand = list(range(E))
        elif method in ("group_limited_greedy", "noaux_tc"):
            G = c["n_group"]
            TG = c["topk_group"]
            gs = E // G
            gsc = []
            for g in range(G):
                grp = choice[g * gs:(g + 1) * gs]
                if method == "noaux_tc":
                    t = sorted(grp, reverse=True)
                    gsc.append(t[0] + t[1])
                else:
                    gsc.append(max(grp))
            order = sorted(range(G), key=lambda g: -gsc[g])
            if TG < G:
                res.margins["group"] = min(res.margins["group"], gsc[order[TG - 1]] - gsc[order[TG]])
            keep = sorted(order[:TG])
            cand = [e for g in keep for e in range(g * gs, (g + 1) * gs)]
        else:
            raise NotImplementedError("topk_method %r" % method)
        order = sorted(cand, key=lambda e: -choice[e])
        if K < len(order):
            res.margins["route"] = min(res.margins["route"], choice[order[K - 1]] - choice[order[K]])
        top = order[:K]
        if method == "noaux_tc" and choice[top[-1]] <= 0.0 and len(cand) < E:
            # HF modelling code masks dropped groups with 0.0, DeepSeek's own
            # inference code with -inf: they disagree here.
            res.warnings.append("noaux_tc chose an expert with biased score %.3g <= 0"
                                % choice[top[-1]])
        w = [scores[e] for e in top]
        norm = c.get("norm_topk_prob", False)
        rsf = c.get("routed_scaling_factor", 1.0)
        if self.v3:
            if norm:
                s = sum(w) + 1e-20
                w = [a / s for a in w]
            w = [a * rsf for a in w]
        else:
            if K > 1 and norm:
                s = sum(w) + 1e-20
                w = [a / s for a in w]
            else:
                w = [a * rsf for a in w]
        return list(zip(top, w))

    def moe(self, L, x, res):
        y = [0.0] * len(x)
        for e, w in self.route(L, x, res):
            o = self.swiglu(L["experts"][e], x)
            y = [a + w * b for a, b in zip(y, o)]
        if L["shared"] is not None:
            y = [a + b for a, b in zip(y, self.swiglu(L["shared"], x))]
        return y

    def new_cache(self):
        return [{"k_pe": [], "k_nope": [[] for _ in range(self.H)], "v": [[] for _ in range(self.H)], "ik": []}
                for _ in range(self.L)]

    def step(self, tok, pos, cache, res):
        """One token through the model with a KV cache -> logits (list of V floats)."""
        self._res = res
        x = list(self.embed[tok])
        for i, L in enumerate(self.layers):
            a = self.attention(L, rmsnorm(x, L["in_norm"], self.eps), pos, cache[i])
            x = [p + q for p, q in zip(x, a)]
            hn = rmsnorm(x, L["post_norm"], self.eps)
            f = self.moe(L, hn, res) if "experts" in L else self.swiglu(L["mlp"], hn)
            x = [p + q for p, q in zip(x, f)]
        return matvec(self.head, rmsnorm(x, self.norm, self.eps))

    def run(self, tokens, greedy=0):
        V = len(self.embed)
        for t in tokens:
            if not 0 <= t < V:
                raise ValueError("token %d out of range [0,%d)" % (t, V))
        res = Result()
        cache = self.new_cache()
        for pos, t in enumerate(tokens):
            res.logits.append(self.step(t, pos, cache, res))
        last = res.logits[-1]
        pos = len(tokens)
        for n in range(greedy):
            srt = sorted(range(V), key=lambda j: -last[j])
            res.margins["argmax"] = min(res.margins["argmax"], last[srt[0]] - last[srt[1]])
            nxt = max(range(V), key=last.__getitem__)   # first maximum, like torch.argmax
            res.greedy.append(nxt)
            if n + 1 < greedy:
                last = self.step(nxt, pos, cache, res)
                pos += 1
        return res


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def compare(res, exp, tol):
    """-> (ok, lines) comparing a Result with an expected.safetensors dict."""
    lines = []
    dt, shape, el = exp["logits"]
    T, V = shape
    if len(res.logits) != T or len(res.logits[0]) != V:
        return False, ["shape mismatch: ours [%d,%d], expected %s" % (len(res.logits), len(res.logits[0]), shape)]
    gmax = max(abs(v) for v in el)
    gdiff = 0.0
    worst_pos = 0.0
    for t in range(T):
        row = el[t * V:(t + 1) * V]
        d = max(abs(a - b) for a, b in zip(res.logits[t], row))
        pm = max(abs(v) for v in row)
        gdiff = max(gdiff, d)
        worst_pos = max(worst_pos, d / pm if pm else d)
    ratio = gdiff / gmax
    ok = ratio < tol and worst_pos < tol
    lines.append("logits: max|diff| %.3e  max|logits| %.4f  ratio %.3e  worst per-position ratio %.3e  (tol %.0e) %s"
                 % (gdiff, gmax, ratio, worst_pos, tol, "OK" if ok else "FAIL"))
    if "greedy" in exp:
        eg = exp["greedy"][2]
        gok = list(eg) == res.greedy[:len(eg)]
        lines.append("greedy: ours %s expected %s %s" % (res.greedy, list(eg), "OK" if gok else "FAIL"))
        ok = ok and gok
    return ok, lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--tokens", help='prompt token ids, e.g. "0 5 17" (commas allowed)')
    ap.add_argument("--greedy", type=int, default=None, help="greedy continuation length")
    ap.add_argument("-o", "--out", help="write tokens/logits/greedy to this .safetensors")
    ap.add_argument("--check", metavar="EXPECTED", help="compare with an expected.safetensors")
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="max allowed max|diff|/max|logits| in --check (default 1e-5)")
    ap.add_argument("--min-margin", type=float, default=5e-4,
                    help="warn when a routing/argmax decision margin is below this")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)

    log = (lambda *x: None) if a.quiet else (lambda *x: print(*x, file=sys.stderr))
    exp = None
    if a.check:
        exp, emeta = read_safetensors(a.check)
    if a.tokens is not None:
        tokens = [int(t) for t in a.tokens.replace(",", " ").split()]
    elif exp is not None:
        tokens = list(exp["tokens"][2])
    else:
        ap.error("--tokens required (or --check)")
    greedy = a.greedy
    if greedy is None:
        greedy = len(exp["greedy"][2]) if exp is not None and "greedy" in exp else 0

    t0 = time.time()
    m = Model(a.model_dir, log)
    t1 = time.time()
    res = m.run(tokens, greedy)
    t2 = time.time()
    log("forward: %d prompt tokens + %d greedy in %.2fs (load %.2fs)" % (len(tokens), greedy, t2 - t1, t1 - t0))

    mg = res.margins
    log("margins: route %.3g  group %.3g  argmax %.3g" % (mg["route"], mg["group"], mg["argmax"]))
    for k, v in mg.items():
        if v < a.min_margin:
            print("WARNING: smallest %s margin %.3g < %.3g: rounding may flip a decision" % (k, v, a.min_margin),
                  file=sys.stderr)
    for w in sorted(set(res.warnings)):
        print("WARNING: " + w, file=sys.stderr)

    if a.out:
        V = len(res.logits[0])
        tens = {"tokens": ("I32", [len(tokens)], tokens),
                "logits": ("F32", [len(tokens), V], [v for row in res.logits for v in row])}
        if greedy:
            tens["greedy"] = ("I32", [greedy], res.greedy)
        meta = {"source": "tests/ref/dsref.py float64 reference", "model": os.path.abspath(m.dir)}
        for k, v in mg.items():
            if v != math.inf:
                meta[k + "_margin"] = "%.3g" % v
        write_safetensors(a.out, tens, meta)
        log("wrote " + a.out)
    if exp is not None:
        ok, lines = compare(res, exp, a.tol)
        for l in lines:
            print(l)
        if emeta:
            print("expected metadata: " + ", ".join("%s=%s" % kv for kv in sorted(emeta.items()) if kv[0].endswith("margin")))
        print("CHECK " + ("PASS" if ok else "FAIL"))
        return 0 if ok else 1
    if not a.out:
        print("greedy:", res.greedy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
