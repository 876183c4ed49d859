"""N-dimensional (1-d, 2-d, 3-d, ...) convolution ops with dilation.

The three ops mirror Theano's ``AbstractConv{2,3}d`` family for any number
of spatial axes ``n`` (inputs are ``(batch, channels, *spatial)``):

* :class:`ConvNd` -- the forward convolution,
* :class:`ConvNdGradInputs` -- its gradient with respect to the input (a
  transposed convolution, used by ``TransposedConv3DLayer``),
* :class:`ConvNdGradWeights` -- its gradient with respect to the filters.

Each op's gradient is expressed through the others, so the family is closed
under differentiation.  Every op takes ``stride``, ``pad`` (zero padding on
both sides), ``dilation`` (spacing of the filter taps) and ``filter_flip``
(True: convolution, False: cross-correlation), all resolved to integer
tuples of length ``n``.

The NumPy kernels are in :mod:`lasres.ops.convnd_numpy`, the shape rules in
:mod:`lasres.ops.shape`; the JAX implementation
(:mod:`lasres.ops.jax.convnd`) uses ``jax.lax.conv_general_dilated`` and its
VJPs.
"""
from typing import Any, Optional, Sequence

import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.variable import TensorVariable

from ._args import cast, float_tensor, int_tuple, resolve_pad
from .convnd_numpy import (convnd_forward_numpy, convnd_grad_inputs_numpy,
                           convnd_grad_weights_numpy)
from .shape import (ConvLength, as_shape_input, check_topgrad, conv_output_length,
                    conv_output_shape, shape_arg, shape_input_static, shape_input_symbolic,
                    shape_input_value)

__all__ = ["convnd", "conv3d", "ConvNd", "ConvNdGradInputs", "ConvNdGradWeights",
           "ConvNdLength", "convnd_output_length"]

#: The output length of one axis (:func:`lasres.ops.shape.conv_output_length`).
convnd_output_length = conv_output_length

#: The scalar shape op of one axis (:class:`lasres.ops.shape.ConvLength`).
ConvNdLength = ConvLength


# ---------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------

class _ConvNdBase(Op):
    """Shared parameters of the N-d convolution ops.

    Parameters
    ----------
    n : int
        Number of spatial axes.
    stride, pad, dilation : int or tuple of ``n`` ints
        Subsampling, zero padding on both sides and filter dilation.
    filter_flip : bool
        True for a convolution (flipped filters), False for a correlation.
    """

    __props__ = ("n", "stride", "pad", "dilation", "filter_flip")

    def __init__(self, n, stride=1, pad=0, dilation=1, filter_flip=True):
        self.n = int(n)
        if self.n < 1:
            raise ValueError(f"n must be positive, got {n}")
        self.stride = int_tuple(stride, self.n, "stride", 1)
        self.pad = int_tuple(pad, self.n, "pad", 0)
        self.dilation = int_tuple(dilation, self.n, "dilation", 1)
        self.filter_flip = bool(filter_flip)

    def _kwargs(self):
        return dict(n=self.n, stride=self.stride, pad=self.pad, dilation=self.dilation,
                    filter_flip=self.filter_flip)

    def _np_kwargs(self):
        return dict(stride=self.stride, pad=self.pad, dilation=self.dilation,
                    filter_flip=self.filter_flip)

    def _out(self, in_shape, k_shape):
        """Static output spatial shape: ints where both are known, None otherwise."""
        return conv_output_shape(in_shape, k_shape, self.stride, self.pad, self.dilation)


