"""The pre-activation ResNets of the Lasagne seed (Identity-Mapping-ResNet-Lasagne).

Written as its ``models.py`` wrote them, with the same layers in the same
order, so that the original ``.pklz`` weight lists load with
``set_all_param_values``. Quirks kept on purpose (they are the weight layout):

* The first block of the first stage has no pre-activation of its own: it
  takes the stem's BN-ReLU output, which also feeds its shortcut (identity
  for ``normal``; a bias-free 1x1 projection for ``bottleneck`` and ``wide``).
* Stage-changing blocks stride in their first 3x3 convolution (``normal``,
  ``wide``) or in the bottleneck's 3x3 convolution, and project the
  pre-activated input with a bias-free 1x1, stride-2 convolution (option B).
* A block's last convolution keeps its bias; the projections use Lasagne's
  default GlorotUniform init, the other convolutions HeNormal(gain='relu'),
  the softmax layer HeNormal().
* The wide net's stages hold n, n+2 and n+2 blocks.

Total depth (weighted layers on the main path, shortcuts not counted):
``normal`` 6n+2, ``bottleneck`` 9n+2, ``wide`` 6n+10 (its stages hold
n, n+2, n+2 blocks; ``wide 2 4``, the seed's original, has 2, 4, 4 blocks).
"""
from ..init import HeNormal
from ..layers import (BatchNormLayer, DenseLayer, ElemwiseSumLayer, GlobalPoolLayer,
                      InputLayer, NonlinearityLayer, batch_norm)
from ..layers.dnn import Conv2DDNNLayer as ConvLayer
from ..nonlinearities import rectify, softmax
from ..errors import ArchitectureError
from .registry import ModelSpec, register

__all__ = ["ResNet_FullPreActivation", "ResNet_BottleNeck_FullPreActivation",
           "ResNet_FullPre_Wide"]

he_norm = HeNormal(gain="relu")


def _pre_activation(l, first):
    """BN -> ReLU before a block (none for the very first block)."""
    if first:
        return l
    return NonlinearityLayer(BatchNormLayer(l), rectify)


def _conv_bn_relu(l, num_filters, filter_size, stride=(1, 1)):
    return batch_norm(ConvLayer(l, num_filters=num_filters, filter_size=filter_size,
                                stride=stride, nonlinearity=rectify, pad="same", W=he_norm))


def _conv(l, num_filters, filter_size):
    """A block's last convolution: no nonlinearity, bias kept."""
    return ConvLayer(l, num_filters=num_filters, filter_size=filter_size, stride=(1, 1),
                     nonlinearity=None, pad="same", W=he_norm)


def _projection(l, num_filters, stride):
    """Bias-free 1x1 projection shortcut (Lasagne's default GlorotUniform init)."""
    return ConvLayer(l, num_filters=num_filters, filter_size=(1, 1), stride=stride,
                     nonlinearity=None, pad="same", b=None)


def _stem(input_shape, input_var):
    l_in = InputLayer(shape=input_shape, input_var=input_var)
    return _conv_bn_relu(l_in, 16, (3, 3))


def _head(l, num_classes):
    l = NonlinearityLayer(BatchNormLayer(l), rectify)
    l = GlobalPoolLayer(l)
    return DenseLayer(l, num_units=num_classes, W=HeNormal(), nonlinearity=softmax)


def ResNet_FullPreActivation(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, n=18):
    """Pre-activation ResNet of 6n+2 layers (He et al. 2016, 'Identity
    Mappings'); n=18 is ResNet-110. Stages of n two-conv blocks at 16, 32,
    64 filters on 32, 16, 8 pixels."""

    def residual_block(l, increase_dim=False, first=False):
        input_num_filters = l.output_shape[1]
        if increase_dim:
            first_stride, out_num_filters = (2, 2), input_num_filters * 2
        else:
            first_stride, out_num_filters = (1, 1), input_num_filters
        bn_pre_relu = _pre_activation(l, first)
        conv_1 = _conv_bn_relu(bn_pre_relu, out_num_filters, (3, 3), first_stride)
        conv_2 = _conv(conv_1, out_num_filters, (3, 3))
        if increase_dim:
            shortcut = _projection(bn_pre_relu, out_num_filters, (2, 2))
        else:
            shortcut = l
        return ElemwiseSumLayer([conv_2, shortcut])

    l = _stem(input_shape, input_var)
    l = residual_block(l, first=True)
    for _ in range(1, n):
        l = residual_block(l)
    for _stage in range(2):
        l = residual_block(l, increase_dim=True)
        for _ in range(1, n):
            l = residual_block(l)
    return _head(l, n_classes)


