"""The batch-norm ops' C kernels (lasres/ops/c/bn.c) against float64 loop
references, against the ops' own ``perform`` (numba/NumPy), and by
numerical differentiation; float32 and float64, odd shapes, tensors large
enough for the OpenMP region."""
import math

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad

import lasres  # noqa: F401  (modes)
from lasres.ops.bn import (BatchNormInfer, BatchNormTrain, BatchNormTrainGrad,
                           batch_norm_infer, batch_norm_train)

C_MODE = Mode(linker="cvm", optimizer="fast_run")
PY_MODE = Mode(linker="py", optimizer="fast_run")
EPS = 1e-4

SHAPES = [(64, 16, 32, 32),  # ResNet-20's first stage: parallel region
          (3, 5, 7, 3),      # 21 values per row: not a multiple of the 8 lanes
          (2, 3, 1, 1),
          (1, 4, 9, 1),      # a batch of one
          (5, 6, 11),        # 3-d (N, C, L)
          (2, 3, 4, 3, 5)]   # 5-d (N, C, D, H, W)


def _axes(ndim):
    return (0,) + tuple(range(2, ndim))


def _loop_train(x, gamma, beta, gy):
    """Float64 reference, channel by channel with exactly rounded sums."""
    x = x.astype(np.float64)
    gy = gy.astype(np.float64)
    n, c = x.shape[:2]
    x3, g3 = x.reshape(n, c, -1), gy.reshape(n, c, -1)
    count = x3.shape[0] * x3.shape[2]
    y, gx = np.empty_like(x3), np.empty_like(x3)
    mean, inv, ggamma, gbeta = (np.empty(c) for _ in range(4))
    for k in range(c):
        xs, gs = x3[:, k, :], g3[:, k, :]
        mu = math.fsum(xs.ravel()) / count
        var = math.fsum(((xs - mu) ** 2).ravel()) / count
        mean[k], inv[k] = mu, 1.0 / math.sqrt(var + EPS)
        xhat = (xs - mu) * inv[k]
        y[:, k, :] = xhat * float(gamma[k]) + float(beta[k])
        gbeta[k] = math.fsum(gs.ravel())
        ggamma[k] = math.fsum((gs * xhat).ravel())
        gx[:, k, :] = (gs - gbeta[k] / count - xhat * ggamma[k] / count) * float(gamma[k]) * inv[k]
    return y.reshape(x.shape), mean, inv, gx.reshape(x.shape), ggamma, gbeta


def _functions(dtype, ndim, mode):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * ndim)
    gy = x.type("gy")
    g, b = pt.vector("g", dtype=dtype), pt.vector("b", dtype=dtype)
    axes = _axes(ndim)
    y, mean, inv = BatchNormTrain(axes, EPS)(x, g, b)
    gx, gg, gb = BatchNormTrainGrad(axes)(x, gy, g, mean, inv)
    yi = BatchNormInfer(axes)(x, g, b, mean, inv)
    return pytensor.function([x, g, b, gy], [y, mean, inv, gx, gg, gb, yi], mode=mode)


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    c = shape[1]
    return [rng.normal(1.5, 3.0, shape).astype(dtype), rng.uniform(0.5, 1.5, c).astype(dtype),
            rng.normal(0, 1, c).astype(dtype), rng.normal(0, 1, shape).astype(dtype)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-6)])
def test_c_matches_float64_loop_reference(shape, dtype, rtol):
    args = _data(shape, dtype)
    got = _functions(dtype, len(shape), C_MODE)(*args)
    want = _loop_train(*args)
    # the statistics are stored in the data type, so y and gx carry the
    # rounding of the mean relative to the centred values: eps * |mean| * inv_std
    y, mean, inv, gx, ggamma, gbeta = want
    # (and the gradients that of xhat = (x - mean) * inv_std)
    count = args[0].size / args[0].shape[1]
    xhat_err = 8 * np.finfo(dtype).eps * np.max(np.abs(mean) * inv)
    k = np.max(np.abs(args[1]) * inv)
    gy_abs = np.abs(args[3].astype(np.float64).reshape(args[3].shape[0], args[3].shape[1], -1))
    extra = {"y": xhat_err * np.max(np.abs(args[1])),
             "ggamma": xhat_err * np.max(gy_abs.sum(axis=(0, 2))),
             "gx": xhat_err * k * (1 + np.max(np.abs(ggamma)) / count)}
    names = ["y", "mean", "inv_std", "gx", "ggamma", "gbeta"]
    for name, a, e in zip(names, got[:6], want):
        assert a.dtype == dtype, name
        atol = rtol * np.max(np.abs(e)) + extra.get(name, 0.0)
        np.testing.assert_allclose(a, e, rtol=0, atol=atol, err_msg=name)
    np.testing.assert_allclose(got[6], y, rtol=0, atol=rtol * np.max(np.abs(y)) + extra["y"])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_c_matches_perform(shape, dtype):
    args = _data(shape, dtype, seed=1)
    got = _functions(dtype, len(shape), C_MODE)(*args)
    want = _functions(dtype, len(shape), PY_MODE)(*args)
    tol = 1e-13 if dtype == "float64" else 1e-6
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=0, atol=tol * max(1.0, np.max(np.abs(e))))


