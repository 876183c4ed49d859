"""What the weight-file readers and writers share: recognising a file's format
by its first bytes, the byte budget of one file, one-line messages, and the
checks every writer makes of its destination and values."""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from ..errors import WeightFileError
from ..io.isolation import run_isolated
from .keras_h5 import HDF5_MAGIC, is_keras_h5
from ..io.sizecheck import MAX_WEIGHT_BYTES, ByteBudget, open_regular

__all__ = ["detect_format", "read_head", "first_line", "weight_budget", "check_target",
           "check_values", "GZIP_MAGIC", "HDF5_MAGIC", "ZIP_MAGIC"]

#: First bytes of a gzip stream (a ``.pklz``).
GZIP_MAGIC = b"\x1f\x8b"
#: First bytes of a zip archive (an ``.npz``).
ZIP_MAGIC = b"PK\x03\x04"


def read_head(path, n: int = 8) -> bytes:
    """The first ``n`` bytes of the weight file ``path``.

    Parameters
    ----------
    path : str or os.PathLike
    n : int

    Returns
    -------
    bytes

    Raises
    ------
    WeightFileError
        If the file is missing, unreadable, or not a regular file (a
        directory, a FIFO, a device: refused before it is opened).
    """
    path = os.fspath(path)
    try:
        with open_regular(path, "weight file") as f:
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

    Returns
    -------
    str

    Raises
    ------
    WeightFileError
        If the file is missing or in none of these formats, or libhdf5 does
        not finish inspecting it in time (see :func:`lasres.io.isolation.run_isolated`).
    """
    head = read_head(path, 8)
    if head.startswith(GZIP_MAGIC):
        return "pklz"
    if head.startswith(HDF5_MAGIC):
        return "keras" if is_keras_h5(path) else "hdf5"
    if head.startswith(ZIP_MAGIC):
        return "npz"
    if _looks_like_pickle(head):
        return "pickle"
    try:  # HDF5 with a user block: signature at 512, 1024, ...
        import h5py
        path = os.fspath(path)
        hdf5 = run_isolated(h5py.is_hdf5, path, path=path, max_bytes=0)
    except ImportError:  # pragma: no cover - h5py missing
        hdf5 = False
    if hdf5:
        return "keras" if is_keras_h5(path) else "hdf5"
    raise WeightFileError(
        f"{os.fspath(path)}: unknown weight file format (expected gzip'd pickle .pklz, "
        f"pickle, .npz or lasres HDF5 checkpoint)")


def first_line(exc: BaseException) -> str:
    """``'TypeName: first line of the message'`` (or just the type name), for
    the one-line messages of :class:`WeightFileError`; the line is cut to
    about 300 characters."""
    msg = str(exc).strip().splitlines()
    if not msg:
        return type(exc).__name__
    line = msg[0] if len(msg[0]) <= 300 else msg[0][:297] + "..."
    return f"{type(exc).__name__}: {line}"


def weight_budget(path, max_bytes: int | None, reason: str | None = None) -> ByteBudget:
    """The :class:`lasres.io.sizecheck.ByteBudget` for the arrays of one weight file:
    ``max_bytes``, or :data:`lasres.io.sizecheck.MAX_WEIGHT_BYTES` when None."""
    if max_bytes is None:
        max_bytes, reason = MAX_WEIGHT_BYTES, reason or "the cap for weight files"
    return ByteBudget(max_bytes, path, reason, WeightFileError)


def check_target(path) -> str:
    """The absolute path a writer will write; :class:`WeightFileError` if its
    folder does not exist."""
    path = os.path.abspath(os.fspath(path))
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        raise WeightFileError(f"{path}: cannot save, directory {d} does not exist")
    return path


def check_values(values: Iterable, what: str = "values") -> list[np.ndarray]:
    """``values`` as a list of numeric arrays, for a writer.

    Raises
    ------
    TypeError
        A single array instead of a list, or an array of dtype object.
    """
    if isinstance(values, np.ndarray):
        raise TypeError(f"{what}: expected a list of arrays, got a single array")
    vals = [np.asarray(v) for v in values]
    for i, v in enumerate(vals):
        if v.dtype.hasobject:
            raise TypeError(f"{what}: item {i} has dtype object, expected a numeric array")
    return vals
