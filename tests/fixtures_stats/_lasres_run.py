"""Run the nets of ``_draws`` with lasres: ``python _lasres_run.py OUT_DIR [F64_DIR]``.

In this process's floatX (``PYTENSOR_FLAGS=floatX=...``; lasres fixes it at
import) and kernels (``LASRES_KERNELS``), build each configuration as the
seed's ``models.py`` did (``test_legacy_fixtures.seed_network``), compile the
legacy training step once (C backend), and for every seed set the drawn
parameters, zero the velocities and run three steps. Writes
``OUT_DIR/summary.npz``: per net its losses, and in float64 the checksums of
the final parameters (whose arrays go to ``OUT_DIR/<net>.npz`` for the
float32 runs), in float32 ``_draws.net_stats`` against ``F64_DIR``'s arrays.
Run by ``tests/test_float32_statistics.py``.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
import _draws  # noqa: E402


def main(out_dir, f64_dir=None):
    import pytensor
    import pytensor.tensor as T

    import lasres
    from lasres.config import get_mode
    from lasres.layers import get_all_layers, get_all_params, get_output
    from lasres.ops.onednn import kernels
    from test_legacy_fixtures import seed_network

    floatX = pytensor.config.floatX
    summary = {}
    for kind, n, k in _draws.CONFIGS:
        x, y = T.tensor4("inputs"), T.ivector("targets")
        net, _ = seed_network(kind, n, k, x, size=_draws.SIZE)
        loss = lasres.objectives.categorical_crossentropy(get_output(net), y).mean()
        loss = loss + _draws.L2 * lasres.regularization.regularize_layer_params(
            get_all_layers(net), lasres.regularization.l2)
        params = get_all_params(net, trainable=True)
        updates = lasres.updates.nesterov_momentum(loss, params, learning_rate=_draws.LR,
                                                   momentum=_draws.MOMENTUM)
        velocities = [v for v in updates if all(v is not p for p in params)]
        step = pytensor.function([x, y], loss, updates=updates, mode=get_mode("c"))
        all_params = get_all_params(net)
        specs = [(type(layer).__name__.replace("DNN", ""), p.name.split(".")[-1],
                  tuple(p.get_value().shape))
                 for layer in get_all_layers(net) for p in layer.get_params()]
        for seed in _draws.SEEDS:
            name = f"{kind}_n{n}_k{k}_s{seed}"
            p0, X, Y = _draws.draw(specs, _draws.net_seed(kind, n, k, seed))
            for p, v in zip(all_params, p0):
                p.set_value(v.astype(floatX))
            for v in velocities:
                v.set_value(np.zeros_like(v.get_value()))
            summary[f"{name}/losses"] = np.array(
                [float(step(X.astype(floatX), Y)) for _ in range(_draws.STEPS)])
            final = [np.asarray(p.get_value()) for p in all_params]
            if floatX == "float64":
                summary[f"{name}/checksums64"] = _draws.checksums(final)
                np.savez(os.path.join(out_dir, f"{name}.npz"), *final)
            else:
                with np.load(os.path.join(f64_dir, f"{name}.npz")) as z:
                    p64 = [z[f"arr_{i}"] for i in range(len(final))]
                summary[f"{name}/stats"] = _draws.net_stats(p0, p64, final)
    meta = {"floatX": floatX, "kernels": kernels()}
    np.savez(os.path.join(out_dir, "summary.npz"), meta=np.array(json.dumps(meta)), **summary)


if __name__ == "__main__":
    main(*sys.argv[1:])
