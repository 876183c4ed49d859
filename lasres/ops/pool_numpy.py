"""NumPy kernels of the pooling ops (the ``perform`` of :mod:`lasres.ops.pool`).

They loop over the ``ws[0] * ws[1]`` window offsets and handle the whole
batch with one strided array operation per offset.  :class:`PoolGeometry`
(padded extent, window views, averaging divisors) is shared with the JAX
implementation (:mod:`lasres.ops.jax.pool`).
"""
from typing import Optional, Tuple

import numpy as np

from .shape import pool_output_length

__all__ = ["PoolGeometry", "pool2d_forward_numpy", "pool2d_grad_numpy", "pool2d_grad_grad_numpy"]

Pair = Tuple[int, int]


class PoolGeometry:
    """Padded extent and window positions of a pooling along both axes.

    Parameters
    ----------
    in_hw : pair of int
        Input height and width.
    ws, stride, pad : pair of int
        Window size, stride and padding.
    ignore_border : bool
        False grows the padded extent at the end for partial windows.
    """

    def __init__(self, in_hw, ws, stride, pad, ignore_border):
        self.h, self.w = in_hw
        self.ws, self.stride, self.pad = ws, stride, pad
        self.out = tuple(pool_output_length(in_hw[a], ws[a], stride[a], pad[a], ignore_border)
                         for a in range(2))
        # padded extent, grown at the end for partial windows
        self.padded = tuple(max(in_hw[a] + 2 * pad[a], (self.out[a] - 1) * stride[a] + ws[a])
                            for a in range(2))

    def pad_input(self, x, fill):
        """``x`` in a buffer of the padded extent filled with ``fill``."""
        n, c = x.shape[:2]
        xp = np.full((n, c) + self.padded, fill, dtype=x.dtype)
        xp[:, :, self.pad[0]:self.pad[0] + self.h, self.pad[1]:self.pad[1] + self.w] = x
        return xp

    def crop(self, xp):
        return xp[:, :, self.pad[0]:self.pad[0] + self.h, self.pad[1]:self.pad[1] + self.w]

    def windows(self, arr):
        """Yield, per window offset, the strided view of ``arr`` it reads."""
        (oh, ow), (sh, sw) = self.out, self.stride
        for i in range(self.ws[0]):
            for j in range(self.ws[1]):
                yield arr[:, :, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw]

    def divisor(self, mode, dtype):
        """Per-output-position divisor of an average (separable counts)."""
        counts = []
        for a, length in enumerate((self.h, self.w)):
            lo, hi = ((self.pad[a], self.pad[a] + length) if mode == "average_exc_pad"
                      else (0, length + 2 * self.pad[a]))
            start = np.arange(self.out[a]) * self.stride[a]
            counts.append(np.clip(np.minimum(start + self.ws[a], hi) - np.maximum(start, lo),
                                  1, None))
        return np.outer(counts[0], counts[1]).astype(dtype)


def pool2d_forward_numpy(x: np.ndarray, ws: Pair, stride: Pair, pad: Pair, mode: str,
                         ignore_border: bool) -> np.ndarray:
    """NumPy pooling (the ``perform`` of :class:`~lasres.ops.pool.Pool2d`).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    ws, stride, pad : pair of int
    mode : {'max', 'sum', 'average_inc_pad', 'average_exc_pad'}
    ignore_border : bool

    Returns
    -------
    ndarray, shape (N, C, out_h, out_w)
    """
    g = PoolGeometry(x.shape[2:], ws, stride, pad, ignore_border)
    n, c = x.shape[:2]
    if 0 in g.out or x.size == 0:
        return np.zeros((n, c) + g.out, x.dtype)
    is_max = mode == "max"
    if pad == (0, 0) and tuple(ws) == (g.h, g.w):
        # global pooling
        red = x.max(axis=(2, 3)) if is_max else x.sum(axis=(2, 3), dtype=x.dtype)
        out = red.reshape(n, c, 1, 1)
    else:
        xp = g.pad_input(x, -np.inf if is_max else 0) if g.padded != (g.h, g.w) else x
        views = g.windows(xp)
        out = np.array(next(views), dtype=x.dtype)
        reduce = np.maximum if is_max else np.add
        for view in views:
            reduce(out, view, out=out)
    if mode.startswith("average"):
        out /= g.divisor(mode, x.dtype)
    return out


def pool2d_grad_numpy(x: np.ndarray, z: Optional[np.ndarray], gz: np.ndarray, ws: Pair,
                      stride: Pair, pad: Pair, mode: str, ignore_border: bool) -> np.ndarray:
    """NumPy gradient of pooling (the ``perform`` of :class:`~lasres.ops.pool.Pool2dGrad`).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        The pooling's input.
    z : ndarray or None
        The pooled output (read by max pooling only).
    gz : ndarray, shape (N, C, out_h, out_w)
        Gradient with respect to the pooled output.
    ws, stride, pad, mode, ignore_border
        As for :func:`pool2d_forward_numpy`.

    Returns
    -------
    ndarray, shape of ``x``, dtype of ``gz``
    """
    g = PoolGeometry(x.shape[2:], ws, stride, pad, ignore_border)
    if gz.shape[2:] != g.out:
        raise ValueError(f"output gradient of spatial shape {gz.shape[2:]} does not fit "
                         f"an input of shape {x.shape[2:]} (expected {g.out})")
    dtype = gz.dtype
    if pad == (0, 0) and tuple(ws) == (g.h, g.w) and x.size:
        # global pooling: one window covering the image
        if mode == "max":
            return np.multiply(x == z, gz, dtype=dtype)
        gs = gz / g.divisor(mode, dtype) if mode.startswith("average") else gz
        gx = np.empty(x.shape, dtype)
        gx[...] = gs
        return gx
    gxp = np.zeros(x.shape[:2] + g.padded, dtype)
    if 0 in g.out or x.size == 0:
        return np.ascontiguousarray(g.crop(gxp))
    if mode == "max":
        xp = g.pad_input(x, -np.inf) if g.padded != (g.h, g.w) else x
        tmp = np.empty(gz.shape, dtype)
        for xv, gv in zip(g.windows(xp), g.windows(gxp)):
            np.equal(xv, z, out=tmp, casting="unsafe")
            tmp *= gz
            gv += tmp
    else:
        gs = gz / g.divisor(mode, dtype) if mode.startswith("average") else gz
        for gv in g.windows(gxp):
            gv += gs
    return np.ascontiguousarray(g.crop(gxp))


def pool2d_grad_grad_numpy(x: np.ndarray, z: np.ndarray, ggx: np.ndarray, ws: Pair, stride: Pair,
                           pad: Pair, ignore_border: bool) -> np.ndarray:
    """NumPy max-pooling grad-grad (the ``perform`` of
    :class:`~lasres.ops.pool.Pool2dGradGrad`): per window, the sum of ``ggx``
    over the positions equal to the window maximum ``z``.

    Returns
    -------
    ndarray, shape of ``z``, dtype of ``ggx``
    """
    g = PoolGeometry(x.shape[2:], ws, stride, pad, ignore_border)
    out = np.zeros(x.shape[:2] + g.out, ggx.dtype)
    if out.size == 0:
        return out
    padded = g.padded != (g.h, g.w)
    xp = g.pad_input(x, -np.inf) if padded else x
    ggxp = g.pad_input(ggx, 0) if padded else ggx
    mask = np.empty(out.shape, bool)
    for xv, gv in zip(g.windows(xp), g.windows(ggxp)):
        np.equal(xv, z, out=mask)
        np.add(out, gv, out=out, where=mask)
    return out
