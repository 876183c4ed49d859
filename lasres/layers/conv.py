"""Convolutional layers (Lasagne's ``lasagne.layers.conv``)."""
import pytensor.tensor as pt

from .. import init, nonlinearities
from ..ops import conv2d
from ..utils import as_tuple
from .base import Layer

__all__ = ["conv_output_length", "conv_input_length", "BaseConvLayer", "Conv2DLayer"]


def conv_output_length(input_length, filter_size, stride, pad=0):
    """Output length of a convolution along one axis (None if unknown)."""
    if input_length is None:
        return None
    if pad == "valid":
        output_length = input_length - filter_size + 1
    elif pad == "full":
        output_length = input_length + filter_size - 1
    elif pad == "same":
        output_length = input_length
    elif isinstance(pad, int):
        output_length = input_length + 2 * pad - filter_size + 1
    else:
        raise ValueError(f"Invalid pad: {pad}")
    return (output_length + stride - 1) // stride


def conv_input_length(output_length, filter_size, stride, pad=0):
    """Input length of a convolution along one axis given its output length."""
    if output_length is None:
        return None
    if pad == "valid":
        pad = 0
    elif pad == "full":
        pad = filter_size - 1
    elif pad == "same":
        pad = filter_size // 2
    if not isinstance(pad, int):
        raise ValueError(f"Invalid pad: {pad}")
    return (output_length - 1) * stride - 2 * pad + filter_size


class BaseConvLayer(Layer):
    """Convolutional layer base class (any number of spatial dimensions).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Input of shape ``(batch, channels, *spatial)``.
    num_filters : int
    filter_size : int or tuple of int
    stride : int or tuple of int
    pad : int, tuple of int, 'full', 'same' or 'valid'
        Zero padding on each side; 'same' pads ``filter_size // 2``.
    untie_biases : bool
        One bias per output position instead of one per channel.
    W : initializer, array or shared variable
        Filters of shape ``(num_filters, channels, *filter_size)``.
    b : initializer, array, shared variable or None
    nonlinearity : callable or None
    flip_filters : bool
        True: convolution (flip the filters); False: correlation.
    n : int
        Number of spatial dimensions.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=1, pad=0, untie_biases=False,
                 W=init.GlorotUniform(), b=init.Constant(0.0), nonlinearity=nonlinearities.rectify,
                 flip_filters=True, n=None, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        if n is None:
            n = len(self.input_shape) - 2
        elif n != len(self.input_shape) - 2:
            raise ValueError(f"Tried to create a {n}D convolution layer with input shape "
                             f"{self.input_shape}. Expected {n + 2} input dimensions "
                             f"(batchsize, channels, {n} spatial dimensions).")
        self.n = n
        self.num_filters = num_filters
        self.filter_size = as_tuple(filter_size, n, int)
        self.flip_filters = flip_filters
        self.stride = as_tuple(stride, n, int)
        self.untie_biases = untie_biases
        if pad == "same":
            if any(s % 2 == 0 for s in self.filter_size):
                raise NotImplementedError("`same` padding requires odd filter size.")
        if pad == "valid":
            self.pad = as_tuple(0, n)
        elif pad in ("full", "same"):
            self.pad = pad
        else:
            self.pad = as_tuple(pad, n, int)
        self.W = self.add_param(W, self.get_W_shape(), name="W")
        if b is None:
            self.b = None
        else:
            if self.untie_biases:
                biases_shape = (num_filters,) + self.output_shape[2:]
            else:
                biases_shape = (num_filters,)
            self.b = self.add_param(b, biases_shape, name="b", regularizable=False)

    def get_W_shape(self):
        """Shape of the weight tensor W."""
        num_input_channels = self.input_shape[1]
        return (self.num_filters, num_input_channels) + self.filter_size

    def get_output_shape_for(self, input_shape):
        pad = self.pad if isinstance(self.pad, tuple) else (self.pad,) * self.n
        batchsize = input_shape[0]
        return ((batchsize, self.num_filters) +
                tuple(conv_output_length(inp, filt, s, p)
                      for inp, filt, s, p in zip(input_shape[2:], self.filter_size, self.stride, pad)))

    def get_output_for(self, input, **kwargs):
        conved = self.convolve(input, **kwargs)
        if self.b is None:
            activation = conved
        elif self.untie_biases:
            activation = conved + pt.shape_padleft(self.b, 1)
        else:
            activation = conved + self.b.dimshuffle(("x", 0) + ("x",) * self.n)
        return self.nonlinearity(activation)

    def convolve(self, input, **kwargs):
        """The convolution of ``input`` with W, before bias and nonlinearity."""
        raise NotImplementedError


class Conv2DLayer(BaseConvLayer):
    """2D convolutional layer: ``nonlinearity(conv(x, W) + b)``.

    Same arguments as :class:`BaseConvLayer`; ``W`` has shape
    ``(num_filters, channels, fh, fw)``. It convolves (``flip_filters=True``)
    by default, as Lasagne's did; weights trained with cuDNN layers are
    correlation kernels (see :class:`lasres.layers.dnn.Conv2DDNNLayer`).
    A tied bias is added inside the convolution node. ``convolution`` may be
    a function with Theano's ``conv2d`` keyword interface to use instead of
    lasres's op.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=True, convolution=None,
                 **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=2, **kwargs)
        self.convolution = convolution

    def _int_pad(self):
        if self.pad == "same":
            return tuple(f // 2 for f in self.filter_size)
        if self.pad == "full":
            return tuple(f - 1 for f in self.filter_size)
        return self.pad

    def convolve(self, input, bias=None, **kwargs):
        if self.convolution is not None:
            border_mode = "half" if self.pad == "same" else self.pad
            return self.convolution(input, self.W, input_shape=self.input_shape,
                                    filter_shape=self.get_W_shape(), subsample=self.stride,
                                    border_mode=border_mode, filter_flip=self.flip_filters)
        return conv2d(input, self.W, bias=bias, stride=self.stride, pad=self._int_pad(),
                      filter_flip=self.flip_filters)

    def get_output_for(self, input, **kwargs):
        if self.convolution is None and self.b is not None and not self.untie_biases:
            return self.nonlinearity(self.convolve(input, bias=self.b))
        return super().get_output_for(input, **kwargs)
