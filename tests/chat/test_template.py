#!/usr/bin/env python3
"""The chat template of `dsc serve` (POST /apply-template) against DeepSeek-V3's
own, tokenizer_config.json's chat_template rendered by Jinja2 as Hugging Face's
apply_chat_template renders it, for conversations with tool calls and their
results. That template writes a call list right only when it holds exactly two
calls in the conversation's one call turn (it closes a list after its second
call, never after a first alone; it opens the results once per conversation);
dsc writes them as its 0324 revision does (every list closed after its last
call, every run of results opened), so the other cases are checked against
strings written here from that rule.

usage: test_template.py DSC MODEL_DIR GOLDEN_TOKENIZER_DIR"""
import json
import sys

try:
    import jinja2
    import jinja2.sandbox
except ImportError:
    sys.exit("test_template.py: Jinja2 is needed (apt-get install python3-jinja2)")

import checks
from checks import check, finish, post

DSC, MODEL, TOKDIR = sys.argv[1:4]


def serve(extra):
    p, base, _ = checks.serve(DSC, MODEL, TOKDIR + "/tokenizer.json", extra)
    return p, base


cfg = json.load(open(TOKDIR + "/tokenizer_config.json"))
env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
golden = env.from_string(cfg["chat_template"])
tok = lambda k: cfg[k]["content"] if isinstance(cfg[k], dict) else cfg[k]


def jinja(messages, gen=True):
    return golden.render(messages=messages, add_generation_prompt=gen, bos_token=tok("bos_token"),
                         eos_token=tok("eos_token"))


def call(name, args):
    return {"id": "call_" + name, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}


BOS, EOS, U, A = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"
CB, CE, TB, TE, SEP = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OB, OE, RB, RE = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"


def rcall(name, args):  # one call as the template writes it
    return TB + "function" + SEP + name + "\n```json\n" + json.dumps(args) + "\n```" + TE


w1, w2 = {"city": "Paris"}, {"city": "Tōkyō", "unit": "°C"}
two = [{"role": "system", "content": "You are terse."},
       {"role": "user", "content": "Weather in Paris and Tōkyō?"},
       {"role": "assistant", "content": None, "tool_calls": [call("get_weather", w1), call("get_weather", w2)]},
       {"role": "tool", "tool_call_id": "call_get_weather", "content": "{\"temp\": 21}"},
       {"role": "tool", "tool_call_id": "call_get_weather", "content": "{\"temp\": 9}"}]
after = two + [{"role": "assistant", "content": "Paris 21, Tōkyō 9."}, {"role": "user", "content": "Thanks!"}]

srv, base = serve([])
try:
    # Against the golden template itself.
    for name, msgs in [("plain turns", [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "yo"}, {"role": "user", "content": "ok?"}]),
                       ("two calls, two results, the answer goes on", two),
                       ("two calls, results, an answer, a user turn", after)]:
        st, got = post(base, "/apply-template", {"messages": msgs})
        want = jinja(msgs)
        check(st == 200 and got.get("prompt") == want, "golden template: " + name,
              "status %d\n got  %r\n want %r" % (st, got, want))
    check(jinja(two).endswith(OE) and not jinja(two).endswith(A), "the golden template opens no answer after results")

    # The revision's rule where the golden template errs.
    one = [{"role": "user", "content": "Paris?"},
           {"role": "assistant", "content": "Let me look.", "tool_calls": [call("get_weather", w1)]},
           {"role": "tool", "content": "21"},
           {"role": "assistant", "content": "21 degrees."},
           {"role": "user", "content": "And Tōkyō, then Oslo?"},
           {"role": "assistant", "content": None, "tool_calls": [call("get_weather", w2), call("get_weather", w1),
                                                                   call("get_time", {})]},
           {"role": "tool", "content": "9"}, {"role": "tool", "content": "3"}, {"role": "tool", "content": "noon"},
           {"role": "user", "content": "Summarize."}]
    want = (BOS + U + "Paris?" + A + "Let me look." + CB + rcall("get_weather", w1) + CE + EOS +
            OB + RB + "21" + RE + OE + "21 degrees." + EOS +
            U + "And Tōkyō, then Oslo?" + A + CB + rcall("get_weather", w2) + "\n" + rcall("get_weather", w1) + "\n" +
            rcall("get_time", {}) + CE + EOS +
            OB + RB + "9" + RE + "\n" + RB + "3" + RE + "\n" + RB + "noon" + RE + OE + U + "Summarize." + A)
    st, got = post(base, "/apply-template", {"messages": one})
    check(st == 200 and got.get("prompt") == want, "one call with text, three calls, results closed before a user turn",
          "\n got  %r\n want %r" % (got.get("prompt"), want))
    check(jinja(one) != want, "(the golden template writes that conversation otherwise)")

    # The tools offered join the system prompt after a blank line.
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    st, got = post(base, "/apply-template", {"messages": two[:2], "tools": tools})
    p = got.get("prompt", "")
    check(st == 200 and p.startswith(BOS + "You are terse.\n\n## Tools\n") and "### get_weather\nDescription: Weather now\n"
          "Parameters: {\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}\n" in p
          and p.endswith(U + "Weather in Paris and Tōkyō?" + A), "tools: after the system prompt, each described", p)
    st, none = post(base, "/apply-template", {"messages": two[:2], "tools": tools, "tool_choice": "none"})
    check(st == 200 and none.get("prompt") == jinja(two[:2]), "tool_choice none: no tools in the prompt", str(none))
    st, got = post(base, "/apply-template", {"messages": two[1:2], "tools": tools})
    check(st == 200 and got.get("prompt", "").startswith(BOS + "## Tools\n"), "tools without a system prompt", str(got))

    # Bad conversations: a 400 naming the field.
    for what, body, param in [
            ("tool_calls on a user message", {"messages": [{"role": "user", "content": "x", "tool_calls": [call("f", {})]}]},
             "messages[0].tool_calls"),
            ("a call without a name", {"messages": [{"role": "assistant", "content": None,
                                                     "tool_calls": [{"type": "function", "function": {"arguments": "{}"}}]}]},
             "messages[0].tool_calls[0].function.name"),
            ("arguments a number", {"messages": [{"role": "assistant", "content": None,
                                                  "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": 3}}]}]},
             "messages[0].tool_calls[0].function.arguments"),
            ("a tool message without content", {"messages": [{"role": "tool"}]}, "messages[0].content"),
            ("a role 'function'", {"messages": [{"role": "function", "content": "x"}]}, "messages[0].role")]:
        st, got = post(base, "/apply-template", body)
        err = got.get("error", {})
        check(st == 400 and err.get("param") == param, "400 for " + what, "%d %s" % (st, got))
finally:
    srv.terminate()
    srv.wait()

# A reasoning model (--think): the answer after results opens without <think>.
srv, base = serve(["--think"])
try:
    st, got = post(base, "/apply-template", {"messages": two})
    check(st == 200 and got.get("prompt") == jinja(two), "reasoning: after results, no <think> (as R1's template)", str(got))
    st, got = post(base, "/apply-template", {"messages": two[:2]})
    check(st == 200 and got.get("prompt", "").endswith(A + "<think>\n"), "reasoning: a user turn's answer opens <think>",
          str(got))
finally:
    srv.terminate()
    srv.wait()

finish()
