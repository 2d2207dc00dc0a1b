#!/usr/bin/env python3
"""Generate every mkckpt variant in the golden layout: gen_all.py OUTDIR [--seed S] [VARIANT ...]

    OUTDIR/NAME/model/{config.json, *.safetensors[, model.safetensors.index.json]}
    OUTDIR/NAME/expected.safetensors   tokens I32 [12], logits F32 [12, V], greedy I32 [8]

so an engine test written for shared/golden/models can run on OUTDIR unchanged."""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mkckpt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tries", type=int, default=24)
    a = ap.parse_args()
    for v in a.variants or sorted(mkckpt.VARIANTS):
        t0 = time.time()
        d = os.path.join(a.outdir, v)
        mkckpt.main(["--variant", v, "-o", os.path.join(d, "model"), "--seed", str(a.seed),
                     "--expected", os.path.join(d, "expected.safetensors"), "--tries", str(a.tries)])
        print("%s: %.1fs\n" % (v, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
