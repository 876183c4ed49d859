"""Convolutional layers (Lasagne's ``lasagne.layers.conv``)."""
import pytensor.tensor as pt

import numpy as np

from .. import init, nonlinearities
from ..ops import conv2d
from ..ops.conv import Conv2dGradInputs, Conv2dGradWeights
from ..ops.convnd import conv3d, ConvNdGradInputs
from ..ops import shape
from ..theano_extensions import conv as _conv1d
from ..utils import as_tuple
from .base import Layer

__all__ = ["conv_output_length", "conv_input_length", "BaseConvLayer", "Conv1DLayer",
           "Conv2DLayer", "Conv3DLayer", "TransposedConv2DLayer", "Deconv2DLayer",
           "DilatedConv2DLayer", "TransposedConv3DLayer", "Deconv3DLayer"]

_int_types = (int, np.integer)


def conv_output_length(input_length, filter_size, stride, pad=0):
    """Output length of a convolution along one axis (None if unknown).

    Lasagne's function: ``pad`` is an int or ``'valid'``, ``'full'`` or
    ``'same'``; the arithmetic is the ops' one formula
    (:func:`lasres.ops.shape.conv_output_length`)."""
    if input_length is None:
        return None
    if pad == "same":
        return (input_length + stride - 1) // stride
    if pad == "valid":
        pad = 0
    elif pad == "full":
        pad = filter_size - 1
    elif not isinstance(pad, int):
        raise ValueError(f"Invalid pad: {pad}")
    return shape.conv_output_length(input_length, filter_size, stride, pad)


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
    num_groups : int
        Split the input channels and the filters into this many groups, each
        group of filters seeing its group of channels only (grouped
        convolution); must divide both counts.
    n : int
        Number of spatial dimensions.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=1, pad=0, untie_biases=False,
                 W=init.GlorotUniform(), b=init.Constant(0.0), nonlinearity=nonlinearities.rectify,
                 flip_filters=True, num_groups=1, n=None, **kwargs):
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
        self.filter_size = as_tuple(filter_size, n, _int_types)
        self.flip_filters = flip_filters
        self.stride = as_tuple(stride, n, _int_types)
        self.untie_biases = untie_biases
        if pad == "same":
            if any(s % 2 == 0 for s in self.filter_size):
                raise NotImplementedError("`same` padding requires odd filter size.")
        if pad == "valid":
            self.pad = as_tuple(0, n)
        elif pad in ("full", "same"):
            self.pad = pad
        else:
            self.pad = as_tuple(pad, n, _int_types)
        if (num_groups <= 0 or self.num_filters % num_groups != 0 or
                self.input_shape[1] % num_groups != 0):
            raise ValueError(f"num_groups (here: {num_groups}) must be positive and evenly "
                             f"divide the number of input and output channels (here: "
                             f"{self.input_shape[1]} and {self.num_filters})")
        self.num_groups = num_groups
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
        num_input_channels = self.input_shape[1] // self.num_groups
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
        raise NotImplementedError("BaseConvLayer does not implement the convolve() method. "
                                  "You will want to use a subclass such as Conv2DLayer.")

    def _grouped(self, conv, input, W):
        """``conv(input, W)`` for each group of channels, concatenated."""
        if self.num_groups == 1:
            return conv(input, W)
        cin = self.get_W_shape()[1]
        fout = self.num_filters // self.num_groups
        return pt.concatenate([conv(input[:, g * cin:(g + 1) * cin], W[g * fout:(g + 1) * fout])
                               for g in range(self.num_groups)], axis=1)

    def _border_mode(self):
        return "half" if self.pad == "same" else self.pad


