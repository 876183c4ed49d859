"""JaxTrainer: the device-resident JAX training step against the C backend's
Trainer; data parallelism (4 forced host devices, in a subprocess); bf16;
device augmentation; fit() and its checkpoints."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import lasres  # noqa: E402,F401
from lasres.errors import LasresError  # noqa: E402
from lasres.train.jax_trainer import JaxTrainer, _crop_flip_at, device_crop_flip  # noqa: E402
from lasres.layers import get_all_param_values, set_all_param_values  # noqa: E402
from lasres.models import build  # noqa: E402
from lasres.train import Trainer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Explicitly requested dtype")

BATCH = 8
SHAPE = (None, 3, 16, 16)


def _batches(n, seed=0, batch=BATCH):
    rng = np.random.RandomState(seed)
    return [(rng.randn(batch, 3, 16, 16).astype("float32"),
             rng.randint(0, 10, batch).astype("int32")) for _ in range(n)]


def _build(model, depth, width=1, seed=0):
    """A network initialised from a fixed seed."""
    from lasres.random import get_rng, set_rng
    old = get_rng()
    set_rng(np.random.RandomState(seed))
    try:
        return build(model, depth, width, input_shape=SHAPE)
    finally:
        set_rng(old)


def _twin_networks(model, depth, width):
    a = _build(model, depth, width)
    b = build(model, depth, width, input_shape=SHAPE)
    set_all_param_values(b, get_all_param_values(a))
    return a, b


def _assert_close_lists(xs, ys, rtol=1e-4, atol=1e-6):
    """Each pair of arrays equal to within ``rtol`` of the array's largest
    magnitude (+ ``atol``): float32 noise relative to the array's scale (the
    C backend accumulates some sums, e.g. BN's, in float32 in another order;
    gradients that nearly cancel differ relatively more elementwise)."""
    assert len(xs) == len(ys)
    for i, (x, y) in enumerate(zip(xs, ys)):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, i
        err = float(np.max(np.abs(x - y), initial=0))
        assert err <= rtol * float(np.max(np.abs(x), initial=0)) + atol, \
            f"array {i} {x.shape}: max difference {err:g}"


@pytest.fixture(scope="module")
def c_reference():
    """Three C-backend steps of normal 1 from a fixed start: the start values,
    the losses, the final values, the velocities and a prediction."""
    net = _build("normal", 1)
    start = get_all_param_values(net)
    tr = Trainer(net, backend="c")
    losses = [tuple(float(v) for v in tr.train_fn(X, y)) for X, y in _batches(3)]
    Xp = _batches(1, seed=9, batch=5)[0][0]
    return dict(start=start, losses=losses, params=get_all_param_values(net),
                velocities=tr.optimizer_state(), predict=tr.predict_fn(Xp), Xp=Xp)


def test_matches_c_trainer_normal(c_reference):
    net = build("normal", 1, input_shape=SHAPE)
    set_all_param_values(net, c_reference["start"])
    tr = JaxTrainer(net)
    losses = [tuple(float(v) for v in tr.train_fn(X, y)) for X, y in _batches(3)]
    np.testing.assert_allclose(losses, c_reference["losses"], rtol=1e-5)
    # the host copies are stale until a sync; predict_fn syncs first
    np.testing.assert_array_equal(get_all_param_values(net)[0], c_reference["start"][0])
    # (after 3 steps the stored BN statistics are still near 0 / 1, so the
    # deterministic output amplifies float32 rounding: a looser tolerance)
    np.testing.assert_allclose(tr.predict_fn(c_reference["Xp"]), c_reference["predict"],
                               rtol=1e-3, atol=1e-5)
    _assert_close_lists(c_reference["params"], get_all_param_values(net))  # incl. BN stats
    _assert_close_lists(c_reference["velocities"], tr.optimizer_state())
    assert tr.num_params == sum(p.size for p in c_reference["start"])
    assert set(tr.compile_seconds) == {"train", "predict", "train_xla", "predict_xla"}


def test_matches_c_trainer_with_projections():
    """wide 1 1: 1x1 projection shortcuts in every stage; a learning-rate
    change before the last step."""
    a, b = _twin_networks("wide", 1, 1)
    tc, tj = Trainer(a, backend="c"), JaxTrainer(b)
    for i, (X, y) in enumerate(_batches(3, seed=1)):
        if i == 2:
            tc.learning_rate.set_value(np.float32(0.005))
            tj.learning_rate.set_value(np.float32(0.005))
        lc, ac = tc.train_fn(X, y)
        lj, aj = tj.train_fn(X, y)
        np.testing.assert_allclose(float(lj), float(lc), rtol=1e-4)
        assert float(aj) == float(ac)
    tj.sync_to_host()
    _assert_close_lists(get_all_param_values(a), get_all_param_values(b))
    _assert_close_lists(tc.optimizer_state(), tj.optimizer_state())


def test_bf16_close_to_float32(c_reference):
    net = build("normal", 1, input_shape=SHAPE)
    set_all_param_values(net, c_reference["start"])
    tr = JaxTrainer(net, precision="bf16")
    losses = [float(tr.train_fn(X, y)[0]) for X, y in _batches(3)]
    assert np.all(np.isfinite(losses))
    np.testing.assert_allclose(losses, [l for l, _ in c_reference["losses"]], rtol=5e-2)
    params, vels, stats = tr.state()
    assert all(a.dtype == np.float32 for a in params + vels + stats)  # float32 master state
    probs = tr.predict_fn(c_reference["Xp"])
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-3)
    np.testing.assert_allclose(probs, c_reference["predict"], atol=5e-2)


def test_device_crop_flip_is_the_legacy_augmentation():
    from lasres.data.augment import crop_flip
    X = np.random.RandomState(0).randn(3, 2, 6, 5).astype("float32")
    for dy, dx, flip in [(0, 0, 0), (8, 3, 1), (4, 4, 0), (2, 7, 1)]:
        np.testing.assert_array_equal(np.asarray(_crop_flip_at(X, dy, dx, flip, 4)),
                                      crop_flip(X, dy, dx, bool(flip), 4))
    candidates = [crop_flip(X, dy, dx, f, 4) for dy in range(9) for dx in range(9)
                  for f in (False, True)]
    seen = set()
    for seed in range(6):
        out = np.asarray(device_crop_flip(X, jax.random.PRNGKey(seed)))
        match = [i for i, c in enumerate(candidates) if np.array_equal(out, c)]
        assert match, "not a pad-crop-flip of the batch"
        seen.add(match[0])
    assert len(seen) > 1


def test_errors():
    net = build("normal", 1, input_shape=SHAPE)
    with pytest.raises(LasresError, match="devices"):
        JaxTrainer(net, devices=len(jax.devices()) + 1)
    with pytest.raises(LasresError, match="precision"):
        JaxTrainer(net, precision="fp8")


def test_fit_checkpoint_holds_device_state(tmp_path):
    """fit() drives JaxTrainer (device augmentation on) for one epoch; the
    checkpoint holds the device state."""
    from types import SimpleNamespace

    from lasres.train import fit
    from lasres.weights import load_checkpoint

    rng = np.random.RandomState(3)
    data = SimpleNamespace(X_train=rng.randn(20, 3, 16, 16).astype("float32"),
                           y_train=rng.randint(0, 10, 20).astype("int32"),
                           X_valid=rng.randn(6, 3, 16, 16).astype("float32"),
                           y_valid=rng.randint(0, 10, 6).astype("int32"),
                           pixel_mean=np.zeros((3, 16, 16), "float32"))
    net = build("normal", 1, input_shape=SHAPE)
    start = get_all_param_values(net)
    tr = JaxTrainer(net, device_augment=True, seed=1)
    hist = fit(tr, data, epochs=1, out_dir=str(tmp_path), batch_size=8, augment=None,
               schedule=((0, 0.05),), progress=False, log=lambda *a: None, plot=False)
    assert len(hist) == 1 and np.isfinite(hist.train_loss[0])
    assert tr.learning_rate.get_value() == np.float32(0.05)
    # two batch shapes (8 and the last 4) -> two XLA programs
    assert len([k for k in tr._compiled if k[0] == "train"]) == 2
    params, vels, stats = jax.device_get(tr.state())
    ckpt = load_checkpoint(str(tmp_path / "last.h5"))
    _assert_close_lists(vels, ckpt.optimizer_state, rtol=0, atol=0)
    tr.sync_to_host()
    _assert_close_lists(get_all_param_values(net), ckpt.param_values, rtol=0, atol=0)
    assert not np.array_equal(ckpt.param_values[0], start[0])


DATA_PARALLEL_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    warnings.filterwarnings("ignore", message="Explicitly requested dtype")
    import numpy as np, jax
    import lasres
    from lasres.errors import LasresError
    from lasres.train.jax_trainer import JaxTrainer
    from lasres.layers import get_all_param_values, set_all_param_values
    from lasres.models import build

    shape = (None, 3, 16, 16)
    # a fixed draw: the two runs differ only in float32 summation order, and
    # a fresh random net each time would make the test's outcome a lottery
    lasres.random.set_rng(np.random.RandomState(0))
    a = build("normal", 1, input_shape=shape)
    b = build("normal", 1, input_shape=shape)
    set_all_param_values(b, get_all_param_values(a))
    t1, t4 = JaxTrainer(a, devices=1), JaxTrainer(b, devices=4)
    rng = np.random.RandomState(0)
    losses = []
    for _ in range(3):
        X = rng.randn(8, 3, 16, 16).astype("float32")
        y = rng.randint(0, 10, 8).astype("int32")
        l1, a1 = t1.train_fn(X, y)
        l4, a4 = t4.train_fn(X, y)
        losses.append([float(l1), float(l4), float(a1), float(a4)])
    t1.sync_to_host(); t4.sync_to_host()
    pa, pb = get_all_param_values(a), get_all_param_values(b)
    diff = max(float(np.max(np.abs(x - y) / (np.abs(x) + 1e-3))) for x, y in zip(pa, pb))
    vdiff = max(float(np.max(np.abs(x - y))) for x, y in
                zip(t1.optimizer_state(), t4.optimizer_state()))
    (compiled,) = [f for k, f in t4._compiled.items() if k[0] == "train"]
    x_sharding = compiled.input_shardings[0][2]
    hlo = compiled.as_text()
    pred = float(np.max(np.abs(t1.predict_fn(X) - t4.predict_fn(X))))
    pred_odd = float(np.max(np.abs(t1.predict_fn(X[:5]) - t4.predict_fn(X[:5]))))
    try:
        t4.train_fn(X[:6], y[:6])
        error = None
    except LasresError as exc:
        error = str(exc)
    print(json.dumps(dict(
        n_devices=len(jax.devices()), mesh_devices=int(t4.mesh.devices.size),
        x_spec=str(x_sharding.spec), x_shard_shape=list(x_sharding.shard_shape((8, 3, 16, 16))),
        all_reduces=hlo.count("all-reduce("), losses=losses, param_diff=diff,
        velocity_diff=vdiff, predict_diff=pred, predict_odd_diff=pred_odd, error=error)))
""")


