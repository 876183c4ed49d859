"""The C mode's fused inference (lasres/ops/fused_infer.py, onednn_program.py).

The fused graph (one OneDNNInference node per region: blocked layouts
between primitives, batch norms folded into convolutions, sums and ReLUs as
post-ops) must give the numbers of the plain graph (the ops one by one),
within float32 round-off of the output's scale; fall back to the plain ops
where oneDNN cannot plan a region; and never touch a training graph.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres
from lasres import layers as L
from lasres.layers import get_all_params
from lasres.models import build
from lasres.ops import fused_infer, onednn
from lasres.ops import native, onednn_program
from lasres.train.recipe import compile_predict

pytestmark = pytest.mark.skipif(not fused_infer.enabled(), reason="oneDNN kernels not installed")


def _randomise(net, seed=0):
    """Batch-norm statistics and biases away from their initial values, so
    that a fold that dropped a term would show."""
    rng = np.random.RandomState(seed)
    for p in get_all_params(net):
        v = p.get_value()
        if p.name == "mean":
            p.set_value((rng.randn(*v.shape) * 0.2).astype(v.dtype))
        elif p.name in ("inv_std", "gamma"):
            p.set_value((0.6 + 0.8 * rng.rand(*v.shape)).astype(v.dtype))
        elif p.name in ("beta", "b"):
            p.set_value((rng.randn(*v.shape) * 0.2).astype(v.dtype))
    return net


def _fused_nodes(fn):
    return [n for n in fn.maker.fgraph.toposort() if isinstance(n.op, fused_infer.OneDNNInference)]


def _both(monkeypatch, build_fn):
    """(fused function, plain function) of the same graph."""
    fused = build_fn()
    monkeypatch.setenv(fused_infer.FUSE_ENV, "0")
    plain = build_fn()
    monkeypatch.delenv(fused_infer.FUSE_ENV)
    assert _fused_nodes(fused), "the rewrite did not fuse anything"
    assert not _fused_nodes(plain)
    return fused, plain


def _close(a, b, scale=None):
    scale = np.abs(b).max() if scale is None else scale
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * max(scale, 1e-30))


ARCHS = [("normal", 1), ("bottleneck", 1), ("wide", 1, 2), ("resnet", 1), ("plain", 1),
         ("ror", 1), ("rir", 8, 1), ("cnn", 8, 1)]


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: " ".join(map(str, a)))
def test_fused_inference_equals_the_ops_one_by_one(monkeypatch, arch):
    net = _randomise(build(*arch))
    x = np.random.RandomState(1).randn(6, 3, 32, 32).astype("float32")
    logits_layer = net.input_layer   # before the softmax: no saturation hides a difference
    xv = pt.tensor4("x")
    out = L.get_output(logits_layer, xv, deterministic=True)
    fused, plain = _both(monkeypatch, lambda: pytensor.function([xv], out))
    _close(fused(x), plain(x))
    # and the probabilities of compile_predict
    pf, pp = _both(monkeypatch, lambda: compile_predict(net))
    _close(pf(x), pp(x), 1.0)


def test_keras_layout_ror_wrn(monkeypatch):
    net = _randomise(build("ror-wrn", 1, 1, layout="keras"))
    x = np.random.RandomState(2).rand(4, 3, 32, 32).astype("float32")
    pf, pp = _both(monkeypatch, lambda: compile_predict(net))
    _close(pf(x), pp(x), 1.0)


def _lasagne_net(x_var):
    """A Lasagne network written as a user would, not one of lasres's models:
    flipped filters, 'full'/'same'/'valid'/explicit pads, strides whose last
    input rows are never read, biases, a sum, separate batch norm layers."""
    from lasres.layers import (BatchNormLayer, Conv2DLayer, ElemwiseSumLayer, InputLayer,
                               NonlinearityLayer)
    from lasres.nonlinearities import rectify
    l_in = InputLayer((None, 3, 13, 11), x_var)
    a = Conv2DLayer(l_in, 8, 3, pad="full", nonlinearity=None)             # 15 x 13
    a = BatchNormLayer(a)
    a = NonlinearityLayer(a, rectify)
    b = Conv2DLayer(a, 8, 3, pad="same", nonlinearity=rectify)              # flipped, bias, relu
    c = Conv2DLayer(b, 8, 1, nonlinearity=None)
    s = NonlinearityLayer(ElemwiseSumLayer([a, c]), rectify)
    d = Conv2DLayer(s, 6, 3, stride=2, pad=0, nonlinearity=None)            # rows dropped
    d = BatchNormLayer(d)
    e = Conv2DLayer(d, 5, (2, 3), stride=(2, 1), pad=(1, 0), nonlinearity=rectify)
    return e


def test_any_lasagne_network(monkeypatch):
    xv = pt.tensor4("x")
    net = _randomise(_lasagne_net(xv), seed=3)
    out = L.get_output(net, deterministic=True)
    fused, plain = _both(monkeypatch, lambda: pytensor.function([xv], out))
    for n in (5, 1, 7):   # several batch sizes: one plan each
        x = np.random.RandomState(n).randn(n, 3, 13, 11).astype("float32")
        _close(fused(x), plain(x))


def test_batch_in_chunks(monkeypatch):
    """A batch run in chunks (one plan per chunk size) gives the whole batch's numbers."""
    xv = pt.tensor4("x")
    net = _randomise(_lasagne_net(xv), seed=6)
    out = L.get_output(net, deterministic=True)
    fused, plain = _both(monkeypatch, lambda: pytensor.function([xv], out))
    x = np.random.RandomState(7).randn(7, 3, 13, 11).astype("float32")
    want = plain(x)
    for chunk in ("3", "1", "7"):
        monkeypatch.setenv("LASRES_FUSE_CHUNK", chunk)
        _close(fused(x), want)
    monkeypatch.delenv("LASRES_FUSE_CHUNK")
    prog = onednn_program.Program([], 1, [])
    # about 20 images a call, in equal chunks: 20 in one go, 100 in five
    # chunks of 20, 64 in four of 16
    assert prog.chunk([(20, 16, 32, 32)], []) == 20
    assert prog.chunk([(100, 16, 32, 32)], []) == 20
    assert prog.chunk([(64, 16, 32, 32)], []) == 16
    # at most 8 MiB an activation: 64 channels of 112 x 112 (3 MiB an image)
    assert prog.chunk([(100, 64, 112, 112)], []) == 2


