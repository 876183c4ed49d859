"""CIFAR-10 / CIFAR-100 readers and the legacy preprocessing pipeline.

The readers accept the official distribution layouts:

* ``cifar-10-batches-py/`` -- ``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``: pickled dicts (Python 2 pickles whose keys
  arrive as ``bytes`` when read with ``encoding='bytes'``; pickles with
  ``str`` keys are accepted too);
* ``cifar-10-batches-bin/`` -- ``data_batch_1.bin`` .. ``data_batch_5.bin``,
  ``test_batch.bin``: 3073-byte records (label byte, then 1024 red, 1024
  green, 1024 blue bytes), ``batches.meta.txt`` with the class names;
* ``cifar-100-python/`` -- ``train``, ``test``, ``meta`` (keys
  ``fine_labels`` / ``coarse_labels``).

Pickles are read with the restricted unpickler of :mod:`lasres.io.safepickle`,
which builds nothing but NumPy arrays and builtin containers.

The legacy pipeline of the seed's ``utils.py`` (``load_pickle_data_cv`` and
``load_pickle_data_test``) is reproduced by :func:`legacy_split`,
:func:`compute_pixel_mean` and :func:`preprocess`, bundled (for every
dataset) as :func:`lasres.data.prepare_dataset` / :func:`lasres.data.prepare_cifar10`:

1. the five training batches are concatenated (50,000 images), shuffled and
   split 90/10 into training and validation parts
   (``sklearn.utils.shuffle`` then ``train_test_split(test_size=0.1)``: the
   validation part has ``ceil(0.1 * n)`` images);
2. images are reshaped to ``(N, 3, 32, 32)`` and cast to ``float32``
   **without** scaling: pixel values stay in ``[0, 255]`` (an early revision
   of the seed divided by 255 and subtracted no mean; the published weights
   come from the revision with the per-pixel mean);
3. the per-pixel mean of the training part (shape ``(3, 32, 32)``) is
   subtracted from training and validation images and saved as
   ``data/pixel_mean.npy``; ``test_model.py`` reads that file back and
   subtracts it from the 10,000 test images.
"""
from __future__ import annotations

import math
import os
from collections import namedtuple

import numpy as np
from numpy.lib import format as npformat

from ..io.atomic import atomic_path
from ..errors import DataError, LasresError
from ..recipes import LEGACY
from ..io.sizecheck import (MAX_DATA_BYTES, check_finite, check_regular_file, declared_nbytes,
                         format_bytes, open_regular, short_repr)
from ..io.safepickle import ForbiddenPickleError, PickleLimitError, restricted_load

__all__ = [
    "CIFAR10_CLASSES", "DatasetSplits", "load_cifar10", "load_cifar100",
    "find_cifar10", "legacy_split", "compute_pixel_mean", "preprocess",
    "save_pixel_mean", "load_pixel_mean", "scale255",
    "PREPROCESSINGS",
]

#: ``'mean'``: the Lasagne seed's (per-pixel mean subtracted, no scaling);
#: ``'scale255'``: the RoR seed's Keras one (``x / 255``, no mean).
PREPROCESSINGS = ("mean", "scale255")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
PY_DIR = "cifar-10-batches-py"
BIN_DIR = "cifar-10-batches-bin"
CIFAR100_DIR = "cifar-100-python"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
RECORD_BYTES = 3073
IMAGE_SHAPE = (3, 32, 32)
IMAGE_BYTES = 3072


class DatasetSplits(namedtuple("DatasetSplits", "X_train y_train X_test y_test")):
    """``(X_train, y_train, X_test, y_test)``, with the class names as ``label_names``.

    Unpacks as a 4-tuple; ``label_names`` (tuple of str) and ``source`` (the
    directory read) are extra attributes.
    """

    def __new__(cls, X_train, y_train, X_test, y_test, label_names=(), source=None):
        self = super().__new__(cls, X_train, y_train, X_test, y_test)
        self.label_names = tuple(label_names)
        self.source = source
        return self

    def __getnewargs__(self):
        return tuple(self) + (self.label_names, self.source)