def test_data_parallel_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", DATA_PARALLEL_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["n_devices"] == 4 and r["mesh_devices"] == 4
    assert r["x_shard_shape"] == [2, 3, 16, 16], r["x_spec"]
    assert r["all_reduces"] > 0  # the gradient / BN-statistics reductions
    for l1, l4, a1, a4 in r["losses"]:
        assert abs(l1 - l4) <= 1e-5 * abs(l1)
        assert a1 == a4
    assert r["param_diff"] < 1e-4
    assert r["velocity_diff"] < 1e-5
    assert r["predict_diff"] < 1e-5 and r["predict_odd_diff"] < 1e-5
    assert r["error"] and "divisible by 4" in r["error"]


@pytest.mark.parametrize("model, depth, width", [("normal", 2, 1), ("bottleneck", 1, 1),
                                                 ("wide", 1, 2)])
def test_handwritten_benchmark_has_the_lasres_architecture(model, depth, width):
    """benchmarks/jax_handwritten.py consumes the same parameters, in lasres's
    order (its first-step loss equals JaxTrainer's: run it with --compare)."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "jax_handwritten.py"
    spec = importlib.util.spec_from_file_location("jax_handwritten", path)
    hw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hw)
    values, kinds = hw.init_params(model, depth, width)
    net = build(model, depth, width)
    from lasres.layers import get_all_params
    params = get_all_params(net)
    assert [v.shape for v in values] == [p.get_value().shape for p in params]
    assert kinds == [p.name for p in params]
