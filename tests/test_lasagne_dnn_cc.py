"""The GPU-era layers of Lasagne 0.2.dev1 on lasres's ops, without a GPU:
lasres.layers.dnn (Conv3DDNNLayer, Pool3DDNNLayer, MaxPool3DDNNLayer,
SpatialPyramidPoolingDNNLayer), lasres.layers.corrmm (Conv2DMMLayer) and
lasres.layers.cuda_convnet (Conv2DCCLayer, MaxPool2DCCLayer, the c01b
shuffles, NINLayer_c01b): defaults, checks, parameter shapes and values."""
import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt

from lasres.layers import Conv2DLayer, SpatialPyramidPoolingLayer
from lasres.layers import corrmm, cuda_convnet as cc, dnn
from test_ops_convnd import ref_conv, ref_pool

RNG = np.random.default_rng(3)


def shared(a):
    return pytensor.shared(np.asarray(a, np.float64))


def evaluate(layer, x):
    X = pt.tensor(dtype="float64", shape=(None,) * x.ndim)
    return pytensor.function([X], layer.get_output_for(X))(x)


# --- dnn ---------------------------------------------------------------------------

@pytest.mark.parametrize("pad, flip", [(0, False), ("same", False), ((1, 0, 2), True)])
def test_conv3d_dnn_correlates_by_default(pad, flip):
    x = RNG.standard_normal((2, 2, 4, 5, 3))
    W, b = RNG.standard_normal((4, 2, 3, 3, 3)), RNG.standard_normal(4)
    layer = dnn.Conv3DDNNLayer((None, 2, 4, 5, 3), 4, 3, stride=(1, 2, 1), pad=pad,
                               W=shared(W), b=shared(b), flip_filters=flip, nonlinearity=None)
    p = (1, 1, 1) if pad == "same" else (pad if isinstance(pad, tuple) else (pad,) * 3)
    expected = ref_conv(x, W, (1, 2, 1), p, (1, 1, 1), flip) + b[None, :, None, None, None]
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-12, atol=1e-12)
    grouped = dnn.Conv3DDNNLayer((None, 4, 4, 5, 3), 4, 3, num_groups=2)
    assert grouped.W.get_value().shape == (4, 2, 3, 3, 3)


@pytest.mark.parametrize("mode", ["max", "average_inc_pad", "average_exc_pad"])
def test_pool3d_dnn(mode):
    x = RNG.standard_normal((2, 2, 5, 6, 4))
    layer = dnn.Pool3DDNNLayer((None, 2, 5, 6, 4), (2, 3, 2), (1, 2, 2), (1, 1, 0), mode=mode)
    expected = ref_pool(x, (2, 3, 2), (1, 2, 2), (1, 1, 0), mode, True)
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-13)
    if mode == "max":
        np.testing.assert_allclose(evaluate(dnn.MaxPool3DDNNLayer(
            (None, 2, 5, 6, 4), (2, 3, 2), (1, 2, 2), (1, 1, 0)), x), expected)
    with pytest.raises(NotImplementedError, match="ignore_border=False"):
        dnn.Pool3DDNNLayer((None, 2, 5, 6, 4), 2, ignore_border=False)


def test_spp_dnn_is_the_fast_spp():
    x = RNG.standard_normal((2, 3, 13, 11))
    layer = dnn.SpatialPyramidPoolingDNNLayer((None, 3, 13, 11), [3, 1], "average_inc_pad")
    ref = SpatialPyramidPoolingLayer((None, 3, 13, 11), [3, 1], "average_inc_pad")
    assert layer.output_shape == (None, 3, 10)
    np.testing.assert_allclose(evaluate(layer, x), evaluate(ref, x), rtol=1e-14)
    with pytest.raises(ValueError, match="Expected 4 input dimensions"):
        dnn.SpatialPyramidPoolingDNNLayer((None, 3, 4))


# --- corrmm --------------------------------------------------------------------------

def test_conv2d_mm_layer():
    x = RNG.standard_normal((2, 3, 7, 6))
    W = RNG.standard_normal((4, 3, 3, 3))
    layer = corrmm.Conv2DMMLayer((None, 3, 7, 6), 4, 3, pad="same", W=shared(W), b=None,
                                 nonlinearity=None)
    assert layer.flip_filters is False
    np.testing.assert_allclose(evaluate(layer, x),
                               ref_conv(x, W, (1, 1), (1, 1), (1, 1), False), atol=1e-12)
    flipped = corrmm.Conv2DMMLayer((None, 3, 7, 6), 4, 3, stride=2, W=shared(W), b=None,
                                   flip_filters=True)
    plain = Conv2DLayer((None, 3, 7, 6), 4, 3, stride=2, W=shared(W), b=None)
    np.testing.assert_allclose(evaluate(flipped, x), evaluate(plain, x), atol=1e-12)


# --- cuda_convnet -------------------------------------------------------------------------

@pytest.mark.parametrize("pad, stride, flip, untie", [(0, 1, False, False), (1, 2, True, True),
                                                      ("same", 1, False, True)])
