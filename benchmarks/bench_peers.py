#!/usr/bin/env python
"""Every peer side by side on the CPU: lasres against PyTorch (eager NCHW,
channels_last, torch.compile), ONNX Runtime and OpenVINO, with the machine's
float32 GEMM bound (issue 28).

The peers are not lasres dependencies: they live in a benchmark venv of
their own (never in setup.py), made once from the repository root:

    python -m venv .venv-bench && . .venv-bench/bin/activate && pip install -e . onnx onnxruntime openvino torch

Then, e.g.:

    nice -n 5 python benchmarks/bench_peers.py --models normal:3 bottleneck:18 wide:2:4 \\
        --threads 2 --rounds 3 --steps 3 --out table.md
    python benchmarks/bench_peers.py --rounds 1 --steps 1 --models normal:1   # smoke test

What is measured, for each ``--models TYPE:DEPTH[:WIDTH]`` (pre-activation
``normal``, ``bottleneck``, ``wide``; default ``normal:3``, ResNet-20):

- ``train``: the legacy step at batch 64 (``--train-batch``): softmax
  cross-entropy + 1e-4 L2 over the regularizable parameters (conv and dense
  weights, BN gammas), Nesterov momentum 0.9, BN running statistics updated.
  lasres: ``lasres.train.Trainer`` (C backend); PyTorch: the identical
  network of benchmarks/torch_twin.py with lasres's weights and
  ``legacy_optimizer()``, eager NCHW, eager channels_last, and
  ``torch.compile`` (the model compiled, the optimizer step eager).
- ``infer``: probabilities at batch 100 (``--infer-batch``) with the stored
  BN statistics. lasres: ``lasres.train.recipe.compile_predict`` (C backend); the
  three PyTorch configurations (``torch.compile`` with inductor's weight
  freezing unless ``--no-freezing``); ONNX Runtime and OpenVINO (float32,
  one stream), both on lasres's own export (``lasres.export.to_onnx``),
  each with and without ``fold_bn``.
- ``latency``: the same at batch 1 (milliseconds per image).

Before anything is timed, every peer's probabilities must agree with
lasres's (``--tol``, on the batch-100 and the batch-1 input; the BN
statistics are first set from a batch so that the softmax is not saturated),
and each PyTorch training configuration's first loss (cross-entropy + the
L2 term, batch statistics) must agree with lasres's first training loss. A
peer that fails to build or disagrees is reported as such and left out; the
others go on.

Timing: ``--rounds`` rounds; in each round every measurement (train, infer,
latency) visits every framework in turn (the order rotates from round to
round), and each turn is one untimed call (so that the previous framework's
spinning threads have gone quiet) followed by ``--steps`` timed calls
(``--latency-steps`` at batch 1). The first table gives the best of all
timed calls (as issue 28's table does; ``--summary median`` for the
median), the second table both. ``--threads`` (default 2) is every
framework's thread count: OMP_NUM_THREADS/OPENBLAS_NUM_THREADS/
MKL_NUM_THREADS (set before NumPy is imported; lasres's C code and oneDNN
read it), ``torch.set_num_threads``, ONNX Runtime's
``intra_op_num_threads``, OpenVINO's ``INFERENCE_NUM_THREADS``. On a
shared machine, run it under ``nice`` when nothing else is busy; the JSON
lines keep every figure. ``torch.compile`` needs a C++ compiler (inductor)
and compiles for minutes on deep nets (``--skip torch-compile``).

The GEMM bound: the best float32 matrix-multiply rate of NumPy's BLAS and
of ``torch.mm`` (square sizes ``--gemm-sizes``, same thread count,
measured at the start and in every round; the best counts), against the
network's multiply-adds per image counted from lasres's layer shapes (conv
and dense layers): inference is bounded at GEMM_FLOPs / (2 * MACs) img/s,
training at a third of that (backward ~ 2x forward). Each figure is also
given as a percentage of that bound.

Output: one JSON line per measurement on stdout (and in ``--json``,
default: ``--out`` with ``.jsonl``), then a Markdown table (also written to
``--out``), headed by the CPU (``lscpu`` model name; avx2/avx512f/amx flags).
"""
import argparse
import os
import sys