class Conv1DLayer(BaseConvLayer):
    """1D convolutional layer: ``nonlinearity(conv(x, W) + b)`` over inputs
    of shape ``(batch, channels, length)``.

    Same arguments as :class:`BaseConvLayer` (``W`` has shape
    ``(num_filters, channels, filter_length)``), plus ``convolution``: a
    function with the interface of :mod:`lasres.theano_extensions.conv`
    (default :func:`~lasres.theano_extensions.conv.conv1d_mc0`, a 2D
    convolution with a unit axis, as in Lasagne).
    """

    def __init__(self, incoming, num_filters, filter_size, stride=1, pad=0, untie_biases=False,
                 W=init.GlorotUniform(), b=init.Constant(0.0), nonlinearity=nonlinearities.rectify,
                 flip_filters=True, convolution=_conv1d.conv1d_mc0, **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=1, **kwargs)
        self.convolution = convolution

    def convolve(self, input, **kwargs):
        extra = {"num_groups": self.num_groups} if self.num_groups > 1 else {}
        return self.convolution(input, self.W, self.input_shape, self.get_W_shape(),
                                subsample=self.stride, border_mode=self._border_mode(),
                                filter_flip=self.flip_filters, **extra)


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

    def explicit_pad(self):
        """The padding as one int per spatial axis ('same' and 'full'
        resolved as Lasagne's convolution applies them)."""
        if self.pad == "same":
            return tuple(f // 2 for f in self.filter_size)
        if self.pad == "full":
            return tuple(f - 1 for f in self.filter_size)
        return self.pad

    def convolve(self, input, bias=None, **kwargs):
        if self.convolution is not None:
            extra = {"num_groups": self.num_groups} if self.num_groups > 1 else {}
            return self.convolution(input, self.W, input_shape=self.input_shape,
                                    filter_shape=self.get_W_shape(), subsample=self.stride,
                                    border_mode=self._border_mode(),
                                    filter_flip=self.flip_filters, **extra)
        if self.num_groups > 1:
            return self._grouped(lambda x, w: conv2d(x, w, stride=self.stride,
                                                     pad=self.explicit_pad(),
                                                     filter_flip=self.flip_filters),
                                 input, self.W)
        return conv2d(input, self.W, bias=bias, stride=self.stride, pad=self.explicit_pad(),
                      filter_flip=self.flip_filters)

    def get_output_for(self, input, **kwargs):
        if (self.convolution is None and self.b is not None and not self.untie_biases
                and self.num_groups == 1):
            return self.nonlinearity(self.convolve(input, bias=self.b))
        return super().get_output_for(input, **kwargs)


class Conv3DLayer(BaseConvLayer):
    """3D convolutional layer over inputs of shape
    ``(batch, channels, depth, rows, columns)``.

    Same arguments as :class:`BaseConvLayer` (``W`` has shape
    ``(num_filters, channels, fd, fh, fw)``); ``convolution`` defaults to
    :func:`lasres.ops.convnd.conv3d` (Theano's ``conv3d`` interface).
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=True, convolution=None,
                 **kwargs):
        super().__init__(incoming, num_filters, filter_size, stride, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=3, **kwargs)
        self.convolution = conv3d if convolution is None else convolution

    def convolve(self, input, **kwargs):
        def conv(x, w, **extra):
            return self.convolution(x, w, self.input_shape, self.get_W_shape(),
                                    subsample=self.stride, border_mode=self._border_mode(),
                                    filter_flip=self.flip_filters, **extra)
        if self.num_groups > 1 and self.convolution is conv3d:
            return self._grouped(conv, input, self.W)
        extra = {"num_groups": self.num_groups} if self.num_groups > 1 else {}
        return conv(input, self.W, **extra)


def _shape_vector(size):
    """An int64 vector from a tuple of ints / symbolic scalars, or a vector."""
    if isinstance(size, pt.Variable):
        return pt.cast(size, "int64")
    if all(isinstance(s, _int_types) for s in size):
        return pt.constant(np.asarray(size, dtype="int64"))
    return pt.stack([pt.cast(s, "int64") for s in size])


class _TransposedConvMixin:
    """Shared code of the transposed convolution layers (Lasagne's
    ``TransposedConv{2,3}DLayer``): the layer computes the gradient of a
    forward convolution with respect to its input."""

    def _init_output_size(self, output_size, n):
        if not isinstance(output_size, pt.Variable) and output_size is not None:
            output_size = as_tuple(output_size, n, _int_types)
        self.output_size = output_size

    def get_W_shape(self):
        num_input_channels = self.input_shape[1]
        # first two sizes are swapped compared to a forward convolution
        return (num_input_channels, self.num_filters) + self.filter_size

    def get_output_shape_for(self, input_shape):
        if self.output_size is not None:
            size = self.output_size
            if isinstance(self.output_size, pt.Variable):
                size = (None,) * self.n
            return (input_shape[0], self.num_filters) + tuple(size)
        # called from the constructor, crop is still named pad
        crop = getattr(self, "crop", getattr(self, "pad", None))
        crop = crop if isinstance(crop, tuple) else (crop,) * self.n
        return ((input_shape[0], self.num_filters) +
                tuple(conv_input_length(i, f, s, p)
                      for i, f, s, p in zip(input_shape[2:], self.filter_size, self.stride,
                                            crop)))

    def _output_size_vector(self, input):
        output_size = self.output_shape[2:]
        if isinstance(self.output_size, pt.Variable):
            output_size = self.output_size
        elif any(s is None for s in output_size):
            output_size = self.get_output_shape_for(input.shape)[2:]
        return _shape_vector(output_size)


class TransposedConv2DLayer(_TransposedConvMixin, BaseConvLayer):
    """2D transposed convolution layer (also called fractionally-strided
    convolution or deconvolution): the gradient of a 2D convolution with
    respect to its input, computed with
    :class:`lasres.ops.conv.Conv2dGradInputs`.

    Parameters
    ----------
    incoming, num_filters, filter_size, stride, untie_biases, b, nonlinearity
        As for :class:`Conv2DLayer`.
    crop : int, tuple of int, 'full', 'same' or 'valid'
        The padding of the forward convolution this layer transposes, i.e.
        how much to crop from the output on each side: 'full' crops
        ``filter_size - 1``, 'same' ``filter_size // 2``.
    W : initializer, array or shared variable
        Shape ``(num_input_channels, num_filters, fh, fw)`` -- the layout of
        the forward convolution's filters.
    flip_filters : bool (default False)
        False: the forward convolution is a correlation, so the transposed
        one convolves; True: the opposite (as in Lasagne).
    output_size : int, tuple of int, symbolic vector or None
        The output size when several fit (strides above 1); None takes the
        smallest, ``(in - 1) * stride - 2 * crop + filter_size``.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1), crop=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, output_size=None,
                 **kwargs):
        self._init_output_size(output_size, 2)
        super().__init__(incoming, num_filters, filter_size, stride, crop, untie_biases, W, b,
                         nonlinearity, flip_filters, n=2, **kwargs)
        self.crop = self.pad
        del self.pad

    def convolve(self, input, **kwargs):
        op = Conv2dGradInputs(stride=self.stride, pad=self.crop,
                              filter_flip=not self.flip_filters)
        return op(input, self.W, self._output_size_vector(input))


