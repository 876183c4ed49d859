"""lasres.layers.conv against Lasagne 0.2.dev1's semantics: Conv1DLayer,
Conv3DLayer, TransposedConv2DLayer / Deconv2DLayer, TransposedConv3DLayer /
Deconv3DLayer, DilatedConv2DLayer and grouped convolutions -- signatures,
parameter shapes and order, output shapes, values against float64 loops,
gradients and errors."""
import inspect
import itertools

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt

import lasres
from lasres import init, nonlinearities
from lasres.layers import (Conv1DLayer, Conv2DLayer, Conv3DLayer, Deconv2DLayer, Deconv3DLayer,
                           DilatedConv2DLayer, TransposedConv2DLayer,
                           TransposedConv3DLayer)
from test_ops_convnd import ref_conv

RNG = np.random.default_rng(7)


def shared(a):
    return pytensor.shared(np.asarray(a, np.float64))


def evaluate(layer, x, **kw):
    X = pt.tensor(dtype="float64", shape=(None,) * x.ndim)
    return pytensor.function([X], layer.get_output_for(X, **kw))(x)


def ref_transposed(x, W, stride, crop, flip_filters, out_size):
    """Transposed convolution by scattering: input pixel (i, ...) adds
    ``x * K`` to the output block at ``i * stride - crop``, with ``K`` the
    filters flipped unless ``flip_filters`` (Lasagne's convention: the layer
    is the input gradient of a convolution with ``filter_flip = not
    flip_filters``)."""
    x, W = np.asarray(x, np.float64), np.asarray(W, np.float64)
    n = x.ndim - 2
    K = W if flip_filters else W[(Ellipsis,) + (slice(None, None, -1),) * n]
    k_shape = W.shape[2:]
    full = tuple((i - 1) * s + k for i, s, k in zip(x.shape[2:], stride, k_shape))
    big = tuple(max(f, c + o) for f, c, o in zip(full, crop, out_size))
    z = np.zeros((x.shape[0], W.shape[1]) + big)
    for pos in itertools.product(*(range(i) for i in x.shape[2:])):
        idx = (slice(None), slice(None)) + tuple(slice(p * s, p * s + k)
                                                 for p, s, k in zip(pos, stride, k_shape))
        z[idx] += np.tensordot(x[(slice(None), slice(None)) + pos], K, axes=(1, 0))
    return z[(slice(None), slice(None)) + tuple(slice(c, c + o) for c, o in zip(crop, out_size))]


# --- signatures ----------------------------------------------------------------

@pytest.mark.parametrize("cls, expected", [
    (Conv1DLayer, ["incoming", "num_filters", "filter_size", "stride", "pad", "untie_biases",
                   "W", "b", "nonlinearity", "flip_filters", "convolution", "kwargs"]),
    (Conv3DLayer, ["incoming", "num_filters", "filter_size", "stride", "pad", "untie_biases",
                   "W", "b", "nonlinearity", "flip_filters", "convolution", "kwargs"]),
    (TransposedConv2DLayer, ["incoming", "num_filters", "filter_size", "stride", "crop",
                             "untie_biases", "W", "b", "nonlinearity", "flip_filters",
                             "output_size", "kwargs"]),
    (TransposedConv3DLayer, ["incoming", "num_filters", "filter_size", "stride", "crop",
                             "untie_biases", "W", "b", "nonlinearity", "flip_filters",
                             "output_size", "kwargs"]),
    (DilatedConv2DLayer, ["incoming", "num_filters", "filter_size", "dilation", "pad",
                          "untie_biases", "W", "b", "nonlinearity", "flip_filters", "kwargs"]),
])
def test_signatures_and_defaults(cls, expected):
    params = inspect.signature(cls.__init__).parameters
    assert list(params)[1:] == expected
    defaults = {k: v.default for k, v in params.items()}
    assert defaults["untie_biases"] is False
    assert isinstance(defaults["W"], init.GlorotUniform)
    assert defaults["nonlinearity"] is nonlinearities.rectify
    flip_default = cls in (Conv1DLayer, Conv3DLayer)
    assert defaults["flip_filters"] is flip_default
    if cls is Conv1DLayer:
        assert defaults["stride"] == 1
        assert defaults["convolution"] is lasres.theano_extensions.conv.conv1d_mc0
    if cls is TransposedConv3DLayer:
        assert defaults["stride"] == (1, 1, 1) and defaults["crop"] == 0
    if cls is DilatedConv2DLayer:
        assert defaults["dilation"] == (1, 1)
    assert Deconv2DLayer is TransposedConv2DLayer and Deconv3DLayer is TransposedConv3DLayer


