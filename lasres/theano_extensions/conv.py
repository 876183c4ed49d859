"""Alternative 1D convolutions (Lasagne's ``lasagne.theano_extensions.conv``).

Every function convolves a ``(batch, channels, length)`` input with
``(num_filters, channels, filter_length)`` filters and returns
``(batch, num_filters, output_length)``; ``filter_flip=True`` (default)
convolves, False correlates.  They share the keyword interface
``(input, filters, image_shape, filter_shape, border_mode, subsample,
filter_flip)`` that :class:`lasres.layers.Conv1DLayer` calls with:

* :func:`conv1d_mc0` (Conv1DLayer's default) and :func:`conv1d_mc1`: a 2D
  convolution with a unit axis (any ``border_mode``: 'valid', 'full',
  'half', an int);
* :func:`conv1d_sc`: a 2D convolution over (channels, length) of a single
  input channel (valid only);
* :func:`conv1d_unstrided`: folds the stride into the channels, then calls
  a stride-1 implementation (the filter length must be a multiple of the
  stride);
* :func:`conv1d_sd` / :func:`conv1d_md`: one / several dot products over
  reshaped inputs (valid only; filter length a multiple of the stride).
"""
import numpy as np
import pytensor.tensor as pt

from ..ops import conv2d
from ..ops.shape import conv_output_length

__all__ = ["conv1d_sc", "conv1d_mc0", "conv1d_mc1", "conv1d_unstrided", "conv1d_sd",
           "conv1d_md"]

_VALID = ("valid", 0, (0,))


def _valid_only(border_mode, name):
    if not any(border_mode == v and type(border_mode) is type(v) for v in _VALID):
        raise RuntimeError(f"Unsupported border_mode for {name}: {border_mode}")


def _conv2d(input, filters, border_mode, subsample, filter_flip, num_groups=1):
    """Theano-style 2D convolution (``border_mode`` 'half' is lasres's 'same')."""
    if border_mode == "half":
        border_mode = "same"
    if isinstance(border_mode, str) and border_mode not in ("valid", "full", "same"):
        raise ValueError(f"invalid border_mode {border_mode!r}")
    if border_mode is None:
        raise ValueError("invalid border_mode None")
    if num_groups == 1:
        return conv2d(input, filters, stride=subsample, pad=border_mode, filter_flip=filter_flip)
    cin = input.shape[1] // num_groups
    fout = filters.shape[0] // num_groups
    return pt.concatenate(
        [conv2d(input[:, g * cin:(g + 1) * cin], filters[g * fout:(g + 1) * fout],
                stride=subsample, pad=border_mode, filter_flip=filter_flip)
         for g in range(num_groups)], axis=1)


def conv1d_sc(input, filters, image_shape=None, filter_shape=None, border_mode="valid",
              subsample=(1,), filter_flip=True):
    """1D convolution as a 2D convolution of a single input channel over
    (channels, length); the channel axis is reversed first so that the 2D
    convolution's flip cancels on it. Valid convolutions only."""
    _valid_only(border_mode, "conv1d_sc")
    input_sc = input.dimshuffle(0, "x", 1, 2)
    filters_sc = filters.dimshuffle(0, "x", 1, 2)[:, :, ::-1, :]
    conved = conv2d(input_sc, filters_sc, stride=(1, subsample[0]), filter_flip=filter_flip)
    return conved[:, :, 0, :]


def _conv1d_as_2d(input, filters, border_mode, stride, filter_flip, num_groups, axis):
    """1D convolution as a 2D one with a unit-length spatial axis inserted at
    ``axis`` (2: rows of height 1, 3: columns of width 1)."""
    if isinstance(border_mode, tuple):
        (border_mode,) = border_mode
    pattern = (0, 1, "x", 2) if axis == 2 else (0, 1, 2, "x")
    if isinstance(border_mode, (int, np.integer)):
        border_mode = (0, int(border_mode)) if axis == 2 else (int(border_mode), 0)
    conved = _conv2d(input.dimshuffle(*pattern), filters.dimshuffle(*pattern), border_mode,
                     (1, stride) if axis == 2 else (stride, 1), filter_flip, num_groups)
    return conved[:, :, 0, :] if axis == 2 else conved[:, :, :, 0]


def conv1d_mc0(input, filters, image_shape=None, filter_shape=None, border_mode="valid",
               subsample=(1,), filter_flip=True, num_groups=1):
    """1D convolution as a 2D convolution with rows of height 1."""
    return _conv1d_as_2d(input, filters, border_mode, subsample[0], filter_flip, num_groups, 2)


def conv1d_mc1(input, filters, image_shape=None, filter_shape=None, border_mode="valid",
               subsample=(1,), filter_flip=True, num_groups=1):
    """1D convolution as a 2D convolution with columns of width 1."""
    return _conv1d_as_2d(input, filters, border_mode, subsample[0], filter_flip, num_groups, 3)


