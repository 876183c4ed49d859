"""lasres.layers.pool against Lasagne 0.2.dev1's semantics: Pool1DLayer,
MaxPool1DLayer, Pool3DLayer, MaxPool3DLayer, Upscale{1,2,3}DLayer,
FeaturePoolLayer, FeatureWTALayer, SpatialPyramidPoolingLayer -- output
shapes, values against NumPy loops, gradients and errors."""
import inspect
import itertools

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt

from lasres.layers import (FeaturePoolLayer, FeatureWTALayer, MaxPool1DLayer, MaxPool3DLayer,
                           Pool1DLayer, Pool3DLayer, SpatialPyramidPoolingLayer, Upscale1DLayer,
                           Upscale2DLayer, Upscale3DLayer)
from test_ops_convnd import ref_pool

RNG = np.random.default_rng(11)


def evaluate(layer, x):
    X = pt.tensor(dtype="float64", shape=(None,) * x.ndim)
    return pytensor.function([X], layer.get_output_for(X))(x)


def test_signatures():
    sig = lambda cls: {k: v.default for k, v in inspect.signature(cls.__init__).parameters.items()
                       if k not in ("self", "kwargs")}
    assert sig(Pool1DLayer) == {"incoming": inspect._empty, "pool_size": inspect._empty,
                                "stride": None, "pad": 0, "ignore_border": True, "mode": "max"}
    assert sig(MaxPool1DLayer) == {"incoming": inspect._empty, "pool_size": inspect._empty,
                                   "stride": None, "pad": 0, "ignore_border": True}
    assert sig(Pool3DLayer)["pad"] == (0, 0, 0) and sig(Pool3DLayer)["mode"] == "max"
    assert sig(MaxPool3DLayer)["pad"] == (0, 0, 0)
    assert sig(Upscale2DLayer)["mode"] == "repeat"
    assert sig(FeaturePoolLayer)["axis"] == 1 and sig(FeaturePoolLayer)["pool_function"] is pt.max
    assert sig(SpatialPyramidPoolingLayer) == {
        "incoming": inspect._empty, "pool_dims": [4, 2, 1], "mode": "max",
        "implementation": "fast"}


@pytest.mark.parametrize("mode", ["max", "average_inc_pad", "average_exc_pad"])
@pytest.mark.parametrize("pool_size, stride, pad, ignore_border",
                         [(2, None, 0, True), (3, 2, 1, True), (3, 2, 0, False), ((4,), (1,), 0, True)])
def test_pool1d(pool_size, stride, pad, ignore_border, mode):
    x = RNG.standard_normal((2, 3, 11))
    layer = Pool1DLayer((None, 3, 11), pool_size, stride, pad, ignore_border, mode)
    k = pool_size[0] if isinstance(pool_size, tuple) else pool_size
    s = k if stride is None else (stride[0] if isinstance(stride, tuple) else stride)
    expected = ref_pool(x, (k,), (s,), (pad,), mode, ignore_border)
    out = evaluate(layer, x)
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-13)
    if mode == "max":
        np.testing.assert_allclose(
            evaluate(MaxPool1DLayer((None, 3, 11), pool_size, stride, pad, ignore_border), x),
            expected)


@pytest.mark.parametrize("mode", ["max", "average_inc_pad", "average_exc_pad"])
@pytest.mark.parametrize("pool_size, stride, pad, ignore_border",
                         [(2, None, (0, 0, 0), True), ((3, 2, 2), (2, 1, 2), (1, 0, 1), True),
                          ((2, 3, 2), (1, 2, 2), 0, False)])
def test_pool3d(pool_size, stride, pad, ignore_border, mode):
    x = RNG.standard_normal((2, 2, 5, 6, 7))
    layer = Pool3DLayer((None, 2, 5, 6, 7), pool_size, stride, pad, ignore_border, mode)
    ws = pool_size if isinstance(pool_size, tuple) else (pool_size,) * 3
    st = ws if stride is None else stride
    p = pad if isinstance(pad, tuple) else (pad,) * 3
    expected = ref_pool(x, ws, st, p, mode, ignore_border)
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_allclose(evaluate(layer, x), expected, rtol=1e-13, atol=1e-13)
    if mode == "max":
        np.testing.assert_allclose(
            evaluate(MaxPool3DLayer((None, 2, 5, 6, 7), pool_size, stride, pad, ignore_border), x),
            expected)


def test_pool_layers_reject_wrong_ndim_and_pass_gradients():
    with pytest.raises(ValueError, match="Expected 3 input dimensions"):
        Pool1DLayer((None, 3, 4, 4), 2)
    with pytest.raises(ValueError, match="Expected 5 input dimensions"):
        Pool3DLayer((None, 3, 4, 4), 2)
    layer = MaxPool3DLayer((None, 2, 4, 4, 4), 2)
    X = pt.tensor(dtype="float64", shape=(None,) * 5)
    g = pytensor.grad(layer.get_output_for(X).sum(), X)
    x = RNG.standard_normal((1, 2, 4, 4, 4))
    gx = pytensor.function([X], g)(x)
    # one 1 per 2x2x2 block, at the block's maximum
    blocks = x.reshape(1, 2, 2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 6, 3, 5, 7).reshape(1, 2, 8, 8)
    gb = gx.reshape(1, 2, 2, 2, 2, 2, 2, 2).transpose(0, 1, 2, 4, 6, 3, 5, 7).reshape(1, 2, 8, 8)
    np.testing.assert_array_equal(gb, (blocks == blocks.max(axis=-1, keepdims=True)).astype(float))


# --- upscaling ---------------------------------------------------------------------

