#!/usr/bin/env python3
"""dsc run / dsc chat end to end on a golden checkpoint paired with the tiny
512-id tokenizer (tests/data/tiny-tokenizer). Checks the template sent to the
model token by token (--verbose-prompt), multi-turn history, /reset, /exit,
the reasoning split, and that the same seed gives the same output.

usage: test_chat.py DSC MODEL_DIR TOKENIZER_DIR"""
import json
import os
import subprocess
import sys
import tempfile

from checks import check, finish

DSC, MODEL, TOKDIR = sys.argv[1:4]
TOK = TOKDIR + "/tokenizer.json"
BOS, EOS, USER, ASSISTANT, THINK = 0, 1, 258, 259, 260


def text_ids(s):  # printable text: one id per byte, id = 2 + byte (see make_tiny_tokenizer.py)
    return [2 + b for b in s.encode()]


def run(args, stdin=""):
    p = subprocess.run([DSC] + args, input=stdin.encode(), capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def prompts(err):
    return [[int(x) for x in l.split()[2:]] for l in err.splitlines() if l.startswith("prompt ids:")]


common = ["-m", MODEL, "--tokenizer", TOK, "--verbose-prompt", "-n", "12", "--seed", "7"]

# One turn, R1 template (detected from tokenizer_config.json), with a system prompt.
rc, out, err = run(["chat"] + common + ["--system", "Be brief."], "hello\n/exit\n")
check(rc == 0, "chat exits 0 on /exit", err)
want = [BOS] + text_ids("Be brief.") + [USER] + text_ids("hello") + [ASSISTANT, THINK] + text_ids("\n")
got = prompts(err)
check(got == [want], "R1 template with system prompt, token by token", "got %s want %s" % (got, [want]))
check("tok/s" in err, "speed report printed")

# Two turns: the second prompt holds the first exchange, the assistant turn
# closed by EOS and keeping only the text after </think> (none here: the
# random model never closes its reasoning).
rc, out, err = run(["chat"] + common + ["--no-think"], "hi\nyo\n/exit\n")
got = prompts(err)
t1 = [BOS, USER] + text_ids("hi") + [ASSISTANT]
check(len(got) == 2 and got[0] == t1, "V3 template (--no-think), turn 1", str(got[:1]))
if len(got) == 2:
    ans = got[1][len(t1):got[1].index(EOS)] if EOS in got[1] else None
    check(ans is not None and got[1] == t1 + ans + [EOS, USER] + text_ids("yo") + [ASSISTANT],
          "turn 2 carries the history", str(got[1]))
    first_answer = out.split("\n")[0].replace(" [length limit]", "")
    check(ans == text_ids(first_answer) or not first_answer.isprintable(),
          "history holds the streamed answer", "%r vs %r" % (first_answer, ans))

# /reset forgets the history.
rc, out, err = run(["chat"] + common + ["--no-think"], "hi\n/reset\nyo\n/exit\n")
got = prompts(err)
check(len(got) == 2 and got[1] == [BOS, USER] + text_ids("yo") + [ASSISTANT], "/reset empties the history", str(got))

# --mtp in a chat: each turn's answer and the history are those of plain decoding.
p1 = run(["chat"] + common + ["--no-think"], "hi\nyo\n/exit\n")
p2 = run(["chat"] + common + ["--no-think", "--mtp"], "hi\nyo\n/exit\n")
check(p2[0] == 0 and p2[1] == p1[1] and prompts(p2[2]) == prompts(p1[2]) and p2[2].count("MTP drafts:") == 2,
      "chat --mtp: the same answers and history", p2[2])

# End of input ends the chat cleanly.
rc, out, err = run(["chat"] + common, "hi\n")
check(rc == 0 and len(prompts(err)) == 1, "EOF ends the chat", err)

# dsc run: one answer; same seed -> same output; --hide-think hides the reasoning.
a = run(["run"] + common + ["-p", "What is 2+2?"])
b = run(["run"] + common + ["-p", "What is 2+2?"])
check(a[0] == 0 and a[1] == b[1], "run: same seed, same output", a[2])
m = run(["run"] + common + ["-p", "What is 2+2?", "--mtp"])
check(m[0] == 0 and m[1] == a[1] and "MTP drafts:" in m[2], "run --mtp: the same output (speculative decoding)", m[2])
c = run(["run"] + common + ["-p", "What is 2+2?", "--seed", "8"])
check(c[1] != a[1], "run: another seed, another output")
h = run(["run"] + common + ["-p", "What is 2+2?", "--hide-think"])
check(h[0] == 0 and len(h[1].strip(" \n[]lengthimt")) < len(a[1].strip()), "run --hide-think hides the reasoning",
      repr(h[1]))
g = run(["run"] + common + ["-p", "What is 2+2?", "--temp", "0"])
check(g[0] == 0 and prompts(g[2]) == [[BOS, USER] + text_ids("What is 2+2?") + [ASSISTANT, THINK] + text_ids("\n")],
      "run: R1 template", g[2])

# --raw: no template, BOS + the text (base models); the prompt is echoed.
r = run(["run"] + common + ["-p", "Once upon", "--raw", "--temp", "0"])
check(r[0] == 0 and prompts(r[2]) == [[BOS] + text_ids("Once upon")] and r[1].startswith("Once upon"),
      "run --raw: BOS + text, no template", r[2])

# --json-schema: the answer one JSON object the schema accepts (the random
# model's freedom is bounded: whitespace runs, the order of the keys, three
# characters), and it ends as the object closes; --json-object after the
# reasoning; refused combinations and bad schemas are one-line errors.
with tempfile.TemporaryDirectory() as tmp:
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {"enum": ["x", "y", 7]},
                                               "c": {"type": "string", "maxLength": 3}},
              "required": ["a", "b", "c"], "additionalProperties": False}
    with open(tmp + "/s.json", "w") as f:
        json.dump(schema, f)
    docs = 0
    for seed in range(1, 5):
        rc, out, err = run(["run"] + common[:-4] + ["-n", "600", "--seed", str(seed), "--no-think", "-p", "JSON:",
                                                    "--json-schema", tmp + "/s.json"])
        try:
            o = json.loads(out.strip())
            docs += rc == 0 and sorted(o) == ["a", "b", "c"] and isinstance(o["a"], bool) and o["b"] in ("x", "y", 7) \
                and isinstance(o["c"], str) and len(o["c"]) <= 3 and "[length limit]" not in out
        except ValueError:
            print("# not JSON: %r" % out)
    check(docs == 4, "run --json-schema: four answers, each a document of the schema, ended as it closed", "%d" % docs)
    with open(tmp + "/bad.json", "w") as f:
        f.write('{"type": "object", "properties": {"d": {"type": "string", "format": "uri"}}}')
    for args, what in [(["--json-schema", tmp + "/bad.json"], "format 'uri'"), (["--json-schema", tmp + "/none.json"], "none.json"),
                       (["--json-object", "--raw"], "--raw"), (["--json-object", "--samples", "2"], "--samples")]:
        rc, out, err = run(["run"] + common + ["-p", "x"] + args)
        check(rc == 1 and what in err and err.count("\n") == 1, "run %s: a one-line error" % " ".join(args[:2]), err)