# --- Conv1DLayer -----------------------------------------------------------------

@pytest.mark.parametrize("pad, stride, flip", [(0, 1, True), ("same", 1, False), ("full", 2, True),
                                               (2, 3, False), ("valid", 2, True)])
def test_conv1d_values(pad, stride, flip):
    x = RNG.standard_normal((2, 3, 11))
    W, b = RNG.standard_normal((4, 3, 3)), RNG.standard_normal(4)
    layer = Conv1DLayer((None, 3, 11), 4, 3, stride=stride, pad=pad, W=shared(W), b=shared(b),
                        flip_filters=flip, nonlinearity=None)
    p = {0: 0, "same": 1, "full": 2, 2: 2, "valid": 0}[pad]
    expected = ref_conv(x, W, (stride,), (p,), (1,), flip) + b[None, :, None]
    out = evaluate(layer, x)
    assert out.shape == expected.shape and layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_conv1d_params_untied_and_alternative_implementations():
    layer = Conv1DLayer((None, 3, 10), 5, 4, untie_biases=True)
    assert [p.name for p in layer.get_params()] == ["W", "b"]
    assert layer.W.get_value().shape == (5, 3, 4) and layer.b.get_value().shape == (5, 7)
    assert layer.get_params(regularizable=True) == [layer.W]
    x = RNG.standard_normal((2, 3, 10))
    W = RNG.standard_normal((5, 3, 4))
    expected = np.maximum(ref_conv(x, W, (2,), (0,), (1,), True), 0)
    te = lasres.theano_extensions.conv
    for impl in (te.conv1d_sc, te.conv1d_mc0, te.conv1d_mc1, te.conv1d_unstrided, te.conv1d_sd,
                 te.conv1d_md):
        layer = Conv1DLayer((None, 3, 10), 5, 4, stride=2, W=shared(W), convolution=impl)
        np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-12, atol=1e-12,
                                   err_msg=impl.__name__)


# --- Conv3DLayer -----------------------------------------------------------------

@pytest.mark.parametrize("pad, stride, flip, untie", [
    ("same", (1, 1, 1), True, False), ("full", (2, 1, 2), False, True),
    ((1, 0, 2), 2, True, False), ("valid", 1, False, True)])
def test_conv3d_values(pad, stride, flip, untie):
    x = RNG.standard_normal((2, 2, 5, 6, 4))
    W = RNG.standard_normal((3, 2, 3, 1, 3))
    layer = Conv3DLayer((None, 2, 5, 6, 4), 3, (3, 1, 3), stride=stride, pad=pad, W=shared(W),
                        flip_filters=flip, untie_biases=untie, nonlinearity=None)
    p = {"same": (1, 0, 1), "full": (2, 0, 2), "valid": (0, 0, 0)}.get(pad, pad) \
        if isinstance(pad, str) else pad
    s = stride if isinstance(stride, tuple) else (stride,) * 3
    expected = ref_conv(x, W, s, p, (1, 1, 1), flip)
    b = RNG.standard_normal(layer.b.get_value().shape)
    layer.b.set_value(b.astype(layer.b.dtype))
    expected = expected + (b[None] if untie else b[None, :, None, None, None])
    assert layer.output_shape == (None,) + expected.shape[1:]
    assert layer.b.get_value().shape == ((3,) + expected.shape[2:] if untie else (3,))
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-6, atol=1e-6)


def test_conv3d_gradient_and_shape_errors():
    layer = Conv3DLayer((2, 2, 4, 4, 4), 3, 3, pad=1, W=shared(RNG.standard_normal((3, 2, 3, 3, 3))))
    X = pt.tensor(dtype="float64", shape=(None,) * 5)
    cost = (layer.get_output_for(X) ** 2).sum()
    g = pytensor.grad(cost, layer.W)
    assert pytensor.function([X], g)(RNG.standard_normal((2, 2, 4, 4, 4))).shape == (3, 2, 3, 3, 3)
    with pytest.raises(ValueError, match="Expected 5 input dimensions"):
        Conv3DLayer((2, 2, 4, 4), 3, 3)
    with pytest.raises(NotImplementedError, match="odd filter size"):
        Conv3DLayer((2, 2, 4, 4, 4), 3, 2, pad="same")


