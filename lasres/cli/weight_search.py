"""Where a front end finds its weights and pixel mean, and how it loads them
into a network."""
import os
from typing import Optional, Tuple

import numpy as np

from ..data import get_dataset, load_pixel_mean
from ..errors import LasresError
from ..io.sizecheck import check_finite, network_budget
from ..layers import get_all_params, set_all_param_values
from ..models import get_spec
from ..train import check_resumable
from ..weights import checkpoint_arch, detect_format, load_weights_with_checkpoint
from .options import parse_options

__all__ = ["REPO_WEIGHTS", "find_weights", "load_network_weights", "load_resume_checkpoint",
           "checkpoint_layout", "auto_layout", "pixel_mean_for"]

REPO_WEIGHTS = "weights"


def find_weights(type: str, depth: int, width: int, weights: Optional[str] = None,
                 search=(REPO_WEIGHTS,), runs: str = "runs") -> str:
    """Where test_model reads weights.

    ``weights`` if given; else the seed's file name for these arguments in
    ``weights/`` (the registry knows them); else the best checkpoint of a
    train_nn run with the same arguments (``runs/TYPE_nN_kK/best.h5``); else
    ``TYPE_nN_kK.h5`` / ``.pklz`` in ``weights/``.

    Raises
    ------
    LasresError
        ``weights`` does not exist, or none of the candidates does.
    """
    if weights:
        if not os.path.exists(weights):
            raise LasresError(f"weight file {weights} does not exist")
        return weights
    tried = []
    legacy = get_spec(type).weights.get((depth, width))
    if legacy:
        for folder in search:
            tried.append(os.path.join(folder, legacy))
    tried.append(os.path.join(runs, f"{type}_n{depth}_k{width}", "best.h5"))
    for folder in search:
        tried.append(os.path.join(folder, f"{type}_n{depth}_k{width}.h5"))
        tried.append(os.path.join(folder, f"{type}_n{depth}_k{width}.pklz"))
    for path in tried:
        if os.path.exists(path):
            return path
    raise LasresError(f"no weights found for {type} {depth} {width}: looked for "
                      f"{', '.join(tried)} (give --weights PATH)")


def load_network_weights(network, path, arch: Optional[dict] = None):
    """Load a weight file (legacy .pklz, pickle, .npz or lasres HDF5) into
    ``network``; returns the :class:`lasres.weights.Checkpoint` or None.

    The file may hold at most what the network's parameters take (twice
    their float64 size, see :func:`lasres.io.sizecheck.network_budget`), and an
    HDF5 checkpoint must declare the network's parameter shapes: both are
    checked before anything is read.

    Raises
    ------
    LasresError
        The file does not fit the network, or records another architecture
        than ``arch``.
    """
    params = get_all_params(network)
    shapes = [p.get_value(borrow=True).shape for p in params]
    limit, reason = network_budget([(sh, p.dtype) for sh, p in zip(shapes, params)])
    expected = shapes if detect_format(path) == "hdf5" else None
    values, ckpt = load_weights_with_checkpoint(path, network=network, max_bytes=limit,
                                               expected_shapes=expected)
    if ckpt is not None and ckpt.arch and arch:
        keys = ("type", "depth", "width", "dataset")
        theirs = {k: ckpt.arch.get(k) for k in keys}
        ours = {k: arch.get(k) for k in keys}
        if theirs != ours:
            def desc(a):
                return " ".join(str(a[k]) for k in keys[:3]) + (f" ({a['dataset']})"
                                                                 if a["dataset"] else "")
            raise LasresError(f"{path} holds weights of {desc(theirs)}, not {desc(ours)}")
    try:
        set_all_param_values(network, values)
    except LasresError as exc:
        raise LasresError(f"{path} does not fit this network: {exc}") from None
    return ckpt


def checkpoint_layout(path) -> Optional[str]:
    """The ``layout`` option recorded in a lasres checkpoint, or None (the
    file is read by the isolated reader: a damaged file cannot hang here)."""
    try:
        arch = checkpoint_arch(path)
    except LasresError:
        return None  # the regular load reports it
    return (arch or {}).get("layout")


def auto_layout(args) -> None:
    """Add ``--option layout=keras`` when the weights test_model will read need
    the seed's Keras layout (a Keras weight file, or a checkpoint trained with
    that layout) and no layout was chosen."""
    try:
        spec = get_spec(args.type)
        if "layout" not in spec.options or "layout" in parse_options(args.option):
            return
        depth = spec.default_depth if args.depth is None else args.depth
        width = spec.default_width if args.width is None else args.width
        path = find_weights(spec.name, depth, width, args.weights)
        fmt = detect_format(path)
    except LasresError:
        return  # the regular path reports it
    layout = "keras" if fmt == "keras" else checkpoint_layout(path) if fmt == "hdf5" else None
    if layout and layout != "paper":
        args.option = list(args.option) + [f"layout={layout}"]
        print(f"note: {path} needs layout={layout}: building the "
              f"{'RoR seed' if layout == 'keras' else layout}'s network")


def pixel_mean_for(args, weights_path, ckpt) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """The pixel mean that goes with ``weights_path``, and where it was found.

    In this order: ``--pixel-mean``; the mean stored in the checkpoint
    ``ckpt``; ``pixel_mean.npy`` next to the weights; ``pixel_mean.npy`` in
    ``--data``.

    Returns
    -------
    (numpy.ndarray or None, str or None)
        ``(None, None)`` when there is none.
    """
    shape = tuple(get_dataset(getattr(args, "dataset", "cifar10")).input_shape[1:])
    if args.pixel_mean:
        return load_pixel_mean(args.pixel_mean, shape), args.pixel_mean
    if ckpt is not None and ckpt.pixel_mean is not None:
        check_finite(ckpt.pixel_mean, f"{weights_path}: pixel mean")
        return np.asarray(ckpt.pixel_mean, np.float32), weights_path
    for cand in (os.path.join(os.path.dirname(os.path.abspath(weights_path)), "pixel_mean.npy"),
                 os.path.join(args.data, "pixel_mean.npy")):
        if os.path.lexists(cand):  # (a FIFO or a dangling link is refused by the reader)
            return load_pixel_mean(cand, shape), cand
    return None, None


def load_resume_checkpoint(network, path, arch: Optional[dict] = None):
    """Load a checkpoint to resume training from into ``network`` and return
    it, after :func:`load_network_weights` (which refuses another
    architecture) and :func:`lasres.train.check_resumable`.

    Raises
    ------
    LasresError
        Not a lasres checkpoint, or one that cannot resume training.
    """
    ckpt = load_network_weights(network, path, arch)
    if ckpt is None:
        raise LasresError(f"{path} is not a lasres checkpoint (resume needs one, with "
                          "the optimizer state)")
    check_resumable(ckpt, network)
    return ckpt
