"""Run the legacy training step three times on a randomised bottleneck net
(``python _float32_step.py N SEED``) or on a legacy fixture's net
(``python _float32_step.py fixture NAME``) and print the three losses as JSON;
or save every layer's training-mode output on a fixture's net and batch
(``python _float32_step.py layers NAME OUT.npz``).

``test_float32_precision.py`` runs the ``layers`` mode, in a fresh process per
precision, since ``floatX`` is fixed when lasres is imported
(``PYTENSOR_FLAGS=floatX=...``); the loss modes are for checks by hand (the
training steps are tested statistically in ``test_float32_statistics.py``).

The network is the seed's bottleneck model as the legacy fixtures build it
(``test_legacy_fixtures.seed_network``), with the fixtures' randomisation
(``../shared/fixtures/legacy/README.md``): convolution and dense weights as
Lasagne's HeNormal draws them, BN ``beta ~ N(0, 0.1)``,
``gamma ~ U(0.5, 1.5)``, ``mean ~ N(0, 0.1)``, ``inv_std ~ U(0.5, 1.5)``,
every other bias ``~ N(0, 0.05)``; the batch is 16 images ``~ N(0, 30)``
with random labels. (The fixtures also moved each BN's stored statistics
near its batch statistics; the training-mode losses never read the stored
statistics, so that step is left out.) Every value is drawn in float32 and
cast to ``floatX``, so both precisions start from the same numbers.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def randomised_net(n, seed):
    """Bottleneck net of depth multiplier ``n`` with randomised parameters,
    and a batch ``(X, y)``; every array is drawn in float32."""
    import pytensor
    import pytensor.tensor as T

    import lasres
    from lasres.layers import BatchNormLayer, get_all_layers
    from test_legacy_fixtures import seed_network

    floatX = pytensor.config.floatX
    lasres.random.set_rng(np.random.RandomState(seed))  # HeNormal draws
    net, _ = seed_network("bottleneck", n, 1, T.tensor4("inputs"))
    rng = np.random.RandomState(seed + 1)
    draws = {"beta": lambda s: rng.normal(0, 0.1, s), "gamma": lambda s: rng.uniform(0.5, 1.5, s),
             "mean": lambda s: rng.normal(0, 0.1, s), "inv_std": lambda s: rng.uniform(0.5, 1.5, s)}
    for layer in get_all_layers(net):
        for p in layer.get_params():
            name = p.name.split(".")[-1]
            value = p.get_value().astype(np.float32)  # the HeNormal draw, as float32
            if isinstance(layer, BatchNormLayer):
                value = draws[name](value.shape)
            elif name == "b":
                value = rng.normal(0, 0.05, value.shape)
            p.set_value(np.asarray(value, dtype=np.float32).astype(floatX))
    X = rng.normal(0, 30, (16, 3, 32, 32)).astype(np.float32).astype(floatX)
    y = rng.randint(0, 10, 16).astype(np.int32)
    return net, X, y


def three_losses(n, seed):
    """The losses of three legacy training steps (lasres.train.Trainer:
    cross-entropy + 1e-4 L2, Nesterov momentum 0.9 at rate 0.01, BN running
    averages) on the C backend."""
    from lasres.train import Trainer

    net, X, y = randomised_net(n, seed)
    trainer = Trainer(net, l2=1e-4, momentum=0.9, learning_rate=0.01, backend="c")
    return [float(trainer.train_fn(X, y)[0]) for _ in range(3)]


def fixture_losses(name):
    """The losses of three legacy training steps on the legacy fixture
    ``name`` (``../shared/fixtures/legacy``): the network, parameters, batch
    and learning rate with which the real Lasagne measured its own
    float32-vs-float64 spread (``<name>_tol.json``)."""
    import pathlib

    import pytensor
    import pytensor.tensor as T

    from lasres.layers import set_all_param_values
    from lasres.train import Trainer
    from lasres.weights import load_pklz
    from test_legacy_fixtures import seed_network

    shared = os.environ.get("LASRES_SHARED",
                            pathlib.Path(__file__).resolve().parents[2] / "shared")
    legacy = pathlib.Path(shared) / "fixtures" / "legacy"
    with open(legacy / f"{name}.json") as f:
        cfg = json.load(f)["config"]
    net, _ = seed_network(cfg["type"], cfg["n"], cfg["k"], T.tensor4("inputs"))
    set_all_param_values(net, load_pklz(legacy / f"{name}.pklz"))
    io, train = np.load(legacy / f"{name}_io.npz"), np.load(legacy / f"{name}_train.npz")
    trainer = Trainer(net, l2=1e-4, momentum=0.9, learning_rate=float(train["lr"]), backend="c")
    X = io["X"].astype(pytensor.config.floatX)
    return [float(trainer.train_fn(X, io["y"])[0]) for _ in range(3)]


def fixture_layer_outputs(name, path):
    """Every layer's training-mode output on the legacy fixture ``name``'s
    network, parameters and batch, saved to ``path`` (``.npz``, float64
    copies, in layer order; ``names`` the layer classes)."""
    import pathlib

    import pytensor
    import pytensor.tensor as T

    from lasres.layers import get_all_layers, get_output, set_all_param_values
    from lasres.weights import load_pklz
    from test_legacy_fixtures import seed_network

    shared = os.environ.get("LASRES_SHARED",
                            pathlib.Path(__file__).resolve().parents[2] / "shared")
    legacy = pathlib.Path(shared) / "fixtures" / "legacy"
    with open(legacy / f"{name}.json") as f:
        cfg = json.load(f)["config"]
    X = T.tensor4("inputs")
    net, _ = seed_network(cfg["type"], cfg["n"], cfg["k"], X)
    set_all_param_values(net, load_pklz(legacy / f"{name}.pklz"))
    layers = get_all_layers(net)[1:]
    fn = pytensor.function([X], get_output(layers, deterministic=False))
    io = np.load(legacy / f"{name}_io.npz")
    values = fn(io["X"].astype(pytensor.config.floatX))
    np.savez(path, *[np.asarray(v, dtype=np.float64) for v in values],
             names=np.array([type(layer).__name__ for layer in layers]))


if __name__ == "__main__":
    import pytensor

    if sys.argv[1] == "layers":
        fixture_layer_outputs(sys.argv[2], sys.argv[3])
        losses = []
    elif sys.argv[1] == "fixture":
        losses = fixture_losses(sys.argv[2])
    else:
        losses = three_losses(int(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps({"floatX": pytensor.config.floatX, "losses": losses}))