# --- grouped convolution -----------------------------------------------------------

def test_num_groups():
    x = RNG.standard_normal((2, 4, 6, 5))
    W = RNG.standard_normal((6, 2, 3, 3))
    layer = Conv2DLayer((None, 4, 6, 5), 6, 3, W=shared(W), b=None, num_groups=2,
                        nonlinearity=None)
    assert layer.get_W_shape() == (6, 2, 3, 3) and layer.num_groups == 2
    expected = np.concatenate([ref_conv(x[:, :2], W[:3], (1, 1), (0, 0), (1, 1), True),
                               ref_conv(x[:, 2:], W[3:], (1, 1), (0, 0), (1, 1), True)], axis=1)
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="num_groups"):
        Conv2DLayer((None, 4, 6, 5), 6, 3, num_groups=4)
    with pytest.raises(ValueError, match="num_groups"):
        Conv3DLayer((None, 4, 6, 5, 5), 6, 3, num_groups=0)


# --- transposed convolutions -----------------------------------------------------

@pytest.mark.parametrize("stride, crop, flip, output_size", [
    ((1, 1), 0, False, None), ((2, 2), 0, False, None), ((2, 3), (1, 0), True, None),
    ((2, 2), "same", False, None), ((1, 2), "full", True, None), ((2, 2), 1, False, (10, 12))])
def test_transposed_conv2d_values(stride, crop, flip, output_size):
    x = RNG.standard_normal((2, 3, 5, 6))
    W, b = RNG.standard_normal((3, 4, 3, 3)), RNG.standard_normal(4)
    layer = TransposedConv2DLayer((None, 3, 5, 6), 4, 3, stride=stride, crop=crop, W=shared(W),
                                  b=shared(b), flip_filters=flip, output_size=output_size,
                                  nonlinearity=None)
    c = {"same": (1, 1), "full": (2, 2)}.get(crop, crop) if isinstance(crop, str) else \
        (crop if isinstance(crop, tuple) else (crop, crop))
    size = output_size or tuple((i - 1) * s - 2 * p + 3
                                for i, s, p in zip((5, 6), stride, c))
    assert layer.output_shape == (None, 4) + size
    assert layer.W.get_value().shape == (3, 4, 3, 3) and not hasattr(layer, "pad")
    expected = ref_transposed(x, W, stride, c, flip, size) + b[None, :, None, None]
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-12, atol=1e-12)


def test_transposed_conv2d_is_the_input_gradient_of_a_convolution():
    x = RNG.standard_normal((2, 4, 9, 8))
    W = RNG.standard_normal((3, 4, 3, 3))
    X = pt.tensor(dtype="float64", shape=(None,) * 4)
    conv = Conv2DLayer((None, 4, 9, 8), 3, 3, stride=2, pad=1, W=shared(W), b=None,
                       nonlinearity=None, flip_filters=True)
    y = conv.get_output_for(X)
    G = pt.tensor(dtype="float64", shape=(None,) * 4)
    gx = pytensor.grad(None, X, known_grads={y: G})
    g = RNG.standard_normal((2, 3, 5, 4))
    expected = pytensor.function([G, X], gx, on_unused_input="ignore")(g, x)
    deconv = TransposedConv2DLayer((None, 3, 5, 4), 4, 3, stride=2, crop=1, W=shared(W), b=None,
                                   nonlinearity=None, flip_filters=False, output_size=(9, 8))
    np.testing.assert_allclose(evaluate(deconv, g), expected, rtol=1e-12, atol=1e-12)