def test_c_backend_runs_no_perform(monkeypatch):
    """The C VM runs the three ops without calling their Python ``perform``."""
    f = _functions("float32", 4, C_MODE)
    for op in (BatchNormTrain, BatchNormTrainGrad, BatchNormInfer):
        monkeypatch.setattr(op, "perform", lambda *a: pytest.fail("perform called"))
    out = f(*_data((4, 3, 5, 5), "float32"))
    assert np.all(np.isfinite(out[0]))


def test_other_axes_still_run_perform():
    """Axes other than the channel axes have no C code: ``perform`` runs."""
    x = pt.dmatrix("x")
    g, b = pt.dvector("g"), pt.dvector("b")
    y, mean, inv = batch_norm_train(x, g, b, axes=(0,))
    f = pytensor.function([x, g, b], [y, mean, inv], mode=C_MODE)
    rng = np.random.default_rng(3)
    xv = rng.normal(size=(9, 4))
    gv, bv = rng.uniform(0.5, 1.5, 4), rng.normal(size=4)
    yv, mv, iv = f(xv, gv, bv)
    np.testing.assert_allclose(mv, xv.mean(0), rtol=1e-14)
    np.testing.assert_allclose(iv, 1 / np.sqrt(xv.var(0) + 1e-4), rtol=1e-14)
    np.testing.assert_allclose(yv, (xv - xv.mean(0)) * gv * iv + bv, rtol=1e-13, atol=1e-13)


def test_c_float32_closer_to_float64_than_a_float32_accumulation():
    """float64 accumulation: the float32 statistics of a large offset tensor
    agree with float64 to float32 rounding, which a float32 running sum misses."""
    rng = np.random.default_rng(4)
    x64 = rng.normal(100.0, 0.5, (64, 4, 32, 32))
    x32 = x64.astype(np.float32)
    c = 4
    args = [x32, np.ones(c, np.float32), np.zeros(c, np.float32), np.ones_like(x32)]
    got = _functions("float32", 4, C_MODE)(*args)
    want = _loop_train(x32.astype(np.float64), np.ones(c), np.zeros(c), np.ones(x32.shape))
    np.testing.assert_allclose(got[1], want[1], rtol=1e-7)
    np.testing.assert_allclose(got[2], want[2], rtol=2e-7)
    naive = np.cumsum(x32[:, 0].ravel(), dtype=np.float32)[-1] / x32[:, 0].size
    assert abs(naive - want[1][0]) > 10 * abs(got[1][0] - want[1][0])


@pytest.mark.parametrize("shape", [(4, 3, 2, 3), (3, 2, 5), (2, 2, 3, 1, 2)])
def test_verify_grad_c(shape):
    rng = np.random.default_rng(5)
    c = shape[1]
    xv, gv, bv = rng.normal(size=shape), rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    axes = _axes(len(shape))
    for out in range(3):
        verify_grad(lambda x, g, b: batch_norm_train(x, g, b, axes=axes)[out], [xv, gv, bv],
                    rng=rng, mode=C_MODE)
    args = [xv, gv, bv, rng.normal(size=c), rng.uniform(0.5, 1.5, c)]
    verify_grad(lambda *a: batch_norm_infer(*a, axes=axes), args, rng=rng, mode=C_MODE)


def test_c_shape_errors_are_value_errors():
    f = _functions("float64", 4, C_MODE)
    xv, gv, bv, gyv = _data((2, 3, 4, 4), "float64")
    with pytest.raises(ValueError):
        f(xv, gv[:2], bv, gyv)


