"""Time the fused Nesterov update (``lasres.updates.nesterov_momentum``)
against the literal form of Lasagne's formula as one fused node
(``v ← m·v + (p - lr·g) - p``, ``p ← m·v + (p - lr·g)``), side by side.

Prints one JSON line per size: best and median milliseconds per call of a
compiled C-backend function applying the update to one float32 parameter.

Usage::

    python benchmarks/bench_updates.py [--repeat 200]
"""
import argparse
import json
import os
import sys
import time
from collections import OrderedDict

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from lasres import updates  # noqa: E402
from lasres.config import get_mode  # noqa: E402
from lasres.ops.fused import fused_elemwise  # noqa: E402


def literal_nesterov(grads, params, learning_rate, momentum=0.9):
    """Lasagne's written arithmetic, evaluated literally (no cancellation)."""
    out = OrderedDict()

    def rule(p, g, v, lr_, m):
        step = p - lr_ * g
        x = m * v + step - p
        return x, m * x + step

    for param, grad in zip(params, grads):
        velocity = pytensor.shared(np.zeros_like(param.get_value()))
        new_v, new_p = fused_elemwise(rule, param, grad, velocity, learning_rate, momentum)
        out[param], out[velocity] = new_p, new_v
    return out


def build(make, size):
    p = pytensor.shared(np.random.RandomState(0).normal(size=size).astype(np.float32))
    g = pt.vector("g", dtype="float32")
    return pytensor.function([g], [], updates=make([g], [p], 0.01, 0.9), mode=get_mode("c"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    for size in (16 * 16 * 9, 64 * 64 * 9, 256 * 256 * 9):
        g = np.random.RandomState(1).normal(size=size).astype(np.float32)
        fns = {"lasres": build(updates.nesterov_momentum, size), "literal": build(literal_nesterov, size)}
        times = {k: [] for k in fns}
        for _ in range(args.repeat):  # interleaved
            for k, f in fns.items():
                t = time.perf_counter()
                f(g)
                times[k].append(time.perf_counter() - t)
        row = {"size": size}
        for k, ts in times.items():
            row[k] = {"best_ms": round(min(ts) * 1e3, 4), "median_ms": round(float(np.median(ts)) * 1e3, 4)}
        row["ratio_median_literal_over_lasres"] = round(row["literal"]["median_ms"] / row["lasres"]["median_ms"], 3)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
