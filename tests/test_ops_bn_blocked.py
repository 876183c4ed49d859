"""The batch-norm ops and the bias-gradient sum on channel-blocked inputs
(oneDNN's nChw16c / nChw8c: a 5-d ``(N, CB, H, W, B)`` array, channel
``cb * B + b``, normalised over axes ``(0, 2, 3)``, parameters ``(CB, B)``):
the C kernels of lasres/ops/c/bn.c and channel_sum.c against the NCHW C
kernels on the same values, against the ops' ``perform``, by numerical
differentiation, and for results that do not depend on the thread count."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode
from pytensor.gradient import verify_grad
from pytensor.tensor.math import Sum

import lasres  # noqa: F401  (modes)
from lasres.config import get_mode
from lasres.ops.bn import (BatchNormInfer, BatchNormInferRelu, BatchNormReluTrainGrad,
                           BatchNormTrain, BatchNormTrainGrad, BatchNormTrainRelu,
                           batch_norm_train)
from lasres.ops.reduce import BlockedChannelSum, ChannelSum, blocked_channel_sum

C_MODE = Mode(linker="cvm", optimizer="fast_run")
PY_MODE = Mode(linker="py", optimizer="fast_run")
AXES = (0, 2, 3)
EPS = 1e-4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = (BatchNormTrain, BatchNormTrainGrad, BatchNormTrainRelu, BatchNormReluTrainGrad,
       BatchNormInfer, BatchNormInferRelu)

SHAPES = [(3, 3, 5, 7, 16),   # odd CB, M = 35 (not a multiple of 8, odd)
          (1, 1, 3, 3, 8),    # a batch of one, M = 9
          (2, 3, 3, 5, 3),    # B = 3: the generic kernels
          (4, 2, 5, 5, 20),   # B = 20: two lane groups (16 + 4)
          (9, 1, 16, 15, 16)]  # CB = 1, large enough for the parallel region


def _nchw(a):
    """The NCHW array of a blocked one (channel cb * B + b)."""
    n, cb, h, w, b = a.shape
    return np.ascontiguousarray(a.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w))


def _graph(dtype, ndim):
    """Every op once: training forward (plain and rectified), its gradients
    (plain and rectified), inference (plain and rectified, given statistics)."""
    pnd = ndim - len(AXES)
    x = pt.tensor("x", dtype=dtype, shape=(None,) * ndim)
    gy = x.type("gy")
    g, b, m, i = (pt.tensor(n, dtype=dtype, shape=(None,) * pnd) for n in "gbmi")
    y, mean, inv = BatchNormTrain(AXES, EPS)(x, g, b)
    gx, gg, gb = BatchNormTrainGrad(AXES)(x, gy, g, mean, inv)
    r, mean_r, inv_r, scale = BatchNormTrainRelu(AXES, EPS)(x, g, b)
    gx_r, gg_r, gb_r = BatchNormReluTrainGrad(AXES)(x, gy, g, b, mean_r, scale, inv_r)
    yi = BatchNormInfer(AXES)(x, g, b, m, i)
    ri = BatchNormInferRelu(AXES)(x, g, b, m, i)
    names = ["y", "mean", "inv", "gx", "ggamma", "gbeta", "r", "mean_r", "inv_r", "scale",
             "gx_r", "ggamma_r", "gbeta_r", "yi", "ri"]
    outs = [y, mean, inv, gx, gg, gb, r, mean_r, inv_r, scale, gx_r, gg_r, gb_r, yi, ri]
    return [x, g, b, m, i, gy], names, outs


def _data(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    p = (shape[1], shape[4])
    x = rng.normal(0.5, 2.0, shape).astype(dtype)
    beta = rng.normal(0, 1, p).astype(dtype)
    mean = rng.normal(0.5, 0.1, p).astype(dtype)
    mean[0, 0], beta[0, 0] = 0.0, 0.0  # some exact zeros of the inference output
    return [x, rng.uniform(0.5, 1.5, p).astype(dtype), beta, mean,
            rng.uniform(0.3, 0.7, p).astype(dtype), rng.normal(size=shape).astype(dtype)]


def _run(dtype, ndim, mode, args):
    ins, names, outs = _graph(dtype, ndim)
    return dict(zip(names, pytensor.function(ins, outs, mode=mode)(*args)))


def _as_nchw(args):
    x, g, b, m, i, gy = args
    return [_nchw(x), g.ravel(), b.ravel(), m.ravel(), i.ravel(), _nchw(gy)]


EXACT = ("yi", "ri")  # no sums involved


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_c_matches_nchw_c(shape, dtype):
    """Each value as the NCHW kernels compute it on the same channels, but
    for the order of the float64 sums."""
    args = _data(shape, dtype, 0)
    got = _run(dtype, 5, C_MODE, args)
    want = _run(dtype, 4, C_MODE, _as_nchw(args))
    pshape = (shape[1], shape[4])
    for name, e in want.items():
        a = got[name]
        assert a.dtype == dtype, name
        assert a.shape == (shape if e.ndim == 4 else pshape), name
        a = _nchw(a) if a.ndim == 5 else a.ravel()
        if name in EXACT:
            np.testing.assert_array_equal(a, e, err_msg=name)
        elif dtype == "float32":
            np.testing.assert_array_max_ulp(a, e, maxulp=1)
        else:  # relative to the scale of the array: values near 0 come from cancellation
            np.testing.assert_allclose(a, e, rtol=1e-13, atol=1e-13 * np.max(np.abs(e)),
                                       err_msg=name)
    assert np.any(got["ri"] == 0) and np.any(got["r"] == 0) and np.any(got["r"] > 0)


@pytest.mark.parametrize("shape", SHAPES[:4])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_c_matches_perform(shape, dtype):
    args = _data(shape, dtype, 1)
    got = _run(dtype, 5, C_MODE, args)
    want = _run(dtype, 5, PY_MODE, args)
    tol = 1e-13 if dtype == "float64" else 1e-6
    for name, e in want.items():
        assert got[name].shape == e.shape and got[name].dtype == e.dtype, name
        np.testing.assert_allclose(got[name], e, rtol=0, atol=tol * max(1.0, np.max(np.abs(e))),
                                   err_msg=name)


def test_blocked_runs_the_c_code(monkeypatch):
    """In the C mode every op on a 5-d blocked input runs its C code, never
    ``perform``; the statistics have the shape (CB, B), also symbolically."""
    ins, names, outs = _graph("float32", 5)
    f = pytensor.function(ins, outs, mode=get_mode("c"))
    nodes = [n for n in f.maker.fgraph.toposort() if isinstance(n.op, OPS)]
    assert {type(n.op) for n in nodes} == set(OPS)
    assert all(n.op._use_c(n) for n in nodes)
    for op in OPS:
        monkeypatch.setattr(op, "perform", lambda *a: pytest.fail("perform called"))
    shape = (2, 3, 4, 5, 16)
    got = dict(zip(names, f(*_data(shape, "float32", 2))))
    assert got["mean"].shape == got["scale"].shape == got["ggamma_r"].shape == (3, 16)
    assert np.all(np.isfinite(got["gx_r"]))
    x, g, b = ins[:3]
    _, mean, _ = batch_norm_train(x, g, b)
    shape_f = pytensor.function([x, g, b], mean.shape, mode=get_mode("c"))
    assert not any(isinstance(n.op, OPS) for n in shape_f.maker.fgraph.apply_nodes)
    assert tuple(shape_f(*_data(shape, "float32", 2)[:3])) == (3, 16)
    # float64 blocked nodes (never built by the layout rewrite) run perform:
    # no float64 blocked C code to compile
    ins64, _, outs64 = _graph("float64", 5)
    f64 = pytensor.function(ins64, outs64, mode=get_mode("c"))
    assert not any(n.op._use_c(n) for n in f64.maker.fgraph.apply_nodes if isinstance(n.op, OPS))


def test_blocked_shape_errors_are_value_errors():
    ins, _, outs = _graph("float64", 5)
    f = pytensor.function(ins[:3], outs[:3], mode=C_MODE)
    x, _, b = _data((2, 2, 3, 3, 8), "float64", 3)[:3]
    with pytest.raises(ValueError):
        f(x, np.ones((2, 7)), b)


@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (3, 5, 7, 3)])
def test_blocked_fused_with_the_rectifier_bit_for_bit(shape):
    """The C mode's BN + ReLU fusion applies to blocked graphs too, with the
    values of the separate nodes bit for bit."""
    from lasres.ops.elemwise import relu

    n, c, h, w = shape
    shape5 = (n, 1, h, w, c)
    x = pt.tensor("x", dtype="float32", shape=(None,) * 5)
    wt = x.type("w")
    g, b = pt.matrix("g", dtype="float32"), pt.matrix("b", dtype="float32")
    y, mean, inv = batch_norm_train(x, g, b, axes=AXES)
    cost = (relu(y) * wt).sum() + mean.sum() * 0.3 + (inv ** 2).sum() * 0.2
    outs = [relu(y), mean, inv] + pytensor.grad(cost, [x, g, b])
    fused = pytensor.function([x, g, b, wt], outs, mode=get_mode("c"))
    plain = pytensor.function([x, g, b, wt], outs, mode=C_MODE)
    ops = {type(nd.op) for nd in fused.maker.fgraph.apply_nodes}
    assert BatchNormTrainRelu in ops and BatchNormReluTrainGrad in ops
    rng = np.random.default_rng(4)
    args = [rng.normal(0.5, 2.0, shape5).astype("float32"),
            rng.uniform(0.5, 1.5, (1, c)).astype("float32"),
            rng.normal(0, 1, (1, c)).astype("float32"), rng.normal(size=shape5).astype("float32")]
    for a, e in zip(fused(*args), plain(*args)):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blocked_gradient_with_an_addend_bit_for_bit(shape, dtype):
    """The blocked kernels add the addend as the separate sum does (and as
    the NCHW kernels do): the input gradient plus the addend, bit for bit."""
    x = pt.tensor("x", dtype=dtype, shape=(None,) * 5)
    gy, v = x.type("gy"), x.type("v")
    g, b = (pt.tensor(n, dtype=dtype, shape=(None, None)) for n in "gb")
    _, mean, inv, scale = BatchNormTrainRelu(AXES, EPS)(x, g, b)
    gx = BatchNormReluTrainGrad(AXES)(x, gy, g, b, mean, scale, inv)[0]
    gx_v = BatchNormReluTrainGrad(AXES)(x, gy, g, b, mean, scale, inv, v)[0]
    f = pytensor.function([x, g, b, gy, v], [gx + v, gx_v], mode=C_MODE)
    xs, gs, bs, _, _, gys = _data(shape, dtype, 21)
    vs = np.random.default_rng(22).normal(0, 3, shape).astype(dtype)
    want, got = f(xs, gs, bs, gys, vs)
    assert np.any(got != gx_v.eval({x: xs, g: gs, b: bs, gy: gys, v: 0 * vs}))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("relu_op", [False, True], ids=["bn", "bn_relu"])
def test_verify_grad_blocked(relu_op):
    rng = np.random.default_rng(5)
    shape = (3, 2, 2, 3, 3)
    xv = rng.normal(size=shape)
    gv, bv = rng.uniform(0.5, 1.5, (2, 3)), rng.normal(size=(2, 3))
    op = (BatchNormTrainRelu if relu_op else BatchNormTrain)(AXES, EPS)
    for out in range(3):
        verify_grad(lambda x, g, b: op(x, g, b)[out], [xv, gv, bv], rng=rng, mode=C_MODE)


def test_verify_grad_blocked_infer():
    rng = np.random.default_rng(6)
    shape = (3, 2, 2, 3, 3)
    args = [rng.normal(size=shape), rng.uniform(0.5, 1.5, (2, 3)), rng.normal(size=(2, 3)),
            rng.normal(size=(2, 3)), rng.uniform(0.5, 1.5, (2, 3))]
    verify_grad(lambda *a: BatchNormInfer(AXES)(*a), args, rng=rng, mode=C_MODE)


# -- the bias-gradient sum ---------------------------------------------------------------

def _fsum_blocked(x):
    x = x.astype(np.float64)
    return np.array([[math.fsum(x[:, c, :, :, k].ravel()) for k in range(x.shape[4])]
                     for c in range(x.shape[1])])


def _sum_tolerance(xv, want):
    """The final rounding to the data type, and a bound of the float64
    summation's error in any order: (terms - 1) * 2**-53 * sum |x|."""
    terms = xv.size // (xv.shape[1] * xv.shape[4])
    absum = np.abs(xv.astype(np.float64)).sum(axis=AXES)
    return np.finfo(xv.dtype).eps * np.abs(want) + (terms - 1) * 2.0 ** -53 * absum


