"""Reading and writing parameter values: legacy ``.pklz`` files and HDF5 checkpoints.

Three on-disk formats are handled:

``.pklz`` (legacy)
    ``gzip`` of a pickled ``list`` of NumPy arrays, in
    ``lasagne.layers.get_all_param_values`` order. The seed's ``train_nn.py``
    wrote them under Python 2 with ``pickle.dump(params, gzip.open(path, 'wb'))``
    (protocol 0); they need ``encoding='latin1'`` to be read by Python 3.
    :func:`load_pklz` reads them (and modern pickles, gzipped or not, and
    ``.npz`` archives) with a *restricted* unpickler that only admits what a
    list of arrays is made of; :func:`save_pklz` writes files that the
    legacy Python 2 / NumPy 1 loader, Python 3 ``pickle.load`` and
    :func:`load_pklz` all read.
HDF5 checkpoint
    :func:`save_checkpoint` / :func:`load_checkpoint`: the parameter values
    plus architecture, parameter names, pixel mean, epoch, optimizer state,
    training history and free-form extra metadata, written atomically.
Anything
    :func:`load_weights` looks at a file's first bytes (not its extension)
    and dispatches to the right reader.

Every problem with a file (missing, truncated, corrupt, foreign, unsafe) is
raised as :class:`lasres.errors.WeightFileError` with a one-line message.
"""
from __future__ import annotations

import _compat_pickle
import gzip
import io
import json
import os
import pickle
import re
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ._atomic import atomic_path
from .errors import LasresError, WeightFileError
from .keras_h5 import is_keras_h5, load_keras_h5, save_keras_h5  # noqa: F401  (re-exported)

__all__ = [
    "load_pklz", "save_pklz", "load_weights", "save_checkpoint",
    "load_checkpoint", "Checkpoint", "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION", "detect_format", "restricted_load",
    "ForbiddenPickleError", "load_keras_h5", "save_keras_h5",
]

#: Value of the ``lasres_format`` root attribute of a lasres HDF5 checkpoint.
CHECKPOINT_FORMAT = "lasres-checkpoint"
#: Version written by :func:`save_checkpoint`; :func:`load_checkpoint` reads
#: this version and older ones.
CHECKPOINT_FORMAT_VERSION = 1

_GZIP_MAGIC = b"\x1f\x8b"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


# --------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------
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
    from .sizecheck import declared_nbytes
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
    from .sizecheck import declared_nbytes
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


def restricted_load(fileobj, *, encoding: str = "latin1", errors: str = "strict",
                    max_bytes: int | None = None):
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
        from .sizecheck import CappedReader
        fileobj = CappedReader(fileobj, max_bytes)
    u = _RestrictedUnpickler(fileobj, encoding=encoding, errors=errors)
    u.max_bytes = max_bytes
    return u.load()


def _forbidden_message(path, exc: ForbiddenPickleError) -> str:
    return (f"{path}: refusing to load: the pickle tries to load the forbidden object "
            f"{exc.module}.{exc.name} (only NumPy arrays and builtin containers are "
            f"allowed); nothing was executed")


# --------------------------------------------------------------------------
# format detection
# --------------------------------------------------------------------------
def _read_head(path, n=8) -> bytes:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightFileError(f"{path}: weight file not found")
    if os.path.isdir(path):
        raise WeightFileError(f"{path}: expected a weight file, found a directory")
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read weight file ({exc.strerror or exc})") from None


def _looks_like_pickle(head: bytes) -> bool:
    if not head:
        return False
    if head[0] == 0x80 and len(head) > 1 and 0 <= head[1] <= 5:  # PROTO opcode
        return True
    # protocol 0/1 pickles of a list start with MARK+LIST, EMPTY_LIST or
    # MARK+DICT / EMPTY_DICT / a GLOBAL
    return head[:1] in (b"(", b"]", b"}", b"c")


