"""Building blocks shared by the model builders.

Every builder of lasres uses the seeds' initialisation -- ``HeNormal(gain='relu')``
for convolutions, ``HeNormal()`` for the softmax layer -- and Lasagne's
cuDNN-style correlation layer (``Conv2DDNNLayer``, ``flip_filters=False``),
in which the published weights were trained.
"""
from ..errors import ArchitectureError
from ..init import HeNormal
from ..layers import batch_norm, DenseLayer
from ..layers.dnn import Conv2DDNNLayer as ConvLayer
from ..nonlinearities import rectify, softmax

__all__ = ["ConvLayer", "he_norm", "conv_bn_relu", "softmax_head", "width_one"]

#: The convolutions' initialisation in every seed (He et al. 2015).
he_norm = HeNormal(gain="relu")


def conv_bn_relu(l, num_filters, filter_size=(3, 3), stride=1, name=None):
    """``batch_norm(Conv(pad='same', W=he_norm, rectify))``: conv (bias removed
    by :func:`~lasres.layers.batch_norm`), BN, ReLU -- in that parameter order."""
    return batch_norm(ConvLayer(l, num_filters=num_filters, filter_size=filter_size,
                                stride=stride, pad="same", W=he_norm, nonlinearity=rectify,
                                name=name))


def softmax_head(l, num_classes, name=None):
    """The classifier every seed ends with: a softmax DenseLayer, ``HeNormal()``."""
    return DenseLayer(l, num_units=num_classes, W=HeNormal(), nonlinearity=softmax, name=name)


def width_one(name, instead="'wide'"):
    """A registry check refusing a width other than 1 for a type without one."""

    def check(depth, width):
        if width != 1:
            raise ArchitectureError(f"{name} has no width argument (got width {width}); "
                                    f"use {instead} for widened nets")
    return check
