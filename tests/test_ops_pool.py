"""Pooling ops: forward and gradients against direct-loop float64 references
(Theano semantics), numerical gradient checks, shape inference, float32
handling and the JAX implementation."""
import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad

from lasres.ops import pool_numpy
from lasres.ops.pool import Pool2d, Pool2dGrad, Pool2dGradGrad, pool2d

C_MODE = Mode(linker="cvm", optimizer="fast_run")
MODES = ["max", "sum", "average_inc_pad", "average_exc_pad"]


# ---------------------------------------------------------------------------
# independent reference: loops over output positions, float64
# ---------------------------------------------------------------------------

def _ref_out_len(n, ws, st, pad, ignore_border):
    if ignore_border:
        return max(0, (n + 2 * pad - ws) // st + 1)
    if st >= ws:
        return (n - 1) // st + 1
    return max(0, (n - 1 - ws + st) // st) + 1


def _ref_windows(shape, ws, st, pad, ignore_border):
    """Yield (i, j, real rows slice, real cols slice, counted window size)."""
    h, w = shape[2:]
    oh = _ref_out_len(h, ws[0], st[0], pad[0], ignore_border)
    ow = _ref_out_len(w, ws[1], st[1], pad[1], ignore_border)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * st[0] - pad[0], j * st[1] - pad[1]
            r1, c1 = r0 + ws[0], c0 + ws[1]
            if not ignore_border:           # partial windows hold fewer pixels
                r1, c1 = min(r1, h), min(c1, w)
            rows, cols = slice(max(r0, 0), min(r1, h)), slice(max(c0, 0), min(c1, w))
            yield i, j, rows, cols, (r1 - r0) * (c1 - c0)


def ref_pool(x, ws, st, pad, mode, ignore_border):
    x = np.asarray(x, np.float64)
    h, w = x.shape[2:]
    out = np.zeros(x.shape[:2] + (_ref_out_len(h, ws[0], st[0], pad[0], ignore_border),
                                  _ref_out_len(w, ws[1], st[1], pad[1], ignore_border)))
    for i, j, rows, cols, inc_count in _ref_windows(x.shape, ws, st, pad, ignore_border):
        win = x[:, :, rows, cols]
        if mode == "max":
            out[:, :, i, j] = win.max(axis=(2, 3))
        elif mode == "sum":
            out[:, :, i, j] = win.sum(axis=(2, 3))
        elif mode == "average_exc_pad":
            out[:, :, i, j] = win.mean(axis=(2, 3))
        else:
            out[:, :, i, j] = win.sum(axis=(2, 3)) / inc_count
    return out


def ref_pool_grad(x, gz, ws, st, pad, mode, ignore_border):
    """Theano's gradient: max routes to every position equal to the maximum."""
    x, gz = np.asarray(x, np.float64), np.asarray(gz, np.float64)
    gx = np.zeros_like(x)
    for i, j, rows, cols, inc_count in _ref_windows(x.shape, ws, st, pad, ignore_border):
        win = x[:, :, rows, cols]
        g = gz[:, :, i, j][:, :, None, None]
        if mode == "max":
            gx[:, :, rows, cols] += g * (win == win.max(axis=(2, 3), keepdims=True))
        elif mode == "sum":
            gx[:, :, rows, cols] += g
        elif mode == "average_exc_pad":
            gx[:, :, rows, cols] += g / (win.shape[2] * win.shape[3])
        else:
            gx[:, :, rows, cols] += g / inc_count
    return gx


# (input shape, ws, stride, pad, ignore_border)
GEOMETRIES = [
    ((2, 3, 6, 6), (2, 2), None, (0, 0), True),
    ((2, 2, 7, 8), (3, 3), (2, 2), (1, 1), True),
    ((1, 2, 7, 6), (3, 2), (1, 2), (2, 1), True),
    ((2, 2, 7, 5), (2, 3), (2, 2), (0, 0), False),
    ((1, 3, 8, 7), (3, 3), (2, 1), (0, 0), False),
    ((2, 2, 5, 5), (2, 2), (3, 3), (0, 0), False),
    ((2, 3, 4, 4), (4, 4), None, (0, 0), True),
]


def _geom_id(g):
    shape, ws, st, pad, ib = g
    return f"ws{ws[0]}{ws[1]}-st{st[0] if st else 'ws'}{st[1] if st else ''}-p{pad[0]}{pad[1]}-ib{int(ib)}"


def _distinct_values(shape, rng):
    """Random values without ties (max pooling is smooth around them)."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1
            + rng.uniform(0, 0.01, size=shape))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("geom", GEOMETRIES, ids=_geom_id)
def test_forward_and_gradient_match_reference(geom, mode):
    rng = np.random.default_rng(0)
    shape, ws, st, pad, ib = geom
    x = rng.normal(size=shape)
    xt, r = pt.dtensor4("x"), pt.dtensor4("r")
    y = pool2d(xt, ws=ws, stride=st, pad=pad, mode=mode, ignore_border=ib)
    f = pytensor.function([xt, r], [y, pytensor.grad((y * r).sum(), xt)], mode=C_MODE)
    st = st or ws
    expected = ref_pool(x, ws, st, pad, mode, ib)
    rv = rng.normal(size=expected.shape)
    out, gx = f(x, rv)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gx, ref_pool_grad(x, rv, ws, st, pad, mode, ib),
                               rtol=1e-12, atol=1e-12)


def test_numpy_kernels_random_configurations():
    rng = np.random.default_rng(1)
    for trial in range(150):
        ws = tuple(int(v) for v in rng.integers(1, 4, size=2))
        st = tuple(int(v) for v in rng.integers(1, 4, size=2))
        ib = bool(trial % 2)
        pad = tuple(int(rng.integers(0, w)) for w in ws) if ib else (0, 0)
        mode = MODES[trial % 4]
        x = rng.normal(size=(2, 2) + tuple(int(v) for v in rng.integers(1, 9, size=2)))
        if trial % 5 == 0:
            x = np.round(x)                     # ties
        y = pool_numpy.pool2d_forward_numpy(x, ws, st, pad, mode, ib)
        np.testing.assert_allclose(y, ref_pool(x, ws, st, pad, mode, ib), atol=1e-12)
        gz = rng.normal(size=y.shape)
        np.testing.assert_allclose(pool_numpy.pool2d_grad_numpy(x, y, gz, ws, st, pad, mode, ib),
                                   ref_pool_grad(x, gz, ws, st, pad, mode, ib), atol=1e-12)


def test_max_gradient_goes_to_every_tied_maximum():
    x = np.array([[[[1., 3., 3., 0.],
                    [3., 2., 1., 3.],
                    [0., 0., 5., 5.],
                    [0., 0., 5., 4.]]]])
    xt = pt.dtensor4("x")
    f = pytensor.function([xt], pytensor.grad(pool2d(xt, ws=(2, 2)).sum(), xt), mode=C_MODE)
    # the bottom-left window is all zeros: its four pixels tie
    np.testing.assert_array_equal(f(x), [[[[0, 1, 1, 0], [1, 0, 0, 1],
                                           [1, 1, 1, 1], [1, 1, 1, 0]]]])


@pytest.mark.parametrize("mode", MODES)
def test_verify_grad_pool2d(mode):
    rng = np.random.default_rng(2)
    for shape, ws, st, pad, ib in [((2, 2, 7, 6), (3, 2), (2, 1), (1, 1), True),
                                   ((1, 2, 5, 7), (2, 3), (2, 2), (0, 0), False)]:
        x = _distinct_values(shape, rng)
        verify_grad(lambda v: pool2d(v, ws=ws, stride=st, pad=pad, mode=mode, ignore_border=ib),
                    [x], rng=rng, mode=C_MODE)


@pytest.mark.parametrize("mode", MODES)
def test_verify_grad_of_gradient_ops(mode):
    """Pool2dGrad (and Pool2dGradGrad for max) differentiate in the output grad."""
    rng = np.random.default_rng(3)
    props = dict(ws=(3, 2), stride=(2, 1), pad=(1, 1), mode=mode, ignore_border=True)
    x = _distinct_values((2, 2, 6, 5), rng)
    z = pool_numpy.pool2d_forward_numpy(x, (3, 2), (2, 1), (1, 1), mode, True)
    gz = rng.normal(size=z.shape)
    if mode == "max":
        verify_grad(lambda g: Pool2dGrad(**props)(x, z, g), [gz], rng=rng, mode=C_MODE)
        ggx = rng.normal(size=x.shape)
        verify_grad(lambda g: Pool2dGradGrad(ws=(3, 2), stride=(2, 1), pad=(1, 1))(x, z, g),
                    [ggx], rng=rng, mode=C_MODE)
    else:
        verify_grad(lambda g: Pool2dGrad(**props)(x, g), [gz], rng=rng, mode=C_MODE)


def test_second_derivative_max_pool():
    """d/dr of ||d pool(x) . r / dx||^2 equals its finite difference."""
    rng = np.random.default_rng(4)
    xt, rt = pt.dtensor4("x"), pt.dtensor4("r")
    y = pool2d(xt, ws=(2, 3), stride=(1, 2), pad=(1, 1))
    gx = pytensor.grad((y * rt).sum(), xt)
    cost = ((gx * xt) ** 2).sum()
    f = pytensor.function([xt, rt], [cost, pytensor.grad(cost, rt)], mode=C_MODE)
    x = _distinct_values((1, 2, 5, 6), rng)
    r = rng.normal(size=ref_pool(x, (2, 3), (1, 2), (1, 1), "max", True).shape)
    _, g = f(x, r)
    d = rng.normal(size=r.shape)
    num = (f(x, r + 1e-5 * d)[0] - f(x, r - 1e-5 * d)[0]) / 2e-5
    np.testing.assert_allclose((g * d).sum(), num, rtol=1e-6)


@pytest.mark.parametrize("geom", [GEOMETRIES[1], GEOMETRIES[3], GEOMETRIES[5]], ids=_geom_id)
def test_infer_shape(geom):
    shape, ws, st, pad, ib = geom
    xt, gz = pt.dtensor4("x"), pt.dtensor4("gz")
    y = pool2d(xt, ws=ws, stride=st, pad=pad, mode="max", ignore_border=ib)
    gx_max = Pool2dGrad(ws=ws, stride=st, pad=pad, mode="max", ignore_border=ib)(xt, y, gz)
    gx_avg = Pool2dGrad(ws=ws, stride=st, pad=pad, mode="average_exc_pad",
                        ignore_border=ib)(xt, gz)
    ggz = Pool2dGradGrad(ws=ws, stride=st, pad=pad, ignore_border=ib)(xt, y, xt)
    outs = [y, gx_max, gx_avg, ggz]
    f_shape = pytensor.function([xt, gz], [o.shape for o in outs], mode=C_MODE,
                                on_unused_input="ignore")
    assert not any(isinstance(n.op, (Pool2d, Pool2dGrad, Pool2dGradGrad))
                   for n in f_shape.maker.fgraph.apply_nodes)
    rng = np.random.default_rng(5)
    x = rng.normal(size=shape)
    gzv = rng.normal(size=ref_pool(x, ws, st or ws, pad, "max", ib).shape)
    values = pytensor.function([xt, gz], outs, mode=C_MODE)(x, gzv)
    for s, v in zip(f_shape(x, gzv), values):
        assert tuple(s) == v.shape


def test_static_shape_and_float32():
    xt = pt.tensor("x", dtype="float32", shape=(None, 4, 9, 8))
    y = pool2d(xt, ws=(3, 3), stride=(2, 2), pad=(1, 1), mode="average_exc_pad")
    assert y.type.shape == (None, 4, 5, 4) and y.dtype == "float32"
    y2 = pool2d(xt, ws=(2, 2), ignore_border=False)
    assert y2.type.shape == (None, 4, 5, 4)
    ys = [pool2d(xt, ws=(3, 3), stride=(2, 2), pad=(1, 1), mode=m) for m in MODES]
    cost = sum((v ** 2).sum() for v in ys)
    f = pytensor.function([xt], ys + [pytensor.grad(cost, xt)], mode=C_MODE)
    wide = [v for v in f.maker.fgraph.variables
            if getattr(v.type, "dtype", None) == "float64" and v.type.ndim > 0]
    assert not wide, wide
    x = np.random.default_rng(6).normal(size=(2, 4, 9, 8)).astype("float32")
    out = f(x)
    assert all(o.dtype == np.float32 for o in out)
    for m, o in zip(MODES, out):
        np.testing.assert_allclose(o, ref_pool(x, (3, 3), (2, 2), (1, 1), m, True),
                                   rtol=1e-5, atol=1e-5)


def test_errors():
    x = pt.dtensor4()
    with pytest.raises(ValueError):
        pool2d(x, ws=(2, 2), pad=(2, 0))
    with pytest.raises(ValueError):
        pool2d(x, mode="median")
    with pytest.raises(NotImplementedError):
        pool2d(x, ws=(3, 3), pad=(1, 1), ignore_border=False)
    with pytest.raises(TypeError):
        pool2d(pt.dmatrix())
    with pytest.raises(TypeError):
        Pool2dGrad(mode="max")(x, x)


# ---------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------

# PyTensor's JAX backend asks for 64-bit dtypes (the float64 accumulator of
# float32 sums, int64 shape vectors); with x64 disabled (floatX=float32) JAX
# warns that it truncates them.
jax_x64_warning = pytest.mark.filterwarnings("ignore:Explicitly requested dtype")

@jax_x64_warning
@pytest.mark.parametrize("geom", [GEOMETRIES[1], GEOMETRIES[2], GEOMETRIES[3], GEOMETRIES[6]],
                         ids=_geom_id)
def test_jax_matches_c_backend(geom):
    pytest.importorskip("jax")
    shape, ws, st, pad, ib = geom
    rng = np.random.default_rng(7)
    x = _distinct_values(shape, rng).astype("float32")
    xt = pt.tensor("x", dtype="float32", shape=(None,) * 4)
    ys = [pool2d(xt, ws=ws, stride=st, pad=pad, mode=m, ignore_border=ib) for m in MODES]
    rs = [pt.ftensor4(f"r{k}") for k in range(len(MODES))]
    cost = sum((y * r).sum() for y, r in zip(ys, rs))
    gx = pytensor.grad(cost, xt)
    # second order through Pool2dGrad / Pool2dGradGrad
    gg = pytensor.grad((gx ** 2).sum(), rs)
    # a mean needs the (inferred) pooled shape inside the JAX program
    gm = pytensor.grad(sum((y ** 2).mean() for y in ys), xt)
    outs = ys + [gx, gm] + gg
    rv = [rng.normal(size=ref_pool(x, ws, st or ws, pad, m, ib).shape).astype("float32")
          for m in MODES]
    expected = pytensor.function([xt] + rs, outs, mode=C_MODE)(x, *rv)
    got = pytensor.function([xt] + rs, outs, mode="JAX")(x, *rv)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-5)