Deconv2DLayer = TransposedConv2DLayer


class TransposedConv3DLayer(_TransposedConvMixin, BaseConvLayer):
    """3D transposed convolution layer: the gradient of a 3D convolution with
    respect to its input (:class:`lasres.ops.convnd.ConvNdGradInputs`).

    Arguments as for :class:`TransposedConv2DLayer`, with three spatial
    dimensions; ``W`` has shape ``(num_input_channels, num_filters, fd, fh, fw)``.
    """

    def __init__(self, incoming, num_filters, filter_size, stride=(1, 1, 1), crop=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, output_size=None,
                 **kwargs):
        self._init_output_size(output_size, 3)
        BaseConvLayer.__init__(self, incoming, num_filters, filter_size, stride, crop,
                               untie_biases, W, b, nonlinearity, flip_filters, n=3, **kwargs)
        self.crop = self.pad
        del self.pad

    def convolve(self, input, **kwargs):
        crop = self.crop
        if crop == "same":
            crop = tuple(f // 2 for f in self.filter_size)
        elif crop == "full":
            crop = tuple(f - 1 for f in self.filter_size)
        op = ConvNdGradInputs(3, stride=self.stride, pad=crop,
                              filter_flip=not self.flip_filters)
        return op(input, self.W, self._output_size_vector(input))


Deconv3DLayer = TransposedConv3DLayer


class DilatedConv2DLayer(BaseConvLayer):
    """2D dilated convolution layer (atrous convolution): a correlation with
    filters whose taps are ``dilation`` apart, computed, as in Lasagne, as the
    gradient of a strided convolution with respect to its filters
    (:class:`lasres.ops.conv.Conv2dGradWeights`).

    Parameters
    ----------
    incoming, num_filters, filter_size, untie_biases, b, nonlinearity
        As for :class:`Conv2DLayer`.
    dilation : int or pair of int
        Spacing of the filter taps (1: a plain convolution).
    pad : 0, (0, 0) or 'valid'
        Only valid convolutions are supported (add a PadLayer for padding).
    W : initializer, array or shared variable
        Shape ``(num_input_channels, num_filters, fh, fw)`` (first two axes
        swapped compared to :class:`Conv2DLayer`).
    flip_filters : False
        Only correlation is supported.
    """

    def __init__(self, incoming, num_filters, filter_size, dilation=(1, 1), pad=0,
                 untie_biases=False, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, flip_filters=False, **kwargs):
        self.dilation = as_tuple(dilation, 2, _int_types)
        super().__init__(incoming, num_filters, filter_size, 1, pad, untie_biases, W, b,
                         nonlinearity, flip_filters, n=2, **kwargs)
        del self.stride
        if self.pad != (0, 0):
            raise NotImplementedError(
                f"DilatedConv2DLayer requires pad=0 / (0,0) / 'valid', but got {pad!r}. "
                "For a padded dilated convolution, add a PadLayer.")
        if self.flip_filters:
            raise NotImplementedError("DilatedConv2DLayer requires flip_filters=False.")

    def get_W_shape(self):
        num_input_channels = self.input_shape[1]
        return (num_input_channels, self.num_filters) + self.filter_size

    def get_output_shape_for(self, input_shape):
        return ((input_shape[0], self.num_filters) +
                tuple(conv_output_length(i, (f - 1) * d + 1, 1, 0)
                      for i, f, d in zip(input_shape[2:], self.filter_size, self.dilation)))

    def convolve(self, input, **kwargs):
        output_size = self.output_shape[2:]
        if any(s is None for s in output_size):
            output_size = self.get_output_shape_for(input.shape)[2:]
        op = Conv2dGradWeights(stride=self.dilation, pad=(0, 0), filter_flip=False)
        # batch and channels swap roles; the filters act as output gradient
        conved = op(input.transpose(1, 0, 2, 3), self.W, _shape_vector(output_size))
        return conved.transpose(1, 0, 2, 3)
