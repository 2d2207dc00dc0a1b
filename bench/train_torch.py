#!/usr/bin/python3
"""
train_torch.py — the model `dsc train` trains, in PyTorch eager mode on the
CPU, to set dsc's training speed against.

Run it with Debian's /usr/bin/python3 (package python3-torch, torch 1.13): a
pyenv or venv python3 earlier on PATH does not see Debian's packages. PyTorch
is needed by this benchmark only, never by the build or the tests.

What one step computes is what one step of `dsc train` computes
(src/train/trainer.c, src/train/adamw.c, src/train/loop.c), in plain torch ops:

  x = embed(token)
  for each layer:  x += MLA(rmsnorm(x));  x += FFN(rmsnorm(x))
  loss = CE(lm_head(rmsnorm(x)), targets)
  backward; global grad norm, clip to 1; AdamW (b 0.9/0.95, eps 1e-8, weight
  decay 0.1 on matrices only); warmup + cosine learning rate;
  e_score_correction_bias += gamma x sign(mean load - load) (no gradient).

MLA runs decompressed (keys and values of every head from the latent, as the
dsc trainer does), RoPE on the decoupled dims with interleaved pairs (x0, x1),
(x2, x3), ... (YaRN when rope_scaling asks for it), explicit causal softmax
attention (torch 1.13 has no scaled_dot_product_attention). MoE: sigmoid or
softmax scores; the choice (noaux_tc: scores + bias, group score = sum of the
top two, topk_group groups; group_limited_greedy: group max) is made without
gradient; the weights are the unbiased scores of the chosen experts,
renormalised and scaled as in DeepSeek-V3; per expert, index_select the
tokens, SwiGLU, index_add_ back weighted. No sequence-wise balance loss
(dsc train's --alpha defaults to 0).

Initial weights: uniform with sd 1/sqrt(fan_in) (as `dsc init`), norms 1.

Prints the initial loss (about ln(vocab_size) + a little) on stderr and one
line on stdout:
  torch: B x T tokens/step, N steps, X tokens/s (median of steps)

--check build/dsc instead runs one batch of --batch x --seq through `dsc
grad` and this model with the same weights (`dsc init`, F32) and prints both
losses and the worst relative gradient error (exit 1 above 1e-4):
  /usr/bin/python3 bench/train_torch.py --check build/dsc --batch 2 --seq 40
"""
import argparse
import json
import math
import statistics
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("train_torch.py: cannot import torch; install python3-torch and run with /usr/bin/python3")


# ---------------------------------------------------------------------------
# Config


def load_config(path):
    with open(path) as f:
        c = json.load(f)
    if c.get("model_type") not in ("deepseek_v2", "deepseek_v3"):
        sys.exit(f"{path}: model_type {c.get('model_type')!r} is not deepseek_v2 or deepseek_v3")
    c.setdefault("q_lora_rank", None)
    c.setdefault("n_routed_experts", None)
    c.setdefault("n_shared_experts", 0)
    c.setdefault("first_k_dense_replace", 0)
    c.setdefault("moe_layer_freq", 1)
    c.setdefault("n_group", 1)
    c.setdefault("topk_group", 1)
    c.setdefault("topk_method", "greedy")
    c.setdefault("scoring_func", "softmax")
    c.setdefault("norm_topk_prob", False)
    c.setdefault("routed_scaling_factor", 1.0)
    c.setdefault("rope_scaling", None)
    c.setdefault("tie_word_embeddings", False)
    c["v3"] = c["model_type"] == "deepseek_v3"
    return c


def layer_is_moe(c, i):
    return bool(c["n_routed_experts"]) and i >= c["first_k_dense_replace"] and i % c["moe_layer_freq"] == 0


# ---------------------------------------------------------------------------
# RoPE / YaRN (src/nn/rope.c)


