"""1-d and 3-d pooling, built from the 2-d pooling op.

Pooling over a box is separable: the max (or sum) over a box is the max
(sum) over one axis of the maxima (sums) over the others, and the box's
element count -- the divisor of both average modes, with or without the
padding, and for the partial windows of ``ignore_border=False`` -- is the
product of the per-axis counts.  :func:`pool3d` therefore pools the two
trailing axes with :func:`lasres.ops.pool.pool2d` and then the depth axis
with a ``(k, 1)`` window, and inherits that op's gradients (ties of max
pooling all receive the gradient, as in Theano) and its JAX implementation.
:func:`pool1d` is a 2-d pooling with a unit axis, as Lasagne's
``Pool1DLayer`` did it.

Under the JAX backend, :func:`pool3d` needs the input's static shape (the
reshapes between the two passes turn unknown sizes into traced values).
"""
from typing import Any

import pytensor.tensor as pt

from pytensor.tensor.variable import TensorVariable

from .pool import pool2d
from .shape import pool_output_length

__all__ = ["pool1d", "pool3d"]


def _triple(value, name, n):
    if isinstance(value, int):
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    return value


def pool1d(input: Any, ws: Any = 2, stride: Any = None, pad: Any = 0, mode: str = "max",
           ignore_border: bool = True) -> TensorVariable:
    """Pooling over the last axis of a 3-d ``(N, C, L)`` input.

    Parameters
    ----------
    input : TensorVariable, shape (N, C, L)
    ws, stride, pad : int
        Window size, stride (defaults to ``ws``) and padding, as for
        :func:`lasres.ops.pool.pool2d` along one axis.
    mode : {'max', 'sum', 'average_inc_pad', 'average_exc_pad'}
    ignore_border : bool

    Returns
    -------
    TensorVariable, shape (N, C, L')
    """
    (ws,) = _triple(ws, "ws", 1)
    (stride,) = _triple(ws if stride is None else stride, "stride", 1)
    (pad,) = _triple(pad, "pad", 1)
    x = pt.as_tensor_variable(input)
    if x.ndim != 3:
        raise TypeError(f"pool1d needs a 3-d input, got {x.type}")
    pooled = pool2d(pt.shape_padright(x, 1), ws=(ws, 1), stride=(stride, 1), pad=(pad, 0),
                    mode=mode, ignore_border=ignore_border)
    return pooled[:, :, :, 0]


def pool3d(input: Any, ws: Any = (2, 2, 2), stride: Any = None, pad: Any = (0, 0, 0),
           mode: str = "max", ignore_border: bool = True) -> TensorVariable:
    """Pooling over the three trailing axes of a 5-d ``(N, C, D, H, W)`` input.

    Parameters
    ----------
    input : TensorVariable, shape (N, C, D, H, W)
    ws : int or triple of int
        Window size.
    stride : int or triple of int, optional
        Defaults to ``ws``.
    pad : int or triple of int
        Padding on each side (smaller than ``ws``).
    mode : {'max', 'sum', 'average_inc_pad', 'average_exc_pad'}
    ignore_border : bool
        False keeps partial windows at the end (``pad`` must be 0).

    Returns
    -------
    TensorVariable, shape (N, C, D', H', W')
    """
    ws = _triple(ws, "ws", 3)
    stride = ws if stride is None else _triple(stride, "stride", 3)
    pad = _triple(pad, "pad", 3)
    x = pt.as_tensor_variable(input)
    if x.ndim != 5:
        raise TypeError(f"pool3d needs a 5-d input, got {x.type}")
    n, c, d, h, w = (x.shape[i] for i in range(5))
    plane = pool2d(x.reshape((n, c * d, h, w)), ws=ws[1:], stride=stride[1:], pad=pad[1:],
                   mode=mode, ignore_border=ignore_border)
    h2, w2 = plane.shape[2], plane.shape[3]
    depth = pool2d(plane.reshape((n, c, d, h2 * w2)), ws=(ws[0], 1), stride=(stride[0], 1),
                   pad=(pad[0], 0), mode=mode, ignore_border=ignore_border)
    out = depth.reshape((n, c, depth.shape[2], h2, w2))
    # give the result the static shape PyTensor would know for a 3-d op
    static = list(x.type.shape[:2])
    for length, k, s, p in zip(x.type.shape[2:], ws, stride, pad):
        static.append(None if length is None else
                      int(pool_output_length(length, k, s, p, ignore_border)))
    if all(v is None for v in static):
        return out
    return pt.specify_shape(out, tuple(static))
