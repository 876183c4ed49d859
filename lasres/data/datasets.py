"""The datasets the scripts know, by name, with the legacy preprocessing
(90/10 split, per-pixel mean of the training part) applied to each."""
import os
import warnings
from dataclasses import dataclass
from typing import Callable

from ..errors import DataError
from .cifar import (PreparedCifar10, compute_pixel_mean, legacy_split, load_cifar10,
                    load_cifar100, load_pixel_mean, prepare_cifar10, preprocess, save_pixel_mean,
                    scale255)
from .mnist import load_mnist

__all__ = ["DatasetInfo", "DATASETS", "get_dataset", "prepare_dataset", "load_raw"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    loader: Callable
    input_shape: tuple
    num_classes: int
    default_augment: str  # 'batch' (legacy crop+flip) or 'none'
    expected: str  # where the files are looked for, for messages


DATASETS = {
    "cifar10": DatasetInfo("cifar10", load_cifar10, (None, 3, 32, 32), 10, "batch",
                           "cifar-10-batches-py/ or cifar-10-batches-bin/"),
    "cifar100": DatasetInfo("cifar100", load_cifar100, (None, 3, 32, 32), 100, "batch",
                            "cifar-100-python/"),
    "mnist": DatasetInfo("mnist", load_mnist, (None, 1, 28, 28), 10, "none",
                         "train-images-idx3-ubyte.gz and the three other IDX files"),
}


def get_dataset(name):
    """The :class:`DatasetInfo` of a dataset name."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}") from None


def load_raw(name, data_dir):
    """The dataset's raw splits (uint8 images, int32 labels)."""
    return get_dataset(name).loader(data_dir)


def prepare_dataset(name, data_dir="data", pixel_mean_path=None, limit=None, seed=0,
                    valid_fraction=0.1, preprocessing="mean"):
    """Load a dataset and apply the legacy preprocessing (see
    :func:`lasres.data.prepare_cifar10`, which this is for ``'cifar10'``);
    ``preprocessing='scale255'`` divides by 255 instead of subtracting a mean."""
    if name == "cifar10":
        return prepare_cifar10(data_dir, pixel_mean_path=pixel_mean_path, limit=limit,
                               seed=seed, valid_fraction=valid_fraction,
                               preprocessing=preprocessing)
    raw = load_raw(name, data_dir)
    X, y, Xt, yt = raw
    if limit is not None:
        X, y, Xt, yt = X[:limit], y[:limit], Xt[:limit], yt[:limit]
    X_tr, y_tr, X_va, y_va = legacy_split(X, y, valid_fraction, seed)
    if preprocessing == "scale255":
        return PreparedCifar10(scale255(X_tr), y_tr, scale255(X_va), y_va, scale255(Xt), yt,
                               None, tuple(raw.label_names or ()), False)
    if pixel_mean_path is not None and os.path.exists(pixel_mean_path):
        mean, computed = load_pixel_mean(pixel_mean_path), False
    else:
        mean, computed = compute_pixel_mean(X_tr), True
        if pixel_mean_path is not None:
            save_pixel_mean(pixel_mean_path, mean)
        else:
            warnings.warn("computed the per-pixel mean from the training images", stacklevel=2)
    return PreparedCifar10(preprocess(X_tr, mean), y_tr, preprocess(X_va, mean), y_va,
                           preprocess(Xt, mean), yt, mean, tuple(raw.label_names or ()), computed)