@pytest.mark.parametrize("alone", [0, 4096, 1 << 40])
def test_parameters_changed_between_calls_are_used(monkeypatch, alone):
    """The folded filters are cached between calls; a set_value must show,
    whether the parameters are compared gathered, one by one, or both."""
    monkeypatch.setattr(onednn_program, "COMPARE_ALONE_BYTES", alone)
    net = _randomise(build("normal", 1))
    x = np.random.RandomState(4).randn(3, 3, 32, 32).astype("float32")
    pf, pp = _both(monkeypatch, lambda: compile_predict(net))
    before = pf(x)
    _randomise(net, seed=9)
    after, want = pf(x), pp(x)
    assert np.abs(after - before).max() > 1e-3
    _close(after, want, 1.0)
    # an in-place change of a parameter's array (borrowed storage)
    p = [q for q in get_all_params(net) if q.name == "W"][3]
    p.get_value(borrow=True)[...] *= 1.5
    _close(pf(x), pp(x), 1.0)


def test_a_region_onednn_cannot_plan_runs_the_ops(monkeypatch):
    net = _randomise(build("normal", 1))
    x = np.random.RandomState(5).randn(2, 3, 32, 32).astype("float32")
    pf, pp = _both(monkeypatch, lambda: compile_predict(net))

    def refuse(self, inputs, params):
        raise onednn_program.DnnlError("refused for the test")
    monkeypatch.setattr(onednn_program.Program, "run", refuse)
    with pytest.warns(RuntimeWarning, match="one by one"):
        got = pf(x)
    _close(got, pp(x), 1.0)


