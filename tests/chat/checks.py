"""PASS/FAIL lines and their count, shared by the chat tests."""
import sys

_count = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    print(("PASS " if ok else "FAIL ") + what + (": " + detail if detail and not ok else ""))
    _count["passed" if ok else "failed"] += 1


def finish():
    """Prints the counts and exits 1 on any failure."""
    print("%d passed, %d failed" % (_count["passed"], _count["failed"]))
    sys.exit(1 if _count["failed"] else 0)