class ConvNd(_ConvNdBase):
    """Forward N-d convolution.

    Inputs: ``input`` ``(N, C, *in)`` and ``filters`` ``(F, C, *k)`` of one
    float dtype (the filters are cast).  Output: ``(N, F, *out)`` with
    ``out = (in + 2 * pad - (k - 1) * dilation - 1) // stride + 1``.
    """

    def make_node(self, input, filters):
        x = float_tensor(input, "input", self.n + 2)
        w = cast(float_tensor(filters, "filters", self.n + 2), x.dtype)
        xs, ws = x.type.shape, w.type.shape
        if None not in (xs[1], ws[1]) and xs[1] != ws[1]:
            raise ValueError(f"input has {xs[1]} channels but the filters expect {ws[1]}")
        out = pt.tensor(dtype=x.dtype, shape=(xs[0], ws[0]) + self._out(xs[2:], ws[2:]))
        return Apply(self, [x, w], [out])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = convnd_forward_numpy(inputs[0], inputs[1], **self._np_kwargs())

    def infer_shape(self, fgraph, node, in_shapes):
        xs, ws = in_shapes
        static = node.outputs[0].type.shape[2:]
        sym = tuple(ConvNdLength(s, p, d)(i, k) for i, k, s, p, d in
                    zip(xs[2:], ws[2:], self.stride, self.pad, self.dilation))
        return [(xs[0], ws[0]) + tuple(s if s is not None else v for s, v in zip(static, sym))]

    def pullback(self, inputs, outputs, output_grads):
        x, w = inputs
        (gz,) = output_grads
        gx = ConvNdGradInputs(**self._kwargs())(gz, w, shape_arg(x))
        gw = ConvNdGradWeights(**self._kwargs())(x, gz, shape_arg(w))
        return [gx, gw]


