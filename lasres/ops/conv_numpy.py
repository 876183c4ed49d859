"""NumPy kernels of the 2-d convolution ops (the ``perform`` of
:mod:`lasres.ops.conv`).

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
"""
from typing import Optional, Tuple, Union

import numpy as np

from ._args import resolve_pad
from .shape import conv_output_shape

__all__ = ["CHUNK_BYTES", "conv2d_forward_numpy", "conv2d_grad_inputs_numpy",
           "conv2d_grad_weights_numpy", "effective_filters"]

#: Target size in bytes of the im2col block processed by one GEMM.  The batch
#: is split into chunks of as many images as fit (at least one).
CHUNK_BYTES = 1 << 22

Pair = Tuple[int, int]
Pad = Union[Pair, str]


class _Planes:
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
        self.out_h, self.out_w = conv_output_shape(in_hw, kernel_hw, stride, pad)
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

    @classmethod
    def checked(cls, in_hw, kernel_hw, stride, pad, out_hw):
        """The geometry of a gradient, whose output gradient has the spatial
        shape ``out_hw`` (checked); ``pad`` may be a string."""
        g = cls(in_hw, kernel_hw, stride, resolve_pad(pad, kernel_hw))
        if tuple(out_hw) != (g.out_h, g.out_w):
            raise ValueError(f"output gradient of spatial shape {tuple(out_hw)} does not fit "
                             f"an input of shape {tuple(in_hw)} (expected {(g.out_h, g.out_w)})")
        return g

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


def effective_filters(w: np.ndarray, filter_flip: bool) -> np.ndarray:
    """The filters a correlation applies: ``w`` with its spatial axes
    reversed for a convolution (``filter_flip``), else ``w`` (a view)."""
    return w[(Ellipsis,) + (slice(None, None, -1),) * (w.ndim - 2)] if filter_flip else w


def _check_channels(c_in, c_filters):
    if c_in != c_filters:
        raise ValueError(f"input has {c_in} channels but the filters expect {c_filters}")


def conv2d_forward_numpy(x: np.ndarray, w: np.ndarray, b: Optional[np.ndarray] = None,
                         stride: Pair = (1, 1), pad: Pad = (0, 0),
                         filter_flip: bool = True) -> np.ndarray:
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
    g = _Planes((h, wd), (kh, kw), stride, resolve_pad(pad, (kh, kw)))
    k = c * kh * kw
    w2 = np.ascontiguousarray(effective_filters(w, filter_flip), dtype=dtype).reshape(f, k)
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


def conv2d_grad_inputs_numpy(gz: np.ndarray, w: np.ndarray, in_hw: Pair, stride: Pair = (1, 1),
                             pad: Pad = (0, 0), filter_flip: bool = True) -> np.ndarray:
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
    g = _Planes.checked((h, wd), (kh, kw), stride, pad, (oh, ow))
    k = c * kh * kw
    w2t = np.ascontiguousarray(
        np.ascontiguousarray(effective_filters(w, filter_flip), dtype=dtype)
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


def conv2d_grad_weights_numpy(x: np.ndarray, gz: np.ndarray, kernel_hw: Pair,
                              stride: Pair = (1, 1), pad: Pad = (0, 0),
                              filter_flip: bool = True) -> np.ndarray:
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
    g = _Planes.checked((h, wd), (kh, kw), stride, pad, (oh, ow))
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
    return np.ascontiguousarray(effective_filters(dw, filter_flip))
