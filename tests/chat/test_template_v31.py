#!/usr/bin/env python3
"""DeepSeek-V3.1's chat template (thinking switched per request) in `dsc serve`
(POST /apply-template) against the template itself: its tokenizer_config.json
(tests/chat/deepseek-v3.1/) rendered by Jinja2 as Hugging Face's
apply_chat_template renders it, with `thinking` on and off, for plain turns,
answers that kept their reasoning, tool calls and results, and a prefix to
continue. Also: the ways a request switches thinking, the server's default
(--think), the tools' description, and the bad switches refused.

usage: test_template_v31.py DSC MODEL_DIR GOLDEN_TOKENIZER_DIR"""
import json
import os
import shutil
import sys
import tempfile

try:
    import jinja2
    import jinja2.sandbox
except ImportError:
    sys.exit("test_template_v31.py: Jinja2 is needed (apt-get install python3-jinja2)")

import checks
from checks import check, finish, post

DSC, MODEL, TOKDIR = sys.argv[1:4]
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "deepseek-v3.1", "tokenizer_config.json")

tmp = tempfile.mkdtemp()
os.symlink(os.path.abspath(os.path.join(TOKDIR, "tokenizer.json")), os.path.join(tmp, "tokenizer.json"))
shutil.copy(CONFIG, os.path.join(tmp, "tokenizer_config.json"))


def serve(extra, tokdir=tmp):
    try:
        return checks.serve(DSC, MODEL, tokdir + "/tokenizer.json", extra)
    except SystemExit:
        shutil.rmtree(tmp)
        raise


cfg = json.load(open(CONFIG))
env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
template = env.from_string(cfg["chat_template"])
BOS, EOS = cfg["bos_token"]["content"], cfg["eos_token"]["content"]
U, A = "<｜User｜>", "<｜Assistant｜>"


def jinja(messages, thinking, gen=True):
    return template.render(messages=messages, add_generation_prompt=gen, bos_token=BOS, eos_token=EOS,
                           thinking=thinking)


