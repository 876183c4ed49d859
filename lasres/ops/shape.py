"""Output lengths of convolutions and poolings, and the shape inputs of the
gradient ops: the one place for each shape rule of lasres's ops.

* :func:`conv_output_length` and :func:`pool_output_length` are the formulas;
  they work on Python ints, PyTensor scalars and (traced) JAX scalars.
* :class:`ConvLength` and :class:`PoolLength` are scalar shape ops built on
  them, used by the ops' ``infer_shape`` instead of chains of integer ops,
  which the JAX backend would fuse into traced array computations; computing
  with Python integers when the inputs are concrete keeps shapes static under
  ``jax.jit``.
* A gradient op is given the spatial shape it reconstructs as a *shape
  input*: an integer vector, or an ``(n + 2)``-d "shape donor" tensor whose
  trailing axes give it (only its shape is read, which keeps the shape static
  for the JAX backend).  :func:`shape_arg` makes one, the other functions read
  it statically, symbolically and at run time.
"""
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply, Constant
from pytensor.graph.op import Op
from pytensor.graph.utils import MethodNotDefined
from pytensor.link.c.op import COp
from pytensor.tensor.type import integer_dtypes
from pytensor.tensor.variable import TensorVariable

from ._args import int64_scalar, resolve_pad

__all__ = ["conv_output_length", "pool_output_length", "conv_output_shape", "ConvLength",
           "PoolLength", "shape_arg", "as_shape_input", "shape_input_static",
           "shape_input_symbolic", "shape_input_value", "check_topgrad",
           "broadcast_pattern", "broadcast_to_axes", "to_blocked", "from_blocked"]


def broadcast_pattern(ndim: int, axes: Sequence[int]) -> list:
    """The ``dimshuffle`` pattern that broadcasts a parameter of the axes of
    an ``ndim``-d tensor not in ``axes`` (a batch norm's gamma, a bias
    shared over ``axes``) back against the tensor."""
    pattern, k = [], 0
    for d in range(ndim):
        if d in axes:
            pattern.append("x")
        else:
            pattern.append(k)
            k += 1
    return pattern


def broadcast_to_axes(p: Any, ndim: int, axes: Sequence[int]) -> Any:
    """The same broadcast for an array (NumPy or JAX): ``p`` reshaped with
    length-1 axes at ``axes``."""
    shape = [1] * ndim
    kept = [d for d in range(ndim) if d not in axes]
    for d, s in zip(kept, p.shape):
        shape[d] = s
    return p.reshape(shape)


def conv_output_length(length: Any, filter_size: Any, stride: int = 1, pad: Any = 0,
                       dilation: int = 1) -> Any:
    """Output length of a convolution along one axis.

    Parameters
    ----------
    length : int or scalar
        Input length.
    filter_size : int or scalar
        Filter length.
    stride : int
        Stride.
    pad : int or scalar
        Zero padding added to both ends.
    dilation : int
        Spacing of the filter taps.

    Returns
    -------
    int or scalar
        ``(length + 2 * pad - (filter_size - 1) * dilation - 1) // stride + 1``.
    """
    extent = filter_size if dilation == 1 else (filter_size - 1) * dilation + 1
    return (length + 2 * pad - extent) // stride + 1


def _max(value: Any, floor: int) -> Any:
    """``max(floor, value)`` for ints, PyTensor and JAX scalars alike."""
    if isinstance(value, (int, np.integer)):
        return max(floor, int(value))
    value = value - floor
    return (value + abs(value)) // 2 + floor


