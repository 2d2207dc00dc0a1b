#!/usr/bin/env python3
"""Reference for `dsc train-tokenizer`: a plain BPE trainer, written from the
procedure of Hugging Face's BpeTrainer without any incremental bookkeeping
(all pair counts are recounted before every merge), on ASCII text, where the
DeepSeek-V3 pre-tokenizer's Unicode classes reduce to Python's `re`.

  bpe_ref.py gen OUT.txt             writes a deterministic ASCII corpus
  bpe_ref.py check TEXT TOKENIZER N  learns N ids from TEXT and compares the
                                     merges and vocabulary with TOKENIZER
"""
import json
import random
import re
import string
import sys

ADDED = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]

# DeepSeek-V3's Split patterns with \p{L} = [A-Za-z], \p{N} = [0-9],
# \p{P} + \p{S} = ASCII punctuation, \p{M} empty (valid for ASCII text only).
P = re.escape(string.punctuation)
STEPS = [
    re.compile(r"[0-9]{1,3}"),
    re.compile(r"[^\x00-\x7f]+"),  # the CJK step: never matches ASCII
    re.compile(r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\nA-Za-z" + P + r"]?[A-Za-z]+| ?[" + P
               + r"]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"),
]


def bytelevel_chars():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def pretokenize(text, step=0, out=None):
    out = [] if out is None else out
    if step == len(STEPS):
        out.append(text)
        return out
    prev = 0
    for m in STEPS[step].finditer(text):
        if m.start() > prev:
            pretokenize(text[prev:m.start()], step + 1, out)
        pretokenize(m.group(0), step + 1, out)
        prev = m.end()
    if prev < len(text):
        pretokenize(text[prev:], step + 1, out)
    return out


def train(text, vocab_size):
    bl = bytelevel_chars()
    names = ADDED + sorted(bl.values())
    ids = {n: i for i, n in enumerate(names)}
    counts = {}
    for w in pretokenize(text):
        counts[w] = counts.get(w, 0) + 1
    words = [([ids[bl[b]] for b in w.encode()], c) for w, c in counts.items()]
    merges = []
    while len(names) < vocab_size:
        pairs = {}
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        (a, b), c = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if c < 2:
            break
        joined = names[a] + names[b]
        if joined not in ids:
            ids[joined] = len(names)
            names.append(joined)
        new = ids[joined]
        merges.append(names[a] + " " + names[b])
        for k, (syms, cnt) in enumerate(words):
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[k] = (out, cnt)
    return names, merges


def gen(path):
    rng = random.Random(7)
    stems = ["train", "token", "model", "expert", "layer", "router", "cache", "latent", "batch", "loss", "the", "a",
             "of", "and", "to", "in", "is", "for", "with", "on", "deep", "seek", "merge", "pair", "count"]
    lines = []
    for _ in range(600):
        words = []
        for _ in range(rng.randint(3, 14)):
            w = rng.choice(stems)
            r = rng.random()
            if r < 0.1:
                w = w.capitalize()
            elif r < 0.15:
                w = w + rng.choice(["s", "ed", "ing", "'s", "'t"])
            elif r < 0.2:
                w = str(rng.randint(0, 99999))
            elif r < 0.25:
                w = rng.choice(["(", "[", "\""]) + w + rng.choice([")", "]", "\""])
            words.append(w)
        lines.append(" ".join(words) + rng.choice([".", "!", "?", ",", ":", "...", ""]) + rng.choice(["\n", "\n\n", "  \n"]))
    with open(path, "w") as f:
        f.write("".join(lines))


def check(text_path, tok_path, vocab_size):
    with open(text_path) as f:
        text = f.read()
    names, merges = train(text, vocab_size)
    with open(tok_path) as f:
        tok = json.load(f)
    vocab = tok["model"]["vocab"]
    got = [None] * len(vocab)
    for n, i in vocab.items():
        got[i] = n
    bad = 0
    if got != names:
        first = next((i for i, (x, y) in enumerate(zip(got, names)) if x != y), min(len(got), len(names)))
        print(f"vocab differs: {len(got)} vs {len(names)} ids, first at id {first}: "
              f"{got[first] if first < len(got) else None!r} vs {names[first] if first < len(names) else None!r}")
        bad = 1
    if tok["model"]["merges"] != merges:
        first = next((i for i, (x, y) in enumerate(zip(tok["model"]["merges"], merges)) if x != y), None)
        print(f"merges differ: {len(tok['model']['merges'])} vs {len(merges)}, first at rank {first}")
        bad = 1
    if not bad:
        print(f"bpe reference: {len(merges)} merges and {len(names)} ids identical")
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2], sys.argv[3], int(sys.argv[4])))
