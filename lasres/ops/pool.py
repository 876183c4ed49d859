"""Two-dimensional pooling ops (NCHW) with NumPy and JAX implementations.

Semantics follow Theano's ``pool_2d``:

* ``mode='max'`` pads with ``-inf``; its gradient is routed to **every**
  input position equal to the window maximum (as Theano's ``MaxPoolGrad``).
* ``'sum'`` sums the window, ``'average_inc_pad'`` divides the sum by the
  window size counting padding, ``'average_exc_pad'`` by the number of real
  input pixels in the window.
* ``ignore_border=True``: output length ``(in + 2 * pad - ws) // stride + 1``;
  ``ignore_border=False`` (only without padding) also keeps the partial
  windows at the end; they are reduced over the pixels they hold, and averaged
  over that count (Theano's behaviour).

:class:`Pool2d` is the forward op, :class:`Pool2dGrad` its gradient and
:class:`Pool2dGradGrad` the gradient of the max-pooling gradient with respect
to its output gradient, so that second derivatives work.

The NumPy ``perform`` loops over the ``ws[0] * ws[1]`` window offsets and
handles the whole batch with one strided array operation per offset.
"""

import numpy as np

import pytensor.tensor as pt
from pytensor.tensor.type import float_dtypes
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from .conv import _int_pair  # shared argument check

__all__ = ["pool2d", "Pool2d", "Pool2dGrad", "Pool2dGradGrad", "PoolLength",
           "pool_output_length"]

MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")


def _max0(value):
    """``max(0, value)`` for ints and symbolic scalars."""
    if isinstance(value, (int, np.integer)):
        return max(0, int(value))
    return pt.maximum(0, value)