def call(name, args):
    return {"id": "call_" + name, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


w1, w2 = {"city": "Paris"}, {"city": "Tōkyō", "unit": "°C"}
plain = [{"role": "system", "content": "You are terse."}, {"role": "system", "content": "Answer in French."},
         {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "<think>a greeting</think>Salut."},
         {"role": "assistant", "content": "Second </think> kept"},
         {"role": "user", "content": "2+2?"}]
calls = [{"role": "user", "content": "Weather in Paris and Tōkyō?"},
         {"role": "assistant", "content": None, "tool_calls": [call("get_weather", w1), call("get_weather", w2)]},
         {"role": "tool", "tool_call_id": "call_get_weather", "content": "{\"temp\": 21}"},
         {"role": "tool", "tool_call_id": "call_get_weather", "content": "{\"temp\": 9}"}]
answered = calls + [{"role": "assistant", "content": "Paris 21, </think>Tōkyō 9."},
                    {"role": "user", "content": "And Oslo?"},
                    {"role": "assistant", "content": "Let me look.", "tool_calls": [call("get_time", {})]},
                    {"role": "tool", "content": "noon"},
                    {"role": "assistant", "content": "It is noon."},
                    {"role": "user", "content": "Thanks!"}]
agent = calls + [{"role": "assistant", "content": None, "tool_calls": [call("get_time", {"zone": "CET"})]},
                 {"role": "tool", "content": "noon"}, {"role": "assistant", "content": "Noon; 21 and 9."}]
prefix = [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two", "prefix": True}]

srv, base, log = serve([])
try:
    check("V3.1 template (thinking when asked)" in log, "V3.1's template recognized", log)
    switches = [({}, False), ({"chat_template_kwargs": {"thinking": True}}, True),
                ({"chat_template_kwargs": {"enable_thinking": True}}, True),
                ({"thinking": {"type": "enabled"}}, True), ({"model": "deepseek-reasoner"}, True),
                ({"model": "deepseek-reasoner", "chat_template_kwargs": {"thinking": False}}, False),
                ({"model": "deepseek-chat"}, False)]
    for name, msgs in [("plain turns, reasoning kept in history", plain), ("two calls, two results, goes on", calls),
                       ("calls, results, answers, more calls", answered),
                       ("calls after results, an answer", agent)]:
        for extra, thinking in switches:
            st, got = post(base, "/apply-template", dict({"messages": msgs}, **extra))
            want = jinja(msgs, thinking)
            check(st == 200 and got.get("prompt") == want, "V3.1: %s, %s" % (name, json.dumps(extra) or "default"),
                  "status %d\n got  %r\n want %r" % (st, got, want))
    check(jinja(plain, False).endswith(A + "</think>") and jinja(plain, True).endswith(A + "<think>"),
          "(the template opens the answer with </think> or <think>)")
    check(jinja(calls, True).endswith("<｜tool▁output▁end｜>"), "(after results it opens nothing)")
    # A prefix to continue: the template's text up to the end of the prefix (it closes it; dsc leaves it open).
    for thinking in (False, True):
        st, got = post(base, "/apply-template", {"messages": prefix, "chat_template_kwargs": {"thinking": thinking}})
        want = jinja(prefix, thinking)
        check(st == 200 and want.endswith(EOS) and got.get("prompt") == want[:-len(EOS)],
              "V3.1: a prefix to continue, thinking %s" % thinking, "\n got  %r\n want %r" % (got, want))

    # The tools offered: after the system prompt, as V3.1's model card describes them.
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    st, got = post(base, "/apply-template", {"messages": [plain[0], calls[0]], "tools": tools})
    p = got.get("prompt", "")
    check(st == 200 and p.startswith(BOS + "You are terse.\n\n## Tools\nYou have access to the following tools:\n\n"
                                     "### get_weather\nDescription: Weather now\n\nParameters: {\"type\":\"object\","
                                     "\"properties\":{\"city\":{\"type\":\"string\"}}}\n\nIMPORTANT: ")
          and "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments<｜tool▁call▁end｜>"
          in p and p.endswith(U + calls[0]["content"] + A + "</think>"), "V3.1: the tools after the system prompt", p)

    for what, body, param in [
            ("thinking of an unknown type", {"thinking": {"type": "maybe"}}, "thinking"),
            ("thinking a boolean", {"thinking": True}, "thinking"),
            ("chat_template_kwargs a list", {"chat_template_kwargs": [1]}, "chat_template_kwargs"),
            ("chat_template_kwargs.thinking a string", {"chat_template_kwargs": {"thinking": "yes"}}, "thinking")]:
        st, got = post(base, "/v1/chat/completions", dict({"messages": plain, "max_tokens": 1}, **body))
        check(st == 400 and got.get("error", {}).get("param") == param, "400 for " + what, "%d %s" % (st, got))
finally:
    srv.terminate()
    srv.wait()

# --think: thinking unless a request says not.
srv, base, log = serve(["--think"])
try:
    check("V3.1 template (thinking unless asked not to)" in log, "--think: V3.1 thinking by default", log)
    for extra, thinking in [({}, True), ({"thinking": {"type": "disabled"}}, False), ({"model": "deepseek-chat"}, False)]:
        st, got = post(base, "/apply-template", dict({"messages": plain}, **extra))
        check(st == 200 and got.get("prompt") == jinja(plain, thinking), "--think, %s" % (json.dumps(extra) or "default"),
              str(got))
finally:
    srv.terminate()
    srv.wait()

# DeepSeek-V3's template: the switches change nothing.
srv, base, log = serve([], TOKDIR)
try:
    st0, a0 = post(base, "/apply-template", {"messages": plain})
    st1, a1 = post(base, "/apply-template", {"messages": plain, "chat_template_kwargs": {"thinking": True},
                                             "model": "deepseek-reasoner"})
    check(st0 == st1 == 200 and a0 == a1 and a0["prompt"].endswith(U + "2+2?" + A), "V3's template: no thinking switch",
          "%s %s" % (a0, a1))
finally:
    srv.terminate()
    srv.wait()
    shutil.rmtree(tmp)

finish()
