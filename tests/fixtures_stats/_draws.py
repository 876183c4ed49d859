"""The randomised nets of the statistical float32 test, in plain NumPy, shared
by the reference generator (``make_refs.py``, run with the real Lasagne) and
by ``tests/test_float32_statistics.py`` (run with lasres), so that both start
every net from bit-identical float32 numbers.

Each net is a legacy pre-activation ResNet (``CONFIGS``) whose parameters,
in ``get_all_params`` order, are drawn from ``numpy.random.RandomState(seed)``
as the legacy fixtures were randomised (``../shared/fixtures/legacy``):
convolution and dense weights ``N(0, sqrt(2 / fan_in))`` (dense:
``sqrt(1 / fan_in)``), BN ``beta ~ N(0, 0.1)``, ``gamma ~ U(0.5, 1.5)``,
``mean ~ N(0, 0.1)``, ``inv_std ~ U(0.5, 1.5)``, every other bias
``~ N(0, 0.05)``; then a batch of ``BATCH`` images ``SIZE x SIZE`` of
``N(0, 30)`` and random labels. Every value is drawn in float64 and rounded
to float32.
"""
import numpy as np

#: (type, n, k): the families of issue 33, 10 nets (seeds) each
CONFIGS = [("normal", 1, 1), ("normal", 2, 1), ("bottleneck", 1, 1), ("bottleneck", 2, 1),
           ("wide", 1, 2), ("wide", 2, 2)]
SEEDS = list(range(10))
BATCH, SIZE = 8, 8
LR, MOMENTUM, L2 = 0.01, 0.9, 1e-4
STEPS = 3


def net_seed(kind, n, k, seed):
    """One RandomState seed per net (distinct across configurations)."""
    return 1000 * CONFIGS.index((kind, n, k)) + seed


def draw(specs, seed):
    """``specs``: ``(layer class name, param name, shape)`` per parameter in
    ``get_all_params`` order. Returns the float32 parameter values, X, y."""
    rng = np.random.RandomState(seed)
    values = []
    for layer, name, shape in specs:
        if layer.startswith("BatchNorm"):
            v = {"beta": lambda: rng.normal(0, 0.1, shape),
                 "gamma": lambda: rng.uniform(0.5, 1.5, shape),
                 "mean": lambda: rng.normal(0, 0.1, shape),
                 "inv_std": lambda: rng.uniform(0.5, 1.5, shape)}[name]()
        elif name == "W":
            fan_in = shape[0] if len(shape) == 2 else int(np.prod(shape[1:]))
            gain = 1.0 if len(shape) == 2 else 2.0
            v = rng.normal(0, np.sqrt(gain / fan_in), shape)
        else:
            v = rng.normal(0, 0.05, shape)
        values.append(np.asarray(v, dtype=np.float32))
    X = rng.normal(0, 30, (BATCH, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.randint(0, 10, BATCH).astype(np.int32)
    return values, X, y


def net_stats(p0, p64, p32):
    """Per parameter: ``||p32 - p64||``, ``||p64 - p0||`` (the change three
    float64 steps made) and ``||p64||``, all in float64."""
    out = []
    for a0, a64, a32 in zip(p0, p64, p32):
        a0, a64, a32 = (np.asarray(a, dtype=np.float64) for a in (a0, a64, a32))
        out.append((np.linalg.norm(a32 - a64), np.linalg.norm(a64 - a0), np.linalg.norm(a64)))
    return np.array(out)


def checksums(params):
    """Two float64 checksums per parameter array (its sum and a weighted sum),
    to compare a float64 run with another without storing the arrays."""
    out = []
    for a in params:
        a = np.asarray(a, dtype=np.float64).ravel()
        w = np.cos(np.arange(a.size) * 0.7)
        out.append((a.sum(), a @ w, np.abs(a).sum()))
    return np.array(out)