@pytest.mark.parametrize("cls, shape, factor", [
    (Upscale1DLayer, (2, 3, 4), 3), (Upscale2DLayer, (2, 3, 4, 5), (2, 3)),
    (Upscale2DLayer, (2, 1, 3, 3), 1), (Upscale3DLayer, (1, 2, 2, 3, 4), (2, 1, 3))])
@pytest.mark.parametrize("mode", ["repeat", "dilate"])
def test_upscale(cls, shape, factor, mode):
    x = RNG.standard_normal(shape)
    n = len(shape) - 2
    f = factor if isinstance(factor, tuple) else (factor,) * n
    if mode == "repeat":
        expected = x
        for axis, k in enumerate(f):
            expected = np.repeat(expected, k, axis=2 + axis)
    else:
        expected = np.zeros(shape[:2] + tuple(s * k for s, k in zip(shape[2:], f)))
        expected[(slice(None), slice(None)) + tuple(slice(None, None, k) for k in f)] = x
    layer = cls((None,) + shape[1:], factor, mode=mode)
    assert layer.output_shape == (None,) + expected.shape[1:]
    np.testing.assert_array_equal(evaluate(layer, x), expected)
    assert cls((None, 3) + (None,) * n, factor).output_shape == (None, 3) + (None,) * n


def test_upscale_errors():
    with pytest.raises(ValueError, match="Scale factor must be >= 1"):
        Upscale2DLayer((None, 3, 4, 4), (0, 2))
    with pytest.raises(ValueError, match="Mode must be either 'repeat' or 'dilate'"):
        Upscale3DLayer((None, 3, 4, 4, 4), 2, mode="nearest")


# --- feature pooling --------------------------------------------------------------

def test_feature_pool():
    x = RNG.standard_normal((2, 6, 4, 5))
    layer = FeaturePoolLayer((None, 6, 4, 5), 3)
    assert layer.output_shape == (None, 2, 4, 5)
    np.testing.assert_array_equal(evaluate(layer, x), x.reshape(2, 2, 3, 4, 5).max(axis=2))
    layer = FeaturePoolLayer((None, 6, 4, 4), 2, axis=3, pool_function=pt.mean)
    assert layer.output_shape == (None, 6, 4, 2)
    np.testing.assert_allclose(evaluate(layer, x[..., :4]), x[..., :4].reshape(2, 6, 4, 2, 2)
                               .mean(axis=4), rtol=1e-14)
    with pytest.raises(ValueError, match="not a multiple of the pool size"):
        FeaturePoolLayer((None, 5, 4), 2)


def test_feature_wta():
    x = RNG.standard_normal((3, 6, 2))
    x[0, 0, 0] = x[0, 1, 0] = 5.0          # a tie: the first maximum wins
    layer = FeatureWTALayer((None, 6, 2), 3)
    assert layer.output_shape == (None, 6, 2)
    expected = np.zeros_like(x)
    for n, g, j in itertools.product(range(3), range(2), range(2)):
        block = x[n, 3 * g:3 * g + 3, j]
        k = int(np.argmax(block))
        expected[n, 3 * g + k, j] = block[k]
    np.testing.assert_array_equal(evaluate(layer, x), expected)
    with pytest.raises(ValueError, match="not a multiple of the region size"):
        FeatureWTALayer((None, 5, 4), 2)


# --- spatial pyramid pooling ---------------------------------------------------------

def ref_spp_fast(x, dims, reduce):
    out = []
    for d in dims:
        h, w = x.shape[2:]
        wh, ww = -(-h // d), -(-w // d)
        sh, sw = h // d, w // d
        for r in range((h - wh) // sh + 1):
            for c in range((w - ww) // sw + 1):
                out.append(reduce(x[:, :, r * sh:r * sh + wh, c * sw:c * sw + ww], axis=(2, 3)))
    return np.stack(out, axis=2)


def ref_spp_kaiming(x, dims, reduce):
    """He et al.'s bins, with the bin edges ``i / n * size`` computed as
    Lasagne computes them: ``i / n`` is a Python float constant, cast to
    floatX (float32 by default), times an int64 size (in float64)."""
    h, w = x.shape[2:]
    out = []

    def edge(i, d, size, rnd):
        return int(rnd(np.float64(np.asarray(i / float(d), pytensor.config.floatX)) * size))
    for d in dims:
        for r in range(d):
            for c in range(d):
                region = x[:, :, edge(r, d, h, np.floor):edge(r + 1, d, h, np.ceil),
                           edge(c, d, w, np.floor):edge(c + 1, d, w, np.ceil)]
                out.append(reduce(region, axis=(2, 3)))
    return np.stack(out, axis=2)


@pytest.mark.parametrize("mode, reduce", [("max", np.max), ("average_exc_pad", np.mean)])
def test_spatial_pyramid_pooling(mode, reduce):
    x = RNG.standard_normal((2, 3, 16, 12))
    for shape in [(None, 3, 16, 12), (None, 3, None, None)]:
        layer = SpatialPyramidPoolingLayer(shape, mode=mode)
        assert layer.output_shape == (None, 3, 21)
        np.testing.assert_allclose(evaluate(layer, x), ref_spp_fast(x, [4, 2, 1], reduce),
                                   rtol=1e-13)
    xk = RNG.standard_normal((2, 3, 7, 9))
    layer = SpatialPyramidPoolingLayer((None, 3, None, None), [3, 1], mode, "kaiming")
    assert layer.output_shape == (None, 3, 10)
    np.testing.assert_allclose(evaluate(layer, xk), ref_spp_kaiming(xk, [3, 1], reduce),
                               rtol=1e-13)
    with pytest.raises(ValueError, match="Expected 4 input dimensions"):
        SpatialPyramidPoolingLayer((None, 3, 4))