def test_transposed_conv_unknown_and_symbolic_sizes():
    x = RNG.standard_normal((2, 3, 5, 6))
    W = RNG.standard_normal((3, 4, 3, 3))
    layer = TransposedConv2DLayer((None, 3, None, None), 4, 3, stride=2, W=shared(W), b=None,
                                  nonlinearity=None)
    assert layer.output_shape == (None, 4, None, None)
    expected = ref_transposed(x, W, (2, 2), (0, 0), False, (11, 13))
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-12, atol=1e-12)
    size = pt.lvector("size")
    layer = TransposedConv2DLayer((None, 3, 5, 6), 4, 3, stride=2, W=shared(W), b=None,
                                  nonlinearity=None, output_size=size)
    assert layer.output_shape == (None, 4, None, None)
    X = pt.tensor(dtype="float64", shape=(None,) * 4)
    out = pytensor.function([X, size], layer.get_output_for(X))(x, np.array([12, 14]))
    np.testing.assert_allclose(out, ref_transposed(x, W, (2, 2), (0, 0), False, (12, 14)),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("stride, crop, flip", [(2, 0, False), ((1, 2, 2), "same", True)])
def test_transposed_conv3d_values(stride, crop, flip):
    x = RNG.standard_normal((2, 3, 3, 4, 2))
    W = RNG.standard_normal((3, 2, 3, 3, 3))
    layer = TransposedConv3DLayer((None, 3, 3, 4, 2), 2, 3, stride=stride, crop=crop,
                                  W=shared(W), b=None, flip_filters=flip, nonlinearity=None)
    s = stride if isinstance(stride, tuple) else (stride,) * 3
    c = (1, 1, 1) if crop == "same" else (0, 0, 0)
    size = tuple((i - 1) * si - 2 * p + 3 for i, si, p in zip((3, 4, 2), s, c))
    assert layer.output_shape == (None, 2) + size
    np.testing.assert_allclose(evaluate(layer, x), ref_transposed(x, W, s, c, flip, size),
                               rtol=1e-12, atol=1e-12)


# --- dilated convolution ------------------------------------------------------------

@pytest.mark.parametrize("dilation", [(1, 1), (2, 2), (3, 1)])
def test_dilated_conv2d_values(dilation):
    x = RNG.standard_normal((2, 3, 9, 8))
    W, b = RNG.standard_normal((3, 4, 3, 2)), RNG.standard_normal(4)
    layer = DilatedConv2DLayer((None, 3, 9, 8), 4, (3, 2), dilation=dilation, W=shared(W),
                               b=shared(b), nonlinearity=None)
    assert layer.W.get_value().shape == (3, 4, 3, 2) and not hasattr(layer, "stride")
    # a correlation with the dilated filters, W's first two axes swapped
    expected = ref_conv(x, W.transpose(1, 0, 2, 3), (1, 1), (0, 0), dilation, False)
    expected += b[None, :, None, None]
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-12, atol=1e-12)
    unknown = DilatedConv2DLayer((None, 3, None, None), 4, (3, 2), dilation=dilation,
                                 W=shared(W), b=shared(b), nonlinearity=None)
    np.testing.assert_allclose(evaluate(unknown, x), expected, rtol=1e-12, atol=1e-12)


def test_dilated_conv2d_gradient_and_errors():
    W = shared(RNG.standard_normal((2, 3, 2, 2)))
    layer = DilatedConv2DLayer((None, 2, 7, 7), 3, 2, dilation=2, W=W)
    X = pt.tensor(dtype="float64", shape=(None,) * 4)
    gW, gX = pytensor.grad((layer.get_output_for(X) ** 2).sum(), [layer.W, X])
    out = pytensor.function([X], [gW, gX])(RNG.standard_normal((2, 2, 7, 7)))
    assert out[0].shape == (2, 3, 2, 2) and out[1].shape == (2, 2, 7, 7)
    with pytest.raises(NotImplementedError, match="requires pad=0"):
        DilatedConv2DLayer((None, 2, 7, 7), 3, 3, pad=1)
    with pytest.raises(NotImplementedError, match="flip_filters=False"):
        DilatedConv2DLayer((None, 2, 7, 7), 3, 3, flip_filters=True)


def test_conv2d_layer_unchanged_by_the_extension():
    layer = Conv2DLayer((None, 3, 8, 8), 4, 3)
    assert layer.get_W_shape() == (4, 3, 3, 3) and layer.num_groups == 1
    assert [p.name for p in layer.get_params()] == ["W", "b"]
