"""Channel-blocked activations across training graphs (lasres/ops/layout.py).

The C mode's rewrite keeps a training graph's activations in oneDNN's
blocked layout ``(N, C/B, H, W, B)`` between convolutions, batch norms and
elementwise nodes. It must give the plain graph's numbers (the
convolutions bit for bit, the batch norms within the round-off of a float64
sum in another order), leave what it does not cover in NCHW (channel counts
that are not a multiple of the block), and never touch inference graphs,
float64 graphs or the NumPy kernels.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres
from lasres.config import get_mode
from lasres.layers import get_all_param_values, set_all_param_values
from lasres.models import build
from lasres.ops import layout, onednn
from lasres.ops.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from lasres.ops.layout import FromBlocked, ToBlocked
from lasres.ops.shape import from_blocked, to_blocked
from lasres.train import Trainer

needs_onednn = pytest.mark.skipif(onednn.kernels() != "onednn" or not layout.block_size(),
                                  reason="oneDNN kernels with a blocked layout not available")


# ------------------------------------------------------------ the conversions
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("block", [16, 8, 3])
def test_conversions_c_equal_numpy_and_invert(dtype, block):
    rng = np.random.RandomState(0)
    x = rng.randn(3, 2 * block, 5, 7).astype(dtype)
    xv = pt.tensor4(dtype=dtype)
    f = pytensor.function([xv], [ToBlocked(block)(xv), FromBlocked(block)(ToBlocked(block)(xv))],
                          mode=get_mode("c"))
    b, back = f(x)
    assert b.shape == (3, 2, 5, 7, block)
    np.testing.assert_array_equal(b, to_blocked(x, block))
    np.testing.assert_array_equal(b[:, 1, 2, 3, :], x[:, block:2 * block, 2, 3])
    np.testing.assert_array_equal(back, x)
    np.testing.assert_array_equal(from_blocked(b), x)


def test_conversions_are_each_others_gradient():
    rng = np.random.RandomState(1)
    x = rng.randn(2, 16, 3, 3)
    pytensor.gradient.verify_grad(lambda v: ToBlocked(8)(v) * 2.5, [x], rng=rng,
                                  mode=get_mode("c"))
    pytensor.gradient.verify_grad(lambda v: FromBlocked(8)(ToBlocked(8)(v)) ** 2, [x], rng=rng,
                                  mode=get_mode("c"))


def test_conversion_errors():
    with pytest.raises(ValueError, match="whole number of blocks"):
        ToBlocked(16)(pt.tensor(dtype="float32", shape=(None, 12, None, None)))
    with pytest.raises(TypeError):
        FromBlocked(16)(pt.tensor4())
    f = pytensor.function([xv := pt.tensor4()], ToBlocked(16)(xv), mode=get_mode("c"))
    with pytest.raises(ValueError):
        f(np.zeros((1, 12, 2, 2), "float32"))


# ------------------------------------------------------- blocked convolutions
CASES = [((4, 16, 9, 7), (16, 16, 3, 3), (1, 1), (1, 1)),
         ((3, 16, 10, 10), (32, 16, 3, 3), (2, 2), (1, 1)),
         ((16, 32, 16, 16), (32, 32, 3, 3), (1, 1), (1, 1)),     # bands of rows, several images
         ((8, 64, 8, 8), (16, 64, 1, 1), (1, 1), (0, 0)),        # the GEMM backward-weights
         ((8, 32, 8, 8), (64, 32, 1, 1), (2, 2), (0, 0)),
         ((5, 16, 13, 11), (16, 16, 3, 2), (2, 1), (1, 0)),      # rows the output never reads
         ((6, 3, 12, 12), (16, 3, 3, 3), (1, 1), (1, 1))]        # a plain input, blocked output


@needs_onednn
@pytest.mark.parametrize("block", [16, 8])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_blocked_convolutions_equal_plain_bit_for_bit(case, block):
    xs, ws, st, pd = case
    rng = np.random.RandomState(2)
    kw = dict(stride=st, pad=pd, filter_flip=True)
    x = rng.randn(*xs).astype("float32")
    w = rng.randn(*ws).astype("float32")
    oh = [(i + 2 * p - k) // s + 1 for i, k, s, p in zip(xs[2:], ws[2:], st, pd)]
    gz = rng.randn(xs[0], ws[0], *oh).astype("float32")
    x4, z4, wv = pt.tensor4(), pt.tensor4(), pt.tensor4()
    plain = pytensor.function([x4, wv, z4], [Conv2d(**kw)(x4, wv),
                                             Conv2dGradInputs(**kw)(z4, wv, xs[2:]),
                                             Conv2dGradWeights(**kw)(x4, z4, ws[2:])],
                              mode=get_mode("c"))(x, w, gz)
    bx = block if xs[1] % block == 0 else 0
    bz = block if ws[0] % block == 0 else 0
    for blocks in {(bx, bz), (0, bz), (bx, 0)}:
        if blocks == (0, 0):
            continue
        xb = pt.tensor(dtype="float32", shape=(None,) * (5 if blocks[0] else 4))
        zb = pt.tensor(dtype="float32", shape=(None,) * (5 if blocks[1] else 4))
        f = pytensor.function([xb, wv, zb], [
            Conv2d(blocks=blocks, **kw)(xb, wv),
            Conv2dGradInputs(blocks=blocks, **kw)(zb, wv, xs[2:]),
            Conv2dGradWeights(blocks=blocks, **kw)(xb, zb, ws[2:])], mode=get_mode("c"))
        y, gx, gw = f(to_blocked(x, blocks[0]) if blocks[0] else x, w,
                      to_blocked(gz, blocks[1]) if blocks[1] else gz)
        np.testing.assert_array_equal(from_blocked(y) if blocks[1] else y, plain[0])
        np.testing.assert_array_equal(from_blocked(gx) if blocks[0] else gx, plain[1])
        np.testing.assert_array_equal(gw, plain[2])


@needs_onednn
@pytest.mark.parametrize("block", [16, 8])
@pytest.mark.parametrize("bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])))
def test_convolution_with_an_addend_equals_the_sum_bit_for_bit(case, block, bias):
    """Conv2dSum (a residual block's last convolution and its sum with the
    shortcut, one pass) gives the blocked convolution's output plus the
    addend, rounded as the separate sum rounds it; ``perform`` agrees."""
    from lasres.ops.conv import Conv2dSum
    xs, ws, st, pd = case
    bz = block if ws[0] % block == 0 else 0
    if not bz:
        pytest.skip("the output side is not blocked")
    bx = block if xs[1] % block == 0 else 0
    rng = np.random.RandomState(5)
    kw = dict(stride=st, pad=pd, filter_flip=True, blocks=(bx, bz))
    x = rng.randn(*xs).astype("float32")
    w = rng.randn(*ws).astype("float32")
    b = rng.randn(ws[0]).astype("float32")
    oh = [(i + 2 * p - k) // s + 1 for i, k, s, p in zip(xs[2:], ws[2:], st, pd)]
    a = to_blocked(rng.randn(xs[0], ws[0], *oh).astype("float32") * 3, bz)
    xb = pt.tensor(dtype="float32", shape=(None,) * (5 if bx else 4))
    wv, bv, av = pt.tensor4(), pt.vector(), pt.tensor(dtype="float32", shape=(None,) * 5)
    conv = Conv2d(**kw)(xb, wv, bv) if bias else Conv2d(**kw)(xb, wv)
    fused = Conv2dSum(**kw)(xb, wv, bv, av) if bias else Conv2dSum(**kw)(xb, wv, av)
    ins = [xb, wv, bv, av] if bias else [xb, wv, av]
    vals = [to_blocked(x, bx) if bx else x, w, b, a] if bias else \
        [to_blocked(x, bx) if bx else x, w, a]
    f = pytensor.function(ins, [conv, fused], mode=get_mode("c"), on_unused_input="ignore")
    y, got = f(*vals)
    np.testing.assert_array_equal(got, y + a)
    slow = pytensor.function(ins, fused, mode="FAST_COMPILE", on_unused_input="ignore")(*vals)
    np.testing.assert_allclose(slow, got, rtol=1e-4, atol=1e-4 * np.abs(got).max())


def test_blocked_convolution_numpy_path_and_no_gradient():
    """perform (the Python linker) converts the layouts; blocked ops are
    built after differentiation and refuse to be differentiated."""
    rng = np.random.RandomState(3)
    x, w = rng.randn(2, 8, 5, 5).astype("float32"), rng.randn(8, 8, 3, 3).astype("float32")
    xb = pt.tensor(dtype="float32", shape=(None,) * 5)
    wv = pt.tensor4()
    out = Conv2d(pad=(1, 1), blocks=(8, 8))(xb, wv)
    got = pytensor.function([xb, wv], out, mode="FAST_COMPILE")(to_blocked(x, 8), w)
    ref = pytensor.function([x4 := pt.tensor4(), wv], Conv2d(pad=(1, 1))(x4, wv),
                            mode="FAST_COMPILE")(x, w)
    np.testing.assert_allclose(from_blocked(got), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="NCHW graph"):
        pytensor.grad(out.sum(), wv)
    with pytest.raises(ValueError, match="blocks"):
        Conv2d(blocks=(4, 0))


# ---------------------------------------------------------------- the rewrite
def _trainers(kind, depth, width, monkeypatch, dtype_ok=True):
    lasres.random.set_rng(np.random.RandomState(1))
    vals = get_all_param_values(build(kind, depth, width))
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv(layout.BLOCKED_ENV, flag)
        lasres.random.set_rng(np.random.RandomState(1))
        net = build(kind, depth, width)
        set_all_param_values(net, vals)
        out[flag] = (Trainer(net, backend="c"), net)
    return out


def _kinds(fn):
    nodes = fn.maker.fgraph.apply_nodes
    return {"to": sum(isinstance(n.op, ToBlocked) for n in nodes),
            "from": sum(isinstance(n.op, FromBlocked) for n in nodes),
            "blocked_convs": sum(isinstance(n.op, (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
                                 and any(n.op.blocks) for n in nodes),
            "plain_convs": sum(isinstance(n.op, (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
                               and not any(n.op.blocks) for n in nodes),
            "nchw_sides": sum(isinstance(n.op, (Conv2d, Conv2dGradInputs, Conv2dGradWeights))
                              and 0 in n.op.blocks for n in nodes)}


def _conversions_only_at_the_edges(fn):
    """No conversion pair remains, and no conversion feeds an op that runs on
    blocked values: conversions stand only where the graph meets NCHW ops
    (the images, pooling, reshapes, shortcut subsampling)."""
    from pytensor.tensor.elemwise import Elemwise
    from lasres.ops.bn import BatchNormTrain, BatchNormTrainGrad
    fg = fn.maker.fgraph
    for n in fg.apply_nodes:
        if isinstance(n.op, ToBlocked):
            src = n.inputs[0].owner
            assert src is None or not isinstance(src.op, FromBlocked), "a round trip is left"
        if isinstance(n.op, FromBlocked):
            for c, _ in fg.clients[n.outputs[0]]:
                if c == "output":
                    continue
                assert not isinstance(c.op, (Conv2d, Conv2dGradInputs, Conv2dGradWeights,
                                             BatchNormTrain, BatchNormTrainGrad)), c
                if isinstance(c.op, Elemwise):
                    acts = [v for v in c.inputs if not all(v.type.broadcastable)]
                    assert not all(v.owner is not None and isinstance(v.owner.op, FromBlocked)
                                   for v in acts), c


@needs_onednn
@pytest.mark.parametrize("arch", [("normal", 1, 1), ("bottleneck", 1, 1), ("wide", 1, 2),
                                  ("resnet", 1, 1), ("ror", 1, 1)],
                         ids=lambda a: " ".join(map(str, a)))
def test_training_steps_equal_the_plain_graph(arch, monkeypatch):
    trs = _trainers(*arch, monkeypatch)
    k = _kinds(trs["1"][0].train_fn)
    assert k["blocked_convs"] > 0 and k["plain_convs"] == 0, k
    _conversions_only_at_the_edges(trs["1"][0].train_fn)
    assert _kinds(trs["0"][0].train_fn)["blocked_convs"] == 0
    rng = np.random.RandomState(0)
    x = rng.randn(16, 3, 32, 32).astype("float32")
    y = rng.randint(0, 10, 16).astype("int32")
    res = {}
    for flag, (tr, net) in trs.items():
        first = float(tr.train_fn(x, y)[0])
        after_one = get_all_param_values(net)
        losses = [first] + [float(tr.train_fn(x, y)[0]) for _ in range(2)]
        res[flag] = (losses, after_one)
    # one step: the same update (the batch norms' float64 sums in another
    # order move a float32 value by an ulp at most); later steps: the same
    # losses, within what a 1-ulp change of one input pixel moves them
    for a, b in zip(res["1"][1], res["0"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(np.abs(b).max(), 1e-3))
    np.testing.assert_allclose(res["1"][0], res["0"][0], rtol=1e-5)


@needs_onednn
def test_channels_not_a_multiple_of_the_block_stay_nchw(monkeypatch):
    """A 12-channel stage runs the plain ops, the rest blocked: same numbers."""
    from lasres import layers as L
    from lasres.nonlinearities import rectify
    from lasres.objectives import categorical_crossentropy
    rng = np.random.RandomState(4)
    x = rng.randn(8, 3, 8, 8).astype("float32")

    def step():
        lasres.random.set_rng(np.random.RandomState(5))
        net = L.InputLayer((None, 3, 8, 8))
        net = L.batch_norm(L.Conv2DLayer(net, 16, 3, pad=1, nonlinearity=rectify))
        net = L.batch_norm(L.Conv2DLayer(net, 12, 3, pad=1, nonlinearity=rectify))
        net = L.batch_norm(L.Conv2DLayer(net, 16, 3, pad=1, nonlinearity=rectify))
        net = L.DenseLayer(L.GlobalPoolLayer(net), 10, nonlinearity=lasres.nonlinearities.softmax)
        xv, yv = pt.tensor4(), pt.ivector()
        loss = categorical_crossentropy(L.get_output(net, xv), yv).mean()
        params = L.get_all_params(net, trainable=True)
        fn = pytensor.function([xv, yv], [loss] + pytensor.grad(loss, params),
                               mode=get_mode("c"))
        return fn
    blocked = step()
    monkeypatch.setenv(layout.BLOCKED_ENV, "0")
    plain = step()
    k = _kinds(blocked)
    # the 12-channel activation's convolutions read or write it in NCHW
    assert k["blocked_convs"] > 0 and k["nchw_sides"] >= 4, k
    y = rng.randint(0, 10, 8).astype("int32")
    for a, b in zip(blocked(x, y), plain(x, y)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(np.abs(b).max(), 1e-3))


def test_inference_float64_and_numpy_graphs_are_left_alone(monkeypatch):
    from lasres.train.recipe import compile_predict
    net = build("normal", 1, 1)
    f = compile_predict(net, "c")
    assert not any(isinstance(n.op, (ToBlocked, FromBlocked)) for n in
                   getattr(f, "fn", f).maker.fgraph.apply_nodes)
    x, w = pt.dtensor4(), pt.dtensor4()
    out = Conv2d(pad=(1, 1))(x, w)
    g = pytensor.function([x, w], pytensor.grad(out.sum(), [x, w]), mode=get_mode("c"))
    assert _kinds(g)["blocked_convs"] == 0
    monkeypatch.setattr(onednn, "_override", "numpy")
    x, w = pt.tensor4(), pt.tensor4()
    out = Conv2d(pad=(1, 1))(x, w)
    g = pytensor.function([x, w], pytensor.grad(out.sum(), [x, w]), mode=get_mode("c"))
    assert _kinds(g)["blocked_convs"] == 0


_NHWC16_SCRIPT = """
import numpy as np, pytensor, pytensor.tensor as pt
from lasres.config import get_mode
from lasres.ops.conv import Conv2d
from lasres.ops.shape import from_blocked, to_blocked
rng = np.random.RandomState(4)
x = rng.randn(6, 16, 32, 32).astype("float32")
w = rng.randn(16, 16, 3, 3).astype("float32")
b = rng.randn(16).astype("float32")
kw = dict(stride=(1, 1), pad=(1, 1), filter_flip=False)
x4, x5, wv, bv = pt.tensor4(), pt.tensor(dtype="float32", shape=(None,) * 5), pt.tensor4(), pt.vector()
plain = pytensor.function([x4, wv, bv], Conv2d(**kw)(x4, wv, bv), mode=get_mode("c"))(x, w, b)
blocked = pytensor.function([x5, wv, bv], Conv2d(blocks=(16, 16), **kw)(x5, wv, bv),
                            mode=get_mode("c"))(to_blocked(x, 16), w, b)