@pytest.mark.parametrize("shape", SHAPES + [(64, 1, 32, 32, 16)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("mode", [C_MODE, PY_MODE], ids=["c", "py"])
def test_blocked_channel_sum_matches_exact_sum(shape, dtype, mode):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * 5)
    f = pytensor.function([x], blocked_channel_sum(x), mode=mode)
    xv = np.random.default_rng(7).normal(0.5, 2.0, shape).astype(dtype)
    got = f(xv)
    assert got.dtype == dtype and got.shape == (shape[1], shape[4])
    want = _fsum_blocked(xv)
    assert np.all(np.abs(got - want) <= _sum_tolerance(xv, want)), (got, want)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_c_mode_replaces_the_blocked_bias_gradient_sum(dtype):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * 5)
    f = pytensor.function([x], [x.sum(axis=(0, 2, 3)), x.mean(axis=(3, 0, 2))],
                          mode=get_mode("c"))
    ops = [type(n.op) for n in f.maker.fgraph.toposort()]
    assert BlockedChannelSum in ops and Sum not in ops and ChannelSum not in ops
    xv = np.random.default_rng(8).normal(size=(3, 2, 5, 7, 8)).astype(dtype)
    total, mean = f(xv)
    want = _fsum_blocked(xv)
    tol = _sum_tolerance(xv, want)
    assert np.all(np.abs(total - want) <= tol)
    assert np.all(np.abs(mean - want / 105) <= 2 * tol / 105)