FRAMEWORKS = ["lasres", "torch", "torch-cl", "torch-compile", "ort", "ort-fold", "ov", "ov-fold"]
LABELS = {"lasres": "lasres (C)", "torch": "PyTorch eager NCHW", "torch-cl": "PyTorch channels_last",
          "torch-compile": "torch.compile", "ort": "ONNX Runtime", "ort-fold": "ONNX Runtime fold_bn",
          "ov": "OpenVINO", "ov-fold": "OpenVINO fold_bn"}
ALIASES = {"pytorch": ["torch", "torch-cl", "torch-compile"], "onnxruntime": ["ort", "ort-fold"],
           "openvino": ["ov", "ov-fold"], "compile": ["torch-compile"],
           "channels_last": ["torch-cl"], "fold": ["ort-fold", "ov-fold"]}
WHATS = ["train", "infer", "latency"]

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--models", nargs="+", default=["normal:3"],
                help="TYPE:DEPTH[:WIDTH], e.g. normal:3 bottleneck:18 wide:2:4")
ap.add_argument("--threads", type=int, default=2, help="threads of every framework")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--steps", type=int, default=3,
                help="timed calls per framework and round (train, batch-100 inference)")
ap.add_argument("--latency-steps", type=int, default=None,
                help="timed batch-1 calls per framework and round (default 10 x --steps)")
ap.add_argument("--train-batch", type=int, default=64)
ap.add_argument("--infer-batch", type=int, default=100)
ap.add_argument("--skip", nargs="+", default=[], metavar="FRAMEWORK",
                help="leave out: " + ", ".join(FRAMEWORKS) + "; groups: "
                     + ", ".join(ALIASES) + "; or a measurement: " + ", ".join(WHATS))
ap.add_argument("--summary", choices=["best", "median"], default="best",
                help="which figure the first table shows (the second shows both)")
ap.add_argument("--no-freezing", action="store_true",
                help="torch.compile inference without inductor's weight freezing")
ap.add_argument("--gemm-sizes", type=int, nargs="+", default=[512, 1024, 2048],
                help="square float32 GEMM sizes for the bound (the best rate counts)")
ap.add_argument("--gemm-reps", type=int, default=5)
ap.add_argument("--tol", type=float, default=1e-4,
                help="max |dp| of any peer's probabilities against lasres's")
ap.add_argument("--out", default="bench_peers.md", help="Markdown table")
ap.add_argument("--json", default=None, help="JSON lines (default: --out with .jsonl)")
args = ap.parse_args()
if args.latency_steps is None:
    args.latency_steps = 10 * args.steps
skip = set()
for s in args.skip:
    if s in ALIASES:
        skip.update(ALIASES[s])
    elif s in FRAMEWORKS or s in WHATS:
        skip.add(s)
    else:
        ap.error(f"--skip {s}: not one of {FRAMEWORKS + list(ALIASES) + WHATS}")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)  # before NumPy (and anything using OpenMP) is imported

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

from _common import calibrate  # noqa: E402

JSON_PATH = args.json or (os.path.splitext(args.out)[0] + ".jsonl")
_json_file = open(JSON_PATH, "w")


def emit(rec):
    line = json.dumps(rec)
    print(line, flush=True)
    _json_file.write(line + "\n")
    _json_file.flush()


def cpu_info():
    """lscpu's model name and which of avx2/avx512f/amx the CPU flags show."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "Model name":
                model = val.strip()
            elif key.strip() == "Flags":
                flags = set(val.split())
    except (OSError, subprocess.CalledProcessError):
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                    elif line.startswith("flags"):
                        flags = set(line.split(":", 1)[1].split())
        except OSError:
            pass
    amx = sorted(f for f in flags if f.startswith("amx"))
    return {"model": model, "cores": os.cpu_count(), "avx2": "avx2" in flags,
            "avx512f": "avx512f" in flags, "amx": bool(amx), "amx_flags": amx,
            "avx512_more": sorted(f for f in flags if f.startswith("avx512") and f != "avx512f")}


def best_time(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def _onednn_sgemm():
    """``f(n, a, b, c)``: ``c = a @ b`` by oneDNN's own ``dnnl_sgemm`` (the
    library lasres's kernels use), or None where it cannot be loaded."""
    import ctypes
    try:
        from lasres.ops.onednn_program import _lib
        fn = _lib().dnnl_sgemm
    except Exception:
        return None
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_char, ctypes.c_char] + [ctypes.c_int64] * 3 + [
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_float, ctypes.c_void_p, ctypes.c_int64]

    def sgemm(n, a, b, c):
        # row-major c = a @ b
        fn(b"N", b"N", n, n, n, 1.0, a.ctypes.data, n, b.ctypes.data, n, 0.0, c.ctypes.data, n)
    return sgemm


