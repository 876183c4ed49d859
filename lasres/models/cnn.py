"""The plain CNN baseline of the ResNet-in-ResNet comparison (Targ et al.
2016; the RiR-Tensorflow seed's ``CNN``).

The paper compares RiR with "a CNN and a ResNet of the same size": the same
layout with the shortcuts removed. With no shortcut on the residual stream
a generalized residual layer is an ordinary convolution over both streams
(its four convolutions are the four blocks of one convolution from 2C to 2C
channels), so the baseline is a single stream of twice the per-stream width,
each layer conv-BN-ReLU:

``cnn D k`` follows :mod:`lasres.models.rir` exactly: D weighted layers (a
3x3 stem, ``D - 2`` conv-BN-ReLU layers, the softmax layer after a global
average pool), 32k, 64k, 128k filters, the same stage split (8 two-layer
"blocks" as 3 + 3 + 2 for D = 18) and the same places where the width
doubles (first layer of a stage's last block) and the resolution halves
(its last layer). ``cnn 18 3`` is the paper's "18-layer + wide" CNN and has
exactly the parameters of ``rir 18 3``.

(The seed's own ``CNN`` class is a four-convolution toy with a 256-unit
tanh layer; it is not reproduced, the paper's baseline is.)
"""
from ..layers import GlobalPoolLayer, InputLayer
from .blocks import conv_bn_relu, softmax_head
from .registry import register_model
from .rir import RIR_FAMILY, rir_family_builder, rir_plan

__all__ = ["Plain_CNN"]

def Plain_CNN(input_shape=(None, 3, 32, 32), input_var=None, n_classes=10, depth=18, width=3,
              block_layers=2):
    """The RiR layout without shortcuts, as one stream of 32k, 64k, 128k filters.

    Parameters
    ----------
    input_shape, input_var, n_classes
        As for :func:`lasres.models.rir.ResNet_in_ResNet`, whose baseline it is.
    depth : int
        Total weighted layers (18: the paper's).
    width : int
        k (3: the paper's "wide", 96/192/384 filters).
    block_layers : int
        Layers per (shortcut-less) block; only changes where the width and
        resolution change, as in RiR.
    """
    l = InputLayer(shape=input_shape, input_var=input_var, name="input")
    l = conv_bn_relu(l, 32 * width, (3, 3), 1, "stem")
    for i, layers in enumerate(rir_plan(depth, width, block_layers), start=1):
        for j, (num_filters, stride) in enumerate(layers, start=1):
            l = conv_bn_relu(l, 2 * num_filters, (3, 3), stride, f"block{i}_layer{j}")
    l = GlobalPoolLayer(l, name="pool")
    return softmax_head(l, n_classes, name="softmax")


cnn = register_model("cnn", "plain CNN baseline of RiR (Targ et al. 2016), no shortcuts",
                     **RIR_FAMILY)(rir_family_builder(Plain_CNN, "cnn"))