def test_c_sources_ship_with_the_package():
    """Every file of lasres/ops/c is read by an op and matched by setup.py's
    package_data (a header left out would break installed copies only)."""
    import fnmatch
    import os
    import re
    from lasres.ops._csource import c_source
    assert c_source("channel.h", "bn.c").startswith("/*")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "setup.py")) as f:
        patterns = re.findall(r'"(c/[^"]+)"', f.read())
    files = os.listdir(os.path.join(root, "lasres", "ops", "c"))
    assert files and all(any(fnmatch.fnmatch(f"c/{name}", p) for p in patterns)
                         for name in files), (files, patterns)


def _infer_relu_graph(dtype, ndim):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * ndim)
    params = [pt.vector(n, dtype=dtype) for n in ("g", "b", "m", "i")]
    y = batch_norm_infer(x, *params, axes=_axes(ndim))
    return [x] + params, y


@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (3, 5, 7, 3), (4, 3, 5), (2, 3, 4, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bn_infer_relu_fused_bit_for_bit(shape, dtype):
    """The C mode fuses relu(batch_norm_infer(...)) into one node with the
    values of the two nodes, bit for bit (zeros of the normalised output too)."""
    from lasres.config import get_mode
    from lasres.ops.bn import BatchNormInferRelu
    from lasres.ops.elemwise import relu

    ins, y = _infer_relu_graph(dtype, len(shape))
    fused = pytensor.function(ins, relu(y), mode=get_mode("c"))
    plain = pytensor.function(ins, relu(y), mode=C_MODE)
    assert BatchNormInferRelu in [type(n.op) for n in fused.maker.fgraph.toposort()]
    assert BatchNormInferRelu not in [type(n.op) for n in plain.maker.fgraph.toposort()]
    rng = np.random.default_rng(6)
    c = shape[1]
    xv = rng.normal(0, 1, shape).astype(dtype)
    mean = rng.normal(0, 0.1, c).astype(dtype)
    beta = rng.normal(0, 1, c).astype(dtype)
    beta[0] = 0
    xv[:, 0].flat[::3] = mean[0]  # normalised output exactly 0 there
    args = [xv, rng.uniform(0.5, 1.5, c).astype(dtype), beta, mean,
            rng.uniform(0.5, 1.5, c).astype(dtype)]
    got, want = fused(*args), plain(*args)
    assert np.any(want == 0) and np.any(want > 0)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_functions_perform_infer_relu(dtype, len(shape))(*args), want)


def _functions_perform_infer_relu(dtype, ndim):
    from lasres.ops.bn import BatchNormInferRelu

    ins, _ = _infer_relu_graph(dtype, ndim)
    return pytensor.function(ins, BatchNormInferRelu(_axes(ndim))(*ins), mode=PY_MODE)


def test_bn_infer_relu_not_fused_when_the_normalised_output_is_used_elsewhere():
    from lasres.config import get_mode
    from lasres.ops.bn import BatchNormInferRelu
    from lasres.ops.elemwise import relu

    ins, y = _infer_relu_graph("float32", 4)
    f = pytensor.function(ins, [relu(y), y * 2], mode=get_mode("c"))
    assert BatchNormInferRelu not in [type(n.op) for n in f.maker.fgraph.toposort()]


def test_verify_grad_bn_infer_relu():
    from lasres.ops.bn import BatchNormInferRelu

    rng = np.random.default_rng(7)
    # inputs well away from the rectifier's kink
    xv = rng.choice([-1.0, 1.0], (3, 2, 3, 3)) * rng.uniform(1.0, 2.0, (3, 2, 3, 3))
    args = [xv, rng.uniform(0.5, 1.5, 2), np.zeros(2), np.zeros(2), rng.uniform(0.5, 1.5, 2)]
    verify_grad(lambda *a: BatchNormInferRelu()(*a), args, rng=rng, mode=C_MODE)


def _train_relu_graph(dtype, ndim):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * ndim)
    w = x.type("w")
    g, b = pt.vector("g", dtype=dtype), pt.vector("b", dtype=dtype)
    from lasres.ops.elemwise import relu

    y, mean, inv = batch_norm_train(x, g, b, axes=_axes(ndim))
    r = relu(y)
    cost = (r * w).sum() + mean.sum() * 0.3 + (inv ** 2).sum() * 0.2
    return [x, g, b, w], [r, mean, inv] + pytensor.grad(cost, [x, g, b])


