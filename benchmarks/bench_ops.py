"""Micro-benchmark of the NumPy convolution and pooling kernels.

Prints one JSON object per line: the op, the layer geometry, and the best and
median wall time in milliseconds over ``--repeat`` runs, for the lasres kernel
and for a naive alternative (``sliding_window_view`` + ``np.tensordot``, what a
straightforward NumPy port would write).  The ``compiled`` rows time a whole
PyTensor function (forward + both gradients of one layer, C backend).

Usage::

    python benchmarks/bench_ops.py [--repeat 20] [--batch 64] [--no-naive]
    python benchmarks/bench_ops.py --only-compiled   # oneDNN vs NumPy kernels per layer

The machine should be otherwise idle: the GEMMs use every core.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

from lasres.ops import conv as conv_ops  # noqa: E402
from lasres.ops import pool as pool_ops  # noqa: E402

# ResNet-20 (CIFAR) layers: (C_in, H, W, C_out, k, stride, pad)
CONV_LAYERS = [
    (16, 32, 32, 16, 3, 1, 1),
    (16, 32, 32, 32, 3, 2, 1),
    (32, 16, 16, 32, 3, 1, 1),
    (64, 8, 8, 64, 3, 1, 1),
    (16, 32, 32, 32, 1, 2, 0),
    (3, 32, 32, 16, 3, 1, 1),
]
# (C, H, W, ws, stride, pad, mode)
POOL_LAYERS = [
    (64, 8, 8, 8, 8, 0, "average_inc_pad"),
    (16, 32, 32, 3, 2, 1, "max"),
    (16, 32, 32, 2, 2, 0, "max"),
]


def _restore_env(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def timeit(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), 1e3 * float(np.median(times))


def naive_forward(x, w, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    k = w.shape[2]
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.tensordot(win, w[:, :, ::-1, ::-1], axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)


def naive_grad_weights(x, gz, k, stride, pad):
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    win = win[:, :, :gz.shape[2], :gz.shape[3]]
    return np.tensordot(gz, win, axes=([0, 2, 3], [0, 2, 3]))[:, :, ::-1, ::-1]


def naive_grad_inputs(gz, w, in_hw, stride, pad):
    n, f, oh, ow = gz.shape
    k = w.shape[2]
    # scatter per kernel offset (the textbook col2im)
    cols = np.tensordot(w[:, :, ::-1, ::-1], gz, axes=([0], [1]))   # C, k, k, N, oh, ow
    h, wd = in_hw
    dxp = np.zeros((n, w.shape[1], h + 2 * pad, wd + 2 * pad), gz.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += \
                cols[:, i, j].transpose(1, 0, 2, 3)
    return dxp[:, :, pad:pad + h, pad:pad + wd]


def bench_conv(batch, repeat, naive):
    rng = np.random.default_rng(0)
    for c, h, wd, f, k, s, p in CONV_LAYERS:
        x = rng.standard_normal((batch, c, h, wd)).astype(np.float32)
        w = rng.standard_normal((f, c, k, k)).astype(np.float32)
        kw = dict(stride=(s, s), pad=(p, p), filter_flip=True)
        y = conv_ops.conv2d_forward_numpy(x, w, None, **kw)
        gz = rng.standard_normal(y.shape).astype(np.float32)
        geom = dict(input=[batch, c, h, wd], filters=[f, c, k, k], stride=s, pad=p,
                    dtype="float32")
        cases = {
            "forward": (lambda: conv_ops.conv2d_forward_numpy(x, w, None, **kw),
                        lambda: naive_forward(x, w, s, p)),
            "grad_inputs": (lambda: conv_ops.conv2d_grad_inputs_numpy(gz, w, (h, wd), **kw),
                            lambda: naive_grad_inputs(gz, w, (h, wd), s, p)),
            "grad_weights": (lambda: conv_ops.conv2d_grad_weights_numpy(x, gz, (k, k), **kw),
                             lambda: naive_grad_weights(x, gz, k, s, p)),
        }
        for name, (ours, theirs) in cases.items():
            row = dict(op="conv2d_" + name, **geom)
            row["lasres_ms"], row["lasres_median_ms"] = timeit(ours, repeat)
            if naive:
                row["naive_ms"], row["naive_median_ms"] = timeit(theirs, max(3, repeat // 4))
                np.testing.assert_allclose(ours(), theirs(), rtol=1e-3, atol=1e-2)
                row["speedup"] = round(row["naive_ms"] / row["lasres_ms"], 2)
            print(json.dumps({k2: (round(v, 3) if isinstance(v, float) else v)
                              for k2, v in row.items()}), flush=True)


def bench_pool(batch, repeat):
    rng = np.random.default_rng(1)
    for c, h, wd, ws, s, p, mode in POOL_LAYERS:
        x = rng.standard_normal((batch, c, h, wd)).astype(np.float32)
        args = ((ws, ws), (s, s), (p, p), mode, True)
        z = pool_ops.pool2d_forward_numpy(x, *args)
        gz = rng.standard_normal(z.shape).astype(np.float32)
        geom = dict(input=[batch, c, h, wd], ws=ws, stride=s, pad=p, mode=mode)
        for name, fn in (("forward", lambda: pool_ops.pool2d_forward_numpy(x, *args)),
                         ("grad", lambda: pool_ops.pool2d_grad_numpy(x, z, gz, *args))):
            best, med = timeit(fn, repeat)
            print(json.dumps(dict(op="pool2d_" + name, **geom, lasres_ms=round(best, 3),
                                  lasres_median_ms=round(med, 3))), flush=True)


def bench_compiled(batch, repeat):
    """Forward + both gradients of each ResNet-20 layer as one compiled
    function (C backend), oneDNN kernels and NumPy kernels interleaved."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode
    from lasres.ops.onednn import KERNELS_ENV, kernels

    kinds = ["numpy"] + (["onednn"] if kernels() == "onednn" else [])
    saved = os.environ.get(KERNELS_ENV)
    rng = np.random.default_rng(2)
    for c, h, wd, f, k, s, p in CONV_LAYERS:
        xt, wt, bt, gt = pt.ftensor4("x"), pt.ftensor4("w"), pt.fvector("b"), pt.ftensor4("g")
        y = conv_ops.conv2d(xt, wt, bt, stride=s, pad=p)
        outs = [y] + pytensor.grad((y * gt).sum(), [xt, wt, bt])
        fns = {}
        for kind in kinds:
            os.environ[KERNELS_ENV] = kind  # read when the C code is generated
            fns[kind] = pytensor.function([xt, wt, bt, gt], outs,
                                          mode=Mode(linker="cvm", optimizer="fast_run"))
        _restore_env(KERNELS_ENV, saved)
        x = rng.standard_normal((batch, c, h, wd)).astype(np.float32)
        w = rng.standard_normal((f, c, k, k)).astype(np.float32)
        b = rng.standard_normal(f).astype(np.float32)
        out_shape = (batch, f, (h + 2 * p - k) // s + 1, (wd + 2 * p - k) // s + 1)
        g = rng.standard_normal(out_shape).astype(np.float32)
        for fn in fns.values():                      # warm-up (primitive creation)
            fn(x, w, b, g)
        res = {kind: [] for kind in kinds}
        for _ in range(repeat):                      # interleaved
            for kind in kinds:
                t0 = time.perf_counter()
                fns[kind](x, w, b, g)
                res[kind].append(1e3 * (time.perf_counter() - t0))
        row = dict(op="compiled_conv_layer_fwd_bwd", input=[batch, c, h, wd],
                   filters=[f, c, k, k], stride=s, pad=p)
        for kind in kinds:
            row[f"{kind}_ms"] = round(min(res[kind]), 3)
        if "onednn" in res:
            row["speedup"] = round(min(res["numpy"]) / min(res["onednn"]), 2)
        print(json.dumps(row), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--no-naive", action="store_true", help="skip the naive alternative")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled function")
    parser.add_argument("--only-compiled", action="store_true",
                        help="only the compiled layers (oneDNN vs NumPy kernels)")
    args = parser.parse_args(argv)
    print(json.dumps(dict(info="machine", cpus=os.cpu_count(), numpy=np.__version__,
                          chunk_bytes=conv_ops.CHUNK_BYTES,
                          loadavg=os.getloadavg()[0] if hasattr(os, "getloadavg") else None)))
    if not args.only_compiled:
        bench_conv(args.batch, args.repeat, not args.no_naive)
        bench_pool(args.batch, args.repeat)
    if not args.no_compiled:
        bench_compiled(args.batch, args.repeat)


if __name__ == "__main__":
    main()