class ConvNdGradInputs(_ConvNdBase):
    """Gradient of :class:`ConvNd` with respect to its input (a transposed
    convolution).

    Inputs: ``topgrad`` ``(N, F, *out)``, ``filters`` ``(F, C, *k)`` and
    ``shape``, the spatial shape of the input to reconstruct: an integer
    vector of ``n`` entries, or an ``(n + 2)``-d tensor whose trailing axes
    give it.  Output: ``(N, C, *shape)``.
    """

    def make_node(self, topgrad, filters, shape):
        gz = float_tensor(topgrad, "topgrad", self.n + 2)
        w = cast(float_tensor(filters, "filters", self.n + 2), gz.dtype)
        shape = as_shape_input(shape, self.n)
        static = shape_input_static(shape, self.n)
        gs, ws = gz.type.shape, w.type.shape
        if None not in (gs[1], ws[0]) and gs[1] != ws[0]:
            raise ValueError(f"topgrad has {gs[1]} channels but the filters have {ws[0]}")
        check_topgrad(gs[2:], self._out(static, ws[2:]), f"an input of shape {static}")
        out = pt.tensor(dtype=gz.dtype, shape=(gs[0], ws[1]) + static)
        return Apply(self, [gz, w, shape], [out])

    def perform(self, node, inputs, outputs):
        gz, w, shape = inputs
        outputs[0][0] = convnd_grad_inputs_numpy(gz, w, shape_input_value(shape, self.n),
                                                 **self._np_kwargs())

    def infer_shape(self, fgraph, node, in_shapes):
        return [(in_shapes[0][0], in_shapes[1][1]) + shape_input_symbolic(node, 2, in_shapes, self.n)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        gz, w, _ = inputs
        (g,) = output_grads
        d_gz = ConvNd(**self._kwargs())(g, w)
        d_w = ConvNdGradWeights(**self._kwargs())(g, gz, shape_arg(w))
        return [d_gz, d_w, disconnected_type()]


class ConvNdGradWeights(_ConvNdBase):
    """Gradient of :class:`ConvNd` with respect to its filters.

    Inputs: ``input`` ``(N, C, *in)``, ``topgrad`` ``(N, F, *out)`` and
    ``shape``, the filter spatial shape (as for :class:`ConvNdGradInputs`).
    Output: ``(F, C, *shape)``.
    """

    def make_node(self, input, topgrad, shape):
        x = float_tensor(input, "input", self.n + 2)
        gz = cast(float_tensor(topgrad, "topgrad", self.n + 2), x.dtype)
        shape = as_shape_input(shape, self.n)
        static = shape_input_static(shape, self.n)
        check_topgrad(gz.type.shape[2:], self._out(x.type.shape[2:], static),
                      f"filters of shape {static}")
        out = pt.tensor(dtype=x.dtype, shape=(gz.type.shape[1], x.type.shape[1]) + static)
        return Apply(self, [x, gz, shape], [out])

    def perform(self, node, inputs, outputs):
        x, gz, shape = inputs
        outputs[0][0] = convnd_grad_weights_numpy(x, gz, shape_input_value(shape, self.n),
                                                  **self._np_kwargs())

    def infer_shape(self, fgraph, node, in_shapes):
        return [(in_shapes[1][1], in_shapes[0][1]) + shape_input_symbolic(node, 2, in_shapes, self.n)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        x, gz, _ = inputs
        (g,) = output_grads
        d_x = ConvNdGradInputs(**self._kwargs())(gz, g, shape_arg(x))
        d_gz = ConvNd(**self._kwargs())(x, g)
        return [d_x, d_gz, disconnected_type()]


def convnd(input: Any, filters: Any, stride: Any = 1, pad: Any = 0, dilation: Any = 1,
           filter_flip: bool = True, filter_shape: Optional[Sequence] = None) -> TensorVariable:
    """N-d convolution of ``(N, C, *spatial)`` inputs, ``n = input.ndim - 2``.

    Parameters
    ----------
    input : TensorVariable, shape (N, C, *in)
    filters : TensorVariable, shape (F, C, *k)
    stride, dilation : int or tuple of int
    pad : int, tuple of int, 'valid', 'same' (alias 'half') or 'full'
        The strings need the filter shape: the static shape of ``filters`` or
        ``filter_shape``.
    filter_flip : bool
        True (default) convolves, False correlates.
    filter_shape : tuple of int, optional

    Returns
    -------
    TensorVariable, shape (N, F, *out)
    """
    x = pt.as_tensor_variable(input)
    n = x.ndim - 2
    dilation = int_tuple(dilation, n, "dilation", 1)
    if isinstance(pad, str):
        k_shape = tuple(filter_shape[2:]) if filter_shape is not None else \
            pt.as_tensor_variable(filters).type.shape[2:]
        if any(k is None for k in k_shape):
            raise ValueError(f"pad={pad!r} needs a known filter shape")
        pad = resolve_pad(pad, k_shape, dilation)
    return ConvNd(n, stride, pad, dilation, filter_flip)(x, filters)


def conv3d(input: Any, filters: Any, input_shape: Optional[Sequence] = None,
           filter_shape: Optional[Sequence] = None, border_mode: Any = "valid",
           subsample: Any = (1, 1, 1), filter_flip: bool = True,
           filter_dilation: Any = (1, 1, 1)) -> TensorVariable:
    """3-d convolution with the keyword interface of Theano's
    ``theano.tensor.nnet.conv3d`` (what Lasagne's ``Conv3DLayer`` calls).

    Parameters
    ----------
    input : TensorVariable, shape (N, C, D, H, W)
    filters : TensorVariable, shape (F, C, kd, kh, kw)
    input_shape : tuple, optional
        Accepted and ignored (shapes are inferred).
    filter_shape : tuple, optional
        Needed with a string ``border_mode`` when ``filters`` has no static
        shape.
    border_mode : 'valid', 'full', 'half', int or tuple of three ints
    subsample : tuple of three ints
        Strides.
    filter_flip : bool
        True convolves, False correlates.
    filter_dilation : tuple of three ints

    Returns
    -------
    TensorVariable, shape (N, F, D', H', W')
    """
    if isinstance(border_mode, str) and filter_shape is None:
        filter_shape = (None, None) + pt.as_tensor_variable(filters).type.shape[2:]
    return convnd(input, filters, stride=subsample, pad=border_mode, dilation=filter_dilation,
                  filter_flip=filter_flip, filter_shape=filter_shape)
