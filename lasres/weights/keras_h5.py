"""Keras 1.x HDF5 weight files (``model.save_weights``), read and written
through h5py alone.

Format (Keras 1.x ``save_weights_to_hdf5_group``): root attribute
``layer_names`` (every layer of ``model.layers``, weightless ones included);
one group per layer with attribute ``weight_names`` (empty for layers
without weights) and one dataset per weight. Whole-model files
(``model.save``, and ``ModelCheckpoint`` without ``save_weights_only``)
hold the same in a group ``model_weights``; they are read too, as Keras's
``load_weights`` read them. HDF5 iterates names
alphabetically, so the order comes from the attributes only. Keras's
``load_weights`` matches the file's layers *with weights* to the model's by
position, in ``model.layers`` order.

``model.layers`` order is Keras's depth sort, not construction order: each
layer's depth is the longest path from the output (a depth-first walk from
the output, visiting a merge's inputs in list order); layers are listed
deepest first, ties in the order the walk first reached them.
:func:`keras_layer_order` computes that order on a lasres graph, which is
how a file's layers are matched to a network's: by the graph's structure,
never by names or shapes. It needs the network's layers to correspond one
to one to the Keras model's (build the RoR seed's networks with
``layout=keras``, :mod:`lasres.models.ror_keras`).

Weights, per layer (Keras ``'th'`` ordering; ``'tf'`` in brackets):

* ``Convolution2D``: ``W`` ``(filters, in, rows, cols)`` [``(rows, cols, in,
  filters)``], ``b``. Keras 1 on Theano convolves (flipped kernel: "Theano
  kernels"), on TensorFlow it correlates ("TensorFlow kernels"); a lasres
  ``Conv2DLayer`` with ``flip_filters=True`` takes Theano kernels as they
  are. By default 'th' files are taken to hold Theano kernels and 'tf' files
  TensorFlow kernels (the naming of the Keras 1 era's published files);
  ``kernels=`` says otherwise.
* ``BatchNormalization``: ``gamma, beta, running_mean, running_std`` (the
  last a variance), one to one with :class:`lasres.layers.KerasBatchNormLayer`.
* ``Dense``: ``W`` ``(inputs, units)``, ``b``.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import WeightFileError
from ..io.atomic import atomic_path
from ..io.isolation import run_isolated
from ..io.sizecheck import (ByteBudget, check_h5_attr, check_h5_dataset, h5_get, MAX_WEIGHT_BYTES,
                            network_budget)
from ..layers import (Conv2DLayer, DenseLayer, FlattenLayer, get_all_layers, get_all_params,
                      KerasBatchNormLayer)

__all__ = ["is_keras_h5", "read_keras_h5", "keras_layer_order", "load_keras_h5",
           "save_keras_h5", "KerasLayerWeights"]

#: Most bytes the ``layer_names`` / ``weight_names`` attributes may declare.
MAX_NAMES_BYTES = 16 * 1024 ** 2
#: First bytes of an HDF5 file (without a user block).
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class KerasLayerWeights(object):
    """One layer group of a Keras weight file.

    Attributes
    ----------
    name : str
        The layer's name (its group).
    weight_names : list of str
    values : list of numpy.ndarray
        In ``weight_names`` order.
    """

    def __init__(self, name, weight_names, values):
        self.name = name
        self.weight_names = list(weight_names)
        self.values = list(values)

    def __repr__(self):
        shapes = ", ".join(f"{n} {tuple(v.shape)}" for n, v in zip(self.weight_names, self.values))
        return f"KerasLayerWeights({self.name!r}: {shapes})"


def _s(v):
    return v.decode("utf8") if isinstance(v, bytes) else str(v)


def _names(attr):
    return [_s(x) for x in np.asarray(attr).ravel()] if attr is not None else []


def _weights_group(f):
    """The group holding ``layer_names``: the root, or ``model_weights`` of a
    whole-model file; None if neither."""
    import h5py
    if "layer_names" in f.attrs:
        return f
    g = h5_get(f, "model_weights", f.filename, "group model_weights")
    if isinstance(g, h5py.Group) and "layer_names" in g.attrs:
        return g
    return None


def _probe(path) -> bool:
    """Whether ``path`` is a Keras weight file; runs in the reader process."""
    import h5py
    with open(path, "rb") as f:
        head = f.read(8)
    if head != HDF5_MAGIC and not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            top = _weights_group(f)
            if top is None:
                return False
            # A file that declares Keras's layer list is a Keras file, even a
            # damaged one: the reader then names what is wrong with it.
            return bool(_names(check_h5_attr(top, "layer_names", MAX_NAMES_BYTES, path)))
    except Exception:
        return False


def is_keras_h5(path) -> bool:
    """Whether ``path`` is a Keras 1.x weight file: HDF5 with a root
    attribute ``layer_names`` whose groups carry ``weight_names``.

    The file is inspected in a child process (:func:`lasres.io.isolation.run_isolated`).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
        False also for a missing or unreadable file.

    Raises
    ------
    WeightFileError
        If libhdf5 does not finish inspecting the file in time, or crashes on it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    return bool(run_isolated(_probe, path, path=path, max_bytes=MAX_NAMES_BYTES))