def _check_stride(filter_length, stride):
    if filter_length % stride > 0:
        raise RuntimeError(f"Filter length ({filter_length}) is not a multiple of the "
                           f"stride ({stride})")


def conv1d_unstrided(input, filters, image_shape, filter_shape, border_mode="valid",
                     subsample=(1,), filter_flip=True, implementation=conv1d_sc):
    """Strided 1D convolution computed by ``implementation`` at stride 1:
    the input (truncated to a multiple of the stride) and the filters are
    reshaped so that each stride phase becomes a channel.  The filter length
    must be a multiple of the stride; valid convolutions only."""
    _valid_only(border_mode, "conv1d_unstrided")
    batch_size, num_input_channels, input_length = image_shape
    num_filters, _, filter_length = filter_shape
    stride = subsample[0]
    _check_stride(filter_length, stride)
    if not filter_flip:
        filters = filters[:, :, ::-1]    # a correlation is a convolution with reversed filters
    steps = filter_length // stride
    length = (input_length // stride) * stride
    b = input.shape[0]
    # (b, c, L/s, s) -> (b, c, s, L/s) -> (b, c*s, L/s)
    folded = (input[:, :, :length].reshape((b, num_input_channels, length // stride, stride))
              .dimshuffle(0, 1, 3, 2).reshape((b, num_input_channels * stride, length // stride)))
    # the convolution reverses the filters, so fold the reversed filters and reverse back
    rev = filters[:, :, ::-1].reshape((num_filters, num_input_channels, steps, stride))
    w_folded = rev.dimshuffle(0, 1, 3, 2).reshape(
        (num_filters, num_input_channels * stride, steps))[:, :, ::-1]
    return implementation(folded, w_folded, (batch_size, num_input_channels * stride,
                                             length // stride),
                          (num_filters, num_input_channels * stride, steps), border_mode,
                          subsample=(1,))


def conv1d_sd(input, filters, image_shape, filter_shape, border_mode="valid", subsample=(1,),
              filter_flip=True):
    """1D convolution as a single dot product: the zero-padded input is cut
    into non-overlapping windows of the filter length at each of the
    ``filter_length // stride`` shifts, all contracted with the filters in one
    ``tensordot``.  Valid convolutions only."""
    _valid_only(border_mode, "conv1d_sd")
    batch_size, num_input_channels, input_length = image_shape
    num_filters, _, filter_length = filter_shape
    stride = subsample[0]
    _check_stride(filter_length, stride)
    steps = filter_length // stride
    output_length = conv_output_length(input_length, filter_length, stride)
    padded_length = (input_length // filter_length) * filter_length + (steps - 1) * stride
    kept = min(input_length, padded_length)
    b = input.shape[0]
    padded = pt.zeros((b, num_input_channels, padded_length), dtype=input.dtype)
    padded = pt.set_subtensor(padded[:, :, :kept], input[:, :, :kept])
    windows = []
    for step in range(steps):
        shift = step * stride
        count = (padded_length - shift) // filter_length
        windows.append(padded[:, :, shift:shift + count * filter_length].reshape(
            (b, num_input_channels, count, filter_length)))
    stacked = pt.stack(windows)                               # (steps, b, c, count, k)
    k = filters[:, :, ::-1] if filter_flip else filters
    res = pt.tensordot(stacked, k, axes=[[2, 4], [1, 2]])     # (steps, b, count, f)
    res = res.dimshuffle(1, 3, 2, 0)                          # (b, f, count, steps)
    conved = res.reshape((res.shape[0], res.shape[1], res.shape[2] * res.shape[3]))
    return conved[:, :, :output_length]


def conv1d_md(input, filters, image_shape, filter_shape, border_mode="valid", subsample=(1,),
              filter_flip=True):
    """1D convolution as one dot product per shift (``filter_length //
    stride`` of them), each filling every ``steps``-th output.  Valid
    convolutions only."""
    _valid_only(border_mode, "conv1d_md")
    batch_size, num_input_channels, input_length = image_shape
    num_filters, _, filter_length = filter_shape
    stride = subsample[0]
    _check_stride(filter_length, stride)
    steps = filter_length // stride
    output_length = conv_output_length(input_length, filter_length, stride)
    b = input.shape[0]
    k = filters[:, :, ::-1] if filter_flip else filters
    conved = pt.zeros((b, num_filters, output_length), dtype=input.dtype)
    for step in range(steps):
        shift = step * stride
        count = (input_length - shift) // filter_length
        if count == 0:
            continue
        windows = input[:, :, shift:shift + count * filter_length].reshape(
            (b, num_input_channels, count, filter_length))
        res = pt.tensordot(windows, k, axes=[[1, 3], [1, 2]]).dimshuffle(0, 2, 1)
        conved = pt.set_subtensor(conved[:, :, step::steps], res)
    return conved