def detect_format(path) -> str:
    """Return ``'pklz'``, ``'pickle'``, ``'npz'``, ``'hdf5'`` (lasres checkpoint or
    other HDF5) or ``'keras'`` (Keras 1.x weight file) from a file's content.

    Parameters
    ----------
    path : str or os.PathLike
        The file to inspect. The extension is ignored.

    Raises
    ------
    WeightFileError
        If the file is missing or in none of these formats.
    """
    head = _read_head(path, 8)
    if head.startswith(_GZIP_MAGIC):
        return "pklz"
    if head.startswith(_HDF5_MAGIC):
        return "keras" if is_keras_h5(path) else "hdf5"
    if head.startswith(_ZIP_MAGIC):
        return "npz"
    if _looks_like_pickle(head):
        return "pickle"
    try:  # HDF5 with a user block: signature at 512, 1024, ...
        import h5py
        if h5py.is_hdf5(os.fspath(path)):
            return "keras" if is_keras_h5(path) else "hdf5"
    except Exception:  # pragma: no cover - h5py missing or odd file
        pass
    raise WeightFileError(
        f"{os.fspath(path)}: unknown weight file format (expected gzip'd pickle .pklz, "
        f"pickle, .npz or lasres HDF5 checkpoint)")


# --------------------------------------------------------------------------
# list-of-arrays validation
# --------------------------------------------------------------------------
def _as_array_list(obj, path) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        raise WeightFileError(
            f"{path}: expected a list of arrays, found a single array of shape {obj.shape}")
    if not isinstance(obj, (list, tuple)):
        raise WeightFileError(f"{path}: expected a list of arrays, found {type(obj).__name__}")
    if len(obj) == 0:
        raise WeightFileError(f"{path}: expected a list of arrays, found an empty list")
    out = []
    for i, v in enumerate(obj):
        if isinstance(v, np.generic):
            v = np.asarray(v)
        if not isinstance(v, np.ndarray):
            raise WeightFileError(
                f"{path}: expected a list of arrays, item {i} is {type(v).__name__}")
        if v.dtype.hasobject:
            raise WeightFileError(f"{path}: expected numeric arrays, item {i} has dtype object")
        out.append(v)
    return out


# --------------------------------------------------------------------------
# .pklz / pickle / .npz
# --------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0]}" if msg else type(exc).__name__


def _budget(path, max_bytes, reason=None):
    from .sizecheck import MAX_WEIGHT_BYTES, ByteBudget
    if max_bytes is None:
        max_bytes, reason = MAX_WEIGHT_BYTES, reason or "the cap for weight files"
    return ByteBudget(max_bytes, path, reason, WeightFileError)


def _load_pickle_bytes_or_stream(fileobj, path, compressed: bool, budget=None):
    budget = budget or _budget(path, None)
    # What the pickle stream may take once decompressed: protocols 0 and 1
    # write bytes as escaped text (up to 4 characters a byte), protocol 2
    # latin-1 text as UTF-8 (up to 2 bytes a byte).
    try:
        from .sizecheck import CappedReader
        head = fileobj.peek(2)[:2] if hasattr(fileobj, "peek") else b""
        factor = 2 if head[:1] == b"\x80" and head[1:2] not in (b"\x00", b"\x01") else 4
        cap = factor * budget.left + (1 << 20)
        obj = restricted_load(CappedReader(fileobj, cap, path, budget.reason, WeightFileError),
                              encoding="latin1", max_bytes=cap)
    except WeightFileError:
        raise
    except ForbiddenPickleError as exc:
        raise WeightFileError(_forbidden_message(path, exc)) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        what = "truncated or corrupt gzip stream" if compressed else "truncated pickle"
        raise WeightFileError(f"{path}: {what} ({_first_line(exc)})") from None
    except MemoryError:
        raise WeightFileError(f"{path}: refusing to load: out of memory while unpickling "
                              f"(the file declares more than it can hold)") from None
    except Exception as exc:  # UnpicklingError, ValueError, TypeError, struct.error...
        raise WeightFileError(f"{path}: not a readable pickle of a list of arrays "
                              f"({_first_line(exc)})") from None
    return obj


