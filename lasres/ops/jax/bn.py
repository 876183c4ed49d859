"""JAX implementations of the batch-normalisation ops."""
from pytensor.link.jax.dispatch import jax_funcify

from ..bn import (BatchNormInfer, BatchNormInferRelu, BatchNormReluTrainGrad, BatchNormTrain,
                  BatchNormTrainGrad, BatchNormTrainRelu)
from ..shape import broadcast_to_axes


@jax_funcify.register(BatchNormTrain)
def _jax_bn_train(op, node=None, **kwargs):
    import jax.numpy as jnp
    axes, eps = op.axes, op.epsilon

    def bn_train(x, gamma, beta):
        mean = jnp.mean(x, axis=axes, keepdims=True)
        centred = x - mean
        var = jnp.mean(jnp.square(centred), axis=axes, keepdims=True)
        inv_std = 1.0 / jnp.sqrt(var + eps)
        y = (centred * (broadcast_to_axes(gamma, x.ndim, axes) * inv_std)
             + broadcast_to_axes(beta, x.ndim, axes))
        return (y.astype(x.dtype), jnp.squeeze(mean, axes).astype(x.dtype),
                jnp.squeeze(inv_std, axes).astype(x.dtype))

    return bn_train

@jax_funcify.register(BatchNormTrainGrad)
def _jax_bn_train_grad(op, node=None, **kwargs):
    import jax.numpy as jnp
    axes = op.axes

    def bn_train_grad(x, gy, gamma, mean, inv_std):
        nd = x.ndim
        n = 1
        for a in axes:
            n *= x.shape[a]
        inv_b = broadcast_to_axes(inv_std, nd, axes)
        xhat = (x - broadcast_to_axes(mean, nd, axes)) * inv_b
        gbeta = jnp.sum(gy, axis=axes)
        ggamma = jnp.sum(gy * xhat, axis=axes)
        gx = (gy - broadcast_to_axes(gbeta / n, nd, axes)
              - xhat * broadcast_to_axes(ggamma / n, nd, axes)) \
            * (broadcast_to_axes(gamma, nd, axes) * inv_b)
        return gx.astype(x.dtype), ggamma.astype(x.dtype), gbeta.astype(x.dtype)

    return bn_train_grad

@jax_funcify.register(BatchNormInfer)
def _jax_bn_infer(op, node=None, **kwargs):
    axes = op.axes

    def bn_infer(x, gamma, beta, mean, inv_std):
        nd = x.ndim
        return ((x - broadcast_to_axes(mean, nd, axes))
                * broadcast_to_axes(gamma * inv_std, nd, axes)
                + broadcast_to_axes(beta, nd, axes)).astype(x.dtype)

    return bn_infer


# The fused ops exist only in graphs the C mode has rewritten; their JAX
# versions compose the ones above (subclasses must not inherit those).

def _jax_relu(y):
    import jax.numpy as jnp
    return (0.5 * (y + jnp.abs(y))).astype(y.dtype)


@jax_funcify.register(BatchNormTrainRelu)
def _jax_bn_train_relu(op, node=None, **kwargs):
    train = _jax_bn_train(op, node=node, **kwargs)

    def bn_train_relu(x, gamma, beta):
        y, mean, inv_std = train(x, gamma, beta)
        return _jax_relu(y), mean, inv_std, (gamma * inv_std).astype(x.dtype)

    return bn_train_relu


@jax_funcify.register(BatchNormReluTrainGrad)
def _jax_bn_relu_train_grad(op, node=None, **kwargs):
    import jax.numpy as jnp
    grad = _jax_bn_train_grad(op, node=node, **kwargs)
    axes = op.axes

    def bn_relu_train_grad(x, gr, gamma, beta, mean, scale, inv_std, *addend):
        nd = x.ndim
        y = (x - broadcast_to_axes(mean, nd, axes)) * broadcast_to_axes(scale, nd, axes) \
            + broadcast_to_axes(beta, nd, axes)
        gy = jnp.where(y > 0, gr, jnp.where(y == 0, 0.5 * gr, 0 * gr)).astype(gr.dtype)
        gx, ggamma, gbeta = grad(x, gy, gamma, mean, inv_std)
        return (gx + addend[0] if addend else gx), ggamma, gbeta

    return bn_relu_train_grad


@jax_funcify.register(BatchNormInferRelu)
def _jax_bn_infer_relu(op, node=None, **kwargs):
    infer = _jax_bn_infer(op, node=node, **kwargs)

    def bn_infer_relu(*args):
        return _jax_relu(infer(*args))

    return bn_infer_relu