def test_training_graphs_and_other_kernels_are_not_fused(monkeypatch):
    net = build("normal", 1)
    from lasres.train.recipe import legacy_objective
    from lasres.train import Trainer
    tr = Trainer(net)
    assert not [n for n in tr.train_fn.maker.fgraph.toposort()
                if isinstance(n.op, fused_infer.OneDNNInference)]
    assert _fused_nodes(tr.predict_fn)
    monkeypatch.setattr(onednn, "_override", "numpy")
    assert not _fused_nodes(compile_predict(net))


def test_float64_graphs_are_not_fused():
    xv = pt.dtensor4("x")
    w = pytensor.shared(np.ones((2, 3, 3, 3)))
    from lasres.ops.conv import conv2d
    fn = pytensor.function([xv], conv2d(xv, w), mode=lasres.config.get_mode("c"))
    assert not _fused_nodes(fn)


def test_conv_geometry_of_dropped_rows():
    # 8 rows, 3x3, stride 2, no pad: outputs 3 rows, the last input row unread
    oh, ow, pl, pr = onednn_program.conv_geometry(8, 8, 3, 3, (2, 2), (0, 0, 0))
    assert (oh, ow, pl, pr) == (3, 3, (0, 0), (-1, -1))
    assert onednn_program.conv_geometry(5, 5, 3, 3, (1, 1), (0, 0, 2))[:2] == (7, 7)


@pytest.mark.parametrize("sx, sw", [((8, 128, 2, 2), (128, 128, 3, 3)),
                                    ((16, 64, 8, 8), (64, 64, 3, 3)),
                                    ((16, 16, 32, 32), (16, 16, 3, 3))])
def test_fused_convolution_rounds_as_a_gemm(monkeypatch, sx, sw):
    """Lasagne's float32 convolutions were GEMMs; the fused forward pass may
    not round worse (oneDNN's brgemm kernels, which its inference kind picks
    on AVX-512 and AVX2, did: 1.4-1.9x on many-channel layers)."""
    from lasres.ops.conv import conv2d
    rng = np.random.RandomState(11)
    errs = {"gemm": [], "fused": [], "op": []}
    for _ in range(3):
        x = np.maximum(rng.randn(*sx), 0)
        w = rng.randn(*sw) * np.sqrt(2.0 / (sw[1] * 9))
        x64 = pt.dtensor4()
        truth = pytensor.function([x64], conv2d(x64, pytensor.shared(w), pad=(1, 1),
                                                filter_flip=False))(x)
        for name, kern in (("gemm", "numpy"), ("fused", None), ("op", None)):
            monkeypatch.setattr(onednn, "_override", kern)
            if name == "op":
                monkeypatch.setenv(fused_infer.FUSE_ENV, "0")
            xv = pt.tensor4()
            fn = pytensor.function([xv], conv2d(xv, pytensor.shared(w.astype("float32")),
                                                pad=(1, 1), filter_flip=False))
            assert bool(_fused_nodes(fn)) == (name == "fused")
            y = fn(x.astype("float32"))
            errs[name].append(np.sqrt(np.mean((y - truth) ** 2)))
        monkeypatch.delenv(fused_infer.FUSE_ENV)
    # as the training graphs' oneDNN convolution, and within the bound the
    # per-pass test sets for it (tests/test_float32_precision.py)
    assert np.mean(errs["fused"]) <= 1.05 * np.mean(errs["op"]), errs
    assert np.mean(errs["fused"]) <= 1.5 * np.mean(errs["gemm"]), errs


def test_layers_the_fast_path_does_not_cover_fall_back(monkeypatch):
    """Dilated, grouped, strided-odd and 1-D convolutions and pooling between
    fused regions: the rest is fused, the numbers are the plain graph's."""
    from lasres.layers import (BatchNormLayer, Conv1DLayer, Conv2DLayer, DilatedConv2DLayer,
                               InputLayer, MaxPool2DLayer, ReshapeLayer)
    xv = pt.tensor4("x")
    l = InputLayer((None, 4, 33, 29), xv)
    l = BatchNormLayer(Conv2DLayer(l, 8, 3, stride=(3, 2), pad=1, nonlinearity=None))
    l = DilatedConv2DLayer(l, 8, 3, dilation=(2, 2))
    l = Conv2DLayer(l, 8, 3, pad="same", num_groups=2)
    l = MaxPool2DLayer(l, 2)
    l = BatchNormLayer(Conv2DLayer(l, 6, 1))
    l = ReshapeLayer(l, ([0], [1], -1))
    l = Conv1DLayer(l, 4, 3)
    net = _randomise(l, seed=12)
    out = L.get_output(net, deterministic=True)
    fused, plain = _both(monkeypatch, lambda: pytensor.function([xv], out))
    x = np.random.RandomState(13).randn(3, 4, 33, 29).astype("float32")
    _close(fused(x), plain(x))