def _check_npz_members(z, path, budget):
    """Check each ``.npy`` header of an open ``NpzFile`` before NumPy allocates."""
    from numpy.lib import format as npformat
    for name in z.zip.namelist():
        info = z.zip.getinfo(name)
        with z.zip.open(name) as f:
            try:
                version = npformat.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = npformat.read_array_header_1_0(f)
                elif version in ((2, 0), (3, 0)):
                    shape, fortran, dtype = npformat.read_array_header_2_0(f)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
            except ValueError as exc:
                if "allow_pickle" in str(exc) or "bject" in str(exc):
                    raise
                raise WeightFileError(f"{path}: corrupt .npz member {name} "
                                      f"({_first_line(exc)})") from None
            except Exception as exc:  # tokenize.TokenError, SyntaxError... of a broken header
                raise WeightFileError(f"{path}: corrupt .npz member {name} "
                                      f"({_first_line(exc)})") from None
            if np.dtype(dtype).hasobject:
                raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
            n = budget.take(tuple(shape), dtype, f"member {name}")
            if info.file_size < n:
                raise WeightFileError(f"{path}: corrupt .npz member {name}: it declares "
                                      f"{n} bytes of data but holds {info.file_size}")


def _load_npz(path, budget=None) -> list[np.ndarray]:
    budget = budget or _budget(path, None)
    try:
        with np.load(path, allow_pickle=False) as z:
            _check_npz_members(z, path, budget)
            names = list(z.files)
            if not names:
                raise WeightFileError(f"{path}: expected arrays arr_0, arr_1, ... in the .npz, "
                                      f"found none")
            if all(re.fullmatch(r"arr_\d+", n) for n in names):
                names.sort(key=lambda n: int(n[4:]))
            return [z[n] for n in names]
    except WeightFileError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise WeightFileError(f"{path}: .npz holds object arrays, refused "
                                  f"(only numeric arrays are allowed)") from None
        raise WeightFileError(f"{path}: corrupt .npz archive ({exc})") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, zlib.error, TypeError,
            NotImplementedError, RuntimeError, OverflowError, SyntaxError) as exc:
        raise WeightFileError(f"{path}: corrupt .npz archive ({type(exc).__name__})") from None


def _check_expected(values, path, expected_shapes):
    if expected_shapes is None:
        return values
    expected_shapes = [tuple(s) for s in expected_shapes]
    if len(values) != len(expected_shapes):
        raise WeightFileError(f"{path}: holds {len(values)} arrays, the network has "
                              f"{len(expected_shapes)} parameters (is the weight file for "
                              f"another architecture?)")
    for i, (v, shape) in enumerate(zip(values, expected_shapes)):
        if tuple(v.shape) != shape:
            raise WeightFileError(f"{path}: array {i} has shape {tuple(v.shape)}, the network's "
                                  f"parameter {i} has shape {shape}")
    return values


