"""Lasagne's ``lasagne.layers.cuda_convnet`` (pylearn2's cuda-convnet
wrappers), without a GPU.

The layers keep their Lasagne interface and checks (square filters and
strides, ``num_filters`` a multiple of 16, ...), so that code and weights
written for them port unchanged, and compute on lasres's ops:

* :class:`Conv2DCCLayer` correlates by default (``flip_filters=False``);
  with ``dimshuffle=False`` its input, output and ``W`` use the c01b axis
  order (channels, rows, columns, batch) and ``W`` has shape
  ``(channels, fh, fw, num_filters)``.
* :class:`MaxPool2DCCLayer` always keeps partial windows
  (``ignore_border=False``) and has no padding.
* :class:`ShuffleBC01ToC01BLayer` / :class:`ShuffleC01BToBC01Layer` (aliases
  ``bc01_to_c01b`` / ``c01b_to_bc01``) convert between the layouts;
  :class:`NINLayer_c01b` is a network-in-network layer on c01b inputs.
"""
import pytensor.tensor as pt

from .. import init, nonlinearities
from ..ops import conv2d, pool2d
from ..utils import as_tuple
from .base import Layer
from .conv import BaseConvLayer
from .pool import pool_output_length

__all__ = ["Conv2DCCLayer", "MaxPool2DCCLayer", "ShuffleBC01ToC01BLayer", "bc01_to_c01b",
           "ShuffleC01BToBC01Layer", "c01b_to_bc01", "NINLayer_c01b"]


