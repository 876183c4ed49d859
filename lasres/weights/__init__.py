"""Reading and writing parameter values: legacy ``.pklz`` files and HDF5 checkpoints.

Three on-disk formats are handled, one module each:

``.pklz`` (legacy), :mod:`lasres.weights.pklz`
    ``gzip`` of a pickled ``list`` of NumPy arrays, in
    ``lasagne.layers.get_all_param_values`` order (the seed's Python 2
    protocol-0 files). :func:`load_pklz` reads them (and modern pickles,
    gzipped or not, and ``.npz`` archives) with the restricted unpickler of
    :mod:`lasres.io.safepickle`; :func:`save_pklz` writes files that the legacy
    Python 2 / NumPy 1 loader, Python 3 ``pickle.load`` and :func:`load_pklz`
    all read.
HDF5 checkpoint, :mod:`lasres.weights.checkpoint`
    :func:`save_checkpoint` / :func:`load_checkpoint`: the parameter values
    plus architecture, parameter names, pixel mean, epoch, optimizer state,
    training history and free-form extra metadata, written atomically.
Keras 1.x weight files, :mod:`lasres.weights.keras_h5`
    :func:`load_keras_h5` / :func:`save_keras_h5`.
Anything
    :func:`load_weights` (and :func:`load_weights_with_checkpoint`) look at
    a file's first bytes (:func:`detect_format`, not its extension) and
    dispatch to the right reader.

Every problem with a file (missing, truncated, corrupt, foreign, unsafe) is
raised as :class:`lasres.errors.WeightFileError` with a one-line message.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import WeightFileError
from .keras_h5 import load_keras_h5, save_keras_h5
from ..io.safepickle import ForbiddenPickleError, restricted_load
from ..io.sizecheck import check_finite, short_repr
from .checkpoint import (CHECKPOINT_FORMAT, CHECKPOINT_FORMAT_VERSION, MAX_ARRAYS, MAX_EPOCH,
                         Checkpoint, checkpoint_arch, load_checkpoint, save_checkpoint)
from .formats import detect_format
from .pklz import load_pklz, save_pklz, write_portable_pickle
from . import registry
from .registry import fetch, identify

__all__ = [
    "load_pklz", "save_pklz", "load_weights", "load_weights_with_checkpoint",
    "save_checkpoint", "load_checkpoint", "checkpoint_arch", "Checkpoint", "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION", "MAX_ARRAYS", "MAX_EPOCH", "detect_format",
    "restricted_load", "ForbiddenPickleError", "load_keras_h5", "save_keras_h5",
    "write_portable_pickle", "registry", "fetch", "identify",
]


def load_weights_with_checkpoint(path, network=None, *, max_bytes: int | None = None,
                                 expected_shapes=None, arch: dict | None = None
                                 ) -> tuple[list[np.ndarray], Checkpoint | None]:
    """Load parameter values from any supported file, with the checkpoint they came in.

    Parameters
    ----------
    path : str or os.PathLike
        A legacy ``.pklz``, a plain pickle, an ``.npz``, a lasres HDF5
        checkpoint or a Keras 1.x weight file; the extension does not matter.
    network : Layer, optional
        Needed for Keras 1.x weight files, whose layers are matched to the
        network's by its graph (see :func:`lasres.weights.keras_h5.load_keras_h5`).
    max_bytes : int, optional
        Most bytes the file's arrays may take (default
        :data:`lasres.io.sizecheck.MAX_WEIGHT_BYTES`); checked before allocating.
    expected_shapes : sequence of tuple, optional
        The shapes the parameter arrays must have; for HDF5 files they are
        checked before reading.
    arch : dict, optional
        The architecture asked for (``type``, ``depth``, ``width`` and
        ``options``, or options flattened as in checkpoints): a file of the
        weights registry (:mod:`lasres.weights.registry`, recognised by its
        SHA-256 or git blob SHA-1) is refused for another network, naming
        its own. :func:`identify` gives a file's registry entry, with its
        preprocessing.

    Returns
    -------
    values : list of numpy.ndarray
        The parameter values.
    checkpoint : Checkpoint or None
        The whole :class:`Checkpoint` for a lasres HDF5 checkpoint, None for
        the other formats.

    Raises
    ------
    WeightFileError
        As :func:`load_pklz` / :func:`load_checkpoint` /
        :func:`lasres.weights.keras_h5.load_keras_h5`, and for complex values or
        values that are NaN or infinite (naming the array). A Keras file is
        read under ``max_bytes`` too (default: the network's budget). A
        registered file asked for as another ``arch``.
    """
    if arch is not None:  # a registered file (by content) must be asked for as its network
        registry.check_arch(path, arch)
    fmt = detect_format(path)
    if fmt == "keras":
        if network is None:
            raise WeightFileError(f"{os.fspath(path)}: is a Keras weight file: loading it needs "
                                  f"the network (load_weights(path, network=net))")
        return _finite(load_keras_h5(path, network, max_bytes=max_bytes), path), None
    if fmt == "hdf5":
        ckpt = load_checkpoint(path, max_bytes=max_bytes, expected_shapes=expected_shapes)
        return _finite(ckpt.param_values, path, ckpt.param_names), ckpt
    return _finite(load_pklz(path, max_bytes=max_bytes, expected_shapes=expected_shapes),
                   path), None


def _finite(values, path, names=None):
    """``values``, after refusing complex arrays and NaN or infinite values
    (naming the first such array)."""
    for i, v in enumerate(values):
        name = f" ({short_repr(names[i], 60)})" if names and i < len(names) else ""
        check_finite(v, f"{os.fspath(path)}: array {i}{name}")
    return values


def load_weights(path, with_checkpoint: bool = False, network=None, *,
                 max_bytes: int | None = None, expected_shapes=None,
                 arch: dict | None = None) -> list[np.ndarray]:
    """Load parameter values from any supported file, recognised by content.

    Parameters
    ----------
    path, network, max_bytes, expected_shapes
        As :func:`load_weights_with_checkpoint`.
    with_checkpoint : bool
        Deprecated: use :func:`load_weights_with_checkpoint`, which this then
        returns (a ``(values, checkpoint)`` pair).

    Returns
    -------
    list of numpy.ndarray
        The parameter values.

    Raises
    ------
    WeightFileError
        As :func:`load_weights_with_checkpoint`.
    """
    pair = load_weights_with_checkpoint(path, network, max_bytes=max_bytes,
                                        expected_shapes=expected_shapes, arch=arch)
    if with_checkpoint:
        warnings.warn("load_weights(..., with_checkpoint=True) is deprecated: use "
                      "load_weights_with_checkpoint(...)", DeprecationWarning, stacklevel=2)
        return pair
    return pair[0]
