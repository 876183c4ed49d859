"""Datasets and the legacy data pipeline.

Readers
    :func:`load_cifar10` (python or binary layout), :func:`load_cifar100`,
    :func:`load_mnist`, :func:`load_fashion_mnist` -- uint8 ``(N, C, H, W)``
    images and int32 labels.
Legacy CIFAR-10 preprocessing (the seed's ``utils.py``)
    :func:`legacy_split` (shuffled 90/10 train/validation split),
    :func:`compute_pixel_mean`, :func:`preprocess` (float32, per-pixel mean
    subtracted, no scaling), :func:`save_pixel_mean` /
    :func:`load_pixel_mean` (``pixel_mean.npy``), all bundled, for every
    dataset, in :func:`prepare_dataset` (:func:`prepare_cifar10` for
    CIFAR-10); :func:`scale255` is the RoR seed's Keras preprocessing
    (``x / 255``, no mean). Any preprocessing as data:
    :class:`Preprocess` / :func:`parse_preprocess` (:mod:`lasres.data.preprocessing`).
Augmentation
    :func:`iterate_minibatches`: pad 4, random 32x32 crop, random
    left-right flip, per batch (legacy) or per image.
Download
    :func:`download_cifar10`, :func:`download_mnist`, and
    :func:`download_dataset` by dataset name.
"""
from .augment import augment_batch, crop_flip, iterate_minibatches, keras_seed_transform
from .cifar import (CIFAR10_CLASSES, DatasetSplits, compute_pixel_mean, find_cifar10,
                    legacy_split, load_cifar10, load_cifar100, load_pixel_mean, preprocess,
                    save_pixel_mean, scale255, PREPROCESSINGS)
from .datasets import (DATASETS, DatasetInfo, PreparedCifar10, PreparedDataset,
                       download_dataset, get_dataset, load_raw, prepare_cifar10, prepare_dataset)
from .download import (MNIST_SHA256, MNIST_URL, OFFICIAL_MD5, OFFICIAL_URL, download_cifar10,
                       download_mnist)
from .mnist import FASHION_MNIST_CLASSES, load_fashion_mnist, load_mnist, read_idx
from .preprocessing import Preprocess, parse_preprocess

__all__ = [
    "load_cifar10", "load_cifar100", "load_mnist", "load_fashion_mnist", "read_idx",
    "find_cifar10", "DatasetSplits", "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES",
    "legacy_split", "compute_pixel_mean", "preprocess", "save_pixel_mean", "load_pixel_mean",
    "prepare_cifar10", "PreparedCifar10", "PreparedDataset", "scale255", "PREPROCESSINGS",
    "iterate_minibatches", "augment_batch", "crop_flip", "keras_seed_transform",
    "download_cifar10", "OFFICIAL_URL", "OFFICIAL_MD5", "download_mnist", "MNIST_URL",
    "MNIST_SHA256", "download_dataset",
    "DATASETS", "DatasetInfo", "get_dataset", "load_raw", "prepare_dataset",
    "Preprocess", "parse_preprocess",
]
