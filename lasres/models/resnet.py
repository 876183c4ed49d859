"""The original CIFAR ResNets (He et al. 2015) and their plain twins, as the
TensorFlow seed (tf-resnet-cifar10) builds them.

``resnet n`` has 6n+2 weighted layers (n = 3, 5, 7, 9, 18 give ResNet-20,
-32, -44, -56, -110), laid out as in Section 4.2 of "Deep Residual Learning
for Image Recognition":

=========  ==========  =====================================
output     filters     layers
=========  ==========  =====================================
32 x 32    16          3x3 conv (the stem)
32 x 32    16          n units of two 3x3 convs
16 x 16    32          n units, the first strides by 2
8 x 8      64          n units, the first strides by 2
1 x 1      classes     global average pool, softmax layer
=========  ==========  =====================================

(28 x 28 MNIST inputs run at 28, 14, 7 pixels.)

A *post-activation* unit (the paper's, the default) computes
``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``. Every shortcut is an
identity; across a stage change it is the paper's **option A**: a 2x2,
stride-2 average pool followed by zero-padding of the channels (half of the
new channels before, half after, as the seed's ``tf.pad``), so the shortcuts
have no parameters. Option ``shortcut=subsample`` takes every second pixel
instead of the average pool (``X[:, :, ::2, ::2]``, as the Lasagne Recipes'
``Deep_Residual_Learning_CIFAR-10.py`` does: its published ResNet-32 and
ResNet-56 weights need it).

Option ``preact`` builds the seed's own variant, the pre-activation unit of
He et al. 2016 (``conv(relu(bn(conv(relu(bn(x)))))) + shortcut(x)``): a bare
stem convolution, a unit's shortcut taken from its input (the first unit of
the first stage takes it from its own BN-ReLU output, as the seed does), and
a final BN-ReLU before the pooling.

``plain n`` is the same network with every shortcut removed (the seed's
``--shortcut_connections=False``); its post-activation unit is then just
conv-BN-ReLU-conv-BN-ReLU, He et al.'s plain baseline.

Choices where the seed and paper leave room: convolutions that feed a batch
normalisation have no bias (the seed's ``biases_initializer=None``/BN
``normalizer_fn``), and the softmax layer has one; weights use
``HeNormal(gain='relu')`` (He et al.'s initialisation; the seed used Glorot),
the softmax layer ``HeNormal()``, as the Lasagne seed does. Layers carry
names (``stage2_unit1_conv2``, ``stage2_unit1_sum``, ...) so a unit's parts
can be found again.
"""
from ..layers import (BatchNormLayer, ElemwiseSumLayer, ExpressionLayer, GlobalPoolLayer,
                      InputLayer, NonlinearityLayer, PadLayer, Pool2DLayer)
from ..errors import ArchitectureError
from ..nonlinearities import rectify
from .blocks import ConvLayer, conv_bn_relu, he_norm, softmax_head, width_one
from .registry import register_model, total_depth_hint

__all__ = ["ResNet_CIFAR", "identity_shortcut", "post_activation_unit",
           "pre_activation_unit", "resnet_depth"]

STAGE_FILTERS = (16, 32, 64)


SHORTCUTS = ("pool", "subsample")


