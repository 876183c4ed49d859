"""Lasagne layers beyond the fixtures: shapes, dropout, padding, reshape,
parameter tags, helpers and set_all_param_values errors."""
import numpy as np
import pytest
import pytensor

import lasres
from lasres import layers as L
from lasres.errors import ShapeMismatchError


def test_dropout_train_and_deterministic():
    l_in = L.InputLayer((None, 4, 5, 5))
    drop = L.DropoutLayer(l_in, p=0.5)
    chan = L.dropout_channels(l_in, p=0.5)
    x = l_in.input_var
    f = pytensor.function([x], [L.get_output(drop), L.get_output(drop, deterministic=True),
                                L.get_output(chan)])
    xv = np.ones((50, 4, 5, 5), "float32")
    train, test, ch = f(xv)
    assert set(np.unique(train)) <= {0.0, 2.0} and 0.3 < (train == 0).mean() < 0.7
    np.testing.assert_array_equal(test, xv)
    # whole channels dropped together
    per_channel = ch.reshape(50, 4, -1)
    assert np.all(per_channel.min(axis=2) == per_channel.max(axis=2))
    assert not np.array_equal(f(xv)[0], train)  # a new mask each call


def test_pad_reshape_flatten_concat_shapes():
    l_in = L.InputLayer((None, 3, 8, 8))
    pad = L.PadLayer(l_in, width=2)
    flat = L.FlattenLayer(pad)
    resh = L.ReshapeLayer(flat, ([0], 3, -1))
    cat = L.ConcatLayer([l_in, l_in], axis=1)
    assert pad.output_shape == (None, 3, 12, 12)
    assert flat.output_shape == (None, 432) and resh.output_shape == (None, 3, 144)
    assert cat.output_shape == (None, 6, 8, 8)
    f = pytensor.function([l_in.input_var], L.get_output([pad, resh, cat]))
    xv = np.random.rand(2, 3, 8, 8).astype("float32")
    p, r, c = f(xv)
    np.testing.assert_array_equal(p[:, :, 2:-2, 2:-2], xv)
    assert p[:, :, :2].sum() == 0
    assert r.shape == (2, 3, 144) and c.shape == (2, 6, 8, 8)


def test_tags_and_batch_norm_wrapper():
    l_in = L.InputLayer((None, 3, 8, 8))
    conv = L.Conv2DLayer(l_in, 4, 3, pad="same")
    out = L.batch_norm(conv)
    assert isinstance(out, L.NonlinearityLayer)
    assert conv.b is None and conv.nonlinearity is lasres.nonlinearities.identity
    names = [p.name for p in L.get_all_params(out)]
    assert names == ["W", "beta", "gamma", "mean", "inv_std"]
    assert [p.name for p in L.get_all_params(out, trainable=True)] == ["W", "beta", "gamma"]
    assert [p.name for p in L.get_all_params(out, regularizable=True)] == ["W", "gamma"]


def test_set_all_param_values_names_the_mismatch():
    l_in = L.InputLayer((None, 3, 8, 8))
    net = L.DenseLayer(L.Conv2DLayer(l_in, 4, 3), 5)
    values = L.get_all_param_values(net)
    values[2] = np.zeros((7, 5), "float32")
    with pytest.raises(ShapeMismatchError, match=r"parameter 2 \(DenseLayer.W\).*\(144, 5\).*\(7, 5\)"):
        L.set_all_param_values(net, values)
    with pytest.raises(ValueError, match="got 3 values to set 4"):
        L.set_all_param_values(net, values[:3])


def test_conv_layer_flip_and_dnn_default():
    from lasres.layers.dnn import Conv2DDNNLayer
    l_in = L.InputLayer((None, 1, 5, 5))
    w = np.zeros((1, 1, 3, 3), "float32")
    w[0, 0, 0, 0] = 1.0  # top-left tap
    conv = L.Conv2DLayer(l_in, 1, 3, W=w, b=None, nonlinearity=None)  # convolution
    corr = Conv2DDNNLayer(l_in, 1, 3, W=w, b=None, nonlinearity=None)  # correlation
    assert conv.flip_filters and not corr.flip_filters
    f = pytensor.function([l_in.input_var], L.get_output([conv, corr]))
    xv = np.arange(25, dtype="float32").reshape(1, 1, 5, 5)
    a, b = f(xv)
    np.testing.assert_array_equal(b[0, 0], xv[0, 0, :3, :3])  # correlation reads top-left
    np.testing.assert_array_equal(a[0, 0], xv[0, 0, 2:, 2:])  # convolution, flipped kernel


def test_expression_and_elemwise_sum_coeffs():
    l_in = L.InputLayer((None, 3))
    e = L.ExpressionLayer(l_in, lambda x: x * 3)
    s = L.ElemwiseSumLayer([l_in, e], coeffs=[2, -1])
    f = pytensor.function([l_in.input_var], L.get_output(s))
    np.testing.assert_allclose(f(np.ones((2, 3), "float32")), -np.ones((2, 3)))
