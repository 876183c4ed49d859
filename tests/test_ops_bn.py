"""Batch-norm ops: gradients checked numerically, forward and backward
against a plain PyTensor composition of Lasagne's formulas."""
import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import verify_grad

from lasres.ops.bn import batch_norm_infer, batch_norm_train

RNG = np.random.default_rng(42)


def _reference_train(x, gamma, beta, axes, eps):
    """Lasagne's BatchNormLayer in training mode, with stock ops."""
    pattern = ["x" if d in axes else k for k, d in
               zip(np.cumsum([d not in axes for d in range(x.ndim)]) - 1, range(x.ndim))]
    mean = x.mean(axis=axes)
    inv_std = 1 / pt.sqrt(x.var(axis=axes) + eps)
    y = (x - mean.dimshuffle(pattern)) * (gamma * inv_std).dimshuffle(pattern) \
        + beta.dimshuffle(pattern)
    return y, mean, inv_std


@pytest.mark.parametrize("shape,axes", [((4, 3, 5, 6), (0, 2, 3)), ((7, 5), (0,)),
                                        ((3, 4, 5), (0, 2))])
def test_forward_and_grad_match_stock_ops(shape, axes):
    x = pt.tensor("x", dtype="float64", shape=(None,) * len(shape))
    pshape = [s for d, s in enumerate(shape) if d not in axes]
    g = pt.dvector("g") if len(pshape) == 1 else pt.dmatrix("g")
    b = g.type("b")
    ours = batch_norm_train(x, g, b, axes=axes, epsilon=1e-4)
    ref = _reference_train(x, g, b, axes, 1e-4)
    w = pt.tensor("w", dtype="float64", shape=(None,) * len(shape))
    cost_ours = (ours[0] * w).sum() + ours[1].sum() * 0.3 + (ours[2] ** 2).sum() * 0.2
    cost_ref = (ref[0] * w).sum() + ref[1].sum() * 0.3 + (ref[2] ** 2).sum() * 0.2
    f = pytensor.function([x, g, b, w], list(ours) + pytensor.grad(cost_ours, [x, g, b])
                          + list(ref) + pytensor.grad(cost_ref, [x, g, b]))
    xv = RNG.normal(1.0, 2.0, shape)
    gv, bv = RNG.uniform(0.5, 1.5, pshape), RNG.normal(0, 1, pshape)
    wv = RNG.normal(size=shape)
    out = f(xv, gv, bv, wv)
    for a, e in zip(out[:6], out[6:]):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)


def test_verify_grad_train():
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(4, 3, 2, 3))
    gv, bv = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    for out in range(3):
        verify_grad(lambda x, g, b: batch_norm_train(x, g, b)[out], [xv, gv, bv], rng=rng)


def test_verify_grad_infer():
    rng = np.random.default_rng(1)
    args = [rng.normal(size=(3, 2, 4, 4)), rng.uniform(0.5, 1.5, 2), rng.normal(size=2),
            rng.normal(size=2), rng.uniform(0.5, 1.5, 2)]
    verify_grad(lambda *a: batch_norm_infer(*a), args, rng=rng)


def test_float32_stays_float32():
    x = pt.tensor4("x", dtype="float32")
    g = pt.fvector("g")
    y, m, s = batch_norm_train(x, g, g)
    assert y.dtype == m.dtype == s.dtype == "float32"
    f = pytensor.function([x, g], pytensor.grad(y.sum() * 2, x))
    assert f(np.ones((2, 3, 2, 2), "float32"), np.ones(3, "float32")).dtype == np.float32


def test_jax_matches_numpy():
    pytest.importorskip("jax")
    x = pt.tensor4("x")
    g, b = pt.vector("g"), pt.vector("b")
    m, s = pt.vector("m"), pt.vector("s")
    y, bm, bs = batch_norm_train(x, g, b)
    yi = batch_norm_infer(x, g, b, m, s)
    w = pt.tensor4("w")
    outs = [y, bm, bs, yi] + pytensor.grad((y * w).sum() + (yi * w).sum(), [x, g, b, m, s])
    args = [RNG.normal(size=(5, 4, 3, 3)).astype("float32"),
            RNG.uniform(0.5, 1.5, 4).astype("float32"), RNG.normal(size=4).astype("float32"),
            RNG.normal(size=4).astype("float32"), RNG.uniform(0.5, 1.5, 4).astype("float32"),
            RNG.normal(size=(5, 4, 3, 3)).astype("float32")]
    ins = [x, g, b, m, s, w]
    f_c = pytensor.function(ins, outs)
    f_j = pytensor.function(ins, outs, mode="JAX")
    for a, e in zip(f_j(*args), f_c(*args)):
        np.testing.assert_allclose(np.asarray(a), e, rtol=2e-4, atol=2e-5)
