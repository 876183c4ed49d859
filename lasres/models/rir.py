"""ResNet in ResNet, RiR (Targ, Almeida & Lyman 2016).

The **generalized residual layer** ("ResNet Init") carries two streams of
equal width: a *residual stream* r, which keeps an identity shortcut, and a
*transient stream* t, which has none. Each layer mixes both streams with
four 3x3 convolutions::

    r' = relu(bn(conv_rr(r) + conv_tr(t) + shortcut(r)))
    t' = relu(bn(conv_rt(r) + conv_tt(t)))

A **RiR block** stacks ``block_layers`` (2) such layers and wraps them in an
outer identity shortcut on the residual stream (added after the last
layer's ReLU, the transient stream passes on as it is). RiR blocks are
stacked in three stages; a stage's last block (except in the last stage)
doubles the width in its first layer and halves the resolution in its last
layer. The network starts with one conv-BN-ReLU per stream (both reading
the image) and ends with the two streams concatenated, a global average
pool and a softmax layer.

``rir D k``: D is the total number of weighted layers, ``D = 2B + 2`` for B
RiR blocks of two layers (the two stem convolutions count as one layer, as
the paper's "18-layer" does, and the softmax layer as one); each stream has
16k, 32k and 64k filters in the three stages, so both streams together have
32k, 64k, 128k. The paper's best CIFAR-10 model, **18-layer + wide RiR**
(5.01% error), is the default ``rir 18 3``: 8 RiR blocks, 3 + 3 + 2 per
stage, 96, 192, 384 filters in all (48, 96, 192 per stream).

Choices the paper leaves open are taken from nutszebra/resnet_in_resnet, a
Chainer implementation that follows the paper's architecture (the seed's own
RiR class is a two-block toy that only runs on 1-channel input):

* blocks are split over the stages as evenly as possible, earlier stages
  first (8 -> 3, 3, 2);
* where the width changes the residual stream's shortcut is zero-padded
  (half of the new channels before, half after) and, where the resolution
  halves, 2x2 average-pooled (option A, as :func:`lasres.models.resnet.
  identity_shortcut`), for the layer shortcuts and the block shortcuts
  alike -- no projections, so RiR has exactly the parameters of the CNN of
  the same size (:mod:`lasres.models.cnn`), as the paper states;
* the convolutions have no bias (a batch normalisation follows each sum);
* the head: that implementation maps the concatenated streams to the
  classes with a 1x1 convolution (+ BN-ReLU) and then pools; here, as in the
  other lasres nets, the global average pool comes first and a softmax
  layer follows (the same linear map, without the BN-ReLU);
* weights ``HeNormal(gain='relu')``, softmax layer ``HeNormal()``.

Option ``block_layers`` (default 2) sets the layers per RiR block
(``D - 2`` must be a multiple of it).
"""
from ..errors import ArchitectureError
from ..layers import (BatchNormLayer, ConcatLayer, ElemwiseSumLayer,
                      GlobalPoolLayer, InputLayer, NonlinearityLayer)
from ..nonlinearities import rectify
from .blocks import ConvLayer, conv_bn_relu, he_norm, softmax_head
from .registry import register_model
from .resnet import identity_shortcut

__all__ = ["ResNet_in_ResNet", "generalized_residual_layer", "rir_block", "rir_layout",
           "rir_plan", "rir_depth", "rir_family_builder", "RIR_FAMILY"]

def rir_layout(depth, block_layers=2):
    """Blocks per stage for a ``depth``-layer net: ``(depth - 2) / block_layers``
    blocks, split over 3 stages as evenly as possible, earlier stages first."""
    if depth < 2 or (depth - 2) % block_layers or (depth - 2) // block_layers < 3:
        raise ArchitectureError(
            f"rir/cnn depth counts all weighted layers: depth - 2 must be a multiple of "
            f"{block_layers} (the layers per block) with at least 3 blocks, one per stage, "
            f"i.e. depth in {', '.join(str(2 + block_layers * b) for b in range(3, 7))}, ... "
            f"(got {depth})")
    blocks = (depth - 2) // block_layers
    base, extra = divmod(blocks, 3)
    return tuple(base + (1 if s < extra else 0) for s in range(3))


def rir_plan(depth, width, block_layers=2):
    """The layers of each block: a list (one per block) of lists of
    ``(filters per stream, stride)``, one pair per layer."""
    widths = (16 * width, 32 * width, 64 * width)
    plan = []
    for stage, blocks in enumerate(rir_layout(depth, block_layers)):
        for b in range(blocks):
            transition = stage < 2 and b == blocks - 1
            filters = widths[stage + 1] if transition else widths[stage]
            layers = [(filters, 1) for _ in range(block_layers)]
            if transition:
                layers[-1] = (filters, 2)
            plan.append(layers)
    return plan


def _conv(l, num_filters, stride, name):
    return ConvLayer(l, num_filters=num_filters, filter_size=(3, 3), stride=stride, pad="same",
                     W=he_norm, b=None, nonlinearity=None, name=name)


