"""Backends and compile modes.

lasres graphs are float32, as Lasagne's were with ``floatX=float32``: importing
lasres sets PyTensor's ``floatX`` to float32 unless the user chose a floatX in
``PYTENSOR_FLAGS``. It also registers the compile modes below and makes the C
backend (``"LASRES_C"``) PyTensor's default mode unless ``PYTENSOR_FLAGS``
names a mode, so that a ported ``theano.function(...)`` call compiles the
way lasres intends.

Backends
--------
``c``      PyTensor's C virtual machine (the CPU default): the convolutions
           run oneDNN C code (float32), batch norm and the per-channel sums
           lasres's C code (``lasres/ops/c``), elementwise code is fused and
           compiled to C; the other ops run their NumPy ``perform``. The mode
           adds lasres's rewrites (``ChannelSum``, batch norm fused with the
           ReLU) and leaves out a few of PyTensor's (below).
``jax``    PyTensor's JAX linker: the whole function becomes one XLA program
           (GPU when jax has CUDA, else CPU).
``numba``  PyTensor's numba linker (lasres ops fall back to object mode).
``py``     pure Python VM, for debugging.
"""
import gc
import os
import platform
import warnings
from contextlib import contextmanager

import pytensor
from pytensor.compile.maker import FunctionMaker
from pytensor.compile.mode import Mode, register_mode, predefined_modes
from pytensor.graph.rewriting.basic import in2out

__all__ = ["floatX", "get_mode", "BACKENDS", "default_backend", "describe_device", "collector_held",
           "LasresMode"]

_flags = os.environ.get("PYTENSOR_FLAGS", "") + "," + os.environ.get("THEANO_FLAGS", "")
_user_flags = {kv.split("=", 1)[0].strip() for kv in _flags.split(",") if "=" in kv}

if "floatX" not in _user_flags:
    pytensor.config.floatX = "float32"

floatX = pytensor.config.floatX

# lasres's own modules after floatX is set (the ops build graphs of floatX)
from .errors import LasresError  # noqa: E402
from .ops.add import local_parallel_add  # noqa: E402
from .ops.cbuild import prebuild  # noqa: E402
from .ops.bn import local_bn_grad_addend, local_bn_infer_relu, local_bn_train_relu  # noqa: E402
from .ops.conv import local_conv_addend  # noqa: E402
from .ops.fused_infer import fuse_inference, set_fallback_mode  # noqa: E402
from .ops.heap import keep_freed_memory  # noqa: E402
from .ops.inline import local_inline_softmax  # noqa: E402
from .ops.layout import blocked_layout  # noqa: E402
from .ops.reduce import local_channel_sum, local_trailing_sum  # noqa: E402

# lasres's convolutions run on NumPy's BLAS; PyTensor's own C BLAS link only
# matters for its dense products, so its warning would mislead.
warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")

#: Rewrites that cost much compile time on deep residual graphs and buy
#: little for them: the scan rewrites (lasres graphs have no scan), and the
#: in-place elementwise pass, whose validation is quadratic in the graph size
#: (35 s of a 62 s compile for the ResNet-110 training step; see
#: benchmarks/RESULTS.md) while lasres's heavy ops allocate their own outputs.
#: And the additive canonicaliser, which flattens every chain of sums into
#: one n-ary sum even where the partial sums are used elsewhere: a residual
#: stage's ``x + f1 + f2 + ...`` (and its gradient's accumulations) became
#: one sum per block over all earlier block outputs, O(n^2) memory passes per
#: stage; without it each sum stays binary, in the model's order (single-use
#: chains are still merged by PyTensor's ``flatten_nested_add_mul`` and fusion).
_EXCLUDED_REWRITES = ("scan_eqopt1", "scan_eqopt2", "scan_make_inplace", "inplace_elemwise",
                      "local_add_canonizer")

BACKENDS = ("c", "jax", "numba", "py")


#: Position of lasres's own rewrites in the C mode: after canonicalisation
#: and specialisation, before the elementwise fusion (49).
_LASRES_REWRITES_POSITION = 48.5
#: Position of the inference-region fusion (lasres.ops.fused_infer): after
#: lasres's kernel rewrites (it fuses their BN + ReLU nodes), before
#: PyTensor's elementwise fusion would hide the sums and ReLUs in composites.
_LASRES_FUSION_POSITION = 48.7
#: Position of the blocked-layout rewrite of training graphs (lasres.ops.layout):
#: after the kernel rewrites (it rewrites their batch-norm nodes), before
#: the elementwise fusion (it moves the elementwise nodes to blocked values).
_LASRES_LAYOUT_POSITION = 48.8
#: Position of the residual sums folded into the batch-norm gradients and the
#: convolutions: after the layout rewrite (the sums of the graph's final
#: layouts), before the fusion.
_LASRES_ADDEND_POSITION = 48.9
#: Position of the remaining large sums' C kernel (lasres.ops.add): after the
#: folds (what they take is gone), before the fusion.
_LASRES_SUM_POSITION = 48.95