def test_c_mode_keeps_other_5d_sums():
    x = pt.tensor("x", dtype="float32", shape=(None,) * 5)
    for kwargs in [dict(axis=(0, 2)), dict(axis=(0, 2, 3, 4)), dict(axis=(1, 2, 3)),
                   dict(axis=(0, 2, 3), acc_dtype="float32")]:
        f = pytensor.function([x], x.sum(**kwargs), mode=get_mode("c"))
        assert BlockedChannelSum not in [type(n.op) for n in f.maker.fgraph.toposort()], kwargs


def test_verify_grad_blocked_channel_sum():
    rng = np.random.default_rng(9)
    verify_grad(blocked_channel_sum, [rng.normal(size=(2, 2, 3, 1, 3))], rng=rng, mode=C_MODE)


def test_blocked_channel_sum_rejects_other_ranks():
    with pytest.raises(TypeError):
        blocked_channel_sum(pt.tensor4())


# -- thread-count independence -----------------------------------------------------------

_THREADS_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import pytensor, pytensor.tensor as pt
from pytensor.compile.mode import Mode
sys.path.insert(0, sys.argv[1])
from lasres.ops import onednn
onednn._override = "onednn"  # the kernels' OpenMP regions, with or without oneDNN
import test_ops_bn_blocked as t
from lasres.ops.threads import openmp_threads
assert openmp_threads()
digests = {}
for shape in [(8, 3, 16, 16, 16), (9, 5, 10, 10, 8), (16, 3, 30, 30, 3)]:
    for dtype in ("float32", "float64"):
        args = t._data(shape, dtype, 10)
        got = t._run(dtype, 5, t.C_MODE, args)
        x = pt.tensor("x", dtype=dtype, shape=(None,) * 5)
        got["sum"] = pytensor.function([x], t.blocked_channel_sum(x), mode=t.C_MODE)(args[-1])
        for name, a in got.items():
            digests[f"{shape} {dtype} {name}"] = hashlib.sha256(a.tobytes()).hexdigest()
