"""lasres.layers.dense (Lasagne's DenseLayer, NINLayer) and
lasres.layers.embedding (EmbeddingLayer) against NumPy."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres  # noqa: F401
from lasres import nonlinearities
from lasres import layers as L


def _f(layer, x):
    return pytensor.function([x], L.get_output(layer))


@pytest.mark.parametrize("untie,bias", [(False, True), (True, True), (False, False)])
def test_nin_layer(untie, bias):
    rng = np.random.RandomState(0)
    x = pt.tensor4("x")
    l_in = L.InputLayer((2, 3, 4, 5), input_var=x)
    b_shape = (6, 4, 5) if untie else (6,)
    b = rng.standard_normal(b_shape).astype("float32") if bias else None
    layer = L.NINLayer(l_in, 6, untie_biases=untie, b=b, nonlinearity=nonlinearities.tanh,
                       name="nin")
    assert layer.output_shape == (2, 6, 4, 5)
    assert [p.name for p in layer.get_params()] == (["nin.W", "nin.b"] if bias else ["nin.W"])
    assert layer.get_params(regularizable=True) == [layer.W]
    assert layer.W.get_value().shape == (3, 6)
    xv = rng.standard_normal((2, 3, 4, 5)).astype("float32")
    W = layer.W.get_value()
    pre = np.einsum("bchw,cu->buhw", xv, W)
    if bias:
        pre = pre + (b if untie else b[:, None, None])
    np.testing.assert_allclose(_f(layer, x)(xv), np.tanh(pre), rtol=1e-5, atol=1e-6)
    l3 = L.NINLayer(L.InputLayer((None, 3, 7)), 2, untie_biases=True)
    assert l3.output_shape == (None, 2, 7) and l3.b.get_value().shape == (2, 7)


def test_dense_layer_errors_are_lasagnes():
    with pytest.raises(ValueError, match=r"Got num_leading_axes=2 for a 2-dimensional input, "
                                         "leaving no trailing axes for the dot product."):
        L.DenseLayer(L.InputLayer((3, 4)), 5, num_leading_axes=2)
    with pytest.raises(ValueError, match=r"Got num_leading_axes=-3 for a 2-dimensional input, "
                                         "requesting more trailing axes than there are input "
                                         r"dimensions."):
        L.DenseLayer(L.InputLayer((3, 4)), 5, num_leading_axes=-3)
    with pytest.raises(ValueError, match=r"A DenseLayer requires a fixed input shape \(except "
                                         r"for the leading axes\). Got \(3, None\) for "
                                         "num_leading_axes=1."):
        L.DenseLayer(L.InputLayer((3, None)), 5)


def test_dense_layer_leading_axes():
    rng = np.random.RandomState(1)
    x = pt.tensor3("x")
    layer = L.DenseLayer(L.InputLayer((None, 4, 3), input_var=x), 5, num_leading_axes=-1,
                         nonlinearity=None)
    assert layer.output_shape == (None, 4, 5)
    xv = rng.standard_normal((2, 4, 3)).astype("float32")
    np.testing.assert_allclose(_f(layer, x)(xv), xv @ layer.W.get_value(), rtol=1e-5)


def test_embedding_layer():
    rng = np.random.RandomState(2)
    idx = pt.imatrix("idx")
    l_in = L.InputLayer((None, 3), input_var=idx)
    W = rng.standard_normal((10, 4)).astype("float32")
    layer = L.EmbeddingLayer(l_in, input_size=10, output_size=4, W=W, name="emb")
    assert layer.output_shape == (None, 3, 4)
    assert [p.name for p in layer.get_params()] == ["emb.W"]
    iv = np.array([[1, 2, 9], [2, 2, 0]], "int32")
    out = L.get_output(layer)
    res, grad = pytensor.function([idx], [out, pytensor.grad(out.sum(), layer.W)])(iv)
    np.testing.assert_array_equal(res, W[iv])
    counts = np.bincount(iv.ravel(), minlength=10)
    np.testing.assert_array_equal(grad, np.repeat(counts[:, None], 4, 1))
    default = L.EmbeddingLayer((None,), 7, 3)
    assert default.W.get_value().shape == (7, 3)
    assert 0.005 < default.W.get_value().std() < 0.02  # init.Normal(): std 0.01
