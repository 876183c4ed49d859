"""Pooling layers (Lasagne's ``lasagne.layers.pool``)."""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from ..ops import pool2d
from ..ops.poolnd import pool1d, pool3d
from ..ops import shape
from ..utils import as_tuple
from .base import Layer

__all__ = ["pool_output_length", "Pool1DLayer", "MaxPool1DLayer", "Pool2DLayer",
           "MaxPool2DLayer", "Pool3DLayer", "MaxPool3DLayer", "Upscale1DLayer",
           "Upscale2DLayer", "Upscale3DLayer", "FeaturePoolLayer", "FeatureWTALayer",
           "GlobalPoolLayer", "SpatialPyramidPoolingLayer"]


def pool_output_length(input_length, pool_size, stride, pad, ignore_border):
    """Output length of a pooling along one axis (None if unknown): Theano's
    rule, the ops' one formula (:func:`lasres.ops.shape.pool_output_length`)."""
    if input_length is None or pool_size is None:
        return None
    if not ignore_border:
        assert pad == 0
    return shape.pool_output_length(input_length, pool_size, stride, pad, ignore_border)


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


class _PoolNDLayer(Layer):
    """Pooling over the ``n`` trailing axes (shared by the 1D and 3D layers)."""

    n = None

    def __init__(self, incoming, pool_size, stride=None, pad=0, ignore_border=True,
                 mode="max", **kwargs):
        super().__init__(incoming, **kwargs)
        n = self.n
        if len(self.input_shape) != n + 2:
            raise ValueError(f"Tried to create a {n}D pooling layer with input shape "
                             f"{self.input_shape}. Expected {n + 2} input dimensions "
                             f"(batchsize, channels, {n} spatial dimensions).")
        self.pool_size = as_tuple(pool_size, n)
        self.stride = self.pool_size if stride is None else as_tuple(stride, n)
        self.pad = as_tuple(pad, n)
        self.ignore_border = ignore_border
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        for i in range(self.n):
            output_shape[2 + i] = pool_output_length(input_shape[2 + i], self.pool_size[i],
                                                     self.stride[i], self.pad[i],
                                                     self.ignore_border)
        return tuple(output_shape)


class Pool1DLayer(_PoolNDLayer):
    """1D pooling over the trailing axis of a 3D input.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    pool_size : int or 1-tuple of int
    stride : int, 1-tuple of int or None
        None means ``pool_size``.
    pad : int or 1-tuple of int
    ignore_border : bool
        False keeps a partial window at the end (pad must be 0).
    mode : {'max', 'average_inc_pad', 'average_exc_pad', 'sum'}
    """

    n = 1

    def get_output_for(self, input, **kwargs):
        return pool1d(input, ws=self.pool_size, stride=self.stride, pad=self.pad,
                      mode=self.mode, ignore_border=self.ignore_border)


class MaxPool1DLayer(Pool1DLayer):
    """1D max pooling."""

    def __init__(self, incoming, pool_size, stride=None, pad=0, ignore_border=True, **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode="max", **kwargs)


class Pool3DLayer(_PoolNDLayer):
    """3D pooling over the three trailing axes of a 5D input
    (:func:`lasres.ops.poolnd.pool3d`).

    Arguments as for :class:`Pool2DLayer`, with triples.
    """

    n = 3

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 mode="max", **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode, **kwargs)

    def get_output_for(self, input, **kwargs):
        return pool3d(input, ws=self.pool_size, stride=self.stride, pad=self.pad,
                      mode=self.mode, ignore_border=self.ignore_border)


class MaxPool3DLayer(Pool3DLayer):
    """3D max pooling."""

    def __init__(self, incoming, pool_size, stride=None, pad=(0, 0, 0), ignore_border=True,
                 **kwargs):
        super().__init__(incoming, pool_size, stride, pad, ignore_border, mode="max", **kwargs)


class _UpscaleLayer(Layer):
    """Upscaling of the ``n`` trailing axes by integer factors."""

    n = None

    def __init__(self, incoming, scale_factor, mode="repeat", **kwargs):
        super().__init__(incoming, **kwargs)
        self.scale_factor = as_tuple(scale_factor, self.n)
        if any(f < 1 for f in self.scale_factor):
            raise ValueError(f"Scale factor must be >= 1, not {self.scale_factor}")
        if mode not in {"repeat", "dilate"}:
            raise ValueError(f"Mode must be either 'repeat' or 'dilate', not {mode}")
        self.mode = mode

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        for i, f in enumerate(self.scale_factor):
            if output_shape[2 + i] is not None:
                output_shape[2 + i] *= f
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        upscaled = input
        if self.mode == "repeat":
            for axis in reversed(range(self.n)):
                if self.scale_factor[axis] > 1:
                    upscaled = pt.repeat(upscaled, self.scale_factor[axis], axis=2 + axis)
        elif any(f > 1 for f in self.scale_factor):
            output_shape = self.get_output_shape_for(input.shape)
            upscaled = pt.zeros(output_shape, dtype=input.dtype)
            index = (slice(None), slice(None)) + tuple(slice(None, None, f)
                                                       for f in self.scale_factor)
            upscaled = pt.set_subtensor(upscaled[index], input)
        return upscaled