def _train_relu_data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    xv = rng.normal(0.5, 2.0, shape).astype(dtype)
    xv[:, 0] = np.resize(np.array([-1.0, 0.0, 1.0], dtype), xv[:, 0].shape)  # exact zeros of y
    xv[:, 0].flat[-1] = 0.0
    beta = rng.normal(0, 1, c).astype(dtype)
    beta[0] = 0
    return [xv, rng.uniform(0.5, 1.5, c).astype(dtype), beta, rng.normal(size=shape).astype(dtype)]


@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (3, 5, 7, 3), (4, 3, 5), (2, 3, 4, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bn_train_relu_fused_bit_for_bit(shape, dtype):
    """The C mode fuses batch norm + rectifier forward and their gradients
    backward, with the values of the separate nodes bit for bit."""
    from lasres.config import get_mode
    from lasres.ops.bn import BatchNormReluTrainGrad, BatchNormTrainRelu

    ins, outs = _train_relu_graph(dtype, len(shape))
    fused = pytensor.function(ins, outs, mode=get_mode("c"))
    plain = pytensor.function(ins, outs, mode=C_MODE)
    ops = [type(n.op) for n in fused.maker.fgraph.toposort()]
    assert BatchNormTrainRelu in ops and BatchNormReluTrainGrad in ops
    assert BatchNormTrain not in ops and BatchNormTrainGrad not in ops
    assert BatchNormTrainRelu not in [type(n.op) for n in plain.maker.fgraph.toposort()]
    args = _train_relu_data(shape, dtype, 8)
    want = plain(*args)
    assert np.any(want[0] == 0) and np.any(want[0] > 0)
    for a, e in zip(fused(*args), want):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bn_train_relu_perform_matches_c(dtype):
    from lasres.ops.bn import BatchNormReluTrainGrad, BatchNormTrainRelu

    shape = (3, 5, 7, 3)
    x = pt.tensor4("x", dtype=dtype)
    gr = x.type("gr")
    g, b = pt.vector("g", dtype=dtype), pt.vector("b", dtype=dtype)
    r, mean, inv, scale = BatchNormTrainRelu()(x, g, b)
    grads = BatchNormReluTrainGrad()(x, gr, g, b, mean, scale, inv)
    outs = [r, mean, inv, scale] + list(grads)
    args = _train_relu_data(shape, dtype, 9)
    got = pytensor.function([x, g, b, gr], outs, mode=C_MODE)(*args)
    want = pytensor.function([x, g, b, gr], outs, mode=PY_MODE)(*args)
    tol = 1e-13 if dtype == "float64" else 1e-6
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=0, atol=tol * max(1.0, np.max(np.abs(e))))


def _addend_graph(dtype, ndim):
    """A residual block's input: its gradient is the one through the
    pre-activation batch norm + ReLU plus the shortcut's (``v``)."""
    from lasres.ops.elemwise import relu

    x = pt.tensor("x", dtype=dtype, shape=(None,) * ndim)
    w, v = x.type("w"), x.type("v")
    g, b = pt.vector("g", dtype=dtype), pt.vector("b", dtype=dtype)
    y, _, _ = batch_norm_train(x, g, b, axes=_axes(ndim))
    r = relu(y)
    cost = (r * w).sum() + (x * v).sum()
    return [x, g, b, w, v], [r] + pytensor.grad(cost, [x, g, b])


def _folded(fn):
    from lasres.ops.bn import BatchNormReluTrainGrad
    return [n for n in fn.maker.fgraph.toposort()
            if isinstance(n.op, BatchNormReluTrainGrad) and len(n.inputs) == 8]