def test_conv2d_cc_both_layouts(pad, stride, flip, untie):
    x = RNG.standard_normal((2, 4, 7, 8))
    W = RNG.standard_normal((16, 4, 3, 3))
    bc01 = cc.Conv2DCCLayer((None, 4, 7, 8), 16, 3, stride=stride, pad=pad, W=shared(W),
                            flip_filters=flip, untie_biases=untie, nonlinearity=None)
    b = RNG.standard_normal(bc01.b.get_value().shape)
    bc01.b = shared(b)
    p = 1 if pad == "same" else pad
    expected = ref_conv(x, W, (stride,) * 2, (p, p), (1, 1), flip)
    expected = expected + (b[None] if untie else b[None, :, None, None])
    assert bc01.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(evaluate(bc01, x), expected, rtol=1e-12, atol=1e-12)
    # c01b: input (C, rows, cols, batch), W (C, fh, fw, F), output (F, rows, cols, batch)
    c01b = cc.Conv2DCCLayer((4, 7, 8, 2), 16, 3, stride=stride, pad=pad, dimshuffle=False,
                            W=shared(W.transpose(1, 2, 3, 0)), flip_filters=flip,
                            untie_biases=untie, nonlinearity=None)
    assert c01b.get_W_shape() == (4, 3, 3, 16)
    assert c01b.b.get_value().shape == b.shape
    assert [p_.name for p_ in c01b.get_params()] == ["W", "b"]
    c01b.b = shared(b)
    assert c01b.output_shape == expected.transpose(1, 2, 3, 0).shape
    np.testing.assert_allclose(evaluate(c01b, x.transpose(1, 2, 3, 0)),
                               expected.transpose(1, 2, 3, 0), rtol=1e-12, atol=1e-12)


def test_conv2d_cc_defaults_and_checks():
    layer = cc.Conv2DCCLayer((None, 3, 8, 8), 16, 3)
    assert layer.flip_filters is False and layer.partial_sum == 1
    assert layer.W.get_value().shape == (16, 3, 3, 3)
    # W=None means Glorot uniform, with c01b fan computation when dimshuffle=False
    c01b = cc.Conv2DCCLayer((8, 6, 6, 4), 32, 5, dimshuffle=False)
    bound = np.sqrt(6.0 / ((8 + 32) * 25))      # c01b: fan_in = C * fh * fw, fan_out = F * fh * fw
    assert np.abs(c01b.W.get_value()).max() <= bound + 1e-7
    for kwargs, message in [(dict(filter_size=(3, 5)), "square filters"),
                            (dict(stride=(1, 2)), "square strides"),
                            (dict(num_filters=24), "multiple of 16"),
                            (dict(pad=(1, 0)), "square padding")]:
        args = dict(num_filters=16, filter_size=3)
        args.update(kwargs)
        with pytest.raises(RuntimeError, match=message):
            cc.Conv2DCCLayer((None, 4, 8, 8), **args)
    with pytest.raises(RuntimeError, match="1, 2, 3 or a multiple of 4"):
        cc.Conv2DCCLayer((None, 5, 8, 8), 16, 3)


@pytest.mark.parametrize("pool_size, stride", [(3, 2), (2, None), ((3, 3), (1, 1))])
def test_maxpool2d_cc(pool_size, stride):
    x = RNG.standard_normal((2, 3, 7, 8))
    layer = cc.MaxPool2DCCLayer((None, 3, 7, 8), pool_size, stride)
    k = pool_size[0] if isinstance(pool_size, tuple) else pool_size
    s = k if stride is None else (stride[0] if isinstance(stride, tuple) else stride)
    expected = ref_pool(x, (k, k), (s, s), (0, 0), "max", False)
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(evaluate(layer, x), expected)
    c01b = cc.MaxPool2DCCLayer((3, 7, 8, None), pool_size, stride, dimshuffle=False)
    assert c01b.output_shape == expected.transpose(1, 2, 3, 0).shape[:3] + (None,)
    np.testing.assert_allclose(evaluate(c01b, x.transpose(1, 2, 3, 0)),
                               expected.transpose(1, 2, 3, 0))


def test_maxpool2d_cc_checks():
    for kwargs, message in [(dict(pool_size=(2, 3)), "square pooling"),
                            (dict(pool_size=2, stride=(1, 2)), "same stride"),
                            (dict(pool_size=2, stride=3), "stride <= pool_size"),
                            (dict(pool_size=2, ignore_border=True), "ignore_border"),
                            (dict(pool_size=2, pad=1), "padding")]:
        with pytest.raises(NotImplementedError, match=message):
            cc.MaxPool2DCCLayer((None, 3, 8, 8), **kwargs)
    assert cc.MaxPool2DCCLayer((None, 3, 8, 8), 2, pad=(0, 0)).output_shape == (None, 3, 4, 4)


def test_shuffles_and_nin_c01b():
    x = RNG.standard_normal((2, 3, 4, 5))
    to_c01b = cc.bc01_to_c01b((None, 3, 4, 5))
    assert cc.bc01_to_c01b is cc.ShuffleBC01ToC01BLayer
    assert cc.c01b_to_bc01 is cc.ShuffleC01BToBC01Layer
    assert to_c01b.output_shape == (3, 4, 5, None)
    np.testing.assert_array_equal(evaluate(to_c01b, x), x.transpose(1, 2, 3, 0))
    back = cc.c01b_to_bc01(to_c01b)
    assert back.output_shape == (None, 3, 4, 5)
    np.testing.assert_array_equal(evaluate(back, x.transpose(1, 2, 3, 0)), x)
    xc = x.transpose(1, 2, 3, 0)
    for untie in (False, True):
        nin = cc.NINLayer_c01b((3, 4, 5, None), 6, untie_biases=untie, nonlinearity=None)
        assert nin.output_shape == (6, 4, 5, None)
        assert nin.W.get_value().shape == (6, 3)
        assert nin.b.get_value().shape == ((6, 4, 5) if untie else (6,))
        W, b = RNG.standard_normal((6, 3)), RNG.standard_normal(nin.b.get_value().shape)
        nin.W, nin.b = shared(W), shared(b)
        expected = np.einsum("fc,cxyb->fxyb", W, xc) + (b[..., None] if untie
                                                        else b[:, None, None, None])
        np.testing.assert_allclose(evaluate(nin, xc), expected, rtol=1e-12, atol=1e-12)
    assert cc.NINLayer_c01b((3, 4, 5, None), 6, b=None).get_params() != []