class Gemm:
    """The best float32 GEMM rate (FLOP/s) of NumPy's BLAS, torch.mm and oneDNN's sgemm
    over square sizes ``--gemm-sizes``, measured at the start and again in
    every round (so that a busy moment does not lower the bound): ``best``
    holds the highest rate seen per library, ``at`` its size."""

    def __init__(self, torch):
        rng = np.random.RandomState(0)
        self.fns = []  # (library, n, fn)
        for n in args.gemm_sizes:
            a, b = rng.randn(n, n).astype("float32"), rng.randn(n, n).astype("float32")
            c = np.empty((n, n), "float32")
            self.fns.append(("numpy", n, lambda a=a, b=b, c=c: np.matmul(a, b, out=c)))
            if torch is not None:
                ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty(n, n)
                self.fns.append(("torch", n, lambda ta=ta, tb=tb, tc=tc: torch.mm(ta, tb, out=tc)))
            sgemm = _onednn_sgemm()
            if sgemm is not None:   # OpenBLAS may not run this CPU's widest vectors
                self.fns.append(("oneDNN", n, lambda a=a, b=b, c=c, n=n: sgemm(n, a, b, c)))
        self.best = {lib: 0.0 for lib, _, _ in self.fns}
        self.at = {}
        self.measurements = 0

    def measure(self):
        for lib, n, fn in self.fns:
            rate = 2 * n ** 3 / best_time(fn, args.gemm_reps)
            if rate > self.best[lib]:
                self.best[lib], self.at[lib] = rate, n
        self.measurements += 1

    @property
    def rate(self):
        return max(self.best.values())


def parse_model(spec):
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise SystemExit(f"--models {spec}: expected TYPE:DEPTH[:WIDTH]")
    return parts[0], int(parts[1]), (int(parts[2]) if len(parts) == 3 else None)


def count_macs(net):
    """Multiply-adds per image of the conv and dense layers (lasres's shapes)."""
    from lasres.layers import DenseLayer, get_all_layers
    from lasres.layers.conv import BaseConvLayer
    macs = 0
    for layer in get_all_layers(net):
        if isinstance(layer, BaseConvLayer):
            w = layer.get_W_shape()
            macs += int(np.prod(layer.output_shape[1:])) * int(np.prod(w[1:]))
        elif isinstance(layer, DenseLayer):
            macs += int(np.prod(layer.input_shape[layer.num_leading_axes:])) * layer.num_units
    return macs


class Peer:
    """One framework on one model: callables per measurement, or why not."""

    def __init__(self, name):
        self.name = name
        self.fns = {}        # what -> fn()
        self.problem = {}    # what -> reason it is not measured
        self.setup_s = {}


def try_setup(peer, what, make):
    t0 = time.perf_counter()
    try:
        fn = make()
    except Exception as e:  # a peer that cannot run is reported, not fatal
        traceback.print_exc()
        first_line = (str(e).splitlines() or [""])[0][:150]
        peer.problem[what] = f"failed: {type(e).__name__}: {first_line}"
        return None
    peer.setup_s[what] = time.perf_counter() - t0
    peer.fns[what] = fn
    return fn


