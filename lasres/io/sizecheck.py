"""Checks of declared sizes, made *before* anything is allocated.

Every reader of lasres (pickles, ``.npz``, HDF5 checkpoints, Keras HDF5
files, CIFAR and MNIST batches) reads a shape and a dtype from the file and
then allocates. A crafted file can declare a shape of ``(200000, 200000)``
in a few bytes; these helpers turn such declarations into a one-line
:class:`lasres.errors.WeightFileError` (or the error class a caller names)
before a single byte is allocated.

:class:`ByteBudget`
    How many bytes the arrays of one file may take in all; each declared
    array is charged with :meth:`ByteBudget.take` before it is read.
:func:`declared_nbytes`
    Validates a declared shape and dtype and returns their size in bytes
    (Python integers: no overflow).
:func:`check_h5_dataset`
    The same for an ``h5py`` dataset (numeric dtype, shape, optional
    expected shape), charged to a budget.
:func:`network_budget`
    The budget for loading weights into a given network: what its
    parameters take in float64, plus slack.
:class:`CappedReader`
    A read-only file wrapper that refuses to hand out more than a set number
    of bytes (decompression bombs, size prefixes that lie).
"""
from __future__ import annotations

import io
import math
import operator
import reprlib
import os
import stat

import numpy as np

from ..errors import WeightFileError

__all__ = ["ByteBudget", "declared_nbytes", "check_h5_dataset", "check_h5_attr", "h5_get",
           "network_budget", "CappedReader", "MAX_WEIGHT_BYTES", "MAX_DATA_BYTES",
           "MAX_NDIM", "MAX_CHUNKS", "format_bytes", "check_regular_file", "open_regular",
           "check_finite", "short_repr"]

#: Cap on the arrays of a weight file read without a network to compare
#: with (``load_weights(path)``): 2 GiB, ten times the largest network of the
#: registry in float32.
MAX_WEIGHT_BYTES = 2 * 1024 ** 3
#: Cap on one data file (a CIFAR batch is 30 MB, the MNIST training images 47 MB).
MAX_DATA_BYTES = 1024 ** 3
#: Most dimensions an array of a weight or data file may declare.
MAX_NDIM = 8
#: Most chunks an HDF5 dataset may be read from (h5py writes 1 for the arrays of lasres).
MAX_CHUNKS = 65536
#: Numeric dtype kinds a weight or data file may hold: bool, ints, floats, complex.
NUMERIC_KINDS = "biufc"
#: Dtype kinds an HDF5 dataset may hold: signed and unsigned integers, floats.
H5_KINDS = "iuf"
#: HDF5 filters a dataset may be stored with: the ones built into libhdf5 and
#: h5py (deflate, shuffle, Fletcher-32, szip, n-bit, scale-offset, LZF). Any
#: other filter would make libhdf5 look for a plugin library to load.
H5_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
              6: "scaleoffset", 32000: "lzf"}
#: Most soft links followed to resolve one name.
H5_MAX_LINK_HOPS = 16


