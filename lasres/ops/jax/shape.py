"""JAX implementations of the scalar shape ops, and the static reading of a
gradient op's shape input (``jax.jit`` needs static shapes)."""
from typing import Callable, Tuple

from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.jax.dispatch import jax_funcify

from ..shape import ConvLength, PoolLength, shape_input_static

__all__ = ["static_shape"]


def static_shape(op: Op, node: Apply, n: int) -> Callable[[object], Tuple[int, ...]]:
    """A function from the run-time value of the shape input ``node.inputs[2]``
    (``n`` spatial axes) to a static spatial shape.

    Raises
    ------
    NotImplementedError
        The shape input is neither a constant nor a shape donor.
    """
    shape = node.inputs[2]
    if shape.ndim == n + 2:
        # a shape donor: its array shape is concrete while tracing
        return lambda value: tuple(value.shape[2:])
    static = shape_input_static(shape, n)
    if any(s is None for s in static):
        raise NotImplementedError(
            f"{op}: the JAX backend needs a static shape input (a constant vector or a "
            "tensor whose trailing axes give it)")
    return lambda value: static


@jax_funcify.register(ConvLength)
def _jax_funcify_conv_length(op, node=None, **kwargs):
    def conv_length_jax(length, kernel):
        return op.length(length, kernel)

    return conv_length_jax


@jax_funcify.register(PoolLength)
def _jax_funcify_pool_length(op, node=None, **kwargs):
    def pool_length_jax(length):
        return op.length(length)

    return pool_length_jax