# --------------------------------------------------------------------------
# low-level readers
# --------------------------------------------------------------------------
def _str(v):
    return v.decode("latin1") if isinstance(v, (bytes, bytearray)) else v


def _check_file_size(path, what):
    """Refuse a data file larger than :data:`lasres.io.sizecheck.MAX_DATA_BYTES` before reading it."""
    size = check_regular_file(path, what, DataError, missing=f"missing {what}")
    if size > MAX_DATA_BYTES:
        raise DataError(f"{path}: {what} of {format_bytes(size)} refused (data files are capped "
                        f"at {format_bytes(MAX_DATA_BYTES)}; a CIFAR-10 batch is 30 MiB)")
    return size


#: What a data pickle may create beyond ``PICKLE_GROWTH`` times its own size
#: (a CIFAR batch creates about twice its size: its bytes and the array).
PICKLE_SLACK = 64 * 1024 ** 2
PICKLE_GROWTH = 4


def _read_pickle(path, what):
    """Unpickle a CIFAR file safely; keys are returned as ``str``.

    The unpickler may create at most :data:`PICKLE_GROWTH` times the file's
    size plus :data:`PICKLE_SLACK` (and never more than
    :data:`lasres.io.sizecheck.MAX_DATA_BYTES`): a small file cannot amplify
    itself into the data-file cap."""
    size = _check_file_size(path, what)
    created = min(MAX_DATA_BYTES, PICKLE_GROWTH * size + PICKLE_SLACK)
    try:
        with open_regular(path, what, DataError, missing=f"missing {what}") as f:
            obj = restricted_load(f, encoding="bytes", max_bytes=MAX_DATA_BYTES,
                                  max_created=created)
    except ForbiddenPickleError as exc:
        raise DataError(f"{path}: refusing to load {what}: it references the forbidden object "
                        f"{exc.module}.{exc.name} (nothing was executed)") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except LasresError as exc:
        raise DataError(str(exc)) from None
    except PickleLimitError as exc:
        raise DataError(f"{path}: {what}: {exc} ({PICKLE_GROWTH} times the file's size "
                        f"plus {format_bytes(PICKLE_SLACK)}, at most "
                        f"{format_bytes(MAX_DATA_BYTES)})") from None
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{path}: not a readable {what} (expected a pickled dict; "
                        f"{type(exc).__name__}{': ' + detail if detail else ''})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected {what} to be a pickled dict, found "
                        f"{type(obj).__name__}")
    return {_str(k): v for k, v in obj.items()}


def _keys_text(d, most=10):
    """The keys of ``d`` for a message: at most ``most``, each at most 40 characters."""
    keys = sorted(repr(k)[:40] for k in list(d)[:most])
    more = f", ... ({len(d):,} keys)" if len(d) > most else ""
    return "[" + ", ".join(keys) + more + "]"


def _images_from(d, path, what):
    data = d.get("data")
    if data is None:
        raise DataError(f"{path}: {what} has no 'data' entry (keys: {_keys_text(d)})")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise DataError(f"{path}: expected {what} 'data' as uint8 of shape (N, {IMAGE_BYTES}), "
                        f"found {data.dtype} {data.shape}")
    return data.reshape((-1,) + IMAGE_SHAPE)


def _labels_from(d, key, n, n_classes, path, what):
    if key not in d:
        raise DataError(f"{path}: {what} has no '{key}' entry (keys: {_keys_text(d)})")
    try:
        y = np.asarray(d[key], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):  # (a label of 2**70: OverflowError)
        raise DataError(f"{path}: {what} '{key}' is not a list of integers in "
                        f"0..{n_classes - 1}") from None
    if y.shape[0] != n:
        raise DataError(f"{path}: {what} has {n} images but {y.shape[0]} '{key}'")
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise DataError(f"{path}: {what} '{key}' outside 0..{n_classes - 1}")
    return y.astype(np.int32)


def _read_py_batch(path):
    d = _read_pickle(path, "CIFAR-10 python batch")
    X = _images_from(d, path, "CIFAR-10 batch")
    y = _labels_from(d, "labels", X.shape[0], 10, path, "CIFAR-10 batch")
    return X, y