def format_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    n = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def short_repr(obj, most: int = 80) -> str:
    """``repr(obj)`` cut to ``most`` characters (for one-line messages about
    what a file holds: a crafted file may hold a string of any length)."""
    r = reprlib.Repr()
    # never the whole of a container: a list holding itself twice, 30 levels
    # deep, would print as 2**30 items
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 2, most, most, 40
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = 4
    r.maxarray = 4
    try:
        if isinstance(obj, np.ndarray):
            text = f"array of shape {obj.shape} {obj.dtype}"
        elif isinstance(obj, np.dtype):
            text = repr(obj)
        else:
            text = r.repr(obj)
    except Exception:  # a recursion limit, a broken __repr__
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= most else text[:most - 3] + "..."


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def check_regular_file(path, what="file", error=WeightFileError, missing=None) -> int:
    """Refuse ``path`` unless it is a regular file (symbolic links followed);
    return its size. A FIFO would block the reader forever, a device could
    deliver endless bytes, a directory cannot be read: none is opened.

    Parameters
    ----------
    path : str or os.PathLike
    what : str
        How messages name the file, e.g. ``"weight file"``.
    error : type
        Exception class raised.
    missing : str, optional
        The message (after ``path:``) when the file does not exist (default
        ``"{what} not found"``).
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {missing or what + ' not found'}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: expected a {what}, found {_kind(st.st_mode)}: refusing to "
                    f"read it")
    return st.st_size


def open_regular(path, what="file", error=WeightFileError, missing=None):
    """Open ``path`` for binary reading if it is a regular file (see
    :func:`check_regular_file`); checked again on the open descriptor, which
    is opened without blocking, so that a file swapped for a FIFO in between
    cannot hang the reader either.

    Returns
    -------
    file object
        Opened ``"rb"``.
    """
    path = os.fspath(path)
    check_regular_file(path, what, error, missing)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: {missing or what + ' not found'}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: expected a {what}, found {_kind(mode)}: refusing to read it")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_finite(value, what, error=WeightFileError) -> None:
    """Refuse a complex array or one holding NaN or infinity, naming it.

    Parameters
    ----------
    value : numpy.ndarray
    what : str
        How the message names the array, e.g. ``"w.pklz: array 3"``.
    error : type
    """
    a = np.asarray(value)
    if a.dtype.kind == "c":
        raise error(f"{what}: complex values ({a.dtype}), expected real numbers")
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        raise error(f"{what}: {bad:,} of its {a.size:,} values are NaN or infinite")


def declared_nbytes(shape, dtype, what="array", error=WeightFileError) -> int:
    """Validate a declared ``shape`` and ``dtype`` and return their size in bytes.

    Parameters
    ----------
    shape : tuple of int
        The shape as the file declares it.
    dtype : numpy.dtype or str
        The element type; only plain numeric dtypes (bool, integers,
        floats, complex; no objects, records or sub-arrays) are accepted.
    what : str
        How the messages name the array (e.g. ``"path: dataset params/00003"``).
    error : type
        The exception class raised (default :class:`WeightFileError`).

    Returns
    -------
    int
        ``prod(shape) * itemsize``, computed without overflow.

    Raises
    ------
    error
        A shape that is not a tuple of non-negative integers, more than
        :data:`MAX_NDIM` dimensions, or a non-numeric dtype.
    """
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise error(f"{what}: unsupported element type {dtype!r}") from None
    if dt.kind not in NUMERIC_KINDS or dt.names is not None or dt.subdtype is not None \
            or dt.hasobject:
        raise error(f"{what}: unsupported element type {dt} (expected a numeric dtype)")
    if not isinstance(shape, tuple):
        raise error(f"{what}: bad shape {shape!r} (expected a tuple of integers)")
    if len(shape) > MAX_NDIM:
        raise error(f"{what}: {len(shape)} dimensions declared (at most {MAX_NDIM})")
    dims = []
    for d in shape:
        try:
            d = operator.index(d)
        except TypeError:
            raise error(f"{what}: bad shape {shape!r} (expected integers)") from None
        if d < 0:
            raise error(f"{what}: bad shape {shape!r} (negative dimension)")
        dims.append(int(d))
    return math.prod(dims) * dt.itemsize


class ByteBudget(object):
    """How many bytes the arrays read from one file may take, in all.

    Parameters
    ----------
    limit : int
        The cap in bytes.
    path : str
        The file (for the messages).
    reason : str
        Why the cap is what it is, e.g. ``"the network's 78,442 parameters
        take 613 KiB in float64"``; appears in the message.
    error : type
        Exception class raised (default :class:`WeightFileError`).

    Examples
    --------
    >>> b = ByteBudget(1000, "w.h5")
    >>> b.take((10, 10), "f8", "params/00000")
    800
    """

    def __init__(self, limit, path="", reason=None, error=WeightFileError):
        self.limit = int(limit)
        self.used = 0
        self.path = str(path)
        self.reason = reason
        self.error = error

    @property
    def left(self) -> int:
        return self.limit - self.used

    def _prefix(self, what):
        return f"{self.path}: {what}" if self.path else what

    def take(self, shape, dtype, what="array") -> int:
        """Charge an array of ``shape`` and ``dtype``; raise if over the cap.

        Returns the array's size in bytes. Nothing is charged when it raises.
        """
        n = declared_nbytes(shape, dtype, self._prefix(what), self.error)
        self.charge(n, what, shape=shape, dtype=dtype)
        return n

    def charge(self, nbytes, what="data", shape=None, dtype=None) -> None:
        """Charge ``nbytes``; raise if the total would exceed the cap."""
        nbytes = int(nbytes)
        if nbytes < 0 or self.used + nbytes > self.limit:
            desc = f" of shape {tuple(shape)} {np.dtype(dtype)}" if shape is not None else ""
            why = f" ({self.reason})" if self.reason else ""
            raise self.error(
                f"{self._prefix(what)}: refusing to load: it declares {format_bytes(nbytes)}"
                f"{desc}, more than the {format_bytes(self.limit)} allowed for this file{why}")
        self.used += nbytes


def network_budget(shapes_and_dtypes, factor=2, slack=1 << 20) -> tuple[int, str]:
    """The byte budget for loading weights into a network.

    Parameters
    ----------
    shapes_and_dtypes : iterable of (shape, dtype)
        The network's parameters (e.g. ``[(p.get_value().shape, p.dtype) ...]``).
    factor : int
        Allowance over the float64 size of the parameters (optimizer state
        and float64 files of a float32 network fit in ``factor=2``).
    slack : int
        Bytes added for small extras (pixel mean, history).

    Returns
    -------
    (int, str)
        The limit and a reason for messages.
    """
    count = 0
    for shape, _ in shapes_and_dtypes:
        count += math.prod(int(d) for d in shape)
    limit = factor * 8 * count + slack
    return limit, (f"the network has {count:,} parameter values, "
                   f"{format_bytes(8 * count)} in float64")


def check_h5_dataset(ds, budget: ByteBudget, what, expected_shape=None, max_ndim=MAX_NDIM):
    """Validate an ``h5py`` dataset before reading it, charging it to ``budget``.

    Parameters
    ----------
    ds : object
        What ``group[name]`` returned; anything but an ``h5py.Dataset`` is refused.
    budget : ByteBudget
    what : str
        Name in messages, e.g. ``"dataset params/00003"``.
    expected_shape : tuple of int, optional
        Refuse any other shape.

    Returns
    -------
    int
        The dataset's size in bytes.
    """
    import h5py
    if not isinstance(ds, h5py.Dataset):
        raise budget.error(f"{budget._prefix(what)}: expected a dataset, found "
                           f"{type(ds).__name__}")
    _check_h5_storage(ds, budget._prefix(what), budget.error)
    try:
        shape, dtype = ds.shape, ds.dtype
    except Exception as exc:  # an unreadable dataspace or datatype
        raise budget.error(f"{budget._prefix(what)}: unreadable shape or type "
                           f"({type(exc).__name__})") from None
    if dtype.kind not in H5_KINDS or dtype.names is not None or dtype.subdtype is not None \
            or dtype.byteorder not in "<>=|" or dtype.metadata:
        raise budget.error(f"{budget._prefix(what)}: unsupported element type {dtype} "
                           f"(expected little- or big-endian integers or floats)")
    if shape is None:  # a null dataspace
        raise budget.error(f"{budget._prefix(what)}: empty (null) dataspace")
    if len(shape) > max_ndim:
        raise budget.error(f"{budget._prefix(what)}: {len(shape)} dimensions (at most {max_ndim})")
    if expected_shape is not None and tuple(shape) != tuple(expected_shape):
        raise budget.error(f"{budget._prefix(what)}: shape {tuple(shape)}, expected "
                           f"{tuple(expected_shape)}")
    nbytes = budget.take(tuple(shape), dtype, what)
    # HDF5 keeps bookkeeping for every chunk a read touches: tiny chunks over a
    # large shape cost memory far beyond the data (1e6 chunks: ~700 MB).
    chunks = ds.chunks
    if chunks:
        n = math.prod(-(-int(d) // max(int(c), 1)) for d, c in zip(shape, chunks))
        if n > MAX_CHUNKS:
            budget.used -= nbytes
            raise budget.error(f"{budget._prefix(what)}: refusing to load: {n:,} chunks of "
                               f"shape {tuple(chunks)} (at most {MAX_CHUNKS:,})")
    return nbytes


def _check_h5_storage(ds, prefix, error):
    """Refuse a dataset whose bytes are not in the file itself: external
    storage (raw data in other files), a virtual dataset (mapped from other
    datasets, possibly in other files) or a filter libhdf5 would load as a
    plugin. Only the dataset's creation properties are read, no data."""
    import h5py
    try:
        dcpl = ds.id.get_create_plist()
        layout = dcpl.get_layout()
        n_external = dcpl.get_external_count()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
    except Exception as exc:
        raise error(f"{prefix}: unreadable storage properties ({type(exc).__name__})"
                    ) from None
    virtual = getattr(h5py.h5d, "VIRTUAL", None)
    if virtual is not None and layout == virtual:
        raise error(f"{prefix}: is a virtual dataset (its data would come from other "
                    f"datasets or files): refusing to read outside the file")
    if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise error(f"{prefix}: unknown storage layout {layout}")
    if n_external:
        try:
            name = dcpl.get_external(0)[0]
            name = name.decode("utf8", "replace") if isinstance(name, bytes) else str(name)
            shown = f" ({name[:100]!r}{', ...' if n_external > 1 else ''})"
        except Exception:
            shown = ""
        raise error(f"{prefix}: stores its data in {n_external} external file(s){shown}: "
                    f"refusing to read outside the file")
    for code in filters:
        if code not in H5_FILTERS:
            raise error(f"{prefix}: stored with HDF5 filter {code}, which libhdf5 would load "
                        f"as a plugin (supported: {', '.join(sorted(H5_FILTERS.values()))})")


