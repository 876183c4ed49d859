"""Argument checks shared by lasres's ops (one place for each rule)."""
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import pytensor.tensor as pt
from pytensor.tensor.type import float_dtypes
from pytensor.tensor.variable import TensorVariable

__all__ = ["float_tensor", "cast", "int_tuple", "int_pair", "int64_scalar", "normalize_pad",
           "resolve_pad"]


def float_tensor(var: Any, name: str, ndim: int) -> TensorVariable:
    """``var`` as a tensor variable of ``ndim`` dimensions and a float dtype.

    Raises
    ------
    TypeError
        Naming the argument, when ``var`` has another rank or dtype.
    """
    var = pt.as_tensor_variable(var)
    if var.ndim != ndim:
        raise TypeError(f"{name} must be a {ndim}-d tensor, got {var.type}")
    if var.dtype not in float_dtypes:
        raise TypeError(f"{name} must have a float dtype, got {var.dtype}")
    return var


def cast(var: TensorVariable, dtype: str) -> TensorVariable:
    """``var`` in ``dtype`` (no node when it already is)."""
    return var if var.dtype == dtype else pt.cast(var, dtype)


def int_tuple(value: Any, n: int, name: str, minimum: Optional[int] = None) -> Tuple[int, ...]:
    """``value`` as a tuple of ``n`` Python ints (an int is repeated).

    Parameters
    ----------
    value : int or sequence of int
    n : int
        Length of the tuple.
    name : str
        The argument's name, for the error messages.
    minimum : int, optional
        Smallest allowed entry.

    Raises
    ------
    TypeError
        ``value`` is neither an int nor ``n`` ints.
    ValueError
        An entry is below ``minimum``.
    """
    what = "a pair of ints" if n == 2 else f"a tuple of {n} ints"
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * n
    try:
        value = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or {what}, got {value!r}") from None
    if len(value) != n or not all(isinstance(v, (int, np.integer)) for v in value):
        raise TypeError(f"{name} must be an int or {what}, got {value!r}")
    value = tuple(int(v) for v in value)
    if minimum is not None and min(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def int_pair(value: Any, name: str, minimum: Optional[int] = None) -> Tuple[int, int]:
    """``value`` as a pair of Python ints (see :func:`int_tuple`)."""
    return int_tuple(value, 2, name, minimum)


def int64_scalar(value: Any) -> TensorVariable:
    """An int or integer scalar variable as an ``int64`` scalar variable."""
    if isinstance(value, (int, np.integer)):
        return pt.constant(int(value), dtype="int64")
    return pt.cast(pt.as_tensor_variable(value), "int64")


def normalize_pad(pad: Any, n: int = 2) -> Union[str, Tuple[int, ...]]:
    """``'same'``, ``'full'`` or a tuple of ``n`` non-negative ints
    (``'valid'`` becomes zeros)."""
    if isinstance(pad, str):
        if pad == "valid":
            return (0,) * n
        if pad in ("same", "full"):
            return pad
        raise ValueError(f"pad must be 'valid', 'same', 'full', an int or "
                         f"{'a pair' if n == 2 else 'a tuple'} of ints, got {pad!r}")
    return int_tuple(pad, n, "pad", 0)


def resolve_pad(pad: Any, k_shape: Sequence, dilation: Optional[Sequence[int]] = None):
    """Zero padding per axis, with a string resolved by the filter shape.

    Parameters
    ----------
    pad : str or tuple
        ``'valid'`` (zeros), ``'same'``/``'half'`` (half the dilated filter,
        rounded down), ``'full'`` (the dilated filter less one); any other
        value is returned unchanged.
    k_shape : sequence of int or symbolic scalars
        Filter shape along the padded axes.
    dilation : sequence of int, optional
        Filter dilation (1 when omitted).
    """
    if not isinstance(pad, str):
        return pad
    eff = list(k_shape) if dilation is None else \
        [(k - 1) * d + 1 for k, d in zip(k_shape, dilation)]
    if pad == "valid":
        return (0,) * len(eff)
    if pad in ("same", "half"):
        return tuple(e // 2 for e in eff)
    if pad == "full":
        return tuple(e - 1 for e in eff)
    raise ValueError(f"pad must be 'valid', 'same', 'half', 'full', an int or a tuple of "
                     f"ints, got {pad!r}")