class Upscale1DLayer(_UpscaleLayer):
    """1D upscaling of the trailing axis of a 3D input.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    scale_factor : int or 1-tuple of int
    mode : {'repeat', 'dilate'}
        'repeat' repeats each element; 'dilate' puts it first in its block
        and leaves zeros in between.
    """

    n = 1


class Upscale2DLayer(_UpscaleLayer):
    """2D upscaling of the two trailing axes of a 4D input (arguments as for
    :class:`Upscale1DLayer`, ``scale_factor`` an int or a pair). 'dilate'
    followed by a convolution is a transposed convolution
    (:class:`TransposedConv2DLayer`)."""

    n = 2


class Upscale3DLayer(_UpscaleLayer):
    """3D upscaling of the three trailing axes of a 5D input (arguments as
    for :class:`Upscale1DLayer`, ``scale_factor`` an int or a triple)."""

    n = 3


class FeaturePoolLayer(Layer):
    """Pools groups of ``pool_size`` consecutive features along ``axis`` with
    ``pool_function`` (max by default: maxout).

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    pool_size : int
        Features per group; must divide the size of ``axis``.
    axis : int
    pool_function : callable
        A reduction taking ``axis=``.
    """

    def __init__(self, incoming, pool_size, axis=1, pool_function=pt.max, **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_size = pool_size
        self.axis = axis
        self.pool_function = pool_function
        num_feature_maps = self.input_shape[self.axis]
        if num_feature_maps % self.pool_size != 0:
            raise ValueError(f"Number of input feature maps ({num_feature_maps}) is not a "
                             f"multiple of the pool size (pool_size={self.pool_size})")

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        output_shape[self.axis] = input_shape[self.axis] // self.pool_size
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        input_shape = tuple(input.shape)
        num_feature_maps_out = input_shape[self.axis] // self.pool_size
        pool_shape = (input_shape[:self.axis] + (num_feature_maps_out, self.pool_size) +
                      input_shape[self.axis + 1:])
        return self.pool_function(input.reshape(pool_shape), axis=self.axis + 1)


class FeatureWTALayer(Layer):
    """'Winner take all' across groups of ``pool_size`` consecutive features
    along ``axis``: every value but the group's maximum (its first
    occurrence) is set to zero.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    pool_size : int
        Features per group; must divide the size of ``axis``.
    axis : int
    """

    def __init__(self, incoming, pool_size, axis=1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.pool_size = pool_size
        self.axis = axis
        num_feature_maps = self.input_shape[self.axis]
        if num_feature_maps % self.pool_size != 0:
            raise ValueError(f"Number of input feature maps ({num_feature_maps}) is not a "
                             f"multiple of the region size (pool_size={self.pool_size})")

    def get_output_for(self, input, **kwargs):
        num_pools = input.shape[self.axis] // self.pool_size
        pool_shape = (tuple(input.shape[k] for k in range(self.axis)) +
                      (num_pools, self.pool_size) +
                      tuple(input.shape[k] for k in range(self.axis + 1, input.ndim)))
        pattern = ("x",) * (self.axis + 1) + (0,) + ("x",) * (input.ndim - self.axis - 1)
        reshaped = input.reshape(pool_shape)
        max_indices = pt.argmax(reshaped, axis=self.axis + 1, keepdims=True)
        arange = pt.arange(self.pool_size).dimshuffle(*pattern)
        mask = pt.eq(max_indices, arange).reshape(input.shape)
        return input * mask


def _static_int(v):
    """``v`` as a Python int when it is one (or a constant), else None."""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, pt.TensorConstant) and v.ndim == 0:
        return int(v.data)
    return None


def _static_pair(v):
    """A pair of Python ints from ``v`` (int, pair, or constant vector), or None."""
    if isinstance(v, pt.TensorConstant):
        v = tuple(v.data.tolist())
    if isinstance(v, Variable):
        return None
    v = tuple(v)
    if len(v) != 2:
        raise ValueError(f"expected 2 values, got {v!r}")
    vals = tuple(_static_int(i) for i in v)
    return None if None in vals else vals


def _pool_2d_symbolic(input, ws, stride, mode):
    """Pool the last two axes with a symbolic window and stride (no padding,
    partial windows dropped): gathers every window with advanced indexing."""
    ws = [ws[i] for i in range(2)]
    stride = [stride[i] for i in range(2)]
    h, w = input.shape[-2], input.shape[-1]
    rows = ((pt.arange((h - ws[0]) // stride[0] + 1) * stride[0]).dimshuffle(0, "x") +
            pt.arange(ws[0]).dimshuffle("x", 0))                  # (out_h, ws_h)
    cols = ((pt.arange((w - ws[1]) // stride[1] + 1) * stride[1]).dimshuffle(0, "x") +
            pt.arange(ws[1]).dimshuffle("x", 0))                  # (out_w, ws_w)
    lead = (slice(None),) * (input.ndim - 2)
    windows = input[lead + (rows,)]                               # (..., oh, wh, W)
    windows = windows[lead + (slice(None), slice(None), cols)]    # (..., oh, wh, ow, ww)
    axes = (input.ndim - 1, input.ndim + 1)
    if mode == "max":
        return pt.max(windows, axis=axes)
    if mode == "sum":
        return pt.sum(windows, axis=axes)
    return pt.mean(windows, axis=axes)  # no padding: inc_pad == exc_pad


def pool_2d(input, ws=None, ignore_border=None, stride=None, pad=(0, 0), mode="max",
            ds=None, st=None, padding=None):
    """Theano's ``theano.tensor.signal.pool.pool_2d`` (which Lasagne's
    ``lasagne.layers.pool`` imports): max, sum or average pooling over the
    last two axes of an input of 2 or more dimensions.

    ``ds``, ``st`` and ``padding`` are Theano's old names of ``ws``,
    ``stride`` and ``pad``. As in Theano 1.0, ``ws`` and ``stride`` may be
    symbolic (e.g. an ``ivector``) when there is no padding and
    ``ignore_border=True``.
    """
    if ds is not None:
        if ws is not None:
            raise ValueError("You can't provide a tuple value to both 'ws' and 'ds'. "
                             "Please provide a value only to 'ws'.")
        ws = ds
    elif ws is None:
        raise ValueError("You must provide a tuple value for the window size.")
    if st is not None:
        if stride is not None:
            raise ValueError("You can't provide a tuple value to both 'st and 'stride'. "
                             "Please provide a value only to 'stride'.")
        stride = st
    if padding is not None:
        if pad not in {None, (0, 0)}:
            raise ValueError("You can't provide a tuple value to both 'padding' and pad. "
                             "Please provide a value only to pad.")
        pad = padding
    if ignore_border is None:
        import warnings
        warnings.warn("pool_2d() will have the parameter ignore_border default value "
                      "changed to True (currently False). To have consistent behavior "
                      "with all Theano version, explicitly add the parameter "
                      "ignore_border=True.", stacklevel=2)
        ignore_border = False
    if mode not in ("max", "sum", "average_inc_pad", "average_exc_pad", "average"):
        raise ValueError("Pool mode parameter only support 'max', 'sum', 'average_inc_pad' "
                         "and 'average_exc_pad'. Got %s" % mode)
    if mode == "average":
        mode = "average_inc_pad"
    input = pt.as_tensor_variable(input)
    if input.ndim < 2:
        raise NotImplementedError("pool_2d requires a dimension >= 2")
    if stride is None:
        stride = ws
    if pad is None:
        pad = (0, 0)
    ws_c, stride_c, pad_c = _static_pair(ws), _static_pair(stride), _static_pair(pad)
    if ws_c is None or stride_c is None or pad_c is None:
        if pad_c != (0, 0) or not ignore_border:
            raise NotImplementedError("pool_2d with a symbolic window or stride needs "
                                      "pad=(0, 0) and ignore_border=True")
        return _pool_2d_symbolic(input, pt.as_tensor_variable(ws),
                                 pt.as_tensor_variable(stride), mode)
    if input.ndim == 4:
        return pool2d(input, ws=ws_c, stride=stride_c, pad=pad_c, mode=mode,
                      ignore_border=ignore_border)
    # any other rank: pool the last two axes of every leading index
    flat = input.reshape((-1, 1, input.shape[-2], input.shape[-1]), ndim=4)
    out = pool2d(flat, ws=ws_c, stride=stride_c, pad=pad_c, mode=mode,
                 ignore_border=ignore_border)
    return out.reshape(tuple(input.shape[i] for i in range(input.ndim - 2)) +
                       (out.shape[2], out.shape[3]), ndim=input.ndim)


def pool_2d_nxn_regions(inputs, output_size, mode="max"):
    """Pool a 4D input into ``output_size x output_size`` bins (the bins of
    He et al.'s spatial pyramid pooling: bin ``i`` of ``n`` covers
    ``floor(i / n * size)`` to ``ceil((i + 1) / n * size)``).

    Returns a list of ``output_size ** 2`` tensors of shape (N, C, 1), row by row.
    """
    if mode == "max":
        pooling_op = pt.max
    elif mode in ("average_inc_pad", "average_exc_pad"):
        pooling_op = pt.mean
    else:
        raise ValueError(f"Mode must be either 'max', 'average_inc_pad' or "
                         f"'average_exc_pad'. Got '{mode}'")
    h, w = inputs.shape[2], inputs.shape[3]
    n = float(output_size)
    result = []
    for row in range(output_size):
        for col in range(output_size):
            start_h = pt.floor(row / n * h).astype("int32")
            end_h = pt.ceil((row + 1) / n * h).astype("int32")
            start_w = pt.floor(col / n * w).astype("int32")
            end_w = pt.ceil((col + 1) / n * w).astype("int32")
            region = inputs[:, :, start_h:end_h, start_w:end_w]
            result.append(pooling_op(region, axis=(2, 3)).dimshuffle(0, 1, "x"))
    return result


def _spp_fast_level(input, input_size, pool_dim, mode):
    """One pyramid level of the 'fast' SPP: a pooling with window
    ``ceil(size / pool_dim)`` and stride ``floor(size / pool_dim)``, flattened
    to (N, C, bins)."""
    win = tuple((i + pool_dim - 1) // pool_dim for i in input_size)
    stride = tuple(i // pool_dim for i in input_size)
    if all(isinstance(v, int) for v in win + stride):
        return pool2d(input, ws=win, stride=stride, mode=mode, pad=(0, 0),
                      ignore_border=True).flatten(3)
    # unknown input size: the first pool_dim x pool_dim windows, by slicing
    if mode == "max":
        reduce = pt.max
    elif mode in ("average_inc_pad", "average_exc_pad"):
        reduce = pt.mean
    elif mode == "sum":
        reduce = pt.sum
    else:
        raise ValueError(f"unsupported pooling mode {mode!r}")
    bins = []
    for r in range(pool_dim):
        for c in range(pool_dim):
            region = input[:, :, r * stride[0]:r * stride[0] + win[0],
                           c * stride[1]:c * stride[1] + win[1]]
            bins.append(reduce(region, axis=(2, 3)).dimshuffle(0, 1, "x"))
    return pt.concatenate(bins, axis=2)


class SpatialPyramidPoolingLayer(Layer):
    """Spatial pyramid pooling: pools a 4D input of any spatial size into
    ``sum(n * n for n in pool_dims)`` features per channel.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    pool_dims : list of int
        Bins per side at each pyramid level.
    mode : {'max', 'average_inc_pad', 'average_exc_pad'}
    implementation : {'fast', 'kaiming'}
        'fast' pools with window ``ceil(size / n)`` and stride
        ``floor(size / n)`` (which gives ``n`` bins per side for most but not
        all sizes); 'kaiming' uses the bins of He et al. (2015), any size.
    """

    def __init__(self, incoming, pool_dims=[4, 2, 1], mode="max", implementation="fast",
                 **kwargs):
        super().__init__(incoming, **kwargs)
        if len(self.input_shape) != 4:
            raise ValueError(f"Tried to create a SPP layer with input shape "
                             f"{self.input_shape}. Expected 4 input dimensions "
                             f"(batchsize, channels, 2 spatial dimensions).")
        self.mode = mode
        self.implementation = implementation
        self.pool_dims = pool_dims

    def get_output_for(self, input, **kwargs):
        input_size = tuple(symb if fixed is None else fixed
                           for fixed, symb in zip(self.input_shape[2:],
                                                  (input.shape[2], input.shape[3])))
        pool_list = []
        for pool_dim in self.pool_dims:
            if self.implementation == "kaiming":
                pool_list += pool_2d_nxn_regions(input, pool_dim, mode=self.mode)
            else:
                pool_list.append(_spp_fast_level(input, input_size, pool_dim, self.mode))
        return pt.concatenate(pool_list, axis=2)

    def get_output_shape_for(self, input_shape):
        num_features = sum(p * p for p in self.pool_dims)
        return (input_shape[0], input_shape[1], num_features)