def h5_get(group, name, path="", what=None, error=WeightFileError):
    """``group[name]``, or None if there is no such member, after checking that
    the name resolves inside the file: external links (and soft links whose
    target passes through one), user-defined links and soft-link loops are
    refused without being followed.

    Parameters
    ----------
    group : h5py.Group
    name : str
        A member name (no slashes needed; a path is resolved step by step).
    path : str
        The file, for messages.
    what : str, optional
        How messages name the member (default ``name``).
    """
    import h5py
    what = name if what is None else what
    prefix = f"{path}: {what}" if path else what
    root = group.file["/"] if name.startswith("/") else group
    todo = [p for p in name.split("/") if p]
    where, hops = root, 0
    while todo:
        part = todo.pop(0)
        if not isinstance(where, h5py.Group):
            return None
        try:
            link = where.get(part, default=None, getlink=True)
        except Exception as exc:
            raise error(f"{prefix}: unreadable link ({type(exc).__name__})") from None
        if link is None:
            return None
        if isinstance(link, h5py.ExternalLink):
            raise error(f"{prefix}: is an external link (to {str(link.filename)[:100]!r}): "
                        f"refusing to read outside the file")
        if isinstance(link, h5py.SoftLink):
            hops += 1
            if hops > H5_MAX_LINK_HOPS:
                raise error(f"{prefix}: more than {H5_MAX_LINK_HOPS} soft links to follow "
                            f"(a loop?)")
            target = str(link.path)
            rest = [p for p in target.split("/") if p]
            if target.startswith("/"):
                where = group.file["/"]
            todo = rest + todo
            continue
        if not isinstance(link, h5py.HardLink):
            raise error(f"{prefix}: a link of unsupported type {type(link).__name__}")
        try:
            where = where[part]
        except Exception as exc:
            raise error(f"{prefix}: unreadable ({type(exc).__name__})") from None
    return where


