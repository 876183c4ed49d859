"""The original CIFAR ResNet (He et al. 2015) and its plain twin: shapes,
parameter counts worked out by hand from the paper, one training step, and
the shortcut structure (option A) checked numerically."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres.layers import (ElemwiseSumLayer, count_params, get_all_layers,
                           get_output)
from lasres.layers.conv import Conv2DLayer
from lasres.layers.dense import DenseLayer
from lasres.models import build, get_spec
from _model_checks import CIFAR, FAST, MNIST, by_name, forward_backward, option_a






def weighted_layers(net):
    return sum(isinstance(l, (Conv2DLayer, DenseLayer)) for l in get_all_layers(net))


# --- parameter counts by hand ------------------------------------------------------
def resnet_params_by_hand(n, in_channels=3, classes=10, preact=False, trainable=False):
    """He et al. 2015, Sec. 4.2: a 3x3 stem of 16 filters, then n units of two
    3x3 convolutions at 16, 32, 64 filters, global pool, fc softmax. Every conv
    is bias-free (batch norm follows); a BatchNormLayer holds 4 values per
    channel (beta, gamma, mean, inv_std), 2 of them trainable. Option-A
    shortcuts have no parameters."""
    bn = 2 if trainable else 4
    total = in_channels * 16 * 9                     # stem conv
    total += 0 if preact else bn * 16                # stem BN (post-activation only)
    c_in = 16
    for w in (16, 32, 64):
        for _ in range(n):
            if preact:
                total += bn * c_in                   # the unit's own BN before conv1
            total += c_in * w * 9 + bn * w           # conv1 + its BN
            total += w * w * 9                       # conv2
            total += 0 if preact else bn * w         # conv2's BN (post-activation)
            c_in = w
    total += bn * 64 if preact else 0                # final BN-ReLU of the preact variant
    total += 64 * classes + classes                  # softmax layer W, b
    return total


def test_param_count_resnet20_by_hand():
    # ResNet-20 (n=3), written out: stem 3*16*9 + BN 4*16;
    # stage 1: 6 convs 16*16*9 + 6 BN 4*16;
    # stage 2: 16*32*9 + 5 * 32*32*9 + 6 BN 4*32;
    # stage 3: 32*64*9 + 5 * 64*64*9 + 6 BN 4*64; softmax 64*10 + 10
    expected = (3 * 16 * 9 + 4 * 16
                + 6 * 16 * 16 * 9 + 6 * 4 * 16
                + 16 * 32 * 9 + 5 * 32 * 32 * 9 + 6 * 4 * 32
                + 32 * 64 * 9 + 5 * 64 * 64 * 9 + 6 * 4 * 64
                + 64 * 10 + 10)
    assert expected == 271098  # "0.27M" in the paper's Table 6
    net = build("resnet", 3)
    assert count_params(net) == expected
    assert count_params(net, trainable=True) == expected - 2 * (16 + 6 * 16 + 6 * 32 + 6 * 64)
    assert count_params(build("plain", 3)) == expected  # option A adds no parameters


@pytest.mark.parametrize("type", ["resnet", "plain"])
@pytest.mark.parametrize("preact", [False, True])
@pytest.mark.parametrize("n,shape,classes", [(1, CIFAR, 10), (3, MNIST, 10), (18, CIFAR, 100)])
def test_param_count_matches_paper_layout(type, preact, n, shape, classes):
    net = build(type, n, num_classes=classes, input_shape=shape, preact=preact)
    assert count_params(net) == resnet_params_by_hand(n, shape[1], classes, preact)
    assert count_params(net, trainable=True) == resnet_params_by_hand(n, shape[1], classes,
                                                                      preact, trainable=True)


def test_resnet110_size():
    assert 1.6e6 < count_params(build("resnet", 18), trainable=True) < 1.8e6  # paper: 1.7M


# --- shapes and depth -------------------------------------------------------------
@pytest.mark.parametrize("type", ["resnet", "plain"])
@pytest.mark.parametrize("preact", [False, True])
def test_output_shapes_cifar_and_mnist(type, preact):
    for shape, classes in ((CIFAR, 10), (MNIST, 10), (MNIST, 3), ((None, 3, 30, 30), 100)):
        net = build(type, 1, num_classes=classes, input_shape=shape, preact=preact)
        assert net.output_shape == (None, classes)
        last = by_name(net)["stage3_unit1_conv2"].output_shape
        assert last[1:] == (64,) + tuple(-(-s // 4) for s in shape[2:])


@pytest.mark.parametrize("type", ["resnet", "plain"])
def test_total_depth_named_configs(type):
    spec = get_spec(type)
    assert spec.default_depth == 3 and spec.default_width == 1  # ResNet-20, the seed's default
    for n, layers in ((3, 20), (5, 32), (7, 44), (9, 56), (18, 110)):
        assert spec.total_depth(n, 1) == layers
    for n in (1, 3):
        assert weighted_layers(build(type, n)) == spec.total_depth(n, 1)


def test_width_is_refused():
    with pytest.raises(ValueError, match="no width"):
        build("resnet", 3, 2)


# --- one training step ---------------------------------------------------------------
@pytest.mark.parametrize("type,preact,shape,classes", [
    ("resnet", False, CIFAR, 10), ("resnet", True, MNIST, 7), ("plain", False, MNIST, 10)])
def test_forward_backward(type, preact, shape, classes):
    net = build(type, 1, num_classes=classes, input_shape=shape, preact=preact)
    n_params = forward_backward(net, shape, classes)
    if preact:  # stem W; per unit: BN (2), conv1 W + BN (3), conv2 W; final BN (2); W, b
        assert n_params == 1 + 3 * 6 + 2 + 2
    else:  # stem W + BN (3); 6 convs W + BN (3 each); softmax W, b
        assert n_params == 3 + 6 * 3 + 2


# --- the shortcuts are really there ---------------------------------------------------------
def _zero_branch(layers, unit, post_activation=True):
    conv2 = layers[f"{unit}_conv2"]
    conv2.W.set_value(np.zeros_like(conv2.W.get_value()))
    if post_activation:
        bn = layers[f"{unit}_conv2_bn"]
        bn.gamma.set_value(np.zeros_like(bn.gamma.get_value()))
        bn.beta.set_value(np.zeros_like(bn.beta.get_value()))


def test_post_activation_units_reduce_to_their_shortcuts():
    """With the residual branch zeroed, a unit outputs relu(shortcut(x)) = its
    shortcut for x >= 0: the identity inside a stage, option A across one."""
    layers = by_name(build("resnet", 2))
    x1, x2 = pt.tensor4("x1"), pt.tensor4("x2")
    same = get_output(layers["stage1_unit2_relu"], {layers["stage1_unit1_relu"]: x1},
                      deterministic=True)
    change = get_output(layers["stage2_unit1_relu"], {layers["stage1_unit2_relu"]: x2},
                        deterministic=True)
    f = pytensor.function([x1, x2], [same, change], mode=FAST)
    rng = np.random.RandomState(1)
    X1 = np.abs(rng.randn(2, 16, 32, 32)).astype("float32")  # a ReLU output
    X2 = np.abs(rng.randn(2, 16, 32, 32)).astype("float32")
    out_same, out_change = f(X1, X2)
    assert not np.allclose(out_same, X1)  # the branches are live at init
    assert not np.allclose(out_change, option_a(X2, 32))
    _zero_branch(layers, "stage1_unit2")
    _zero_branch(layers, "stage2_unit1")
    out_same, out_change = f(X1, X2)
    np.testing.assert_allclose(out_same, X1, rtol=1e-6)
    assert out_change.shape == (2, 32, 16, 16)
    np.testing.assert_allclose(out_change, option_a(X2, 32), rtol=1e-6, atol=1e-7)
    assert np.all(out_change[:, :8] == 0) and np.all(out_change[:, 24:] == 0)


def test_pre_activation_units_reduce_to_their_shortcuts():
    """The seed's variant: a unit whose last conv is zero outputs its shortcut
    -- from the BN-ReLU output for the very first unit, from the raw input
    (option A across a stage change) otherwise."""
    layers = by_name(build("resnet", 1, preact=True))
    x1, x2 = pt.tensor4("x1"), pt.tensor4("x2")
    first = get_output(layers["stage1_unit1_sum"], {layers["stem"]: x1}, deterministic=True)
    change = get_output(layers["stage2_unit1_sum"], {layers["stage1_unit1_sum"]: x2},
                        deterministic=True)
    f = pytensor.function([x1, x2], [first, change], mode=FAST)
    rng = np.random.RandomState(2)
    X1 = rng.randn(2, 16, 32, 32).astype("float32")
    X2 = rng.randn(2, 16, 32, 32).astype("float32")
    _zero_branch(layers, "stage1_unit1", post_activation=False)
    _zero_branch(layers, "stage2_unit1", post_activation=False)
    out_first, out_change = f(X1, X2)
    # fresh BN statistics (mean 0, inv_std 1, gamma 1, beta 0): BN-ReLU is ReLU
    np.testing.assert_allclose(out_first, np.maximum(X1, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_change, option_a(X2, 32), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("preact", [False, True])
def test_plain_has_no_shortcuts(preact):
    assert not [l for l in get_all_layers(build("plain", 3, preact=preact))
                if isinstance(l, ElemwiseSumLayer)]
    sums = [l for l in get_all_layers(build("resnet", 3, preact=preact))
            if isinstance(l, ElemwiseSumLayer)]
    assert len(sums) == 9  # one per unit


def test_plain_unit_with_zero_branch_outputs_zero():
    layers = by_name(build("plain", 2))
    x = pt.tensor4("x")
    f = pytensor.function([x], get_output(layers["stage1_unit2_relu"],
                                          {layers["stage1_unit1_relu"]: x}, deterministic=True),
                          mode=FAST)
    _zero_branch(layers, "stage1_unit2")
    X = np.abs(np.random.RandomState(3).randn(2, 16, 32, 32)).astype("float32")
    assert np.all(f(X) == 0)
