"""ResNet in ResNet (Targ et al. 2016): shapes, parameter counts by hand, one
training step, and the generalized residual layer / RiR block structure
(shortcut on the residual stream only, cross-stream mixing) checked
numerically."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres.layers import (ConcatLayer, ElemwiseSumLayer, count_params,
                           get_all_layers, get_output)
from lasres.layers.conv import Conv2DLayer
from lasres.layers.dense import DenseLayer
from lasres.models import build, get_spec
from _model_checks import CIFAR, FAST, MNIST, by_name, forward_backward, option_a






# --- parameter counts by hand ----------------------------------------------------------
def rir_params_by_hand(layers, stem, in_channels=3, classes=10):
    """Two stems (3x3 conv, no bias, + BN of 4 values per channel), then per
    generalized residual layer four bias-free 3x3 convs between streams of
    ``c_in`` and ``c_out`` channels and one BN per stream; shortcuts are
    parameter-free; the softmax layer sees both streams, 2 * c_out values."""
    total = 2 * (in_channels * stem * 9 + 4 * stem)
    for c_in, c_out in layers:
        total += 4 * (c_in * c_out * 9) + 2 * 4 * c_out
    return total + 2 * layers[-1][1] * classes + classes


# The paper's "18-layer + wide" RiR, per stream 48/96/192 filters: 8 blocks of
# two layers, 3 + 3 + 2; the last block of the first two stages doubles the
# width in its first layer (and halves the resolution in its second).
PAPER_18_WIDE = ([(48, 48)] * 4                    # blocks 1-2
                 + [(48, 96), (96, 96)]            # block 3
                 + [(96, 96)] * 4                  # blocks 4-5
                 + [(96, 192), (192, 192)]         # block 6
                 + [(192, 192)] * 4)               # blocks 7-8


def test_param_count_18_layer_wide_by_hand():
    assert len(PAPER_18_WIDE) == 16  # + stem + softmax = 18 layers
    expected = rir_params_by_hand(PAPER_18_WIDE, 48)
    assert expected == (2 * (3 * 48 * 9 + 4 * 48)
                        + 4 * (4 * 48 * 48 * 9 + 8 * 48)
                        + 4 * 48 * 96 * 9 + 8 * 96 + 4 * 96 * 96 * 9 + 8 * 96
                        + 4 * (4 * 96 * 96 * 9 + 8 * 96)
                        + 4 * 96 * 192 * 9 + 8 * 192 + 4 * 192 * 192 * 9 + 8 * 192
                        + 4 * (4 * 192 * 192 * 9 + 8 * 192)
                        + 384 * 10 + 10)
    net = build("rir")  # the type's defaults are the paper's configuration
    assert count_params(net) == expected
    assert 9e6 < count_params(net, trainable=True) < 1.1e7


@pytest.mark.parametrize("depth,width,layers,shape,classes", [
    (8, 1, [(16, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64)], MNIST, 10),
    (12, 2, [(32, 32), (32, 32), (32, 64), (64, 64), (64, 64), (64, 64), (64, 128),
             (128, 128), (128, 128), (128, 128)], CIFAR, 100)])
def test_param_count_small(depth, width, layers, shape, classes):
    net = build("rir", depth, width, num_classes=classes, input_shape=shape)
    assert count_params(net) == rir_params_by_hand(layers, 16 * width, shape[1], classes)


@pytest.mark.parametrize("depth,width", [(8, 1), (18, 3), (20, 2)])
def test_no_parameter_overhead_over_the_cnn(depth, width):
    """The paper: RiR has the parameters of the CNN of the same size."""
    assert count_params(build("rir", depth, width)) == count_params(build("cnn", depth, width))


# --- shapes and depth -----------------------------------------------------------------
@pytest.mark.parametrize("shape,classes", [(CIFAR, 10), (MNIST, 10), (MNIST, 4)])
def test_output_shapes(shape, classes):
    net = build("rir", 8, 1, num_classes=classes, input_shape=shape)
    assert net.output_shape == (None, classes)
    concat = next(l for l in get_all_layers(net) if isinstance(l, ConcatLayer))
    assert concat.output_shape == (None, 128) + tuple(-(-s // 4) for s in shape[2:])


def test_paper_configuration_is_the_default():
    spec = get_spec("rir")
    assert (spec.default_depth, spec.default_width) == (18, 3)
    assert spec.total_depth(18, 3) == 18
    net = build("rir")
    layers = by_name(net)
    r_to_r = [l for l in get_all_layers(net) if l.name and l.name.endswith("_r_to_r")]
    stems = [l for l in get_all_layers(net) if l.name and l.name.startswith("stem_")
             and isinstance(l, Conv2DLayer)]
    dense = [l for l in get_all_layers(net) if isinstance(l, DenseLayer)]
    assert len(r_to_r) + 1 + len(dense) == 18  # 16 generalized layers, stem, softmax
    assert len(stems) == 2
    # 96, 192, 384 filters over both streams, on 32, 16, 8 pixels
    assert layers["block1_layer1_residual"].output_shape == (None, 48, 32, 32)
    assert layers["block3_layer1_residual"].output_shape == (None, 96, 32, 32)
    assert layers["block3_layer2_residual"].output_shape == (None, 96, 16, 16)
    assert layers["block6_layer2_transient"].output_shape == (None, 192, 8, 8)
    assert layers["concat"].output_shape == (None, 384, 8, 8)
    blocks = [l for l in get_all_layers(net) if l.name and l.name.endswith("_sum")
              and l.name.count("_") == 1]
    assert len(blocks) == 8  # one outer shortcut per RiR block


def test_bad_depths_are_refused():
    for depth in (7, 6, 4):
        with pytest.raises(ValueError, match="depth"):
            build("rir", depth, 1)
    net = build("rir", 11, 1, block_layers=3)  # 3 blocks of 3 layers
    assert len([l for l in get_all_layers(net) if l.name and l.name.endswith("_r_to_r")]) == 9


# --- one training step ----------------------------------------------------------------
def test_forward_backward():
    forward_backward(build("rir", 8, 1, num_classes=10, input_shape=MNIST), MNIST, 10)


# --- structure ----------------------------------------------------------------------------
def set_kernels(layers, prefix, dirac=()):
    """Zero the four convolutions of a generalized layer, except those named
    in ``dirac``, which get an identity (centre-tap) kernel."""
    for kind in ("r_to_r", "t_to_r", "r_to_t", "t_to_t"):
        conv = layers[f"{prefix}_{kind}"]
        W = np.zeros(conv.W.get_value().shape, dtype="float32")
        if kind in dirac:
            for c in range(min(W.shape[:2])):
                W[c, c, 1, 1] = 1.0
        conv.W.set_value(W)


def test_generalized_residual_layer():
    """r' = relu(bn(conv_rr(r) + conv_tr(t) + r)), t' = relu(bn(conv_rt(r) + conv_tt(t))):
    with fresh BN statistics bn is the identity, so zero kernels give r' = r,
    t' = 0 (the transient stream has no shortcut), and identity kernels
    show which stream feeds which."""
    layers = by_name(build("rir", 8, 1))
    r, t = pt.tensor4("r"), pt.tensor4("t")
    outs = get_output([layers["block3_layer1_residual"], layers["block3_layer1_transient"]],
                      {layers["block2_sum"]: r,
                       layers["block2_layer2_transient"]: t}, deterministic=True)
    f = pytensor.function([r, t], outs, mode=FAST)
    rng = np.random.RandomState(0)
    R = np.abs(rng.randn(2, 64, 8, 8)).astype("float32")
    T = rng.randn(2, 64, 8, 8).astype("float32")
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    set_kernels(layers, "block3_layer1")
    r1, t1 = f(R, T)
    np.testing.assert_allclose(r1, R, rtol=1e-6)
    assert np.all(t1 == 0)
    set_kernels(layers, "block3_layer1", dirac=("t_to_r", "r_to_t"))
    r1, t1 = f(R, T)
    np.testing.assert_allclose(r1, relu(R + T), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t1, R, rtol=1e-5, atol=1e-6)
    set_kernels(layers, "block3_layer1", dirac=("r_to_r", "t_to_t"))
    r1, t1 = f(R, T)
    np.testing.assert_allclose(r1, 2 * R, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t1, relu(T), rtol=1e-5, atol=1e-6)


def test_rir_block_outer_shortcut():
    """All kernels of a block zeroed: each layer passes r on (its shortcut),
    the block adds r once more (the outer shortcut) and the transient stream
    dies: r_out = 2 r (2 x option A across a stage change), t_out = 0."""
    layers = by_name(build("rir", 8, 1))
    r, t, r2, t2 = (pt.tensor4(n) for n in ("r", "t", "r2", "t2"))
    same = get_output([layers["block3_sum"], layers["block3_layer2_transient"]],
                      {layers["block2_sum"]: r, layers["block2_layer2_transient"]: t},
                      deterministic=True)
    change = get_output([layers["block1_sum"], layers["block1_layer2_transient"]],
                        {layers["stem_residual_bn_nonlin"]: r2,
                         layers["stem_transient_bn_nonlin"]: t2}, deterministic=True)
    f = pytensor.function([r, t, r2, t2], same + change, mode=FAST)
    rng = np.random.RandomState(1)
    R = np.abs(rng.randn(2, 64, 8, 8)).astype("float32")
    T = np.abs(rng.randn(2, 64, 8, 8)).astype("float32")
    R2 = np.abs(rng.randn(2, 16, 32, 32)).astype("float32")
    T2 = np.abs(rng.randn(2, 16, 32, 32)).astype("float32")
    live = f(R, T, R2, T2)
    for block in ("block1", "block3"):
        for layer in ("layer1", "layer2"):
            set_kernels(layers, f"{block}_{layer}")
    r_same, t_same, r_change, t_change = f(R, T, R2, T2)
    np.testing.assert_allclose(r_same, 2 * R, rtol=1e-6)
    assert np.all(t_same == 0)
    assert r_change.shape == (2, 32, 16, 16)
    np.testing.assert_allclose(r_change, 2 * option_a(R2, 32), rtol=1e-5, atol=1e-6)
    assert np.all(t_change == 0)
    assert not np.allclose(live[0], 2 * R)


def test_shortcut_counts():
    net = build("rir", 8, 1)
    sums = [l for l in get_all_layers(net) if isinstance(l, ElemwiseSumLayer)]
    residual = [s for s in sums if s.name.endswith("_residual_sum")]
    transient = [s for s in sums if s.name.endswith("_transient_sum")]
    outer = [s for s in sums if s.name.count("_") == 1]
    assert len(residual) == len(transient) == 6 and len(outer) == 3
    assert all(len(s.input_layers) == 3 for s in residual)   # r->r, t->r, shortcut
    assert all(len(s.input_layers) == 2 for s in transient)  # r->t, t->t, no shortcut