print("EQUAL", np.array_equal(from_blocked(blocked), plain))
"""


@needs_onednn
@pytest.mark.skipif(layout.block_size() != 16,
                    reason="16 channels are NHWC's bytes only in AVX-512's nChw16c")
@pytest.mark.parametrize("kernel", ["lasres", "brgemm"])
def test_sixteen_channel_forward_bit_for_bit(kernel):
    """The blocked 16-to-16-channel forward pass runs lasres's own kernel
    (``c/conv_fwd16.c``) or, with ``LASRES_CONV16=0``, hands oneDNN its arrays
    as NHWC (the same bytes), where the brgemm kernels run: either way the
    same bits as the plain graph's direct kernel, with the bias."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, ONEDNN_VERBOSE="1", LASRES_CONV16="1" if kernel == "lasres" else "0")
    out = subprocess.run([sys.executable, "-c", _NHWC16_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "EQUAL True" in out.stdout
    fwd = [ln for ln in out.stdout.splitlines()
           if ln.startswith("onednn_verbose") and ",exec," in ln and "forward_training" in ln]
    # the blocked op: brgemm, or no oneDNN convolution at all
    assert any("brgconv" in ln for ln in fwd) == (kernel == "brgemm"), fwd
    assert any(",jit:avx512" in ln for ln in fwd), fwd  # the plain op: NCHW, direct kernel
    assert len(fwd) == (1 if kernel == "lasres" else 2), fwd
