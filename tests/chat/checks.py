"""PASS/FAIL lines and their count, and a `dsc serve` to ask, shared by the chat tests."""
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

_count = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what + (": " + detail if detail and not ok else ""))
    _count["passed" if ok else "failed"] += 1


def finish():
    """Prints the counts and exits 1 on any failure."""
    print("%d passed, %d failed" % (_count["passed"], _count["failed"]))
    sys.exit(1 if _count["failed"] else 0)


def serve(dsc, model, tokenizer, extra):
    """Starts `dsc serve` on a free port: (process, base URL, its log so far)."""
    p = subprocess.Popen([dsc, "serve", "-m", model, "--tokenizer", tokenizer, "--port", "0", "-t", "1", "-c", "256"] +
                         extra, stderr=subprocess.PIPE, text=True)
    log = ""
    for line in p.stderr:
        log += line
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return p, "http://127.0.0.1:%s" % m.group(1), log
    p.wait()
    raise SystemExit("server did not start: " + log)


def post(base, path, body):
    """POSTs body as JSON: (status, the answer parsed)."""
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
