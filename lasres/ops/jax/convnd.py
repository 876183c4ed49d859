"""JAX implementations of the N-d convolution ops (``jax.lax.conv_general_dilated``;
the gradient ops are its VJPs, so XLA sees the transposed convolutions)."""
from pytensor.link.jax.dispatch import jax_funcify

from ..convnd import ConvNd, ConvNdGradInputs, ConvNdGradWeights, ConvNdLength, _shape_static

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


def _static_shape(op, node):
    """A function from the runtime shape input to a static spatial shape."""
    shape = node.inputs[2]
    if shape.ndim == op.n + 2:
        # a shape donor: its array shape is concrete while tracing
        return lambda value: tuple(value.shape[2:])
    static = _shape_static(shape, op.n)
    if any(s is None for s in static):
        raise NotImplementedError(
            f"{op}: the JAX backend needs a static shape input (a constant vector or a "
            "tensor whose trailing axes give it)")
    return lambda value: static


@jax_funcify.register(ConvNd)
def _jax_funcify_convnd(op, node=None, **kwargs):
    return _forward(op)


@jax_funcify.register(ConvNdGradInputs)
def _jax_funcify_convnd_grad_inputs(op, node=None, **kwargs):
    import jax
    import jax.numpy as jnp

    conv = _forward(op)
    spatial = _static_shape(op, node)

    def convnd_grad_inputs(gz, w, shape):
        x0 = jnp.zeros((gz.shape[0], w.shape[1]) + spatial(shape), gz.dtype)
        _, vjp = jax.vjp(lambda x: conv(x, w), x0)
        return vjp(gz)[0]

    return convnd_grad_inputs


@jax_funcify.register(ConvNdGradWeights)
def _jax_funcify_convnd_grad_weights(op, node=None, **kwargs):
    import jax
    import jax.numpy as jnp

    conv = _forward(op)
    spatial = _static_shape(op, node)

    def convnd_grad_weights(x, gz, shape):
        w0 = jnp.zeros((gz.shape[1], x.shape[1]) + spatial(shape), x.dtype)
        _, vjp = jax.vjp(lambda w: conv(x, w), w0)
        return vjp(gz)[0]

    return convnd_grad_weights


@jax_funcify.register(ConvNdLength)
def _jax_funcify_convnd_length(op, node=None, **kwargs):
    def convnd_length(length, kernel):
        return op.length(length, kernel)

    return convnd_length