def load_pklz(path, *, max_bytes=None, expected_shapes=None) -> list[np.ndarray]:
    """Load a list of parameter arrays from a legacy ``.pklz`` (or pickle / ``.npz``) file.

    Reads the Python-2 protocol-0 files the seed's ``train_nn.py`` saved
    (decoding their strings as latin-1), modern pickles of any protocol,
    gzipped or not, and ``.npz`` archives (``arr_0``, ``arr_1``, ... in
    numeric order). Pickles are read with a restricted unpickler that only
    builds NumPy arrays and builtin containers, in the forms NumPy writes.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Its format is recognised from its content.
    max_bytes : int, optional
        Most bytes the arrays may take in all (default
        :data:`lasres.sizecheck.MAX_WEIGHT_BYTES`); the decompressed stream
        and every ``.npy`` header are checked against it before anything
        is allocated.
    expected_shapes : sequence of tuple, optional
        The shapes the arrays must have (e.g. a network's parameters).

    Returns
    -------
    list of numpy.ndarray
        The parameter values in the file's order.

    Raises
    ------
    WeightFileError
        If the file is missing, not gzip/pickle/npz, truncated or corrupt,
        does not hold a non-empty list of numeric arrays, references a
        forbidden global (e.g. ``os.system``; it is never executed), declares
        more than ``max_bytes``, or does not have ``expected_shapes``.
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    budget = _budget(path, max_bytes)
    if fmt in ("hdf5", "keras"):
        what = "Keras weight file" if fmt == "keras" else "checkpoint"
        raise WeightFileError(f"{path}: is an HDF5 {what}, expected a .pklz "
                              f"(use load_checkpoint or load_weights)")
    if fmt == "npz":
        return _check_expected(_as_array_list(_load_npz(path, budget), path), path,
                               expected_shapes)
    try:
        if fmt == "pklz":
            with gzip.open(path, "rb") as f:
                obj = _load_pickle_bytes_or_stream(f, path, compressed=True, budget=budget)
        else:
            with open(path, "rb") as f:
                obj = _load_pickle_bytes_or_stream(f, path, compressed=False, budget=budget)
    except OSError as exc:
        raise WeightFileError(f"{path}: cannot read weight file ({exc})") from None
    values = _as_array_list(obj, path)
    for i, v in enumerate(values):
        budget.take(v.shape, v.dtype, f"array {i}")
    return _check_expected(values, path, expected_shapes)


# --- a portable protocol-2 writer ---------------------------------------------
def _p2_int(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    if -2**31 <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    enc = pickle.encode_long(i)
    return b"\x8a" + bytes([len(enc)]) + enc


def _p2_ascii(s: str) -> bytes:
    b = s.encode("ascii")
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _p2_tuple(items: Sequence[bytes]) -> bytes:
    n = len(items)
    if n == 0:
        return b")"
    if n <= 3:
        return b"".join(items) + (b"\x85", b"\x86", b"\x87")[n - 1]
    return b"(" + b"".join(items) + b"t"


def _p2_array(a: np.ndarray, out: io.BufferedIOBase) -> None:
    """Write one array the way NumPy 1.x under Python 2 pickled it (protocol 2).

    Globals are spelled ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``
    and ``numpy.dtype`` (importable by NumPy 1.x and 2.x alike); the raw data
    goes through ``_codecs.encode(text, 'latin1')``, which yields ``str`` under
    Python 2 and ``bytes`` under Python 3 whatever ``encoding=`` is used.
    """
    dt = a.dtype
    if dt.hasobject or dt.names is not None or dt.subdtype is not None:
        raise ValueError(f"cannot save arrays of dtype {dt} (expected a plain numeric dtype)")
    code = dt.str  # e.g. '<f4', '|u1'
    if not a.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into 1-d)
        a = a.copy(order="C")
    out.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
    out.write(_p2_tuple([_p2_int(0)]) + _p2_ascii("b") + b"\x87R")
    state_head = b"(" + _p2_int(1) + _p2_tuple([_p2_int(int(d)) for d in a.shape])
    dtype = (b"cnumpy\ndtype\n" + _p2_ascii(code[1:]) + _p2_int(0) + _p2_int(1) + b"\x87R"
             + _p2_tuple([_p2_int(3), _p2_ascii(code[0]), b"N", b"N", b"N",
                          _p2_int(-1), _p2_int(-1), _p2_int(0)]) + b"b")
    out.write(state_head + dtype + b"\x89")
    text = a.tobytes().decode("latin1").encode("utf-8")
    if len(text) >= 2**31:
        raise ValueError(f"array of {a.nbytes} bytes is too large for protocol 2 "
                         f"(use protocol=4)")
    out.write(b"c_codecs\nencode\n")
    out.write(b"X" + struct.pack("<I", len(text)))
    out.write(text)
    out.write(b"X\x06\x00\x00\x00latin1\x86R")  # unicode, so encoding='bytes' works too
    out.write(b"tb")  # close the state tuple, BUILD


def _portable_dumps(values: Sequence[np.ndarray], out) -> None:
    out.write(b"\x80\x02](")
    for a in values:
        _p2_array(a, out)
    out.write(b"e.")


def _check_target(path) -> str:
    path = os.path.abspath(os.fspath(path))
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        raise WeightFileError(f"{path}: cannot save, directory {d} does not exist")
    return path


def _check_values(values: Iterable, what="values") -> list[np.ndarray]:
    if isinstance(values, np.ndarray):
        raise TypeError(f"{what}: expected a list of arrays, got a single array")
    vals = [np.asarray(v) for v in values]
    for i, v in enumerate(vals):
        if v.dtype.hasobject:
            raise TypeError(f"{what}: item {i} has dtype object, expected a numeric array")
    return vals


def save_pklz(path, values, protocol: int = 2) -> None:
    """Save a list of arrays as a gzip'd pickle (the legacy ``.pklz`` format).

    With ``protocol=2`` (default) the pickle is written in the portable form
    that NumPy 1.x under Python 2 produced (globals ``numpy.core.multiarray
    ._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``, ``_codecs.encode``):
    the legacy ``pickle.load(gzip.open(path))`` of the seed's
    ``test_model.py``, plain Python 3 ``pickle.load`` with any ``encoding``
    and :func:`load_pklz` all read it. Protocols 3 to 5 use Python's own
    pickler (NumPy 2 then writes ``numpy._core`` names that NumPy 1.x cannot
    import).

    The file is written atomically: to a temporary file in the same
    directory, flushed and fsynced, then renamed over ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    values : sequence of array_like
        Parameter values, e.g. from ``get_all_param_values``.
    protocol : int
        Pickle protocol, 2 to 5.
    """
    if protocol not in (2, 3, 4, 5):
        raise ValueError(f"protocol must be 2, 3, 4 or 5, got {protocol!r}")
    vals = _check_values(values)
    with atomic_path(_check_target(path)) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            if protocol == 2:
                _portable_dumps(vals, gz)
            else:
                pickle.dump(list(vals), gz, protocol=protocol)


# --------------------------------------------------------------------------
# HDF5 checkpoints
# --------------------------------------------------------------------------
@dataclass
class Checkpoint:
    """Content of a lasres HDF5 checkpoint.

    Attributes
    ----------
    param_values : list of numpy.ndarray
        Parameter values in ``get_all_params`` order.
    arch : dict or None
        Architecture description, e.g. ``{'type': 'wide', 'depth': 2, 'width': 4}``.
    param_names : list of str or None
        One name per parameter value.
    pixel_mean : numpy.ndarray or None
        The per-pixel mean subtracted from the inputs, shape ``(3, 32, 32)``.
    epoch : int or None
        Epoch the parameters come from.
    optimizer_state : list of numpy.ndarray or None
        E.g. the Nesterov momentum velocities.
    optimizer_state_names : list of str or None
        One name per optimizer state array.
    history : dict of str to list of float or None
        Per-epoch curves (training loss, validation error, ...).
    extra : dict or None
        Free-form JSON metadata.
    format_version : int
        Format version found in the file.
    created : str or None
        Time of writing (ISO 8601, UTC).
    """

    param_values: list
    arch: dict | None = None
    param_names: list | None = None
    pixel_mean: np.ndarray | None = None
    epoch: int | None = None
    optimizer_state: list | None = None
    optimizer_state_names: list | None = None
    history: dict | None = None
    extra: dict | None = None
    format_version: int = CHECKPOINT_FORMAT_VERSION
    created: str | None = field(default=None, compare=False)


def _json_attr(obj, what) -> str:
    try:
        return json.dumps(obj, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serialisable: {exc}") from None


def _names_list(names, n, what) -> list[str] | None:
    if names is None:
        return None
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"{what}: expected {n} names (one per array), got {len(names)}")
    return names


def _write_arrays(group, values: list[np.ndarray], names) -> None:
    group.attrs["count"] = len(values)
    if names is not None:
        group.attrs["names_json"] = json.dumps(names)
    for i, v in enumerate(values):
        group.create_dataset(f"{i:05d}", data=v)


#: Most arrays a checkpoint group may declare (a 10,000-layer network has fewer).
MAX_ARRAYS = 100_000
#: Most epochs a checkpoint or its history may record.
MAX_EPOCH = 1_000_000


def _read_arrays(group, path, what, budget, expected_shapes=None
                 ) -> tuple[list[np.ndarray], list[str] | None]:
    from .sizecheck import check_h5_attr, check_h5_dataset
    count = check_h5_attr(group, "count", 64, path)
    if count is None:
        raise WeightFileError(f"{path}: corrupt checkpoint: group '{what}' has no 'count'")
    if isinstance(count, np.ndarray) and count.shape == ():
        count = count[()]
    if not isinstance(count, (int, np.integer)) or isinstance(count, (bool, np.bool_)) \
            or not 0 <= int(count) <= MAX_ARRAYS:
        shown = count.item() if isinstance(count, np.generic) else count
        raise WeightFileError(f"{path}: corrupt checkpoint: group '{what}' has count "
                              f"{shown!r} (expected an integer in 0..{MAX_ARRAYS})")
    n = int(count)
    keys = sorted(group.keys())
    if len(keys) != n or keys != [f"{i:05d}" for i in range(n)]:
        raise WeightFileError(f"{path}: corrupt checkpoint: group '{what}' should hold "
                              f"datasets 00000..{max(n, 1) - 1:05d}, found {len(keys)}")
    if expected_shapes is not None and len(expected_shapes) != n:
        raise WeightFileError(f"{path}: holds {n} parameter arrays, the network has "
                              f"{len(expected_shapes)} parameters (is the checkpoint for "
                              f"another architecture?)")
    datasets = []
    for i, k in enumerate(keys):
        ds = group[k]
        exp = None if expected_shapes is None else expected_shapes[i]
        check_h5_dataset(ds, budget, f"dataset {what}/{k}", expected_shape=exp)
        datasets.append(ds)
    values = [np.asarray(ds[()]) for ds in datasets]
    names = None
    raw = check_h5_attr(group, "names_json", 64 * (n + 1) + (1 << 16), path)
    if raw is not None:
        names = json.loads(_attr_str(raw))
        if not isinstance(names, list) or len(names) != n \
                or not all(isinstance(x, str) for x in names):
            raise WeightFileError(f"{path}: corrupt checkpoint: group '{what}' names_json is "
                                  f"not a list of {n} names")
    return values, names


def _json_dict_attr(f, name, path):
    from .sizecheck import check_h5_attr
    raw = check_h5_attr(f, name, 1 << 22, path)
    if raw is None:
        return None
    value = json.loads(_attr_str(raw))
    if not isinstance(value, dict):
        raise WeightFileError(f"{path}: corrupt checkpoint: attribute {name} is a JSON "
                              f"{type(value).__name__}, expected an object")
    return value


def _int_attr(f, name, path, lo, hi):
    from .sizecheck import check_h5_attr
    v = check_h5_attr(f, name, 64, path)
    if v is None:
        return None
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
    if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)) \
            or not lo <= int(v) <= hi:
        shown = v.item() if isinstance(v, np.generic) else v
        raise WeightFileError(f"{path}: corrupt checkpoint: attribute {name} is {shown!r} "
                              f"(expected an integer in {lo}..{hi})")
    return int(v)


def _attr_str(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.ndarray) and v.shape == ():
        v = v[()]
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)
    return str(v)


def save_checkpoint(path, param_values, *, arch=None, param_names=None, pixel_mean=None,
                    epoch=None, optimizer_state=None, optimizer_state_names=None,
                    history=None, extra=None) -> None:
    """Write an HDF5 checkpoint atomically.

    Layout: root attributes ``lasres_format='lasres-checkpoint'``,
    ``lasres_format_version``, ``created`` and JSON attributes ``arch_json``,
    ``extra_json``, attribute ``epoch``; groups ``params`` and ``optimizer``
    holding datasets ``00000``, ``00001``, ... (attribute ``count``, names as
    ``names_json``); dataset ``pixel_mean``; group ``history`` with one
    float64 dataset per curve.

    The file is first written to a temporary file in the destination
    directory, fsynced and renamed over ``path``, so an interrupted save
    leaves the previous checkpoint intact and no temporary file behind.

    Parameters
    ----------
    path : str or os.PathLike
        Destination, conventionally ``*.h5``.
    param_values : sequence of array_like
        Parameter values in ``get_all_params`` order.
    arch : dict, optional
        JSON-serialisable description of the architecture (type, depth, width, ...).
    param_names : sequence of str, optional
        One name per parameter.
    pixel_mean : array_like, optional
        Per-pixel mean used in preprocessing.
    epoch : int, optional
        Epoch of these parameters.
    optimizer_state : sequence of array_like, optional
        Optimizer arrays (e.g. momentum velocities).
    optimizer_state_names : sequence of str, optional
        One name per optimizer array.
    history : dict of str to sequence of float, optional
        Per-epoch curves.
    extra : dict, optional
        Any further JSON-serialisable metadata.
    """
    import h5py

    vals = _check_values(param_values, "param_values")
    pnames = _names_list(param_names, len(vals), "param_names")
    ostate = None if optimizer_state is None else _check_values(optimizer_state,
                                                                "optimizer_state")
    onames = (None if optimizer_state_names is None
              else _names_list(optimizer_state_names, len(ostate or []), "optimizer_state_names"))
    arch_json = None if arch is None else _json_attr(arch, "arch")
    extra_json = None if extra is None else _json_attr(extra, "extra")
    hist = None
    if history is not None:
        hist = {str(k): np.asarray(list(v), dtype=np.float64) for k, v in dict(history).items()}
        for k, v in hist.items():
            if v.ndim != 1:
                raise ValueError(f"history[{k!r}]: expected a list of floats")
    pm = None if pixel_mean is None else np.asarray(pixel_mean)

    with atomic_path(_check_target(path)) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["lasres_format"] = CHECKPOINT_FORMAT
        f.attrs["lasres_format_version"] = CHECKPOINT_FORMAT_VERSION
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if arch_json is not None:
            f.attrs["arch_json"] = arch_json
        if extra_json is not None:
            f.attrs["extra_json"] = extra_json
        if epoch is not None:
            f.attrs["epoch"] = int(epoch)
        _write_arrays(f.create_group("params"), vals, pnames)
        if ostate is not None:
            _write_arrays(f.create_group("optimizer"), ostate, onames)
        if pm is not None:
            f.create_dataset("pixel_mean", data=pm)
        if hist is not None:
            g = f.create_group("history")
            g.attrs["keys_json"] = json.dumps(list(hist))
            for i, (k, v) in enumerate(hist.items()):
                d = g.create_dataset(f"{i:05d}", data=v)
                d.attrs["name"] = k


def load_checkpoint(path, *, max_bytes=None, expected_shapes=None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Every array's declared shape and type is checked before it is read: the
    arrays may take at most ``max_bytes`` in all, and the parameters must have
    ``expected_shapes`` when given. Metadata is validated (types, ranges).

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file.
    max_bytes : int, optional
        Most bytes all arrays of the file may take (default
        :data:`lasres.sizecheck.MAX_WEIGHT_BYTES`).
    expected_shapes : sequence of tuple, optional
        The shapes the parameter arrays must have (a network's parameters).

    Returns
    -------
    Checkpoint

    Raises
    ------
    WeightFileError
        If the file is missing, not HDF5, an HDF5 file without the lasres
        format attribute (foreign), of a newer format version, corrupt,
        declares more than ``max_bytes`` or other shapes than
        ``expected_shapes``, or holds metadata of the wrong type or range.
    """
    import h5py
    from .sizecheck import check_h5_attr, check_h5_dataset

    path = os.fspath(path)
    head = _read_head(path, 8)
    if not head.startswith(_HDF5_MAGIC) and not h5py.is_hdf5(path):
        raise WeightFileError(f"{path}: not an HDF5 file (expected a lasres checkpoint)")
    budget = _budget(path, max_bytes)
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise WeightFileError(f"{path}: cannot open HDF5 checkpoint ({_first_line(exc)})"
                              ) from None
    try:
        with f:
            fmt = check_h5_attr(f, "lasres_format", 1024, path)
            if fmt is None or _attr_str(fmt) != CHECKPOINT_FORMAT:
                raise WeightFileError(f"{path}: HDF5 file is not a lasres checkpoint (expected "
                                      f"root attribute lasres_format='{CHECKPOINT_FORMAT}')")
            version = _int_attr(f, "lasres_format_version", path, -2**62, 2**62)
            version = -1 if version is None else version
            if not 1 <= version <= CHECKPOINT_FORMAT_VERSION:
                raise WeightFileError(f"{path}: checkpoint format version {version} is not "
                                      f"supported (expected 1..{CHECKPOINT_FORMAT_VERSION})")
            if "params" not in f:
                raise WeightFileError(f"{path}: corrupt checkpoint: no 'params' group")
            values, pnames = _read_arrays(f["params"], path, "params", budget, expected_shapes)
            ostate = onames = None
            if "optimizer" in f:
                ostate, onames = _read_arrays(f["optimizer"], path, "optimizer", budget)
            pm = None
            if "pixel_mean" in f:
                ds = f["pixel_mean"]
                check_h5_dataset(ds, budget, "dataset pixel_mean", max_ndim=4)
                pm = np.asarray(ds[()])
            hist = None
            if "history" in f:
                g = f["history"]
                hist = {}
                keys = sorted(g.keys())
                if len(keys) > 1000:
                    raise WeightFileError(f"{path}: corrupt checkpoint: {len(keys)} history "
                                          f"curves")
                for k in keys:
                    ds = g[k]
                    check_h5_dataset(ds, budget, f"dataset history/{k}", max_ndim=1)
                    if ds.shape[0] > MAX_EPOCH:
                        raise WeightFileError(f"{path}: corrupt checkpoint: history/{k} has "
                                              f"{ds.shape[0]} entries")
                    name = _attr_str(check_h5_attr(ds, "name", 4096, path))
                    hist[name] = [float(x) for x in ds[()]]
            arch = _json_dict_attr(f, "arch_json", path)
            extra = _json_dict_attr(f, "extra_json", path)
            epoch = _int_attr(f, "epoch", path, 0, MAX_EPOCH)
            created = check_h5_attr(f, "created", 1024, path)
            created = None if created is None else _attr_str(created)
    except WeightFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError,
            AttributeError, OverflowError, RecursionError) as exc:
        raise WeightFileError(f"{path}: corrupt checkpoint ({_first_line(exc)})") from None
    return Checkpoint(param_values=values, arch=arch, param_names=pnames, pixel_mean=pm,
                      epoch=epoch, optimizer_state=ostate, optimizer_state_names=onames,
                      history=hist, extra=extra, format_version=version, created=created)


