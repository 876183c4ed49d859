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
from collections import namedtuple

from ..layers import (BatchNormLayer, ElemwiseSumLayer, GlobalPoolLayer, InputLayer,
                      NonlinearityLayer)
from ..nonlinearities import rectify
from .blocks import ConvLayer, conv_bn_relu, he_norm, softmax_head, width_one
from .registry import register_model, total_depth_hint

__all__ = ["ResNet_FullPreActivation", "ResNet_BottleNeck_FullPreActivation",
           "ResNet_FullPre_Wide", "Plan", "plan", "preact_resnet"]

#: One of the seed's families: output widths and blocks of the three stages,
#: the block kind, and whether the very first block projects its shortcut.
Plan = namedtuple("Plan", "widths blocks block first_projection")


def plan(type, n, k=1):
    """The seed's table for ``type`` in ('normal', 'bottleneck', 'wide').

    ==========  ===================  =============  ==========  ================
    type        widths (outputs)     blocks         block       first projection
    ==========  ===================  =============  ==========  ================
    normal      16, 32, 64           n, n, n        basic       no
    bottleneck  64, 128, 256         n, n, n        bottleneck  yes
    wide        16k, 32k, 64k        n, n+2, n+2    basic       yes
    ==========  ===================  =============  ==========  ================
    """
    if type == "normal":
        return Plan((16, 32, 64), (n, n, n), "basic", False)
    if type == "bottleneck":
        return Plan((64, 128, 256), (n, n, n), "bottleneck", True)
    if type == "wide":
        return Plan((16 * k, 32 * k, 64 * k), (n, n + 2, n + 2), "basic", True)
    raise ValueError(f"no pre-activation plan for {type!r}")


def _pre_activation(l, first):
    """BN -> ReLU before a block (none for the very first block)."""
    if first:
        return l
    return NonlinearityLayer(BatchNormLayer(l), rectify)


def _conv(l, num_filters, filter_size):
    """A block's last convolution: no nonlinearity, bias kept."""
    return ConvLayer(l, num_filters=num_filters, filter_size=filter_size, stride=(1, 1),
                     nonlinearity=None, pad="same", W=he_norm)


def _projection(l, num_filters, stride):
    """Bias-free 1x1 projection shortcut (Lasagne's default GlorotUniform init)."""
    return ConvLayer(l, num_filters=num_filters, filter_size=(1, 1), stride=stride,
                     nonlinearity=None, pad="same", b=None)


