#!/usr/bin/env python
"""A hand-written pure-JAX train step of the legacy pre-activation ResNets,
and a side-by-side timing against :class:`lasres.train.jax_trainer.JaxTrainer`.

    python benchmarks/jax_handwritten.py --model normal --depth 3 --batch 64
    python benchmarks/jax_handwritten.py --compare --model normal --depth 18 --batch 128
    python benchmarks/jax_handwritten.py --compare --precision bf16 --devices 4 \\
        --trainers jax,c

The hand-written step uses only ``jax.numpy``/``jax.lax`` (no PyTensor) and
the layers of :mod:`lasres.models.preact` in the same order: 3x3 stem conv +
BN + ReLU; pre-activation blocks (``normal``: two 3x3 convs; ``bottleneck``:
1x1, 3x3, 1x1; ``wide``: two 3x3 convs, stages of n, n+2, n+2 blocks) with
bias-free 1x1 projection shortcuts where the shape changes; BN + ReLU, global
average pool, dense softmax. Convolutions correlate (NCHW, OIHW, padding
``k // 2``). BN uses the batch statistics (biased variance, epsilon 1e-4) and
updates running averages of the mean and ``inv_std`` with alpha 0.1, as
Lasagne's BatchNormLayer. Loss: mean cross-entropy + 1e-4 * L2 over the conv
and dense weights and the BN gammas; Nesterov momentum 0.9. Gradients come
from :func:`jax.grad`. ``--precision bf16``: float32 master weights, the
convolutions and the dense layer in bfloat16, BN statistics, softmax and loss
in float32 (the policy of ``JaxTrainer(precision='bf16')``).

The parameters are a flat list in ``lasres.layers.get_all_params`` order,
so ``--compare`` starts both implementations from the very same weights (it
checks that every shape agrees) and reports their first-step losses besides
the timings. Timings alternate between the implementations round by round,
on the same batch; each round runs ``--steps`` steps and waits for the last.
One JSON line per round and a summary line (medians, ratio).
"""
import argparse
import json
import platform
import statistics
import time

import numpy as np

TRAINABLE = ("W", "b", "beta", "gamma")
REGULARIZABLE = ("W", "gamma")


# --- the network ---------------------------------------------------------------

class Apply(object):
    """Layer functions consuming a flat parameter list in order.

    Parameters
    ----------
    values : list of jax.Array
        All parameters (trainable and BN statistics) in lasres order.
    kinds : list of str
        ``'W', 'b', 'beta', 'gamma', 'mean', 'inv_std'`` per value.
    train : bool
        Batch statistics (and running-average updates) or stored statistics.
    compute_dtype : dtype
        Dtype of the convolutions and the dense layer.
    """

    def __init__(self, values, kinds, train=True, compute_dtype=None, alpha=0.1, eps=1e-4):
        import jax.numpy as jnp
        self.values, self.kinds, self.train = values, kinds, train
        self.cdt = compute_dtype or jnp.float32
        self.alpha, self.eps = alpha, eps
        self.pos = 0
        self.new_stats = {}  # index -> updated running average

    def take(self, kind, shape=None, init=None):
        assert self.kinds[self.pos] == kind, (self.pos, self.kinds[self.pos], kind)
        self.pos += 1
        return self.values[self.pos - 1]

    def conv(self, x, filters, size, stride=1, bias=False, init="he"):
        import jax
        c = x.shape[1]
        W = self.take("W", (filters, c, size, size), init)
        p = size // 2
        y = jax.lax.conv_general_dilated(
            x.astype(self.cdt), W.astype(self.cdt), (stride, stride), [(p, p), (p, p)],
            dimension_numbers=("NCHW", "OIHW", "NCHW"))
        if bias:
            y = y + self.take("b", (filters,)).astype(y.dtype)[None, :, None, None]
        return y

    def bn(self, x):
        import jax
        import jax.numpy as jnp
        c = x.shape[1]
        beta = self.take("beta", (c,))
        gamma = self.take("gamma", (c,))
        i_mean = self.pos
        mean = self.take("mean", (c,))
        inv_std = self.take("inv_std", (c,))
        x32 = x.astype(jnp.float32)
        if self.train:
            m = jnp.mean(x32, axis=(0, 2, 3))
            centred = x32 - m[None, :, None, None]
            var = jnp.mean(jnp.square(centred), axis=(0, 2, 3))
            inv = 1.0 / jnp.sqrt(var + self.eps)
            a = self.alpha
            self.new_stats[i_mean] = (1 - a) * mean + a * jax.lax.stop_gradient(m)
            self.new_stats[i_mean + 1] = (1 - a) * inv_std + a * jax.lax.stop_gradient(inv)
        else:
            centred, inv = x32 - mean[None, :, None, None], inv_std
        y = centred * (gamma * inv)[None, :, None, None] + beta[None, :, None, None]
        return y.astype(x.dtype)

    def relu(self, x):
        import jax.numpy as jnp
        return jnp.maximum(x, 0)

    def bn_relu(self, x):
        return self.relu(self.bn(x))

    def dense(self, x, units):
        import jax.numpy as jnp
        W = self.take("W", (x.shape[1], units), "he1")
        b = self.take("b", (units,))
        y = jnp.dot(x.astype(self.cdt), W.astype(self.cdt))
        return y.astype(jnp.float32) + b