def _read_bin_batch(path):
    _check_file_size(path, "CIFAR-10 binary batch")
    try:
        with open_regular(path, "CIFAR-10 binary batch", DataError) as f:
            raw = np.fromfile(f, dtype=np.uint8, count=MAX_DATA_BYTES + 1)
    except OSError as exc:
        raise DataError(f"{path}: cannot read CIFAR-10 binary batch ({exc})") from None
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(f"{path}: size {raw.size} bytes is not a positive multiple of the "
                        f"{RECORD_BYTES}-byte CIFAR-10 record")
    rec = raw.reshape(-1, RECORD_BYTES)
    y = rec[:, 0].astype(np.int32)
    if y.max() >= 10:
        raise DataError(f"{path}: label byte {int(y.max())} outside 0..9 "
                        f"(expected {RECORD_BYTES}-byte CIFAR-10 records)")
    return rec[:, 1:].reshape((-1,) + IMAGE_SHAPE), y


def _py_label_names(folder):
    meta = os.path.join(folder, "batches.meta")
    if not os.path.exists(meta):
        return CIFAR10_CLASSES
    d = _read_pickle(meta, "CIFAR-10 batches.meta")
    return _class_names(d.get("label_names"), 10, meta, "label_names")


def _class_names(names, n, path, key):
    """``names`` as a tuple of ``n`` strings (bytes decoded as latin-1), or a
    one-line :class:`DataError`."""
    if not isinstance(names, (list, tuple)) or len(names) != n \
            or not all(isinstance(x, (str, bytes, bytearray)) for x in names):
        raise DataError(f"{path}: expected '{key}' with {n} class names (strings)")
    out = tuple(_str(x) for x in names)
    if any(len(x) > 1000 for x in out):
        raise DataError(f"{path}: a class name in '{key}' is longer than 1,000 characters")
    return out


def _bin_label_names(folder):
    meta = os.path.join(folder, "batches.meta.txt")
    if not os.path.exists(meta):
        return CIFAR10_CLASSES
    if _check_file_size(meta, "CIFAR-10 batches.meta.txt") > 1 << 20:
        raise DataError(f"{meta}: larger than 1 MiB (expected 10 class names)")
    with open_regular(meta, "CIFAR-10 batches.meta.txt", DataError) as f:
        text = f.read().decode("latin1").replace("\r\n", "\n").replace("\r", "\n")
        names = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if len(names) != 10:
        raise DataError(f"{meta}: expected 10 class names, found {len(names)}")
    return tuple(names)


def find_cifar10(data_dir="data", layout="auto"):
    """Locate a CIFAR-10 folder and its layout.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/``,
        or one of those folders itself.
    layout : {'auto', 'py', 'bin'}
        ``'auto'`` prefers the python layout when both are present.

    Returns
    -------
    (str, str)
        The folder and its layout (``'py'`` or ``'bin'``).

    Raises
    ------
    DataError
        If no such folder exists.
    """
    aliases = {"auto": "auto", "py": "py", "python": "py", "pickle": "py",
               "bin": "bin", "binary": "bin"}
    if layout not in aliases:
        raise DataError(f"unknown CIFAR-10 layout {layout!r} (expected 'auto', 'py' or 'bin')")
    layout = aliases[layout]
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: CIFAR-10 data directory not found (expected a folder "
                        f"holding {PY_DIR}/ or {BIN_DIR}/; run train_nn.py with --download "
                        f"to fetch it there)")
    # data_dir itself may be one of the layout folders
    own = []
    if os.path.exists(os.path.join(data_dir, TEST_BATCH)) or \
            os.path.basename(os.path.normpath(data_dir)) == PY_DIR:
        own.append((data_dir, "py"))
    if os.path.exists(os.path.join(data_dir, TEST_BATCH + ".bin")) or \
            os.path.basename(os.path.normpath(data_dir)) == BIN_DIR:
        own.append((data_dir, "bin"))
    candidates = own + [(os.path.join(data_dir, PY_DIR), "py"),
                        (os.path.join(data_dir, BIN_DIR), "bin")]
    for folder, lay in candidates:
        if layout in ("auto", lay) and os.path.isdir(folder):
            return folder, lay
    want = {"auto": f"{PY_DIR}/ or {BIN_DIR}/", "py": f"{PY_DIR}/", "bin": f"{BIN_DIR}/"}[layout]
    raise DataError(f"{data_dir}: no CIFAR-10 found (expected {want} in it; "
                    f"run train_nn.py with --download to fetch it, or call "
                    f"lasres.data.download_cifar10)")