def identity_shortcut(l, num_filters, stride=1, name=None, mode="pool"):
    """The parameter-free shortcut of option A.

    Identity when nothing changes; otherwise a ``stride`` x ``stride``
    average pool (when ``stride > 1``; ``mode='subsample'``: every
    ``stride``-th pixel, the Lasagne Recipes' ``X[:, :, ::2, ::2]``) and
    zero-padding of the channels up to ``num_filters`` (half before, half
    after).

    Parameters
    ----------
    l : Layer
    num_filters : int
        Channels the shortcut must have.
    stride : int
        Spatial subsampling factor of the residual branch.
    name : str or None
        Prefix for the new layers' names.
    """
    if stride > 1 and mode == "subsample":
        def out_shape(s, k=stride):
            return tuple(s[:2]) + tuple(None if d is None else -(-d // k) for d in s[2:])
        l = ExpressionLayer(l, lambda X, k=stride: X[:, :, ::k, ::k], out_shape,
                            name=name and name + "_subsample")
    elif stride > 1:
        # odd sizes: keep the partial window, like the 'same' strided conv it mirrors
        odd = any(s is not None and s % stride for s in l.output_shape[2:])
        l = Pool2DLayer(l, pool_size=stride, stride=stride, ignore_border=not odd,
                        mode="average_exc_pad" if odd else "average_inc_pad",
                        name=name and name + "_pool")
    extra = num_filters - l.output_shape[1]
    if extra < 0:
        raise ArchitectureError(f"an identity shortcut cannot shrink {l.output_shape[1]} "
                                f"channels to {num_filters}")
    if extra:
        l = PadLayer(l, width=[(extra // 2, extra - extra // 2), 0, 0], batch_ndim=1,
                     name=name and name + "_pad")
    return l


def _conv_bn(l, num_filters, stride=1, name=None):
    conv = ConvLayer(l, num_filters=num_filters, filter_size=(3, 3), stride=stride, pad="same",
                     W=he_norm, b=None, nonlinearity=None, name=name)
    return BatchNormLayer(conv, name=name and name + "_bn")


def post_activation_unit(l, num_filters, stride=1, shortcut=True, name=None,
                         shortcut_mode="pool"):
    """He et al. 2015's unit: conv-BN-ReLU, conv-BN, add the shortcut, ReLU.

    Without ``shortcut`` (the plain net) the addition is left out;
    ``shortcut_mode`` is :func:`identity_shortcut`'s ``mode``.
    """
    residual = conv_bn_relu(l, num_filters, (3, 3), stride, name=name and name + "_conv1")
    residual = _conv_bn(residual, num_filters, name=name and name + "_conv2")
    if shortcut:
        residual = ElemwiseSumLayer(
            [residual, identity_shortcut(l, num_filters, stride, name and name + "_shortcut",
                                         shortcut_mode)],
            name=name and name + "_sum")
    return NonlinearityLayer(residual, rectify, name=name and name + "_relu")


def pre_activation_unit(l, num_filters, stride=1, shortcut=True, shortcut_from_preact=False,
                        name=None, shortcut_mode="pool"):
    """The seed's unit (He et al. 2016): BN-ReLU, conv-BN-ReLU, conv, add.

    The shortcut leaves from the unit's input, or from its BN-ReLU output
    when ``shortcut_from_preact`` (the seed's first unit).
    """
    preact = NonlinearityLayer(BatchNormLayer(l, name=name and name + "_preact_bn"), rectify,
                               name=name and name + "_preact")
    residual = conv_bn_relu(preact, num_filters, (3, 3), stride, name=name and name + "_conv1")
    residual = ConvLayer(residual, num_filters=num_filters, filter_size=(3, 3), pad="same",
                         W=he_norm, b=None, nonlinearity=None, name=name and name + "_conv2")
    if not shortcut:
        return residual
    source = preact if shortcut_from_preact else l
    return ElemwiseSumLayer(
        [residual, identity_shortcut(source, num_filters, stride, name and name + "_shortcut",
                                     shortcut_mode)],
        name=name and name + "_sum")


def ResNet_CIFAR(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, n=3,
                 shortcuts=True, preact=False, shortcut="pool"):
    """The CIFAR ResNet of 6n+2 layers (He et al. 2015, Section 4.2).

    Parameters
    ----------
    input_shape : tuple
        ``(None, channels, height, width)``.
    input_var : PyTensor variable or None
    n_classes : int
    n : int
        Units per stage (3 -> ResNet-20, 18 -> ResNet-110).
    shortcuts : bool
        False removes every shortcut (the plain network).
    preact : bool
        Pre-activation units (the TensorFlow seed's variant).
    shortcut : {'pool', 'subsample'}
        How option A's shortcut halves the resolution: a 2x2 average pool
        (the TensorFlow seed's) or every second pixel (the Lasagne Recipes').

    Returns
    -------
    DenseLayer
        The softmax output layer.
    """
    if shortcut not in SHORTCUTS:
        raise ArchitectureError(f"shortcut must be one of {', '.join(SHORTCUTS)}, got "
                                f"{str(shortcut)[:40]!r}")
    l = InputLayer(shape=input_shape, input_var=input_var, name="input")
    if preact:
        l = ConvLayer(l, num_filters=16, filter_size=(3, 3), pad="same", W=he_norm, b=None,
                      nonlinearity=None, name="stem")
    else:
        l = conv_bn_relu(l, 16, name="stem")
    for stage, num_filters in enumerate(STAGE_FILTERS, start=1):
        for unit in range(1, n + 1):
            stride = 2 if stage > 1 and unit == 1 else 1
            name = f"stage{stage}_unit{unit}"
            if preact:
                l = pre_activation_unit(l, num_filters, stride, shortcuts,
                                        shortcut_from_preact=(stage == 1 and unit == 1), name=name,
                                        shortcut_mode=shortcut)
            else:
                l = post_activation_unit(l, num_filters, stride, shortcuts, name=name,
                                         shortcut_mode=shortcut)
    if preact:
        l = NonlinearityLayer(BatchNormLayer(l, name="postnorm_bn"), rectify, name="postnorm")
    l = GlobalPoolLayer(l, name="pool")
    return softmax_head(l, n_classes, name="softmax")


def resnet_depth(n, k=1):
    """Weighted layers: the stem, two convolutions per unit, the softmax layer."""
    return 6 * n + 2


def _builder(shortcuts):
    def build(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32),
              preact=False, shortcut="pool"):
        return ResNet_CIFAR(input_shape=input_shape, input_var=input_var, n_classes=num_classes,
                            n=depth, shortcuts=shortcuts, preact=bool(preact),
                            shortcut=shortcut)
    build.__doc__ = ResNet_CIFAR.__doc__
    return build


for _name, _shortcuts, _title in (
        ("resnet", True, "CIFAR ResNet (He et al. 2015), identity shortcuts (option A)"),
        ("plain", False, "plain CIFAR net (He et al. 2015): the ResNet without shortcuts")):
    register_model(_name, _title, resnet_depth, "6n+2", default_depth=3, default_width=1,
                   check=width_one(_name, "'wide' or 'ror-wrn'"), options=("preact", "shortcut"),
                   # the Lasagne Recipes' published files (lasres.weights.registry)
                   weights=({(5, 1): "cifar_model_n5.npz", (9, 1): "cifar_model_n9.npz"}
                            if _shortcuts else {}),
                   hint=total_depth_hint(_name, "6n+2", resnet_depth, 20))(_builder(_shortcuts))