def _read_layers(path, max_bytes, shapes_only=False) -> list:
    """``[(name, weight_names, values), ...]`` of a Keras weight file (with
    ``shapes_only``, the values' shapes: no data is read); runs in the reader
    process."""
    import h5py
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightFileError(f"{path}: cannot open as HDF5 (truncated or corrupt? {first})"
                              ) from None
    budget = ByteBudget(MAX_WEIGHT_BYTES if max_bytes is None else max_bytes, path,
                        None if max_bytes is not None else "the cap for weight files")
    if shapes_only:
        budget = ByteBudget(1 << 62, path)
    layers = []
    try:
        with f:
            top = _weights_group(f)
            if top is None:
                raise WeightFileError(f"{path}: HDF5 file is not a Keras weight file (no "
                                      f"attribute layer_names at its root or in model_weights)")
            for name in _names(check_h5_attr(top, "layer_names", MAX_NAMES_BYTES, path)):
                g = h5_get(top, name, path, f"layer {name}")
                if g is None or "weight_names" not in g.attrs:
                    raise WeightFileError(f"{path}: corrupt Keras weight file: layer {name} "
                                          f"listed in layer_names has no group with "
                                          f"weight_names")
                wnames = _names(check_h5_attr(g, "weight_names", MAX_NAMES_BYTES, path))
                values = []
                for w in wnames:
                    ds = h5_get(g, w, path, f"dataset {name}/{w}")
                    if ds is None:
                        raise WeightFileError(f"{path}: corrupt Keras weight file: layer {name} "
                                              f"lists weight {w} but has no such dataset")
                    check_h5_dataset(ds, budget, f"dataset {name}/{w}")
                    values.append(tuple(int(d) for d in ds.shape) if shapes_only
                                  else np.asarray(ds[()]))
                layers.append((name, wnames, values))
    except WeightFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightFileError(f"{path}: corrupt Keras weight file ({type(exc).__name__}"
                              f"{': ' + first if first else ''})") from None
    return layers


