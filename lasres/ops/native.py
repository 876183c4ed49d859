"""lasres's native library: its own C kernels built once as a shared library.

The fused inference program (:mod:`.onednn_program`) is no PyTensor module:
it calls oneDNN through ``ctypes``, and lasres's 16-channel convolution
(``c/conv_fwd16.c``) the same way. The convolution ops' modules
(``c/onednn_conv.c``) open the same library (``dlopen``) rather than each
compiling the kernel again (seconds of cold start). It is built once per
source text with PyTensor's C++ compiler, on a background thread while
PyTensor compiles a graph (:func:`prefetch`), and cached under PyTensor's
compile directory (written under a temporary name and renamed into place:
never a half-written library, and processes racing to build it each finish
with a whole one).

A library that cannot be built (no compiler, a read-only cache) is no
error: :func:`library` returns None and the program runs oneDNN's kernels,
which give the same results.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import tempfile
import threading
import time
import zlib
from typing import Optional

from ._csource import c_source

__all__ = ["library", "library_path", "prefetch", "Conv16", "ENV"]

#: ``LASRES_CONV16=0`` leaves the 16-channel convolutions to oneDNN's brgemm kernel.
ENV = "LASRES_CONV16"

_SOURCES = ("conv16.h", "conv_fwd16.c")
_EXPORTS = """
extern "C" int lr_native_conv16(const lr_c16 *g) { return lr_conv16_fwd(g); }
"""
_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-fno-math-errno")
_LIB: Optional[ctypes.CDLL] = None
_TRIED = False
_LOCK = threading.Lock()
_PREFETCH: Optional[threading.Thread] = None


class Conv16(ctypes.Structure):
    """The arguments of ``lr_conv16_fwd`` (``c/conv_fwd16.c``)."""
    _fields_ = [("n", ctypes.c_long), ("h", ctypes.c_long), ("w", ctypes.c_long),
                ("block", ctypes.c_long), ("x", ctypes.c_void_p), ("wt", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("add", ctypes.c_void_p), ("y", ctypes.c_void_p), ("relu", ctypes.c_int),
                ("reverse", ctypes.c_int), ("add_first", ctypes.c_int)]


def _build(path: str, source: str, cxx: str) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _clean(folder)
    fd, src = tempfile.mkstemp(suffix=".cpp", dir=folder)
    out = src[:-4] + ".so"
    try:
        with os.fdopen(fd, "w") as f:
            f.write(source)
        subprocess.run([cxx, *_FLAGS, "-o", out, src], check=True, capture_output=True)
        os.replace(out, path)
    finally:
        for p in (src, out):
            if os.path.exists(p):
                os.remove(p)


def _clean(folder: str, age_s: float = 3600.0) -> None:
    """Remove the temporary files of builds that a killed process left
    behind (older than an hour: a build under way takes a second or two)."""
    now = time.time()
    for name in os.listdir(folder):
        if name.startswith("tmp") and name.endswith((".cpp", ".so")):
            p = os.path.join(folder, name)
            try:
                if now - os.path.getmtime(p) > age_s:
                    os.remove(p)
            except OSError:
                pass


def library() -> Optional[ctypes.CDLL]:
    """The native library (built on first use), or None where it cannot be
    built or loaded, or where ``LASRES_CONV16=0``."""
    if os.environ.get(ENV, "1") == "0":
        return None
    with _LOCK:
        if not _TRIED:
            _load()
        return _LIB


def prefetch() -> None:
    """Build (or load) the library on a background thread: called when a
    graph that may call it is compiled, so that the compiler runs on another
    core while PyTensor compiles the graph's modules."""
    global _PREFETCH
    if _PREFETCH is None and not _TRIED and os.environ.get(ENV, "1") != "0":
        # PyTensor computes a config default (the compiler's version, the
        # compile directory) on first use and refuses a second thread's
        # concurrent first use: settle them here, on the calling thread
        library_path()
        _PREFETCH = threading.Thread(target=library, name="lasres-native", daemon=True)
        _PREFETCH.start()


def _source() -> str:
    return c_source(*_SOURCES) + _EXPORTS


def library_path() -> str:
    """Where the library of this source text and compiler lives (built or
    not): the C ops' modules open it there (``c/onednn_conv.c``)."""
    import pytensor
    key = zlib.crc32((_source() + pytensor.config.cxx + " ".join(_FLAGS)).encode())
    return os.path.join(pytensor.config.compiledir, "lasres_native", f"lasres_{key:08x}.so")


def _load() -> None:
    global _LIB, _TRIED
    _TRIED = True
    try:
        import pytensor
        cxx = pytensor.config.cxx
        if not cxx:
            return
        path = library_path()
        if not os.path.exists(path):
            _build(path, _source(), cxx)
        lib = ctypes.CDLL(path)
        lib.lr_native_conv16.restype = ctypes.c_int
        lib.lr_native_conv16.argtypes = [ctypes.POINTER(Conv16)]
        _LIB = lib
    except (OSError, subprocess.CalledProcessError, AttributeError):
        _LIB = None
