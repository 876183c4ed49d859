"""JAX implementations of the one-node ReLU and its gradient."""
from pytensor.link.jax.dispatch import jax_funcify

from ..elemwise import ScalarRectify, ScalarRectifyGrad


@jax_funcify.register(ScalarRectify)
def _jax_rectify(op, node=None, **kwargs):
    import jax.numpy as jnp

    def rectify(x):
        return 0.5 * (x + jnp.abs(x))

    return rectify

@jax_funcify.register(ScalarRectifyGrad)
def _jax_rectify_grad(op, node=None, **kwargs):
    import jax.numpy as jnp

    def rectify_grad(x, gz):
        return jnp.where(x > 0, gz, jnp.where(x == 0, 0.5 * gz, jnp.zeros_like(gz)))

    return rectify_grad
