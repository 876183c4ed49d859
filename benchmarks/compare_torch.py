#!/usr/bin/env python
"""lasres against an identical PyTorch network, side by side in one run.

    python benchmarks/compare_torch.py --model normal --depth 3 --batch 64 --backends c jax
    python benchmarks/compare_torch.py --backends c --kernels onednn numpy --infer-batch 100

Checks first that both compute the same thing (the PyTorch twin gets the
lasres weights; forward probabilities must agree), then times the legacy
training step (cross-entropy + L2, Nesterov momentum, BN statistics) and
inference, alternating frameworks round by round so that both see the same
machine load. Prints one JSON line per measurement and the ratios.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _block(out):
    for o in (out if isinstance(out, (list, tuple)) else [out]):
        np.asarray(o)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="normal")
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--batch", type=int, default=64, help="training batch")
    p.add_argument("--infer-batch", type=int, default=None,
                   help="inference batch (default: --batch)")
    p.add_argument("--kernels", nargs="+", default=[None],
                   help="convolution kernels of the C backend to compare (onednn, numpy); "
                        "default: what lasres.ops.kernels() picks")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="steps per round")
    p.add_argument("--backends", nargs="+", default=["c"])
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--torch-threads", type=int, default=2,
                   help="PyTorch intra-op threads (fixed, whatever OMP_NUM_THREADS says)")
    a = p.parse_args()

    import torch
    torch.set_num_threads(a.torch_threads)
    import lasres  # noqa: F401
    from lasres.layers import get_all_param_values
    from lasres.models import build
    from lasres.train import Trainer
    from torch_twin import PreActResNet

    rng = np.random.RandomState(0)
    x = (rng.randn(a.batch, 3, 32, 32) * 50).astype("float32")
    y = rng.randint(0, 10, a.batch).astype("int32")
    infer_batch = a.infer_batch or a.batch
    xi = (rng.randn(infer_batch, 3, 32, 32) * 50).astype("float32")

    from lasres.ops.onednn import KERNELS_ENV
    saved = os.environ.get(KERNELS_ENV)

    def use_kernels(kind):  # read when the C code is generated; None: as the caller had it
        if kind is not None:
            os.environ[KERNELS_ENV] = kind
        elif saved is None:
            os.environ.pop(KERNELS_ENV, None)
        else:
            os.environ[KERNELS_ENV] = saved

    runners = {}
    for backend in a.backends:
        for kern in (a.kernels if backend == "c" else [None]):
            use_kernels(kern)
            name = f"lasres-{backend}" + (f"-{kern}" if kern else "")
            net = build(a.model, a.depth, a.width)
            t0 = time.perf_counter()
            tr = Trainer(net, backend=backend)
            _block(tr.train_fn(x, y))
            _block(tr.predict_fn(xi))
            runners[name] = (tr, time.perf_counter() - t0)
    use_kernels(None)
    print(json.dumps({"lasres_kernels": lasres.ops.kernels(), "torch": torch.__version__,
                      "torch_threads": torch.get_num_threads(),
                      "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}), flush=True)
    values = get_all_param_values(build(a.model, a.depth, a.width))
    model = PreActResNet(a.model, a.depth, a.width).to(a.device)
    model.load_lasagne_values(values)
    opt = model.legacy_optimizer()
    xt = torch.from_numpy(x).to(a.device)
    xit = torch.from_numpy(xi).to(a.device)
    yt = torch.from_numpy(y.astype("int64")).to(a.device)

    # same computation? (lasres fresh net vs its twin, inference mode)
    check_net = build(a.model, a.depth, a.width)
    from lasres.layers import set_all_param_values
    set_all_param_values(check_net, values)
    use_kernels(a.kernels[0] if a.backends[0] == "c" else None)
    tr0 = Trainer(check_net, backend=a.backends[0])
    use_kernels(None)
    model.eval()
    x_check = x / 50  # unit-scale inputs: with fresh BN statistics the outputs stay unsaturated
    with torch.no_grad():
        pt_prob = torch.softmax(model(torch.from_numpy(x_check).to(a.device)), 1).cpu().numpy()
    ours = np.asarray(tr0.predict_fn(x_check))
    diff = float(np.abs(ours - pt_prob).max())
    print(json.dumps({"check": "max |p_lasres - p_torch|", "value": diff,
                      "max_p": float(ours.max()), "min_p": float(ours.min())}), flush=True)
    if not diff < 1e-4:
        raise SystemExit(f"the two networks disagree (max |dp| = {diff}): not comparing speed")

    def torch_train():
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss.item()

    def torch_infer():
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(xit), 1).cpu().numpy()

    torch_train()
    torch_infer()
    fns = {"torch": (torch_train, torch_infer)}
    for name, (tr, _) in runners.items():
        fns[name] = ((lambda tr=tr: _block(tr.train_fn(x, y))), (lambda tr=tr: _block(tr.predict_fn(xi))))
    times = {(n, w): [] for n in fns for w in ("train", "infer")}
    for _ in range(a.rounds):
        for name, (train, infer) in fns.items():
            for what, fn in (("train", train), ("infer", infer)):
                for _ in range(a.steps):
                    t0 = time.perf_counter()
                    fn()
                    times[(name, what)].append(time.perf_counter() - t0)
    res = {}
    for (name, what), ts in times.items():
        med = statistics.median(ts)
        batch = a.batch if what == "train" else infer_batch
        res[(name, what)] = batch / med
        print(json.dumps({"framework": name, "what": what, "model": a.model, "depth": a.depth,
                          "width": a.width, "batch": batch, "img_per_s": round(batch / med, 1),
                          "ms": round(1000 * med, 1),
                          "torch_threads": torch.get_num_threads()}), flush=True)
    for name in runners:
        for what in ("train", "infer"):
            print(json.dumps({"ratio": f"{name}/torch", "what": what,
                              "value": round(res[(name, what)] / res[("torch", what)], 3)}))


if __name__ == "__main__":
    main()