def _residual(l, width, stride, first, project, kind):
    """One pre-activation block; the shortcut leaves from the block's input
    or, when projected, from its pre-activated input."""
    pre = _pre_activation(l, first)
    if kind == "bottleneck":
        h = conv_bn_relu(pre, width // 4, (1, 1))
        h = conv_bn_relu(h, width // 4, (3, 3), stride)
        h = _conv(h, width, (1, 1))
    else:
        h = conv_bn_relu(pre, width, (3, 3), stride)
        h = _conv(h, width, (3, 3))
    shortcut = _projection(pre, width, stride) if project else l
    return ElemwiseSumLayer([h, shortcut])


def preact_resnet(p, input_shape=(None, 3, 32, 32), input_var=None, n_classes=10):
    """Stack a :class:`Plan`: stem (conv-BN-ReLU, 16 filters), the three
    stages (the first block of stages 2 and 3 strides by 2 and projects),
    BN-ReLU, global pooling, softmax."""
    l = conv_bn_relu(InputLayer(shape=input_shape, input_var=input_var), 16, (3, 3))
    for stage, (width, blocks) in enumerate(zip(p.widths, p.blocks)):
        for i in range(blocks):
            first = stage == 0 and i == 0
            stride = 2 if stage > 0 and i == 0 else 1
            project = stride == 2 or (first and p.first_projection)
            l = _residual(l, width, (stride, stride), first, project, p.block)
    l = NonlinearityLayer(BatchNormLayer(l), rectify)
    return softmax_head(GlobalPoolLayer(l), n_classes)


def ResNet_FullPreActivation(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, n=18):
    """Pre-activation ResNet of 6n+2 layers (He et al. 2016, 'Identity
    Mappings'); n=18 is ResNet-110. Stages of n two-conv blocks at 16, 32,
    64 filters on 32, 16, 8 pixels."""
    return preact_resnet(plan("normal", n), input_shape, input_var, n_classes)


def ResNet_BottleNeck_FullPreActivation(input_shape=(None, 3, 32, 32), input_var=None,
                                        n_classes=10, n=18):
    """Pre-activation bottleneck ResNet of 9n+2 layers; n=18 is ResNet-164.
    Blocks 1x1 -> 3x3 -> 1x1 with outputs of 64, 128, 256 channels."""
    return preact_resnet(plan("bottleneck", n), input_shape, input_var, n_classes)


def ResNet_FullPre_Wide(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, n=6, k=4):
    """Wide pre-activation ResNet (Zagoruyko & Komodakis 2016) as the Lasagne
    seed built it: widths 16k, 32k, 64k; stages of n, n+2 and n+2 blocks."""
    return preact_resnet(plan("wide", n, k), input_shape, input_var, n_classes)


def wide_depth(n, k=1):
    """Convolutions + the output layer of the seed's wide net: stages of
    n, n+2, n+2 blocks of two convolutions, plus stem and softmax."""
    return 2 * (3 * n + 4) + 2  # = 6n + 10


def _wide_hint(depth, width):
    if depth < 10 or (depth - 4) % 6:
        return None
    n, k = (depth - 4) // 6, width or 4
    return (f"note: depth is the per-stage block multiplier n; WRN-{depth}-{k} has "
            f"{n} blocks per stage. This seed's wide type has n, n+2, n+2 blocks per "
            f"stage, so 'wide {n} {k}' builds {n}, {n + 2}, {n + 2} blocks (the seed's "
            f"original is 'wide 2 4'); 'wide {depth} {k}' would have "
            f"{wide_depth(depth, k)} layers")


def _normal_depth(n, k=1):
    return 6 * n + 2


def _bottleneck_depth(n, k=1):
    return 9 * n + 2


@register_model("normal", "pre-activation ResNet (He et al. 2016)", _normal_depth, "6n+2",
                default_depth=18, check=width_one("normal"),
                weights={(18, 1): "resnet110_fullpreactivation_638.pklz"},
                hint=total_depth_hint("normal", "6n+2", _normal_depth, 20, "ResNet"))
def normal(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32)):
    """``normal n``: :func:`ResNet_FullPreActivation`."""
    return preact_resnet(plan("normal", depth), input_shape, input_var, num_classes)


@register_model("bottleneck", "pre-activation bottleneck ResNet (He et al. 2016)",
                _bottleneck_depth, "9n+2", default_depth=18, check=width_one("bottleneck"),
                weights={(18, 1): "resnet164_fullpreactivation.pklz"},
                hint=total_depth_hint("bottleneck", "9n+2", _bottleneck_depth, 29, "ResNet"))
def bottleneck(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32)):
    """``bottleneck n``: :func:`ResNet_BottleNeck_FullPreActivation`."""
    return preact_resnet(plan("bottleneck", depth), input_shape, input_var, num_classes)


@register_model("wide",
                "wide pre-activation ResNet (Zagoruyko & Komodakis 2016), stages n, n+2, n+2",
                wide_depth, "6n+10", default_depth=2, default_width=4,
                weights={(2, 4): "wide_resnet_n2_k4.pklz"}, hint=_wide_hint)
def wide(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32)):
    """``wide n k``: :func:`ResNet_FullPre_Wide`."""
    return preact_resnet(plan("wide", depth, width), input_shape, input_var, num_classes)