def bench_model(spec, torch, ort, ov, gemm, tmp):
    import lasres
    from lasres.export import to_onnx
    from lasres.layers import get_all_param_values, set_all_param_values
    from lasres.models import build
    from lasres.train.recipe import compile_predict
    from lasres.train import Trainer

    kind, depth, width = parse_model(spec)
    rng = np.random.RandomState(0)
    xi = rng.randn(args.infer_batch, 3, 32, 32).astype("float32")
    x1 = np.ascontiguousarray(xi[:1])
    xt_np = rng.randn(args.train_batch, 3, 32, 32).astype("float32")
    y_np = rng.randint(0, 10, args.train_batch).astype("int32")
    inputs = {"infer": xi, "latency": x1}

    lasres.random.set_rng(np.random.RandomState(1))
    if width is None:
        from lasres.models.registry import get_spec
        width = get_spec(kind).default_width
    net = build(kind, depth, width)
    calibrate(net, xi[:32])
    values = get_all_param_values(net)
    macs = count_macs(net)
    peers = {n: Peer(n) for n in FRAMEWORKS if n not in skip}
    whats = [w for w in WHATS if w not in skip]

    # ---- lasres (the reference) ----
    t0 = time.perf_counter()
    predict = compile_predict(net, "c")
    ref = {w: np.asarray(predict(inputs[w])) for w in ("infer", "latency")}
    compile_predict_s = time.perf_counter() - t0
    if "lasres" in peers:
        p = peers["lasres"]
        for w in ("infer", "latency"):
            p.fns[w] = (lambda xx=inputs[w]: np.asarray(predict(xx)))
            p.setup_s[w] = compile_predict_s
    lasres_loss = None
    if "train" in whats:
        tnet = build(kind, depth, width)
        set_all_param_values(tnet, values)
        t0 = time.perf_counter()
        trainer = Trainer(tnet, backend="c")
        lasres_loss = float(np.asarray(trainer.train_fn(xt_np, y_np)[0]))  # also the warm-up
        if "lasres" in peers:
            peers["lasres"].fns["train"] = lambda: [np.asarray(o) for o in trainer.train_fn(xt_np, y_np)]
            peers["lasres"].setup_s["train"] = time.perf_counter() - t0

    # ---- PyTorch ----
    if torch is not None and any(n.startswith("torch") for n in peers):
        from torch_twin import PreActResNet
        twin_kind = {"normal": "normal", "bottleneck": "bottleneck", "wide": "wide"}.get(kind)
        if twin_kind is None:
            for n in peers:
                if n.startswith("torch"):
                    peers[n].problem = {w: f"no PyTorch twin of {kind!r}" for w in WHATS}
        else:
            def twin():
                m = PreActResNet(twin_kind, depth, width)
                m.load_lasagne_values(values)
                return m

            xi_t = {w: torch.from_numpy(inputs[w]) for w in ("infer", "latency")}
            xt_t = torch.from_numpy(xt_np)
            y_t = torch.from_numpy(y_np.astype("int64"))
            cl = torch.channels_last
            for n in ("torch", "torch-cl", "torch-compile"):
                if n not in peers:
                    continue
                peer = peers[n]

                def make_infer(w, n=n):
                    m = twin().eval()
                    xx = xi_t[w]
                    if n == "torch-cl":
                        m = m.to(memory_format=cl)
                        xx = xx.contiguous(memory_format=cl)
                    if n == "torch-compile":
                        cm = torch.compile(m, dynamic=False)

                        def fn():
                            with torch.no_grad():
                                return torch.softmax(cm(xx), 1).numpy()
                    else:
                        def fn():
                            with torch.inference_mode():
                                return torch.softmax(m(xx), 1).numpy()
                    fn()  # compiles torch.compile's graph
                    return fn

                def make_train(n=n):
                    m = twin().train()
                    opt = m.legacy_optimizer()
                    xx = xt_t
                    if n == "torch-cl":
                        m = m.to(memory_format=cl)
                        xx = xx.contiguous(memory_format=cl)
                    with torch.no_grad():  # lasres's loss has the L2 term, SGD's weight decay
                        l2 = 1e-4 * float(sum((q.double() ** 2).sum()
                                              for q in opt.param_groups[0]["params"]))
                    fwd = torch.compile(m, dynamic=False) if n == "torch-compile" else m

                    def fn():
                        opt.zero_grad(set_to_none=True)
                        loss = torch.nn.functional.cross_entropy(fwd(xx), y_t)
                        loss.backward()
                        opt.step()
                        return loss.item()
                    # the timed step's first loss (before its update), lasres's objective
                    first = fn() + l2  # (also compiles torch.compile's forward and backward)
                    d = abs(first - lasres_loss)
                    emit({"model": spec, "check": f"first training loss |{n} - lasres|",
                          "value": d, "lasres_loss": lasres_loss})
                    if not d < 1e-4 * max(1.0, abs(lasres_loss)):
                        raise RuntimeError(f"first training loss disagrees: {first} vs "
                                           f"lasres {lasres_loss}")
                    return fn

                for w in ("infer", "latency"):
                    if w in whats:
                        try_setup(peer, w, lambda w=w: make_infer(w))
                if "train" in whats:
                    try_setup(peer, "train", make_train)
    elif torch is None:
        for n in peers:
            if n.startswith("torch"):
                peers[n].problem = {w: "torch not installed" for w in WHATS}

    # ---- ONNX Runtime and OpenVINO on lasres's export ----
    onnx_paths = {}
    for fold in (False, True):
        names = [n for n in (("ort-fold", "ov-fold") if fold else ("ort", "ov")) if n in peers]
        if not names:
            continue
        path = os.path.join(tmp, f"{kind}_{depth}_{width}_{'fold' if fold else 'plain'}.onnx")
        try:
            to_onnx(net, path, fold_bn=fold)
            onnx_paths[fold] = path
        except Exception as e:
            traceback.print_exc()
            for n in names:
                peers[n].problem = {w: f"export failed: {type(e).__name__}: {e}"[:150]
                                    for w in WHATS}
    for n in ("ort", "ort-fold", "ov", "ov-fold"):
        if n not in peers:
            continue
        peer = peers[n]
        peer.problem["train"] = "inference only"
        fold = n.endswith("-fold")
        if fold not in onnx_paths:
            continue
        path = onnx_paths[fold]
        engine = ort if n.startswith("ort") else ov
        if engine is None:
            peer.problem = {w: f"{'onnxruntime' if n.startswith('ort') else 'openvino'} "
                               f"not installed" for w in WHATS}
            continue

        if n.startswith("ort"):
            def make(w, path=path):
                so = ort.SessionOptions()
                so.intra_op_num_threads = args.threads
                so.inter_op_num_threads = 1
                so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                xx = inputs[w]
                return lambda: sess.run(None, {"input": xx})[0]
        else:
            def make(w, path=path):
                core = ov.Core()
                model = core.read_model(path)
                xx = inputs[w]
                model.reshape({model.inputs[0].get_any_name(): list(xx.shape)})  # static shape
                compiled = core.compile_model(model, "CPU", {
                    "INFERENCE_NUM_THREADS": args.threads,
                    "INFERENCE_PRECISION_HINT": "f32",  # not bf16 on AMX/AVX512-BF16 CPUs
                    "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
                req = compiled.create_infer_request()
                return lambda: np.array(req.infer({0: xx})[0])
        for w in ("infer", "latency"):
            if w in whats:
                try_setup(peer, w, lambda w=w, make=make: make(w))

    # ---- agreement of the inference peers with lasres ----
    for n, peer in peers.items():
        for w in ("infer", "latency"):
            if w not in peer.fns or n == "lasres":
                continue
            try:
                got = np.asarray(peer.fns[w]())
                diff = float(np.abs(got.reshape(ref[w].shape) - ref[w]).max())
            except Exception as e:
                traceback.print_exc()
                diff, err = float("nan"), f"{type(e).__name__}: {e}"[:150]
            else:
                err = None
            emit({"model": spec, "check": f"max |p_{n} - p_lasres| ({w})", "value": diff,
                  "max_p": float(ref[w].max())})
            if not diff < args.tol:
                del peer.fns[w]
                peer.problem[w] = err or f"disagrees with lasres (max |dp| = {diff:.2g})"

    # ---- timing: alternating rounds ----
    batch = {"train": args.train_batch, "infer": args.infer_batch, "latency": 1}
    nsteps = {"train": args.steps, "infer": args.steps, "latency": args.latency_steps}
    order = list(peers)
    times = {(n, w): [] for n in peers for w in whats}
    for r in range(args.rounds):
        rot = order[r % len(order):] + order[:r % len(order)]
        gemm.measure()
        for w in whats:
            for n in rot:
                fn = peers[n].fns.get(w)
                if fn is None:
                    continue
                fn()  # untimed: the previous framework's threads go quiet
                for _ in range(nsteps[w]):
                    t0 = time.perf_counter()
                    fn()
                    times[(n, w)].append(time.perf_counter() - t0)
        print(json.dumps({"model": spec, "round": r + 1, "of": args.rounds}), flush=True)

    results = []
    for w in whats:
        for n, peer in peers.items():
            ts = times[(n, w)]
            rec = {"model": spec, "what": w, "framework": n, "label": LABELS[n],
                   "batch": batch[w], "threads": args.threads, "macs_per_img": macs}
            if ts:
                med, best = statistics.median(ts), min(ts)
                rec.update({"img_per_s": round(batch[w] / med, 2),
                            "img_per_s_best": round(batch[w] / best, 2),
                            "ms": round(1000 * med, 3), "ms_best": round(1000 * best, 3),
                            "calls": len(ts), "setup_s": round(peer.setup_s.get(w, 0.0), 2)})
            else:
                rec["problem"] = peer.problem.get(w, "skipped")
            results.append(rec)
    return {"spec": spec, "macs": macs, "results": results}


def fmt_rate(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"


def table(models, cpu, gemm, versions, kernels, cmd):
    gflops = gemm.rate
    key = "img_per_s" if args.summary == "median" else "img_per_s_best"
    lines = [f"# Peers side by side ({datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC)", "",
             f"- CPU: **{cpu['model']}**, {cpu['cores']} cores; AVX2: {'yes' if cpu['avx2'] else 'no'}, "
             f"AVX-512F: {'yes' if cpu['avx512f'] else 'no'}, AMX: "
             + (f"yes ({', '.join(cpu['amx_flags'])})" if cpu["amx"] else "no")
             + (f"; other AVX-512: {', '.join(cpu['avx512_more'])}" if cpu["avx512_more"] else ""),
             f"- threads: {args.threads} for every framework; rounds: {args.rounds}, timed calls "
             f"per round: {args.steps} (batch 1: {args.latency_steps}); each turn starts with "
             "one untimed call",
             "- float32 GEMM (square, n in %s; best of %d x %d calls, one measurement per round): "
             % (args.gemm_sizes, gemm.measurements, args.gemm_reps)
             + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s (n={gemm.at[k]})" for k, v in gemm.best.items())
             + f"; bound = {gflops / 1e9:.0f} GFLOP/s / (2 x MACs/img), training / 3",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items())
             + f"; lasres convolution kernels: {kernels}",
             f"- command: `{cmd}`", ""]
    cols = [n for n in FRAMEWORKS if any(r["framework"] == n for m in models
                                         for r in m["results"])]
    lines.append(f"{args.summary.capitalize()} img/s (batch 1: ms per image), and % of the GEMM "
                 "bound; **bold**: the fastest.")
    lines.append("")
    lines.append("| model | MMAC/img | " + " | ".join(LABELS[c] for c in cols) + " |")
    lines.append("|---|---:|" + "---:|" * len(cols))
    notes = []
    what_label = {"train": "train b%d" % args.train_batch,
                  "infer": "infer b%d" % args.infer_batch, "latency": "latency b1"}
    for m in models:
        bound = gflops / (2 * m["macs"])
        for w in WHATS:
            rows = {r["framework"]: r for r in m["results"] if r["what"] == w}
            if not rows:
                continue
            speeds = {n: r[key] for n, r in rows.items() if key in r}
            top = max(speeds.values()) if speeds else None
            cells = []
            for c in cols:
                r = rows.get(c)
                if r is None:
                    cells.append("skipped")
                elif key not in r:
                    if r["problem"] == "inference only":
                        cells.append("—")
                    elif len(r["problem"]) <= 40:
                        cells.append(r["problem"])
                    else:  # the reason in a note below the table
                        if r["problem"] not in notes:
                            notes.append(r["problem"])
                        short = r["problem"].split(":")[0].split(" (")[0]
                        cells.append(f"{short} [{notes.index(r['problem']) + 1}]")
                else:
                    pct = 100 * r[key] / (bound / 3 if w == "train" else bound)
                    v = (f"{1000 / r[key]:.2f} ms" if w == "latency" else fmt_rate(r[key]))
                    if r[key] == top:
                        v = f"**{v}**"
                    cells.append(f"{v} ({pct:.0f}%)")
            lines.append(f"| {m['spec'].replace(':', ' ')} {what_label[w]} | {m['macs'] / 1e6:.1f} | "
                         + " | ".join(cells) + " |")
    if notes:
        lines += [""] + [f"- [{i}] {t}" for i, t in enumerate(notes, 1)]
    lines += ["", "Every measurement: median and best of all timed calls.", "",
              "| model | what | framework | batch | median img/s | best img/s | median ms/call "
              "| best ms/call | % of bound (median) | x lasres (median) | setup s |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in models:
        bound = gflops / (2 * m["macs"])
        for w in WHATS:
            rows = [r for r in m["results"] if r["what"] == w and "img_per_s" in r]
            ref = next((r["img_per_s"] for r in rows if r["framework"] == "lasres"), None)
            for r in rows:
                b = bound / 3 if w == "train" else bound
                lines.append(
                    f"| {m['spec']} | {w} | {r['label']} | {r['batch']} | {fmt_rate(r['img_per_s'])} "
                    f"| {fmt_rate(r['img_per_s_best'])} | {r['ms']:.2f} | {r['ms_best']:.2f} "
                    f"| {100 * r['img_per_s'] / b:.0f}% "
                    f"| {(r['img_per_s'] / ref if ref else float('nan')):.2f} | {r['setup_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main():
    try:
        import torch
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        if not args.no_freezing:
            import torch._inductor.config as inductor_config
            inductor_config.freezing = True  # used by inference (no-grad) graphs only
    except ImportError:
        torch = None
    try:
        import onnxruntime as ort
    except ImportError:
        ort = None
    try:
        import openvino as ov
    except ImportError:
        ov = None
    import pytensor

    import lasres
    try:
        from lasres.ops.onednn import kernels
        kernels = kernels()
    except Exception:  # noqa: BLE001 (only a label)
        kernels = "?"

    cpu = cpu_info()
    versions = {"python": platform.python_version(), "lasres": lasres.__version__,
                "pytensor": pytensor.__version__, "numpy": np.__version__}
    for name, mod in (("torch", torch), ("onnxruntime", ort), ("openvino", ov)):
        versions[name] = getattr(mod, "__version__", "?") if mod is not None else "not installed"
    emit({"cpu": cpu, "versions": versions, "lasres_kernels": kernels, "threads": args.threads,
          "torch_threads": torch.get_num_threads() if torch is not None else None})
    gemm = Gemm(torch)
    gemm.measure()
    print(json.dumps({"gemm_gflops_now": {k: round(v / 1e9, 1) for k, v in gemm.best.items()}}),
          flush=True)

    tmp = tempfile.mkdtemp(prefix="bench_peers_")
    models = [bench_model(spec, torch, ort, ov, gemm, tmp) for spec in args.models]
    emit({"gemm_gflops": {k: round(v / 1e9, 1) for k, v in gemm.best.items()},
          "gemm_n": gemm.at, "threads": args.threads,
          "measured": f"best of {gemm.measurements} x {args.gemm_reps} calls each"})
    for m in models:  # now that the bound is final
        bound = gemm.rate / (2 * m["macs"])
        for rec in m["results"]:
            if "img_per_s" in rec:
                b = bound / 3 if rec["what"] == "train" else bound
                rec["bound_img_per_s"] = round(b, 1)
                rec["pct_of_bound"] = round(100 * rec["img_per_s"] / b, 1)
                rec["pct_of_bound_best"] = round(100 * rec["img_per_s_best"] / b, 1)
            emit(rec)
    cmd = "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:])
    text = table(models, cpu, gemm, versions, kernels, cmd)
    with open(args.out, "w") as f:
        f.write(text)
    print()
    print(text)
    print(f"(table: {args.out}; JSON lines: {JSON_PATH})")


if __name__ == "__main__":
    main()
