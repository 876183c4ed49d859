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

NumPy implementation: one strided view of the padded input per filter tap
is copied into an ``im2col`` block ``(N, C, taps, *out)`` that a single
``tensordot`` contracts with the filters; the input gradient scatters the
``tensordot`` of the output gradient back tap by tap.  The JAX implementation
(:mod:`lasres.ops.jax.convnd`) uses ``jax.lax.conv_general_dilated`` and its
VJPs.
"""
import itertools

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply, Constant
from pytensor.graph.op import Op
from pytensor.tensor.type import integer_dtypes

from ._args import cast as _cast, float_tensor as _float_tensor

__all__ = ["convnd", "conv3d", "ConvNd", "ConvNdGradInputs", "ConvNdGradWeights",
           "ConvNdLength", "convnd_output_length"]


def convnd_output_length(length, filter_size, stride=1, pad=0, dilation=1):
    """Output length of a convolution along one axis.

    ``(length + 2 * pad - (filter_size - 1) * dilation - 1) // stride + 1``
    (works on ints and on symbolic scalars).
    """
    return (length + 2 * pad - (filter_size - 1) * dilation - 1) // stride + 1


def _int_tuple(value, n, name, minimum):
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * n
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    if len(value) != n or not all(isinstance(v, (int, np.integer)) for v in value):
        raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")
    value = tuple(int(v) for v in value)
    if min(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _shape_input(shape, n):
    """The spatial-shape input of a gradient op: an int vector of ``n``
    entries, or an ``(n + 2)``-d tensor whose trailing axes give it (a shape
    donor, which keeps the shape static for the JAX backend)."""
    if isinstance(shape, (list, tuple)) and not any(isinstance(s, pt.Variable) for s in shape):
        shape = pt.constant(np.asarray(shape, dtype="int64"))
    elif isinstance(shape, (list, tuple)):
        shape = pt.stack([pt.cast(s, "int64") for s in shape])
    elif isinstance(shape, np.ndarray):
        shape = pt.constant(shape.astype("int64"))
    shape = pt.as_tensor_variable(shape)
    if shape.ndim == n + 2:
        return shape
    if shape.ndim != 1 or shape.dtype not in integer_dtypes:
        raise TypeError(f"shape must be an integer vector of {n} entries or a {n + 2}-d "
                        f"tensor, got {shape.type}")
    if shape.type.shape[0] not in (None, n):
        raise ValueError(f"shape must have {n} entries, got {shape.type}")
    return shape


def _shape_static(shape, n):
    if shape.ndim == n + 2:
        static = shape.type.shape[2:]
        return tuple(None if s is None else int(s) for s in static)
    if isinstance(shape, Constant):
        return tuple(int(v) for v in shape.data)
    return (None,) * n


def _shape_symbolic(node, index, in_shapes, n):
    shape = node.inputs[index]
    if shape.ndim == n + 2:
        return tuple(in_shapes[index][2:])
    if isinstance(shape, Constant):
        return tuple(int(v) for v in shape.data)
    return tuple(shape[i] for i in range(n))


def _shape_value(value, n):
    if value.ndim == n + 2:
        return tuple(value.shape[2:])
    return tuple(int(v) for v in value)


def _shape_arg(var, n):
    """Shape argument for a gradient op: a constant when static, else ``var``."""
    static = var.type.shape[2:]
    if any(s is None for s in static):
        return var
    return pt.constant(np.asarray(static, dtype="int64"))


def _int64_scalar(value):
    if isinstance(value, (int, np.integer)):
        return pt.constant(int(value), dtype="int64")
    return pt.cast(pt.as_tensor_variable(value), "int64")


class ConvNdLength(Op):
    """Output length of a convolution along one axis, as a scalar shape op
    (inputs: input length and filter length; output: int64 scalar).

    The ``infer_shape`` of the ops uses it instead of integer arithmetic,
    which the JAX backend would turn into traced array values; its JAX
    implementation computes with Python integers, so shapes stay static
    under ``jax.jit``.
    """

    __props__ = ("stride", "pad", "dilation")

    def __init__(self, stride, pad, dilation):
        self.stride, self.pad, self.dilation = int(stride), int(pad), int(dilation)

    def make_node(self, length, kernel):
        inputs = [_int64_scalar(v) for v in (length, kernel)]
        if any(v.ndim != 0 for v in inputs):
            raise TypeError("ConvNdLength takes two integer scalars")
        return Apply(self, inputs, [pt.lscalar()])

    def length(self, length, kernel):
        """The output length (ints or array scalars)."""
        return convnd_output_length(length, kernel, self.stride, self.pad, self.dilation)

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(self.length(int(inputs[0]), int(inputs[1])), dtype="int64")

    def infer_shape(self, fgraph, node, in_shapes):
        return [()]

    def connection_pattern(self, node):
        return [[False], [False]]

    def pullback(self, inputs, outputs, output_grads):
        return [disconnected_type(), disconnected_type()]


# ---------------------------------------------------------------------------
# NumPy kernels
# ---------------------------------------------------------------------------

def _out_shape(in_shape, k_shape, stride, pad, dilation):
    out = tuple(convnd_output_length(i, k, s, p, d)
                for i, k, s, p, d in zip(in_shape, k_shape, stride, pad, dilation))
    if min(out) < 1:
        raise ValueError(f"convolution output would be empty: input {tuple(in_shape)}, filter "
                         f"{tuple(k_shape)}, stride {stride}, pad {pad}, dilation {dilation}")
    return out


def _tap_slices(k_shape, out, stride, dilation):
    """For every filter tap (row-major order): the strided slices of the
    padded input it reads."""
    for tap in itertools.product(*(range(k) for k in k_shape)):
        yield tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                    for t, o, s, d in zip(tap, out, stride, dilation))


def _effective(w, flip):
    n = w.ndim - 2
    return w[(Ellipsis,) + (slice(None, None, -1),) * n] if flip else w


def _im2col(x, k_shape, stride, pad, dilation):
    """``(N, C, taps, *out)`` block of the zero-padded input ``x``."""
    n = x.ndim - 2
    out = _out_shape(x.shape[2:], k_shape, stride, pad, dilation)
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple((p, p) for p in pad)) if any(pad) else x
    taps = int(np.prod(k_shape))
    cols = np.empty(x.shape[:2] + (taps,) + out, x.dtype)
    for t, sl in enumerate(_tap_slices(k_shape, out, stride, dilation)):
        cols[:, :, t] = xp[(slice(None), slice(None)) + sl]
    return cols, out, n


def convnd_forward_numpy(x, w, stride, pad, dilation, filter_flip):
    """NumPy forward convolution (``perform`` of :class:`ConvNd`)."""
    f, c = w.shape[:2]
    if x.shape[1] != c:
        raise ValueError(f"input has {x.shape[1]} channels but the filters expect {c}")
    cols, out, n = _im2col(x, w.shape[2:], stride, pad, dilation)
    k = np.ascontiguousarray(_effective(w, filter_flip), dtype=x.dtype).reshape(f, c, -1)
    res = np.tensordot(cols, k, axes=([1, 2], [1, 2]))            # (N, *out, F)
    return np.ascontiguousarray(np.moveaxis(res, -1, 1))


def convnd_grad_inputs_numpy(gz, w, in_shape, stride, pad, dilation, filter_flip):
    """NumPy input gradient (``perform`` of :class:`ConvNdGradInputs`)."""
    f, c = w.shape[:2]
    if gz.shape[1] != f:
        raise ValueError(f"output gradient has {gz.shape[1]} channels but the filters have {f}")
    k_shape = w.shape[2:]
    out = _out_shape(in_shape, k_shape, stride, pad, dilation)
    if tuple(gz.shape[2:]) != out:
        raise ValueError(f"output gradient of spatial shape {tuple(gz.shape[2:])} does not fit "
                         f"an input of shape {tuple(in_shape)} (expected {out})")
    k = np.ascontiguousarray(_effective(w, filter_flip), dtype=gz.dtype).reshape(f, c, -1)
    dcols = np.tensordot(gz, k, axes=([1], [0]))                   # (N, *out, C, taps)
    dcols = np.moveaxis(dcols, (-2, -1), (1, 2))                   # (N, C, taps, *out)
    padded = tuple(i + 2 * p for i, p in zip(in_shape, pad))
    dxp = np.zeros(gz.shape[:1] + (c,) + padded, gz.dtype)
    for t, sl in enumerate(_tap_slices(k_shape, out, stride, dilation)):
        dxp[(slice(None), slice(None)) + sl] += dcols[:, :, t]
    crop = tuple(slice(p, p + i) for p, i in zip(pad, in_shape))
    return np.ascontiguousarray(dxp[(slice(None), slice(None)) + crop])


def convnd_grad_weights_numpy(x, gz, k_shape, stride, pad, dilation, filter_flip):
    """NumPy filter gradient (``perform`` of :class:`ConvNdGradWeights`)."""
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
    return np.ascontiguousarray(_effective(dw, filter_flip))


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
        self.stride = _int_tuple(stride, self.n, "stride", 1)
        self.pad = _int_tuple(pad, self.n, "pad", 0)
        self.dilation = _int_tuple(dilation, self.n, "dilation", 1)
        self.filter_flip = bool(filter_flip)

    def _kwargs(self):
        return dict(n=self.n, stride=self.stride, pad=self.pad, dilation=self.dilation,
                    filter_flip=self.filter_flip)

    def _np_kwargs(self):
        return dict(stride=self.stride, pad=self.pad, dilation=self.dilation,
                    filter_flip=self.filter_flip)

    def _out(self, in_shape, k_shape):
        """Output spatial shape: ints where both are known, None or symbolic otherwise."""
        out = []
        for i, k, s, p, d in zip(in_shape, k_shape, self.stride, self.pad, self.dilation):
            if i is None or k is None:
                out.append(None)
                continue
            o = convnd_output_length(i, k, s, p, d)
            if isinstance(o, (int, np.integer)) and o < 1:
                raise ValueError(f"convolution output would be empty: input {tuple(in_shape)},"
                                 f" filter {tuple(k_shape)}, stride {self.stride}, "
                                 f"pad {self.pad}, dilation {self.dilation}")
            out.append(o)
        return tuple(out)

    def grad(self, inputs, output_grads):
        """Theano-style alias of :meth:`pullback`."""
        return self.pullback(inputs, [self(*inputs)], output_grads)


class ConvNd(_ConvNdBase):
    """Forward N-d convolution.

    Inputs: ``input`` ``(N, C, *in)`` and ``filters`` ``(F, C, *k)`` of one
    float dtype (the filters are cast).  Output: ``(N, F, *out)`` with
    ``out = (in + 2 * pad - (k - 1) * dilation - 1) // stride + 1``.
    """

    def make_node(self, input, filters):
        x = _float_tensor(input, "input", self.n + 2)
        w = _cast(_float_tensor(filters, "filters", self.n + 2), x.dtype)
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
        gx = ConvNdGradInputs(**self._kwargs())(gz, w, _shape_arg(x, self.n))
        gw = ConvNdGradWeights(**self._kwargs())(x, gz, _shape_arg(w, self.n))
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
        gz = _float_tensor(topgrad, "topgrad", self.n + 2)
        w = _cast(_float_tensor(filters, "filters", self.n + 2), gz.dtype)
        shape = _shape_input(shape, self.n)
        static = _shape_static(shape, self.n)
        gs, ws = gz.type.shape, w.type.shape
        if None not in (gs[1], ws[0]) and gs[1] != ws[0]:
            raise ValueError(f"topgrad has {gs[1]} channels but the filters have {ws[0]}")
        for got, want in zip(gs[2:], self._out(static, ws[2:])):
            if None not in (got, want) and got != want:
                raise ValueError(f"topgrad of spatial shape {gs[2:]} does not fit an input of "
                                 f"shape {static}")
        out = pt.tensor(dtype=gz.dtype, shape=(gs[0], ws[1]) + static)
        return Apply(self, [gz, w, shape], [out])

    def perform(self, node, inputs, outputs):
        gz, w, shape = inputs
        outputs[0][0] = convnd_grad_inputs_numpy(gz, w, _shape_value(shape, self.n),
                                                 **self._np_kwargs())

    def infer_shape(self, fgraph, node, in_shapes):
        return [(in_shapes[0][0], in_shapes[1][1]) + _shape_symbolic(node, 2, in_shapes, self.n)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        gz, w, _ = inputs
        (g,) = output_grads
        d_gz = ConvNd(**self._kwargs())(g, w)
        d_w = ConvNdGradWeights(**self._kwargs())(g, gz, _shape_arg(w, self.n))
        return [d_gz, d_w, disconnected_type()]


class ConvNdGradWeights(_ConvNdBase):
    """Gradient of :class:`ConvNd` with respect to its filters.

    Inputs: ``input`` ``(N, C, *in)``, ``topgrad`` ``(N, F, *out)`` and
    ``shape``, the filter spatial shape (as for :class:`ConvNdGradInputs`).
    Output: ``(F, C, *shape)``.
    """

    def make_node(self, input, topgrad, shape):
        x = _float_tensor(input, "input", self.n + 2)
        gz = _cast(_float_tensor(topgrad, "topgrad", self.n + 2), x.dtype)
        shape = _shape_input(shape, self.n)
        static = _shape_static(shape, self.n)
        for got, want in zip(gz.type.shape[2:], self._out(x.type.shape[2:], static)):
            if None not in (got, want) and got != want:
                raise ValueError(f"topgrad of spatial shape {gz.type.shape[2:]} does not fit "
                                 f"filters of shape {static}")
        out = pt.tensor(dtype=x.dtype, shape=(gz.type.shape[1], x.type.shape[1]) + static)
        return Apply(self, [x, gz, shape], [out])

    def perform(self, node, inputs, outputs):
        x, gz, shape = inputs
        outputs[0][0] = convnd_grad_weights_numpy(x, gz, _shape_value(shape, self.n),
                                                  **self._np_kwargs())

    def infer_shape(self, fgraph, node, in_shapes):
        return [(in_shapes[1][1], in_shapes[0][1]) + _shape_symbolic(node, 2, in_shapes, self.n)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        x, gz, _ = inputs
        (g,) = output_grads
        d_x = ConvNdGradInputs(**self._kwargs())(gz, g, _shape_arg(x, self.n))
        d_gz = ConvNd(**self._kwargs())(x, g)
        return [d_x, d_gz, disconnected_type()]


def _resolve_pad(pad, k_shape, dilation):
    n = len(k_shape)
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * n
        eff = [(k - 1) * d + 1 for k, d in zip(k_shape, dilation)]
        if pad in ("same", "half"):
            return tuple(e // 2 for e in eff)
        if pad == "full":
            return tuple(e - 1 for e in eff)
        raise ValueError(f"pad must be 'valid', 'same', 'half', 'full', an int or a tuple of "
                         f"ints, got {pad!r}")
    return pad


def convnd(input, filters, stride=1, pad=0, dilation=1, filter_flip=True, filter_shape=None):
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
    dilation = _int_tuple(dilation, n, "dilation", 1)
    if isinstance(pad, str):
        k_shape = tuple(filter_shape[2:]) if filter_shape is not None else \
            pt.as_tensor_variable(filters).type.shape[2:]
        if any(k is None for k in k_shape):
            raise ValueError(f"pad={pad!r} needs a known filter shape")
        pad = _resolve_pad(pad, k_shape, dilation)
    return ConvNd(n, stride, pad, dilation, filter_flip)(x, filters)


def conv3d(input, filters, input_shape=None, filter_shape=None, border_mode="valid",
           subsample=(1, 1, 1), filter_flip=True, filter_dilation=(1, 1, 1)):
    """3-d convolution with the keyword interface of Theano's
    ``theano.tensor.nnet.conv3d`` (what Lasagne's ``Conv3DLayer`` calls).

    ``border_mode`` is 'valid', 'full', 'half', an int or a tuple of three
    ints; ``input_shape`` is accepted and ignored (shapes are inferred).
    """
    if isinstance(border_mode, str) and filter_shape is None:
        filter_shape = (None, None) + pt.as_tensor_variable(filters).type.shape[2:]
    return convnd(input, filters, stride=subsample, pad=border_mode, dilation=filter_dilation,
                  filter_flip=filter_flip, filter_shape=filter_shape)