def check_h5_attr(obj, name, max_bytes=1 << 20, path="", error=WeightFileError):
    """Read attribute ``name`` of an ``h5py`` object after checking its declared size.

    Returns the value as h5py gives it, or None if there is no such attribute.
    """
    import h5py  # noqa: F401 - make sure h5py is there
    if name not in obj.attrs:
        return None
    prefix = f"{path}: attribute {name!r}" if path else f"attribute {name!r}"
    try:
        aid = obj.attrs.get_id(name)
        shape, dtype = aid.shape, aid.dtype
    except Exception as exc:
        raise error(f"{prefix}: unreadable ({type(exc).__name__})") from None
    n = 1 if not shape else math.prod(int(d) for d in shape)
    item = dtype.itemsize if dtype.kind != "O" else 64  # variable-length strings: per item
    if dtype.kind == "O" and n > 1:
        raise error(f"{prefix}: expected a single value, found shape {shape}")
    if n * item > max_bytes:
        raise error(f"{prefix}: declares {format_bytes(n * item)} (at most "
                    f"{format_bytes(max_bytes)})")
    try:
        return obj.attrs[name]
    except Exception as exc:
        raise error(f"{prefix}: unreadable ({type(exc).__name__}: {exc})") from None


class CappedReader(io.RawIOBase):
    """Read-only view of a binary stream that refuses to deliver more than ``limit`` bytes.

    Every ``read(n)`` is checked *before* it is passed on, so a pickle's size
    prefix or a gzip bomb cannot make the reader allocate more than ``limit``
    bytes in all.

    Parameters
    ----------
    raw : binary file object
    limit : int
    path : str
        For the message.
    reason : str, optional
        Appended to the message.
    error : type
        Exception class raised (default :class:`WeightFileError`).
    """

    def __init__(self, raw, limit, path="", reason=None, error=WeightFileError):
        super().__init__()
        self._raw = raw
        self.limit = int(limit)
        self.delivered = 0
        self.path = str(path)
        self.reason = reason
        self.error = error

    def readable(self):
        return True

    def _refuse(self, n):
        why = f" ({self.reason})" if self.reason else ""
        prefix = f"{self.path}: " if self.path else ""
        raise self.error(f"{prefix}refusing to load: the content would need more than "
                         f"{format_bytes(self.limit)} (at {format_bytes(self.delivered)}, "
                         f"{format_bytes(n)} more requested){why}")

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.limit - self.delivered + 1
            data = self._raw.read(n)
            if self.delivered + len(data) > self.limit:
                self._refuse(len(data))
        else:
            if self.delivered + n > self.limit:
                # a short stream may still fit: read at most what is allowed + 1
                data = self._raw.read(self.limit - self.delivered + 1)
                if self.delivered + len(data) > self.limit:
                    self._refuse(n)
            else:
                data = self._raw.read(n)
        self.delivered += len(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def readline(self, size=-1):
        allowed = self.limit - self.delivered + 1
        if size is None or size < 0 or size > allowed:
            size = allowed
        line = self._raw.readline(size)
        if self.delivered + len(line) > self.limit:
            self._refuse(len(line))
        self.delivered += len(line)
        return line