@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (3, 5, 7, 3), (2, 3, 4, 3, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_residual_gradient_sum_folded_into_the_bn_gradient_bit_for_bit(shape, dtype,
                                                                       monkeypatch):
    """``gx + v`` is written by the batch-norm gradient itself: the values
    of the separate sum bit for bit (``LASRES_BN_ADDEND=0``: not folded),
    and those of ``perform``."""
    from lasres.config import get_mode

    ins, outs = _addend_graph(dtype, len(shape))
    folded = pytensor.function(ins, outs, mode=get_mode("c"))
    monkeypatch.setenv("LASRES_BN_ADDEND", "0")
    apart = pytensor.function(ins, outs, mode=get_mode("c"))
    assert len(_folded(folded)) == 1 and not _folded(apart)
    rng = np.random.default_rng(12)
    x, g, b, w = _train_relu_data(shape, dtype, 12)
    args = [x, g, b, w, rng.normal(0, 5, shape).astype(dtype)]
    want = apart(*args)
    for a, e in zip(folded(*args), want):
        np.testing.assert_array_equal(a, e)


def test_no_addend_that_reads_the_nodes_own_parameter_gradients():
    """``gx + v * sum(gbeta)``: folding would make the node read its own
    output (a cycle); the sum stays apart, with the right values."""
    from lasres.config import get_mode

    from lasres.ops.bn import BatchNormReluTrainGrad
    from lasres.ops.elemwise import relu

    x = pt.tensor4("x", dtype="float64")
    w, v = x.type("w"), x.type("v")
    g, b = pt.vector("g", dtype="float64"), pt.vector("b", dtype="float64")
    r = relu(batch_norm_train(x, g, b)[0])
    gx, gg, gb = pytensor.grad((r * w).sum(), [x, g, b])
    ins = [x, g, b, w, v]
    f = pytensor.function(ins, [r, gx + v * gb.sum(), gb], mode=get_mode("c"))
    assert BatchNormReluTrainGrad in [type(n.op) for n in f.maker.fgraph.apply_nodes]
    assert not _folded(f)
    args = _train_relu_data((3, 5, 7, 3), "float64", 15) + [np.full((3, 5, 7, 3), 0.5)]
    _, got, gbv = f(*args)
    ref = pytensor.function(ins[:4], gx, mode=C_MODE)(*args[:4])
    np.testing.assert_allclose(got, ref + 0.5 * gbv.sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_bn_gradient_with_an_addend_perform_matches_c(dtype):
    from lasres.ops.bn import BatchNormReluTrainGrad, BatchNormTrainRelu

    shape = (3, 5, 7, 3)
    x = pt.tensor4("x", dtype=dtype)
    gr, v = x.type("gr"), x.type("v")
    g, b = pt.vector("g", dtype=dtype), pt.vector("b", dtype=dtype)
    _, mean, inv, scale = BatchNormTrainRelu()(x, g, b)
    outs = list(BatchNormReluTrainGrad()(x, gr, g, b, mean, scale, inv, v))
    args = _train_relu_data(shape, dtype, 13) + [np.full(shape, 0.25, dtype)]
    got = pytensor.function([x, g, b, gr, v], outs, mode=C_MODE)(*args)
    want = pytensor.function([x, g, b, gr, v], outs, mode=PY_MODE)(*args)
    plain = pytensor.function([x, g, b, gr], list(BatchNormReluTrainGrad()(
        x, gr, g, b, mean, scale, inv)), mode=C_MODE)(*args[:4])
    np.testing.assert_array_equal(got[0], plain[0] + args[4])
    tol = 1e-13 if dtype == "float64" else 1e-6
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=0, atol=tol * max(1.0, np.max(np.abs(e))))
    with pytest.raises(TypeError, match="addend"):
        BatchNormReluTrainGrad()(x, gr, g, b, mean, scale, inv, pt.matrix("m", dtype=dtype))


def test_bn_train_relu_not_fused_when_y_is_used_elsewhere():
    from lasres.config import get_mode
    from lasres.ops.bn import BatchNormTrainRelu
    from lasres.ops.elemwise import relu

    x = pt.tensor4("x")
    g, b = pt.vector("g"), pt.vector("b")
    y, _, _ = batch_norm_train(x, g, b)
    cost = relu(y).sum() + (y ** 2).sum()
    f = pytensor.function([x, g, b], pytensor.grad(cost, [x, g, b]), mode=get_mode("c"))
    assert BatchNormTrainRelu not in [type(n.op) for n in f.maker.fgraph.toposort()]


@pytest.mark.parametrize("mode", [C_MODE, PY_MODE], ids=["c", "py"])
def test_verify_grad_bn_train_relu(mode):
    from lasres.ops.bn import BatchNormTrainRelu

    rng = np.random.default_rng(10)
    xv = rng.normal(size=(4, 3, 2, 3))
    gv, bv = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    for out in range(3):
        verify_grad(lambda x, g, b: BatchNormTrainRelu()(x, g, b)[out], [xv, gv, bv],
                    rng=rng, mode=mode)


def test_bn_train_relu_fused_with_a_broadcast_gradient():
    """The gradient reaching the rectifier may be broadcast (a global mean
    pooling follows): fused and separate nodes still agree bit for bit."""
    from lasres.config import get_mode
    from lasres.ops.bn import BatchNormTrainRelu
    from lasres.ops.elemwise import relu

    x = pt.tensor4("x")
    g, b = pt.vector("g"), pt.vector("b")
    w = pt.matrix("w")
    y, _, _ = batch_norm_train(x, g, b)
    cost = (relu(y).mean(axis=(2, 3)) * w).sum()
    outs = [cost] + pytensor.grad(cost, [x, g, b])
    fused = pytensor.function([x, g, b, w], outs, mode=get_mode("c"))
    plain = pytensor.function([x, g, b, w], outs, mode=C_MODE)
    assert BatchNormTrainRelu in [type(n.op) for n in fused.maker.fgraph.toposort()]
    xv, gv, bv, _ = _train_relu_data((8, 3, 4, 4), "float32", 11)
    wv = np.random.default_rng(12).normal(size=(8, 3)).astype("float32")
    for a, e in zip(fused(xv, gv, bv, wv), plain(xv, gv, bv, wv)):
        np.testing.assert_array_equal(a, e)


def test_training_step_keeps_updating_the_running_averages():
    """attach() is looked through by the fusion; the BN running averages of
    every layer still move in a training step."""
    from lasres.layers import BatchNormLayer, get_all_layers
    from lasres.models import build
    from lasres.ops.bn import BatchNormTrainRelu
    from lasres.train import Trainer

    net = build("normal", 1, 1)
    trainer = Trainer(net, backend="c")
    assert BatchNormTrainRelu in [type(n.op) for n in trainer.train_fn.maker.fgraph.apply_nodes]
    bns = [layer for layer in get_all_layers(net) if isinstance(layer, BatchNormLayer)]
    before = [layer.mean.get_value().copy() for layer in bns]
    rng = np.random.default_rng(13)
    trainer.train_fn(rng.normal(size=(4, 3, 32, 32)).astype("float32"),
                     np.arange(4).astype("int32"))
    assert all(not np.array_equal(layer.mean.get_value(), b) for layer, b in zip(bns, before))


def test_fused_ops_have_jax_versions():
    """Graphs the C mode rewrote can still run on JAX: the fused ops and
    ChannelSum against the C kernels."""
    pytest.importorskip("jax")
    from lasres.config import get_mode
    from lasres.ops.bn import BatchNormInferRelu, BatchNormReluTrainGrad, BatchNormTrainRelu
    from lasres.ops.reduce import channel_sum

    x = pt.tensor4("x")
    gr = x.type("gr")
    g, b = pt.vector("g"), pt.vector("b")
    r, mean, inv, scale = BatchNormTrainRelu()(x, g, b)
    grads = BatchNormReluTrainGrad()(x, gr, g, b, mean, scale, inv)
    ri = BatchNormInferRelu()(x, g, b, mean, inv)
    outs = [r, mean, inv, scale, ri, channel_sum(gr)] + list(grads)
    args = _train_relu_data((4, 3, 5, 5), "float32", 14)
    got = pytensor.function([x, g, b, gr], outs, mode=get_mode("jax"))(*args)
    want = pytensor.function([x, g, b, gr], outs, mode=C_MODE)(*args)
    for a, e in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), e, rtol=2e-5, atol=2e-5)


def test_serial_kernels_with_the_numpy_convolutions(monkeypatch):
    """With the NumPy convolution kernels (OpenBLAS's thread pool) the batch
    norm and channel-sum kernels run serially: a module of its own, the same
    values as the threaded one."""
    from lasres.ops import onednn
    from lasres.ops.reduce import channel_sum
    from lasres.ops.threads import openmp_threads

    shape = (64, 8, 16, 16)
    args = _data(shape, "float32", seed=15)
    x = pt.tensor4("x")
    threaded = _functions("float32", 4, C_MODE)(*args)
    sum_threaded = pytensor.function([x], channel_sum(x), mode=C_MODE)(args[0])
    monkeypatch.setattr(onednn, "_override", "numpy")
    assert not openmp_threads()
    assert BatchNormTrain().c_code_cache_version()[-1] == 0
    serial = _functions("float32", 4, C_MODE)(*args)
    sum_serial = pytensor.function([x], channel_sum(x), mode=C_MODE)(args[0])
    for a, e in zip(serial + [sum_serial], threaded + [sum_threaded]):
        np.testing.assert_array_equal(a, e)
