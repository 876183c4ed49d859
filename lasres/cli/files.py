"""Output files of the front ends: run folders and saved predictions."""
import os

import numpy as np

from ..io.atomic import atomic_path
from ..errors import LasresError

__all__ = ["check_output_folder", "make_output_folder", "check_output_path", "save_predictions"]


def check_output_folder(out, flag: str = "--out") -> None:
    """Raise :class:`LasresError` unless ``out`` is a folder or can be created
    as one; creates nothing (see :func:`make_output_folder`).

    Parameters
    ----------
    out : str or os.PathLike
    flag : str
        The option that named it, for the message.
    """
    path = os.path.abspath(os.fspath(out))
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise LasresError(f"{flag} {out}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise LasresError(f"{flag} {out}: the folder is not writable")
        return
    parent = path
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise LasresError(f"{flag} {out}: cannot create it, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LasresError(f"{flag} {out}: cannot create it, {parent} is not writable")


def make_output_folder(out, flag: str = "--out") -> None:
    """Create the folder ``out`` (and its parents); a failure is one :class:`LasresError`."""
    check_output_folder(out, flag)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise LasresError(f"{flag} {out}: cannot create it ({exc.strerror or exc})") from None


def check_output_path(path) -> None:
    """Raise :class:`LasresError` unless the folder of the file ``path`` exists."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LasresError(f"cannot write {path}: folder {folder} does not exist")


def save_predictions(path, probs) -> None:
    """Write the softmax outputs ``(images, classes)`` as float32 ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(probs, dtype=np.float32), allow_pickle=False)