# A conversation longer than the context is an error, not a crash.
rc, out, err = run(["run", "-m", MODEL, "--tokenizer", TOK, "-c", "8", "-p", "this prompt is too long"])
check(rc == 1 and "context" in err and err.count("\n") <= 2, "over-long prompt: clear error", err)

# Piped input: a NUL byte drops its message (the next one goes on), a failed
# turn makes the exit status 1, a read error and endless input without a
# newline are one line and exit 1, not memory without end.
rc, out, err = run(["chat"] + common, "ab\0cd\nhi\n")
got = prompts(err)
check(rc == 1 and "NUL byte" in err and len(got) == 1 and str(text_ids("hi"))[1:-1] in str(got[0]) and
      str(text_ids("cd"))[1:-1] not in str(got[0]),
      "chat: a NUL byte drops its message, the next one is answered, exit 1", err)
p = subprocess.run([DSC, "chat"] + common, input=b"ab\xff\nhi\n", capture_output=True, timeout=60)
err = p.stderr.decode("utf-8", "replace")
check(p.returncode == 1 and "invalid UTF-8" in err and len(prompts(err)) == 1,
      "chat: a failed turn (invalid UTF-8) goes on to the next, then exit 1", err)
with open("/dev/zero", "rb") as zero:
    p = subprocess.run([DSC, "chat", "-m", MODEL, "--tokenizer", TOK, "-c", "64", "-n", "2"], stdin=zero,
                       capture_output=True, timeout=60)
