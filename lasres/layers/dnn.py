"""The cuDNN layers of Lasagne (``lasagne.layers.dnn``), without cuDNN.

Lasagne's ``dnn`` module needed a CUDA GPU; scripts and weights from that era
used its layers. Here they are the ordinary layers with the cuDNN layers'
defaults, so no GPU is needed (on a GPU, the JAX backend runs the
convolutions on cuDNN). ``Conv2DDNNLayer`` correlates (``flip_filters=False``)
by default — the weights trained with it are correlation kernels.
"""
from .. import init, nonlinearities
from ..ops.convnd import conv3d
from .conv import BaseConvLayer, Conv2DLayer
from .normalization import BatchNormLayer, batch_norm
from .pool import Pool2DLayer, Pool3DLayer, SpatialPyramidPoolingLayer

__all__ = ["Conv2DDNNLayer", "Conv3DDNNLayer", "Pool2DDNNLayer", "MaxPool2DDNNLayer",
           "Pool3DDNNLayer", "MaxPool3DDNNLayer", "SpatialPyramidPoolingDNNLayer",
           "BatchNormDNNLayer", "batch_norm_dnn", "dnn_available"]

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


class Conv3DDNNLayer(BaseConvLayer):
    """3D convolution layer with the cuDNN layer's defaults: correlation
    (``flip_filters=False``); ``W`` has shape ``(num_filters, channels, fd,
    fh, fw)``.  Arguments as for :class:`lasres.layers.Conv3DLayer` (no
    ``convolution``)."""

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, num_groups=1,
                 **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, num_groups, n=3, **kwargs)

    def convolve(self, input, **kwargs):
        pad = self.pad
        if pad == "same":
            pad = tuple(s // 2 for s in self.filter_size)
        return self._grouped(lambda x, w: conv3d(x, w, None, (None, None) + self.filter_size,
                                                 border_mode=pad, subsample=self.stride,
                                                 filter_flip=self.flip_filters),
                             input, self.W)


class Pool3DDNNLayer(Pool3DLayer):
    """3D pooling with the cuDNN layer's interface (``ignore_border`` must be
    True).  Arguments as for :class:`lasres.layers.Pool3DLayer`."""

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 mode="max", **kwargs):
        if not ignore_border:
            raise NotImplementedError("Pool3DDNNLayer does not support ignore_border=False.")
        super().__init__(incoming, pool_size, stride, pad, True, mode, **kwargs)


class MaxPool3DDNNLayer(Pool3DDNNLayer):
    """3D max pooling, cuDNN-layer interface."""

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode="max", **kwargs)


class SpatialPyramidPoolingDNNLayer(SpatialPyramidPoolingLayer):
    """Spatial pyramid pooling with the cuDNN layer's interface: the 'fast'
    implementation of :class:`lasres.layers.SpatialPyramidPoolingLayer`
    (window ``ceil(size / n)``, stride ``floor(size / n)`` per level)."""

    def __init__(self, incoming, pool_dims=[4, 2, 1], mode="max", **kwargs):
        super().__init__(incoming, pool_dims=pool_dims, mode=mode, implementation="fast",
                         **kwargs)


BatchNormDNNLayer = BatchNormLayer
batch_norm_dnn = batch_norm
