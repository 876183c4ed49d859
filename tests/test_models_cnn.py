"""The plain CNN baseline of the RiR comparison: the RiR layout without any
shortcut, one stream of twice the per-stream width."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres import objectives
from lasres.layers import (ElemwiseSumLayer, InputLayer, count_params, get_all_layers,
                           get_all_params, get_output)
from lasres.layers.conv import Conv2DLayer
from lasres.layers.dense import DenseLayer
from lasres.models import build, get_spec
from _model_checks import CIFAR, FAST, MNIST, by_name




def cnn_params_by_hand(layers, stem, in_channels=3, classes=10):
    """3x3 stem and 3x3 layers, all bias-free with a BN (4 values per
    channel: beta, gamma, mean, inv_std); softmax on the last width."""
    total = in_channels * stem * 9 + 4 * stem
    for c_in, c_out in layers:
        total += c_in * c_out * 9 + 4 * c_out
    return total + layers[-1][1] * classes + classes


def test_param_count_18_layer_wide_by_hand():
    # 96/192/384 filters; 16 layers after the stem: 5 at 96 (the 5th widens to
    # 192), 6 at 192 (the 6th widens to 384), 4 at 384 -- RiR's layout
    layers = ([(96, 96)] * 4 + [(96, 192), (192, 192)] + [(192, 192)] * 4
              + [(192, 384), (384, 384)] + [(384, 384)] * 4)
    assert len(layers) == 16
    expected = (3 * 96 * 9 + 4 * 96
                + 4 * (96 * 96 * 9 + 4 * 96)
                + 96 * 192 * 9 + 4 * 192 + 5 * (192 * 192 * 9 + 4 * 192)
                + 192 * 384 * 9 + 4 * 384 + 5 * (384 * 384 * 9 + 4 * 384)
                + 384 * 10 + 10)
    assert expected == cnn_params_by_hand(layers, 96)
    assert count_params(build("cnn")) == expected


@pytest.mark.parametrize("shape,classes", [(CIFAR, 10), (MNIST, 10), (MNIST, 5)])
def test_param_count_small_and_shapes(shape, classes):
    net = build("cnn", 8, 1, num_classes=classes, input_shape=shape)
    assert net.output_shape == (None, classes)
    layers = [(32, 64), (64, 64), (64, 128), (128, 128), (128, 128), (128, 128)]
    assert count_params(net) == cnn_params_by_hand(layers, 32, shape[1], classes)
    last = by_name(net)["block3_layer2_bn_nonlin"]
    assert last.output_shape == (None, 128) + tuple(-(-s // 4) for s in shape[2:])


def test_depth_and_no_shortcuts():
    spec = get_spec("cnn")
    assert (spec.default_depth, spec.default_width) == (18, 3)  # as rir: "18-layer + wide"
    for depth, width in ((18, 3), (8, 1), (20, 2)):
        net = build("cnn", depth, width)
        assert not [l for l in get_all_layers(net) if isinstance(l, ElemwiseSumLayer)]
        weighted = [l for l in get_all_layers(net) if isinstance(l, (Conv2DLayer, DenseLayer))]
        assert len(weighted) == spec.total_depth(depth, width) == depth


def test_forward_backward():
    net = build("cnn", 8, 1, num_classes=10)
    x = next(l for l in get_all_layers(net) if isinstance(l, InputLayer)).input_var
    y = pt.ivector("y")
    prob = get_output(net)
    loss = objectives.categorical_crossentropy(prob, y).mean()
    params = get_all_params(net, trainable=True)
    f = pytensor.function([x, y], [loss, prob] + pytensor.grad(loss, params), mode=FAST)
    rng = np.random.RandomState(0)
    loss, prob, *grads = f(rng.randn(3, 3, 32, 32).astype("float32"),
                           np.array([0, 4, 9], dtype="int32"))
    assert np.isfinite(loss) and prob.shape == (3, 10)
    assert len(grads) == 3 * 7 + 2  # stem + 6 layers: W, beta, gamma; softmax W, b
    for p, g in zip(params, grads):
        assert np.all(np.isfinite(g)) and np.any(g != 0), p.name


def test_a_zeroed_layer_blocks_the_signal():
    """No shortcut around a layer: zero its kernel and nothing passes."""
    layers = by_name(build("cnn", 8, 1))
    x = pt.tensor4("x")
    out = get_output(layers["block3_layer2_bn_nonlin"], {layers["block3_layer1_bn_nonlin"]: x},
                     deterministic=True)
    f = pytensor.function([x], out, mode=FAST)
    conv = layers["block3_layer2"]
    conv.W.set_value(np.zeros_like(conv.W.get_value()))
    X = np.abs(np.random.RandomState(1).randn(2, 128, 8, 8)).astype("float32")
    assert np.all(f(X) == 0)
