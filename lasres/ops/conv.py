"""Two-dimensional convolution ops (NCHW) with NumPy and JAX implementations.

The three ops mirror Theano's ``AbstractConv2d`` family:

* :class:`Conv2d` -- the forward convolution (optionally with a bias added per
  output channel in the same node),
* :class:`Conv2dGradInputs` -- the gradient with respect to the input
  (a "transposed convolution"),
* :class:`Conv2dGradWeights` -- the gradient with respect to the filters.

The three ops are closed under differentiation (the gradient of each is
expressed through the others), so second derivatives work.

NumPy implementation
--------------------
``perform`` lowers every convolution to GEMMs on an ``im2col`` matrix.  Two
details make it fast on a small CPU:

* The input is copied once into zero-padded *planes*.  For a stride ``s`` the
  padded image is split into ``s * s`` phase planes (space-to-depth), so that
  for every kernel offset ``(i, j)`` the pixels a window reads form, in the
  flattened plane, **one contiguous run** of ``out_h * plane_w`` values.  The
  ``im2col`` matrix is then filled with ``kh * kw`` large block copies (no
  per-pixel or per-row Python work).  The price is a few "garbage" columns per
  output row (``plane_w - out_w``), computed by the GEMM and dropped when the
  result is written out.
* The batch is processed in chunks whose ``im2col`` block fits in the CPU
  cache (see :data:`CHUNK_BYTES`); each chunk needs one GEMM.  This bounds the
  scratch memory and keeps the copies and the GEMM in cache.

The result of the GEMM is ``(F, n, out_h, plane_w)``; a single transposing copy
per chunk writes it to the NCHW output (and adds the bias at the same time).
The weight gradient contracts the same ``im2col`` blocks with the output
gradient (``cols @ gz^T``, the long axis inner in both operands).  The input
gradient of a stride-1 convolution is itself a forward convolution (of the
padded output gradient with the rotated, transposed filters); otherwise the
GEMM runs with the transposed filter matrix and the ``im2col`` gradient is
scattered back with ``kh * kw`` contiguous accumulations (col2im).  1x1
convolutions without padding skip ``im2col``.

JAX implementation
------------------
Registered with PyTensor's ``jax_funcify`` (when JAX is installed) through
``jax.lax.conv_general_dilated``; use ``pytensor.function(..., mode="JAX")``.
"""

import numpy as np

import pytensor.tensor as pt
from pytensor.tensor.type import integer_dtypes
from pytensor.gradient import DisconnectedType, disconnected_type
from pytensor.graph.basic import Apply, Constant
from pytensor.graph.op import Op

from .onednn import OneDNNConvCOp, shape_pair_c

from ._args import cast as _cast, float_tensor as _float_tensor

__all__ = ["conv2d", "Conv2d", "Conv2dGradInputs", "Conv2dGradWeights",
           "ConvLength", "conv_output_length"]

#: Target size in bytes of the im2col block processed by one GEMM.  The batch
#: is split into chunks of as many images as fit (at least one).
CHUNK_BYTES = 1 << 22


# ---------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------

def _int_pair(value, name):
    """Return ``value`` as a pair of Python ints (an int is repeated)."""
    if isinstance(value, (int, np.integer)):
        return (int(value), int(value))
    try:
        pair = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _normalize_stride(stride):
    stride = _int_pair(stride, "stride")
    if min(stride) < 1:
        raise ValueError(f"stride must be positive, got {stride}")
    return stride


def _normalize_pad(pad):
    """Return ``'same'``, ``'full'`` or a pair of non-negative ints."""
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        if pad in ("same", "full"):
            return pad
        raise ValueError(f"pad must be 'valid', 'same', 'full', an int or a pair "
                         f"of ints, got {pad!r}")
    pad = _int_pair(pad, "pad")
    if min(pad) < 0:
        raise ValueError(f"pad must be non-negative, got {pad}")
    return pad


