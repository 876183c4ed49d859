"""The cuDNN layers of Lasagne (``lasagne.layers.dnn``), without cuDNN.

Lasagne's ``dnn`` module needed a CUDA GPU; scripts and weights from that era
used its layers. Here they are the ordinary layers with the cuDNN layers'
defaults, so no GPU is needed (on a GPU, the JAX backend runs the
convolutions on cuDNN). ``Conv2DDNNLayer`` correlates (``flip_filters=False``)
by default — the weights trained with it are correlation kernels.
"""
from .. import init, nonlinearities
from .conv import Conv2DLayer
from .normalization import BatchNormLayer, batch_norm
from .pool import Pool2DLayer

__all__ = ["Conv2DDNNLayer", "Pool2DDNNLayer", "MaxPool2DDNNLayer", "BatchNormDNNLayer",
           "batch_norm_dnn", "dnn_available"]

dnn_available = True


class Conv2DDNNLayer(Conv2DLayer):
    """:class:`Conv2DLayer` with ``flip_filters=False`` by default (correlation)."""

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, **kwargs)


class Pool2DDNNLayer(Pool2DLayer):
    """:class:`Pool2DLayer` (the cuDNN version always ignored the border)."""

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), mode="max", **kwargs):
        kwargs.pop("ignore_border", None)
        super().__init__(incoming, pool_size, stride, pad, ignore_border=True, mode=mode, **kwargs)


class MaxPool2DDNNLayer(Pool2DDNNLayer):
    """Max pooling, cuDNN-layer interface."""

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), **kwargs):
        super().__init__(incoming, pool_size, stride, pad, mode="max", **kwargs)


BatchNormDNNLayer = BatchNormLayer
batch_norm_dnn = batch_norm
