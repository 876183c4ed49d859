#!/usr/bin/env python
"""Inference speed on the CPU: lasres (C backend), the same network exported
to ONNX and run by ONNX Runtime, and PyTorch (benchmarks/torch_twin.py),
side by side in one run.

    python benchmarks/bench_onnx.py --models normal:3 normal:18 bottleneck:18 --batch 100

Each framework gets the same weights (a freshly initialised lasres net) and
the same batch (BN statistics set from the batch, so that outputs are not
saturated); the script first checks that the three give the same
probabilities, then alternates them round by round so that they all see the
same machine load, and prints the median images per second and the ratios
(one JSON line each, then a Markdown table). ``--threads`` (default 2) sets
the BLAS/OpenMP threads of lasres's NumPy, ``torch.set_num_threads`` and ONNX
Runtime's intra-op threads.
"""
import argparse
import os
import sys

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--models", nargs="+", default=["normal:3", "normal:18", "bottleneck:18"],
                help="TYPE:DEPTH[:WIDTH] (pre-activation types: normal, bottleneck, wide)")
ap.add_argument("--batch", type=int, default=100)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--steps", type=int, default=2, help="timed calls per framework and round")
args = ap.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before NumPy is imported

import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from _common import calibrate  # noqa: E402


def main():
    import onnxruntime as ort
    import pytensor
    import torch

    import lasres
    from lasres.config import get_mode
    from lasres.export import to_onnx
    from lasres.layers import get_all_param_values, get_output
    from lasres.models import build
    from lasres.train.recipe import input_var
    from torch_twin import PreActResNet

    torch.set_num_threads(args.threads)
    rng = np.random.RandomState(0)
    x = rng.randn(args.batch, 3, 32, 32).astype("float32")
    tmp = tempfile.mkdtemp(prefix="bench_onnx_")
    rows = []
    for spec in args.models:
        parts = spec.split(":")
        kind, depth = parts[0], int(parts[1])
        width = int(parts[2]) if len(parts) > 2 else (4 if kind == "wide" else 1)
        lasres.random.set_rng(np.random.RandomState(1))
        net = build(kind, depth, width)
        calibrate(net, x[:32])
        values = get_all_param_values(net)

        predict = pytensor.function([input_var(net)], get_output(net, deterministic=True),
                                    mode=get_mode("c"))
        sessions = {}
        for label, fold in (("onnxruntime", False), ("onnxruntime fold_bn", True)):
            path = os.path.join(tmp, f"{kind}_{depth}_{fold}.onnx")
            to_onnx(net, path, fold_bn=fold)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sessions[label] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        model = PreActResNet(kind, depth, width).eval()
        model.load_lasagne_values(values)
        xt = torch.from_numpy(x)

        def torch_predict():
            with torch.no_grad():
                return torch.softmax(model(xt), 1).numpy()

        fns = {"lasres": lambda: np.asarray(predict(x))}
        for label, sess in sessions.items():
            fns[label] = (lambda s=sess: s.run(None, {"input": x})[0])
        fns["torch"] = torch_predict

        ref = fns["lasres"]()
        for name, fn in fns.items():
            diff = float(np.abs(fn() - ref).max())  # also the warm-up call
            print(json.dumps({"model": spec, "check": f"max |p_{name} - p_lasres|",
                              "value": diff}), flush=True)
            if not diff < 1e-4:
                raise SystemExit(f"{name} disagrees with lasres on {spec} (max |dp| = {diff})")
        times = {name: [] for name in fns}
        for _ in range(args.rounds):
            for name, fn in fns.items():
                for _ in range(args.steps):
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        speed = {name: args.batch / statistics.median(ts) for name, ts in times.items()}
        for name, v in speed.items():
            print(json.dumps({"model": spec, "framework": name, "batch": args.batch,
                              "threads": args.threads, "img_per_s": round(v, 1)}), flush=True)
        rows.append((spec, speed))

    names = list(rows[0][1])
    print()
    print("| model | " + " | ".join(f"{n} (img/s)" for n in names)
          + " | onnxruntime / lasres | onnxruntime / torch | lasres / torch |")
    print("|---" * (len(names) + 4) + "|")
    for spec, s in rows:
        print(f"| {spec.replace(':', ' ')} | " + " | ".join(f"{s[n]:.0f}" for n in names)
              + f" | {s['onnxruntime'] / s['lasres']:.2f} | {s['onnxruntime'] / s['torch']:.2f}"
              f" | {s['lasres'] / s['torch']:.2f} |")


if __name__ == "__main__":
    main()
