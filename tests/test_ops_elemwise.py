"""The fused rectifier's gradient in C (lasres.ops.elemwise.relu_grad):
``gz`` where x > 0, ``(T)(0.5 * gz)`` where x == 0, +0 elsewhere, bit for
bit, alone and inside PyTensor's fused loops, on special values too."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres.config import get_mode
from lasres.ops.elemwise import relu_grad


def _expected(x, gz):
    half = (0.5 * gz.astype(np.float64)).astype(gz.dtype)
    return np.where(x > 0, gz, np.where(x == 0, half, np.zeros((), gz.dtype)))


def _cases(dtype, rng):
    tiny = np.finfo(dtype).tiny
    special_g = np.array([1.5, -2.25, 0.0, -0.0, np.inf, -np.inf, np.nan, tiny, tiny / 4,
                          -tiny / 8, 3e-39 if dtype == np.float32 else 3e-309], dtype)
    special_x = np.array([1.0, -1.0, 0.0, -0.0, np.nan, tiny / 2, -tiny / 2], dtype)
    gx, xx = np.meshgrid(special_g, special_x)
    x = np.concatenate([xx.ravel(), rng.normal(size=5000).astype(dtype),
                        np.zeros(64, dtype)])
    gz = np.concatenate([gx.ravel(), rng.normal(size=5000).astype(dtype),
                         rng.normal(size=64).astype(dtype)])
    return x, gz


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_c_bit_for_bit(dtype):
    rng = np.random.default_rng(0)
    x, gz = _cases(dtype, rng)
    X, G = pt.vector(dtype=np.dtype(dtype).name), pt.vector(dtype=np.dtype(dtype).name)
    f = pytensor.function([X, G], relu_grad(X, G), mode=get_mode("c"))
    got, want = f(x, gz), _expected(x, gz)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(got.view(bits), want.view(bits))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_grad_c_bit_for_bit_inside_a_fused_loop(dtype):
    """PyTensor fuses the gradient with its neighbours into one Composite loop."""
    rng = np.random.default_rng(1)
    x, gz = _cases(dtype, rng)
    a = rng.normal(size=gz.shape).astype(dtype)
    X, G, A = (pt.vector(dtype=np.dtype(dtype).name) for _ in range(3))
    f = pytensor.function([X, G, A], relu_grad(X, G + A) * 2, mode=get_mode("c"))
    got = f(x, gz, a)
    want = (_expected(x, (gz + a).astype(dtype)) * dtype(2)).astype(dtype)
    bits = np.uint32 if dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(got.view(bits), want.view(bits))
    assert any("rectify_grad" in str(node.op) for node in f.maker.fgraph.toposort())