def load_cifar10(data_dir="data", layout="auto"):
    """Load CIFAR-10 from either official layout.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding ``cifar-10-batches-py/`` or ``cifar-10-batches-bin/``
        (the seed used ``data/``), or one of those folders itself.
    layout : {'auto', 'py', 'bin'}
        Which layout to read; ``'auto'`` prefers the python one.

    Returns
    -------
    DatasetSplits
        ``X_train`` uint8 ``(N_train, 3, 32, 32)`` (50,000 for the full set),
        ``y_train`` int32, ``X_test`` uint8 ``(N_test, 3, 32, 32)``,
        ``y_test`` int32, in file order (batches 1 to 5 concatenated), plus
        ``label_names`` from ``batches.meta`` / ``batches.meta.txt`` (the
        standard names when absent). Subsets hold whatever the files hold.

    Raises
    ------
    DataError
        Missing folder or batch, wrong record size, a file that is not a
        CIFAR pickle (or tries to load anything but arrays and containers).
    """
    folder, lay = find_cifar10(data_dir, layout)
    if lay == "py":
        reader, suffix, names = _read_py_batch, "", _py_label_names(folder)
    else:
        reader, suffix, names = _read_bin_batch, ".bin", _bin_label_names(folder)
    missing = [b + suffix for b in TRAIN_BATCHES + (TEST_BATCH,)
               if not os.path.isfile(os.path.join(folder, b + suffix))]
    if missing:
        raise DataError(f"{os.path.join(folder, missing[0])}: missing CIFAR-10 batch (expected "
                        f"data_batch_1{suffix}..data_batch_5{suffix} and test_batch{suffix} "
                        f"in {folder})")
    parts = [reader(os.path.join(folder, b + suffix)) for b in TRAIN_BATCHES]
    X_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    X_test, y_test = reader(os.path.join(folder, TEST_BATCH + suffix))
    return DatasetSplits(np.ascontiguousarray(X_train), y_train,
                         np.ascontiguousarray(X_test), y_test, names, folder)


def load_cifar100(data_dir="data", label_mode="fine"):
    """Load CIFAR-100 from the python layout ``cifar-100-python/``.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Directory holding ``cifar-100-python/`` (files ``train``, ``test``
        and optionally ``meta``), or that folder itself.
    label_mode : {'fine', 'coarse'}
        ``fine_labels`` (100 classes) or ``coarse_labels`` (20 superclasses).

    Returns
    -------
    DatasetSplits
        uint8 images ``(N, 3, 32, 32)`` and int32 labels, with
        ``label_names`` from ``meta`` (``fine_label_names`` /
        ``coarse_label_names``) when present.

    Raises
    ------
    DataError
        Missing folder or file, malformed pickle, labels out of range.
    """
    if label_mode not in ("fine", "coarse"):
        raise DataError(f"unknown CIFAR-100 label_mode {label_mode!r} "
                        f"(expected 'fine' or 'coarse')")
    data_dir = os.fspath(data_dir)
    folder = data_dir
    if not os.path.isfile(os.path.join(folder, "train")):
        folder = os.path.join(data_dir, CIFAR100_DIR)
    if not os.path.isdir(folder):
        raise DataError(f"{data_dir}: no CIFAR-100 found (expected {CIFAR100_DIR}/ "
                        f"with files train and test)")
    n_classes = 100 if label_mode == "fine" else 20
    key = f"{label_mode}_labels"
    out = []
    for split in ("train", "test"):
        path = os.path.join(folder, split)
        d = _read_pickle(path, f"CIFAR-100 '{split}' file")
        X = _images_from(d, path, f"CIFAR-100 '{split}' file")
        y = _labels_from(d, key, X.shape[0], n_classes, path, f"CIFAR-100 '{split}' file")
        out += [np.ascontiguousarray(X), y]
    names = ()
    meta = os.path.join(folder, "meta")
    if os.path.exists(meta):
        m = _read_pickle(meta, "CIFAR-100 meta file")
        raw = m.get(f"{label_mode}_label_names")
        if raw is not None:
            names = _class_names(raw, n_classes, meta, f"{label_mode}_label_names")
    return DatasetSplits(*out, names, folder)


