"""NumPy kernels of the N-d convolution ops (the ``perform`` of
:mod:`lasres.ops.convnd`).

One strided view of the padded input per filter tap is copied into an
``im2col`` block ``(N, C, taps, *out)`` that a single ``tensordot``
contracts with the filters; the input gradient scatters the ``tensordot`` of
the output gradient back tap by tap.
"""
import itertools
from typing import Sequence

import numpy as np

from .conv_numpy import effective_filters
from .shape import conv_output_shape

__all__ = ["convnd_forward_numpy", "convnd_grad_inputs_numpy", "convnd_grad_weights_numpy"]

Ints = Sequence[int]


def _tap_slices(k_shape, out, stride, dilation):
    """For every filter tap (row-major order): the strided slices of the
    padded input it reads."""
    for tap in itertools.product(*(range(k) for k in k_shape)):
        yield tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                    for t, o, s, d in zip(tap, out, stride, dilation))


def _im2col(x, k_shape, stride, pad, dilation):
    """``(N, C, taps, *out)`` block of the zero-padded input ``x``."""
    n = x.ndim - 2
    out = conv_output_shape(x.shape[2:], k_shape, stride, pad, dilation)
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad)) if any(pad) else x
    taps = int(np.prod(k_shape))
    cols = np.empty(x.shape[:2] + (taps,) + out, x.dtype)
    for t, sl in enumerate(_tap_slices(k_shape, out, stride, dilation)):
        cols[:, :, t] = xp[(slice(None), slice(None)) + sl]
    return cols, out, n


def convnd_forward_numpy(x: np.ndarray, w: np.ndarray, stride: Ints, pad: Ints, dilation: Ints,
                         filter_flip: bool) -> np.ndarray:
    """NumPy forward convolution (``perform`` of :class:`~lasres.ops.convnd.ConvNd`).

    Parameters
    ----------
    x : ndarray, shape (N, C, *in)
    w : ndarray, shape (F, C, *k)
    stride, pad, dilation : tuple of int
        One entry per spatial axis.
    filter_flip : bool
        True convolves, False correlates.

    Returns
    -------
    ndarray, shape (N, F, *out)
    """
    f, c = w.shape[:2]
    if x.shape[1] != c:
        raise ValueError(f"input has {x.shape[1]} channels but the filters expect {c}")
    cols, out, n = _im2col(x, w.shape[2:], stride, pad, dilation)
    k = np.ascontiguousarray(effective_filters(w, filter_flip), dtype=x.dtype).reshape(f, c, -1)
    res = np.tensordot(cols, k, axes=([1, 2], [1, 2]))            # (N, *out, F)
    return np.ascontiguousarray(np.moveaxis(res, -1, 1))


def convnd_grad_inputs_numpy(gz: np.ndarray, w: np.ndarray, in_shape: Ints, stride: Ints,
                             pad: Ints, dilation: Ints, filter_flip: bool) -> np.ndarray:
    """NumPy input gradient (``perform`` of :class:`~lasres.ops.convnd.ConvNdGradInputs`).

    Parameters
    ----------
    gz : ndarray, shape (N, F, *out)
        Gradient with respect to the convolution output.
    w : ndarray, shape (F, C, *k)
    in_shape : tuple of int
        Spatial shape of the input to reconstruct.
    stride, pad, dilation, filter_flip
        As for :func:`convnd_forward_numpy`.

    Returns
    -------
    ndarray, shape (N, C, *in_shape)
    """
    f, c = w.shape[:2]
    if gz.shape[1] != f:
        raise ValueError(f"output gradient has {gz.shape[1]} channels but the filters have {f}")
    k_shape = w.shape[2:]
    out = conv_output_shape(in_shape, k_shape, stride, pad, dilation)
    if tuple(gz.shape[2:]) != out:
        raise ValueError(f"output gradient of spatial shape {tuple(gz.shape[2:])} does not fit "
                         f"an input of shape {tuple(in_shape)} (expected {out})")
    k = np.ascontiguousarray(effective_filters(w, filter_flip), dtype=gz.dtype).reshape(f, c, -1)
    dcols = np.tensordot(gz, k, axes=([1], [0]))                   # (N, *out, C, taps)
    dcols = np.moveaxis(dcols, (-2, -1), (1, 2))                   # (N, C, taps, *out)
    padded = tuple(i + 2 * p for i, p in zip(in_shape, pad))
    dxp = np.zeros(gz.shape[:1] + (c,) + padded, gz.dtype)
    for t, sl in enumerate(_tap_slices(k_shape, out, stride, dilation)):
        dxp[(slice(None), slice(None)) + sl] += dcols[:, :, t]
    crop = tuple(slice(p, p + i) for p, i in zip(pad, in_shape))
    return np.ascontiguousarray(dxp[(slice(None), slice(None)) + crop])


def convnd_grad_weights_numpy(x: np.ndarray, gz: np.ndarray, k_shape: Ints, stride: Ints,
                              pad: Ints, dilation: Ints, filter_flip: bool) -> np.ndarray:
    """NumPy filter gradient (``perform`` of :class:`~lasres.ops.convnd.ConvNdGradWeights`).

    Parameters
    ----------
    x : ndarray, shape (N, C, *in)
    gz : ndarray, shape (N, F, *out)
        Gradient with respect to the convolution output.
    k_shape : tuple of int
        Spatial filter shape.
    stride, pad, dilation, filter_flip
        As for :func:`convnd_forward_numpy`.

    Returns
    -------
    ndarray, shape (F, C, *k_shape)
    """
    if x.shape[0] != gz.shape[0]:
        raise ValueError(f"input batch {x.shape[0]} differs from output gradient batch "
                         f"{gz.shape[0]}")
    cols, out, n = _im2col(x, k_shape, stride, pad, dilation)
    if tuple(gz.shape[2:]) != out:
        raise ValueError(f"output gradient of spatial shape {tuple(gz.shape[2:])} does not fit "
                         f"filters of shape {tuple(k_shape)} (expected {out})")
    axes_gz = [0] + list(range(2, 2 + n))
    axes_cols = [0] + list(range(3, 3 + n))
    dw = np.tensordot(gz.astype(x.dtype, copy=False), cols, axes=(axes_gz, axes_cols))
    dw = dw.reshape(gz.shape[1], x.shape[1], *k_shape)
    return np.ascontiguousarray(effective_filters(dw, filter_flip))
