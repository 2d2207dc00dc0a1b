#!/usr/bin/env python3
"""Check dsref.py against every shared golden model: check_golden.py [GOLDEN_MODELS_DIR]

Default directory: ../shared/golden/models next to the repository root.
Exit status 1 if any model fails (logits ratio >= --tol or greedy mismatch)."""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dsref  # noqa: E402


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--tol=")]
    tol = float(next((a[6:] for a in sys.argv[1:] if a.startswith("--tol=")), "1e-5"))
    root = args[0] if args else os.path.join(HERE, "..", "..", "..", "shared", "golden", "models")
    names = sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "expected.safetensors")))
    if not names:
        print("no golden models under " + root)
        return 1
    bad = 0
    for n in names:
        t0 = time.time()
        exp, meta = dsref.read_safetensors(os.path.join(root, n, "expected.safetensors"))
        m = dsref.Model(os.path.join(root, n))
        r = m.run(list(exp["tokens"][2]), len(exp["greedy"][2]))
        ok, lines = dsref.compare(r, exp, tol)
        bad += not ok
        print("%-18s %s  %.2fs" % (n, "PASS" if ok else "FAIL", time.time() - t0))
        for l in lines:
            print("    " + l)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
