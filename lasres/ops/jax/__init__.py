"""JAX implementations of lasres's ops, registered with PyTensor's ``jax_funcify``.

PyTensor keeps its own JAX implementations in ``pytensor.link.jax.dispatch``,
a package that imports jax and is loaded only by the JAX linker. lasres does
the same: this package is imported by :mod:`lasres.ops._dispatch` right after
PyTensor's JAX dispatch has been imported (by whoever imports it), so
``import lasres`` never imports jax and any JAX-mode function sees lasres's ops.
"""
from . import bn, conv, convnd, elemwise, fused, pool  # noqa: F401