class Init(Apply):
    """Creates the parameters (Lasagne's initialisers) while tracing the
    network abstractly; ``values``/``kinds`` hold them afterwards."""

    def __init__(self, seed=0):
        import jax.numpy as jnp
        super().__init__([], [], train=True, compute_dtype=jnp.float32)
        self.rng = np.random.RandomState(seed)
        self.host = []

    def take(self, kind, shape=None, init=None):
        if kind == "W":
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            if init == "glorot":  # Lasagne's GlorotUniform of a conv
                fan_out = shape[0] * int(np.prod(shape[2:]))
                lim = np.sqrt(6.0 / (fan_in + fan_out))
                v = self.rng.uniform(-lim, lim, shape)
            else:  # HeNormal(gain='relu') for convs, HeNormal() for the dense layer
                gain = 1.0 if init == "he1" else np.sqrt(2)
                v = self.rng.normal(0, gain * np.sqrt(1.0 / fan_in), shape)
        elif kind in ("gamma", "inv_std"):
            v = np.ones(shape)
        else:
            v = np.zeros(shape)
        self.host.append(v.astype(np.float32))
        self.kinds.append(kind)
        self.values.append(v.astype(np.float32))
        self.pos += 1
        return self.values[-1]


def preact_forward(P, x, model, n, k=1, num_classes=10):
    """Logits of the pre-activation ResNet ``model`` (``normal``,
    ``bottleneck``, ``wide``), consuming ``P``'s parameters in lasres order."""
    l = P.bn_relu(P.conv(x, 16, 3))

    def normal_block(l, increase=False, first=False, filters=None):
        c_in = l.shape[1]
        stride, out = (2, 2 * c_in) if increase else (1, c_in)
        pre = l if first else P.bn_relu(l)
        c1 = P.bn_relu(P.conv(pre, out, 3, stride))
        c2 = P.conv(c1, out, 3, 1, bias=True)
        shortcut = P.conv(pre, out, 1, 2, init="glorot") if increase else l
        return c2 + shortcut

    def bottleneck_block(l, increase=False, first=False, filters=None):
        c_in = l.shape[1]
        stride, out = (2, 2 * c_in) if increase else (1, c_in)
        if first:
            out *= 4
        pre = l if first else P.bn_relu(l)
        c1 = P.bn_relu(P.conv(pre, out // 4, 1))
        c2 = P.bn_relu(P.conv(c1, out // 4, 3, stride))
        c3 = P.conv(c2, out, 1, 1, bias=True)
        if increase or first:
            shortcut = P.conv(pre, out, 1, stride, init="glorot")
        else:
            shortcut = l
        return c3 + shortcut

    def wide_block(l, increase=False, first=False, filters=None):
        stride = 2 if increase else 1
        pre = l if first else P.bn_relu(l)
        c1 = P.bn_relu(P.conv(pre, filters, 3, stride))
        c2 = P.conv(c1, filters, 3, 1, bias=True)
        if increase or first:
            shortcut = P.conv(pre, filters, 1, stride, init="glorot")
        else:
            shortcut = l
        return c2 + shortcut

    if model in ("normal", "bottleneck"):
        block = normal_block if model == "normal" else bottleneck_block
        l = block(l, first=True)
        for _ in range(1, n):
            l = block(l)
        for _stage in range(2):
            l = block(l, increase=True)
            for _ in range(1, n):
                l = block(l)
    elif model == "wide":
        widths = {1: 16 * k, 2: 32 * k, 3: 64 * k}
        l = wide_block(l, first=True, filters=widths[1])
        for _ in range(1, n):
            l = wide_block(l, filters=widths[1])
        for stage in (2, 3):
            l = wide_block(l, increase=True, filters=widths[stage])
            for _ in range(1, n + 2):
                l = wide_block(l, filters=widths[stage])
    else:
        raise SystemExit(f"unknown model {model!r}: normal, bottleneck or wide")
    l = P.bn_relu(l)
    import jax.numpy as jnp
    l = jnp.mean(l.astype(jnp.float32), axis=(2, 3))
    return P.dense(l, num_classes)


def init_params(model, n, k=1, num_classes=10, seed=0, image=(3, 32, 32)):
    """``(values, kinds)``: NumPy float32 parameters in lasres order."""
    import jax
    P = Init(seed)
    jax.eval_shape(lambda x: preact_forward(P, x, model, n, k, num_classes),
                   jax.ShapeDtypeStruct((2,) + tuple(image), np.float32))
    return P.host, P.kinds


class HandwrittenTrainer(object):
    """The hand-written step, jitted, with the state on the device(s).

    ``train_fn(X, y) -> (loss, acc)``; state as in JaxTrainer (donated,
    replicated; batch sharded over ``devices``)."""

    def __init__(self, model, n, k, values, kinds, lr=0.1, momentum=0.9, l2=1e-4,
                 devices=None, precision="float32", num_classes=10):
        import jax
        import jax.numpy as jnp
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as Pspec

        self.kinds = kinds
        self.t_idx = [i for i, kd in enumerate(kinds) if kd in TRAINABLE]
        self.s_idx = [i for i, kd in enumerate(kinds) if kd not in TRAINABLE]
        reg = [j for j, i in enumerate(self.t_idx) if kinds[i] in REGULARIZABLE]
        cdt = jnp.bfloat16 if precision == "bf16" else jnp.float32
        ndev = devices or 1
        mesh = Mesh(np.array(jax.devices()[:ndev]), ("batch",))
        self.repl, self.batch = NamedSharding(mesh, Pspec()), NamedSharding(mesh, Pspec("batch"))
        self.lr = lr
        t_idx, s_idx, n_all = self.t_idx, self.s_idx, len(kinds)

        def loss_fn(tv, sv, X, y):
            values = [None] * n_all
            for i, v in zip(t_idx, tv):
                values[i] = v
            for i, v in zip(s_idx, sv):
                values[i] = v
            P = Apply(values, kinds, train=True, compute_dtype=cdt)
            logits = preact_forward(P, X.astype(cdt), model, n, k, num_classes)
            logp = jax.nn.log_softmax(logits.astype(jnp.float32))
            ce = -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))
            penalty = sum(jnp.sum(jnp.square(tv[j])) for j in reg)
            acc = jnp.mean((jnp.argmax(logits, axis=1) == y).astype(jnp.float32))
            new_sv = [P.new_stats.get(i, v) for i, v in zip(s_idx, sv)]
            return ce + l2 * penalty, (acc, new_sv)

        def step(state, X, y, lr):
            tv, vel, sv = state
            (loss, (acc, new_sv)), g = jax.value_and_grad(loss_fn, has_aux=True)(tv, sv, X, y)
            new_tv, new_vel = [], []
            for p, gi, v in zip(tv, g, vel):
                stp = p - lr * gi
                x = momentum * v + stp - p
                new_vel.append(x)
                new_tv.append(momentum * x + stp)
            return (new_tv, new_vel, new_sv), loss, acc

        vals = [np.asarray(v, np.float32) for v in values]
        state = ([vals[i] for i in t_idx], [np.zeros_like(vals[i]) for i in t_idx],
                 [vals[i] for i in s_idx])
        self.state = jax.device_put(state, self.repl)
        shard = jax.tree_util.tree_map(lambda _: self.repl, self.state)
        self._step = jax.jit(step, donate_argnums=(0,),
                             in_shardings=(shard, self.batch, self.batch, self.repl),
                             out_shardings=(shard, self.repl, self.repl))
        self.compile_seconds = None

    def train_fn(self, X, y):
        if self.compile_seconds is None:
            t0 = time.perf_counter()
            self._step = self._step.lower(self.state, X, y, np.float32(self.lr)).compile()
            self.compile_seconds = time.perf_counter() - t0
        self.state, loss, acc = self._step(self.state, X, y, np.float32(self.lr))
        return loss, acc

    def block(self):
        import jax
        jax.block_until_ready(self.state)


# --- timing --------------------------------------------------------------------

def _time_round(impl, X, y, steps):
    t0 = time.perf_counter()
    for _ in range(steps):
        loss, _ = impl["step"](X, y)
    impl["block"]()
    last = float(np.asarray(loss))
    return time.perf_counter() - t0, last


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="normal", choices=("normal", "bottleneck", "wide"))
    p.add_argument("--depth", type=int, default=3, help="n (blocks per stage)")
    p.add_argument("--width", type=int, default=1, help="k (wide only)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--precision", default="float32", choices=("float32", "bf16"))
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--compare", action="store_true",
                   help="also time lasres's JaxTrainer on the same net, weights and batch")
    p.add_argument("--trainers", default="",
                   help="with --compare: also time lasres Trainer backends, e.g. 'jax,c'")
    p.add_argument("--feed", default="device", choices=("device", "host"),
                   help="batch already on the device(s), or a NumPy array each step")
    a = p.parse_args()

    import jax

    k = a.width if a.model == "wide" else 1
    base = {"model": a.model, "depth": a.depth, "width": k, "batch": a.batch,
            "precision": a.precision, "devices": a.devices or 1, "feed": a.feed,
            "device": f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
            "host": platform.node()}
    rng = np.random.RandomState(0)
    X = rng.randn(a.batch, 3, 32, 32).astype("float32")
    y = rng.randint(0, 10, a.batch).astype("int32")

    net = None
    if a.compare:
        import lasres  # noqa: F401
        from lasres.layers import get_all_param_values
        from lasres.models import build
        net = build(a.model, a.depth, k)
        values = get_all_param_values(net)
        _, kinds = init_params(a.model, a.depth, k)
        if [v.shape for v in values] != [s.shape for s in init_params(a.model, a.depth, k)[0]]:
            raise SystemExit("the hand-written net and lasres's differ in their parameters")
    else:
        values, kinds = init_params(a.model, a.depth, k)

    impls = {}
    hw = HandwrittenTrainer(a.model, a.depth, k, values, kinds, lr=a.lr, devices=a.devices,
                            precision=a.precision)
    impls["handwritten"] = dict(step=hw.train_fn, block=hw.block, trainer=hw)
    if a.compare:
        from lasres.train.jax_trainer import JaxTrainer
        from lasres.layers import set_all_param_values
        from lasres.models import build
        jt = JaxTrainer(net, learning_rate=a.lr, devices=a.devices, precision=a.precision)
        impls["jaxtrainer"] = dict(step=jt.train_fn, block=lambda: jax.block_until_ready(
            jt.state()), trainer=jt)
        for backend in filter(None, a.trainers.split(",")):
            from lasres.train import Trainer
            tnet = build(a.model, a.depth, k)
            set_all_param_values(tnet, values)
            tr = Trainer(tnet, learning_rate=a.lr, backend=backend)
            impls[f"trainer_{backend}"] = dict(step=tr.train_fn, block=lambda: None,
                                               trainer=tr, host=True)

    if a.feed == "device":
        Xd = jax.device_put(X, hw.batch)
        yd = jax.device_put(y, hw.batch)
    first = {}
    for name, impl in impls.items():
        use_host = a.feed == "host" or impl.get("host")
        Xi, yi = (X, y) if use_host else (Xd, yd)
        impl["args"] = (Xi, yi)
        t0 = time.perf_counter()
        first[name] = float(np.asarray(impl["step"](Xi, yi)[0]))
        first_s = time.perf_counter() - t0
        for _ in range(a.warmup):
            impl["step"](Xi, yi)
        impl["block"]()
        print(json.dumps(dict(base, impl=name, first_step_s=round(first_s, 2),
                              first_loss=first[name])), flush=True)

    times = {name: [] for name in impls}
    for r in range(a.rounds):
        order = list(impls) if r % 2 == 0 else list(impls)[::-1]
        for name in order:
            dt, last = _time_round(impls[name], *impls[name]["args"], a.steps)
            ips = a.steps * a.batch / dt
            times[name].append(ips)
            print(json.dumps(dict(base, impl=name, round=r, img_per_s=round(ips, 1),
                                  step_ms=round(1000 * dt / a.steps, 2), loss=last)),
                  flush=True)

    summary = dict(base, summary=True)
    for name, v in times.items():
        summary[f"{name}_img_per_s"] = round(statistics.median(v), 1)
    if a.compare:
        summary["ratio_jaxtrainer_over_handwritten"] = round(
            statistics.median(times["jaxtrainer"]) / statistics.median(times["handwritten"]), 3)
        summary["first_loss_rel_diff"] = abs(first["jaxtrainer"] - first["handwritten"]) / \
            abs(first["handwritten"])
        summary["jaxtrainer_compile_s"] = {kk: round(vv, 2) for kk, vv in
                                           impls["jaxtrainer"]["trainer"].compile_seconds.items()}
    summary["handwritten_compile_s"] = round(hw.compile_seconds, 2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
