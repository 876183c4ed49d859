"""JAX implementations of the fused helper ops."""
from pytensor.link.jax.dispatch import jax_funcify

from ..add import ParallelAdd
from ..fused import Attach, SumOfSquares
from ..reduce import ChannelSum


@jax_funcify.register(Attach)
def _jax_attach(op, node=None, **kwargs):
    def attach_(x, *others):
        return x

    return attach_



@jax_funcify.register(SumOfSquares)
def _jax_sum_of_squares(op, node=None, **kwargs):
    import jax.numpy as jnp

    def sum_of_squares_(*xs):
        total = jnp.sum(jnp.square(xs[0]))
        for x in xs[1:]:
            total = total + jnp.sum(jnp.square(x))
        return total

    return sum_of_squares_


@jax_funcify.register(ChannelSum)
def _jax_channel_sum(op, node=None, **kwargs):
    import jax.numpy as jnp

    def channel_sum_(x):
        return jnp.sum(x, axis=(0,) + tuple(range(2, x.ndim))).astype(x.dtype)

    return channel_sum_


@jax_funcify.register(ParallelAdd)
def _jax_parallel_add(op, node=None, **kwargs):
    def parallel_add_(a, b):
        return a + b

    return parallel_add_
