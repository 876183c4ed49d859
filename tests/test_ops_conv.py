"""Convolution ops: forward and gradients against direct-loop float64
references, numerical gradient checks (first and second order), shape
inference, float32 handling and the JAX implementation."""
import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad

from lasres.ops import conv_numpy
from lasres.ops._args import normalize_pad
from lasres.ops import onednn
from lasres.ops.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights, conv2d

C_MODE = Mode(linker="cvm", optimizer="fast_run")


# ---------------------------------------------------------------------------
# independent reference: loops over output positions, float64
# ---------------------------------------------------------------------------

def _ref_pad(pad, kh, kw):
    if pad == "valid":
        return 0, 0
    if pad == "same":
        return kh // 2, kw // 2
    if pad == "full":
        return kh - 1, kw - 1
    if isinstance(pad, int):
        return pad, pad
    return tuple(pad)


def _ref_geometry(x_shape, w_shape, stride, pad):
    kh, kw = w_shape[2:]
    ph, pw = _ref_pad(pad, kh, kw)
    oh = (x_shape[2] + 2 * ph - kh) // stride[0] + 1
    ow = (x_shape[3] + 2 * pw - kw) // stride[1] + 1
    return ph, pw, oh, ow


def ref_conv(x, w, b, stride, pad, flip):
    """out[n, f, i, j] = sum_{c,u,v} xpad[n, c, i*sh+u, j*sw+v] * k[f, c, u, v]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    kh, kw = w.shape[2:]
    ph, pw, oh, ow = _ref_geometry(x.shape, w.shape, stride, pad)
    k = w[:, :, ::-1, ::-1] if flip else w
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            out[:, :, i, j] = np.tensordot(patch, k, axes=([1, 2, 3], [1, 2, 3]))
    if b is not None:
        out += np.asarray(b, np.float64)[None, :, None, None]
    return out


def ref_conv_grads(x, w, gz, stride, pad, flip):
    """Gradients of sum(conv(x, w) * gz) w.r.t. x and w, by scattering."""
    x, w, gz = (np.asarray(a, np.float64) for a in (x, w, gz))
    kh, kw = w.shape[2:]
    ph, pw, oh, ow = _ref_geometry(x.shape, w.shape, stride, pad)
    k = w[:, :, ::-1, ::-1] if flip else w
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    gxp, gk = np.zeros_like(xp), np.zeros_like(k)
    for i in range(oh):
        for j in range(ow):
            rs = slice(i * stride[0], i * stride[0] + kh)
            cs = slice(j * stride[1], j * stride[1] + kw)
            gxp[:, :, rs, cs] += np.tensordot(gz[:, :, i, j], k, axes=(1, 0))
            gk += np.tensordot(gz[:, :, i, j], xp[:, :, rs, cs], axes=(0, 0))
    gx = gxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    gw = gk[:, :, ::-1, ::-1] if flip else gk
    return gx, gw


# (x shape, w shape, stride, pad, filter_flip, with bias)
CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), "same", True, True),
    ((2, 2, 8, 9), (3, 2, 3, 3), (2, 2), 1, False, False),
    ((1, 3, 9, 7), (2, 3, 3, 3), (3, 3), "valid", True, False),
    ((2, 4, 5, 5), (3, 4, 1, 1), (1, 1), "valid", True, True),
    ((2, 4, 7, 8), (3, 4, 1, 1), (2, 2), (0, 0), False, True),
    ((1, 2, 5, 6), (2, 2, 1, 1), (1, 2), 1, True, False),
    ((2, 2, 6, 6), (3, 2, 2, 2), (1, 1), "same", False, True),
    ((1, 2, 8, 7), (2, 2, 4, 3), (3, 2), "full", True, True),
    ((2, 3, 9, 8), (2, 3, 3, 5), (2, 1), (2, 0), False, False),
    ((1, 2, 12, 11), (3, 2, 5, 5), (3, 3), 0, True, False),
    ((1, 1, 7, 6), (2, 1, 2, 4), (3, 2), (1, 3), False, True),
    ((2, 2, 4, 5), (2, 2, 4, 5), (1, 1), "valid", True, True),
    ((1, 2, 4, 4), (2, 2, 2, 2), (2, 2), (2, 2), True, False),
]


def _case_id(case):
    xs, ws, stride, pad, flip, bias = case
    return f"k{ws[2]}x{ws[3]}-s{stride[0]}{stride[1]}-p{pad}-flip{int(flip)}-b{int(bias)}"


def _case_values(case, rng, dtype="float64"):
    xs, ws, stride, pad, flip, bias = case
    x = rng.normal(size=xs).astype(dtype)
    w = rng.normal(size=ws).astype(dtype)
    b = rng.normal(size=ws[0]).astype(dtype) if bias else None
    return x, w, b


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_and_gradients_match_reference(case):
    rng = np.random.default_rng(0)
    xs, ws, stride, pad, flip, bias = case
    x, w, b = _case_values(case, rng)
    xt, wt, bt = pt.dtensor4("x"), pt.dtensor4("w"), pt.dvector("b")
    y = conv2d(xt, wt, bt if bias else None, stride=stride, pad=pad, filter_flip=flip)
    r = pt.dtensor4("r")
    wrt = [xt, wt] + ([bt] if bias else [])
    grads = pytensor.grad((y * r).sum(), wrt)
    f = pytensor.function([xt, wt, r] + ([bt] if bias else []), [y] + grads, mode=C_MODE)

    expected = ref_conv(x, w, b, stride, pad, flip)
    rv = rng.normal(size=expected.shape)
    out = f(x, w, rv, *([b] if bias else []))
    assert out[0].shape == expected.shape
    np.testing.assert_allclose(out[0], expected, rtol=1e-10, atol=1e-10)
    gx, gw = ref_conv_grads(x, w, rv, stride, pad, flip)
    np.testing.assert_allclose(out[1], gx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out[2], gw, rtol=1e-10, atol=1e-10)
    if bias:
        np.testing.assert_allclose(out[3], rv.sum(axis=(0, 2, 3)), rtol=1e-10)


def test_matches_scipy_convolve_and_correlate():
    scipy_signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 3, 6, 7)), rng.normal(size=(2, 3, 3, 2))
    for flip, fn in ((True, scipy_signal.convolve2d), (False, scipy_signal.correlate2d)):
        for pad, smode in (("valid", "valid"), ("full", "full")):
            got = conv_numpy.conv2d_forward_numpy(
                x, w, None, (1, 1), normalize_pad(pad), flip)
            want = np.array([[sum(fn(x[n, c], w[f, c], mode=smode) for c in range(3))
                              for f in range(2)] for n in range(2)])
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_numpy_kernels_random_configurations(monkeypatch):
    """Many random geometries (and batch chunkings) straight on the kernels."""
    rng = np.random.default_rng(2)
    checked = 0
    for trial in range(120):
        kh, kw = rng.integers(1, 5, size=2)
        stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
        pad = [(0, 0), "same", "full", tuple(int(p) for p in rng.integers(0, 4, size=2))][trial % 4]
        h, wd = rng.integers(1, 11, size=2)
        n, c, f = rng.integers(1, 5, size=3)
        ph, pw = _ref_pad(pad, kh, kw)
        if h + 2 * ph < kh or wd + 2 * pw < kw:
            continue
        monkeypatch.setattr(conv_numpy, "CHUNK_BYTES", int(rng.choice([1, 2000, 1 << 21])))
        flip = bool(trial % 3)
        x, w = rng.normal(size=(n, c, h, wd)), rng.normal(size=(f, c, kh, kw))
        kw_args = dict(stride=stride, pad=normalize_pad(pad), filter_flip=flip)
        y = conv_numpy.conv2d_forward_numpy(x, w, None, **kw_args)
        np.testing.assert_allclose(y, ref_conv(x, w, None, stride, pad, flip), atol=1e-10)
        gz = rng.normal(size=y.shape)
        gx_ref, gw_ref = ref_conv_grads(x, w, gz, stride, pad, flip)
        np.testing.assert_allclose(
            conv_numpy.conv2d_grad_inputs_numpy(gz, w, (h, wd), **kw_args), gx_ref, atol=1e-10)
        np.testing.assert_allclose(
            conv_numpy.conv2d_grad_weights_numpy(x, gz, (kh, kw), **kw_args), gw_ref, atol=1e-10)
        checked += 1
    assert checked > 80


VG_CASES = [
    ((1, 1), "valid", True, True),
    ((1, 1), "same", False, False),
    ((1, 1), "full", True, False),
    ((2, 2), 1, True, True),
    ((2, 3), (1, 0), False, True),
    ((3, 3), "same", True, False),
    ((3, 2), "full", False, True),
    ((2, 2), (2, 1), False, False),
]


@pytest.mark.parametrize("stride,pad,flip,bias", VG_CASES)
def test_verify_grad_conv2d(stride, pad, flip, bias):
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(2, 2, 7, 6)), rng.normal(size=(3, 2, 3, 2)), rng.normal(size=3)
    if bias:
        verify_grad(lambda x, w, b: conv2d(x, w, b, stride=stride, pad=pad, filter_flip=flip),
                    [x, w, b], rng=rng, mode=C_MODE)
    else:
        verify_grad(lambda x, w: conv2d(x, w, stride=stride, pad=pad, filter_flip=flip),
                    [x, w], rng=rng, mode=C_MODE)


@pytest.mark.parametrize("stride,pad,flip", [((1, 1), "same", True), ((2, 2), 0, False),
                                             ((2, 3), "full", True)])
def test_verify_grad_of_gradient_ops(stride, pad, flip):
    """The grad ops are differentiable too (second derivatives)."""
    rng = np.random.default_rng(4)
    in_hw, k_hw = (8, 7), (3, 2)
    x, w = rng.normal(size=(2, 2) + in_hw), rng.normal(size=(3, 2) + k_hw)
    y = conv_numpy.conv2d_forward_numpy(x, w, None, stride, normalize_pad(pad), flip)
    gz = rng.normal(size=y.shape)
    props = dict(stride=stride, pad=pad, filter_flip=flip)
    verify_grad(lambda g, w: Conv2dGradInputs(**props)(g, w, in_hw), [gz, w], rng=rng,
                mode=C_MODE)
    verify_grad(lambda x, g: Conv2dGradWeights(**props)(x, g, k_hw), [x, gz], rng=rng,
                mode=C_MODE)


def test_second_derivative_matches_finite_differences():
    """d/dw of ||d conv / dx||^2 through all three ops, unknown static shapes."""
    rng = np.random.default_rng(5)
    xt, wt = pt.dtensor4("x"), pt.dtensor4("w")
    y = conv2d(xt, wt, stride=2, pad=1)
    gx = pytensor.grad((y ** 2).sum(), xt)
    cost = (gx ** 2).sum()
    f = pytensor.function([xt, wt], [cost, pytensor.grad(cost, wt)], mode=C_MODE)
    x, w = rng.normal(size=(1, 2, 6, 5)), rng.normal(size=(2, 2, 3, 3))
    _, g = f(x, w)
    d = rng.normal(size=w.shape)
    eps = 1e-5
    num = (f(x, w + eps * d)[0] - f(x, w - eps * d)[0]) / (2 * eps)
    np.testing.assert_allclose((g * d).sum(), num, rtol=1e-6)


def _contains_op(fn, op_types):
    return any(isinstance(node.op, op_types) for node in fn.maker.fgraph.apply_nodes)


@pytest.mark.parametrize("case", [CASES[1], CASES[7], CASES[10]], ids=_case_id)
def test_infer_shape(case):
    rng = np.random.default_rng(6)
    xs, ws, stride, pad, flip, bias = case
    x, w, _ = _case_values(case, rng)
    xt, wt = pt.dtensor4("x"), pt.dtensor4("w")
    y = conv2d(xt, wt, stride=stride, pad=pad, filter_flip=flip)
    gz = pt.dtensor4("gz")
    props = dict(stride=stride, pad=pad, filter_flip=flip)
    outs = [y,
            Conv2dGradInputs(**props)(gz, wt, xt),             # shape donor
            Conv2dGradInputs(**props)(gz, wt, xs[2:]),         # constant shape
            Conv2dGradInputs(**props)(gz, wt, xt.shape[2:]),   # symbolic shape
            Conv2dGradWeights(**props)(xt, gz, wt),
            Conv2dGradWeights(**props)(xt, gz, ws[2:])]
    f_shape = pytensor.function([xt, wt, gz], [o.shape for o in outs], mode=C_MODE,
                                on_unused_input="ignore")
    assert not _contains_op(f_shape, (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
    f = pytensor.function([xt, wt, gz], outs, mode=C_MODE)
    gzv = rng.normal(size=ref_conv(x, w, None, stride, pad, flip).shape)
    for shape, value in zip(f_shape(x, w, gzv), f(x, w, gzv)):
        assert tuple(shape) == value.shape


def test_static_shapes_and_shape_arguments():
    xt = pt.tensor("x", dtype="float32", shape=(None, 3, 32, 32))
    wt = pt.tensor("w", dtype="float32", shape=(16, 3, 3, 3))
    y = conv2d(xt, wt, stride=2, pad="same")
    assert y.type.shape == (None, 16, 16, 16)
    assert y.owner.op.pad == (1, 1)                       # resolved statically
    gx, gw = pytensor.grad(y.sum(), [xt, wt])
    gx_node = [v for v in pytensor.graph.traversal.ancestors([gx])
               if v.owner is not None and isinstance(v.owner.op, Conv2dGradInputs)][0].owner
    assert isinstance(gx_node.inputs[2], pt.TensorConstant)      # static (h, w) known
    assert gx.type.shape == (None, 3, 32, 32) and gw.type.shape == (16, 3, 3, 3)
    # unknown filter shape: the pad stays symbolic and is resolved at run time
    y2 = conv2d(xt, pt.ftensor4("w2"), pad="full")
    assert y2.owner.op.pad == "full"


def test_float32_stays_float32():
    xt, wt, bt = pt.ftensor4("x"), pt.ftensor4("w"), pt.fvector("b")
    y = conv2d(xt, wt, bt, stride=2, pad=1)
    assert y.dtype == "float32"
    grads = pytensor.grad((y ** 2).sum(), [xt, wt, bt])
    f = pytensor.function([xt, wt, bt], [y] + grads, mode=C_MODE)
    wide = [v for v in f.maker.fgraph.variables
            if getattr(v.type, "dtype", None) == "float64" and v.type.ndim > 0]
    assert not wide, wide
    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, 4, 9, 9)).astype("float32")
    w = rng.normal(size=(5, 4, 3, 3)).astype("float32")
    b = rng.normal(size=5).astype("float32")
    out = f(x, w, b)
    assert all(o.dtype == np.float32 for o in out)
    np.testing.assert_allclose(out[0], ref_conv(x, w, b, (2, 2), 1, True), rtol=1e-4, atol=1e-4)


def test_filters_cast_to_input_dtype():
    y = conv2d(pt.ftensor4("x"), pt.dtensor4("w"), pt.dvector("b"))
    assert y.dtype == "float32"
    assert all(i.dtype == "float32" for i in y.owner.inputs)


def test_errors():
    with pytest.raises(ValueError):
        conv2d(pt.tensor("x", shape=(None, 3, 8, 8)), pt.tensor("w", shape=(4, 2, 3, 3)))
    with pytest.raises(ValueError):
        conv2d(pt.tensor("x", shape=(None, 3, 2, 8)), pt.tensor("w", shape=(4, 3, 3, 3)))
    with pytest.raises(ValueError):
        conv2d(pt.tensor("x", shape=(None, 3, 8, 8)), pt.tensor("w", shape=(4, 3, 3, 3)),
               pt.tensor("b", shape=(5,)))
    with pytest.raises(ValueError):
        conv2d(pt.dtensor4(), pt.dtensor4(), pad="half-ish")
    with pytest.raises(ValueError):
        conv2d(pt.dtensor4(), pt.dtensor4(), stride=0)
    with pytest.raises(ValueError):
        conv2d(pt.dtensor4(), pt.dtensor4(), pad=-1)
    with pytest.raises(TypeError):
        conv2d(pt.dmatrix(), pt.dtensor4())
    with pytest.raises(TypeError):
        conv2d(pt.itensor4(), pt.dtensor4())
    f = pytensor.function(*(lambda x, w: ([x, w], conv2d(x, w)))(pt.dtensor4(), pt.dtensor4()),
                          mode=C_MODE)
    with pytest.raises(ValueError, match="channels"):
        f(np.zeros((1, 2, 5, 5)), np.zeros((1, 3, 3, 3)))
    with pytest.raises(ValueError, match="empty"):
        f(np.zeros((1, 2, 2, 5)), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="bias"):
        conv_numpy.conv2d_forward_numpy(np.zeros((1, 2, 5, 5)), np.zeros((3, 2, 3, 3)),
                                         np.zeros(2))
    gi = Conv2dGradInputs(stride=2)
    with pytest.raises(ValueError):
        gi(pt.tensor("g", shape=(1, 2, 4, 4)), pt.tensor("w", shape=(2, 3, 3, 3)), (3, 3))


def test_pushforward():
    rng = np.random.default_rng(8)
    xt, wt, bt = pt.dtensor4("x"), pt.dtensor4("w"), pt.dvector("b")
    dx, dw, db = xt.type("dx"), wt.type("dw"), bt.type("db")
    y = conv2d(xt, wt, bt, stride=2, pad="same")
    jvp = pytensor.gradient.pushforward(y, [xt, wt, bt], [dx, dw, db])
    f = pytensor.function([xt, wt, bt, dx, dw, db], jvp, mode=C_MODE)
    x, w, b = rng.normal(size=(2, 2, 5, 6)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
    d = [rng.normal(size=a.shape) for a in (x, w, b)]
    eps = 1e-6
    num = (ref_conv(x + eps * d[0], w + eps * d[1], b + eps * d[2], (2, 2), "same", True)
           - ref_conv(x - eps * d[0], w - eps * d[1], b - eps * d[2], (2, 2), "same", True)
           ) / (2 * eps)
    np.testing.assert_allclose(f(x, w, b, *d), num, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------
# both kernel families of the C backend (float32): oneDNN and NumPy
# ---------------------------------------------------------------------------

def _onednn_expected():
    """oneDNN must be there wherever its wheel exists (x86-64 Linux, as in CI)."""
    import platform
    import sys
    return sys.platform.startswith("linux") and platform.machine() == "x86_64"


@pytest.fixture(params=["numpy", "onednn"])
def kernel_path(request, monkeypatch):
    """Compile the float32 convolutions with one kernel family."""
    if request.param == "onednn" and onednn._library_paths() is None:
        if _onednn_expected():
            pytest.fail("oneDNN (onednn-cpu-gomp / onednn-devel-cpu-gomp 2023.2.0) is not "
                        "installed: pip install -e . installs it on x86-64 Linux")
        pytest.skip("no oneDNN wheel for this platform")
    monkeypatch.setattr(onednn, "_override", request.param)
    return request.param


def _assert_conv_kernels(fn, path):
    """The conv nodes of ``fn`` run C thunks exactly on the oneDNN path."""
    conv_ops = (Conv2d, Conv2dGradInputs, Conv2dGradWeights)
    kinds = {hasattr(thunk, "cthunk")
             for node, thunk in zip(fn.maker.fgraph.toposort(), fn.vm.thunks)
             if isinstance(node.op, conv_ops)}
    assert kinds == {path == "onednn"}


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_float32_kernels_match_reference(case, kernel_path):
    rng = np.random.default_rng(12)
    xs, ws, stride, pad, flip, bias = case
    x, w, b = _case_values(case, rng, "float32")
    xt, wt, bt = pt.ftensor4("x"), pt.ftensor4("w"), pt.fvector("b")
    y = conv2d(xt, wt, bt if bias else None, stride=stride, pad=pad, filter_flip=flip)
    r = pt.ftensor4("r")
    wrt = [xt, wt] + ([bt] if bias else [])
    grads = pytensor.grad((y * r).sum(), wrt)
    f = pytensor.function([xt, wt, r] + ([bt] if bias else []), [y] + grads, mode=C_MODE)
    _assert_conv_kernels(f, kernel_path)
    expected = ref_conv(x, w, b, stride, pad, flip)
    rv = rng.normal(size=expected.shape).astype("float32")
    out = f(x, w, rv, *([b] if bias else []))
    assert all(o.dtype == np.float32 for o in out)
    gx, gw = ref_conv_grads(x, w, rv, stride, pad, flip)
    for got, want in zip(out, [expected, gx, gw]):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_onednn_matches_numpy_kernels_random_configurations(monkeypatch):
    """Random geometries: oneDNN float32 against the NumPy kernels in float64."""
    if onednn._library_paths() is None and not _onednn_expected():
        pytest.skip("no oneDNN wheel for this platform")
    monkeypatch.setattr(onednn, "_override", "onednn")
    rng = np.random.default_rng(13)
    checked = 0
    for trial in range(16):
        kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
        stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
        pad = [(0, 0), "same", "full", tuple(int(p) for p in rng.integers(0, 3, size=2))][trial % 4]
        h, wd = (int(v) for v in rng.integers(3, 12, size=2))
        n, c, f = (int(v) for v in rng.integers(1, 6, size=3))
        ph, pw = _ref_pad(pad, kh, kw)
        if h + 2 * ph < kh or wd + 2 * pw < kw:
            continue
        flip = bool(trial % 3)
        x = rng.normal(size=(n, c, h, wd)).astype("float32")
        w = rng.normal(size=(f, c, kh, kw)).astype("float32")
        props = dict(stride=stride, pad=pad, filter_flip=flip)
        xt, wt, gt = pt.ftensor4("x"), pt.ftensor4("w"), pt.ftensor4("g")
        fn = pytensor.function([xt, wt, gt], [Conv2d(**props)(xt, wt),
                                              Conv2dGradInputs(**props)(gt, wt, (h, wd)),
                                              Conv2dGradWeights(**props)(xt, gt, (kh, kw))],
                               mode=C_MODE)
        _assert_conv_kernels(fn, "onednn")
        kw_args = dict(stride=stride, pad=normalize_pad(pad), filter_flip=flip)
        x64, w64 = x.astype("float64"), w.astype("float64")
        y = conv_numpy.conv2d_forward_numpy(x64, w64, None, **kw_args)
        gz = rng.normal(size=y.shape).astype("float32")
        want = [y, conv_numpy.conv2d_grad_inputs_numpy(gz.astype("float64"), w64, (h, wd), **kw_args),
                conv_numpy.conv2d_grad_weights_numpy(x64, gz.astype("float64"), (kh, kw), **kw_args)]
        for got, ref in zip(fn(x, w, gz), want):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        checked += 1
    assert checked >= 12


def test_onednn_weight_gradient_in_blocks_and_by_gemm(monkeypatch):
    """The oneDNN weight gradient runs the batch in blocks of images summed in
    float64 (with a shorter last block), and 1x1 stride-1 convolutions on
    oneDNN's GEMM implementation: both against the float64 NumPy kernels."""
    if onednn._library_paths() is None and not _onednn_expected():
        pytest.skip("no oneDNN wheel for this platform")
    monkeypatch.setattr(onednn, "_override", "onednn")
    rng = np.random.default_rng(15)
    # (n, c, f, h, w, k, stride, pad, flip): blocks of 512 output positions:
    # 2, 2 and 1 images of 16x16; 8 and 3 of 8x8; 1x1 stride 1 (GEMM)
    # unpadded and padded
    for n, c, f, h, wd, k, stride, pad, flip in [(5, 3, 4, 16, 16, 3, 1, 1, True),
                                                 (11, 4, 3, 8, 8, 3, 1, "same", False),
                                                 (3, 5, 6, 12, 12, 1, 1, 0, True),
                                                 (4, 5, 6, 9, 11, 1, 1, 1, False)]:
        props = dict(stride=stride, pad=pad, filter_flip=flip)
        xt, gt = pt.ftensor4("x"), pt.ftensor4("g")
        fn = pytensor.function([xt, gt], Conv2dGradWeights(**props)(xt, gt, (k, k)), mode=C_MODE)
        _assert_conv_kernels(fn, "onednn")
        kw_args = dict(stride=(stride, stride), pad=normalize_pad(pad), filter_flip=flip)
        x = rng.normal(size=(n, c, h, wd)).astype("float32")
        y = conv_numpy.conv2d_forward_numpy(x.astype("float64"), np.zeros((f, c, k, k)), None,
                                            **kw_args)
        gz = rng.normal(size=y.shape).astype("float32")
        want = conv_numpy.conv2d_grad_weights_numpy(x.astype("float64"), gz.astype("float64"),
                                                    (k, k), **kw_args)
        got = fn(x, gz)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_onednn_primitive_cache_over_many_shapes(monkeypatch):
    """One compiled node fed more shapes than its cache has slots (8, up to
    three per shape for the weight gradient), and back."""
    if onednn._library_paths() is None and not _onednn_expected():
        pytest.skip("no oneDNN wheel for this platform")
    monkeypatch.setattr(onednn, "_override", "onednn")
    xt, wt, bt = pt.ftensor4("x"), pt.ftensor4("w"), pt.fvector("b")
    y = conv2d(xt, wt, bt, stride=2, pad=1)
    f = pytensor.function([xt, wt, bt], [y] + pytensor.grad((y ** 2).sum(), [xt, wt]),
                          mode=C_MODE)
    _assert_conv_kernels(f, "onednn")
    rng = np.random.default_rng(14)
    w = rng.normal(size=(4, 3, 3, 3)).astype("float32")
    b = rng.normal(size=4).astype("float32")
    for n, h, wd in [(1, 8, 8), (2, 8, 8), (3, 9, 7), (2, 6, 10), (5, 8, 8), (1, 8, 8), (2, 9, 7)]:
        x = rng.normal(size=(n, 3, h, wd)).astype("float32")
        out = f(x, w, b)
        ref = ref_conv(x, w, b, (2, 2), 1, True)
        np.testing.assert_allclose(out[0], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        gx, gw = ref_conv_grads(x, w, 2 * ref, (2, 2), 1, True)
        np.testing.assert_allclose(out[1], gx, rtol=1e-4, atol=1e-5 * np.abs(gx).max())
        np.testing.assert_allclose(out[2], gw, rtol=1e-4, atol=1e-5 * np.abs(gw).max())


@pytest.mark.parametrize("stride,pad,flip,bias", [VG_CASES[0], VG_CASES[3], VG_CASES[6]])
def test_verify_grad_float32(stride, pad, flip, bias, kernel_path):
    rng = np.random.default_rng(15)
    x = rng.normal(size=(2, 2, 7, 6)).astype("float32")
    w = rng.normal(size=(3, 2, 3, 2)).astype("float32")
    b = rng.normal(size=3).astype("float32")
    if bias:
        verify_grad(lambda x, w, b: conv2d(x, w, b, stride=stride, pad=pad, filter_flip=flip),
                    [x, w, b], rng=rng, mode=C_MODE)
    else:
        verify_grad(lambda x, w: conv2d(x, w, stride=stride, pad=pad, filter_flip=flip),
                    [x, w], rng=rng, mode=C_MODE)


def test_onednn_errors_are_value_errors(monkeypatch):
    if onednn._library_paths() is None and not _onednn_expected():
        pytest.skip("no oneDNN wheel for this platform")
    monkeypatch.setattr(onednn, "_override", "onednn")
    xt, wt = pt.ftensor4("x"), pt.ftensor4("w")
    f = pytensor.function([xt, wt], conv2d(xt, wt), mode=C_MODE)
    _assert_conv_kernels(f, "onednn")
    with pytest.raises(ValueError, match="channels"):
        f(np.zeros((1, 2, 5, 5), "float32"), np.zeros((1, 3, 3, 3), "float32"))
    with pytest.raises(ValueError, match="empty"):
        f(np.zeros((1, 2, 2, 5), "float32"), np.zeros((1, 2, 3, 3), "float32"))


_FALLBACK_SCRIPT = """
import numpy as np, pytensor, pytensor.tensor as pt
from pytensor.compile.mode import Mode
import lasres
from lasres.ops.conv import conv2d
xt, wt = pt.ftensor4(), pt.ftensor4()
y = conv2d(xt, wt, pad=1)
f = pytensor.function([xt, wt], [y] + pytensor.grad(y.sum(), [xt, wt]),
                      mode=Mode(linker="cvm", optimizer="fast_run"))
c_thunks = sum(hasattr(t, "cthunk") for n, t in zip(f.maker.fgraph.toposort(), f.vm.thunks)
               if type(n.op).__name__.startswith("Conv2d"))
x = np.ones((1, 2, 4, 4), "float32"); w = np.ones((3, 2, 3, 3), "float32")
print(lasres.ops.kernels(), c_thunks, float(f(x, w)[0][0, 0, 1, 1]))
"""


@pytest.mark.parametrize("env,expected", [("numpy", "numpy 0 18.0"),
                                          ("", None)])
def test_kernels_environment_variable(env, expected):
    """LASRES_KERNELS=numpy forces the NumPy kernels (a fresh process, as a user runs it)."""
    import os
    import subprocess
    import sys
    environ = dict(os.environ, LASRES_KERNELS=env)
    res = subprocess.run([sys.executable, "-c", _FALLBACK_SCRIPT], env=environ,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    if expected is None:
        expected = ("onednn 3 18.0" if onednn._library_paths() is not None else "numpy 0 18.0")
    assert res.stdout.split("\n")[-2] == expected


def test_kernels_environment_variable_errors(monkeypatch):
    from lasres.errors import LasresError
    monkeypatch.setenv("LASRES_KERNELS", "fast")
    with pytest.raises(LasresError, match="LASRES_KERNELS"):
        onednn.kernels()
    monkeypatch.setenv("LASRES_KERNELS", "numpy")
    assert onednn.kernels() == "numpy"


# ---------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------

# PyTensor's JAX backend asks for 64-bit dtypes (the float64 accumulator of
# float32 sums, int64 shape vectors); with x64 disabled (floatX=float32) JAX
# warns that it truncates them.
jax_x64_warning = pytest.mark.filterwarnings("ignore:Explicitly requested dtype")

JAX_CASES = [CASES[0], CASES[1], CASES[4], CASES[7], CASES[9], CASES[10], CASES[12]]


@jax_x64_warning
@pytest.mark.parametrize("static", [False, True], ids=["dynamic-shapes", "static-shapes"])
@pytest.mark.parametrize("case", JAX_CASES, ids=_case_id)
def test_jax_matches_c_backend(case, static):
    pytest.importorskip("jax")
    rng = np.random.default_rng(9)
    xs, ws, stride, pad, flip, bias = case
    x, w, b = _case_values(case, rng, "float32")
    xt = pt.tensor("x", dtype="float32", shape=xs if static else (None,) * 4)
    wt = pt.tensor("w", dtype="float32", shape=ws if static else (None,) * 4)
    bt = pt.fvector("b")
    y = conv2d(xt, wt, bt if bias else None, stride=stride, pad=pad, filter_flip=flip)
    r = pt.ftensor4("r")
    wrt = [xt, wt] + ([bt] if bias else [])
    outs = [y] + pytensor.grad((y * r).sum(), wrt)
    ins = [xt, wt, r] + ([bt] if bias else [])
    rv = rng.normal(size=ref_conv(x, w, None, stride, pad, flip).shape).astype("float32")
    args = [x, w, rv] + ([b] if bias else [])
    expected = pytensor.function(ins, outs, mode=C_MODE)(*args)
    got = pytensor.function(ins, outs, mode="JAX")(*args)
    for e, g in zip(expected, got):
        assert g.shape == e.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


@jax_x64_warning
def test_jax_second_order_and_grad_ops():
    pytest.importorskip("jax")
    rng = np.random.default_rng(10)
    xt, wt = pt.ftensor4("x"), pt.ftensor4("w")
    y = conv2d(xt, wt, stride=(2, 1), pad="full", filter_flip=False)
    gx = pytensor.grad((y ** 2).sum(), xt)
    cost = (gx ** 2).sum()
    outs = [cost] + pytensor.grad(cost, [xt, wt])
    x = rng.normal(size=(2, 3, 7, 6)).astype("float32")
    w = rng.normal(size=(4, 3, 3, 2)).astype("float32")
    c_out = pytensor.function([xt, wt], outs, mode=C_MODE)(x, w)
    got = pytensor.function([xt, wt], outs, mode="JAX")(x, w)
    # float32 round-off on values up to 3e5: judge both against float64, relative
    # to each output's scale (gradients of squares cancel, so entrywise rtol is meaningless)
    xd, wd = pt.dtensor4("x"), pt.dtensor4("w")
    yd = conv2d(xd, wd, stride=(2, 1), pad="full", filter_flip=False)
    costd = (pytensor.grad((yd ** 2).sum(), xd) ** 2).sum()
    truth = pytensor.function([xd, wd], [costd] + pytensor.grad(costd, [xd, wd]),
                              mode=C_MODE)(x.astype("float64"), w.astype("float64"))
    for t, c, g in zip(truth, c_out, got):
        scale = np.abs(t).max()
        assert np.abs(c - t).max() <= 1e-6 * scale
        assert np.abs(g - t).max() <= 2e-6 * scale


@jax_x64_warning
def test_jax_dynamic_shapes_in_shape_graphs():
    """Shapes inferred through the ops (here for the Alloc in the gradient of
    a mean) stay concrete under jax.jit when the static shapes are unknown."""
    pytest.importorskip("jax")
    rng = np.random.default_rng(11)
    xt, wt = pt.ftensor4("x"), pt.ftensor4("w")
    y = conv2d(conv2d(xt, wt, stride=2, pad="same"), wt.dimshuffle(1, 0, 2, 3),
               stride=(1, 3), pad="full")
    cost = (y ** 2).mean() + y.mean(axis=(2, 3)).sum()
    outs = [cost] + pytensor.grad(cost, [xt, wt])
    x = rng.normal(size=(2, 2, 9, 8)).astype("float32")
    w = rng.normal(size=(3, 2, 3, 3)).astype("float32")
    expected = pytensor.function([xt, wt], outs, mode=C_MODE)(x, w)
    got = pytensor.function([xt, wt], outs, mode="JAX")(x, w)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4)


def test_onednn_source_shared_across_strides_and_pads(kernel_path):
    """Stride, padding and flip are run-time parameters of the oneDNN C code:
    convolutions that differ only in them generate the same C source (so
    PyTensor compiles one module for all of them), while the NumPy path has
    no C code at all."""
    from pytensor.graph.fg import FunctionGraph
    from pytensor.graph.utils import MethodNotDefined
    from pytensor.link.c.basic import CLinker

    def source(op, *inputs):
        node = op(*inputs).owner
        fg = FunctionGraph(node.inputs, node.outputs, clone=True)
        return CLinker().accept(fg).get_src_code()

    x, w, gz = pt.ftensor4("x"), pt.ftensor4("w"), pt.ftensor4("gz")
    shape = pt.lvector("shape")
    variants = [dict(stride=(1, 1), pad=(1, 1), filter_flip=True),
                dict(stride=(2, 2), pad=(0, 0), filter_flip=False),
                dict(stride=(1, 2), pad="same", filter_flip=True)]
    for cls, inputs in ((Conv2d, (x, w)), (Conv2dGradInputs, (gz, w, shape)),
                        (Conv2dGradWeights, (x, gz, shape))):
        if kernel_path == "numpy":
            with pytest.raises(MethodNotDefined):
                source(cls(**variants[0]), *inputs)
            continue
        sources = {source(cls(**v), *inputs) for v in variants}
        assert len(sources) == 1, cls.__name__


_BLOCKS_SCRIPT = """
import sys, numpy as np, pytensor, pytensor.tensor as pt
import lasres
from lasres.config import get_mode
from lasres.ops.conv import Conv2dGradWeights
rng = np.random.default_rng(21)
out = {}
# (n, c, f, h, w, k, stride, pad, flip): bands of rows of 32x32 and 40x24 images
# (a shorter last band, padding at the top and the bottom), 2 images of 16x16
# per block with a shorter last block, 1x1 stride 1 (GEMM) and stride 2
cases = [(6, 16, 8, 32, 32, 3, 1, 1, False), (5, 8, 16, 40, 24, 3, 1, 1, True),
         (7, 16, 16, 16, 16, 3, 1, 1, False), (4, 16, 32, 32, 32, 1, 1, 0, False),
         (5, 8, 8, 33, 33, 3, 2, 1, False), (3, 3, 16, 32, 32, 3, 1, 1, False)]
for i, (n, c, f, h, w, k, s, p, flip) in enumerate(cases):
    x, g = pt.ftensor4(), pt.ftensor4()
    fn = pytensor.function([x, g], Conv2dGradWeights(stride=(s, s), pad=(p, p),
                                                     filter_flip=flip)(x, g, (k, k)),
                           mode=get_mode("c"))
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    xv = rng.normal(size=(n, c, h, w)).astype("float32")
    gv = rng.normal(size=(n, f, oh, ow)).astype("float32")
    out[str(i)] = fn(xv, gv)
    out["x%d" % i], out["g%d" % i] = xv, gv
np.savez(sys.argv[1], **out)
"""


@pytest.mark.parametrize("threads", ["2", "3"])
def test_onednn_weight_gradient_blocks_shared_among_threads(tmp_path, threads):
    """The blocks of the weight gradient (bands of rows of an image, or a
    few images) are shared among the OpenMP threads, each block on one
    thread: the result rounds as a GEMM does (the float32 precision tests'
    criterion) and as the blocks run one after another on all threads
    (LASRES_CONV_SPLIT=0) do -- not to the bit: a block of two images on two
    threads is two shorter float32 chains."""
    import os
    import subprocess
    import sys
    if onednn._library_paths() is None:
        pytest.skip("no oneDNN wheel for this platform")
    got = {}
    for split in ("1", "0"):
        env = dict(os.environ, LASRES_CONV_SPLIT=split, OMP_NUM_THREADS=threads,
                   LASRES_KERNELS="onednn")
        path = tmp_path / f"split{split}.npz"
        # (a primitive planned for more threads than it gets may hang: a timeout)
        res = subprocess.run([sys.executable, "-c", _BLOCKS_SCRIPT, str(path)], env=env,
                             capture_output=True, text=True, timeout=240)
        assert res.returncode == 0, res.stderr
        got[split] = np.load(path)
    cases = [(3, 1, 1, False), (3, 1, 1, True), (3, 1, 1, False), (1, 1, 0, False),
             (3, 2, 1, False), (3, 1, 1, False)]
    for i, (k, s, p, flip) in enumerate(cases):
        shared, one_by_one = got["1"][str(i)], got["0"][str(i)]
        x, g = got["1"]["x%d" % i], got["1"]["g%d" % i]
        kw = dict(stride=(s, s), pad=(p, p), filter_flip=flip)
        want = conv_numpy.conv2d_grad_weights_numpy(x.astype("float64"), g.astype("float64"),
                                                    (k, k), **kw)
        gemm = conv_numpy.conv2d_grad_weights_numpy(x, g, (k, k), **kw)

        def rms(a):
            return float(np.sqrt(np.mean((a - want) ** 2) / np.mean(want ** 2)))
        eps = float(np.finfo(np.float32).eps)
        assert rms(shared) <= max(1.5 * rms(gemm), 4 * eps), (i, rms(shared), rms(gemm))
        assert rms(shared) <= max(1.5 * rms(one_by_one), 4 * eps), (i, rms(shared), rms(one_by_one))
        np.testing.assert_allclose(shared, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