def _resolve_pad(pad, kernel_hw):
    """Resolve ``'same'``/``'full'`` with the kernel size ``kernel_hw``.

    ``kernel_hw`` may hold ints or symbolic scalars.
    """
    if pad == "same":
        return (kernel_hw[0] // 2, kernel_hw[1] // 2)
    if pad == "full":
        return (kernel_hw[0] - 1, kernel_hw[1] - 1)
    return pad


def conv_output_length(length, filter_size, stride, pad):
    """Output length of a convolution along one axis.

    Parameters
    ----------
    length : int or symbolic scalar
        Input length.
    filter_size : int or symbolic scalar
        Kernel length.
    stride : int
        Stride.
    pad : int or symbolic scalar
        Zero padding added to both ends.

    Returns
    -------
    int or symbolic scalar
        ``(length + 2 * pad - filter_size) // stride + 1``.
    """
    return (length + 2 * pad - filter_size) // stride + 1


def _static_hw(var):
    """Static ``(h, w)`` of the trailing axes of a 4-d variable, or None."""
    shape = var.type.shape[2:]
    if any(s is None for s in shape):
        return None
    return tuple(int(s) for s in shape)


def _shape_arg(var):
    """Spatial-shape argument for a gradient op from the variable ``var``.

    A constant ``int64`` vector when the static shape of ``var`` is known,
    otherwise ``var`` itself (a 4-d "shape donor": the op reads only its
    shape), so that the JAX backend always sees a static shape.
    """
    hw = _static_hw(var)
    if hw is None:
        return var
    return pt.constant(np.asarray(hw, dtype="int64"))


def _as_shape_input(shape):
    """Validate the spatial-shape input of a gradient op (see ``_shape_arg``)."""
    if not isinstance(shape, pt.TensorVariable):
        if isinstance(shape, (list, tuple, np.ndarray)) and np.ndim(shape) == 1:
            shape = pt.constant(np.asarray(shape, dtype="int64"))
        else:
            shape = pt.as_tensor_variable(shape)
    if shape.ndim == 4:
        return shape
    if shape.ndim != 1 or shape.dtype not in integer_dtypes:
        raise TypeError("shape must be an integer vector (h, w) or a 4-d tensor "
                        f"whose last two axes give it, got {shape.type}")
    if shape.type.shape[0] not in (None, 2):
        raise ValueError(f"shape must have two entries, got {shape.type}")
    return shape


def _shape_input_static(shape):
    """Static value of a shape input (vector constant or donor), or None."""
    if shape.ndim == 4:
        return _static_hw(shape)
    if isinstance(shape, Constant):
        return tuple(int(v) for v in shape.data)
    return None


def _shape_input_symbolic(node, index, in_shapes):
    """Symbolic ``(h, w)`` of the shape input ``node.inputs[index]``."""
    shape = node.inputs[index]
    if shape.ndim == 4:
        return in_shapes[index][2], in_shapes[index][3]
    if isinstance(shape, Constant):
        return int(shape.data[0]), int(shape.data[1])
    return shape[0], shape[1]


def _shape_value(value):
    """Runtime ``(h, w)`` from the value of a shape input."""
    if value.ndim == 4:
        return value.shape[2], value.shape[3]
    return int(value[0]), int(value[1])


def _static_out_len(length, k, stride, pad):
    """Static output length, or None; raises if provably empty."""
    if length is None or k is None:
        return None
    if isinstance(pad, str):
        pad = k // 2 if pad == "same" else k - 1
    out = conv_output_length(length, k, stride, pad)
    if out < 1:
        raise ValueError(f"convolution output would be empty: input length {length}, "
                         f"filter {k}, stride {stride}, pad {pad}")
    return out


def _int64_scalar(value):
    if isinstance(value, (int, np.integer)):
        return pt.constant(int(value), dtype="int64")
    return pt.cast(pt.as_tensor_variable(value), "int64")


class ConvLength(Op):
    """Output length of a convolution along one axis, as a scalar shape op.

    Used by the ``infer_shape`` of the convolution ops instead of a chain of
    elementwise integer ops.  The JAX backend fuses such chains into an array
    computation, which turns shapes into traced values that ``Alloc`` and
    friends cannot use; this op computes with Python integers when its inputs
    are concrete, so shapes stay static under ``jax.jit``.

    Parameters
    ----------
    stride : int
    pad : int or {'same', 'full'}

    Inputs are the input length and the kernel length (int scalars); the
    output is an int64 scalar.
    """

    __props__ = ("stride", "pad")

    def __init__(self, stride, pad):
        self.stride = int(stride)
        self.pad = pad if isinstance(pad, str) else int(pad)

    def make_node(self, length, kernel):
        inputs = [_int64_scalar(v) for v in (length, kernel)]
        if any(v.ndim != 0 for v in inputs):
            raise TypeError("ConvLength takes two integer scalars")
        return Apply(self, inputs, [pt.lscalar()])

    def length(self, length, kernel):
        """The output length (works on ints and on array scalars)."""
        pad = self.pad
        if pad == "same":
            pad = kernel // 2
        elif pad == "full":
            pad = kernel - 1
        return (length + 2 * pad - kernel) // self.stride + 1

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

class _Geometry:
    """Index bookkeeping shared by the three NumPy kernels.

    The zero-padded input (``H + 2 ph`` by ``W + 2 pw``) is stored as phase
    planes: plane ``(a, b)`` holds padded pixel ``(r * sh + a, q * sw + b)`` at
    ``(r, q)``; a plane is ``hq + 1`` by ``wq`` (one spare zero row keeps the
    flat reads of the last row in bounds).  Kernel offset ``(i, j)`` reads
    plane ``(i % sh, j % sw)`` from flat position
    ``(i // sh) * wq + j // sw`` on, ``out_h * wq`` values in a row.
    """

    def __init__(self, in_hw, kernel_hw, stride, pad):
        (self.h, self.w), (self.kh, self.kw) = in_hw, kernel_hw
        (self.sh, self.sw), (self.ph, self.pw) = stride, pad
        self.out_h = conv_output_length(self.h, self.kh, self.sh, self.ph)
        self.out_w = conv_output_length(self.w, self.kw, self.sw, self.pw)
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(
                f"convolution output would be empty: input {in_hw}, filter "
                f"{kernel_hw}, stride {stride}, pad {pad}")
        self.hq = -(-(self.h + 2 * self.ph) // self.sh)
        self.wq = -(-(self.w + 2 * self.pw) // self.sw)
        self.run = self.out_h * self.wq
        self.plane_size = (self.hq + 1) * self.wq
        phases_h = sorted({i % self.sh for i in range(self.kh)})
        phases_w = sorted({j % self.sw for j in range(self.kw)})
        self.all_phases = (len(phases_h) == self.sh and len(phases_w) == self.sw)
        # (plane index a, plane index b, plane rows, plane cols, input rows, input cols)
        self.phases = []
        for ia, a in enumerate(phases_h):
            rows = self._phase_range(a, self.ph, self.h, self.sh, self.hq)
            for ib, b in enumerate(phases_w):
                cols = self._phase_range(b, self.pw, self.w, self.sw, self.wq)
                if rows is not None and cols is not None:
                    self.phases.append((ia, ib, rows[0], cols[0], rows[1], cols[1]))
        self.n_phases = (len(phases_h), len(phases_w))
        # (kernel row, kernel col, plane index a, plane index b, flat offset)
        self.offsets = [(i, j, phases_h.index(i % self.sh),
                         phases_w.index(j % self.sw),
                         (i // self.sh) * self.wq + j // self.sw)
                        for i in range(self.kh) for j in range(self.kw)]

    @staticmethod
    def _phase_range(phase, pad, length, stride, n_plane):
        """Plane slice and input slice of the real pixels of one phase."""
        first = max(0, -((phase - pad) // stride))          # ceil((pad-phase)/stride)
        last = min(n_plane, (pad + length - 1 - phase) // stride + 1)
        if last <= first:
            return None
        start = first * stride + phase - pad
        return (slice(first, last),
                slice(start, start + (last - first - 1) * stride + 1, stride))

    def chunk_size(self, n, k, itemsize):
        """Images per chunk so that a ``k``-row im2col block fits CHUNK_BYTES."""
        per_image = max(1, k * self.run * itemsize)
        return int(min(max(n, 1), max(1, CHUNK_BYTES // per_image)))

    def chunks(self, n, nb):
        for n0 in range(0, n, nb):
            yield n0, min(n, n0 + nb)

    def new_planes(self, m, c, dtype):
        return np.zeros(self.n_phases + (m, c, self.hq + 1, self.wq), dtype)

    def fill_planes(self, planes, x):
        """Copy ``x`` (m, C, H, W) into the interior of zeroed ``planes``."""
        for ia, ib, prow, pcol, xrow, xcol in self.phases:
            planes[ia, ib, :, :, prow, pcol] = x[:, :, xrow, xcol]

    def im2col(self, planes, cols):
        """Fill ``cols`` (C, kh, kw, m, run) from ``planes``."""
        m, c = planes.shape[2:4]
        flat = planes.reshape(self.n_phases + (m, c, self.plane_size))
        run = self.run
        for i, j, ia, ib, off in self.offsets:
            np.copyto(cols[:, i, j], flat[ia, ib, :, :, off:off + run].transpose(1, 0, 2))

    def col2im(self, cols, planes):
        """Accumulate ``cols`` (C, kh, kw, m, run) into zeroed ``planes``."""
        m, c = planes.shape[2:4]
        flat = planes.reshape(self.n_phases + (m, c, self.plane_size))
        run = self.run
        for i, j, ia, ib, off in self.offsets:
            dst = flat[ia, ib, :, :, off:off + run]
            np.add(dst, cols[:, i, j].transpose(1, 0, 2), out=dst)

    def unfill_planes(self, planes, dx):
        """Copy the interior of ``planes`` to ``dx`` (m, C, H, W)."""
        for ia, ib, prow, pcol, xrow, xcol in self.phases:
            dx[:, :, xrow, xcol] = planes[ia, ib, :, :, prow, pcol]


def _effective_filters(w, filter_flip):
    return w[:, :, ::-1, ::-1] if filter_flip else w


def _check_channels(c_in, c_filters):
    if c_in != c_filters:
        raise ValueError(f"input has {c_in} channels but the filters expect {c_filters}")


def conv2d_forward_numpy(x, w, b=None, stride=(1, 1), pad=(0, 0), filter_flip=True):
    """NumPy forward convolution (the ``perform`` of :class:`Conv2d`).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    w : ndarray, shape (F, C, kh, kw)
    b : ndarray, shape (F,), optional
    stride : pair of int
    pad : pair of int, or 'same' / 'full'
    filter_flip : bool

    Returns
    -------
    ndarray, shape (N, F, out_h, out_w), dtype of ``x``
    """
    n, c, h, wd = x.shape
    f, c2, kh, kw = w.shape
    _check_channels(c, c2)
    dtype = x.dtype
    g = _Geometry((h, wd), (kh, kw), stride, _resolve_pad(pad, (kh, kw)))
    k = c * kh * kw
    w2 = np.ascontiguousarray(_effective_filters(w, filter_flip), dtype=dtype).reshape(f, k)
    out = np.empty((n, f, g.out_h, g.out_w), dtype)
    if b is not None and b.shape != (f,):
        raise ValueError(f"bias of shape {b.shape} for {f} filters")
    bias = None if b is None else np.asarray(b, dtype=dtype)[:, None, None]
    if kh == kw == 1 and g.ph == g.pw == 0:
        xs = x[:, :, :(g.out_h - 1) * g.sh + 1:g.sh, :(g.out_w - 1) * g.sw + 1:g.sw]
        xs = np.ascontiguousarray(xs, dtype=dtype).reshape(n, c, -1)
        np.matmul(w2, xs, out=out.reshape(n, f, -1))
        if bias is not None:
            out += bias
        return out
    nb = g.chunk_size(n, k, x.itemsize)
    bufs = {}
    for n0, n1 in g.chunks(n, nb):
        m = n1 - n0
        if m not in bufs:
            bufs[m] = (g.new_planes(m, c, dtype), np.empty((c, kh, kw, m, g.run), dtype),
                       np.empty((f, m * g.run), dtype))
        planes, cols, res = bufs[m]
        g.fill_planes(planes, x[n0:n1])
        g.im2col(planes, cols)
        np.matmul(w2, cols.reshape(k, -1), out=res)
        res4 = res.reshape(f, m, g.out_h, g.wq)[:, :, :, :g.out_w].transpose(1, 0, 2, 3)
        if bias is None:
            out[n0:n1] = res4
        else:
            np.add(res4, bias, out=out[n0:n1])
    return out


def conv2d_grad_inputs_numpy(gz, w, in_hw, stride=(1, 1), pad=(0, 0), filter_flip=True):
    """NumPy gradient of :func:`conv2d_forward_numpy` with respect to ``x``.

    Parameters
    ----------
    gz : ndarray, shape (N, F, out_h, out_w)
        Gradient with respect to the convolution output.
    w : ndarray, shape (F, C, kh, kw)
    in_hw : pair of int
        Spatial shape ``(H, W)`` of the input to reconstruct.
    stride, pad, filter_flip
        As for the forward convolution.

    Returns
    -------
    ndarray, shape (N, C, H, W), dtype of ``gz``
    """
    n, f, oh, ow = gz.shape
    f2, c, kh, kw = w.shape
    if f != f2:
        raise ValueError(f"output gradient has {f} channels but the filters have {f2}")
    dtype = gz.dtype
    h, wd = in_hw
    g = _Geometry((h, wd), (kh, kw), stride, _resolve_pad(pad, (kh, kw)))
    if (oh, ow) != (g.out_h, g.out_w):
        raise ValueError(f"output gradient of spatial shape {(oh, ow)} does not fit an "
                         f"input of shape {(h, wd)} (expected {(g.out_h, g.out_w)})")
    k = c * kh * kw
    w2t = np.ascontiguousarray(
        np.ascontiguousarray(_effective_filters(w, filter_flip), dtype=dtype)
        .reshape(f, k).T)
    if kh == kw == 1 and g.ph == g.pw == 0:
        gzc = np.ascontiguousarray(gz).reshape(n, f, -1)
        res = np.matmul(w2t, gzc).reshape(n, c, oh, ow)
        if (g.sh, g.sw) == (1, 1) and (oh, ow) == (h, wd):
            return res
        dx = np.zeros((n, c, h, wd), dtype)
        dx[:, :, :(oh - 1) * g.sh + 1:g.sh, :(ow - 1) * g.sw + 1:g.sw] = res
        return dx
    if (g.sh, g.sw) == (1, 1) and g.ph < kh and g.pw < kw and f <= 2 * c:
        # stride 1: the adjoint is the correlation of the zero-padded
        # gradient with the rotated, transposed filters -- the forward path.
        # Its im2col has f (not c) channels; col2im's accumulations cost
        # about twice a copy, hence the f <= 2c rule.
        return conv2d_forward_numpy(gz, w.transpose(1, 0, 2, 3), None, (1, 1),
                                    (kh - 1 - g.ph, kw - 1 - g.pw), not filter_flip)
    dx = (np.empty if g.all_phases else np.zeros)((n, c, h, wd), dtype)
    nb = g.chunk_size(n, k, gz.itemsize)
    bufs = {}
    for n0, n1 in g.chunks(n, nb):
        m = n1 - n0
        if m not in bufs:
            bufs[m] = (np.zeros((f, m, oh, g.wq), dtype), np.empty((c, kh, kw, m, g.run), dtype),
                       g.new_planes(m, c, dtype))
        gzq, cols, planes = bufs[m]
        gzq[:, :, :, :ow] = gz[n0:n1].transpose(1, 0, 2, 3)   # garbage columns stay 0
        np.matmul(w2t, gzq.reshape(f, -1), out=cols.reshape(k, -1))
        planes.fill(0)
        g.col2im(cols, planes)
        g.unfill_planes(planes, dx[n0:n1])
    return dx


def conv2d_grad_weights_numpy(x, gz, kernel_hw, stride=(1, 1), pad=(0, 0), filter_flip=True):
    """NumPy gradient of :func:`conv2d_forward_numpy` with respect to ``w``.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    gz : ndarray, shape (N, F, out_h, out_w)
        Gradient with respect to the convolution output.
    kernel_hw : pair of int
        Spatial filter shape ``(kh, kw)``.
    stride, pad, filter_flip
        As for the forward convolution.

    Returns
    -------
    ndarray, shape (F, C, kh, kw), dtype of ``x``
    """
    n, c, h, wd = x.shape
    n2, f, oh, ow = gz.shape
    if n != n2:
        raise ValueError(f"input batch {n} differs from output gradient batch {n2}")
    kh, kw = kernel_hw
    dtype = x.dtype
    g = _Geometry((h, wd), (kh, kw), stride, _resolve_pad(pad, (kh, kw)))
    if (oh, ow) != (g.out_h, g.out_w):
        raise ValueError(f"output gradient of spatial shape {(oh, ow)} does not fit an "
                         f"input of shape {(h, wd)} (expected {(g.out_h, g.out_w)})")
    k = c * kh * kw
    if kh == kw == 1 and g.ph == g.pw == 0:
        xs = x[:, :, :(oh - 1) * g.sh + 1:g.sh, :(ow - 1) * g.sw + 1:g.sw]
        xs = np.ascontiguousarray(xs, dtype=dtype).reshape(n, c, -1)
        gzc = np.ascontiguousarray(gz, dtype=dtype).reshape(n, f, -1)
        dw = np.matmul(gzc, xs.transpose(0, 2, 1)).sum(axis=0, dtype=dtype)
        return dw.reshape(f, c, 1, 1)
    # accumulate dw^T = cols @ gz^T: with the long axis contracted as the
    # inner dimension of both row-major operands, far faster than gz @ cols.T
    dwt = np.zeros((k, f), dtype)
    tmp = np.empty((k, f), dtype)
    nb = g.chunk_size(n, k, x.itemsize)
    bufs = {}
    for n0, n1 in g.chunks(n, nb):
        m = n1 - n0
        if m not in bufs:
            bufs[m] = (g.new_planes(m, c, dtype), np.empty((c, kh, kw, m, g.run), dtype),
                       np.zeros((f, m, oh, g.wq), dtype))
        planes, cols, gzq = bufs[m]
        g.fill_planes(planes, x[n0:n1])
        g.im2col(planes, cols)
        gzq[:, :, :, :ow] = gz[n0:n1].transpose(1, 0, 2, 3)   # garbage columns stay 0
        np.matmul(cols.reshape(k, -1), gzq.reshape(f, -1).T, out=tmp)
        dwt += tmp
    dw = dwt.T.reshape(f, c, kh, kw)
    return np.ascontiguousarray(_effective_filters(dw, filter_flip))


# ---------------------------------------------------------------------------
# Ops
# ---------------------------------------------------------------------------

class _ConvOpBase(OneDNNConvCOp):
    """Shared parameters and helpers of the convolution ops.

    Parameters
    ----------
    stride : int or pair of int
        Subsampling factors ``(sh, sw)``.
    pad : 'valid', 'same', 'full', int or pair of int
        Zero padding on each side; ``'same'`` is ``(kh // 2, kw // 2)`` and
        ``'full'`` is ``(kh - 1, kw - 1)``, resolved with the filter shape at
        run time when stored as a string.
    filter_flip : bool
        True for a true convolution (kernel flipped), False for
        cross-correlation.
    """

    __props__ = ("stride", "pad", "filter_flip")

    def __init__(self, stride=(1, 1), pad=(0, 0), filter_flip=True):
        self.stride = _normalize_stride(stride)
        self.pad = _normalize_pad(pad)
        self.filter_flip = bool(filter_flip)

    def _kwargs(self):
        return dict(stride=self.stride, pad=self.pad, filter_flip=self.filter_flip)

    def _out_len_symbolic(self, length, k, axis):
        pad = self.pad if isinstance(self.pad, str) else self.pad[axis]
        return ConvLength(self.stride[axis], pad)(length, k)

    def _static_out(self, in_hw, k_hw):
        in_hw = in_hw if in_hw is not None else (None, None)
        return tuple(_static_out_len(in_hw[a], k_hw[a], self.stride[a], self.pad
                                     if isinstance(self.pad, str) else self.pad[a])
                     for a in range(2))

    def grad(self, inputs, output_grads):
        """Theano-style alias of :meth:`pullback`."""
        return self.pullback(inputs, self(*inputs), output_grads)


class Conv2d(_ConvOpBase):
    """Forward 2-d convolution ``out = conv(input, filters) + bias``.

    Inputs: ``input`` (N, C, H, W), ``filters`` (F, C, kh, kw) and optionally
    ``bias`` (F,), all of the same float dtype.  Output: (N, F, out_h, out_w)
    with ``out = (in + 2 * pad - k) // stride + 1``.  See :class:`_ConvOpBase`
    for the parameters.
    """

    def make_node(self, input, filters, bias=None):
        x = _float_tensor(input, "input", 4)
        w = _cast(_float_tensor(filters, "filters", 4), x.dtype)
        inputs = [x, w]
        xs, ws = x.type.shape, w.type.shape
        if bias is not None:
            b = _cast(_float_tensor(bias, "bias", 1), x.dtype)
            if None not in (b.type.shape[0], ws[0]) and b.type.shape[0] != ws[0]:
                raise ValueError(f"bias has {b.type.shape[0]} entries for {ws[0]} filters")
            inputs.append(b)
        if xs[1] is not None and ws[1] is not None and xs[1] != ws[1]:
            raise ValueError(f"input has {xs[1]} channels but the filters expect {ws[1]}")
        oh, ow = self._static_out(xs[2:], ws[2:])
        out = pt.tensor(dtype=x.dtype, shape=(xs[0], ws[0], oh, ow))
        return Apply(self, inputs, [out])

    def perform(self, node, inputs, outputs):
        x, w = inputs[:2]
        b = inputs[2] if len(inputs) > 2 else None
        outputs[0][0] = conv2d_forward_numpy(x, w, b, **self._kwargs())

    def _onednn_call(self, node, cache, inputs, out, params):
        bias = inputs[2] if len(inputs) > 2 else "NULL"
        return f"lr_conv_fwd({cache}, {inputs[0]}, {inputs[1]}, {bias}, {out}, {params})"

    def infer_shape(self, fgraph, node, in_shapes):
        xs, ws = in_shapes[0], in_shapes[1]
        return [(xs[0], ws[0], self._out_len_symbolic(xs[2], ws[2], 0),
                 self._out_len_symbolic(xs[3], ws[3], 1))]

    def pullback(self, inputs, outputs, output_grads):
        x, w = inputs[:2]
        (gz,) = output_grads
        gx = Conv2dGradInputs(**self._kwargs())(gz, w, _shape_arg(x))
        gw = Conv2dGradWeights(**self._kwargs())(x, gz, _shape_arg(w))
        grads = [gx, gw]
        if len(inputs) > 2:
            grads.append(gz.sum(axis=(0, 2, 3)))
        return grads

    def pushforward(self, inputs, outputs, tangents):
        x, w = inputs[:2]
        plain = Conv2d(**self._kwargs())
        total = None
        if not isinstance(tangents[0].type, DisconnectedType):
            total = plain(tangents[0], w)
        if not isinstance(tangents[1].type, DisconnectedType):
            term = plain(x, tangents[1])
            total = term if total is None else total + term
        if len(inputs) > 2 and not isinstance(tangents[2].type, DisconnectedType):
            db = tangents[2].dimshuffle("x", 0, "x", "x")
            total = (pt.broadcast_to(db, outputs[0].shape) if total is None
                     else total + db)
        return [disconnected_type() if total is None else total]


class Conv2dGradInputs(_ConvOpBase):
    """Gradient of :class:`Conv2d` with respect to its input.

    Inputs: ``topgrad`` (N, F, out_h, out_w), ``filters`` (F, C, kh, kw) and
    ``shape``, the spatial shape ``(H, W)`` of the input to reconstruct
    (a strided convolution maps several input sizes to one output size).
    ``shape`` is an integer vector of two entries, or a 4-d tensor whose last
    two axes give it (typically the forward input itself; only its shape is
    read, which keeps the shape static for the JAX backend).
    Output: (N, C, H, W).
    """

    def make_node(self, topgrad, filters, shape):
        gz = _float_tensor(topgrad, "topgrad", 4)
        w = _cast(_float_tensor(filters, "filters", 4), gz.dtype)
        shape = _as_shape_input(shape)
        static_hw = _shape_input_static(shape) or (None, None)
        gs, ws = gz.type.shape, w.type.shape
        if None not in static_hw:
            oh, ow = self._static_out(static_hw, ws[2:])
            for got, want in zip(gs[2:], (oh, ow)):
                if got is not None and want is not None and got != want:
                    raise ValueError(f"topgrad of spatial shape {gs[2:]} does not fit "
                                     f"an input of shape {static_hw}")
        out = pt.tensor(dtype=gz.dtype, shape=(gs[0], ws[1]) + tuple(static_hw))
        return Apply(self, [gz, w, shape], [out])

    def perform(self, node, inputs, outputs):
        gz, w, shape = inputs
        outputs[0][0] = conv2d_grad_inputs_numpy(gz, w, _shape_value(shape), **self._kwargs())

    def _onednn_call(self, node, cache, inputs, out, params):
        h, w = shape_pair_c(node, 2, inputs[2])
        return (f"lr_conv_bwd_data({cache}, {inputs[0]}, {inputs[1]}, {h}, {w}, {out}, "
                f"{params})")

    def infer_shape(self, fgraph, node, in_shapes):
        h, w = _shape_input_symbolic(node, 2, in_shapes)
        return [(in_shapes[0][0], in_shapes[1][1], h, w)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        gz, w, _ = inputs
        (g,) = output_grads
        d_gz = Conv2d(**self._kwargs())(g, w)
        d_w = Conv2dGradWeights(**self._kwargs())(g, gz, _shape_arg(w))
        return [d_gz, d_w, disconnected_type()]


class Conv2dGradWeights(_ConvOpBase):
    """Gradient of :class:`Conv2d` with respect to its filters.

    Inputs: ``input`` (N, C, H, W), ``topgrad`` (N, F, out_h, out_w) and
    ``shape``, the filter spatial shape ``(kh, kw)``: an integer vector of two
    entries, or a 4-d tensor whose last two axes give it (typically the
    filters themselves).  Output: (F, C, kh, kw).
    """

    def make_node(self, input, topgrad, shape):
        x = _float_tensor(input, "input", 4)
        gz = _cast(_float_tensor(topgrad, "topgrad", 4), x.dtype)
        shape = _as_shape_input(shape)
        static_hw = _shape_input_static(shape) or (None, None)
        if None not in static_hw:
            oh, ow = self._static_out(x.type.shape[2:], static_hw)
            for got, want in zip(gz.type.shape[2:], (oh, ow)):
                if got is not None and want is not None and got != want:
                    raise ValueError(f"topgrad of spatial shape {gz.type.shape[2:]} does "
                                     f"not fit filters of shape {static_hw}")
        out = pt.tensor(dtype=x.dtype,
                        shape=(gz.type.shape[1], x.type.shape[1]) + tuple(static_hw))
        return Apply(self, [x, gz, shape], [out])

    def perform(self, node, inputs, outputs):
        x, gz, shape = inputs
        outputs[0][0] = conv2d_grad_weights_numpy(x, gz, _shape_value(shape), **self._kwargs())

    def _onednn_call(self, node, cache, inputs, out, params):
        kh, kw = shape_pair_c(node, 2, inputs[2])
        return (f"lr_conv_bwd_weights({cache}, {inputs[0]}, {inputs[1]}, {kh}, {kw}, {out}, "
                f"{params})")

    def infer_shape(self, fgraph, node, in_shapes):
        kh, kw = _shape_input_symbolic(node, 2, in_shapes)
        return [(in_shapes[1][1], in_shapes[0][1], kh, kw)]

    def connection_pattern(self, node):
        return [[True], [True], [False]]

    def pullback(self, inputs, outputs, output_grads):
        x, gz, _ = inputs
        (g,) = output_grads
        d_x = Conv2dGradInputs(**self._kwargs())(gz, g, _shape_arg(x))
        d_gz = Conv2d(**self._kwargs())(x, g)
        return [d_x, d_gz, disconnected_type()]


def conv2d(input, filters, bias=None, stride=(1, 1), pad=(0, 0), filter_flip=True):
    """2-d convolution of a batch of NCHW images, with an optional bias.

    Parameters
    ----------
    input : TensorVariable, shape (N, C, H, W)
        Float input.
    filters : TensorVariable, shape (F, C, kh, kw)
        Filters; cast to the dtype of ``input`` if needed.
    bias : TensorVariable, shape (F,), optional
        Added to every output channel (in the same graph node).
    stride : int or pair of int
        Subsampling factors.
    pad : 'valid', 'same', 'full', int or pair of int
        Zero padding added on each side: ``'valid'`` is 0, ``'same'`` is
        ``(kh // 2, kw // 2)`` (the output keeps the input size for odd
        filters and stride 1; an even filter gives one more), ``'full'`` is
        ``(kh - 1, kw - 1)``.  Strings are resolved to ints when the static
        filter shape is known.
    filter_flip : bool
        True (default, Lasagne's ``Conv2DLayer``) computes a true convolution
        (flipped kernel); False a cross-correlation.

    Returns
    -------
    TensorVariable, shape (N, F, out_h, out_w)
        Same dtype as ``input``; ``out = (in + 2 * pad - k) // stride + 1``.
    """
    x = _float_tensor(input, "input", 4)
    w = _float_tensor(filters, "filters", 4)
    pad = _normalize_pad(pad)
    if isinstance(pad, str):
        k_hw = _static_hw(w)
        if k_hw is not None:
            pad = _resolve_pad(pad, k_hw)
    op = Conv2d(stride=stride, pad=pad, filter_flip=filter_flip)
    return op(x, w) if bias is None else op(x, w, bias)
