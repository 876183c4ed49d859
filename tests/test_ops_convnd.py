"""N-d convolution ops (lasres.ops.convnd) and 1D/3D pooling (lasres.ops.poolnd):
values against float64 loops over output positions, numerical gradients,
shape inference, errors, and the JAX implementation against NumPy."""
import itertools

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import verify_grad

from lasres.ops.convnd import ConvNd, ConvNdGradInputs, ConvNdGradWeights, conv3d, convnd
from lasres.ops.poolnd import pool1d, pool3d

RNG = np.random.default_rng(1234)


def _t(ndim):
    return pt.tensor(dtype="float64", shape=(None,) * ndim)


# ---------------------------------------------------------------------------
# independent float64 reference: loops over output positions
# ---------------------------------------------------------------------------

def ref_geometry(in_shape, k_shape, stride, pad, dilation):
    return tuple((i + 2 * p - (k - 1) * d - 1) // s + 1
                 for i, k, s, p, d in zip(in_shape, k_shape, stride, pad, dilation))


def ref_window(pos, k_shape, stride, dilation):
    """Index of the input taps read by output position ``pos`` (padded coords)."""
    return tuple(slice(o * s, o * s + (k - 1) * d + 1, d)
                 for o, k, s, d in zip(pos, k_shape, stride, dilation))


def ref_conv(x, w, stride, pad, dilation, flip):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    n = x.ndim - 2
    k = w[(Ellipsis,) + (slice(None, None, -1),) * n] if flip else w
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    out_shape = ref_geometry(x.shape[2:], w.shape[2:], stride, pad, dilation)
    out = np.zeros(x.shape[:1] + w.shape[:1] + out_shape)
    for pos in itertools.product(*(range(o) for o in out_shape)):
        patch = xp[(slice(None), slice(None)) + ref_window(pos, w.shape[2:], stride, dilation)]
        axes = list(range(1, n + 2))
        out[(slice(None), slice(None)) + pos] = np.tensordot(patch, k, axes=(axes, axes))
    return out


def ref_grads(x, w, gz, stride, pad, dilation, flip):
    """Gradients of sum(conv(x, w) * gz) w.r.t. x and w, by scattering."""
    x, w, gz = (np.asarray(a, np.float64) for a in (x, w, gz))
    n = x.ndim - 2
    flipper = (Ellipsis,) + (slice(None, None, -1),) * n
    k = w[flipper] if flip else w
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad))
    gxp, gk = np.zeros_like(xp), np.zeros_like(k)
    for pos in itertools.product(*(range(o) for o in gz.shape[2:])):
        idx = (slice(None), slice(None)) + ref_window(pos, w.shape[2:], stride, dilation)
        g = gz[(slice(None), slice(None)) + pos]
        gxp[idx] += np.tensordot(g, k, axes=(1, 0))
        gk += np.tensordot(g, xp[idx], axes=(0, 0))
    crop = (slice(None), slice(None)) + tuple(slice(p, p + i) for p, i in zip(pad, x.shape[2:]))
    return gxp[crop], (gk[flipper] if flip else gk)


# (x shape, w shape, stride, pad, dilation, flip)
CASES = [
    ((2, 3, 9), (4, 3, 3), (2,), (1,), (1,), True),
    ((2, 2, 11), (3, 2, 2), (1,), (0,), (3,), False),
    ((2, 2, 6, 7), (3, 2, 3, 2), (2, 1), (1, 0), (1, 2), True),
    ((2, 3, 5, 6, 7), (4, 3, 3, 3, 2), (1, 2, 1), (1, 1, 0), (1, 1, 2), True),
    ((1, 2, 4, 5, 6), (2, 2, 2, 3, 3), (2, 1, 2), (0, 2, 1), (1, 1, 1), False),
]


@pytest.mark.parametrize("xs, ws, stride, pad, dilation, flip", CASES)
def test_forward_and_gradients_match_loops(xs, ws, stride, pad, dilation, flip):
    n = len(xs) - 2
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    X, W = _t(n + 2), _t(n + 2)
    y = ConvNd(n, stride, pad, dilation, flip)(X, W)
    G = _t(n + 2)
    gx, gw = pytensor.grad(None, [X, W], known_grads={y: G})
    f = pytensor.function([X, W, G], [y, gx, gw])
    expected = ref_conv(x, w, stride, pad, dilation, flip)
    gz = RNG.standard_normal(expected.shape)
    out, dx, dw = f(x, w, gz)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    rx, rw = ref_grads(x, w, gz, stride, pad, dilation, flip)
    np.testing.assert_allclose(dx, rx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, rw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4]])