err = p.stderr.decode("utf-8", "replace")
check(p.returncode == 1 and "more than" in err and "context of 64" in err,
      "chat: endless input without a newline is one error, not a growing buffer", err)
d = os.open("/", os.O_RDONLY)
p = subprocess.run([DSC, "chat", "-m", MODEL, "--tokenizer", TOK, "-n", "2"], stdin=d, capture_output=True, timeout=60)
os.close(d)
err = p.stderr.decode("utf-8", "replace")
check(p.returncode == 1 and "stdin: Is a directory" in err, "chat: a read error on stdin is exit 1", err)

# DeepSeek-V3.1's template (its tokenizer_config.json beside the tokenizer):
# the answer opens with </think> (no thinking) or <think> (--think), earlier
# answers with </think>, and only --think shows reasoning.
v31 = tempfile.mkdtemp()
os.symlink(os.path.abspath(TOK), os.path.join(v31, "tokenizer.json"))
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "deepseek-v3.1", "tokenizer_config.json")) as f, \
        open(os.path.join(v31, "tokenizer_config.json"), "w") as g:
    g.write(f.read())
THINK_END = 261
c31 = ["-m", MODEL, "--tokenizer", v31 + "/tokenizer.json", "--verbose-prompt", "-n", "6", "--seed", "7"]
rc, out, err = run(["chat"] + c31, "hi\nyo\n/exit\n")
got = prompts(err)
t1 = [BOS, USER] + text_ids("hi") + [ASSISTANT, THINK_END]
check(rc == 0 and len(got) == 2 and got[0] == t1, "V3.1 template: no thinking by default", str(got[:1]) + err)
if len(got) == 2:
    ans = got[1][len(t1):got[1].index(EOS)] if EOS in got[1] else None
    check(ans is not None and got[1] == t1 + ans + [EOS, USER] + text_ids("yo") + [ASSISTANT, THINK_END],
          "V3.1 template: turn 2 carries the history after </think>", str(got[1]))
rc, out, err = run(["chat"] + c31, "hi\n/think\nyo\n/nothink\nok\n/exit\n")
got = prompts(err)
check(rc == 0 and len(got) == 3 and got[1][-2:] == [ASSISTANT, THINK] and got[2][-2:] == [ASSISTANT, THINK_END]
      and "(thinking on)" in out and "(thinking off)" in out, "V3.1 template: /think and /nothink switch the next turns",
      str(got) + out)
rc, out, err = run(["chat"] + common + ["--no-think"], "/think\nhi\n/exit\n")
check(rc == 0 and "only with DeepSeek-V3.1's template" in out and prompts(err)[0][-1] == ASSISTANT,
      "/think with V3's template: said, nothing switched", out)
rc, out, err = run(["run"] + c31 + ["--think", "-p", "hi"])
check(rc == 0 and prompts(err) == [[BOS, USER] + text_ids("hi") + [ASSISTANT, THINK]], "V3.1 template, --think: <think>",
      str(prompts(err)) + err)
for f in os.listdir(v31):
    os.unlink(os.path.join(v31, f))
os.rmdir(v31)

finish()