@pytest.mark.skipif(onednn_program.channel_block() != 16,
                    reason="16 channels are NHWC's bytes only in AVX-512's nChw16c")
@pytest.mark.parametrize("kernel", ["lasres:conv16", "brg"])
def test_sixteen_channel_convolutions_run_on_the_same_bytes(monkeypatch, kernel):
    """A 16-channel activation in nChw16c is byte for byte NHWC, where oneDNN
    runs its brgemm kernels and lasres its own (``c/conv_fwd16.c``;
    ``LASRES_CONV16=0`` leaves them to oneDNN): the plan hands them the same
    buffers (no reorder), and they sum as the ops one by one do, bit for
    bit: a convolution plus its bias, then the residual sum, then the ReLU."""
    monkeypatch.setenv("LASRES_CONV16", "1" if kernel == "lasres:conv16" else "0")
    if kernel == "lasres:conv16" and native.library() is None:
        pytest.skip("no C++ compiler for lasres's native library")
    from lasres.layers import Conv2DLayer, ElemwiseSumLayer, InputLayer, NonlinearityLayer
    from lasres.nonlinearities import rectify
    xv = pt.tensor4("x")
    l0 = Conv2DLayer(InputLayer((None, 3, 32, 32), xv), 16, 3, pad=1, nonlinearity=rectify)
    l1 = Conv2DLayer(l0, 16, 3, pad=1, nonlinearity=rectify)
    l2 = Conv2DLayer(l1, 16, 3, pad=1, nonlinearity=None)
    out = NonlinearityLayer(ElemwiseSumLayer([l2, l0]), rectify)
    _randomise(out, seed=5)
    fused, plain = _both(monkeypatch, lambda: pytensor.function(
        [xv], L.get_output(out, deterministic=True)))
    x = np.random.RandomState(8).randn(10, 3, 32, 32).astype("float32")
    np.testing.assert_array_equal(fused(x), plain(x))
    prog = _fused_nodes(fused)[0].op._program
    impls = [p.impls for p in prog._plans.values()][0]
    assert [i.startswith(kernel) for i in impls] == [False, True, True], impls


@pytest.mark.parametrize("channels", [16, 32])
def test_a_convolution_summed_with_its_own_input(monkeypatch, channels):
    """``conv(a) + a``: the sum may not be computed in place over the
    summand when the summand is the convolution's own input (each output
    reads its input's neighbours): the plan once wrote it there."""
    from lasres.layers import Conv2DLayer, ElemwiseSumLayer, InputLayer, NonlinearityLayer
    from lasres.nonlinearities import rectify
    xv = pt.tensor4("x")
    l0 = Conv2DLayer(InputLayer((None, 3, 16, 16), xv), channels, 3, pad=1, nonlinearity=rectify)
    l1 = Conv2DLayer(l0, channels, 3, pad=1, nonlinearity=None)
    out = NonlinearityLayer(ElemwiseSumLayer([l1, l0]), rectify)
    _randomise(out, seed=3)
    fused, plain = _both(monkeypatch, lambda: pytensor.function(
        [xv], L.get_output(out, deterministic=True)))
    x = np.random.RandomState(4).randn(3, 3, 16, 16).astype("float32")
    if channels == 16 and onednn_program.channel_block() == 16:
        np.testing.assert_array_equal(fused(x), plain(x))   # see the test above
    else:   # oneDNN's direct kernel adds the sum before the bias
        _close(fused(x), plain(x))
