#!/usr/bin/env python3
"""DeepSeek-V3.2's chat encoding in `dsc serve` (POST /apply-template). V3.2
ships no chat_template: its encoding is a Python function (encoding_dsv32.py
in the release). Here its rules for turns without tools, written out again
from that description, against dsc's prompt: the system messages in order
with nothing between them; a user turn "<｜User｜>TEXT<｜Assistant｜>" then
"<think>" for the last user turn in thinking mode, else "</think>"; an
answer after the last user turn keeps its reasoning ("REASONING</think>")
in thinking mode, earlier answers are their text then <｜end▁of▁sentence｜>;
a prefix to continue is its text alone. dsc's messages carry reasoning in
the content ("<think>R</think>A" or "R</think>A"). Also: thinking switched
per request as for V3.1, tools and tool messages refused (its DSML calls are
not supported), and a V3.2 checkpoint with V3.1's template (V3.2-Exp) keeps
V3.1's template.

usage: test_encoding_v32.py DSC GOLDEN_TOKENIZER_DIR"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import checks
from checks import check, finish, post

DSC, TOKDIR = sys.argv[1:3]
HERE = os.path.dirname(os.path.abspath(__file__))
BOS, EOS, U, A = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"

tmp = tempfile.mkdtemp()
cfg = {"model_type": "deepseek_v32", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 96,
       "moe_intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "q_lora_rank": 32,
       "kv_lora_rank": 128, "qk_nope_head_dim": 16, "qk_rope_head_dim": 16, "v_head_dim": 16,
       "n_routed_experts": 4, "n_shared_experts": 1, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
       "norm_topk_prob": True, "routed_scaling_factor": 2.5, "max_position_embeddings": 4096, "rope_scaling": None,
       "index_n_heads": 4, "index_head_dim": 128, "index_topk": 8}
with open(os.path.join(tmp, "config.json"), "w") as f:
    json.dump(cfg, f)
MODEL = os.path.join(tmp, "model")
subprocess.run([DSC, "init", "-c", os.path.join(tmp, "config.json"), "-o", MODEL], check=True, capture_output=True)
tok = os.path.join(tmp, "tok")
os.mkdir(tok)
os.symlink(os.path.abspath(os.path.join(TOKDIR, "tokenizer.json")), os.path.join(tok, "tokenizer.json"))
with open(os.path.join(tok, "tokenizer_config.json"), "w") as f:   # as V3.2 ships it: no chat_template
    json.dump({"bos_token": {"content": BOS}, "eos_token": {"content": EOS}}, f)


def split(content):
    """dsc's assistant content -> (reasoning or None, answer)."""
    if "</think>" not in content:
        return None, content
    r, a = content.split("</think>", 1)
    return (r[len("<think>"):] if r.startswith("<think>") else r), a


def encode(messages, thinking):
    """V3.2's encoding of a conversation without tools (thinking_mode 'thinking' or 'chat',
    reasoning dropped before the last user turn)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    out = BOS
    for i, m in enumerate(messages):
        if m["role"] == "system":
            out += m["content"]
        elif m["role"] == "user":
            out += U + m["content"] + A + ("<think>" if i == last_user and thinking else "</think>")
        elif m["role"] == "assistant":
            reasoning, answer = split(m["content"])
            if m.get("prefix"):
                out += answer
                continue
            part = (reasoning or "") + "</think>" if thinking and i > last_user else ""
            out += part + answer + EOS
    return out


plain = [{"role": "system", "content": "You are terse."}, {"role": "system", "content": "Answer in French."},
         {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "<think>a greeting</think>Salut."},
         {"role": "user", "content": "2+2?"}]
turns = [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two, three."},
         {"role": "user", "content": "And back?"}, {"role": "assistant", "content": "weighing</think>Three, two, one."},
         {"role": "user", "content": "Thanks!"}]
prefix = [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two", "prefix": True}]


def serve(extra, tokdir=tok, model=MODEL):
    try:
        return checks.serve(DSC, model, tokdir + "/tokenizer.json", extra)
    except SystemExit:
        shutil.rmtree(tmp)
        raise


srv, base, log = serve([])
try:
    check("V3.2 encoding (thinking when asked)" in log, "V3.2's encoding recognized (no chat_template)", log)
    switches = [({}, False), ({"chat_template_kwargs": {"thinking": True}}, True),
                ({"thinking": {"type": "enabled"}}, True), ({"model": "deepseek-reasoner"}, True),
                ({"model": "deepseek-chat"}, False)]
    for name, msgs in [("two systems, a reasoning in history", plain), ("three turns", turns),
                       ("a prefix to continue", prefix)]:
        for extra, thinking in switches:
            st, got = post(base, "/apply-template", dict({"messages": msgs}, **extra))
            want = encode(msgs, thinking)
            check(st == 200 and got.get("prompt") == want, "V3.2: %s, %s" % (name, json.dumps(extra) or "default"),
                  "status %d\n got  %r\n want %r" % (st, got, want))
    check(encode(plain, True).endswith(A + "<think>") and encode(plain, False).endswith(A + "</think>") and
          "You are terse.Answer in French." in encode(plain, True), "(the encoding's own shape)")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    for what, body, param in [
            ("tools", {"messages": plain, "tools": tools}, "tools"),
            ("a tool call in history", {"messages": [turns[0], {"role": "assistant", "content": None, "tool_calls": [call]},
                                                     {"role": "tool", "tool_call_id": "c1", "content": "sun"}]},
             "messages")]:
        st, got = post(base, "/v1/chat/completions", dict(body, max_tokens=1))
        err = got.get("error", {})
        check(st == 400 and err.get("param") == param and "V3.2" in err.get("message", ""), "V3.2: 400 for " + what,
              "%d %s" % (st, got))
finally:
    srv.terminate()
    srv.wait()

# --think: thinking unless a request says not.
srv, base, log = serve(["--think"])
try:
    check("V3.2 encoding (thinking unless asked not to)" in log, "--think: V3.2 thinking by default", log)
    for extra, thinking in [({}, True), ({"thinking": {"type": "disabled"}}, False)]:
        st, got = post(base, "/apply-template", dict({"messages": plain}, **extra))
        check(st == 200 and got.get("prompt") == encode(plain, thinking), "--think, %s" % (json.dumps(extra) or "default"),
              str(got))
finally:
    srv.terminate()
    srv.wait()

# V3.2-Exp ships V3.1's template: that template, not the encoding.
tok31 = os.path.join(tmp, "tok31")
os.mkdir(tok31)
os.symlink(os.path.abspath(os.path.join(TOKDIR, "tokenizer.json")), os.path.join(tok31, "tokenizer.json"))
shutil.copy(os.path.join(HERE, "deepseek-v3.1", "tokenizer_config.json"), os.path.join(tok31, "tokenizer_config.json"))
srv, base, log = serve([], tok31)
try:
    check("V3.1 template (thinking when asked)" in log, "V3.2 with V3.1's template: the template", log)
    st, got = post(base, "/apply-template", {"messages": plain})
    check(st == 200 and got.get("prompt", "").startswith(BOS + "You are terse.\n\nAnswer in French."),
          "V3.2 with V3.1's template: its system messages joined by a blank line", str(got))
finally:
    srv.terminate()
    srv.wait()

shutil.rmtree(tmp)
finish()
