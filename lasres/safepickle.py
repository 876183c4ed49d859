"""A restricted unpickler: pickles of NumPy arrays and builtin containers, nothing else.

Legacy weight files (``.pklz``) and the CIFAR batches are pickles, and a
pickle can call any importable function. :func:`restricted_load` admits
only the globals a list of arrays (or a dict of arrays, strings and
numbers) is made of, in the forms NumPy itself writes, with sizes checked
against the data actually present, so that a crafted file can neither run
code nor allocate more than it holds.

This module depends on :mod:`lasres.sizecheck` and :mod:`lasres.errors`
only: readers of weight files (:mod:`lasres.weights`) and of data sets
(:mod:`lasres.data`) both use it.
"""
from __future__ import annotations

import _compat_pickle
import pickle
import re
import struct
from typing import Any, BinaryIO

import numpy as np

from .errors import LasresError
from .sizecheck import CappedReader, declared_nbytes

__all__ = ["restricted_load", "ForbiddenPickleError", "forbidden_message"]


def _numpy_core():
    """Return the module holding ``_reconstruct`` / ``scalar`` for this NumPy."""
    try:  # NumPy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - NumPy 1.x
        from numpy.core import multiarray, numeric
    return multiarray, numeric


def _latin1_encode(obj, encoding="utf-8", errors="strict"):
    """``_codecs.encode`` restricted to what pickles of bytes need (latin-1 text)."""
    name = encoding.lower().replace("_", "-") if isinstance(encoding, str) else None
    if name not in ("latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1") \
            or not isinstance(obj, str):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return obj.encode("latin1", errors)


def _empty_bytes(*args):
    """``bytes()`` as Python 3 pickles an empty ``bytes`` below protocol 3; nothing else."""
    if args:
        raise pickle.UnpicklingError("builtins.bytes with arguments is not allowed")
    return b""


class _NdarrayName(object):
    """What ``numpy.ndarray`` resolves to inside a pickle: a name, not a callable.

    NumPy's pickles only pass ``numpy.ndarray`` as the first argument of
    ``_reconstruct``; calling it (``numpy.ndarray(shape, dtype)``) would
    allocate an uninitialised array of any size, so it is not callable here.
    """

    __slots__ = ()

    def __repr__(self):
        return "numpy.ndarray"

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("calling numpy.ndarray(...) is not allowed (it would "
                                     "allocate an uninitialised array of any size; NumPy's "
                                     "pickles never do it)")


_NDARRAY = _NdarrayName()
#: dtype codes NumPy writes for plain numeric arrays: b1, i1..i8, u1..u8, f2..f16, c8..c32
_DTYPE_CODE = re.compile(r"[<>|=]?(b1|[iu][1248]|f(2|4|8|10|12|16)|c(8|16|20|24|32)|\?)")


def _check_plain_dtype(dt, what):
    if not isinstance(dt, np.dtype) or dt.kind not in "biufc" or dt.names is not None \
            or dt.subdtype is not None or dt.hasobject:
        raise pickle.UnpicklingError(f"{what}: only plain numeric dtypes are allowed, got {dt!r}")
    return dt


def _safe_reconstruct(subtype, shape, dtype):
    """``numpy.core.multiarray._reconstruct`` in the one form NumPy writes:
    ``_reconstruct(numpy.ndarray, (0,), b'b')`` (an empty array that BUILD fills)."""
    if subtype is not _NDARRAY or shape != (0,) or dtype not in ("b", b"b"):
        raise pickle.UnpicklingError("_reconstruct is only allowed as "
                                     "_reconstruct(numpy.ndarray, (0,), b'b')")
    multiarray, _ = _numpy_core()
    return multiarray._reconstruct(np.ndarray, (0,), b"b")


def _safe_dtype(code, align=False, copy=True):
    """``numpy.dtype(code, align, copy)`` for plain numeric codes only, always a copy
    (BUILD then sets its byte order; it must never alter NumPy's shared dtypes)."""
    if isinstance(code, bytes):
        code = code.decode("latin1")
    if not isinstance(code, str) or not _DTYPE_CODE.fullmatch(code) \
            or align not in (0, 1, False, True) or copy not in (0, 1, False, True):
        raise pickle.UnpicklingError(f"numpy.dtype({code!r}) is not allowed "
                                     f"(only plain numeric dtypes)")
    return _check_plain_dtype(np.dtype(code, align=False, copy=True), "numpy.dtype")


