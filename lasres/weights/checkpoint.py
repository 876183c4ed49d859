"""lasres HDF5 checkpoints: the parameter values plus architecture, parameter
names, pixel mean, epoch, optimizer state, training history and free-form
extra metadata (:func:`save_checkpoint`, written atomically;
:func:`load_checkpoint`, every declared size and metadata value checked)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np
import errno as errnos

from ..io.atomic import atomic_path
from ..errors import WeightFileError
from ..io.isolation import run_isolated
from ..io.sizecheck import check_h5_attr, check_h5_dataset, h5_get
from .formats import HDF5_MAGIC, check_target, check_values, first_line, read_head, weight_budget

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "checkpoint_arch", "CHECKPOINT_FORMAT",
           "CHECKPOINT_FORMAT_VERSION", "MAX_ARRAYS", "MAX_EPOCH"]

#: Value of the ``lasres_format`` root attribute of a lasres HDF5 checkpoint.
CHECKPOINT_FORMAT = "lasres-checkpoint"
#: Version written by :func:`save_checkpoint`; :func:`load_checkpoint` reads
#: this version and older ones.
CHECKPOINT_FORMAT_VERSION = 1


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
        ds = h5_get(group, k, path, f"dataset {what}/{k}")
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
    raw = check_h5_attr(f, name, 1 << 22, path)
    if raw is None:
        return None
    value = json.loads(_attr_str(raw))
    if not isinstance(value, dict):
        raise WeightFileError(f"{path}: corrupt checkpoint: attribute {name} is a JSON "
                              f"{type(value).__name__}, expected an object")
    return value


def _int_attr(f, name, path, lo, hi):
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

    vals = check_values(param_values, "param_values")
    pnames = _names_list(param_names, len(vals), "param_names")
    ostate = None if optimizer_state is None else check_values(optimizer_state,
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

    target = check_target(path)
    try:
        _write_checkpoint(target, vals, pnames, ostate, onames, arch_json, extra_json, epoch,
                          pm, hist)
    except (OSError, RuntimeError) as exc:  # a full disk: libhdf5's message, then its
        raise _write_error(target, exc) from None  # failure to close (the previous file stays)


def _write_error(path, exc) -> OSError:
    """One :class:`OSError` line for a failed write of ``path``: libhdf5 reports
    a full disk over two lines (``... time = ...\n, filename = ..., errno = 28,
    error message = 'No space left on device', ...``), then fails to close."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__context__
    text = " ".join(str(e) for e in chain)
    code = next((e.errno for e in chain if isinstance(e, OSError) and e.errno), None)
    m = re.search(r"errno = (\d+), error message = '([^']*)'", text)
    if m:
        code, reason = int(m.group(1)), m.group(2)
    elif code:
        reason = os.strerror(code)
    else:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
    return OSError(code or errnos.EIO, f"cannot write {path}: {reason}")


def _write_checkpoint(path, vals, pnames, ostate, onames, arch_json, extra_json, epoch, pm,
                      hist):
    import h5py
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
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


@contextlib.contextmanager
def _opened_checkpoint(path):
    """Open ``path`` (in the reader process), check that it is a lasres checkpoint
    of a supported version and yield ``(file, version)``; any error of h5py or
    of the file's content inside the block becomes a :class:`WeightFileError`."""
    import h5py
    if not read_head(path, 8).startswith(HDF5_MAGIC) and not h5py.is_hdf5(path):
        raise WeightFileError(f"{path}: not an HDF5 file (expected a lasres checkpoint)")
    try:
        f = h5py.File(path, "r")
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise WeightFileError(f"{path}: cannot open HDF5 checkpoint ({first_line(exc)})"
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
            yield f, version
    except WeightFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, IndexError,
            AttributeError, OverflowError, RecursionError) as exc:
        raise WeightFileError(f"{path}: corrupt checkpoint ({first_line(exc)})") from None


def _group(f, name, path):
    """Member ``name`` of ``f`` as a group (None if absent), links checked."""
    import h5py
    g = h5_get(f, name, path, f"group {name}")
    if g is not None and not isinstance(g, h5py.Group):
        raise WeightFileError(f"{path}: corrupt checkpoint: '{name}' is not a group")
    return g