class Conv2DCCLayer(BaseConvLayer):
    """2D convolutional layer with the interface of Lasagne's cuda-convnet layer.

    Parameters
    ----------
    incoming, num_filters, filter_size, stride, pad, untie_biases, b, nonlinearity
        As for :class:`lasres.layers.Conv2DLayer`; filters, strides and
        padding must be square, ``num_filters`` a multiple of 16 and the
        number of input channels 1, 2, 3 or a multiple of 4.
    W : initializer, array, shared variable or None
        None: Glorot uniform (in c01b layout when ``dimshuffle=False``).
    dimshuffle : bool (default True)
        False: input, output and ``W`` are in c01b order.
    flip_filters : bool (default False)
        False correlates (cuda-convnet's native operation).
    partial_sum : int or None
        A cuda-convnet memory/speed trade-off; accepted and ignored.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=None, b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, dimshuffle=True, flip_filters=False,
                 partial_sum=1, **kwargs):
        if W is None:
            W = init.GlorotUniform() if dimshuffle else init.GlorotUniform(c01b=True)
        self.dimshuffle = dimshuffle
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=2, **kwargs)
        self.partial_sum = partial_sum
        if self.filter_size[0] != self.filter_size[1]:
            raise RuntimeError(f"Conv2DCCLayer only supports square filters, but "
                               f"filter_size=({self.filter_size[0]}, {self.filter_size[1]})")
        if self.stride[0] != self.stride[1]:
            raise RuntimeError(f"Conv2DCCLayer only supports square strides, but "
                               f"stride=({self.stride[0]}, {self.stride[1]})")
        if self.num_filters % 16 != 0:
            raise RuntimeError(f"Conv2DCCLayer requires num_filters to be a multiple of 16, "
                               f"but num_filters is {num_filters}")
        if not (self.num_input_channels < 4 or self.num_input_channels % 4 == 0):
            raise RuntimeError(f"Conv2DCCLayer requires the number of input channels to be "
                               f"1, 2, 3 or a multiple of 4, but it is "
                               f"{self.num_input_channels}")
        if isinstance(self.pad, tuple) and self.pad[0] != self.pad[1]:
            raise RuntimeError(f"Conv2DCCLayer only supports square padding, but "
                               f"pad=({self.pad[0]}, {self.pad[1]})")
        if not self.dimshuffle and self.untie_biases and self.b is not None:
            del self.params[self.b]
            biases_shape = (num_filters, self.output_shape[1], self.output_shape[2])
            self.b = self.add_param(b, biases_shape, name="b", regularizable=False)

    @property
    def num_input_channels(self):
        return self.input_shape[1] if self.dimshuffle else self.input_shape[0]

    def get_W_shape(self):
        if self.dimshuffle:
            return super().get_W_shape()
        return (self.num_input_channels,) + self.filter_size + (self.num_filters,)

    def get_output_shape_for(self, input_shape):
        if not self.dimshuffle:
            input_shape = (input_shape[3], input_shape[0], input_shape[1], input_shape[2])
        shape = super().get_output_shape_for(input_shape)
        if not self.dimshuffle:
            shape = (shape[1], shape[2], shape[3], shape[0])
        return shape

    def get_output_for(self, input, **kwargs):
        input = pt.as_tensor_variable(input)  # as Lasagne's gpu_contiguous: arrays too
        if self.dimshuffle:
            filters = self.W
        else:
            filters = self.W.dimshuffle(3, 0, 1, 2)      # c01f to fc01
            input = input.dimshuffle(3, 0, 1, 2)          # c01b to bc01
        conved = conv2d(input, filters, stride=self.stride, pad=self.pad,
                        filter_flip=self.flip_filters)
        if self.b is not None:
            if self.untie_biases:
                conved = conved + self.b.dimshuffle("x", 0, 1, 2)
            else:
                conved = conved + self.b.dimshuffle("x", 0, "x", "x")
        conved = self.nonlinearity(conved)
        return conved if self.dimshuffle else conved.dimshuffle(1, 2, 3, 0)


class MaxPool2DCCLayer(Layer):
    """2D max pooling with the interface of Lasagne's cuda-convnet layer:
    square windows and strides, ``stride <= pool_size``, partial windows
    always kept (``ignore_border`` must be False) and no padding.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    pool_size : int or pair of int
    stride : int, pair of int or None
        None means ``pool_size``.
    ignore_border : False
    dimshuffle : bool (default True)
        False: input and output in c01b order.
    """

    def __init__(self, incoming, pool_size, stride=None, ignore_border=False, dimshuffle=True,
                 **kwargs):
        if "pad" in kwargs:
            pad = kwargs.pop("pad")
            if as_tuple(pad, 2) != (0, 0):
                raise NotImplementedError("MaxPool2DCCLayer does not support padding")
        super().__init__(incoming, **kwargs)
        pool_size = as_tuple(pool_size, 2)
        if pool_size[0] != pool_size[1]:
            raise NotImplementedError(f"MaxPool2DCCLayer only supports square pooling "
                                      f"regions, but pool_size=({pool_size[0]}, "
                                      f"{pool_size[1]})")
        self.pool_size = pool_size[0]
        if stride is None:
            self.stride = self.pool_size
        else:
            stride = as_tuple(stride, 2)
            if stride[0] != stride[1]:
                raise NotImplementedError(f"MaxPool2DCCLayer only supports using the same "
                                          f"stride in both directions but "
                                          f"stride=({stride[0]}, {stride[1]})")
            self.stride = stride[0]
        if self.stride > self.pool_size:
            raise NotImplementedError("MaxPool2DCCLayer only supports stride <= pool_size.")
        if ignore_border:
            raise NotImplementedError("MaxPool2DCCLayer does not support ignore_border=True.")
        self.dimshuffle = dimshuffle

    def get_output_shape_for(self, input_shape):
        if self.dimshuffle:
            batch_size, channels = input_shape[:2]
            rows, columns = input_shape[2:4]
        else:
            batch_size, channels = input_shape[3], input_shape[0]
            rows, columns = input_shape[1:3]
        out_rows, out_columns = (pool_output_length(length, self.pool_size, self.stride, 0,
                                                    False) for length in (rows, columns))
        if self.dimshuffle:
            return (batch_size, channels, out_rows, out_columns)
        return (channels, out_rows, out_columns, batch_size)

    def get_output_for(self, input, **kwargs):
        input = pt.as_tensor_variable(input)  # as Lasagne's gpu_contiguous: arrays too
        if not self.dimshuffle:
            input = input.dimshuffle(3, 0, 1, 2)          # c01b to bc01
        pooled = pool2d(input, ws=(self.pool_size,) * 2, stride=(self.stride,) * 2,
                        mode="max", ignore_border=False)
        return pooled if self.dimshuffle else pooled.dimshuffle(1, 2, 3, 0)


class ShuffleBC01ToC01BLayer(Layer):
    """Reorder a 4D input from bc01 (batch first) to c01b (batch last)."""

    def get_output_shape_for(self, input_shape):
        return (input_shape[1], input_shape[2], input_shape[3], input_shape[0])

    def get_output_for(self, input, **kwargs):
        return input.dimshuffle(1, 2, 3, 0)


bc01_to_c01b = ShuffleBC01ToC01BLayer


class ShuffleC01BToBC01Layer(Layer):
    """Reorder a 4D input from c01b (batch last) to bc01 (batch first)."""

    def get_output_shape_for(self, input_shape):
        return (input_shape[3], input_shape[0], input_shape[1], input_shape[2])

    def get_output_for(self, input, **kwargs):
        return input.dimshuffle(3, 0, 1, 2)


c01b_to_bc01 = ShuffleC01BToBC01Layer


class NINLayer_c01b(Layer):
    """Network-in-network layer on c01b inputs: a dense layer applied over
    the channel axis (first) at every position.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Input of shape ``(channels, ..., batch)``.
    num_units : int
    untie_biases : bool
        True: one bias per unit and position, shape ``(num_units, ...)``.
    W : initializer, array or shared variable
        Shape ``(num_units, channels)``.
    b : initializer, array, shared variable or None
    nonlinearity : callable or None
    """

    def __init__(self, incoming, num_units, untie_biases=False, W=init.GlorotUniform(),
                 b=init.Constant(0.0), nonlinearity=nonlinearities.rectify, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        self.num_units = num_units
        self.untie_biases = untie_biases
        num_input_channels = self.input_shape[0]
        self.W = self.add_param(W, (num_units, num_input_channels), name="W")
        if b is None:
            self.b = None
        else:
            biases_shape = ((num_units,) + self.output_shape[1:-1] if untie_biases
                            else (num_units,))
            self.b = self.add_param(b, biases_shape, name="b", regularizable=False)

    def get_output_shape_for(self, input_shape):
        return (self.num_units,) + tuple(input_shape[1:])

    def get_output_for(self, input, **kwargs):
        out = pt.tensordot(self.W, input, axes=[[1], [0]])      # fc * c01b... = f01b...
        if self.b is None:
            activation = out
        elif self.untie_biases:
            activation = out + self.b.dimshuffle(list(range(input.ndim - 1)) + ["x"])
        else:
            activation = out + self.b.dimshuffle([0] + ["x"] * (input.ndim - 1))
        return self.nonlinearity(activation)