def yarn_mscale(factor, mscale):
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def rope_tables(c, T):
    """cos, sin (T, Dr/2), mscale folded in, and the attention softmax scale."""
    dim, base = c["qk_rope_head_dim"], c["rope_theta"]
    half = dim // 2
    inv = [base ** (-2.0 * i / dim) for i in range(half)]
    mscale, scale = 1.0, (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
    rs = c["rope_scaling"]
    if rs and rs.get("type", rs.get("rope_type")) == "yarn":
        f, omax = rs["factor"], rs["original_max_position_embeddings"]
        bf, bs = rs.get("beta_fast", 32), rs.get("beta_slow", 1)
        ms, msa = rs.get("mscale", 1), rs.get("mscale_all_dim", 0)

        def corr(rot):
            return dim * math.log(omax / (rot * 2 * math.pi)) / (2 * math.log(base))

        low, high = max(math.floor(corr(bf)), 0), min(math.ceil(corr(bs)), dim - 1)
        if low == high:
            high += 0.001
        for i in range(half):
            ramp = min(max((i - low) / (high - low), 0.0), 1.0)
            inv[i] = inv[i] / f * ramp + inv[i] * (1.0 - ramp)
        mscale = yarn_mscale(f, ms) / yarn_mscale(f, msa)
        if msa:
            scale *= yarn_mscale(f, msa) ** 2
    pos = torch.arange(T, dtype=torch.float64)[:, None] * torch.tensor(inv, dtype=torch.float64)[None, :]
    return (torch.cos(pos) * mscale).float(), (torch.sin(pos) * mscale).float(), scale


def rope(x, cos, sin):
    """x (..., T, n, Dr) with interleaved pairs; cos, sin (T, Dr/2)."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.stack((x0 * c - x1 * s, x1 * c + x0 * s), dim=-1).flatten(-2)


# ---------------------------------------------------------------------------
# Blocks


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def linear(n_in, n_out):
    return nn.Linear(n_in, n_out, bias=False)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, H, eps = c["hidden_size"], c["num_attention_heads"], c["rms_norm_eps"]
        self.H, self.Dn, self.Dr, self.Dv = H, c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.R, Rq, Dq = c["kv_lora_rank"], c["q_lora_rank"], self.Dn + self.Dr
        if Rq:
            self.q_a_proj, self.q_a_layernorm, self.q_b_proj = linear(D, Rq), RMSNorm(Rq, eps), linear(Rq, H * Dq)
        else:
            self.q_proj = linear(D, H * Dq)
        self.kv_a_proj_with_mqa = linear(D, self.R + self.Dr)
        self.kv_a_layernorm = RMSNorm(self.R, eps)
        self.kv_b_proj = linear(self.R, H * (self.Dn + self.Dv))
        self.o_proj = linear(H * self.Dv, D)

    def forward(self, x, cos, sin, scale, mask):
        B, T, _ = x.shape
        H, Dn, Dr, Dv = self.H, self.Dn, self.Dr, self.Dv
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if hasattr(self, "q_b_proj") else self.q_proj(x)
        q = q.view(B, T, H, Dn + Dr)
        q = torch.cat((q[..., :Dn], rope(q[..., Dn:], cos, sin)), dim=-1)
        kva = self.kv_a_proj_with_mqa(x)
        c, kpe = kva[..., : self.R], kva[..., self.R :].view(B, T, 1, Dr)
        kpe = rope(kpe, cos, sin)
        kv = self.kv_b_proj(self.kv_a_layernorm(c)).view(B, T, H, Dn + Dv)
        k = torch.cat((kv[..., :Dn], kpe.expand(B, T, H, Dr)), dim=-1)
        v = kv[..., Dn:]
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, .)
        att = torch.matmul(q, k.transpose(-2, -1)) * scale
        att = torch.softmax(att.masked_fill(mask, float("-inf")), dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(B, T, H * Dv)
        return self.o_proj(out)


class MLP(nn.Module):
    def __init__(self, D, F_):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = linear(D, F_), linear(D, F_), linear(F_, D)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, Fm = c["hidden_size"], c["moe_intermediate_size"]
        self.c, self.E, self.K = c, c["n_routed_experts"], c["num_experts_per_tok"]
        self.gate = linear(D, self.E)  # model.layers.i.mlp.gate.weight
        self.register_buffer("e_score_correction_bias", torch.zeros(self.E))
        self.experts = nn.ModuleList(MLP(D, Fm) for _ in range(self.E))
        self.shared_experts = MLP(D, Fm * c["n_shared_experts"]) if c["n_shared_experts"] else None
        self.load = torch.zeros(self.E)

    @torch.no_grad()
    def choose(self, scores):
        """idx (N, K) of the chosen experts (src/nn/moe.c moe_route)."""
        c, E, K = self.c, self.E, self.K
        noaux = c["topk_method"] == "noaux_tc"
        choice = scores + self.e_score_correction_bias if noaux else scores
        G, TG = c["n_group"], c["topk_group"]
        if c["topk_method"] != "greedy" and TG < G:
            grp = choice.view(-1, G, E // G)
            gs = grp.topk(2, dim=-1).values.sum(-1) if noaux and E // G >= 2 else grp.max(-1).values
            keep = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, gs.topk(TG, dim=-1).indices, True)
            choice = choice.masked_fill(~keep.repeat_interleave(E // G, dim=1), float("-inf"))
        return choice.topk(K, dim=-1).indices

    def forward(self, x):
        B, T, D = x.shape
        c, E, K = self.c, self.E, self.K
        xf = x.reshape(-1, D)
        logits = self.gate(xf)
        scores = torch.sigmoid(logits) if c["scoring_func"] == "sigmoid" else torch.softmax(logits, dim=-1)
        idx = self.choose(scores)
        w = scores.gather(1, idx)  # (N, K): gradient flows through the weights, not the choice
        renorm = c["norm_topk_prob"] and (K > 1 or c["v3"])
        if renorm:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        if c["v3"] or not renorm:
            w = w * c["routed_scaling_factor"]
        y = self.shared_experts(xf) if self.shared_experts is not None else torch.zeros_like(xf)
        flat, wf = idx.view(-1), w.reshape(-1)
        self.load = torch.bincount(flat, minlength=E).float()
        order = torch.argsort(flat)
        counts = self.load.long().tolist()
        start = 0
        for e, m in enumerate(counts):
            if m == 0:
                continue
            sel = order[start : start + m]
            start += m
            tok = torch.div(sel, K, rounding_mode="floor")
            ye = self.experts[e](xf.index_select(0, tok)) * wf.index_select(0, sel)[:, None]
            y.index_add_(0, tok, ye)
        return y.view(B, T, D)

    @torch.no_grad()
    def update_bias(self, gamma):
        """DeepSeek-V3 sec. 2.1.2 (src/train/adamw.c trainer_update_bias)."""
        self.e_score_correction_bias += gamma * torch.sign(self.load.mean() - self.load)


class Layer(nn.Module):
    def __init__(self, c, i):
        super().__init__()
        D, eps = c["hidden_size"], c["rms_norm_eps"]
        self.input_layernorm, self.self_attn = RMSNorm(D, eps), MLA(c)
        self.post_attention_layernorm = RMSNorm(D, eps)
        self.mlp = MoE(c) if layer_is_moe(c, i) else MLP(D, c["intermediate_size"])

    def forward(self, x, cos, sin, scale, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, scale, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Model(nn.Module):
    def __init__(self, c, T):
        super().__init__()
        V, D = c["vocab_size"], c["hidden_size"]
        self.embed_tokens = nn.Embedding(V, D)
        self.layers = nn.ModuleList(Layer(c, i) for i in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(D, c["rms_norm_eps"])
        self.lm_head = linear(D, V)
        if c["tie_word_embeddings"]:
            self.lm_head.weight = self.embed_tokens.weight
        cos, sin, self.scale = rope_tables(c, T)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1))
        with torch.no_grad():  # uniform, sd 1/sqrt(fan_in), as `dsc init`
            for p in self.parameters():
                if p.dim() == 2:
                    a = math.sqrt(3.0 / p.shape[1])
                    p.uniform_(-a, a)

    def forward(self, tokens):
        T = tokens.shape[1]
        x = self.embed_tokens(tokens)
        cos, sin, mask = self.cos[:T], self.sin[:T], self.mask[:T, :T]
        for layer in self.layers:
            x = layer(x, cos, sin, self.scale, mask)
        return self.lm_head(self.norm(x))


# ---------------------------------------------------------------------------
# Training step (src/train/loop.c iterate)


def lr_at(s, steps, lr=1e-3, min_lr=1e-4, warmup=10):
    if warmup > 0 and s <= warmup:
        return lr * s / warmup
    x = (s - warmup) / (steps - warmup) if steps > warmup else 1.0
    return min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(x, 1.0)))


# ---------------------------------------------------------------------------
# Check against dsc: the same weights and batch through `dsc grad`


def read_safetensors(path):
    import numpy as np

    with open(path, "rb") as f:
        b = f.read()
    n = int.from_bytes(b[:8], "little")
    out = {}
    for k, v in json.loads(b[8 : 8 + n]).items():
        if k == "__metadata__":
            continue
        lo, hi = v["data_offsets"]
        dt = {"F32": np.float32, "I32": np.int32}[v["dtype"]]
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + lo : 8 + n + hi], dtype=dt).reshape(v["shape"]).copy())
    return out


def write_tokens(path, tokens):
    raw = tokens.to(torch.int32).numpy().tobytes()
    h = json.dumps({"tokens": {"dtype": "I32", "shape": list(tokens.shape), "data_offsets": [0, len(raw)]}}).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + raw)


def check_against_dsc(dsc, config, B, T, seed):
    """`dsc init` a F32 checkpoint, `dsc grad` one random batch (alpha 0), the
    same here; prints both losses and the worst relative gradient error.
    Returns 0 when it is below 1e-4."""
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        ck, bt, gr = os.path.join(d, "ckpt"), os.path.join(d, "batch.safetensors"), os.path.join(d, "grads.safetensors")
        subprocess.run([dsc, "init", "-c", config, "-o", ck, "--dtype", "f32", "--seed", str(seed)], check=True)
        c = load_config(os.path.join(ck, "config.json"))
        tokens = torch.randint(0, c["vocab_size"], (B, T + 1))
        write_tokens(bt, tokens)
        subprocess.run([dsc, "grad", "-m", ck, "--batch", bt, "-o", gr, "--alpha", "0", "--threads", "1"], check=True)
        w, g = read_safetensors(os.path.join(ck, "model.safetensors")), read_safetensors(gr)
    model = Model(c, T)
    hf = lambda k: k if k.startswith("lm_head") else "model." + k.replace("mlp.e_score", "mlp.gate.e_score")
    sd = {k: w[hf(k)] if hf(k) in w else v for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    V = c["vocab_size"]
    loss = F.cross_entropy(model(tokens[:, :-1]).reshape(-1, V), tokens[:, 1:].reshape(-1))
    loss.backward()
    worst, where = 0.0, ""
    for k, p in model.named_parameters():
        mine = p.grad if p.grad is not None else torch.zeros_like(p)  # an expert no token chose
        ref = g["grad." + hf(k)].view_as(mine)
        rel = ((mine - ref).norm() / (ref.norm() + 1e-30)).item()
        if rel > worst:
            worst, where = rel, k
    print(f"check: loss torch {loss.item():.6f} dsc {g['loss_ce'].item():.6f}; "
          f"worst relative gradient error {worst:.2e} ({where})")
    return 0 if worst < 1e-4 and abs(loss.item() - g["loss_ce"].item()) < 1e-4 * abs(loss.item()) else 1


def blas_library():
    """The BLAS shared object torch's matmuls went to (Debian: the libblas.so.3 alternative)."""
    torch.mm(torch.ones(64, 64), torch.ones(64, 64))
    try:
        with open("/proc/self/maps") as f:
            libs = {l.split()[-1] for l in f if "libblas" in l}
    except OSError:
        return "unknown"
    return ", ".join(sorted(libs)) or "none found"


def main():
    ap = argparse.ArgumentParser(description="DeepSeek-V3 training step in PyTorch eager mode (CPU)")
    ap.add_argument("--config", default="models/configs/dsc-brown-v3.json")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gamma", type=float, default=1e-3, help="bias update speed (dsc train --gamma)")
    ap.add_argument("--check", metavar="DSC", help="instead: compare loss and gradients with `DSC grad` on one batch")
    args = ap.parse_args()
    if args.batch < 1 or args.seq < 1 or args.steps < 1 or args.warmup_steps < 0 or args.threads < 1:
        sys.exit("train_torch.py: --batch, --seq, --steps and --threads must be >= 1, --warmup-steps >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.check:
        sys.exit(check_against_dsc(args.check, args.config, args.batch, args.seq, args.seed))
    c = load_config(args.config)
    if args.seq > c["max_position_embeddings"]:
        sys.exit(f"{args.config}: --seq {args.seq} exceeds max_position_embeddings {c['max_position_embeddings']}")
    model = Model(c, args.seq)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    moes = [l.mlp for l in model.layers if isinstance(l.mlp, MoE)]
    V, B, T = c["vocab_size"], args.batch, args.seq
    n_params = sum(p.numel() for p in model.parameters())
    blas = blas_library()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {n_params / 1e6:.2f} M parameters, BLAS {blas}",
          file=sys.stderr)
    if "/blas/libblas" in blas:
        print("torch: warning: this is the reference (netlib) BLAS; install libopenblas0-openmp for a fair figure",
              file=sys.stderr)

    total = args.warmup_steps + args.steps
    times = []
    for s in range(1, total + 1):
        t0 = time.perf_counter()
        tokens = torch.randint(0, V, (B, T + 1))
        logits = model(tokens[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        for g in opt.param_groups:
            g["lr"] = lr_at(s, total)
        opt.step()
        for m in moes:
            m.update_bias(args.gamma)
        dt = time.perf_counter() - t0
        if s == 1:
            print(f"torch: initial loss {loss.item():.3f} (ln vocab = {math.log(V):.3f}), grad norm {gnorm.item():.3f}",
                  file=sys.stderr)
        if s > args.warmup_steps:
            times.append(dt)
    tps = B * T / statistics.median(times)
    print(f"torch: {B} x {T} tokens/step, {args.steps} steps, {tps:.1f} tokens/s (median of steps)")


if __name__ == "__main__":
    main()