print(json.dumps(digests))
"""


def _digests(threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, os.path.join(REPO, "tests")],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_blocked_results_do_not_depend_on_the_thread_count():
    """Bit for bit the same with 1 and 2 OpenMP threads: the blocks' sums
    are added in image order whichever thread computed them."""
    one, two = _digests(1), _digests(2)
    assert len(one) == 3 * 2 * 16
    assert one == two, sorted(k for k in one if one[k] != two[k])


@pytest.mark.parametrize("offset", [0.0, 1e3, 3e4])
def test_blocked_variance_of_values_far_from_zero(offset):
    """The blocked forward pass sums each block's squared deviations from the
    block's own mean and combines the blocks (lr_bnb_train_fwd): the variance
    of values whose mean is far larger than their spread is still that of the
    centred values (the test fails when the combination leaves out the
    blocks' m (mean_t - mean)^2 terms)."""
    rng = np.random.default_rng(5)
    shape = (6, 2, 7, 9, 16)
    # block means far apart too: the combination's (mean_t - mean)^2 terms matter
    x = (offset + rng.normal(0, 1e-2, shape)
         + rng.normal(0, 1e-3, (shape[0], 1, 1, 1, 1))).astype("float32")
    xs = pt.tensor("x", dtype="float32", shape=(None,) * 5)
    g = pt.matrix("g", dtype="float32")
    b = pt.matrix("b", dtype="float32")
    _, mean, inv = BatchNormTrain(AXES, EPS)(xs, g, b)
    f = pytensor.function([xs, g, b], [mean, inv], mode=C_MODE)
    ones = np.ones((shape[1], shape[4]), "float32")
    got_mean, got_inv = f(x, ones, np.zeros_like(ones))
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=AXES)
    want_inv = 1.0 / np.sqrt(((x64 - mu[None, :, None, None, :]) ** 2).mean(axis=AXES) + EPS)
    np.testing.assert_array_max_ulp(got_mean, mu.astype("float32"), maxulp=1)
    np.testing.assert_array_max_ulp(got_inv, want_inv.astype("float32"), maxulp=1)


def test_sourced_ops_vectorise_with_whole_avx512_registers():
    """On x86-64 the C ops of lasres's sources (batch norms, channel sums,
    layouts) are compiled with GCC's preference for 512-bit vectors: with
    -march=native GCC otherwise keeps AVX-512 CPUs at 256 bits, and the batch
    norms' float64 arithmetic ran at half width (a tuning hint: the same
    values, checked by every test above)."""
    import platform
    from lasres.ops.ccop import vector_width_args
    args = BatchNormTrainRelu(AXES, EPS).c_compile_args()
    if platform.machine() in ("x86_64", "AMD64"):
        assert "-mprefer-vector-width=512" in args
        assert BlockedChannelSum().c_compile_args().count("-mprefer-vector-width=512") == 1
    else:
        assert not vector_width_args() and "-mprefer-vector-width=512" not in args