def _read_checkpoint(path, max_bytes, expected_shapes) -> dict:
    """The fields of a :class:`Checkpoint` (history curves as float64 arrays);
    runs in the reader process of :func:`lasres.io.isolation.run_isolated`."""
    budget = weight_budget(path, max_bytes)
    with _opened_checkpoint(path) as (f, version):
        params = _group(f, "params", path)
        if params is None:
            raise WeightFileError(f"{path}: corrupt checkpoint: no 'params' group")
        values, pnames = _read_arrays(params, path, "params", budget, expected_shapes)
        ostate = onames = None
        opt = _group(f, "optimizer", path)
        if opt is not None:
            ostate, onames = _read_arrays(opt, path, "optimizer", budget)
        pm = None
        ds = h5_get(f, "pixel_mean", path, "dataset pixel_mean")
        if ds is not None:
            check_h5_dataset(ds, budget, "dataset pixel_mean", max_ndim=4)
            pm = np.asarray(ds[()])
        hist = None
        g = _group(f, "history", path)
        if g is not None:
            hist = {}
            keys = sorted(g.keys())
            if len(keys) > 1000:
                raise WeightFileError(f"{path}: corrupt checkpoint: {len(keys)} history "
                                      f"curves")
            for k in keys:
                ds = h5_get(g, k, path, f"dataset history/{k}")
                check_h5_dataset(ds, budget, f"dataset history/{k}", max_ndim=1)
                if ds.shape[0] > MAX_EPOCH:
                    raise WeightFileError(f"{path}: corrupt checkpoint: history/{k} has "
                                          f"{ds.shape[0]} entries")
                name = _attr_str(check_h5_attr(ds, "name", 4096, path))
                hist[name] = np.asarray([float(x) for x in ds[()]], np.float64)
        arch = _json_dict_attr(f, "arch_json", path)
        extra = _json_dict_attr(f, "extra_json", path)
        epoch = _int_attr(f, "epoch", path, 0, MAX_EPOCH)
        created = check_h5_attr(f, "created", 1024, path)
        created = None if created is None else _attr_str(created)
    return dict(param_values=values, arch=arch, param_names=pnames, pixel_mean=pm,
                epoch=epoch, optimizer_state=ostate, optimizer_state_names=onames,
                history=hist, extra=extra, format_version=version, created=created)


def _read_arch(path):
    with _opened_checkpoint(path) as (f, _):
        return _json_dict_attr(f, "arch_json", path)


def load_checkpoint(path, *, max_bytes: int | None = None, expected_shapes=None) -> Checkpoint:
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
        :data:`lasres.io.sizecheck.MAX_WEIGHT_BYTES`).
    expected_shapes : sequence of tuple, optional
        The shapes the parameter arrays must have (a network's parameters).

    The file is parsed by :func:`lasres.io.isolation.run_isolated`: in a child
    process, under a memory limit and a timeout, so that a damaged file on
    which libhdf5 loops forever or crashes is one :class:`WeightFileError`.

    Returns
    -------
    Checkpoint

    Raises
    ------
    WeightFileError
        If the file is missing, not HDF5, an HDF5 file without the lasres
        format attribute (foreign), of a newer format version, corrupt,
        declares more than ``max_bytes`` or other shapes than
        ``expected_shapes``, holds metadata of the wrong type or range, or
        could not be read within the time and memory allowed.
    """
    path = os.fspath(path)
    read_head(path, 8)
    limit = weight_budget(path, max_bytes).limit
    shapes = None if expected_shapes is None else [tuple(s) for s in expected_shapes]
    fields = run_isolated(_read_checkpoint, path, max_bytes, shapes, path=path,
                          max_bytes=limit, what="HDF5 checkpoint")
    if fields["history"] is not None:
        fields["history"] = {k: v.tolist() for k, v in fields["history"].items()}
    return Checkpoint(**fields)


def checkpoint_arch(path) -> dict | None:
    """The architecture recorded in a lasres checkpoint, without reading its arrays.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    dict or None
        The ``arch`` of :func:`save_checkpoint`, None if none was recorded.

    Raises
    ------
    WeightFileError
        As :func:`load_checkpoint`.
    """
    path = os.fspath(path)
    read_head(path, 8)
    return run_isolated(_read_arch, path, path=path, max_bytes=0, what="HDF5 checkpoint")
