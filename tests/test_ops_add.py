"""ParallelAdd (lasres/ops/add.py, c/add.c): the sum of two large arrays in C
on all cores, bit for bit NumPy's add; the C mode's rewrite that puts it in
place of the sums nothing elementwise touches."""
import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad
from pytensor.tensor.elemwise import Elemwise

import lasres  # noqa: F401  (modes)
from lasres.config import get_mode
from lasres.ops.add import PARALLEL_ADD_ENV, ParallelAdd, parallel_add

C_MODE = Mode(linker="cvm", optimizer="fast_run")
PY_MODE = Mode(linker="py", optimizer="fast_run")
RNG = np.random.default_rng(3)


def _ops(fn, cls):
    return [n for n in fn.maker.fgraph.apply_nodes if isinstance(n.op, cls)]


# (64, 1, 32, 32, 16) is over the threads' threshold (65,536 values); the
# others run on one thread, odd sizes leave a vector tail
@pytest.mark.parametrize("shape", [(64, 1, 32, 32, 16), (3, 5, 7, 3), (2, 3, 1, 5, 8), (1, 1, 1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", [C_MODE, PY_MODE], ids=["c", "py"])
def test_parallel_add_is_numpys_add_bit_for_bit(shape, dtype, mode):
    a = pt.tensor("a", dtype=dtype, shape=(None,) * len(shape))
    b = pt.tensor("b", dtype=dtype, shape=(None,) * len(shape))
    f = pytensor.function([a, b], parallel_add(a, b), mode=mode)
    # magnitudes over 40 binades: every addition rounds
    av = (RNG.normal(size=shape) * 10.0 ** RNG.integers(-20, 20, shape)).astype(dtype)
    bv = (RNG.normal(size=shape) * 10.0 ** RNG.integers(-20, 20, shape)).astype(dtype)
    got = f(av, bv)
    assert got.dtype == dtype and got.shape == shape
    np.testing.assert_array_equal(got, av + bv)
    # non-contiguous inputs (transposed views) are read as they are
    at, bt = np.swapaxes(av, 0, -1), np.swapaxes(bv, 0, -1)
    np.testing.assert_array_equal(f(at, bt), at + bt)


def test_parallel_add_refuses_two_shapes():
    a, b = pt.tensor4("a"), pt.tensor4("b")
    f = pytensor.function([a, b], parallel_add(a, b), mode=C_MODE)
    with pytest.raises(ValueError, match="shape"):
        f(np.zeros((2, 3, 4, 5), "float32"), np.zeros((2, 3, 4, 6), "float32"))
    with pytest.raises(TypeError):
        parallel_add(pt.tensor4("a"), pt.dtensor4("b"))


def test_parallel_add_gradient_and_jax():
    av, bv = RNG.normal(size=(2, 3, 4, 2)), RNG.normal(size=(2, 3, 4, 2))
    verify_grad(lambda a, b: parallel_add(a, b) * pt.arange(2.0), [av, bv], rng=RNG)
    pytest.importorskip("jax")
    a, b = pt.tensor4("a"), pt.tensor4("b")
    f = pytensor.function([a, b], parallel_add(a, b), mode="JAX")
    x, y = av.astype("float32"), bv.astype("float32")
    np.testing.assert_array_equal(np.asarray(f(x, y)), x + y)


def test_the_c_mode_puts_it_only_where_nothing_elementwise_touches_the_sum(monkeypatch):
    x, y = pt.tensor4("x"), pt.tensor4("y")
    alone = pytensor.function([x, y], pt.sum(x + y, axis=(0, 2, 3)), mode=get_mode("c"))
    assert _ops(alone, ParallelAdd)
    xv, yv = RNG.normal(size=(3, 4, 5, 6)).astype("float32"), RNG.normal(size=(3, 4, 5, 6)).astype("float32")
    np.testing.assert_array_equal(alone(xv, yv), (xv + yv).sum(axis=(0, 2, 3), dtype=np.float64).astype("float32"))
    # a ReLU after the sum: PyTensor's fusion makes one loop of both
    fused = pytensor.function([x, y], pt.maximum(x + y, 0), mode=get_mode("c"))
    assert not _ops(fused, ParallelAdd)
    # broadcasting and 3 summands stay PyTensor's
    z = pt.tensor("z", shape=(1, None, None, None))
    assert not _ops(pytensor.function([x, z], x + z, mode=get_mode("c")), ParallelAdd)
    three = pytensor.function([x, y], pt.sum(x + y + x * 0.5, axis=1), mode=get_mode("c"))
    assert not _ops(three, ParallelAdd)
    monkeypatch.setenv(PARALLEL_ADD_ENV, "0")
    off = pytensor.function([x, y], pt.sum(x + y, axis=(0, 2, 3)), mode=get_mode("c"))
    assert not _ops(off, ParallelAdd)
    assert [n for n in off.maker.fgraph.apply_nodes if isinstance(n.op, Elemwise)]


def test_the_remaining_sums_of_a_training_step(monkeypatch):
    """ResNet-20's step: the projection blocks' gradient sums (which no
    fold takes) run as ParallelAdd, and the step is the same bit for bit."""
    import lasres.random
    from lasres.layers import get_all_param_values, get_all_params, set_all_param_values
    from lasres.models import build
    from lasres.train import Trainer

    lasres.random.set_rng(np.random.RandomState(2))
    vals = get_all_param_values(build("normal", 1, 1))
    rng = np.random.RandomState(0)
    x = rng.randn(8, 3, 32, 32).astype("float32")
    y = rng.randint(0, 10, 8).astype("int32")
    results = []
    for env in ("1", "0"):
        monkeypatch.setenv(PARALLEL_ADD_ENV, env)
        net = build("normal", 1, 1)
        set_all_param_values(net, vals)
        tr = Trainer(net)
        n = len(_ops(tr.train_fn, ParallelAdd))
        assert (n >= 2) if env == "1" else (n == 0), n
        for _ in range(2):
            tr.train_fn(x, y)
        results.append([p.get_value() for p in get_all_params(net)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
