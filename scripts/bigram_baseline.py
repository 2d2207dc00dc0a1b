#!/usr/bin/env python3
"""Validation perplexity of a bigram model on exactly the split `dsc train`
uses: files tokenized in order with EOS after each, cut into sequences of
T + 1 tokens (stride T), the last ceil(5%) of sequences held out. The bigram
is interpolated absolute discounting (d = 0.75) over the unigram.
usage: bigram_baseline.py DSC TOKENIZER.json SEQ FILES..."""
import collections
import math
import subprocess
import sys

dsc, tok, T, files = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
EOS = 1
ids = []
for f in files:
    out = subprocess.run([dsc, "tokenize", "--tokenizer", tok, "-f", f], capture_output=True, text=True, check=True)
    ids += [int(x) for x in out.stdout.split()] + [EOS]
n_seq = (len(ids) - 1) // T
n_val = max(1, math.ceil(0.05 * n_seq - 1e-6)) if n_seq >= 2 else 0
n_train = n_seq - n_val
train = ids[: n_train * T + 1]
uni = collections.Counter(train)
big = collections.Counter(zip(train, train[1:]))
ctx = collections.Counter(a for a, _ in zip(train, train[1:]))
types_after = collections.Counter(a for (a, _) in big)
V = max(ids) + 1
total = len(train)
D = 0.75


def p_uni(b):
    return (uni[b] + 1) / (total + V)  # add-one so unseen tokens keep mass


def p_big(a, b):
    c = ctx[a]
    if c == 0:
        return p_uni(b)
    return max(big[(a, b)] - D, 0) / c + D * types_after[a] / c * p_uni(b)


nll, n = 0.0, 0
for s in range(n_train, n_seq):
    seq = ids[s * T: s * T + T + 1]
    for a, b in zip(seq, seq[1:]):
        nll -= math.log(p_big(a, b))
        n += 1
print("bigram: %d train tokens, %d validation targets, loss %.4f, perplexity %.2f" % (len(train), n, nll / n, math.exp(nll / n)))