def test_verify_grad_all_three_ops(case):
    xs, ws, stride, pad, dilation, flip = case
    n = len(xs) - 2
    kw = dict(stride=stride, pad=pad, dilation=dilation, filter_flip=flip)
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)
    out_shape = xs[:1] + ws[:1] + ref_geometry(xs[2:], ws[2:], stride, pad, dilation)
    gz = RNG.standard_normal(out_shape)
    verify_grad(lambda a, b: ConvNd(n, **kw)(a, b), [x, w], rng=RNG)
    verify_grad(lambda g, b: ConvNdGradInputs(n, **kw)(g, b, xs[2:]), [gz, w], rng=RNG)
    verify_grad(lambda a, g: ConvNdGradWeights(n, **kw)(a, g, ws[2:]), [x, gz], rng=RNG)


def test_second_derivative_through_grad_ops():
    xs, ws, stride, pad, dilation, flip = CASES[2]
    x, w = RNG.standard_normal(xs), RNG.standard_normal(ws)

    def cost_grad_w(a, b):
        y = ConvNd(2, stride, pad, dilation, flip)(a, b)
        return pytensor.grad((y ** 2).sum(), b)
    verify_grad(cost_grad_w, [x, w], rng=RNG)


def test_infer_shape_without_running_the_op():
    X, W = _t(5), _t(5)
    y = ConvNd(3, (2, 1, 1), (1, 0, 2), (1, 2, 1))(X, W)
    f = pytensor.function([X, W], y.shape)
    x, w = np.zeros((2, 3, 7, 8, 5)), np.zeros((4, 3, 3, 2, 3))
    assert tuple(f(x, w)) == (2, 4) + ref_geometry((7, 8, 5), (3, 2, 3), (2, 1, 1), (1, 0, 2),
                                                   (1, 2, 1))
    assert not any(isinstance(node.op, ConvNd) for node in f.maker.fgraph.apply_nodes)
    # static shapes propagate
    ys = ConvNd(1, 2, 1)(pt.tensor(dtype="float64", shape=(2, 3, 9)),
                         pt.tensor(dtype="float64", shape=(4, 3, 3)))
    assert ys.type.shape == (2, 4, 5)


def test_errors():
    with pytest.raises(ValueError, match="empty"):
        ConvNd(1)(pt.tensor(dtype="float64", shape=(1, 1, 2)),
                  pt.tensor(dtype="float64", shape=(1, 1, 3)))
    with pytest.raises(ValueError, match="channels"):
        ConvNd(1)(pt.tensor(dtype="float64", shape=(1, 2, 5)),
                  pt.tensor(dtype="float64", shape=(1, 3, 3)))
    with pytest.raises(TypeError):
        ConvNd(2)(_t(3), _t(3))
    with pytest.raises(ValueError):
        ConvNd(2, stride=0)
    with pytest.raises(TypeError):
        ConvNd(2, pad=(1, 2, 3))


def test_convnd_and_conv3d_string_padding():
    x, w = RNG.standard_normal((1, 2, 5, 6, 4)), RNG.standard_normal((3, 2, 3, 3, 1))
    X = _t(5)
    W = pt.tensor(dtype="float64", shape=w.shape)
    same = pytensor.function([X, W], convnd(X, W, pad="same"))(x, w)
    np.testing.assert_allclose(same, ref_conv(x, w, (1,) * 3, (1, 1, 0), (1,) * 3, True),
                               atol=1e-12)
    full = pytensor.function([X, W], conv3d(X, W, border_mode="full", subsample=(2, 1, 1),
                                            filter_flip=False))(x, w)
    np.testing.assert_allclose(full, ref_conv(x, w, (2, 1, 1), (2, 2, 0), (1,) * 3, False),
                               atol=1e-12)


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------