# --------------------------------------------------------------------------
# the legacy pipeline
# --------------------------------------------------------------------------
def _rng(seed):
    if isinstance(seed, (np.random.RandomState, np.random.Generator)):
        return seed
    return np.random.RandomState(seed)


def legacy_split(X, y, valid_fraction=LEGACY.valid_fraction, seed=None):
    """Shuffle and split into training and validation parts, as the seed did.

    The seed called ``sklearn.utils.shuffle`` and then
    ``train_test_split(test_size=0.1)`` (another shuffle) without a seed;
    that is one uniformly random permutation, of which the first
    ``ceil(valid_fraction * n)`` images form the validation part (sklearn's
    rounding) and the rest the training part. Here the permutation comes
    from ``seed`` so the split is reproducible.

    Parameters
    ----------
    X, y : numpy.ndarray
        Images and labels, same length.
    valid_fraction : float
        Fraction held out, in ``[0, 1)``; the seed used 0.1 (45,000 / 5,000).
    seed : int, numpy.random.RandomState, numpy.random.Generator or None
        Source of the permutation (``None``: unseeded, like the seed).

    Returns
    -------
    (X_train, y_train, X_valid, y_valid)
        Note the order differs from sklearn's ``(X_train, X_test, y_train, y_test)``.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise DataError(f"legacy_split: {X.shape[0]} images but {y.shape[0]} labels")
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError(f"legacy_split: valid_fraction must be in [0, 1), got {valid_fraction}")
    n = X.shape[0]
    n_valid = int(math.ceil(valid_fraction * n))
    perm = _rng(seed).permutation(n)
    valid, train = perm[:n_valid], perm[n_valid:]
    return X[train], y[train], X[valid], y[valid]


def _as_images(X, what="images"):
    X = np.asarray(X)
    if X.ndim == 2 and X.shape[1] == IMAGE_BYTES:
        X = X.reshape((-1,) + IMAGE_SHAPE)
    if X.ndim != 4:
        raise DataError(f"{what}: expected shape (N, C, H, W) or (N, 3072), found {X.shape}")
    return X


def compute_pixel_mean(X_train, chunk=4096):
    """Per-pixel mean over the training images (the seed's ``np.mean(X_train, axis=0)``).

    Parameters
    ----------
    X_train : numpy.ndarray
        Unscaled images ``(N, 3, 32, 32)`` (or ``(N, 3072)``), any numeric dtype.
    chunk : int
        Images summed at a time (accumulated in float64).

    Returns
    -------
    numpy.ndarray
        float32 of shape ``X_train.shape[1:]``, e.g. ``(3, 32, 32)``, in
        pixel units (``0..255``).
    """
    X = _as_images(X_train, "compute_pixel_mean")
    if X.shape[0] == 0:
        raise DataError("compute_pixel_mean: no training images")
    total = np.zeros(X.shape[1:], dtype=np.float64)
    for i in range(0, X.shape[0], chunk):
        total += X[i:i + chunk].sum(axis=0, dtype=np.float64)
    return (total / X.shape[0]).astype(np.float32)


def preprocess(X, pixel_mean):
    """Cast to float32 NCHW and subtract the per-pixel mean, as the seed did.

    No scaling: the seed kept pixel values in ``0..255`` (``astype('float32')``
    then ``-= pixel_mean``).

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images ``(N, 3, 32, 32)`` or rows ``(N, 3072)``.
    pixel_mean : numpy.ndarray
        ``(3, 32, 32)`` mean from :func:`compute_pixel_mean` / :func:`load_pixel_mean`.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, 3, 32, 32)``.
    """
    X = _as_images(X, "preprocess")
    mean = np.asarray(pixel_mean, dtype=np.float32)
    if mean.shape != X.shape[1:]:
        raise DataError(f"preprocess: pixel mean of shape {mean.shape} does not fit images of "
                        f"shape {X.shape[1:]} (expected equal shapes)")
    out = X.astype(np.float32)  # always a new array
    out -= mean
    return out


def scale255(X):
    """The RoR seed's (Keras) preprocessing: ``X.astype('float32') / 255``, no mean.

    Parameters
    ----------
    X : numpy.ndarray
        uint8 images ``(N, C, H, W)`` or rows ``(N, 3072)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, H, W)`` in ``[0, 1]``.
    """
    out = _as_images(X, "scale255").astype(np.float32)
    out /= np.float32(255)
    return out


def save_pixel_mean(path, pixel_mean):
    """Save the pixel mean as ``.npy`` (atomically), like the seed's ``pixel_mean.npy``.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; written exactly there (no ``.npy`` appended).
    pixel_mean : array_like
        The mean, shape ``(3, 32, 32)``; stored as float32.
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(pixel_mean, dtype=np.float32), allow_pickle=False)


