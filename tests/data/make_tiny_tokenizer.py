#!/usr/bin/env python3
"""Writes tests/data/tiny-tokenizer/{tokenizer.json, tokenizer_config.json}: a
512-id byte-level BPE in the DeepSeek layout that fits the golden checkpoints'
vocabulary (512), so `dsc run` / `dsc chat` can be tested end to end.

ids: 0 BOS, 1 EOS, 2..257 the 256 bytes (in byte order), 258 <｜User｜>,
259 <｜Assistant｜>, 260 <think>, 261 </think>, 262..511 merges of pairs of
control bytes 0x01..0x10 (never produced by printable text, so printable
text encodes to one id per byte: id = 2 + byte)."""
import json
import os
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def main(out):
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: 2 + b for b in range(256)}
    # Added tokens also sit in the model vocabulary at their ids (no gaps), as
    # in the real DeepSeek tokenizer.
    for i, t in [(0, "<｜begin▁of▁sentence｜>"), (1, "<｜end▁of▁sentence｜>"), (258, "<｜User｜>"),
                 (259, "<｜Assistant｜>"), (260, "<think>"), (261, "</think>")]:
        vocab[t] = i
    merges = []
    nid = 262
    for a in range(1, 17):
        for b in range(1, 17):
            if nid >= 512:
                break
            merges.append([b2u[a], b2u[b]])
            vocab[b2u[a] + b2u[b]] = nid
            nid += 1
    real = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "golden", "tokenizer", "deepseek-v3",
                        "tokenizer.json")
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[一-龥\u3040-ゟ゠-ヿ]+"}, "behavior": "Isolated", "invert": False},
        {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    if os.path.exists(real):  # the same pre-tokenizer as the real DeepSeek-V3 tokenizer
        pre = json.load(open(real, encoding="utf-8"))["pre_tokenizer"]

    def added(i, s, special):
        return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                "normalized": not special, "special": special}
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<｜begin▁of▁sentence｜>", True), added(1, "<｜end▁of▁sentence｜>", True),
                         added(258, "<｜User｜>", False), added(259, "<｜Assistant｜>", False),
                         added(260, "<think>", False), added(261, "</think>", False)],
        "normalizer": {"type": "Sequence", "normalizers": []},
        "pre_tokenizer": pre,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": merges},
    }
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    cfg = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<｜begin▁of▁sentence｜>",
           "eos_token": "<｜end▁of▁sentence｜>", "tokenizer_class": "LlamaTokenizerFast",
           "chat_template": "{{bos_token}}...{% if add_generation_prompt %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"}
    with open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-tokenizer"))
