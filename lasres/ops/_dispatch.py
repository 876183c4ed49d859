"""Register lasres's backend implementations when their backend loads.

``import lasres`` must not import jax (it costs seconds and is useless on a
CPU-only run). The JAX implementations in :mod:`lasres.ops.jax` are therefore
registered the moment PyTensor's own JAX dispatch package is imported: if it
already is, at once; otherwise a one-shot import hook runs them right after
that package has finished loading.
"""
import importlib.abc
import sys

_JAX_DISPATCH = "pytensor.link.jax.dispatch"

__all__ = ["install"]


def _register_jax():
    import lasres.ops.jax  # noqa: F401  (registers on import)


class _AfterLoad(importlib.abc.Loader):
    """Wrap a module's loader and run ``then`` once the module has executed."""

    def __init__(self, inner, then):
        self.inner, self.then = inner, then

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.then()


class _Hook(importlib.abc.MetaPathFinder):
    """Meta-path finder that only watches for PyTensor's JAX dispatch package."""

    def find_spec(self, name, path, target=None):
        if name != _JAX_DISPATCH:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                _uninstall()
                spec.loader = _AfterLoad(spec.loader, _register_jax)
                return spec
        return None


_hook = _Hook()


def _uninstall():
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def install():
    """Make sure lasres's JAX implementations are registered whenever
    PyTensor's JAX dispatch is (idempotent)."""
    if _JAX_DISPATCH in sys.modules:
        _register_jax()
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)
