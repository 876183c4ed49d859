"""JAX implementations of the pooling ops (``jax.lax.reduce_window``)."""
import numpy as np
from pytensor.link.jax.dispatch import jax_funcify

from ..pool import Pool2d, Pool2dGrad, Pool2dGradGrad
from ..pool_numpy import PoolGeometry


def _jax_geometry(op, x):
    return PoolGeometry(x.shape[2:], op.ws, op.stride, op.pad, op.ignore_border)

def _jax_pad(x, g, fill):
    import jax
    (ph, pw), (hp, wp) = g.pad, g.padded
    cfg = [(0, 0, 0), (0, 0, 0), (ph, hp - g.h - ph, 0), (pw, wp - g.w - pw, 0)]
    return jax.lax.pad(x, np.array(fill, dtype=x.dtype), cfg)

def _jax_windows(arr, g):
    """Per window offset: the strided slice it reads."""
    import jax
    (oh, ow), (sh, sw) = g.out, g.stride
    n, c = arr.shape[:2]
    for i in range(g.ws[0]):
        for j in range(g.ws[1]):
            yield (i, j), jax.lax.slice(arr, (0, 0, i, j),
                                        (n, c, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1),
                                        (1, 1, sh, sw))

def _jax_scatter(v, g, i, j):
    """Place ``v`` (pooled shape) at the window offset (i, j) of the padded extent."""
    import jax
    (oh, ow), (sh, sw), (hp, wp) = g.out, g.stride, g.padded
    cfg = [(0, 0, 0), (0, 0, 0), (i, hp - i - (oh - 1) * sh - 1, sh - 1),
           (j, wp - j - (ow - 1) * sw - 1, sw - 1)]
    return jax.lax.pad(v, np.array(0, dtype=v.dtype), cfg)

def _jax_crop(arr, g):
    return arr[:, :, g.pad[0]:g.pad[0] + g.h, g.pad[1]:g.pad[1] + g.w]

def _jax_pool(op, x):
    import jax
    g = _jax_geometry(op, x)
    (ph, pw), (hp, wp) = g.pad, g.padded
    padding = [(0, 0), (0, 0), (ph, hp - g.h - ph), (pw, wp - g.w - pw)]
    dims, strides = (1, 1) + op.ws, (1, 1) + op.stride
    if op.mode == "max":
        return jax.lax.reduce_window(x, np.array(-np.inf, x.dtype), jax.lax.max,
                                     dims, strides, padding)
    out = jax.lax.reduce_window(x, np.array(0, x.dtype), jax.lax.add, dims, strides,
                                padding)
    if op.mode.startswith("average"):
        out = out / g.divisor(op.mode, x.dtype)
    return out

@jax_funcify.register(Pool2d)
def _jax_funcify_pool2d(op, node=None, **kwargs):
    def pool2d_jax(x):
        return _jax_pool(op, x)

    return pool2d_jax

@jax_funcify.register(Pool2dGrad)
def _jax_funcify_pool2d_grad(op, node=None, **kwargs):
    import jax
    import jax.numpy as jnp

    if op.mode == "max":
        def pool2d_grad_jax(x, z, gz):
            g = _jax_geometry(op, x)
            xp = _jax_pad(x, g, -np.inf)
            gxp = None
            for (i, j), xv in _jax_windows(xp, g):
                term = _jax_scatter(jnp.where(xv == z, gz, jnp.zeros_like(gz)), g, i, j)
                gxp = term if gxp is None else gxp + term
            return _jax_crop(gxp, g)
    else:
        def pool2d_grad_jax(x, gz):
            _, vjp = jax.vjp(lambda v: _jax_pool(op, v), x.astype(gz.dtype))
            return vjp(gz)[0]

    return pool2d_grad_jax

@jax_funcify.register(Pool2dGradGrad)
def _jax_funcify_pool2d_grad_grad(op, node=None, **kwargs):
    import jax.numpy as jnp

    def pool2d_grad_grad_jax(x, z, ggx):
        g = _jax_geometry(op, x)
        xp, ggxp = _jax_pad(x, g, -np.inf), _jax_pad(ggx, g, 0)
        out = None
        for ((i, j), xv), (_, gv) in zip(_jax_windows(xp, g), _jax_windows(ggxp, g)):
            term = jnp.where(xv == z, gv, jnp.zeros_like(gv))
            out = term if out is None else out + term
        return out

    return pool2d_grad_grad_jax