def load_weights(path, with_checkpoint: bool = False, network=None, *, max_bytes=None,
                 expected_shapes=None):
    """Load parameter values from any supported file, recognised by content.

    Parameters
    ----------
    path : str or os.PathLike
        A legacy ``.pklz``, a plain pickle, an ``.npz`` or a lasres HDF5
        checkpoint; the extension does not matter.
    with_checkpoint : bool
        If true, return ``(values, checkpoint)`` where ``checkpoint`` is the
        :class:`Checkpoint` for HDF5 files and ``None`` otherwise.
    network : Layer, optional
        Needed for Keras 1.x weight files, whose layers are matched to the
        network's by its graph (see :func:`lasres.keras_h5.load_keras_h5`).
    max_bytes : int, optional
        Most bytes the file's arrays may take (default
        :data:`lasres.sizecheck.MAX_WEIGHT_BYTES`); checked before allocating.
    expected_shapes : sequence of tuple, optional
        The shapes the parameter arrays must have; for HDF5 files they are
        checked before reading.

    Returns
    -------
    list of numpy.ndarray, or (list of numpy.ndarray, Checkpoint or None)

    Raises
    ------
    WeightFileError
        As :func:`load_pklz` / :func:`load_checkpoint`.
    """
    fmt = detect_format(path)
    if fmt == "keras":
        if network is None:
            raise WeightFileError(f"{os.fspath(path)}: is a Keras weight file: loading it needs "
                                  f"the network (load_weights(path, network=net))")
        values = load_keras_h5(path, network)
        return (values, None) if with_checkpoint else values
    if fmt == "hdf5":
        ckpt = load_checkpoint(path, max_bytes=max_bytes, expected_shapes=expected_shapes)
        return (ckpt.param_values, ckpt) if with_checkpoint else ckpt.param_values
    values = load_pklz(path, max_bytes=max_bytes, expected_shapes=expected_shapes)
    return (values, None) if with_checkpoint else values