@contextmanager
def collector_held():
    """Hold Python's cycle collector for a graph compile (reentrant).

    Rewriting and linking a deep network's graph leave a million or more
    objects in the young generations; each of the collector's full passes
    walks all of them, about 14 passes for the ResNet-110 training step:
    15.6 s of compile with the collector, 11.7 s without. The garbage is
    collected once, by the first collection after the compile. A collector
    the user has turned off stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _Maker(FunctionMaker):
    """PyTensor's FunctionMaker with the collector held while it rewrites and
    links, and the graph's missing C modules compiled on all cores first
    (lasres.ops.cbuild)."""

    def __init__(self, *args, **kwargs):
        with collector_held():
            super().__init__(*args, **kwargs)

    def create(self, *args, **kwargs):
        with collector_held():
            if getattr(self.linker, "c_thunks", False) and pytensor.config.cxx:
                prebuild(self.fgraph)   # the missing C modules, on all cores
            return super().create(*args, **kwargs)


class LasresMode(Mode):
    """A PyTensor mode whose functions compile with the collector held, their
    missing C modules built side by side first."""

    @property
    def function_maker(self):
        return _Maker


def _c_mode():
    mode = LasresMode(linker="cvm", optimizer="fast_run").excluding(*_EXCLUDED_REWRITES)
    kernels = in2out(local_inline_softmax, local_channel_sum, local_trailing_sum,
                     local_bn_train_relu, local_bn_infer_relu, name="lasres_c_kernels")
    set_fallback_mode(lambda: get_mode("c"))
    return mode.register((kernels, _LASRES_REWRITES_POSITION),
                         (fuse_inference, _LASRES_FUSION_POSITION),
                         (blocked_layout, _LASRES_LAYOUT_POSITION),
                         (in2out(local_bn_grad_addend, local_conv_addend,
                                 name="lasres_addends"), _LASRES_ADDEND_POSITION),
                         (in2out(local_parallel_add, name="lasres_parallel_add"),
                          _LASRES_SUM_POSITION))


def get_mode(backend=None):
    """Return the PyTensor compile mode for a backend name.

    Parameters
    ----------
    backend : str or None
        One of :data:`BACKENDS`; ``None`` means :func:`default_backend`.

    Returns
    -------
    pytensor.compile.mode.Mode
    """
    backend = (backend or default_backend()).lower()
    if backend == "c":
        return predefined_modes["LASRES_C"]
    if backend == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise LasresError("backend 'jax' needs jax: pip install 'lasres[jax]'") from None
        return predefined_modes["LASRES_JAX"]
    if backend == "numba":
        return predefined_modes["NUMBA"]
    if backend == "py":
        return Mode(linker="py", optimizer="fast_run")
    raise LasresError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def default_backend():
    """The backend used when none is asked for: ``$LASRES_BACKEND`` or ``c``."""
    return os.environ.get("LASRES_BACKEND", "c")


def describe_device(backend=None):
    """A short human-readable description of where a backend computes."""
    backend = (backend or default_backend()).lower()
    if backend == "jax":
        try:
            import jax
            devs = jax.devices()
            procs = jax.process_count()
            return f"{len(devs)} x {devs[0].device_kind} ({devs[0].platform})" + \
                (f" in {procs} processes" if procs > 1 else "")
        except Exception as exc:  # pragma: no cover - depends on the machine
            return f"jax unavailable ({exc})"
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


if "LASRES_C" not in predefined_modes:
    register_mode("LASRES_C", _c_mode())
    _jax = predefined_modes["JAX"]
    register_mode("LASRES_JAX", LasresMode(linker=_jax.provided_linker,
                                           optimizer=_jax.provided_optimizer)
                  .excluding(*_EXCLUDED_REWRITES))

if "mode" not in _user_flags:
    pytensor.config.mode = predefined_modes["LASRES_C"]

# a step's large arrays reused by the next, not mapped afresh (see lasres.ops.heap)
keep_freed_memory()
