#!/usr/bin/env python3
"""Compares a `dsc grad` output file with a golden train.safetensors.

usage: check_grads.py OUT.safetensors GOLDEN_TRAIN.safetensors

OUT must hold loss_ce and loss_aux (within 1e-3 relative of the golden) and
exactly the golden's grad.NAME tensors, F32, same shapes, each within
1e-3 x max|grad| of its golden tensor. Prints one line; exit 1 on mismatch.
Standard library only.
"""
import array
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        code = {"F32": "f", "I32": "i"}.get(t["dtype"])
        vals = array.array(code, data[8 + n + b:8 + n + e]) if code else None
        if vals is not None and sys.byteorder != "little":
            vals.byteswap()
        out[name] = (t["dtype"], t["shape"], vals)
    return out


def main():
    got, want = load(sys.argv[1]), load(sys.argv[2])
    errors = []
    for k in ("loss_ce", "loss_aux"):
        if k not in got or got[k][0] != "F32" or got[k][1] != [1]:
            errors.append("%s missing or not F32 [1]" % k)
            continue
        g, w = got[k][2][0], want[k][2][0]
        if abs(g - w) > 1e-3 * max(abs(w), 1e-30):
            errors.append("%s %.6g, golden %.6g" % (k, g, w))
    wanted = {k for k in want if k.startswith("grad.")}
    have = {k for k in got if k.startswith("grad.")}
    for k in sorted(wanted - have):
        errors.append("missing " + k)
    for k in sorted(have - wanted):
        errors.append("extra " + k)
    worst, worst_name = 0.0, ""
    for k in sorted(wanted & have):
        dt, shape, g = got[k]
        _, wshape, w = want[k]
        if dt != "F32" or shape != wshape:
            errors.append("%s: %s %s, golden F32 %s" % (k, dt, shape, wshape))
            continue
        mx = max(abs(x) for x in w) or 1.0
        d = max(abs(a - b) for a, b in zip(g, w)) / mx
        if not d <= 1e-3:
            errors.append("%s: max|diff| / max|grad| = %.2e" % (k, d))
        if d > worst:
            worst, worst_name = d, k
    if errors:
        print("; ".join(errors[:5]) + (" (+%d more)" % (len(errors) - 5) if len(errors) > 5 else ""))
        return 1
    print("%d gradients, worst %.1e x max|grad| (%s), loss_ce %.6f loss_aux %.6f" %
          (len(have), worst, worst_name, got["loss_ce"][2][0], got["loss_aux"][2][0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
