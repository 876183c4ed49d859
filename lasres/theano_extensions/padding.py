"""Padding (Lasagne's ``lasagne.theano_extensions.padding``)."""
import pytensor.tensor as pt

__all__ = ["pad"]


def pad(x, width, val=0, batch_ndim=1):
    """Pad a tensor with a constant value.

    Parameters
    ----------
    x : tensor
    width : int, iterable of int, or iterable of pairs of int
        An int pads every axis after the first ``batch_ndim`` by that much at
        both ends; an iterable gives one width (or one ``(before, after)``
        pair) per padded axis.
    val : float
        The padding value.
    batch_ndim : int
        Number of leading axes left unpadded.

    Returns
    -------
    tensor
        ``x`` padded.
    """
    input_shape = x.shape
    input_ndim = x.ndim
    output_shape = list(input_shape)
    indices = [slice(None) for _ in output_shape]
    widths = [width] * (input_ndim - batch_ndim) if isinstance(width, int) else width
    for k, w in enumerate(widths):
        try:
            left, right = w
        except TypeError:
            left = right = w
        output_shape[k + batch_ndim] += left + right
        indices[k + batch_ndim] = slice(left, left + input_shape[k + batch_ndim])
    out = pt.ones(output_shape, dtype=x.dtype) * val if val else pt.zeros(output_shape,
                                                                           dtype=x.dtype)
    return pt.set_subtensor(out[tuple(indices)], x)
