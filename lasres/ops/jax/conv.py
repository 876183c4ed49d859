"""JAX implementations of the convolution ops (``jax.lax.conv_general_dilated``)."""
from pytensor.link.jax.dispatch import jax_funcify

from .._args import resolve_pad
from ..conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
from .shape import static_shape


def _jax_conv(x, w, stride, pad):
    import jax
    return jax.lax.conv_general_dilated(
        x, w, window_strides=stride, padding=[(pad[0], pad[0]), (pad[1], pad[1])],
        dimension_numbers=("NCHW", "OIHW", "NCHW"))

@jax_funcify.register(Conv2d)
def _jax_funcify_conv2d(op, node=None, **kwargs):
    stride, pad, flip = op.stride, op.pad, op.filter_flip

    def conv2d_jax(x, w, *bias):
        p = resolve_pad(pad, w.shape[2:])
        out = _jax_conv(x, w[:, :, ::-1, ::-1] if flip else w, stride, p)
        if bias:
            out = out + bias[0].reshape(1, -1, 1, 1)
        return out

    return conv2d_jax

@jax_funcify.register(Conv2dGradInputs)
def _jax_funcify_conv2d_grad_inputs(op, node=None, **kwargs):
    import jax
    stride, pad, flip = op.stride, op.pad, op.filter_flip
    static_hw = static_shape(op, node, 2)

    def conv2d_grad_inputs_jax(gz, w, shape):
        h, wd = static_hw(shape)
        f, c, kh, kw = w.shape
        ph, pw = resolve_pad(pad, (kh, kw))
        oh, ow = gz.shape[2:]
        # remainder of the input not reached by any window (strided convs)
        rh = h + 2 * ph - ((oh - 1) * stride[0] + kh)
        rw = wd + 2 * pw - ((ow - 1) * stride[1] + kw)
        # correlate the dilated gradient with the 180-degree rotated
        # effective kernel: rot180(flip(w)) == w
        k = w if flip else w[:, :, ::-1, ::-1]
        return jax.lax.conv_general_dilated(
            gz, k, window_strides=(1, 1),
            padding=[(kh - 1 - ph, kh - 1 - ph + rh), (kw - 1 - pw, kw - 1 - pw + rw)],
            lhs_dilation=stride, dimension_numbers=("NCHW", "IOHW", "NCHW"))

    return conv2d_grad_inputs_jax

@jax_funcify.register(Conv2dGradWeights)
def _jax_funcify_conv2d_grad_weights(op, node=None, **kwargs):
    import jax
    stride, pad, flip = op.stride, op.pad, op.filter_flip
    static_hw = static_shape(op, node, 2)

    def conv2d_grad_weights_jax(x, gz, shape):
        kh, kw = static_hw(shape)
        ph, pw = resolve_pad(pad, (kh, kw))
        h, wd = x.shape[2:]
        oh, ow = gz.shape[2:]
        # batch axis of x/gz is contracted (feature role), channels of x
        # become the batch; gz acts as a dilated kernel
        hi_h = kh + (oh - 1) * stride[0] - h - ph
        hi_w = kw + (ow - 1) * stride[1] - wd - pw
        dw = jax.lax.conv_general_dilated(
            x, gz, window_strides=(1, 1), padding=[(ph, hi_h), (pw, hi_w)],
            rhs_dilation=stride, dimension_numbers=("CNHW", "IOHW", "CNHW"))
        return dw[:, :, ::-1, ::-1] if flip else dw

    return conv2d_grad_weights_jax