def read_keras_h5(path, max_bytes: int | None = None) -> list:
    """The layers of a Keras 1.x weight file, in the file's (``model.layers``) order.

    The file is read in a child process (:func:`lasres.io.isolation.run_isolated`),
    every dataset's declared size checked before it is read.

    Parameters
    ----------
    path : str or os.PathLike
    max_bytes : int, optional
        Most bytes the file's arrays may take (default
        :data:`lasres.io.sizecheck.MAX_WEIGHT_BYTES`).

    Returns
    -------
    list of :class:`KerasLayerWeights`
        Every layer, weightless ones included (with empty lists).

    Raises
    ------
    WeightFileError
        Missing, not HDF5, truncated or corrupt, not a Keras weight file,
        more than ``max_bytes`` of arrays, or not read within the time and
        memory allowed.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightFileError(f"{path}: weight file not found")
    limit = MAX_WEIGHT_BYTES if max_bytes is None else max_bytes
    layers = run_isolated(_read_layers, path, max_bytes, path=path, max_bytes=limit,
                          what="Keras weight file")
    return [KerasLayerWeights(name, wnames, values) for name, wnames, values in layers]


# --------------------------------------------------------------------------
# Keras's layer order on a lasres graph
# --------------------------------------------------------------------------
def _inputs(layer):
    if hasattr(layer, "input_layers"):
        return [l for l in layer.input_layers if l is not None]
    l = getattr(layer, "input_layer", None)
    return [] if l is None else [l]


def keras_layer_order(network) -> list:
    """The layers of ``network`` in Keras 1's ``model.layers`` order.

    Depth of a layer = the longest path from the output layer; layers are
    sorted deepest first, ties broken by the order in which a depth-first
    walk from the output (a merge's inputs in list order) first reaches
    them -- what Keras 1's ``Container`` does.

    Parameters
    ----------
    network : Layer
        The output layer (of a net built with ``layout=keras``, for its
        weights to line up with the Keras file's).

    Returns
    -------
    list of Layer
    """
    topo = get_all_layers(network)          # every layer after its inputs
    depth = {layer: 0 for layer in topo}
    for layer in reversed(topo):            # consumers before their inputs
        for inp in _inputs(layer):
            depth[inp] = max(depth[inp], depth[layer] + 1)
    first = {}
    stack = [network]
    while stack:
        layer = stack.pop()
        if layer in first:
            continue
        first[layer] = len(first)
        stack.extend(reversed(_inputs(layer)))
    return sorted(topo, key=lambda l: (-depth[l], first[l]))


# --------------------------------------------------------------------------
# per-layer conversion between Keras arrays and lasres parameters
# --------------------------------------------------------------------------
def _kind(layer):
    """'conv', 'bn' or 'dense' for the layers a Keras file can hold; None otherwise."""
    if isinstance(layer, KerasBatchNormLayer):
        return "bn"
    if isinstance(layer, Conv2DLayer) and getattr(layer, "b", None) is not None \
            and not getattr(layer, "untie_biases", False):
        return "conv"
    if isinstance(layer, DenseLayer) and getattr(layer, "b", None) is not None:
        return "dense"
    return None


def _describe(layer):
    return f"{layer.name or '(unnamed)'} ({type(layer).__name__})"


def _weighted_layers(network):
    """Keras-ordered layers holding parameters; an error for layers Keras has no twin of."""
    out = []
    for layer in keras_layer_order(network):
        if not layer.params:
            continue
        if _kind(layer) is None:
            hint = (" (a Keras weight file needs the seed's network: ror or ror-wrn built "
                    "with layout=keras)")
            raise WeightFileError(f"the network's layer {_describe(layer)} has no Keras 1 "
                                  f"counterpart{hint}")
        out.append(layer)
    return out


def _dense_tf_rows(layer):
    """For a 'tf' file: the permutation taking Keras's (h, w, c) flattening of
    the Dense input to lasres's (c, h, w), or None when there is nothing to permute."""
    src = getattr(layer, "input_layer", None)
    shape = src.input_shape if isinstance(src, FlattenLayer) else getattr(layer, "input_shape", ())
    if len(shape) != 4 or shape[2] * shape[3] == 1:
        return None
    c, h, w = shape[1:]
    # lasres row r = (ci, hi, wi); the same value sits at Keras row (hi, wi, ci)
    idx = np.arange(c * h * w).reshape(h, w, c).transpose(2, 0, 1).ravel()
    return idx


def _to_lasres(kind, layer, values, dim_ordering, theano_kernels):
    """Keras arrays of one layer -> lasres parameter values (param order)."""
    if kind == "conv":
        W, b = values
        if dim_ordering == "tf" and W.ndim == 4:
            W = W.transpose(3, 2, 0, 1)
        if theano_kernels != bool(layer.flip_filters):
            W = W[:, :, ::-1, ::-1]
        return [np.ascontiguousarray(W), b]
    if kind == "dense":
        W, b = values
        if dim_ordering == "tf":
            rows = _dense_tf_rows(layer)
            if rows is not None and W.shape[0] == len(rows):
                W = W[rows]
        return [W, b]
    return list(values)  # bn: gamma, beta, running_mean, running_std as they are


def _to_keras(kind, layer, values, dim_ordering, theano_kernels):
    """lasres parameter values of one layer -> Keras arrays (inverse of :func:`_to_lasres`)."""
    if kind == "conv":
        W, b = values
        if theano_kernels != bool(layer.flip_filters):
            W = W[:, :, ::-1, ::-1]
        if dim_ordering == "tf":
            W = W.transpose(2, 3, 1, 0)
        return [np.ascontiguousarray(W), b]
    if kind == "dense":
        W, b = values
        if dim_ordering == "tf":
            rows = _dense_tf_rows(layer)
            if rows is not None:
                inv = np.empty_like(rows)
                inv[rows] = np.arange(len(rows))
                W = W[inv]
        return [W, b]
    return list(values)


def _keras_shape(kind, shape, dim_ordering):
    if kind == "conv" and dim_ordering == "tf" and len(shape) == 4:
        return (shape[2], shape[3], shape[1], shape[0])
    return tuple(shape)


def _param_shapes(layer):
    return [tuple(p.get_value(borrow=True).shape) for p in layer.params]


def _check_options(dim_ordering, kernels):
    if dim_ordering not in ("auto", "th", "tf"):
        raise ValueError(f"dim_ordering must be 'auto', 'th' or 'tf', got {dim_ordering!r}")
    if kernels not in ("auto", "theano", "tensorflow"):
        raise ValueError(f"kernels must be 'auto', 'theano' or 'tensorflow', got {kernels!r}")


def _shape_str(shapes):
    return ", ".join(str(tuple(s)) for s in shapes)


def load_keras_h5(path, network, dim_ordering="auto", kernels="auto", *,
                  max_bytes: int | None = None) -> list:
    """Read a Keras 1.x weight file for ``network``.

    The file's layers with weights are matched, in order, to the network's
    layers with parameters in Keras's ``model.layers`` order
    (:func:`keras_layer_order`), as Keras's ``load_weights`` did.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.h5`` file.
    network : Layer
        The output layer of a network whose layers mirror the Keras model's
        (``layout=keras``).
    dim_ordering : {'auto', 'th', 'tf'}
        'auto' tells from the first convolution kernel's shape.
    kernels : {'auto', 'theano', 'tensorflow'}
        Whether the file's kernels are Theano's (convolution) or
        TensorFlow's (correlation); 'auto': Theano for 'th' files,
        TensorFlow for 'tf' files.
    max_bytes : int, optional
        Most bytes the file's arrays may take; by default the network's
        budget (:func:`lasres.io.sizecheck.network_budget`: twice its
        parameters' float64 size), checked before anything is read.

    Returns
    -------
    list of numpy.ndarray
        Values in ``get_all_params(network)`` order, for
        :func:`lasres.layers.set_all_param_values`.

    Raises
    ------
    WeightFileError
        A file that cannot be read, or that does not fit the network: the
        message names the first layer that does not fit and both shapes.
    """
    _check_options(dim_ordering, kernels)
    path = os.fspath(path)
    if max_bytes is None:
        max_bytes, _ = network_budget([(p.get_value(borrow=True).shape, p.dtype)
                                       for p in get_all_params(network)])
    # The layers' shapes first (no data read), so that a file of another network
    # is named as such even when it is larger than this network's budget.
    if not os.path.isfile(path):
        raise WeightFileError(f"{path}: weight file not found")
    shapes = run_isolated(_read_layers, path, None, True, path=path, max_bytes=MAX_NAMES_BYTES,
                          what="Keras weight file")
    placeholder = np.zeros((), np.float32)
    _match_layers(path, [KerasLayerWeights(name, wnames, [np.broadcast_to(placeholder, sh)
                                                          for sh in values])
                         for name, wnames, values in shapes if wnames],
                  network, dim_ordering, kernels, convert=False)
    file_layers = [l for l in read_keras_h5(path, max_bytes) if l.weight_names]
    return _match_layers(path, file_layers, network, dim_ordering, kernels)


def _match_layers(path, file_layers, network, dim_ordering, kernels, convert=True):
    """The values of ``file_layers`` for ``network``'s parameters (None when
    not ``convert``: only the shapes are checked)."""
    try:
        net_layers = _weighted_layers(network)
    except WeightFileError as exc:
        raise WeightFileError(f"{path} does not fit this network: {exc}") from None

    if dim_ordering == "auto":
        dim_ordering = "th"
        for fl, nl in zip(file_layers, net_layers):
            if _kind(nl) == "conv":
                fshape = tuple(fl.values[0].shape)
                nshape = _param_shapes(nl)[0]
                if fshape != nshape and fshape == _keras_shape("conv", nshape, "tf"):
                    dim_ordering = "tf"
                break
    theano_kernels = (kernels == "theano") or (kernels == "auto" and dim_ordering == "th")

    by_param = {}
    for i, (fl, nl) in enumerate(zip(file_layers, net_layers)):
        kind = _kind(nl)
        want = [_keras_shape(kind, s, dim_ordering) for s in _param_shapes(nl)]
        have = [tuple(v.shape) for v in fl.values]
        if want != have:
            raise WeightFileError(
                f"{path} does not fit this network: its layer {fl.name} (layer {i + 1} with "
                f"weights, Keras order) holds {_shape_str(have)}, the network's layer "
                f"{_describe(nl)} needs {_shape_str(want)} ({dim_ordering} ordering)")
        if not convert:
            continue
        for p, v in zip(nl.params, _to_lasres(kind, nl, fl.values, dim_ordering,
                                               theano_kernels)):
            by_param[p] = v
    if len(file_layers) != len(net_layers):
        n = min(len(file_layers), len(net_layers))
        if len(file_layers) > n:
            fl = file_layers[n]
            raise WeightFileError(
                f"{path} does not fit this network: its layer {fl.name} (layer {n + 1} with "
                f"weights) holds {_shape_str(v.shape for v in fl.values)}, the network has no "
                f"layer there (it has {len(net_layers)} layers with weights, the file "
                f"{len(file_layers)})")
        nl = net_layers[n]
        raise WeightFileError(
            f"{path} does not fit this network: the network's layer {_describe(nl)} (layer "
            f"{n + 1} with weights) needs {_shape_str(_param_shapes(nl))}, the file has no "
            f"layer there (it has {len(file_layers)} layers with weights, the network "
            f"{len(net_layers)})")
    return [by_param[p] for p in get_all_params(network)] if convert else None


def save_keras_h5(network, path, dim_ordering="th", kernels="auto", dtype="float32") -> None:
    """Write ``network``'s parameters as a Keras 1.x weight file (atomically).

    The layout is what Keras 1's ``save_weights`` wrote and ``load_weights``
    reads: every layer of the network in Keras's ``model.layers`` order
    (:func:`keras_layer_order`) in ``layer_names``, under its lasres name
    (the ``layout=keras`` builders give the seed's Keras names); one group
    per layer with ``weight_names`` ``<layer>_W, <layer>_b`` /
    ``<layer>_gamma, <layer>_beta, <layer>_running_mean,
    <layer>_running_std``; kernels flipped and transposed as the
    ordering and kernel convention require.

    Parameters
    ----------
    network : Layer
        Output layer of a network with a Keras twin (``layout=keras``).
    path : str or os.PathLike
    dim_ordering : {'th', 'tf'}
    kernels : {'auto', 'theano', 'tensorflow'}
        'auto': Theano kernels for 'th', TensorFlow kernels for 'tf'.
    dtype : str
        Data type of the datasets (Keras's floatX, float32).
    """
    import h5py
    _check_options(dim_ordering, kernels)
    if dim_ordering == "auto":
        raise ValueError("save_keras_h5: dim_ordering must be 'th' or 'tf'")
    theano_kernels = (kernels == "theano") or (kernels == "auto" and dim_ordering == "th")
    order = keras_layer_order(network)
    _weighted_layers(network)  # every layer with params has a Keras twin
    names = [l.name for l in order]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError("save_keras_h5: every layer needs a unique name (Keras's layer names; "
                         "the layout=keras builders give them)")
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(os.path.dirname(path)):
        raise WeightFileError(f"{path}: cannot save, directory {os.path.dirname(path)} does not "
                              f"exist")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = np.asarray([n.encode("utf8") for n in names])
        for layer in order:
            g = f.create_group(layer.name)
            if not layer.params:
                g.attrs["weight_names"] = np.asarray([])  # as Keras 1 + h5py wrote it
                continue
            kind = _kind(layer)
            values = _to_keras(kind, layer, [p.get_value() for p in layer.params],
                               dim_ordering, theano_kernels)
            wnames = [f"{layer.name}_{(p.name or '').rsplit('.', 1)[-1]}" for p in layer.params]
            g.attrs["weight_names"] = np.asarray([n.encode("utf8") for n in wnames])
            for n, v in zip(wnames, values):
                g.create_dataset(n, data=np.asarray(v, dtype=dtype))
