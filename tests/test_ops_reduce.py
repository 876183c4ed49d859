"""ChannelSum (lasres/ops/reduce.py, c/channel_sum.c): the per-channel sum
against float64 references and by numerical differentiation; ``Sum`` over
all axes but 1 replaced by it in the C mode."""
import math

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad
from pytensor.tensor.math import Sum

import lasres  # noqa: F401  (modes)
from lasres.config import get_mode
from lasres.ops.reduce import ChannelSum, channel_sum

C_MODE = Mode(linker="cvm", optimizer="fast_run")
PY_MODE = Mode(linker="py", optimizer="fast_run")

SHAPES = [(64, 16, 32, 32), (3, 5, 7, 3), (1, 4, 1, 1), (5, 6, 11), (2, 3, 4, 3, 5), (7, 3)]


def _fsum_reference(x):
    x3 = x.astype(np.float64).reshape(x.shape[0], x.shape[1], -1)
    return np.array([math.fsum(x3[:, c, :].ravel()) for c in range(x.shape[1])])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", [C_MODE, PY_MODE], ids=["c", "py"])
def test_channel_sum_matches_exact_sum(shape, dtype, mode):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * len(shape))
    f = pytensor.function([x], channel_sum(x), mode=mode)
    xv = np.random.default_rng(0).normal(0.5, 2.0, shape).astype(dtype)
    got = f(xv)
    assert got.dtype == dtype and got.shape == (shape[1],)
    want = _fsum_reference(xv)
    # float64 accumulation: the only error of note is the final rounding
    tol = 4 * np.finfo(dtype).eps * np.abs(want) + (1e-12 if dtype == "float64" else 0)
    assert np.all(np.abs(got - want) <= tol + 1e-13 * np.abs(xv).sum()), (got, want)


def test_channel_sum_accumulates_in_float64():
    """A float32 running sum of 65536 values near 100 loses ~1e-4 relative;
    the float64 accumulation keeps the sum to float32 rounding."""
    xv = np.random.default_rng(1).normal(100.0, 1.0, (64, 2, 32, 32)).astype(np.float32)
    x = pt.tensor4("x", dtype="float32")
    got = pytensor.function([x], channel_sum(x), mode=C_MODE)(xv)
    want = _fsum_reference(xv)
    np.testing.assert_allclose(got, want, rtol=1e-7)
    naive = np.cumsum(xv[:, 0].ravel(), dtype=np.float32)[-1]
    assert abs(naive - want[0]) > 10 * abs(got[0] - want[0])


def test_c_mode_replaces_the_bias_gradient_sum():
    for dtype in ("float32", "float64"):
        x = pt.tensor4("x", dtype=dtype)
        f = pytensor.function([x], x.sum(axis=(0, 2, 3)), mode=get_mode("c"))
        ops = [type(n.op) for n in f.maker.fgraph.toposort()]
        assert ChannelSum in ops and Sum not in ops
        xv = np.random.default_rng(2).normal(size=(3, 4, 5, 6)).astype(dtype)
        np.testing.assert_allclose(f(xv), _fsum_reference(xv), rtol=1e-6)


@pytest.mark.parametrize("shape", [(64, 64, 8, 8), (3, 5, 7, 2), (4, 3, 5), (2, 3, 4, 1, 5),
                                   (1, 1, 1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_c_mode_sums_the_spatial_axes_per_channel(shape, dtype):
    """Global average pooling's sum over the axes after 1 becomes a
    ChannelSum of the (1, N * C, -1) view: each (n, c) to the final rounding
    of its exact sum, the mean's too, and the gradient."""
    x = pt.tensor("x", dtype=dtype, shape=(None,) * len(shape))
    axes = tuple(range(2, len(shape)))
    f = pytensor.function([x], [x.sum(axis=axes), x.mean(axis=axes),
                                pytensor.grad(x.mean(axis=axes).sum(), x)], mode=get_mode("c"))
    ops = [type(n.op) for n in f.maker.fgraph.toposort()]
    assert ChannelSum in ops and Sum not in ops
    xv = np.random.default_rng(4).normal(0.5, 2.0, shape).astype(dtype)
    total, mean, grad = f(xv)
    flat = xv.astype(np.float64).reshape(shape[0], shape[1], -1)
    want = np.array([[math.fsum(flat[i, c]) for c in range(shape[1])] for i in range(shape[0])])
    assert total.dtype == dtype and total.shape == shape[:2]
    tol = 4 * np.finfo(dtype).eps * np.abs(want) + (1e-12 if dtype == "float64" else 0)
    assert np.all(np.abs(total - want) <= tol)
    assert np.all(np.abs(mean - want / flat.shape[2]) <= 2 * tol / flat.shape[2])
    np.testing.assert_allclose(grad, np.full(shape, 1.0 / flat.shape[2]), rtol=1e-6)


def test_c_mode_keeps_other_sums():
    x = pt.tensor4("x")
    for axes in [(0, 2), (1, 2, 3), (3,), None]:
        f = pytensor.function([x], x.sum(axis=axes), mode=get_mode("c"))
        assert ChannelSum not in [type(n.op) for n in f.maker.fgraph.toposort()]


@pytest.mark.parametrize("shape", [(3, 2, 4, 2), (4, 3, 5), (2, 2, 1, 3, 2)])
def test_verify_grad_channel_sum(shape):
    rng = np.random.default_rng(3)
    verify_grad(channel_sum, [rng.normal(size=shape)], rng=rng, mode=C_MODE)


def test_channel_sum_rejects_vectors():
    with pytest.raises(TypeError):
        channel_sum(pt.vector())
