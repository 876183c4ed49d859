"""lasres.theano_extensions (Lasagne's ``lasagne.theano_extensions``): the six
1D convolution implementations against a float64 loop (convolution and
correlation, strides, padding, errors) and ``padding.pad`` against np.pad."""
import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt

import lasres
from lasres.theano_extensions import conv as te_conv
from lasres.theano_extensions.padding import pad

RNG = np.random.default_rng(21)
IMPLS = ["conv1d_sc", "conv1d_mc0", "conv1d_mc1", "conv1d_unstrided", "conv1d_sd", "conv1d_md"]


def ref_conv1d(x, w, stride=1, pad_=0, flip=True):
    """out[n, f, i] = sum_{c,k} xpad[n, c, i*stride + k] * kern[f, c, k]."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad_, pad_)))
    kern = w[:, :, ::-1] if flip else w
    length = (x.shape[2] - w.shape[2]) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], length))
    for i in range(length):
        out[:, :, i] = np.tensordot(x[:, :, i * stride:i * stride + w.shape[2]], kern,
                                    axes=([1, 2], [1, 2]))
    return out


def run(fn, x, w, *args, **kwargs):
    X, W = pt.dtensor3(), pt.dtensor3()
    return pytensor.function([X, W], fn(X, W, *args, **kwargs))(x, w)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("filter_flip", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv(impl, stride, filter_flip):
    fn = getattr(te_conv, impl)
    channels = 1 if impl == "conv1d_sc" else 3
    x = RNG.standard_normal((2, channels, 13))
    w = RNG.standard_normal((4, channels, 6))
    out = run(fn, x, w, x.shape, w.shape, subsample=(stride,), filter_flip=filter_flip)
    np.testing.assert_allclose(out, ref_conv1d(x, w, stride, 0, filter_flip),
                               rtol=1e-12, atol=1e-12)


def test_conv_sc_with_several_channels():
    # conv1d_sc treats the channels as the height of a valid 2D convolution
    x, w = RNG.standard_normal((2, 3, 10)), RNG.standard_normal((4, 3, 3))
    np.testing.assert_allclose(run(te_conv.conv1d_sc, x, w, x.shape, w.shape),
                               ref_conv1d(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["conv1d_sc", "conv1d_mc0", "conv1d_mc1"])
def test_conv_without_shapes(impl):
    x, w = RNG.standard_normal((1, 1, 12)), RNG.standard_normal((2, 1, 3))
    np.testing.assert_allclose(run(getattr(te_conv, impl), x, w, None, None), ref_conv1d(x, w),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["conv1d_mc0", "conv1d_mc1"])
@pytest.mark.parametrize("border_mode, p", [(1, 1), ((2,), 2), ("full", 2), ("half", 1),
                                            ("valid", 0)])
def test_conv_pad(impl, border_mode, p):
    x, w = RNG.standard_normal((2, 3, 12)), RNG.standard_normal((2, 3, 3))
    out = run(getattr(te_conv, impl), x, w, x.shape, w.shape, border_mode=border_mode)
    np.testing.assert_allclose(out, ref_conv1d(x, w, 1, p), rtol=1e-12, atol=1e-12)


def test_grouped_mc0():
    x, w = RNG.standard_normal((2, 4, 9)), RNG.standard_normal((6, 2, 3))
    out = run(te_conv.conv1d_mc0, x, w, x.shape, w.shape, num_groups=2)
    expected = np.concatenate([ref_conv1d(x[:, :2], w[:3]), ref_conv1d(x[:, 2:], w[3:])], axis=1)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
def test_conv_invalid_border_mode(impl):
    with pytest.raises(Exception):
        getattr(te_conv, impl)(pt.dtensor3(), pt.dtensor3(), (1, 1, 10), (2, 1, 3),
                               border_mode=None)


@pytest.mark.parametrize("impl", ["conv1d_sc", "conv1d_unstrided", "conv1d_sd", "conv1d_md"])
def test_valid_only(impl):
    with pytest.raises(RuntimeError, match="Unsupported border_mode"):
        getattr(te_conv, impl)(pt.dtensor3(), pt.dtensor3(), (1, 1, 10), (2, 1, 3),
                               border_mode="full")


@pytest.mark.parametrize("impl", ["conv1d_unstrided", "conv1d_sd", "conv1d_md"])
def test_conv_stride_must_divide_filter_length(impl):
    with pytest.raises(RuntimeError, match="not a multiple of the stride"):
        getattr(te_conv, impl)(pt.dtensor3(), pt.dtensor3(), (1, 1, 10), (2, 1, 3),
                               subsample=(2,))


def test_gradients_flow():
    X, W = pt.dtensor3(), pt.dtensor3()
    x, w = RNG.standard_normal((2, 3, 12)), RNG.standard_normal((4, 3, 4))
    grads = []
    for impl in IMPLS[1:]:
        y = getattr(te_conv, impl)(X, W, x.shape, w.shape, subsample=(2,))
        grads.append(pytensor.function([X, W], pytensor.grad((y ** 2).sum(), [X, W]))(x, w))
    for g in grads[1:]:
        np.testing.assert_allclose(g[0], grads[0][0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(g[1], grads[0][1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("val", [0, 7])
@pytest.mark.parametrize("batch_ndim", [1, 2])
def test_pad(batch_ndim, val, width=3):
    x = RNG.standard_normal((2, 3, 4, 5))
    X = pt.dtensor4()
    out = pytensor.function([X], pad(X, width, val, batch_ndim))(x)
    pads = tuple((width, width) if i >= batch_ndim else (0, 0) for i in range(4))
    np.testing.assert_array_equal(out, np.pad(x, pads, constant_values=val))


@pytest.mark.parametrize("batch_ndim", [1, 2])
def test_pad_per_axis_and_per_border(batch_ndim):
    x = RNG.standard_normal((2, 3, 4, 5))
    X = pt.dtensor4()
    width = (1, 2, 3, 4)
    out = pytensor.function([X], pad(X, width[batch_ndim:], 0, batch_ndim))(x)
    np.testing.assert_array_equal(out, np.pad(x, tuple((w, w) if i >= batch_ndim else (0, 0)
                                                       for i, w in enumerate(width))))
    width = [(1, 2), (3, 4), (1, 2), (3, 4)]
    out = pytensor.function([X], pad(X, width[batch_ndim:], 0, batch_ndim))(x)
    np.testing.assert_array_equal(out, np.pad(x, tuple(w if i >= batch_ndim else (0, 0)
                                                       for i, w in enumerate(width))))


def test_reachable_as_lasagne_exposes_it():
    assert lasres.theano_extensions.conv is te_conv
    assert lasres.theano_extensions.padding.pad is pad
