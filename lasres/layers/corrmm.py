"""Lasagne's ``lasagne.layers.corrmm`` (the GpuCorrMM layer), without a GPU.

:class:`Conv2DMMLayer` is a 2D convolution layer that correlates by default
(``flip_filters=False``), as its GPU original did; it runs on lasres's
convolution op.
"""
from .. import init, nonlinearities
from ..ops import conv2d
from .conv import BaseConvLayer

__all__ = ["Conv2DMMLayer"]


class Conv2DMMLayer(BaseConvLayer):
    """2D convolutional layer with the interface of Lasagne's GpuCorrMM layer.

    Arguments as for :class:`lasres.layers.Conv2DLayer` (no ``convolution``);
    ``flip_filters`` defaults to False (correlation): set it to True to use
    weights learnt with a :class:`lasres.layers.Conv2DLayer`.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=2, **kwargs)

    def convolve(self, input, **kwargs):
        return self._grouped(lambda x, w: conv2d(x, w, stride=self.stride, pad=self.pad,
                                                 filter_flip=self.flip_filters), input, self.W)
