#!/usr/bin/env python
"""Compile time against depth: time from nothing to a compiled training step
(and inference function) for a registered architecture, with the graph's
node count and the process's peak memory. Each depth runs in a fresh
process (``--one``) so peak memory is per depth. Prints one JSON line per
measurement.

    python benchmarks/bench_compile.py --model normal --depths 1 3 9 18 --backend c
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def one(model, depth, width, backend, predict_only):
    t0 = time.perf_counter()
    import lasres  # noqa: F401
    from lasres.models import build
    from lasres.train.recipe import compile_predict
    from lasres.train import Trainer
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    net = build(model, depth, width)
    t_build = time.perf_counter() - t1
    row = {"model": model, "depth": depth, "width": width, "backend": backend or "c",
           "import_s": round(t_import, 2), "build_s": round(t_build, 2)}
    if predict_only:
        t2 = time.perf_counter()
        f = compile_predict(net, backend)
        row["predict_compile_s"] = round(time.perf_counter() - t2, 2)
        row["predict_nodes"] = len(f.maker.fgraph.apply_nodes)
    else:
        tr = Trainer(net, backend=backend)
        row["train_compile_s"] = round(tr.compile_seconds["train"], 2)
        row["predict_compile_s"] = round(tr.compile_seconds["predict"], 2)
        row["train_nodes"] = len(tr.train_fn.maker.fgraph.apply_nodes)
        import numpy as np
        x = np.random.RandomState(0).randn(64, 3, 32, 32).astype("float32")
        y = np.zeros(64, "int32")
        t3 = time.perf_counter()
        tr.train_fn(x, y)
        row["first_step_s"] = round(time.perf_counter() - t3, 2)
    row["total_to_first_step_s"] = round(time.perf_counter() - t0, 2)
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(row), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="normal")
    p.add_argument("--depths", type=int, nargs="+", default=[1, 3, 9, 18])
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--backend", default=None)
    p.add_argument("--predict-only", action="store_true")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        return one(a.model, a.depths[0], a.width, a.backend, a.predict_only)
    for d in a.depths:
        cmd = [sys.executable, os.path.abspath(__file__), "--one", "--model", a.model,
               "--depths", str(d), "--width", str(a.width)]
        if a.backend:
            cmd += ["--backend", a.backend]
        if a.predict_only:
            cmd.append("--predict-only")
        subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
