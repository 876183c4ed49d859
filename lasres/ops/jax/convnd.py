"""JAX implementations of the N-d convolution ops (``jax.lax.conv_general_dilated``;
the gradient ops are its VJPs, so XLA sees the transposed convolutions)."""
from pytensor.link.jax.dispatch import jax_funcify

from ..convnd import ConvNd, ConvNdGradInputs, ConvNdGradWeights
from .shape import static_shape

_SPATIAL = "DHWXYZUV"


def _forward(op):
    import jax

    sp = _SPATIAL[:op.n]
    numbers = ("NC" + sp, "OI" + sp, "NC" + sp)
    spatial_flip = (slice(None), slice(None)) + (slice(None, None, -1),) * op.n

    def conv(x, w):
        k = w[spatial_flip] if op.filter_flip else w
        return jax.lax.conv_general_dilated(
            x, k, window_strides=op.stride, padding=[(p, p) for p in op.pad],
            rhs_dilation=op.dilation, dimension_numbers=numbers)

    return conv


@jax_funcify.register(ConvNd)
def _jax_funcify_convnd(op, node=None, **kwargs):
    return _forward(op)


def _transposed(op, node, wrt_input):
    """The VJP of the forward convolution with respect to its input
    (``wrt_input``: inputs ``(gz, w, shape)``) or its filters (``(x, gz, shape)``)."""
    import jax
    import jax.numpy as jnp

    conv = _forward(op)
    spatial = static_shape(op, node, op.n)

    def transposed(a, b, shape):
        if wrt_input:
            gz, w = a, b
            zero = jnp.zeros((gz.shape[0], w.shape[1]) + spatial(shape), gz.dtype)
            _, vjp = jax.vjp(lambda x: conv(x, w), zero)
        else:
            x, gz = a, b
            zero = jnp.zeros((gz.shape[1], x.shape[1]) + spatial(shape), x.dtype)
            _, vjp = jax.vjp(lambda w: conv(x, w), zero)
        return vjp(gz)[0]

    return transposed


@jax_funcify.register(ConvNdGradInputs)
def _jax_funcify_convnd_grad_inputs(op, node=None, **kwargs):
    return _transposed(op, node, wrt_input=True)


@jax_funcify.register(ConvNdGradWeights)
def _jax_funcify_convnd_grad_weights(op, node=None, **kwargs):
    return _transposed(op, node, wrt_input=False)
