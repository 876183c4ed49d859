"""The C library's heap kept for the next training step.

A training step of a deep net frees and allocates the same large arrays
every time (activations of 4-32 MiB at batch 64-128).  glibc serves blocks
above its mmap threshold (at most 32 MiB, lower before the first large
free) with fresh mappings and gives freed heap tops back to the kernel, so
each step takes its arrays' memory from the kernel again, which faults and
zeroes every page of it: 2-11% of a ResNet-164 step and 2-4% of a wide
ResNet's on the development machine (benchmarks/RESULTS.md, 2026-12-07,
fifth session).

:func:`keep_freed_memory` tells glibc to serve every block from its heap
and to give memory back only when the free top of the heap exceeds a
quarter of the machine's memory (at most 2 GiB): the arrays of one step
are reused by the next.  The process keeps up to that much of its peak
memory until it exits (the peak itself does not grow).  ``LASRES_HEAP=os``
leaves glibc's defaults, as do other C libraries (macOS, musl) and any
``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
the user set.
"""
import ctypes
import os
import platform

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_done = None


def _memory_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def keep_freed_memory():
    """Keep freed large arrays in the process's heap (glibc only; once).

    Returns
    -------
    bool
        Whether glibc's settings were changed (now or by an earlier call).
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("LASRES_HEAP", "").strip().lower() == "os":
        return False
    if any(v in os.environ for v in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_",
                                     "MALLOC_MMAP_THRESHOLD_")):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    trim = min(max(_memory_bytes() // 4, 1 << 30), (1 << 31) - 1)
    _done = bool(mallopt(_M_TRIM_THRESHOLD, trim)) and bool(mallopt(_M_MMAP_MAX, 0))
    return _done
