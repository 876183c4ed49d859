"""lasres.layers.normalization additions (Lasagne's
LocalResponseNormalization2DLayer, StandardizationLayer, instance_norm,
layer_norm) against NumPy written here from their definitions."""
import numpy as np
import pytensor
import pytest

import lasres  # noqa: F401
from lasres import nonlinearities
from lasres import layers as L


def _f(layer):
    return pytensor.function([L.get_all_layers(layer)[0].input_var], L.get_output(layer))


def np_lrn(x, alpha, k, beta, n):
    out = np.empty_like(x)
    C = x.shape[1]
    for c in range(C):
        lo, hi = max(0, c - n // 2), min(C, c + n // 2 + 1)
        out[:, c] = x[:, c] / (k + alpha * (x[:, lo:hi] ** 2).sum(1)) ** beta
    return out


@pytest.mark.parametrize("kw", [dict(), dict(alpha=0.05, k=1, beta=0.5, n=3)])
def test_local_response_normalization(kw):
    x = np.random.RandomState(0).standard_normal((2, 7, 3, 4)).astype("float32") * 3
    for shape in [(2, 7, 3, 4), (None, 7, None, None)]:
        layer = L.LocalResponseNormalization2DLayer(L.InputLayer(shape), **kw)
        assert layer.output_shape == shape
        full = dict(alpha=1e-4, k=2, beta=0.75, n=5)
        full.update(kw)
        np.testing.assert_allclose(_f(layer)(x), np_lrn(x.astype(float), **full), rtol=1e-5)
    with pytest.raises(NotImplementedError, match="Only works with odd n"):
        L.LocalResponseNormalization2DLayer(L.InputLayer((2, 7, 3, 4)), n=4)


def test_local_response_normalization_gradient():
    rng = np.random.RandomState(1)

    def fn(x):
        return L.get_output(L.LocalResponseNormalization2DLayer(
            L.InputLayer((2, 5, 2, 3), input_var=x), alpha=0.1, n=3))
    pytensor.gradient.verify_grad(fn, [rng.standard_normal((2, 5, 2, 3))], rng=rng)


@pytest.mark.parametrize("shape,axes,norm_axes", [
    ((4, 6), "auto", (1,)), ((2, 3, 4, 5), "auto", (2, 3)), ((2, 3, 4, 5), "spatial", (2, 3)),
    ((2, 3, 4, 5), "features", (1, 2, 3)), ((2, 3, 4, 5), 1, (1,)), ((2, 3, 4), (0, 2), (0, 2))])
def test_standardization_layer(shape, axes, norm_axes):
    x = np.random.RandomState(2).standard_normal(shape).astype("float32") * 2 + 1
    layer = L.StandardizationLayer(L.InputLayer(shape), axes=axes, epsilon=1e-3)
    assert tuple(layer.axes) == norm_axes and layer.get_params() == []
    mean = x.mean(norm_axes, keepdims=True, dtype=np.float64)
    var = x.astype(float).var(norm_axes, keepdims=True)
    np.testing.assert_allclose(_f(layer)(x), (x - mean) / np.sqrt(var + 1e-3),
                               rtol=1e-4, atol=1e-5)


def test_instance_norm_and_layer_norm_stacks():
    l_in = L.InputLayer((2, 3, 5, 5))
    conv = L.Conv2DLayer(l_in, 4, 3, nonlinearity=nonlinearities.rectify, name="c")
    top = L.instance_norm(conv)
    names = [type(l).__name__ for l in L.get_all_layers(top)]
    assert names == ["InputLayer", "Conv2DLayer", "StandardizationLayer", "ScaleLayer",
                     "BiasLayer", "NonlinearityLayer"]
    assert [l.name for l in L.get_all_layers(top)[2:]] == ["c_in", "c_in_scale", "c_in_bias",
                                                          "c_in_nonlin"]
    assert conv.b is None and conv.nonlinearity is nonlinearities.identity
    assert L.get_all_layers(top)[2].axes == (2, 3)
    assert [p.name for p in L.get_all_params(top)] == ["c.W", "c_in_scale.scales",
                                                       "c_in_bias.b"]
    bare = L.instance_norm(L.DenseLayer(L.InputLayer((2, 3, 4)), 5, num_leading_axes=2,
                                        nonlinearity=None), learn_scale=False,
                           learn_bias=False, epsilon=0.5)
    # a layer "without" nonlinearity has identity, which (as in Lasagne) is moved on top
    assert bare.nonlinearity is nonlinearities.identity
    assert isinstance(bare.input_layer, L.StandardizationLayer)
    assert bare.input_layer.epsilon == 0.5
    d_in = L.InputLayer((4, 6))
    dense = L.DenseLayer(d_in, 5, name="d")
    ln = L.layer_norm(dense)
    assert [type(l).__name__ for l in L.get_all_layers(ln)] == [
        "InputLayer", "DenseLayer", "StandardizationLayer", "ScaleLayer", "BiasLayer",
        "NonlinearityLayer"]
    assert [l.name for l in L.get_all_layers(ln)[2:]] == ["d_ln", "d_ln_scale", "d_ln_bias",
                                                         "d_ln_nonlin"]
    assert L.get_all_layers(ln)[2].axes == (1,)
    x = np.random.RandomState(3).standard_normal((4, 6)).astype("float32")
    W = dense.W.get_value()
    pre = x @ W
    ref = np.maximum((pre - pre.mean(1, keepdims=True)) /
                     np.sqrt(pre.var(1, keepdims=True) + 1e-4), 0)
    np.testing.assert_allclose(_f(ln)(x), ref, rtol=1e-4, atol=1e-5)
