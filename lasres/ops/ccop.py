"""The base class of lasres's C ops whose C code is one call into its
sources (``lasres/ops/c/``): batch norm, the per-channel sums, the layout
conversions."""
import platform
import sys

from pytensor.graph.utils import MethodNotDefined
from pytensor.link.c.op import COp

from ._csource import c_source, c_source_crc
from .threads import openmp_threads

__all__ = ["SourcedCOp", "vector_width_args"]


def vector_width_args():
    """GCC's hint to vectorise with whole 512-bit registers on x86-64.

    PyTensor compiles for the machine (``-march=native``), and for AVX-512
    CPUs GCC then prefers 256-bit vectors unless told otherwise: the batch
    norms' float64 arithmetic ran at half width, with lane shuffles between
    the float32 and float64 halves.  The hint changes which instructions
    compute each value, never the value (each lane's operations and the
    order of every sum are the source's); a CPU without AVX-512 ignores it.
    """
    return ("-mprefer-vector-width=512",) if platform.machine() in ("x86_64", "AMD64") else ()


class SourcedCOp(COp):
    """A C op whose code is one call into lasres's sources (``_sources``),
    with OpenMP in libgomp's pool (oneDNN's too): the C global ``_parallel``
    gets the thread count before each call. The C code runs where
    :meth:`_use_c` accepts the node (float32/float64 by default), ``perform``
    elsewhere; subclasses give :meth:`_c_call`, the C expression of the call
    (nonzero on a Python error)."""

    _sources = ()
    _version = 0
    _parallel = ""
    _compile_args = ("-g0",)

    def _use_c(self, node):
        return node.inputs[0].dtype in ("float32", "float64")

    def _c_call(self, node, inputs, outputs):
        raise NotImplementedError

    def make_thunk(self, node, storage_map, compute_map, no_recycling, impl=None):
        # decided here, not only in c_code: a module found in PyTensor's
        # compile cache is loaded without calling c_code
        if not self._use_c(node):
            impl = "py"
        return super().make_thunk(node, storage_map, compute_map, no_recycling, impl=impl)

    def c_code(self, node, name, inputs, outputs, sub):
        if not self._use_c(node):
            raise MethodNotDefined(f"{type(self).__name__}: no C code for these inputs")
        return (f"{self._parallel} = {int(openmp_threads())};\n"
                f"if ({self._c_call(node, inputs, outputs)}) {{ {sub['fail']} }}")

    def c_code_cache_version(self):
        return (self._version, c_source_crc(*self._sources), int(openmp_threads()))

    def c_support_code(self, **kwargs):
        return c_source(*self._sources)

    def c_compile_args(self, **kwargs):
        return (list(self._compile_args) + list(vector_width_args())
                + (["-fopenmp"] if sys.platform.startswith("linux") else []))