def _safe_scalar(dtype, data=None):
    """``numpy.core.multiarray.scalar(dtype, bytes)`` for plain numeric dtypes."""
    _check_plain_dtype(dtype, "numpy scalar")
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError("numpy scalar: data does not match its dtype")
    multiarray, _ = _numpy_core()
    return multiarray.scalar(dtype, bytes(data))


def _safe_frombuffer(buf, dtype, shape, order="C"):
    """``numpy.core.numeric._frombuffer`` (NumPy's protocol-5 form) with checked sizes."""
    _check_plain_dtype(dtype, "numpy _frombuffer")
    if isinstance(buf, pickle.PickleBuffer):
        buf = buf.raw()
    if not isinstance(buf, (bytes, bytearray, memoryview)) or order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy _frombuffer: bad arguments")
    try:
        n = declared_nbytes(tuple(shape), dtype, "numpy _frombuffer")
    except (LasresError, TypeError) as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    if n != memoryview(buf).nbytes:
        raise pickle.UnpicklingError("numpy _frombuffer: buffer size does not match the shape")
    _, numeric = _numpy_core()
    return numeric._frombuffer(buf, dtype, tuple(shape), order)


def _check_array_state(inst, state):
    """The state NumPy writes for a plain array: ``(1, shape, dtype, is_fortran, rawdata)``
    (or without the leading version), rawdata exactly ``prod(shape) * itemsize`` bytes."""
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise pickle.UnpicklingError("array state: expected a 4- or 5-tuple")
    if len(state) == 5:
        if state[0] != 1:
            raise pickle.UnpicklingError("array state: unsupported version")
        state = state[1:]
    shape, dtype, fortran, raw = state
    _check_plain_dtype(dtype, "array state")
    if fortran not in (0, 1, False, True):
        raise pickle.UnpicklingError("array state: bad order flag")
    try:
        n = declared_nbytes(shape, dtype, "array state")
    except LasresError as exc:
        raise pickle.UnpicklingError(str(exc)) from None
    if not isinstance(raw, (bytes, str, bytearray)) or len(raw) != n:
        raise pickle.UnpicklingError(f"array state: data of {len(raw) if hasattr(raw, '__len__') else '?'} "
                                     f"bytes for an array of {n} bytes")
    if not (isinstance(inst, np.ndarray) and inst.shape == (0,) and inst.dtype == np.int8):
        raise pickle.UnpicklingError("array state applied to something else than a new array")


def _check_dtype_state(inst, state):
    """The state NumPy writes for a plain dtype: ``(3, '<', None, None, None, -1, -1, 0)``."""
    if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4) \
            or state[1] not in ("<", ">", "|", "=", b"<", b">", b"|", b"=") \
            or state[2:5] != (None, None, None) or state[5:7] != (-1, -1) \
            or not isinstance(state[7], int) or (len(state) == 9 and state[8] is not None):
        raise pickle.UnpicklingError("dtype state: only plain numeric dtypes are allowed")
    _check_plain_dtype(inst, "dtype state")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    _, numeric = _numpy_core()
    allowed: dict[tuple[str, str], Any] = {}
    # Array reconstruction only in the forms NumPy writes; nothing here can
    # allocate more than the bytes present in the stream.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _safe_reconstruct
        allowed[(mod, "scalar")] = _safe_scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        if hasattr(numeric, "_frombuffer"):
            allowed[(mod, "_frombuffer")] = _safe_frombuffer
    allowed[("numpy", "ndarray")] = _NDARRAY
    allowed[("numpy", "dtype")] = _safe_dtype
    # Protocol-2 pickles written by Python 3 encode ``bytes`` through
    # ``_codecs.encode(text, 'latin1')``; only that codec is let through.
    allowed[("_codecs", "encode")] = _latin1_encode
    # Plain containers and scalars. ``bytes`` only as ``bytes()`` (how an
    # empty array's data is pickled below protocol 3) and no ``bytearray``:
    # ``bytes(10**12)`` would be a memory bomb. Python-2 names such as
    # ``__builtin__`` are mapped to ``builtins`` before this table is consulted.
    allowed[("builtins", "bytes")] = _empty_bytes
    for name, obj in (("list", list), ("tuple", tuple), ("dict", dict), ("set", set),
                      ("frozenset", frozenset), ("int", int), ("float", float),
                      ("complex", complex), ("bool", bool), ("str", str)):
        allowed[("builtins", name)] = obj
    return allowed


