#!/usr/bin/env python3
"""DeepSeek-V3.2's chat encoding in `dsc serve` (POST /apply-template). V3.2
ships no chat_template: its encoding is a Python function (encoding_dsv32.py
in the release). Here its rules, written out again from that description,
against dsc's prompt: the system messages in order with nothing between
them, then (a blank line) the tools' description with each function as
json.dumps writes it; a user turn "<｜User｜>TEXT<｜Assistant｜>" then
"<think>" for the last user turn in thinking mode, else "</think>"; an
answer after the last user turn keeps its reasoning ("REASONING</think>")
in thinking mode; an answer is its text, its calls in a DSML block, then
<｜end▁of▁sentence｜>; a turn's results "<function_results>" with a
"<result>" each, then "<think>" or "</think>" as after a user turn; a prefix
to continue is its text alone. dsc's messages carry reasoning in the
content ("<think>R</think>A" or "R</think>A"). Also: thinking switched per
request as for V3.1, tool_choice "required" refused, results without calls
refused, and a V3.2 checkpoint with V3.1's template (V3.2-Exp) keeps V3.1's
template.

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


D = "｜DSML｜"
TOOLS_TEXT = ("## Tools\nYou have access to a set of tools you can use to answer the user's question.\n"
              "You can invoke functions by writing a \"<{d}function_calls>\" block like the following as part of your "
              "reply to the user:\n<{d}function_calls>\n<{d}invoke name=\"$FUNCTION_NAME\">\n<{d}parameter "
              "name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</{d}parameter>\n...\n</{d}invoke>\n"
              "<{d}invoke name=\"$FUNCTION_NAME2\">\n...\n</{d}invoke>\n</{d}function_calls>\nString and scalar "
              "parameters should be specified as is without any escaping or quotes, while lists and objects should use "
              "JSON format. The \"string\" attribute should be set to \"true\" for string type parameters and \"false\" "
              "for other types (numbers, booleans, arrays, objects).\nIf the thinking_mode is enabled, then after function "
              "results you should strongly consider outputting a thinking block. Here is an example:\n<{d}function_calls>"
              "\n...\n</{d}function_calls>\n<function_results>\n...\n</function_results>\n<think>...thinking about "
              "results</think>\nHere are the functions available in JSONSchema format:\n<functions>\n{schemas}\n"
              "</functions>\n")


def dsml_call(c):
    args = json.loads(c["function"]["arguments"])
    params = ["<{d}parameter name=\"{k}\" string=\"{s}\">{v}</{d}parameter>".format(
        d=D, k=k, s="true" if isinstance(v, str) else "false", v=v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))
        for k, v in args.items()]
    return "<{d}invoke name=\"{n}\">\n{a}\n</{d}invoke>".format(d=D, n=c["function"]["name"], a="\n".join(params))


def encode(messages, thinking, tools=None):
    """V3.2's encoding of a conversation (thinking_mode 'thinking' or 'chat', reasoning
    dropped before the last user turn), the tools after the system messages."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    out = BOS + "".join(m["content"] for m in messages if m["role"] == "system")
    if tools:
        out += "\n\n" + TOOLS_TEXT.format(d=D, schemas="\n".join(json.dumps(t["function"], ensure_ascii=False)
                                                                for t in tools))
    calls_of = None
    for i, m in enumerate(messages):
        if m["role"] == "user":
            out += U + m["content"] + A + ("<think>" if i == last_user and thinking else "</think>")
        elif m["role"] == "assistant":
            reasoning, answer = split(m["content"] or "")
            if m.get("prefix"):
                out += answer
                continue
            part = (reasoning or "") + "</think>" if thinking and i > last_user else ""
            calls = m.get("tool_calls") or []
            block = ("\n\n<{d}function_calls>\n".format(d=D) + "\n".join(dsml_call(c) for c in calls) +
                     "\n</{d}function_calls>".format(d=D)) if calls else ""
            out += part + answer + block + EOS
            calls_of, order = (calls, 0) if calls else (None, 0)
        elif m["role"] == "tool":
            order += 1
            out += ("\n\n<function_results>" if order == 1 else "") + "\n<result>" + m["content"] + "</result>"
            if order == len(calls_of):
                out += "\n</function_results>\n\n" + ("<think>" if i > last_user and thinking else "</think>")
    return out


def call(name, args, i):
    return {"id": "c%d" % i, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


plain = [{"role": "system", "content": "You are terse."}, {"role": "system", "content": "Answer in French."},
         {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "<think>a greeting</think>Salut."},
         {"role": "user", "content": "2+2?"}]
turns = [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two, three."},
         {"role": "user", "content": "And back?"}, {"role": "assistant", "content": "weighing</think>Three, two, one."},
         {"role": "user", "content": "Thanks!"}]
prefix = [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two", "prefix": True}]
w1, w2 = {"city": "Paris", "days": 2}, {"city": "Tōkyō \"east\"", "opts": {"units": ["°C", 1.5], "hourly": True, "x": None}}
calls = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris and Tōkyō?"},
         {"role": "assistant", "content": "checking</think>Let me look.", "tool_calls": [call("get_weather", w1, 1),
                                                                               call("get_weather", w2, 2)]},
         {"role": "tool", "tool_call_id": "c1", "content": "{\"temp\": 21}"},
         {"role": "tool", "tool_call_id": "c2", "content": "{\"temp\": 9}"}]
answered = calls + [{"role": "assistant", "content": "both in</think>Paris 21, Tōkyō 9."},
                    {"role": "user", "content": "And the time?"},
                    {"role": "assistant", "content": "", "tool_calls": [call("get_time", {}, 3)]},
                    {"role": "tool", "tool_call_id": "c3", "content": "noon"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now, in °C",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                                                          "days": {"type": "integer",
                                                                                                   "maximum": 1000}},
                                                          "required": ["city"]}}},
         {"type": "function", "function": {"name": "get_time", "description": "Line one\nline \"two\""}}]


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
    for name, msgs, tools in [("two systems, a reasoning in history", plain, None), ("three turns", turns, None),
                              ("a prefix to continue", prefix, None), ("tools, two calls, their results", calls, TOOLS),
                              ("calls, results, an answer, another call", answered, TOOLS),
                              ("calls in history, no tools offered", answered, None)]:
        for extra, thinking in switches:
            body = dict({"messages": msgs}, **extra)
            if tools:
                body["tools"] = tools
            st, got = post(base, "/apply-template", body)
            want = encode(msgs, thinking, tools)
            check(st == 200 and got.get("prompt") == want, "V3.2: %s, %s" % (name, json.dumps(extra) or "default"),
                  "status %d\n got  %r\n want %r" % (st, got, want))
    check(encode(plain, True).endswith(A + "<think>") and encode(plain, False).endswith(A + "</think>") and
          "You are terse.Answer in French." in encode(plain, True), "(the encoding's own shape)")
    check("checking</think>Let me look." in encode(calls, True) and "</function_results>\n\n<think>" in encode(calls, True)
          and "both in" not in encode(answered, True), "(reasoning kept after the last user turn only)")
    for what, body, param in [
            ("tool_choice required", {"messages": plain, "tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
            ("a result with no call", {"messages": [turns[0], {"role": "tool", "tool_call_id": "c1", "content": "sun"}]},
             "messages")]:
        st, got = post(base, "/v1/chat/completions", dict(body, max_tokens=1))
        err = got.get("error", {})
        check(st == 400 and err.get("param") == param, "V3.2: 400 for " + what, "%d %s" % (st, got))
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
