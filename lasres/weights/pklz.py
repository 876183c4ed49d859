"""Legacy weight files: the gzip'd pickle ``.pklz`` (read and written), plain
pickles and ``.npz`` archives (read).

A ``.pklz`` is ``gzip`` of a pickled ``list`` of NumPy arrays, in
``lasagne.layers.get_all_param_values`` order. The seed's ``train_nn.py``
wrote them under Python 2 with ``pickle.dump(params, gzip.open(path, 'wb'))``
(protocol 0); they need ``encoding='latin1'`` to be read by Python 3.
:func:`load_pklz` reads them (and modern pickles, gzipped or not, and
``.npz`` archives) with the restricted unpickler of :mod:`lasres.io.safepickle`;
:func:`save_pklz` writes files that the legacy Python 2 / NumPy 1 loader,
Python 3 ``pickle.load`` and :func:`load_pklz` all read
(:func:`write_portable_pickle`).
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import re
import struct
import zipfile
import zlib
from typing import BinaryIO, Sequence

import numpy as np
from numpy.lib import format as npformat

from ..errors import WeightFileError
from ..io.atomic import atomic_path
from ..io.safepickle import (forbidden_message, ForbiddenPickleError, PickleLimitError,
                             restricted_load)
from ..io.sizecheck import CappedReader, format_bytes
from .checkpoint import MAX_ARRAYS
from .formats import check_target, check_values, detect_format, first_line, weight_budget

__all__ = ["load_pklz", "save_pklz", "write_portable_pickle"]


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




def _load_pickle_bytes_or_stream(fileobj, path, compressed: bool, budget=None):
    budget = budget or weight_budget(path, None)
    # What the pickle stream may take once decompressed: protocols 0 and 1
    # write bytes as escaped text (up to 4 characters a byte), protocol 2
    # latin-1 text as UTF-8 (up to 2 bytes a byte).
    try:
        head = fileobj.peek(2)[:2] if hasattr(fileobj, "peek") else b""
        factor = 2 if head[:1] == b"\x80" and head[1:2] not in (b"\x00", b"\x01") else 4
        cap = factor * budget.left + (1 << 20)
        obj = restricted_load(CappedReader(fileobj, cap, path, budget.reason, WeightFileError),
                              encoding="latin1", max_bytes=cap)
    except WeightFileError:
        raise
    except ForbiddenPickleError as exc:
        raise WeightFileError(forbidden_message(path, exc)) from None
    except PickleLimitError as exc:
        why = f" ({budget.reason})" if budget.reason else ""
        raise WeightFileError(f"{path}: {exc}{why}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        what = "truncated or corrupt gzip stream" if compressed else "truncated pickle"
        raise WeightFileError(f"{path}: {what} ({first_line(exc)})") from None
    except MemoryError:
        raise WeightFileError(f"{path}: refusing to load: out of memory while unpickling "
                              f"(the file declares more than it can hold)") from None
    except Exception as exc:  # UnpicklingError, ValueError, TypeError, struct.error...
        raise WeightFileError(f"{path}: not a readable pickle of a list of arrays "
                              f"({first_line(exc)})") from None
    return obj


def _check_npz_members(z, path, budget):
    """Check each ``.npy`` header of an open ``NpzFile`` before NumPy allocates."""
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
                                      f"({first_line(exc)})") from None
            except Exception as exc:  # tokenize.TokenError, SyntaxError... of a broken header
                raise WeightFileError(f"{path}: corrupt .npz member {name} "
                                      f"({first_line(exc)})") from None
            if np.dtype(dtype).hasobject:
                raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
            n = budget.take(tuple(shape), dtype, f"member {name}")
            if info.file_size < n:
                raise WeightFileError(f"{path}: corrupt .npz member {name}: it declares "
                                      f"{n} bytes of data but holds {info.file_size}")


#: Most bytes of an .npz's zip directory (its central directory) read.
MAX_ZIP_DIRECTORY = 16 * 1024 ** 2
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")  # zip64 end record locator
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_CD_ENTRY = struct.Struct("<4s6H3L5H2L")  # central directory file header


def _zip_member_cap(budget) -> int:
    """Most members an ``.npz`` may hold: one per array the budget can pay for
    the header of (at least 64 bytes each), at most :data:`MAX_ARRAYS`."""
    return int(min(MAX_ARRAYS, 1024 + budget.limit // 64))


def _check_zip_directory(path, budget):
    """Count the members of the zip archive ``path`` from its directory, with
    struct reads only, before :mod:`zipfile` makes an object of each: a
    directory of millions of entries is refused without parsing it."""
    cap = _zip_member_cap(budget)
    why = f" ({budget.reason})" if budget.reason else ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        tail_len = min(size, _EOCD.size + 65535)
        f.seek(size - tail_len)
        tail = f.read(tail_len)
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or len(tail) - at < _EOCD.size:
            raise WeightFileError(f"{path}: corrupt .npz archive (no zip directory)")
        _, _, _, _, declared, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        cd_end = size - tail_len + at  # the directory ends where its end record starts
        if declared == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
            # zip64: as zipfile, the zip64 end record right before its locator
            loc = at - _ZIP64_LOCATOR.size
            rec_at = loc - _ZIP64_EOCD.size
            if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
                if rec_at < 0 or tail[rec_at:rec_at + 4] != b"PK\x06\x06":
                    raise WeightFileError(f"{path}: corrupt .npz archive (bad zip64 directory)")
                fields = _ZIP64_EOCD.unpack_from(tail, rec_at)
                declared, cd_size = fields[7], fields[8]
                cd_end = size - tail_len + rec_at
        if declared > cap:
            raise WeightFileError(f"{path}: refusing to load: the .npz directory declares "
                                  f"{declared:,} members, more than the {cap:,} allowed for "
                                  f"this file{why}")
        if cd_size > MAX_ZIP_DIRECTORY:
            raise WeightFileError(f"{path}: refusing to load: the .npz directory takes "
                                  f"{format_bytes(cd_size)}, more than "
                                  f"{format_bytes(MAX_ZIP_DIRECTORY)}")
        # zipfile reads the directory from (end record - cd_size), whatever it
        # declares; it is walked here entry by entry, never held whole
        f.seek(max(cd_end - cd_size, 0))
        count, left = 0, cd_size
        while left >= _CD_ENTRY.size:
            head = f.read(_CD_ENTRY.size)
            if len(head) < _CD_ENTRY.size or head[:4] != b"PK\x01\x02":
                break
            fields = _CD_ENTRY.unpack(head)
            skip = fields[10] + fields[11] + fields[12]
            f.seek(skip, os.SEEK_CUR)
            left -= _CD_ENTRY.size + skip
            count += 1
            if count > cap:
                raise WeightFileError(f"{path}: refusing to load: the .npz directory holds "
                                      f"more than the {cap:,} members allowed for this file "
                                      f"({cd_size:,} bytes of directory){why}")


def _load_npz(path, budget=None) -> list[np.ndarray]:
    budget = budget or weight_budget(path, None)
    try:
        _check_zip_directory(path, budget)
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
        :data:`lasres.io.sizecheck.MAX_WEIGHT_BYTES`); the decompressed stream
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
    budget = weight_budget(path, max_bytes)
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


def write_portable_pickle(values: Sequence[np.ndarray], out: BinaryIO) -> None:
    """Pickle a list of arrays to ``out`` as NumPy 1.x under Python 2 did (protocol 2).

    Python 2 / NumPy 1.x ``pickle.load``, Python 3 ``pickle.load`` with any
    ``encoding`` and :func:`load_pklz` read the result.

    Parameters
    ----------
    values : sequence of numpy.ndarray
        Plain numeric arrays.
    out : binary file object
        Where the pickle is written.

    Raises
    ------
    ValueError
        An array of a non-numeric dtype, or one too large for protocol 2.
    """
    out.write(b"\x80\x02](")
    for a in values:
        _p2_array(a, out)
    out.write(b"e.")


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
    vals = check_values(values)
    with atomic_path(check_target(path)) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
            if protocol == 2:
                write_portable_pickle(vals, gz)
            else:
                pickle.dump(list(vals), gz, protocol=protocol)