def ref_pool(x, ws, stride, pad, mode, ignore_border):
    """Theano's pooling rule by loops: windows clipped to the padded input
    (partial windows at the end when ignore_border is False); max and
    average_exc_pad see only real pixels; average_inc_pad divides by the
    clipped window size including padding."""
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    lengths = x.shape[2:]
    padded = tuple(i + 2 * p for i, p in zip(lengths, pad))
    out_shape = []
    for L, k, s in zip(padded, ws, stride):
        if ignore_border:
            out_shape.append((L - k) // s + 1)
        elif s >= k:
            out_shape.append((L + s - 1) // s)
        else:
            out_shape.append(max(0, (L - k + s - 1) // s) + 1)
    out = np.zeros(x.shape[:2] + tuple(out_shape))
    for pos in itertools.product(*(range(o) for o in out_shape)):
        lo_inc = [o * s for o, s in zip(pos, stride)]
        hi_inc = [min(lo + k, L) for lo, k, L in zip(lo_inc, ws, padded)]
        lo = [max(a, p) - p for a, p in zip(lo_inc, pad)]
        hi = [min(b, p + i) - p for b, p, i in zip(hi_inc, pad, lengths)]
        region = x[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in zip(lo, hi))]
        axes = tuple(range(2, 2 + n))
        idx = (slice(None), slice(None)) + pos
        if mode == "max":
            out[idx] = region.max(axis=axes)
        elif mode == "sum":
            out[idx] = region.sum(axis=axes)
        elif mode == "average_exc_pad":
            out[idx] = region.mean(axis=axes)
        else:
            out[idx] = region.sum(axis=axes) / np.prod([b - a for a, b in zip(lo_inc, hi_inc)])
    return out


POOL3D = [
    ((2, 2, 5, 6, 7), (2, 2, 2), None, (0, 0, 0), True),
    ((2, 2, 5, 6, 7), (3, 2, 2), (2, 1, 2), (1, 1, 0), True),
    ((1, 3, 5, 7, 4), (2, 3, 2), (1, 2, 3), (0, 0, 0), False),
]


@pytest.mark.parametrize("mode", ["max", "sum", "average_inc_pad", "average_exc_pad"])
@pytest.mark.parametrize("xs, ws, stride, pad, ignore_border", POOL3D)
def test_pool3d_matches_loops(xs, ws, stride, pad, ignore_border, mode):
    x = RNG.standard_normal(xs)
    X = _t(5)
    y = pool3d(X, ws, stride, pad, mode, ignore_border)
    out = pytensor.function([X], y)(x)
    expected = ref_pool(x, ws, ws if stride is None else stride, pad, mode, ignore_border)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["max", "average_exc_pad"])
def test_pool3d_gradient(mode):
    x = RNG.standard_normal((1, 2, 4, 5, 3))
    verify_grad(lambda a: pool3d(a, (2, 3, 2), (1, 2, 1), (1, 1, 0), mode), [x], rng=RNG)


def test_pool3d_static_shape_and_errors():
    y = pool3d(pt.tensor(dtype="float64", shape=(2, 3, 5, 6, 7)), 2)
    assert y.type.shape == (2, 3, 2, 3, 3)
    with pytest.raises(TypeError):
        pool3d(_t(4), 2)
    with pytest.raises(ValueError):
        pool3d(_t(5), (2, 2))


@pytest.mark.parametrize("mode", ["max", "average_inc_pad"])
def test_pool1d_matches_loops(mode):
    x = RNG.standard_normal((2, 3, 11))
    X = _t(3)
    for ws, stride, pad, ib in [(3, 2, 1, True), (3, 2, 0, False), (4, None, 0, True)]:
        out = pytensor.function([X], pool1d(X, ws, stride, pad, mode, ib))(x)
        expected = ref_pool(x, (ws,), (ws if stride is None else stride,), (pad,), mode, ib)
        np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------------------
# JAX against NumPy
# ---------------------------------------------------------------------------

# PyTensor's JAX backend asks for 64-bit dtypes; with x64 disabled JAX warns
# that it truncates them (float32 throughout, as on a GPU).
@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
@pytest.mark.parametrize("static", [False, True], ids=["dynamic-shapes", "static-shapes"])
@pytest.mark.parametrize("case", [CASES[0], CASES[3]])
def test_jax_matches_numpy(case, static):
    pytest.importorskip("jax")
    xs, ws, stride, pad, dilation, flip = case
    n = len(xs) - 2
    x = RNG.standard_normal(xs).astype("float32")
    w = RNG.standard_normal(ws).astype("float32")
    X = pt.tensor(dtype="float32", shape=xs if static else (None,) * len(xs))
    W = pt.tensor(dtype="float32", shape=ws if static else (None,) * len(ws))
    y = ConvNd(n, stride, pad, dilation, flip)(X, W)
    cost = (y ** 2).sum()
    if n == 3 and static:   # pool3d under JAX needs static shapes
        cost = cost + pool3d(y, 2, mode="average_exc_pad").sum()
    gx = pytensor.grad(cost, X)
    outs = [y] + pytensor.grad(cost, [X, W]) + pytensor.grad((gx ** 2).sum(), [W])
    ref = pytensor.function([X, W], outs)(x, w)
    got = pytensor.function([X, W], outs, mode="JAX")(x, w)
    for a, b in zip(got, ref):
        assert np.asarray(a).shape == b.shape
        # float32 against float32 in another summation order: an entry that
        # cancels (|b| << the tensor's scale) is judged against the scale
        np.testing.assert_allclose(np.asarray(a), b, rtol=2e-4,
                                   atol=max(2e-3, 1e-5 * float(np.abs(b).max())))