#: Most bytes a pixel mean file may declare when no image shape is given
#: (a float64 mean of 3 x 1024 x 1024 pixels takes 24 MiB).
MAX_PIXEL_MEAN_BYTES = 32 * 1024 ** 2


def load_pixel_mean(path, shape=None):
    """Read a pixel mean saved by :func:`save_pixel_mean` or the seed's ``train_nn.py``.

    The ``.npy`` header is checked before anything is allocated: a 3-d array
    of real numbers, no larger than ``shape`` in float64 (or
    :data:`MAX_PIXEL_MEAN_BYTES`), whose data is all in the file; then every
    value must be finite.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npy`` file.
    shape : tuple of int, optional
        The images' ``(C, H, W)`` (e.g. ``(3, 32, 32)``): the file may not
        declare more than a float64 mean of that shape.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, H, W)``.

    Raises
    ------
    DataError
        Missing file, not a regular file, not an ``.npy`` of a 3-d array of
        real numbers, larger than the cap, or holding NaN or infinity.
    """
    path = os.fspath(path)
    want = "(3, 32, 32)" if shape is None else str(tuple(shape))
    cap = MAX_PIXEL_MEAN_BYTES if shape is None else 8 * math.prod(int(d) for d in shape)
    size = check_regular_file(path, "pixel mean file", DataError,
                              missing=f"pixel mean file not found (expected an .npy of shape "
                                      f"{want})")
    try:
        with open_regular(path, "pixel mean file", DataError) as f:
            version = npformat.read_magic(f)
            if version == (1, 0):
                mshape, fortran, dtype = npformat.read_array_header_1_0(f)
            elif version in ((2, 0), (3, 0)):
                mshape, fortran, dtype = npformat.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            if dtype.hasobject or dtype.kind not in "biuf" or dtype.names is not None \
                    or dtype.subdtype is not None or len(mshape) != 3:
                raise DataError(f"{path}: expected a pixel mean of real numbers of shape "
                                f"{want}, found {short_repr(str(dtype), 40)} {mshape}")
            nbytes = declared_nbytes(mshape, dtype, f"{path}: pixel mean", DataError)
            if nbytes > cap:
                raise DataError(f"{path}: refusing to load: the pixel mean declares shape "
                                f"{mshape} ({format_bytes(nbytes)}), more than the "
                                f"{format_bytes(cap)} of a float64 mean of shape {want}")
            if size - f.tell() < nbytes:
                raise DataError(f"{path}: truncated pixel mean ({size - f.tell()} bytes of "
                                f"data for {nbytes})")
            f.seek(0)
            m = npformat.read_array(f, allow_pickle=False)
    except LasresError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npy pixel mean ({type(exc).__name__})") from None
    check_finite(m, f"{path}: pixel mean", DataError)
    return m.astype(np.float32)
