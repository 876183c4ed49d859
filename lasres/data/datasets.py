"""The datasets the scripts know, by name, and the one preparation every
dataset goes through: the legacy split (90/10, shuffled), the per-pixel mean
of the training part (read from a file, given, or computed and saved) and the
preprocessing (mean subtracted, or the RoR seed's ``x / 255``)."""
import os
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Tuple, Union

import numpy as np

from ..errors import DataError
from ..recipes import LEGACY
from .cifar import (CIFAR10_CLASSES, PREPROCESSINGS, compute_pixel_mean, legacy_split,
                    load_cifar10, load_cifar100, load_pixel_mean, preprocess, save_pixel_mean,
                    scale255)
from .download import download_cifar10, download_mnist
from .mnist import load_fashion_mnist, load_mnist
from .preprocessing import Preprocess, as_preprocess, compute_mean, mean_cache_path

__all__ = ["DatasetInfo", "DATASETS", "get_dataset", "load_raw", "download_dataset",
           "prepare_dataset", "prepare_cifar10", "PreparedDataset", "PreparedCifar10"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    loader: Callable
    input_shape: tuple
    num_classes: int
    default_augment: str  # 'batch' (legacy crop+flip) or 'none'
    expected: str  # where the files are looked for, for messages
    title: str  # the name in titles and banners
    download: Optional[Callable] = None  # fetches the files into a data folder


DATASETS = {
    "cifar10": DatasetInfo("cifar10", load_cifar10, (None, 3, 32, 32), 10, "batch",
                           "cifar-10-batches-py/ or cifar-10-batches-bin/", "CIFAR-10",
                           download_cifar10),
    "cifar100": DatasetInfo("cifar100", load_cifar100, (None, 3, 32, 32), 100, "batch",
                            "cifar-100-python/", "CIFAR-100"),
    "mnist": DatasetInfo("mnist", load_mnist, (None, 1, 28, 28), 10, "none",
                         "train-images-idx3-ubyte.gz and the three other IDX files", "MNIST",
                         download_mnist),
    "fashion-mnist": DatasetInfo("fashion-mnist", load_fashion_mnist, (None, 1, 28, 28), 10,
                                 "none", "train-images-idx3-ubyte.gz and the three other IDX "
                                 "files (Fashion-MNIST)", "Fashion-MNIST"),
}


def get_dataset(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a dataset name.

    Raises
    ------
    DataError
        Unknown name.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}") from None


def load_raw(name: str, data_dir):
    """The dataset's raw splits (uint8 images, int32 labels), a :class:`DatasetSplits`."""
    return get_dataset(name).loader(data_dir)


def download_dataset(name: str, data_dir) -> bool:
    """Fetch a dataset into ``data_dir`` unless it can be read there already.

    Returns
    -------
    bool
        True when it was downloaded.

    Raises
    ------
    DataError
        A dataset with no download source, or a failed download.
    """
    info = get_dataset(name)
    if info.download is None:
        known = ", ".join(n for n, i in DATASETS.items() if i.download is not None)
        raise DataError(f"no download source for {info.title} (there is one for {known}); "
                        f"put {info.expected} in {os.fspath(data_dir)}")
    try:
        info.loader(data_dir)
        return False
    except DataError:
        info.download(data_dir)
        return True


@dataclass
class PreparedDataset:
    """A dataset after the legacy pipeline (see :func:`prepare_dataset`).

    Attributes
    ----------
    X_train, X_valid, X_test : numpy.ndarray
        float32 ``(N, C, H, W)``: mean subtracted and unscaled, or divided by
        255 (``preprocessing='scale255'``).
    y_train, y_valid, y_test : numpy.ndarray
        int32 labels.
    pixel_mean : numpy.ndarray or None
        float32 ``(C, H, W)``; None for ``'scale255'``.
    label_names : tuple of str
    pixel_mean_computed : bool
        True if the mean was computed from ``X_train`` here, False if read
        from a file or given.
    pixel_mean_file : str or None
        For a ``pixel-all`` / ``channel`` mean: the file it was read from or
        cached in, if any.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    pixel_mean: Optional[np.ndarray]
    label_names: tuple = ()
    pixel_mean_computed: bool = True
    pixel_mean_file: Optional[str] = None


@dataclass
class PreparedCifar10(PreparedDataset):
    """CIFAR-10 after the legacy pipeline (see :func:`prepare_cifar10`)."""

    label_names: tuple = CIFAR10_CLASSES


def _limits(limit):
    if limit is None:
        return None, None
    return (limit, limit) if np.isscalar(limit) else tuple(limit)


def _mean_for(X_tr, pixel_mean, pixel_mean_path):
    """``(mean, computed)``: given, read from ``pixel_mean_path``, or computed
    from the training part (saved to ``pixel_mean_path`` when one was named),
    with a warning when computed."""
    if pixel_mean is not None:
        return np.asarray(pixel_mean, dtype=np.float32), False
    if pixel_mean_path is not None and os.path.exists(pixel_mean_path):
        return load_pixel_mean(pixel_mean_path, shape=np.shape(X_tr)[1:]), False
    mean = compute_pixel_mean(X_tr)
    if pixel_mean_path is None:
        warnings.warn(f"no pixel mean file given: computed the per-pixel mean from the "
                      f"{X_tr.shape[0]} training images (weights trained with another "
                      f"mean will see shifted inputs)", stacklevel=3)
    else:
        save_pixel_mean(pixel_mean_path, mean)
        warnings.warn(f"pixel mean file {os.fspath(pixel_mean_path)} not found: computed "
                      f"it from the {X_tr.shape[0]} training images and saved it there",
                      stacklevel=3)
    return mean, True


def prepare_dataset(name: str = "cifar10", data_dir="data", pixel_mean_path=None,
                    limit: Union[None, int, Tuple[Optional[int], Optional[int]]] = None,
                    seed=0, valid_fraction: float = LEGACY.valid_fraction,
                    preprocessing: str = LEGACY.preprocess,
                    layout: str = "auto", pixel_mean=None,
                    test_only: bool = False, mean_cache=None) -> PreparedDataset:
    """Load a dataset and run the seed's pipeline on it.

    Parameters
    ----------
    name : str
        A key of :data:`DATASETS` (``'cifar10'``, ``'cifar100'``, ``'mnist'``,
        ``'fashion-mnist'``).
    data_dir : str or os.PathLike
        The folder the dataset's loader reads.
    pixel_mean_path : str or os.PathLike, optional
        If the file exists, the mean is read from it (as ``test_model.py``
        did). Otherwise it is computed from the training part (after the
        split), a warning is issued, and -- when a path was given -- it is
        saved there (as ``train_nn.py`` saved ``data/pixel_mean.npy``).
    limit : int or (int, int), optional
        Use only the first ``limit`` training images (before the split) and
        the first ``limit`` test images; a pair limits them separately
        (``None`` in it: no limit). For quick runs.
    seed : int, RandomState, Generator or None
        Seed of the train/validation permutation.
    valid_fraction : float
        Fraction of the training images held out for validation (the legacy
        recipe's, 0.1).
    preprocessing : Preprocess, str or dict
        ``'mean'`` (the ``legacy`` preset), ``'scale255'`` (the RoR seed's
        ``x / 255``, :func:`scale255`, the ``keras-seed`` preset: no mean is
        read or written, ``pixel_mean`` is None), or any
        :class:`lasres.data.preprocessing.Preprocess` (a preset name,
        ``--preprocess`` text or its dict). A ``pixel-all`` or ``channel``
        mean is computed from all the training images (after ``limit``), the
        way the weights' trainer did; ``pixel_mean_path`` and ``pixel_mean``
        apply to every kind of mean.
    layout : {'auto', 'py', 'bin'}
        CIFAR-10 only: as for :func:`load_cifar10`.
    pixel_mean : array_like, optional
        The mean to subtract (wins over ``pixel_mean_path``).
    test_only : bool
        Preprocess only the test images (``X_train`` and ``X_valid`` are
        then empty); the split is still made when the mean must be computed.
    mean_cache : str or os.PathLike, optional
        A folder (e.g. the data folder) where a computed ``pixel-all`` or
        ``channel`` mean is cached (:func:`lasres.data.preprocessing.mean_cache_path`)
        and read back next time; a folder that cannot be written is skipped.

    Returns
    -------
    PreparedDataset
        A :class:`PreparedCifar10` for ``'cifar10'``.

    Raises
    ------
    DataError
        Unknown dataset, missing or malformed files.
    ValueError
        Unknown ``preprocessing``, or a ``layout`` for another dataset than CIFAR-10.
    """
    try:
        prep = as_preprocess(preprocessing)
    except DataError:
        raise ValueError(f"preprocessing must be one of {PREPROCESSINGS}, a Preprocess or a "
                         f"--preprocess text, got {preprocessing!r}") from None
    info = get_dataset(name)
    if layout != "auto" and name != "cifar10":
        raise ValueError(f"layout={layout!r} is for CIFAR-10 only")
    raw = load_cifar10(data_dir, layout) if name == "cifar10" else info.loader(data_dir)
    X, y, Xt, yt = raw
    lt, ls = _limits(limit)
    if lt is not None:
        X, y = X[:int(lt)], y[:int(lt)]
    if ls is not None:
        Xt, yt = Xt[:int(ls)], yt[:int(ls)]
    result = PreparedCifar10 if name == "cifar10" else PreparedDataset
    label_names = tuple(raw.label_names or ())
    mean_given = pixel_mean is not None or (pixel_mean_path is not None
                                            and os.path.exists(pixel_mean_path))
    split = not test_only or (prep.mean == "pixel-split" and not mean_given)
    X_tr, y_tr, X_va, y_va = legacy_split(X, y, valid_fraction, seed) if split else (None,) * 4
    mean, computed, mean_file = None, False, None
    if prep.mean == "pixel-split":
        mean, computed = _mean_for(X_tr, pixel_mean, pixel_mean_path)
        if prep.scale != 1.0 and computed:
            mean = Preprocess(prep.scale, "none").apply(mean[None])[0]
    elif prep.needs_mean:
        mean, computed, mean_file = _whole_mean(prep, X, name, pixel_mean, pixel_mean_path,
                                                mean_cache, limited=lt is not None)
    if test_only:
        X_tr, y_tr, X_va, y_va = X[:0], y[:0], X[:0], y[:0]
    if prep == Preprocess(1.0, "pixel-split"):
        def apply(images):  # (the legacy path, unchanged)
            return preprocess(images, mean)
    elif prep == Preprocess(1 / 255, "none"):
        apply = scale255
    else:
        def apply(images):
            return prep.apply(images, mean)
    return result(apply(X_tr), y_tr, apply(X_va), y_va, apply(Xt), yt, mean, label_names,
                  computed, mean_file)


def _whole_mean(prep, X, name, pixel_mean, pixel_mean_path, cache_dir, limited):
    """``(mean, computed, file)`` of a ``pixel-all`` / ``channel`` preprocessing:
    given, read from ``pixel_mean_path`` or the cache in ``cache_dir``, or
    computed from all of ``X`` (then cached when ``cache_dir`` is writable)."""
    if pixel_mean is not None:
        return np.asarray(pixel_mean, dtype=np.float32), False, None
    if pixel_mean_path is not None and os.path.exists(pixel_mean_path):
        return (load_pixel_mean(pixel_mean_path, shape=np.shape(X)[1:]), False,
                os.fspath(pixel_mean_path))
    cached = (None if cache_dir is None or limited  # (a --limit run's mean is not cached)
              else mean_cache_path(prep, cache_dir, name, len(X)))
    if cached is not None and os.path.isfile(cached):
        return load_pixel_mean(cached, shape=np.shape(X)[1:]), False, cached
    mean = compute_mean(prep, X)
    if cached is not None:
        try:
            save_pixel_mean(cached, mean)
        except OSError:
            cached = None  # a read-only data folder: computed again next time
    return mean, True, cached


def prepare_cifar10(data_dir="data", pixel_mean_path=None, limit=None, seed=0,
                    valid_fraction: float = LEGACY.valid_fraction, layout: str = "auto",
                    preprocessing: str = LEGACY.preprocess) -> PreparedCifar10:
    """Load CIFAR-10 and run the seed's preprocessing:
    ``prepare_dataset('cifar10', ...)`` (see :func:`prepare_dataset` for the
    parameters).

    Returns
    -------
    PreparedCifar10
    """
    return prepare_dataset("cifar10", data_dir, pixel_mean_path=pixel_mean_path, limit=limit,
                           seed=seed, valid_fraction=valid_fraction,
                           preprocessing=preprocessing, layout=layout)
