#!/usr/bin/env python
"""lasres and PyTorch trained side by side on identical inputs (issue 14).

Both frameworks start from the same initial weights (lasres draws them with
``--seed``; the PyTorch twin of benchmarks/torch_twin.py copies them) and see
the same batches in the same order with the same crop offsets and flips: the
batch stream of epoch ``e`` is ``iterate_minibatches(..., rng=RandomState(seed
* 1000 + e))`` over the legacy 90/10 split with the per-pixel mean subtracted.
The recipe is the legacy one (batch 64, CE + 1e-4 L2 over conv/dense weights
and BN gammas, Nesterov 0.9), with the schedule given by ``--schedule``
(default: the legacy schedule compressed to 30 epochs).

Two differences are inherent to PyTorch and stated, not hidden: its BN keeps a
running average of the unbiased variance (Lasagne: of ``inv_std``), and its
Nesterov SGD scales the velocity by the current rate (the same updates while
the rate is constant; a small difference at each rate change).

Each framework's state is saved after every epoch (``OUT/state_<fw>.npz``,
atomic), so a killed run continues with ``--resume``. At the end: test error
of both, ``OUT/parity.json`` and one PNG of both training-loss and
validation-error curves.

    python benchmarks/parity_torch.py --data data --epochs 30 --out runs/parity
    python benchmarks/parity_torch.py --data data --out runs/parity --resume
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

COMPRESSED = "0:0.01,1:0.1,15:0.01,23:0.001"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data")
    p.add_argument("--type", default="normal", choices=("normal", "bottleneck", "wide"))
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--width", type=int, default=1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--schedule", default=COMPRESSED, help="EPOCH:RATE,... (default %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="first N training and N test images")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frameworks", default="lasres,torch")
    p.add_argument("--out", default="runs/parity")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--report", action="store_true",
                   help="only write parity.json and the PNG from the finished runs in --out")
    return p.parse_args(argv)


def batches(data, epoch, seed, batch_size=64):
    from lasres.data.augment import iterate_minibatches
    rng = np.random.RandomState(seed * 1000 + epoch)
    return iterate_minibatches(data.X_train, data.y_train, batch_size, shuffle=True,
                               augment=True, mode="batch", rng=rng)


def evaluate(predict, X, y, batch_size=500):
    probs = np.concatenate([predict(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])
    p = probs[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.maximum(p, 1e-30)))), float(np.mean(probs.argmax(1) != y))


class LasresRun:
    name = "lasres"

    def __init__(self, args, init_values):
        import lasres
        from lasres.train import Trainer
        self.net = lasres.models.build(args.type, args.depth, args.width)
        lasres.layers.set_all_param_values(self.net, init_values)
        self.trainer = Trainer(self.net)

    def set_lr(self, lr):
        self.trainer.learning_rate.set_value(np.float32(lr))

    def step(self, xb, yb):
        loss, _ = self.trainer.train_fn(xb, yb.astype(np.int32))
        return float(loss)

    def predict(self, X):
        return np.asarray(self.trainer.predict_fn(X))

    def state(self):
        import lasres
        return lasres.layers.get_all_param_values(self.net) + self.trainer.optimizer_state()

    def load_state(self, values):
        import lasres
        n = len(lasres.layers.get_all_params(self.net))
        lasres.layers.set_all_param_values(self.net, values[:n])
        self.trainer.set_optimizer_state(values[n:])


class TorchRun:
    name = "torch"

    def __init__(self, args, init_values):
        import torch
        from torch_twin import PreActResNet
        torch.set_num_threads(args.threads)
        self.torch = torch
        self.model = PreActResNet(args.type, args.depth, args.width)
        self.model.load_lasagne_values(init_values)
        self.opt = self.model.legacy_optimizer()

    def set_lr(self, lr):
        for g in self.opt.param_groups:
            g["lr"] = lr

    def step(self, xb, yb):
        torch = self.torch
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(torch.from_numpy(xb))
        ce = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yb.astype(np.int64)))
        ce.backward()
        self.opt.step()
        # the reported loss includes the L2 term, as lasres's does
        with torch.no_grad():
            l2 = sum(float((g.detach() ** 2).sum()) for grp in self.opt.param_groups[:1] for g in grp["params"])
        return ce.item() + 1e-4 * l2

    def predict(self, X):
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            return torch.softmax(self.model(torch.from_numpy(X)), 1).numpy()

    def state(self):
        sd = self.model.state_dict()
        opt = self.opt.state_dict()["state"]
        vel = [opt[i]["momentum_buffer"].numpy() for i in sorted(opt)]
        return [v.numpy() for v in sd.values()] + vel

    def load_state(self, values):
        torch = self.torch
        sd = self.model.state_dict()
        keys = list(sd)
        self.model.load_state_dict({k: torch.from_numpy(np.asarray(v)).to(sd[k].dtype)
                                    for k, v in zip(keys, values[:len(keys)])})
        vel = values[len(keys):]
        params = [p for g in self.opt.param_groups for p in g["params"]]
        for p, v in zip(params, vel):
            self.opt.state[p]["momentum_buffer"] = torch.from_numpy(np.asarray(v)).clone()


def _save_state(path, values, history):
    from lasres.io.atomic import atomic_path
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, *values, history=json.dumps(history))


def _load_state(path):
    with np.load(path, allow_pickle=False) as z:
        history = json.loads(str(z["history"]))
        values = [z[f"arr_{i}"] for i in range(len(z.files) - 1)]
    return values, history


def run_framework(run, data, args, schedule, out):
    from lasres.train import learning_rate_at
    from tqdm import tqdm
    path = os.path.join(out, f"state_{run.name}.npz")
    history = {"epoch": [], "train_loss": [], "val_loss": [], "val_error": [], "seconds": []}
    if args.resume and os.path.exists(path):
        values, history = _load_state(path)
        run.load_state(values)
    for epoch in range(len(history["epoch"]), args.epochs):
        run.set_lr(learning_rate_at(schedule, epoch))
        t0 = time.perf_counter()
        losses = []
        n = (len(data.X_train) + 63) // 64
        for xb, yb in tqdm(batches(data, epoch, args.seed), total=n, leave=False,
                           desc=f"{run.name} epoch {epoch + 1}/{args.epochs}"):
            losses.append(run.step(xb, yb))
        seconds = time.perf_counter() - t0
        if not np.isfinite(losses[-1]):
            raise SystemExit(f"error: {run.name} diverged at epoch {epoch}")
        vl, ve = evaluate(run.predict, data.X_valid, data.y_valid)
        for k, v in (("epoch", epoch), ("train_loss", float(np.mean(losses))), ("val_loss", vl),
                     ("val_error", ve), ("seconds", seconds)):
            history[k].append(v)
        print(f"{run.name:6s} epoch {epoch + 1:3d}  loss {history['train_loss'][-1]:.4f}  "
              f"val err {100 * ve:5.2f}%  {seconds:6.1f} s", flush=True)
        _save_state(path, run.state(), history)
    _, te = evaluate(run.predict, data.X_test, data.y_test)
    history["test_error"] = te
    _write_json(os.path.join(out, f"history_{run.name}.json"), history)
    return history


def _write_json(path, obj):
    from lasres.io.atomic import atomic_path
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=1)


def plot(histories, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from lasres.io.atomic import atomic_path
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, h in histories.items():
        a1.plot(h["epoch"], h["train_loss"], label=name)
        a2.plot(h["epoch"], [100 * e for e in h["val_error"]], label=name)
    a1.set_xlabel("epoch"), a1.set_ylabel("training loss (CE + L2)")
    a2.set_xlabel("epoch"), a2.set_ylabel("validation error (%)")
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    import lasres
    from lasres.data import prepare_cifar10
    from lasres.train import parse_schedule
    schedule = parse_schedule(args.schedule)
    os.makedirs(args.out, exist_ok=True)
    data = prepare_cifar10(args.data, limit=args.limit, seed=args.seed,
                           pixel_mean_path=os.path.join(args.out, "pixel_mean.npy"))
    lasres.random.set_rng(np.random.RandomState(args.seed))
    init = lasres.layers.get_all_param_values(lasres.models.build(args.type, args.depth,
                                                                  args.width))
    runs = {"lasres": LasresRun, "torch": TorchRun}
    if not args.report:
        for name in args.frameworks.split(","):
            run_framework(runs[name](args, init), data, args, schedule, args.out)
    # The report covers every framework that has finished in --out, so two
    # processes (one per framework, e.g. one thread each on a 2-core machine)
    # can share one --out and the last to finish writes the joint report.
    histories = {}
    for name in runs:
        path = os.path.join(args.out, f"history_{name}.json")
        if os.path.exists(path):
            with open(path) as f:
                histories[name] = json.load(f)
    if not histories:
        raise SystemExit(f"error: no finished run in {args.out}")
    summary = {name: {"test_error": h["test_error"], "train_seconds": float(np.sum(h["seconds"])),
                      "final_val_error": h["val_error"][-1]} for name, h in histories.items()}
    summary["config"] = vars(args)
    _write_json(os.path.join(args.out, "parity.json"), {"summary": summary, "histories": histories})
    title = (f"{args.type} {args.depth} {args.width}: {len(data.X_train)} training images, "
             f"{args.epochs} epochs, identical batches")
    plot(histories, os.path.join(args.out, "parity.png"), title)
    for name in histories:
        s = summary[name]
        print(f"{name:6s} test error {100 * s['test_error']:.2f}%  training time "
              f"{s['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
