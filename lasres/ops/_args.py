"""Argument checks shared by lasres's ops (one place for each rule)."""
import pytensor.tensor as pt
from pytensor.tensor.type import float_dtypes

__all__ = ["float_tensor", "cast"]


def float_tensor(var, name, ndim):
    """``var`` as a tensor variable of ``ndim`` dimensions and a float dtype,
    or a TypeError naming the argument."""
    var = pt.as_tensor_variable(var)
    if var.ndim != ndim:
        raise TypeError(f"{name} must be a {ndim}-d tensor, got {var.type}")
    if var.dtype not in float_dtypes:
        raise TypeError(f"{name} must have a float dtype, got {var.dtype}")
    return var


def cast(var, dtype):
    """``var`` in ``dtype`` (no node when it already is)."""
    return var if var.dtype == dtype else pt.cast(var, dtype)
