"""Pooling layers (Lasagne's ``lasagne.layers.pool``)."""
import pytensor.tensor as pt

from ..ops import pool2d
from ..utils import as_tuple
from .base import Layer

__all__ = ["pool_output_length", "Pool2DLayer", "MaxPool2DLayer", "GlobalPoolLayer"]


def pool_output_length(input_length, pool_size, stride, pad, ignore_border):
    """Output length of a pooling along one axis (None if unknown)."""
    if input_length is None or pool_size is None:
        return None
    if ignore_border:
        output_length = input_length + 2 * pad - pool_size + 1
        output_length = (output_length + stride - 1) // stride
    else:
        assert pad == 0
        if stride >= pool_size:
            output_length = (input_length + stride - 1) // stride
        else:
            output_length = max(0, (input_length - pool_size + stride - 1) // stride) + 1
    return output_length


class Pool2DLayer(Layer):
    """2D pooling over the last two axes.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    pool_size : int or pair of int
    stride : int, pair of int or None
        None means ``pool_size`` (non-overlapping).
    pad : int or pair of int
    ignore_border : bool
        False keeps partial windows at the end (pad must be 0).
    mode : {'max', 'average_inc_pad', 'average_exc_pad', 'sum'}
    """

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border=True,
                 mode="max", **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_size = as_tuple(pool_size, 2)
        if len(self.input_shape) != 4:
            raise ValueError(f"Tried to create a 2D pooling layer with input shape "
                             f"{self.input_shape}. Expected 4 input dimensions "
                             f"(batchsize, channels, 2 spatial dimensions).")
        self.stride = self.pool_size if stride is None else as_tuple(stride, 2)
        self.pad = as_tuple(pad, 2)
        self.ignore_border = ignore_border
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        for i in (0, 1):
            output_shape[2 + i] = pool_output_length(input_shape[2 + i], self.pool_size[i],
                                                     self.stride[i], self.pad[i],
                                                     self.ignore_border)
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        return pool2d(input, ws=self.pool_size, stride=self.stride, pad=self.pad,
                      mode=self.mode, ignore_border=self.ignore_border)


class MaxPool2DLayer(Pool2DLayer):
    """2D max pooling."""

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode="max", **kwargs)


class GlobalPoolLayer(Layer):
    """Pool over all axes after the second: ``pool_function(x, axis=2)`` of
    the input flattened to 3 dimensions (mean by default)."""

    def __init__(self, incoming, pool_function=pt.mean, **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_function = pool_function

    def get_output_shape_for(self, input_shape):
        return input_shape[:2]

    def get_output_for(self, input, **kwargs):
        if self.pool_function in (pt.mean, pt.max, pt.sum, pt.min) and input.ndim > 2:
            # the same reduction without the reshape (whose gradient makes
            # PyTensor build a symbolic shape graph through the whole net)
            return self.pool_function(input, axis=tuple(range(2, input.ndim)))
        return self.pool_function(input.flatten(3), axis=2)