_ALLOWED = _allowed_globals()


class ForbiddenPickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (never executed)."""

    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.module = module
        self.name = name


class _RestrictedUnpickler(pickle._Unpickler):
    """Unpickler admitting only NumPy array reconstruction and builtin containers.

    ``find_class`` is the only way a pickle can reach a callable; refusing
    every global outside the allow-list means a malicious file can build
    nothing but arrays, dtypes and plain containers, and the allowed NumPy
    entry points check their arguments (the forms NumPy writes, sizes that
    match the data present). ``BUILD`` is only applied to new arrays and
    dtypes, with states of the form NumPy writes; ``BYTEARRAY8`` is checked
    against the stream's cap before it allocates. Persistent ids are refused.
    It is the pure-Python unpickler (``pickle._Unpickler``) so that these
    opcodes can be checked; weight files hold few, large opcodes.
    """

    dispatch = dict(pickle._Unpickler.dispatch)
    max_bytes = None

    def find_class(self, module, name):  # noqa: D401 - pickle API
        # Python-2 names (``__builtin__``, ``copy_reg``, ``commands``...) are
        # mapped to their Python 3 spelling first, as pickle's own
        # ``find_class`` does, so that messages name the real target.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenPickleError(module, name) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not supported")

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.ndarray):
            _check_array_state(inst, state)
        elif isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        else:
            raise pickle.UnpicklingError(f"BUILD of a {type(inst).__name__} is not allowed")
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = _load_build

    def _load_bytearray8(self):
        n, = struct.unpack("<Q", self.read(8))
        if self.max_bytes is not None and n > self.max_bytes:
            raise pickle.UnpicklingError(f"BYTEARRAY8 of {n} bytes exceeds the cap")
        self.append(bytearray(self.read(n)))

    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8


def restricted_load(fileobj: BinaryIO, *, encoding: str = "latin1", errors: str = "strict",
                    max_bytes: int | None = None) -> Any:
    """Unpickle ``fileobj`` admitting only arrays, dtypes and builtin containers.

    Parameters
    ----------
    fileobj : binary file object
        Opened for reading, positioned at the start of the pickle.
    encoding, errors : str
        How Python-2 ``str`` objects are decoded (see :class:`pickle.Unpickler`).
        ``'latin1'`` reads legacy NumPy pickles; ``'bytes'`` returns Python 2
        ``str`` as ``bytes`` (e.g. the keys of the CIFAR pickles).
    max_bytes : int, optional
        Refuse (with :class:`lasres.errors.WeightFileError`, before
        allocating) a stream longer than this many bytes once decompressed.

    Returns
    -------
    object
        The unpickled object.

    Raises
    ------
    ForbiddenPickleError
        If the pickle references any other global (``os.system``,
        ``builtins.eval``, ...); nothing referenced is ever called.
    WeightFileError
        If the stream is longer than ``max_bytes``.
    pickle.UnpicklingError, EOFError, ValueError, ...
        Whatever a corrupt stream raises; callers wrap these.
    """
    if max_bytes is not None:
        fileobj = CappedReader(fileobj, max_bytes)
    u = _RestrictedUnpickler(fileobj, encoding=encoding, errors=errors)
    u.max_bytes = max_bytes
    return u.load()


def forbidden_message(path: str, exc: ForbiddenPickleError) -> str:
    """The one-line message for a pickle that asked for a forbidden global.

    Parameters
    ----------
    path : str
        The file, named at the start of the message.
    exc : ForbiddenPickleError
        What :func:`restricted_load` raised.

    Returns
    -------
    str
    """
    return (f"{path}: refusing to load: the pickle tries to load the forbidden object "
            f"{exc.module}.{exc.name} (only NumPy arrays and builtin containers are "
            f"allowed); nothing was executed")