def ResNet_BottleNeck_FullPreActivation(input_shape=(None, 3, 32, 32), input_var=None,
                                        n_classes=10, n=18):
    """Pre-activation bottleneck ResNet of 9n+2 layers; n=18 is ResNet-164.
    Blocks 1x1 -> 3x3 -> 1x1 with outputs of 64, 128, 256 channels."""

    def residual_bottleneck_block(l, increase_dim=False, first=False):
        input_num_filters = l.output_shape[1]
        if increase_dim:
            first_stride, out_num_filters = (2, 2), input_num_filters * 2
        else:
            first_stride, out_num_filters = (1, 1), input_num_filters
        if first:
            out_num_filters *= 4
        bn_pre_relu = _pre_activation(l, first)
        bottleneck_filters = out_num_filters // 4
        conv_1 = _conv_bn_relu(bn_pre_relu, bottleneck_filters, (1, 1))
        conv_2 = _conv_bn_relu(conv_1, bottleneck_filters, (3, 3), first_stride)
        conv_3 = _conv(conv_2, out_num_filters, (1, 1))
        if increase_dim:
            shortcut = _projection(bn_pre_relu, out_num_filters, (2, 2))
        elif first:
            shortcut = _projection(bn_pre_relu, out_num_filters, (1, 1))
        else:
            shortcut = l
        return ElemwiseSumLayer([conv_3, shortcut])

    l = _stem(input_shape, input_var)
    l = residual_bottleneck_block(l, first=True)
    for _ in range(1, n):
        l = residual_bottleneck_block(l)
    for _stage in range(2):
        l = residual_bottleneck_block(l, increase_dim=True)
        for _ in range(1, n):
            l = residual_bottleneck_block(l)
    return _head(l, n_classes)


def ResNet_FullPre_Wide(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, n=6, k=4):
    """Wide pre-activation ResNet (Zagoruyko & Komodakis 2016) as the Lasagne
    seed built it: widths 16k, 32k, 64k; stages of n, n+2 and n+2 blocks."""
    n_filters = {0: 16, 1: 16 * k, 2: 32 * k, 3: 64 * k}

    def residual_block(l, increase_dim=False, first=False, filters=16):
        first_stride = (2, 2) if increase_dim else (1, 1)
        bn_pre_relu = _pre_activation(l, first)
        conv_1 = _conv_bn_relu(bn_pre_relu, filters, (3, 3), first_stride)
        conv_2 = _conv(conv_1, filters, (3, 3))
        if increase_dim:
            shortcut = _projection(bn_pre_relu, filters, (2, 2))
        elif first:
            shortcut = _projection(bn_pre_relu, filters, (1, 1))
        else:
            shortcut = l
        return ElemwiseSumLayer([conv_2, shortcut])

    l = _stem(input_shape, input_var)
    l = residual_block(l, first=True, filters=n_filters[1])
    for _ in range(1, n):
        l = residual_block(l, filters=n_filters[1])
    for stage in (2, 3):
        l = residual_block(l, increase_dim=True, filters=n_filters[stage])
        for _ in range(1, n + 2):
            l = residual_block(l, filters=n_filters[stage])
    return _head(l, n_classes)


def wide_depth(n, k=1):
    """Convolutions + the output layer of the seed's wide net: stages of
    n, n+2, n+2 blocks of two convolutions, plus stem and softmax."""
    return 2 * (3 * n + 4) + 2  # = 6n + 10


def _builder(fn, width_kw=None):
    def build(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32)):
        kwargs = {"input_shape": input_shape, "input_var": input_var, "n_classes": num_classes,
                  "n": depth}
        if width_kw:
            kwargs[width_kw] = width
        return fn(**kwargs)
    build.__doc__ = fn.__doc__
    return build


def _only_width_one(name):
    def check(depth, width):
        if width != 1:
            raise ArchitectureError(f"{name} has no width argument (got width {width}); "
                                    "use the 'wide' type for widened nets")
    return check


register(ModelSpec("normal", _builder(ResNet_FullPreActivation),
                   "pre-activation ResNet (He et al. 2016)", lambda n, k: 6 * n + 2, "6n+2",
                   default_depth=18, check=_only_width_one("normal")))
register(ModelSpec("bottleneck", _builder(ResNet_BottleNeck_FullPreActivation),
                   "pre-activation bottleneck ResNet (He et al. 2016)", lambda n, k: 9 * n + 2,
                   "9n+2", default_depth=18, check=_only_width_one("bottleneck")))
register(ModelSpec("wide", _builder(ResNet_FullPre_Wide, "k"),
                   "wide pre-activation ResNet (Zagoruyko & Komodakis 2016), stages n, n+2, n+2",
                   lambda n, k: wide_depth(n, k), "6n+10", default_depth=2, default_width=4))
