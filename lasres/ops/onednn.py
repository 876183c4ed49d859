"""oneDNN C kernels of the convolution ops, run by PyTensor's C VM.

On x86-64 Linux, ``pip install lasres`` brings Intel's oneDNN 3.2 wheels
(``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp``: the library under
``<prefix>/lib``, its headers under ``<prefix>/include``).  The convolution
ops (:mod:`lasres.ops.conv`) then compile, for float32, a C implementation
(``c_code``) that calls oneDNN's direct convolutions in the blocked layouts
the library picks for this CPU, with the layout changes (reorders) done
inside each op, so that the graph keeps plain NCHW arrays.  Everything else
(float64, another CPU, a missing wheel, PyTensor's Python or Numba modes)
runs the NumPy ``perform`` of the same ops.

The environment variable ``LASRES_KERNELS`` chooses: ``numpy`` forces the
NumPy kernels, ``onednn`` requires oneDNN (an error when it is missing),
unset or ``auto`` takes oneDNN when it is there.  :func:`kernels` says
which kernels run.
"""
import functools
import os
import platform
import sys
import sysconfig
import zlib
from typing import Tuple

from pytensor.graph.basic import Apply
from pytensor.graph.utils import MethodNotDefined
from pytensor.link.c.op import COp
from pytensor.link.c.params_type import ParamsType
from pytensor.scalar import int64

from ..errors import LasresError
from ._csource import c_source, c_source_crc

__all__ = ["kernels", "KERNELS_ENV"]

#: Environment variable that selects the convolution kernels.
KERNELS_ENV = "LASRES_KERNELS"

#: The convolution ops' C sources (c/): lasres's own weight-gradient kernel, the oneDNN calls.
_CONV_SOURCES = ("blocked.h", "conv16.h", "conv_bwdw.c", "onednn_conv.c")

#: Set by tests to force a kernel family in-process (None: follow the environment).
_override = None


