"""Two-dimensional pooling ops (NCHW).

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

The NumPy ``perform`` is in :mod:`lasres.ops.pool_numpy`, the output-length
rule in :mod:`lasres.ops.shape`, the JAX implementation in
:mod:`lasres.ops.jax.pool`.
"""
from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.variable import TensorVariable

from ._args import float_tensor, int_pair
from .pool_numpy import pool2d_forward_numpy, pool2d_grad_grad_numpy, pool2d_grad_numpy
from .shape import PoolLength, pool_output_length

__all__ = ["pool2d", "Pool2d", "Pool2dGrad", "Pool2dGradGrad", "PoolLength",
           "pool_output_length"]

MODES = ("max", "sum", "average_inc_pad", "average_exc_pad")


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
        self.ws = int_pair(ws, "ws")
        self.stride = self.ws if stride is None else int_pair(stride, "stride")
        self.pad = int_pair(pad, "pad")
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


class Pool2d(_PoolOpBase):
    """Forward 2-d pooling of a 4-d (N, C, H, W) input.

    See :class:`_PoolOpBase` for the parameters and :func:`pool2d`.
    """

    def make_node(self, input):
        x = float_tensor(input, "input", 4)
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
        x = float_tensor(input, "input", 4)
        n_args = 2 if self.mode == "max" else 1
        if len(args) != n_args:
            raise TypeError(f"Pool2dGrad(mode={self.mode!r}) takes "
                            f"{'(input, output, output_grad)' if n_args == 2 else '(input, output_grad)'}")
        args = [float_tensor(a, "output" if k < n_args - 1 else "output_grad", 4)
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
        x, z, ggx = (float_tensor(v, name, 4) for v, name in
                     ((input, "input"), (output, "output"), (ggx, "ggx")))
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


def pool2d(input: Any, ws: Any = (2, 2), stride: Any = None, pad: Any = (0, 0), mode: str = "max",
           ignore_border: bool = True) -> TensorVariable:
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