def pool_output_length(length: Any, ws: int, stride: int, pad: int, ignore_border: bool) -> Any:
    """Output length of a pooling along one axis (Theano's rule).

    Parameters
    ----------
    length : int or scalar
        Input length.
    ws, stride, pad : int
        Window size, stride and padding on each side.
    ignore_border : bool
        False keeps a partial window at the end (``pad`` must be 0).

    Returns
    -------
    int or scalar
    """
    if ignore_border:
        return _max(conv_output_length(length, ws, stride, pad), 0)
    if stride >= ws:
        return (length - 1) // stride + 1
    return _max((length - 1 - ws + stride) // stride, 0) + 1


def conv_output_shape(in_shape: Sequence[Optional[int]], k_shape: Sequence[Optional[int]],
                      stride: Sequence[int], pad: Any,
                      dilation: Optional[Sequence[int]] = None) -> Tuple[Optional[int], ...]:
    """Static output shape of a convolution: an int per axis where the input
    and filter lengths are known, None elsewhere.

    Parameters
    ----------
    in_shape, k_shape : sequence of int or None
        Input and filter lengths per axis.
    stride : sequence of int
    pad : sequence of int, or 'same' / 'full'
    dilation : sequence of int, optional

    Raises
    ------
    ValueError
        An output length is provably below 1.
    """
    n = len(in_shape)
    dilation = (1,) * n if dilation is None else tuple(dilation)
    out = []
    for a in range(n):
        length, k = in_shape[a], k_shape[a]
        if length is None or k is None:
            out.append(None)
            continue
        p = resolve_pad(pad, (k,), (dilation[a],))[0] if isinstance(pad, str) else pad[a]
        o = conv_output_length(length, k, stride[a], p, dilation[a])
        if o < 1:
            dil = f", dilation {tuple(dilation)}" if any(d != 1 for d in dilation) else ""
            raise ValueError(f"convolution output would be empty: input {tuple(in_shape)}, "
                             f"filter {tuple(k_shape)}, stride {tuple(stride)}, pad {pad}{dil}")
        out.append(int(o))
    return tuple(out)


class ConvLength(COp):
    """Output length of a convolution along one axis, as a scalar shape op.

    Parameters
    ----------
    stride : int
    pad : int or {'valid', 'same', 'half', 'full'}
    dilation : int

    Inputs are the input length and the filter length (integer scalars); the
    output is an int64 scalar. A gradient graph holds one per convolution
    and axis where the spatial shape is not static; its C code spares the
    C backend a Python call each (Python's floor division, as ``perform``).
    """

    __props__ = ("stride", "pad", "dilation")

    def __init__(self, stride: int, pad: Any, dilation: int = 1):
        self.stride = int(stride)
        self.pad = pad if isinstance(pad, str) else int(pad)
        self.dilation = int(dilation)

    def make_node(self, length, kernel):
        inputs = [int64_scalar(v) for v in (length, kernel)]
        if any(v.ndim != 0 for v in inputs):
            raise TypeError(f"{type(self).__name__} takes two integer scalars")
        return Apply(self, inputs, [pt.lscalar()])

    def length(self, length: Any, kernel: Any) -> Any:
        """The output length (works on ints and on array scalars)."""
        (pad,) = resolve_pad(self.pad, (kernel,), (self.dilation,)) \
            if isinstance(self.pad, str) else (self.pad,)
        return conv_output_length(length, kernel, self.stride, pad, self.dilation)

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(self.length(int(inputs[0]), int(inputs[1])), dtype="int64")

    def c_support_code(self, **kwargs):
        return ("static npy_int64 lr_floordiv(npy_int64 a, npy_int64 b) {\n"
                "    npy_int64 q = a / b;\n"
                "    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;\n}\n")

    def c_code(self, node, name, inputs, outputs, sub):
        length, kernel = inputs
        (z,) = outputs
        d, s = self.dilation, self.stride
        extent = "k" if d == 1 else f"(k - 1) * {d} + 1"
        pads = {"valid": "0", "same": "lr_floordiv(e, 2)", "half": "lr_floordiv(e, 2)",
                "full": "(e - 1)"}
        if isinstance(self.pad, str) and self.pad not in pads:
            raise MethodNotDefined(f"ConvLength: pad {self.pad!r}")   # perform says why
        pad = pads.get(self.pad, str(self.pad))
        return f"""
        {{
            const npy_int64 n = *(npy_int64 *)PyArray_DATA({length});
            const npy_int64 k = *(npy_int64 *)PyArray_DATA({kernel});
            const npy_int64 e = {extent};
            const npy_int64 p = {pad};
            (void)p;
            if (!{z}) {{
                {z} = (PyArrayObject *)PyArray_EMPTY(0, NULL, NPY_INT64, 0);
                if (!{z}) {{ {sub['fail']} }}
            }}
            *(npy_int64 *)PyArray_DATA({z}) = lr_floordiv(n + 2 * p - e, {s}) + 1;
        }}
        """

    def c_code_cache_version(self):
        return (1,)

    def infer_shape(self, fgraph, node, in_shapes):
        return [()]

    def connection_pattern(self, node):
        return [[False], [False]]

    def pullback(self, inputs, outputs, output_grads):
        return [disconnected_type(), disconnected_type()]


class PoolLength(Op):
    """Output length of a pooling along one axis, as a scalar shape op.

    Parameters as for :func:`pool_output_length`; the input is the input
    length, the output an int64 scalar.
    """

    __props__ = ("ws", "stride", "pad", "ignore_border")

    def __init__(self, ws: int, stride: int, pad: int, ignore_border: bool):
        self.ws, self.stride, self.pad = int(ws), int(stride), int(pad)
        self.ignore_border = bool(ignore_border)

    def make_node(self, length):
        length = int64_scalar(length)
        if length.ndim != 0:
            raise TypeError("PoolLength takes an integer scalar")
        return Apply(self, [length], [pt.lscalar()])

    def length(self, length: Any) -> Any:
        """The output length (works on ints and on array scalars)."""
        return pool_output_length(length, self.ws, self.stride, self.pad, self.ignore_border)

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(self.length(int(inputs[0])), dtype="int64")

    def infer_shape(self, fgraph, node, in_shapes):
        return [()]

    def connection_pattern(self, node):
        return [[False]]

    def pullback(self, inputs, outputs, output_grads):
        return [disconnected_type()]


# --- shape inputs of the gradient ops ------------------------------------------

def shape_arg(var: TensorVariable) -> TensorVariable:
    """Shape input for a gradient op reconstructing the spatial shape of
    ``var``: a constant ``int64`` vector when that shape is static, otherwise
    ``var`` itself (a shape donor)."""
    static = var.type.shape[2:]
    if any(s is None for s in static):
        return var
    return pt.constant(np.asarray(static, dtype="int64"))


def as_shape_input(shape: Any, n: int) -> TensorVariable:
    """Check and convert the shape input of a gradient op with ``n`` spatial
    axes: an integer vector of ``n`` entries (a sequence of ints or scalars is
    accepted) or an ``(n + 2)``-d tensor.

    Raises
    ------
    TypeError, ValueError
        ``shape`` is neither.
    """
    if isinstance(shape, (list, tuple)) and any(isinstance(s, pt.Variable) for s in shape):
        shape = pt.stack([pt.cast(s, "int64") for s in shape])
    elif isinstance(shape, (list, tuple, np.ndarray)) and np.ndim(shape) == 1:
        shape = pt.constant(np.asarray(shape, dtype="int64"))
    shape = pt.as_tensor_variable(shape)
    if shape.ndim == n + 2:
        return shape
    if shape.ndim != 1 or shape.dtype not in integer_dtypes:
        raise TypeError(f"shape must be an integer vector of {n} entries or a {n + 2}-d "
                        f"tensor whose trailing axes give it, got {shape.type}")
    if shape.type.shape[0] not in (None, n):
        raise ValueError(f"shape must have {n} entries, got {shape.type}")
    return shape


def shape_input_static(shape: TensorVariable, n: int) -> Tuple[Optional[int], ...]:
    """Static value of a shape input (None where unknown)."""
    if shape.ndim == n + 2:
        return tuple(None if s is None else int(s) for s in shape.type.shape[2:])
    if isinstance(shape, Constant):
        return tuple(int(v) for v in shape.data)
    return (None,) * n


def shape_input_symbolic(node: Apply, index: int, in_shapes, n: int) -> tuple:
    """Symbolic spatial shape held by the shape input ``node.inputs[index]``."""
    shape = node.inputs[index]
    if shape.ndim == n + 2:
        return tuple(in_shapes[index][2:])
    if isinstance(shape, Constant):
        return tuple(int(v) for v in shape.data)
    return tuple(shape[i] for i in range(n))


def shape_input_value(value: np.ndarray, n: int) -> Tuple[int, ...]:
    """Run-time spatial shape from the value of a shape input."""
    if value.ndim == n + 2:
        return tuple(value.shape[2:])
    return tuple(int(v) for v in value)


def check_topgrad(got: Sequence[Optional[int]], want: Sequence[Optional[int]], what: str) -> None:
    """Check the static spatial shape ``got`` of a gradient op's output
    gradient against the output shape ``want`` of the forward convolution
    (entries None are unknown and pass).

    Raises
    ------
    ValueError
        A known length differs; ``what`` names the shape input.
    """
    for g, w in zip(got, want):
        if g is not None and w is not None and g != w:
            raise ValueError(f"topgrad of spatial shape {tuple(got)} does not fit {what}")


def to_blocked(x: np.ndarray, block: int) -> np.ndarray:
    """NCHW ``x`` in the channel-blocked layout ``(N, C/B, H, W, B)`` of
    oneDNN's nChw8c / nChw16c (channel ``c`` at ``[:, c // B, :, :, c % B]``),
    C-contiguous; ``C`` must be a multiple of ``block``."""
    n, c, h, w = x.shape
    if c % block:
        raise ValueError(f"{c} channels are not a whole number of blocks of {block}")
    return np.ascontiguousarray(x.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2))


def from_blocked(x5: np.ndarray) -> np.ndarray:
    """The NCHW array of a channel-blocked ``(N, C/B, H, W, B)`` one (C-contiguous)."""
    n, cb, h, w, b = x5.shape
    return np.ascontiguousarray(x5.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w))