def generalized_residual_layer(residual, transient, num_filters, stride=1, shortcut=True,
                               name="layer"):
    """One generalized residual layer ("ResNet Init").

    Parameters
    ----------
    residual, transient : Layer
        The two streams.
    num_filters : int
        Output channels of each stream.
    stride : int
    shortcut : bool
        The identity shortcut of the residual stream (False: a two-stream
        CNN layer).

    Returns
    -------
    (Layer, Layer)
        The new residual and transient streams.
    """
    r_to_r = _conv(residual, num_filters, stride, name + "_r_to_r")
    t_to_r = _conv(transient, num_filters, stride, name + "_t_to_r")
    r_to_t = _conv(residual, num_filters, stride, name + "_r_to_t")
    t_to_t = _conv(transient, num_filters, stride, name + "_t_to_t")
    into_r = [r_to_r, t_to_r]
    if shortcut:
        into_r.append(identity_shortcut(residual, num_filters, stride, name + "_shortcut"))
    r = ElemwiseSumLayer(into_r, name=name + "_residual_sum")
    r = NonlinearityLayer(BatchNormLayer(r, name=name + "_residual_bn"), rectify,
                          name=name + "_residual")
    t = ElemwiseSumLayer([r_to_t, t_to_t], name=name + "_transient_sum")
    t = NonlinearityLayer(BatchNormLayer(t, name=name + "_transient_bn"), rectify,
                          name=name + "_transient")
    return r, t


def rir_block(residual, transient, layers, shortcut=True, name="block"):
    """A RiR block: generalized residual layers (``layers``: a list of
    ``(filters, stride)``) wrapped in an outer shortcut on the residual stream."""
    r, t = residual, transient
    for j, (num_filters, stride) in enumerate(layers, start=1):
        r, t = generalized_residual_layer(r, t, num_filters, stride, shortcut,
                                          name=f"{name}_layer{j}")
    if shortcut:
        total_stride = 1
        for _, stride in layers:
            total_stride *= stride
        r = ElemwiseSumLayer(
            [r, identity_shortcut(residual, layers[-1][0], total_stride, name + "_shortcut")],
            name=name + "_sum")
    return r, t


def ResNet_in_ResNet(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, depth=18,
                     width=3, block_layers=2):
    """RiR of ``depth`` weighted layers and per-stream widths 16k, 32k, 64k.

    Parameters
    ----------
    input_shape : tuple
    input_var : PyTensor variable or None
    n_classes : int
    depth : int
        Total weighted layers, ``2 + block_layers * blocks`` (18: the paper's).
    width : int
        k (3: the paper's "wide", 96/192/384 filters over both streams).
    block_layers : int
        Generalized residual layers per RiR block.
    """
    plan = rir_plan(depth, width, block_layers)
    l_in = InputLayer(shape=input_shape, input_var=input_var, name="input")
    r = conv_bn_relu(l_in, 16 * width, (3, 3), name="stem_residual")
    t = conv_bn_relu(l_in, 16 * width, (3, 3), name="stem_transient")
    for i, layers in enumerate(plan, start=1):
        r, t = rir_block(r, t, layers, name=f"block{i}")
    l = ConcatLayer([r, t], axis=1, name="concat")
    l = GlobalPoolLayer(l, name="pool")
    return softmax_head(l, n_classes, name="softmax")


def rir_depth(depth, width=1):
    """The depth argument is the total: stem + 2 per block + softmax layer."""
    return depth


def check_depth(depth, width):
    """Refuse an RiR or CNN depth too small for three blocks (registry check)."""
    if depth < 5:  # below 3 blocks of 1 layer + stem + softmax for any block size
        rir_layout(depth, 2)  # names the depths of the default two-layer blocks


def rir_family_builder(network_fn, name):
    """The registry's builder of an RiR-family network: ``network_fn`` takes
    the seed's ``n_classes`` / ``depth`` / ``width`` / ``block_layers``; the
    builder takes the registry's ``(depth, width, input_var, num_classes,
    input_shape, block_layers)``."""
    def builder(depth, width, input_var=None, num_classes=10, input_shape=(None, 3, 32, 32),
                block_layers=2):
        return network_fn(input_shape=input_shape, input_var=input_var, n_classes=num_classes,
                          depth=depth, width=width, block_layers=int(block_layers))
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"``{name} D k``: :func:`{network_fn.__name__}`."
    return builder


#: The registry entries RiR and its plain-CNN baseline share.
RIR_FAMILY = dict(total_depth=rir_depth, depth_formula="D = 2B+2", default_depth=18,
                  default_width=3, check=check_depth, options=("block_layers",),
                  channels=32)  # two streams of 16k (RiR), or 2 x 16k filters (its CNN)

rir = register_model("rir", "ResNet in ResNet (Targ et al. 2016), residual + transient streams",
                     **RIR_FAMILY)(rir_family_builder(ResNet_in_ResNet, "rir"))