def pool_output_length(length, ws, stride, pad, ignore_border):
    """Output length of a pooling along one axis (Theano's rule).

    Parameters
    ----------
    length : int or symbolic scalar
        Input length.
    ws, stride, pad : int
        Window size, stride and padding on each side.
    ignore_border : bool
        False keeps a partial window at the end (``pad`` must be 0).

    Returns
    -------
    int or symbolic scalar
    """
    if ignore_border:
        return _max0((length + 2 * pad - ws) // stride + 1)
    if stride >= ws:
        return (length - 1) // stride + 1
    return _max0((length - 1 - ws + stride) // stride) + 1


def _int64_scalar(value):
    if isinstance(value, (int, np.integer)):
        return pt.constant(int(value), dtype="int64")
    return pt.cast(pt.as_tensor_variable(value), "int64")


class PoolLength(Op):
    """Output length of a pooling along one axis, as a scalar shape op.

    Used by ``infer_shape`` instead of a chain of elementwise integer ops,
    which the JAX backend would fuse into a traced array computation; this op
    computes with Python integers when its input is concrete, so shapes stay
    static under ``jax.jit``.  Parameters as for :func:`pool_output_length`;
    the input is the input length, the output an int64 scalar.
    """

    __props__ = ("ws", "stride", "pad", "ignore_border")

    def __init__(self, ws, stride, pad, ignore_border):
        self.ws, self.stride, self.pad = int(ws), int(stride), int(pad)
        self.ignore_border = bool(ignore_border)

    def make_node(self, length):
        length = _int64_scalar(length)
        if length.ndim != 0:
            raise TypeError("PoolLength takes an integer scalar")
        return Apply(self, [length], [pt.lscalar()])

    def length(self, length):
        """The output length (works on ints and on array scalars)."""
        if self.ignore_border:
            out = (length + 2 * self.pad - self.ws) // self.stride + 1
        elif self.stride >= self.ws:
            return (length - 1) // self.stride + 1
        else:
            out = (length - 1 - self.ws + self.stride) // self.stride + 1
            return _max_any(out, 1)
        return _max_any(out, 0)

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(self.length(int(inputs[0])), dtype="int64")

    def infer_shape(self, fgraph, node, in_shapes):
        return [()]

    def connection_pattern(self, node):
        return [[False]]

    def pullback(self, inputs, outputs, output_grads):
        return [disconnected_type()]


def _max_any(value, floor):
    """``max(floor, value)`` for Python ints and (traced) array scalars."""
    if isinstance(value, (int, np.integer)):
        return max(floor, int(value))
    import jax.numpy as jnp
    return jnp.maximum(value, floor)


class _Geometry:
    """Padded extent and window positions of a pooling along both axes."""

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


def pool2d_forward_numpy(x, ws, stride, pad, mode, ignore_border):
    """NumPy pooling (the ``perform`` of :class:`Pool2d`)."""
    g = _Geometry(x.shape[2:], ws, stride, pad, ignore_border)
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


def pool2d_grad_numpy(x, z, gz, ws, stride, pad, mode, ignore_border):
    """NumPy gradient of pooling (the ``perform`` of :class:`Pool2dGrad`).

    ``z`` (the pooled output) is used by max pooling only.
    """
    g = _Geometry(x.shape[2:], ws, stride, pad, ignore_border)
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


def pool2d_grad_grad_numpy(x, z, ggx, ws, stride, pad, ignore_border):
    """NumPy max-pooling grad-grad (the ``perform`` of :class:`Pool2dGradGrad`)."""
    g = _Geometry(x.shape[2:], ws, stride, pad, ignore_border)
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


class _PoolOpBase(Op):
    """Shared parameters of the pooling ops.

    Parameters
    ----------
    ws : int or pair of int
        Window size.
    stride : int or pair of int, optional
        Step between windows; defaults to ``ws``.
    pad : int or pair of int
        Padding on each side (``-inf`` for max pooling, 0 otherwise); must be
        smaller than ``ws``.
    mode : {'max', 'sum', 'average_inc_pad', 'average_exc_pad'}
    ignore_border : bool
        False keeps partial windows at the end (``pad`` must be 0).
    """

    __props__ = ("ws", "stride", "pad", "mode", "ignore_border")

    def __init__(self, ws=(2, 2), stride=None, pad=(0, 0), mode="max", ignore_border=True):
        self.ws = _int_pair(ws, "ws")
        self.stride = self.ws if stride is None else _int_pair(stride, "stride")
        self.pad = _int_pair(pad, "pad")
        if min(self.ws) < 1 or min(self.stride) < 1:
            raise ValueError(f"ws and stride must be positive, got {self.ws}, {self.stride}")
        if min(self.pad) < 0 or self.pad[0] >= self.ws[0] or self.pad[1] >= self.ws[1]:
            raise ValueError(f"pad must be non-negative and smaller than ws, got {self.pad}")
        if mode == "average":
            mode = "average_inc_pad"
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.ignore_border = bool(ignore_border)
        if not self.ignore_border and self.pad != (0, 0):
            raise NotImplementedError("ignore_border=False requires pad=(0, 0)")

    def _kwargs(self):
        return dict(ws=self.ws, stride=self.stride, pad=self.pad, mode=self.mode,
                    ignore_border=self.ignore_border)

    def _out_shape(self, shape):
        """Output shape from an input shape: static (ints/None) or symbolic."""
        out = list(shape[:2])
        for a in range(2):
            length = shape[2 + a]
            if length is None or isinstance(length, (int, np.integer)):
                out.append(None if length is None else pool_output_length(
                    length, self.ws[a], self.stride[a], self.pad[a], self.ignore_border))
            else:
                out.append(PoolLength(self.ws[a], self.stride[a], self.pad[a],
                                      self.ignore_border)(length))
        return tuple(out)

    def grad(self, inputs, output_grads):
        """Theano-style alias of :meth:`pullback`."""
        return self.pullback(inputs, [self(*inputs)], output_grads)


def _float4(var, name):
    var = pt.as_tensor_variable(var)
    if var.ndim != 4:
        raise TypeError(f"{name} must be a 4-d tensor, got {var.type}")
    if var.dtype not in float_dtypes:
        raise TypeError(f"{name} must have a float dtype, got {var.dtype}")
    return var


class Pool2d(_PoolOpBase):
    """Forward 2-d pooling of a 4-d (N, C, H, W) input.

    See :class:`_PoolOpBase` for the parameters and :func:`pool2d`.
    """

    def make_node(self, input):
        x = _float4(input, "input")
        return Apply(self, [x], [pt.tensor(dtype=x.dtype, shape=self._out_shape(x.type.shape))])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = pool2d_forward_numpy(inputs[0], self.ws, self.stride, self.pad,
                                             self.mode, self.ignore_border)

    def infer_shape(self, fgraph, node, in_shapes):
        return [self._out_shape(in_shapes[0])]

    def pullback(self, inputs, outputs, output_grads):
        (x,), (z,), (gz,) = inputs, outputs, output_grads
        grad_op = Pool2dGrad(**self._kwargs())
        return [grad_op(x, z, gz) if self.mode == "max" else grad_op(x, gz)]


class Pool2dGrad(_PoolOpBase):
    """Gradient of :class:`Pool2d` with respect to its input.

    Inputs: for ``mode='max'`` ``(input, output, output_grad)``; for the other
    modes ``(input, output_grad)`` (the input only gives the shape).  The
    output has the shape of ``input`` and the dtype of ``output_grad``.
    """

    def make_node(self, input, *args):
        x = _float4(input, "input")
        n_args = 2 if self.mode == "max" else 1
        if len(args) != n_args:
            raise TypeError(f"Pool2dGrad(mode={self.mode!r}) takes "
                            f"{'(input, output, output_grad)' if n_args == 2 else '(input, output_grad)'}")
        args = [_float4(a, "output" if k < n_args - 1 else "output_grad")
                for k, a in enumerate(args)]
        gz = args[-1]
        return Apply(self, [x] + args, [pt.tensor(dtype=gz.dtype, shape=x.type.shape)])

    def perform(self, node, inputs, outputs):
        if self.mode == "max":
            x, z, gz = inputs
        else:
            (x, gz), z = inputs, None
        outputs[0][0] = pool2d_grad_numpy(x, z, gz, self.ws, self.stride, self.pad,
                                          self.mode, self.ignore_border)

    def infer_shape(self, fgraph, node, in_shapes):
        return [in_shapes[0]]

    def connection_pattern(self, node):
        if self.mode == "max":
            return [[True], [True], [True]]
        return [[False], [True]]

    def pullback(self, inputs, outputs, output_grads):
        (g,) = output_grads
        if self.mode == "max":
            x, z, gz = inputs
            ggz = Pool2dGradGrad(ws=self.ws, stride=self.stride, pad=self.pad,
                                 ignore_border=self.ignore_border)(x, z, g)
            # the routing is piecewise constant in x (and z)
            return [pt.zeros_like(x), pt.zeros_like(z), ggz]
        # linear in gz: the adjoint of the adjoint is the pooling itself
        return [disconnected_type(), Pool2d(**self._kwargs())(g)]


class Pool2dGradGrad(_PoolOpBase):
    """Gradient of max-pooling's :class:`Pool2dGrad` w.r.t. its output grad.

    Inputs ``(input, output, input_grad_grad)``; output of the pooled shape:
    for every window, the sum of ``input_grad_grad`` over the positions equal
    to the window maximum.
    """

    def __init__(self, ws=(2, 2), stride=None, pad=(0, 0), ignore_border=True, mode="max"):
        if mode != "max":
            raise ValueError("Pool2dGradGrad exists for max pooling only")
        super().__init__(ws=ws, stride=stride, pad=pad, mode="max", ignore_border=ignore_border)

    def make_node(self, input, output, ggx):
        x, z, ggx = _float4(input, "input"), _float4(output, "output"), _float4(ggx, "ggx")
        return Apply(self, [x, z, ggx], [pt.tensor(dtype=ggx.dtype, shape=z.type.shape)])

    def perform(self, node, inputs, outputs):
        x, z, ggx = inputs
        outputs[0][0] = pool2d_grad_grad_numpy(x, z, ggx, self.ws, self.stride, self.pad,
                                               self.ignore_border)

    def infer_shape(self, fgraph, node, in_shapes):
        return [in_shapes[1]]

    def pullback(self, inputs, outputs, output_grads):
        x, z, _ = inputs
        (g,) = output_grads
        return [pt.zeros_like(x), pt.zeros_like(z),
                Pool2dGrad(**self._kwargs())(x, z, g)]


def pool2d(input, ws=(2, 2), stride=None, pad=(0, 0), mode="max", ignore_border=True):
    """2-d pooling of a batch of NCHW images.

    Parameters
    ----------
    input : TensorVariable, shape (N, C, H, W)
        Float input.
    ws : int or pair of int
        Window size.
    stride : int or pair of int, optional
        Step between windows; defaults to ``ws``.
    pad : int or pair of int
        Padding on each side; must be smaller than ``ws``.
    mode : {'max', 'sum', 'average_inc_pad', 'average_exc_pad'}
        ``'average'`` is accepted as ``'average_inc_pad'``.
    ignore_border : bool
        True (default): output ``(in + 2 * pad - ws) // stride + 1``.  False
        keeps partial windows at the end (Theano semantics; ``pad`` must be 0).

    Returns
    -------
    TensorVariable
        Same dtype as ``input``.
    """
    return Pool2d(ws=ws, stride=stride, pad=pad, mode=mode, ignore_border=ignore_border)(input)
