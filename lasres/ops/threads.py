"""Whether lasres's own C kernels (batch norm, per-channel sums) use threads.

They share out channels among OpenMP threads — libgomp's pool, the one that
oneDNN's convolutions use — only when the convolutions run oneDNN. With the
NumPy convolution kernels the heavy work runs in OpenBLAS's own thread
pool, and a second pool spinning on the same cores makes the whole training
step slower (measured: benchmarks/RESULTS.md, 2026-12-05).
"""
from .onednn import kernels

__all__ = ["openmp_threads"]


def openmp_threads() -> bool:
    """True when lasres's C kernels may run OpenMP threads.

    Returns
    -------
    bool
        ``True`` when :func:`lasres.ops.kernels` is ``'onednn'``.
    """
    return kernels() == "onednn"
