"""MNIST reader for the four IDX files of the official distribution.

Files (gzip'd or not; ``train-images.idx3-ubyte`` spellings accepted too)::

    train-images-idx3-ubyte.gz   magic 0x00000803, 60000 x 28 x 28 uint8
    train-labels-idx1-ubyte.gz   magic 0x00000801, 60000 uint8
    t10k-images-idx3-ubyte.gz    magic 0x00000803, 10000 x 28 x 28 uint8
    t10k-labels-idx1-ubyte.gz    magic 0x00000801, 10000 uint8
"""
from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib

import numpy as np

from ..errors import DataError
from ..io.sizecheck import MAX_DATA_BYTES, check_regular_file, format_bytes, open_regular
from .cifar import DatasetSplits

__all__ = ["load_mnist", "load_fashion_mnist", "read_idx", "MNIST_FILES",
           "FASHION_MNIST_CLASSES"]

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) ships the same four IDX files,
# 28 x 28 grey images and labels 0..9, naming these classes.
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _gunzip_capped(raw, path, cap=None):
    """``gzip.decompress`` that stops at ``cap`` bytes (a decompression bomb is refused)."""
    cap = MAX_DATA_BYTES if cap is None else cap
    out, total = [], 0
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
        while True:
            chunk = gz.read(1 << 20)
            if not chunk:
                break
            total += len(chunk)
            if total > cap:
                raise DataError(f"{path}: refusing to decompress: more than "
                                f"{format_bytes(cap)} (the cap for data files)")
            out.append(chunk)
    return b"".join(out)


def read_idx(path, expect_ndim=None):
    """Read one IDX file (optionally gzip'd), validating its header.

    Parameters
    ----------
    path : str or os.PathLike
        The file; gzip is recognised from its first bytes.
    expect_ndim : int, optional
        Required number of dimensions (3 for images, 1 for labels).

    Returns
    -------
    numpy.ndarray
        The array in native byte order.

    Raises
    ------
    DataError
        Missing file, corrupt gzip, bad magic number, or size mismatch.
    """
    path = os.fspath(path)
    try:
        size = check_regular_file(path, "MNIST file", DataError, missing="missing MNIST file")
        if size > MAX_DATA_BYTES:
            raise DataError(f"{path}: MNIST file of {format_bytes(size)} refused (data files are "
                            f"capped at {format_bytes(MAX_DATA_BYTES)})")
        with open_regular(path, "MNIST file", DataError, missing="missing MNIST file") as f:
            raw = f.read(MAX_DATA_BYTES + 1)
        if raw[:2] == b"\x1f\x8b":
            raw = _gunzip_capped(raw, path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing MNIST file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read MNIST file (corrupt gzip: {type(exc).__name__})"
                        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex() or 'empty'} "
                        f"(expected 0000080N)")
    ndim = raw[3]
    if expect_ndim is not None and ndim != expect_ndim:
        magic = 0x800 + expect_ndim
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expect_ndim} "
                        f"(magic 0x{magic:08x})")
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    body = raw[4 + 4 * ndim:]
    want = math.prod(dims) * dtype.itemsize  # Python ints: 2**22 * 2**21 * 2**21 is not 0
    if len(body) != want:
        raise DataError(f"{path}: IDX body has {len(body)} bytes, expected {want} for "
                        f"shape {dims}")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder, stem):
    alt = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, alt + ".gz", alt):
        p = os.path.join(folder, name)
        if os.path.isfile(p):
            return p
    return None


def load_mnist(data_dir="data"):
    """Load MNIST from its four IDX files.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Folder holding the files, or a folder with an ``mnist/`` (or
        ``MNIST/raw/``) subfolder holding them.

    Returns
    -------
    DatasetSplits
        ``X_train`` uint8 ``(N, 1, 28, 28)``, ``y_train`` int32,
        ``X_test``, ``y_test``; ``label_names`` are ``'0'`` .. ``'9'``.

    Raises
    ------
    DataError
        Missing folder or file, bad magic number, inconsistent counts.
    """
    return _load_idx_dataset(data_dir, "MNIST", ("mnist", os.path.join("MNIST", "raw")),
                             tuple(str(i) for i in range(10)),
                             hint="; run train_nn.py --dataset mnist with --download to fetch "
                                  "it, or call lasres.data.download_mnist")


def _load_idx_dataset(data_dir, name, subfolders, label_names, hint=""):
    """The four IDX files of an MNIST-format dataset in ``data_dir`` or one of
    its ``subfolders``, checked, as a :class:`DatasetSplits`."""
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: {name} data directory not found{hint}")
    folder = None
    for cand in (data_dir,) + tuple(os.path.join(data_dir, sub) for sub in subfolders):
        if _find(cand, MNIST_FILES["train_images"]):
            folder = cand
            break
    if folder is None:
        raise DataError(f"{data_dir}: no {name} found (expected "
                        f"{MNIST_FILES['train_images']}.gz and the three other IDX files in it "
                        f"or in {subfolders[0]}/){hint}")
    out = []
    for split in ("train", "test"):
        paths = {}
        for kind in ("images", "labels"):
            stem = MNIST_FILES[f"{split}_{kind}"]
            p = _find(folder, stem)
            if p is None:
                raise DataError(f"{os.path.join(folder, stem)}.gz: missing {name} file")
            paths[kind] = p
        X = read_idx(paths["images"], expect_ndim=3)
        y = read_idx(paths["labels"], expect_ndim=1)
        if X.dtype != np.uint8 or y.dtype != np.uint8:
            raise DataError(f"{paths['images']}: expected unsigned-byte IDX files (type 0x08)")
        if X.shape[0] != y.shape[0]:
            raise DataError(f"{paths['labels']}: {y.shape[0]} labels for {X.shape[0]} images")
        if y.size and y.max() > 9:
            raise DataError(f"{paths['labels']}: label {int(y.max())} outside 0..9")
        out += [np.ascontiguousarray(X[:, None]), y.astype(np.int32)]
    return DatasetSplits(*out, tuple(label_names), folder)


def load_fashion_mnist(data_dir="data"):
    """Load Fashion-MNIST, the drop-in replacement of MNIST (same four IDX
    file names and shapes; ten kinds of clothing instead of digits).

    Parameters
    ----------
    data_dir : str or os.PathLike
        Folder holding the files, or a folder with a ``fashion-mnist/`` (or
        ``FashionMNIST/raw/``) subfolder holding them (Debian's
        ``dataset-fashion-mnist`` installs them in
        ``/usr/share/datasets/fashion-mnist``).

    Returns
    -------
    DatasetSplits
        As :func:`load_mnist`; ``label_names`` are :data:`FASHION_MNIST_CLASSES`.

    Raises
    ------
    DataError
        As :func:`load_mnist`.
    """
    return _load_idx_dataset(data_dir, "Fashion-MNIST",
                             ("fashion-mnist", os.path.join("FashionMNIST", "raw")),
                             FASHION_MNIST_CLASSES)
