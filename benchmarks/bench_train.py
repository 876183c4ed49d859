#!/usr/bin/env python
"""Training / inference throughput of a lasres network, one JSON line per
measurement.

    python benchmarks/bench_train.py --backend c --model normal --depth 3 --batch 64
    python benchmarks/bench_train.py --what train --profile benchmarks/profile_normal3_train.txt

The train step is the legacy recipe's (cross-entropy + L2, Nesterov momentum,
BN running averages). Times are medians over ``--steps`` steps after
``--warmup`` steps.
"""
import argparse
import json
import os
import platform
import statistics
import time

import numpy as np


def measure(fn, args, warmup, steps):
    t0 = time.perf_counter()
    for _ in range(warmup):
        [np.asarray(o) for o in (lambda r: r if isinstance(r, (list, tuple)) else [r])(fn(*args))]
    measure.warmup_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        out = fn(*args)
        for o in (out if isinstance(out, (list, tuple)) else [out]):
            np.asarray(o)  # waits for asynchronous backends
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="c")
    p.add_argument("--model", default="normal")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--what", choices=("train", "infer", "both"), default="both")
    p.add_argument("--profile", metavar="PATH",
                   help="run PyTensor's profiler and write the profile of the measured "
                        "function(s) to PATH")
    a = p.parse_args()
    if a.profile:
        import pytensor
        pytensor.config.profile = True

    import lasres  # noqa: F401
    from lasres.models import build
    from lasres.train import Trainer

    net = build(a.model, a.depth, a.width)
    t0 = time.perf_counter()
    tr = Trainer(net, backend=a.backend)
    compile_s = time.perf_counter() - t0
    rng = np.random.RandomState(0)
    x = rng.randn(a.batch, 3, 32, 32).astype("float32") * 50
    y = rng.randint(0, 10, a.batch).astype("int32")
    from lasres.ops import kernels
    base = {"framework": "lasres", "backend": a.backend, "kernels": kernels(), "model": a.model, "depth": a.depth,
            "width": a.width, "batch": a.batch, "compile_s": round(compile_s, 1),
            "threads": os.cpu_count(), "machine": platform.machine()}
    if a.what in ("train", "both"):
        med, _ = measure(tr.train_fn, (x, y), a.warmup, a.steps)
        print(json.dumps({**base, "what": "train", "warmup_s": round(measure.warmup_s, 1),
                          "step_s": round(med, 4),
                          "img_per_s": round(a.batch / med, 1)}), flush=True)
    if a.what in ("infer", "both"):
        med, _ = measure(tr.predict_fn, (x,), a.warmup, a.steps)
        print(json.dumps({**base, "what": "infer", "step_s": round(med, 4),
                          "img_per_s": round(a.batch / med, 1)}), flush=True)
    if a.profile:
        import io
        from lasres.ops import kernels
        text = io.StringIO()
        text.write(f"# {' '.join(os.sys.argv)}\n# lasres convolution kernels: {kernels()}\n")
        for what, fn in (("train", tr.train_fn), ("infer", tr.predict_fn)):
            if a.what in (what, "both"):
                text.write(f"\n# ===== {what} function =====\n")
                fn.profile.summary(file=text, n_ops_to_print=400)
        with open(a.profile, "w") as f:
            f.write(text.getvalue())
        from pytensor.compile.debug import profiling
        profiling._atexit_print_list.clear()   # written above; no second copy at exit


if __name__ == "__main__":
    main()