@functools.lru_cache(maxsize=None)
def _library_paths():
    """``(include dir, lib dir)`` of an installed oneDNN 3 wheel, or None."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "AMD64"):
        return None
    data = sysconfig.get_paths()["data"]
    inc, lib = os.path.join(data, "include"), os.path.join(data, "lib")
    if not os.path.isfile(os.path.join(inc, "oneapi", "dnnl", "dnnl.h")):
        return None
    if not os.path.exists(os.path.join(lib, "libdnnl.so.3")):
        return None
    return inc, lib


def kernels() -> str:
    """Which convolution kernels the C backend runs: ``'onednn'`` or ``'numpy'``.

    Returns
    -------
    str
        ``'onednn'`` when oneDNN is installed (x86-64 Linux) and not turned
        off with ``LASRES_KERNELS=numpy``; ``'numpy'`` otherwise.  Float64
        convolutions always run the NumPy kernels (oneDNN's CPU convolutions
        are float32).

    Raises
    ------
    LasresError
        ``LASRES_KERNELS`` has an unknown value, or is ``onednn`` where
        oneDNN is not installed.
    """
    if _override is not None:
        return _override
    choice = os.environ.get(KERNELS_ENV, "").strip().lower() or "auto"
    if choice not in ("auto", "onednn", "numpy"):
        raise LasresError(f"{KERNELS_ENV} must be 'auto', 'onednn' or 'numpy', got {choice!r}")
    if choice == "numpy":
        return "numpy"
    if _library_paths() is None:
        if choice == "onednn":
            raise LasresError(f"{KERNELS_ENV}=onednn but oneDNN is not installed (pip install "
                              "onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0, "
                              "x86-64 Linux only)")
        return "numpy"
    return "onednn"


def _pad_args(pad):
    """``(ph, pw, pad_mode)`` for the C functions (mode 1: 'same', 2: 'full')."""
    if pad == "same":
        return 0, 0, 1
    if pad == "full":
        return 0, 0, 2
    return pad[0], pad[1], 0


class OneDNNConvCOp(COp):
    """C implementation of the convolution ops on oneDNN (float32).

    Subclasses define :meth:`_onednn_call`, the C call of one of the three
    entry points of ``c/onednn_conv.c``.  ``c_code`` raises
    ``MethodNotDefined`` (so PyTensor runs ``perform``) for float64 and when
    :func:`kernels` is ``'numpy'``.

    Stride, padding and flip reach the C code at run time (a ``ParamsType``),
    not as literals: the generated source is then the same for every
    convolution of a class with the same input types, and PyTensor compiles
    it once instead of once per (stride, padding) pair.
    """

    params_type = ParamsType(stride_h=int64, stride_w=int64, pad_h=int64, pad_w=int64,
                             pad_mode=int64, flip=int64, block_x=int64, block_z=int64)

    def get_params(self, node):
        ph, pw, mode = _pad_args(self.pad)
        return self.params_type.get_params(stride_h=self.stride[0], stride_w=self.stride[1],
                                           pad_h=ph, pad_w=pw, pad_mode=mode,
                                           flip=int(self.filter_flip),
                                           block_x=self.blocks[0], block_z=self.blocks[1])

    def _onednn_call(self, node, cache, inputs, out, params):
        raise NotImplementedError

    @staticmethod
    def _use_onednn(node):
        return kernels() == "onednn" and node.outputs[0].dtype == "float32"

    def make_thunk(self, node, storage_map, compute_map, no_recycling, impl=None):
        # decided here, not only in c_code: a module found in PyTensor's
        # compile cache is loaded without calling c_code
        if not self._use_onednn(node) and impl != "c":
            impl = "py"
        else:   # the native library's kernels, built on another thread meanwhile
            from . import native
            native.prefetch()
        return super().make_thunk(node, storage_map, compute_map, no_recycling, impl=impl)

    def c_code(self, node, name, inputs, outputs, sub):
        if not self._use_onednn(node):
            raise MethodNotDefined("oneDNN kernels off or not float32")
        p = sub["params"]
        params = ", ".join(f"(int){p}->{field}" for field in
                           ("stride_h", "stride_w", "pad_h", "pad_w", "pad_mode", "flip",
                            "block_x", "block_z"))
        call = self._onednn_call(node, f"&lr_cache_{name}", inputs, f"&{outputs[0]}", params)
        return f"if ({call}) {{ {sub['fail']} }}"

    def c_code_cache_version(self):
        # PyTensor finds a cached module by this key alone: it names the
        # native library (its path is its source's checksum) the module opens
        from . import native
        return (4, c_source_crc(*_CONV_SOURCES), zlib.crc32(native.library_path().encode()))

    def c_headers(self, **kwargs):
        return ["<oneapi/dnnl/dnnl.h>", "<stdlib.h>", "<string.h>"]

    def c_header_dirs(self, **kwargs):
        paths = _library_paths()
        return [paths[0]] if paths else []

    def c_lib_dirs(self, **kwargs):
        paths = _library_paths()
        return [paths[1]] if paths else []

    def c_libraries(self, **kwargs):
        return ["dnnl", "dl"]

    def c_compile_args(self, **kwargs):
        paths = _library_paths()
        # OpenMP (libgomp, oneDNN's own pool) for the copies around the kernels
        omp = ["-fopenmp"] if sys.platform.startswith("linux") else []
        return ["-g0"] + omp + ([f"-Wl,-rpath,{paths[1]}"] if paths else [])

    def c_support_code(self, **kwargs):
        # lasres's 16-channel kernel is reached in the native library (see
        # make_thunk), not compiled into every module
        from . import native
        path = native.library_path().replace("\\", "\\\\").replace('"', '\\"')
        return f'#define LR_NATIVE_LIB "{path}"\n' + c_source(*_CONV_SOURCES)

    def c_support_code_struct(self, node, name):
        return f"lr_cache lr_cache_{name};"

    def c_init_code_struct(self, node, name, sub):
        return f"lr_cache_init(&lr_cache_{name});"

    def c_cleanup_code_struct(self, node, name):
        return f"lr_cache_free(&lr_cache_{name});"


def shape_pair_c(node: Apply, index: int, var: str) -> Tuple[str, str]:
    """C expressions of the ``(h, w)`` held by the shape input ``node.inputs[index]``.

    Parameters
    ----------
    node : Apply
        A gradient op's node.
    index : int
        Position of its shape input (a vector or a 4-d shape donor).
    var : str
        The C name of that input in the node's ``c_code``.

    Returns
    -------
    pair of str
    """
    if node.inputs[index].ndim in (4, 5):
        return f"PyArray_DIMS({var})[2]", f"PyArray_DIMS({var})[3]"
    get = f"((dtype_{var}*)PyArray_GETPTR1({var}, %d))[0]"
    return f"(npy_intp){get % 0}", f"(npy_intp){get % 1}"
