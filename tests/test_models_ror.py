"""RoR-3 (Zhang et al. 2016) on the original ResNet (``ror``) and on the wide
pre-activation ResNet (``ror-wrn``): shapes, parameter counts by hand, one
training step, and the three levels of shortcuts checked numerically."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres.layers import (DropoutLayer, ElemwiseSumLayer, count_params,
                           get_all_layers, get_output)
from lasres.models import build, get_spec
from lasres.models.ror import RoR3_ResNet
from _model_checks import CIFAR, FAST, MNIST, by_name, convs, forward_backward






# --- parameter counts by hand ---------------------------------------------------------
def ror_params_by_hand(blocks, in_channels=3, classes=10):
    """RoR-3 on ResNet: stem conv 3x3x16 (no bias) + BN (4 values/channel);
    level 1: 1x1 conv 16->64 with bias; per stage (16, 32, 64 filters, input
    16, 16, 32): a level-2 1x1 projection with bias, ``blocks`` blocks of two
    bias-free 3x3 convs each with BN, the first block with a 1x1 projection
    (with bias); softmax 64 -> classes."""
    total = in_channels * 16 * 9 + 4 * 16
    total += 16 * 64 + 64
    for c_in, w in ((16, 16), (16, 32), (32, 64)):
        total += c_in * w + w                                     # level-2 shortcut
        total += c_in * w * 9 + 4 * w + w * w * 9 + 4 * w         # block 1
        total += c_in * w + w                                     # its projection
        total += (blocks - 1) * 2 * (w * w * 9 + 4 * w)           # blocks 2..
    return total + 64 * classes + classes


def ror_wrn_params_by_hand(N, k, in_channels=3, classes=10):
    """RoR-3-WRN: stem conv 3x3x16; level 1: 1x1 conv 16 -> 64k; per stage
    (16k, 32k, 64k filters): a level-2 1x1 projection, N pre-activation blocks
    BN-conv-BN-conv (all convs bias-free, BN 4 values/channel), a 1x1
    projection in the first block where the shape changes; final BN, softmax."""
    total = in_channels * 16 * 9 + 16 * 64 * k
    c_in = 16
    for w in (16 * k, 32 * k, 64 * k):
        total += c_in * w                                         # level-2 shortcut
        total += 4 * c_in + c_in * w * 9 + 4 * w + w * w * 9      # block 1
        total += c_in * w if c_in != w else 0                     # projection if reshaping
        total += (N - 1) * (4 * w + w * w * 9 + 4 * w + w * w * 9)
        c_in = w
    return total + 4 * 64 * k + 64 * k * classes + classes


def test_param_count_ror3_110_by_hand():
    # RoR-3-110 (N=2): 17 blocks per stage
    expected = (3 * 16 * 9 + 4 * 16 + 16 * 64 + 64                       # stem, level 1
                + (16 * 16 + 16) * 2 + 16 * 16 * 9 * 34 + 4 * 16 * 34     # stage 1
                + (16 * 32 + 32) * 2 + 16 * 32 * 9 + 32 * 32 * 9 * 33 + 4 * 32 * 34
                + (32 * 64 + 64) * 2 + 32 * 64 * 9 + 64 * 64 * 9 * 33 + 4 * 64 * 34
                + 64 * 10 + 10)
    assert expected == ror_params_by_hand(17)
    assert count_params(build("ror", 2)) == expected
    assert 1.6e6 < expected < 1.8e6  # ResNet-110's 1.7M


@pytest.mark.parametrize("blocks,shape,classes", [(1, CIFAR, 10), (3, MNIST, 100)])
def test_param_count_ror_small(blocks, shape, classes):
    net = RoR3_ResNet(shape, n_classes=classes, blocks_per_stage=blocks)
    assert count_params(net) == ror_params_by_hand(blocks, shape[1], classes)


def test_param_count_ror3_wrn_40_2_by_hand():
    k, N = 2, 6
    expected = (3 * 16 * 9 + 16 * 128                                   # stem, level 1
                + 16 * 32 + 4 * 16 + 16 * 32 * 9 + 4 * 32 + 32 * 32 * 9 + 16 * 32
                + 5 * 2 * (4 * 32 + 32 * 32 * 9)                           # stage 1
                + 32 * 64 + 4 * 32 + 32 * 64 * 9 + 4 * 64 + 64 * 64 * 9 + 32 * 64
                + 5 * 2 * (4 * 64 + 64 * 64 * 9)                           # stage 2
                + 64 * 128 + 4 * 64 + 64 * 128 * 9 + 4 * 128 + 128 * 128 * 9 + 64 * 128
                + 5 * 2 * (4 * 128 + 128 * 128 * 9)                        # stage 3
                + 4 * 128 + 128 * 10 + 10)
    assert expected == ror_wrn_params_by_hand(N, k)
    assert count_params(build("ror-wrn", N, k)) == expected
    assert 2.1e6 < count_params(build("ror-wrn", N, k), trainable=True) < 2.3e6  # WRN-40-2: 2.2M


@pytest.mark.parametrize("N,k,shape,classes", [(1, 1, CIFAR, 10), (2, 2, MNIST, 10),
                                               (1, 4, CIFAR, 100)])
def test_param_count_ror_wrn_small(N, k, shape, classes):
    net = build("ror-wrn", N, k, num_classes=classes, input_shape=shape)
    assert count_params(net) == ror_wrn_params_by_hand(N, k, shape[1], classes)


# --- shapes and depth ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [CIFAR, MNIST])
def test_output_shapes(shape):
    for net in (build("ror", 1, num_classes=7, input_shape=shape),
                build("ror-wrn", 1, 2, num_classes=7, input_shape=shape)):
        assert net.output_shape == (None, 7)
        layers = by_name(net)
        assert layers["level1_shortcut"].output_shape[2:] == tuple(-(-s // 4) for s in shape[2:])


def test_total_depth_named_configs():
    ror, wrn = get_spec("ror"), get_spec("ror-wrn")
    assert (ror.default_depth, ror.default_width) == (2, 1)  # RoR-3-110
    assert (wrn.default_depth, wrn.default_width) == (6, 2)  # RoR-3-WRN-40-2
    assert [ror.total_depth(N, 1) for N in (1, 2, 3)] == [56, 110, 164]
    assert wrn.total_depth(6, 2) == 40 and wrn.total_depth(4, 10) == 28
    assert wrn.total_depth(9, 4) == 58  # RoR-3-WRN58-4
    # the seed counts every convolution of ror (no softmax layer): 3x3 ones,
    # stem, 4 level-1/2 and 3 block projections
    for N in (1, 2):
        net = build("ror", N)
        assert len(convs(net)) == ror.total_depth(N, 1)
        assert len(convs(net, 3)) == 6 * (9 * N - 1) + 1
    # WRN depth 6N+4: 6N 3x3 convs in blocks + stem + 3 more (projections / fc)
    net = build("ror-wrn", 6, 2)
    assert len(convs(net, 3)) == 6 * 6 + 1
    assert len(convs(net, 1)) == 4 + 3  # level 1, 3 x level 2, 3 block projections


def test_ror_refuses_width_and_bad_dropout():
    with pytest.raises(ValueError, match="ror-wrn"):
        build("ror", 2, 2)
    with pytest.raises(ValueError, match="dropout"):
        build("ror-wrn", 1, 1, dropout=1.5)


def test_dropout_between_the_convs():
    net = build("ror-wrn", 2, 2, dropout=0.3)
    drops = [l for l in get_all_layers(net) if isinstance(l, DropoutLayer)]
    assert len(drops) == 3 * 2 and all(d.p == 0.3 for d in drops)
    layers = by_name(net)
    assert layers["stage1_block1_conv2"].input_layer is layers["stage1_block1_dropout"]
    assert len([l for l in get_all_layers(build("ror", 1, dropout=0.2))
                if isinstance(l, DropoutLayer)]) == 3 * 8
    assert not [l for l in get_all_layers(build("ror-wrn", 2, 2)) if isinstance(l, DropoutLayer)]


# --- one training step -------------------------------------------------------------------
def test_forward_backward_ror():
    forward_backward(RoR3_ResNet(CIFAR, n_classes=10, blocks_per_stage=1), CIFAR, 10)


def test_forward_backward_ror_wrn_mnist():
    forward_backward(build("ror-wrn", 1, 2, num_classes=10, input_shape=MNIST), MNIST, 10)


def test_forward_backward_ror_wrn_with_dropout():
    forward_backward(build("ror-wrn", 1, 1, num_classes=10, input_shape=MNIST, dropout=0.2),
                     MNIST, 10)


# --- the three levels of shortcuts ----------------------------------------------------------
def embed(X, channels, stride):
    """What a 1x1 conv with an 'identity' kernel computes: subsample, then the
    input channels as the first output channels, zeros after."""
    X = X[:, :, ::stride, ::stride]
    return np.pad(X, ((0, 0), (0, channels - X.shape[1]), (0, 0), (0, 0)))


def set_embed(conv, scale=1.0, bias=None):
    W = np.zeros(conv.W.get_value().shape, dtype="float32")
    for c in range(min(W.shape[:2])):
        W[c, c, 0, 0] = scale
    conv.W.set_value(W)
    if bias is not None:
        conv.b.set_value(np.full(conv.b.get_value().shape, bias, dtype="float32"))


def zero(*params):
    for p in params:
        p.set_value(np.zeros_like(p.get_value()))


def test_ror_levels():
    """Every residual branch zeroed, the 1x1 projections set to (strided)
    identity kernels with distinct biases: what is left of the network is
    its shortcuts, level 3 (block projections and identities), level 2 (one
    per stage, added at the stage's last block) and level 1 (stem -> end)."""
    net = RoR3_ResNet(CIFAR, blocks_per_stage=2)
    layers = by_name(net)
    x = pt.tensor4("x")
    end = layers["stage3_block2_relu"]
    f = pytensor.function([x], get_output(end, {layers["stem_bn_nonlin"]: x},
                                          deterministic=True), mode=FAST)
    Z = np.abs(np.random.RandomState(0).randn(2, 16, 32, 32)).astype("float32")
    live = f(Z)
    for s in (1, 2, 3):
        for b in (1, 2):
            bn = layers[f"stage{s}_block{b}_conv2_bn"]
            zero(bn.gamma, bn.beta)
        set_embed(layers[f"stage{s}_block1_projection"], bias=0.5 * s)
        set_embed(layers[f"stage{s}_level2_shortcut"], bias=-0.25 * s)
    set_embed(layers["level1_shortcut"], bias=3.0)
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    out = Z
    for s, (w, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        block1 = relu(embed(out, w, stride) + 0.5 * s)          # level 3: projection
        total = block1 + embed(out, w, stride) - 0.25 * s      # + level 2
        if s == 3:
            total = total + embed(Z, 64, 4) + 3.0              # + level 1
        out = relu(total)
    got = f(Z)
    assert got.shape == out.shape == (2, 64, 8, 8)
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)
    assert not np.allclose(live, out)


def test_ror_wrn_levels():
    """As above for RoR-3-WRN (k=2: stage 1 needs a projection too), the last
    conv of every block zeroed so each block outputs its shortcut."""
    N, k = 2, 2
    net = build("ror-wrn", N, k)
    layers = by_name(net)
    x = pt.tensor4("x")
    f = pytensor.function([x], get_output(layers["level1_sum"], {layers["stem"]: x},
                                          deterministic=True), mode=FAST)
    Z = np.random.RandomState(1).randn(2, 16, 32, 32).astype("float32")
    live = f(Z)
    for s in (1, 2, 3):
        for b in range(1, N + 1):
            zero(layers[f"stage{s}_block{b}_conv2"].W)
        set_embed(layers[f"stage{s}_block1_projection"], scale=1.0)
        set_embed(layers[f"stage{s}_level2_shortcut"], scale=2.0)
    set_embed(layers["level1_shortcut"], scale=5.0)
    out = Z
    for w, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
        out = embed(out, w, stride) + 2.0 * embed(out, w, stride)  # level 3 + level 2
    out = out + 5.0 * embed(Z, 64 * k, 4)                           # + level 1
    got = f(Z)
    np.testing.assert_allclose(got, out, rtol=1e-5, atol=1e-6)
    assert not np.allclose(live, out)
    # an identity block (level 3 only) with its last conv zeroed is the identity
    block = layers["stage2_block2_sum"]
    g = pytensor.function([x], get_output(block, {layers["stage2_block1_sum"]: x},
                                          deterministic=True), mode=FAST)
    X = np.random.RandomState(2).randn(2, 64, 16, 16).astype("float32")
    np.testing.assert_allclose(g(X), X)


def test_level_shortcuts_leave_from_the_right_layers():
    layers = by_name(build("ror", 1))
    stem = layers["stem_bn_nonlin"]
    assert layers["level1_shortcut"].input_layer is stem
    assert layers["stage1_level2_shortcut"].input_layer is stem
    assert layers["stage2_level2_shortcut"].input_layer is layers["stage1_block8_relu"]
    assert layers["stage3_level2_shortcut"].input_layer is layers["stage2_block8_relu"]
    sums = [l for l in get_all_layers(build("ror", 1)) if isinstance(l, ElemwiseSumLayer)]
    assert len(sums) == 3 * 8 + 3 + 1  # level 3, level 2, level 1
