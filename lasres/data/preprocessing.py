"""Preprocessing as data: what a weight file's trainer did to its images.

A :class:`Preprocess` is a scale, a mean and an optional std::

    x' = (x * scale - mean) / std          (float32 throughout)

``mean`` names how the mean was computed (always on scaled images):

``pixel-split``
    per pixel, over the training part of the legacy 90/10 split (the Lasagne
    seed's ``train_nn.py``, saved as ``pixel_mean.npy``); accumulated in
    float64 (:func:`lasres.data.compute_pixel_mean`).
``pixel-all``
    per pixel, over all training images, as the Lasagne Recipes' CIFAR-10
    ResNet script did it (``np.mean(x[0:50000], axis=0)`` of the float32
    images after the division by 255): accumulated in float32, image after
    image, then divided in float32.
``channel``
    one value per channel, over all training images (float64 accumulation).
``none``
    nothing subtracted.

A scale of the form ``1/D`` divides by ``D`` (``x / np.float32(255)``, as the
seeds wrote it: not the same float32 values as ``x * (1/255)``).

Two presets are today's preprocessings: ``legacy`` (the Lasagne seed's:
``scale=1,mean=pixel-split``) and ``keras-seed`` (the RoR seed's: ``x / 255``,
no mean); ``recipes`` is the Lasagne Recipes' (``scale=1/255,mean=pixel-all``).
:func:`parse_preprocess` reads a preset name or ``KEY=VALUE,...``
(``--preprocess``); :meth:`Preprocess.to_dict` / :meth:`Preprocess.from_dict`
are the JSON form recorded in checkpoints and in the weights registry.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import DataError
from .cifar import _as_images, compute_pixel_mean

__all__ = ["Preprocess", "PRESETS", "MEAN_KINDS", "parse_preprocess", "as_preprocess",
           "compute_mean", "mean_cache_path"]

#: The mean kinds, in the order of the module docstring.
MEAN_KINDS = ("pixel-split", "pixel-all", "channel", "none")

_MEAN_TEXT = {
    "pixel-split": "per-pixel mean subtracted over the training split",
    "pixel-all": "per-pixel mean subtracted over all training images",
    "channel": "per-channel mean subtracted over all training images",
    "none": "no mean subtracted",
}


def _scale_text(scale: float) -> str:
    d = _divisor(scale)
    if d is not None:
        return f"1/{d}"
    return f"{scale:g}" if float(f"{scale:g}") == scale else repr(float(scale))


def _divisor(scale: float) -> Optional[int]:
    """``D`` when ``scale`` is exactly the float ``1/D`` for an integer D > 1."""
    if not 0 < scale < 1:
        return None
    d = round(1.0 / scale)
    return d if d > 1 and 1.0 / d == scale else None


@dataclass(frozen=True)
class Preprocess:
    """How images become network inputs (see the module docstring).

    Attributes
    ----------
    scale : float
        Pixel values (0..255) are multiplied by it first (``1/D``: divided by D).
    mean : str
        One of :data:`MEAN_KINDS`.
    std : tuple of float or None
        Divides after the mean is subtracted: one value, or one per channel.
    """

    scale: float = 1.0
    mean: str = "pixel-split"
    std: Optional[tuple] = None

    def __post_init__(self):
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating)) \
                or not math.isfinite(float(scale)) or float(scale) <= 0:
            raise DataError(f"preprocessing: scale must be a positive number, got {scale!r}")
        object.__setattr__(self, "scale", float(scale))
        if self.mean not in MEAN_KINDS:
            raise DataError(f"preprocessing: mean must be one of {', '.join(MEAN_KINDS)}, "
                            f"got {str(self.mean)[:40]!r}")
        if self.std is not None:
            std = self.std if isinstance(self.std, (tuple, list)) else (self.std,)
            try:
                std = tuple(float(s) for s in std)
            except (TypeError, ValueError):
                raise DataError(f"preprocessing: std must be numbers, got "
                                f"{str(self.std)[:40]!r}") from None
            if not std or len(std) > 16 or not all(math.isfinite(s) and s > 0 for s in std):
                raise DataError(f"preprocessing: std must be 1 to 16 positive numbers, got "
                                f"{str(self.std)[:40]!r}")
            object.__setattr__(self, "std", std)

    # --- text and JSON -------------------------------------------------------
    @property
    def spec(self) -> str:
        """The canonical ``--preprocess`` text, e.g. ``'scale=1/255,mean=pixel-all'``."""
        text = f"scale={_scale_text(self.scale)},mean={self.mean}"
        if self.std is not None:
            text += ",std=" + ":".join(f"{s:g}" for s in self.std)
        return text

    @property
    def preset(self) -> Optional[str]:
        """The name of the preset equal to this preprocessing, or None."""
        for name, p in PRESETS.items():
            if p == self:
                return name
        return None

    def describe(self) -> str:
        """One line for banners."""
        d = _divisor(self.scale)
        scale = ("no scaling" if self.scale == 1.0 else f"x / {d}" if d
                 else f"x * {_scale_text(self.scale)}")
        text = f"{scale}, {_MEAN_TEXT[self.mean]}"
        if self.std is not None:
            text += ", divided by std " + ":".join(f"{s:g}" for s in self.std)
        name = self.preset
        return f"{text} ({name}: {PRESET_TEXT[name]})" if name else f"{text} ({self.spec})"

    def to_dict(self) -> dict:
        """The JSON form (checkpoints' ``extra['preprocess']``, registry entries)."""
        return {"scale": self.scale, "mean": self.mean,
                "std": None if self.std is None else list(self.std)}

    @classmethod
    def from_dict(cls, d) -> "Preprocess":
        """Inverse of :meth:`to_dict`; a preset name is accepted too.

        Raises
        ------
        DataError
            Not such a dict (unknown keys, bad values).
        """
        if isinstance(d, str):
            return parse_preprocess(d)
        if not isinstance(d, dict) or set(d) - {"scale", "mean", "std"}:
            raise DataError(f"preprocessing: expected a dict with scale, mean and std, got "
                            f"{str(d)[:80]!r}")
        return cls(d.get("scale", 1.0), d.get("mean", "pixel-split"), d.get("std"))

    # --- computing -----------------------------------------------------------
    @property
    def needs_mean(self) -> bool:
        return self.mean != "none"

    def apply(self, X, mean=None) -> np.ndarray:
        """float32 ``(x * scale - mean) / std`` of uint8 (or any real) images ``(N, C, H, W)``."""
        out = _as_images(X, "preprocess").astype(np.float32)  # always a new array
        d = _divisor(self.scale)
        if d is not None:
            out /= np.float32(d)
        elif self.scale != 1.0:
            out *= np.float32(self.scale)
        if self.needs_mean:
            if mean is None:
                raise DataError(f"preprocessing {self.spec}: no mean given")
            m = np.asarray(mean, dtype=np.float32)
            if m.ndim != 3 or m.shape[0] != out.shape[1] or not all(
                    a in (1, b) for a, b in zip(m.shape[1:], out.shape[2:])):
                raise DataError(f"preprocess: mean of shape {m.shape} does not fit images of "
                                f"shape {out.shape[1:]}")
            out -= m
        if self.std is not None:
            s = np.asarray(self.std, np.float32)
            if s.size not in (1, out.shape[1]):
                raise DataError(f"preprocess: {s.size} std values for {out.shape[1]} channels")
            out /= s.reshape(-1, 1, 1)
        return out


PRESETS = {
    "legacy": Preprocess(1.0, "pixel-split"),
    "keras-seed": Preprocess(1 / 255, "none"),
    "recipes": Preprocess(1 / 255, "pixel-all"),
}
PRESET_TEXT = {
    "legacy": "the Lasagne seed's",
    "keras-seed": "the RoR seed's Keras preprocessing",
    "recipes": "the Lasagne Recipes' CIFAR-10 ResNets'",
}
#: The old preprocessing names of :func:`lasres.data.prepare_dataset`.
_OLD_NAMES = {"mean": "legacy", "scale255": "keras-seed"}


def _number(text: str, key: str) -> float:
    text = text.strip()
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise DataError(f"--preprocess: {key}={text[:40]!r} is not a number (e.g. 1/255 or "
                        f"0.5)") from None


def parse_preprocess(text: str) -> Preprocess:
    """A preset name (``legacy``, ``keras-seed``, ``recipes``) or
    ``KEY=VALUE,...`` with keys ``scale`` (default 1; ``1/255`` allowed),
    ``mean`` (one of :data:`MEAN_KINDS`, default ``none``) and ``std`` (one
    number, or one per channel joined by ``:``); a preset name may start the
    list and be overridden (``recipes,std=0.25``).

    Raises
    ------
    DataError
        A text that cannot be parsed (one line, naming what was wrong).
    """
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"--preprocess: empty; give a preset ({', '.join(PRESETS)}) or "
                        f"scale=...,mean=...,std=...")
    text = text.strip()
    name = _OLD_NAMES.get(text, text)
    if name in PRESETS:
        return PRESETS[name]
    fields = {}
    items = [s.strip() for s in text.split(",")]
    if items and "=" not in items[0] and _OLD_NAMES.get(items[0], items[0]) in PRESETS:
        base = PRESETS[_OLD_NAMES.get(items[0], items[0])]
        fields = {"scale": base.scale, "mean": base.mean, "std": base.std}
        items = items[1:]
    else:
        fields = {"scale": 1.0, "mean": "none", "std": None}
    for item in items:
        if "=" not in item:
            raise DataError(f"--preprocess: {item[:40]!r} is neither a preset ("
                            f"{', '.join(PRESETS)}) nor KEY=VALUE (keys scale, mean, std)")
        key, value = (s.strip() for s in item.split("=", 1))
        if key == "scale":
            fields["scale"] = _number(value, key)
        elif key == "mean":
            if value not in MEAN_KINDS:
                raise DataError(f"--preprocess: mean={value[:40]!r}: choose one of "
                                f"{', '.join(MEAN_KINDS)}")
            fields["mean"] = value
        elif key == "std":
            fields["std"] = None if value in ("", "none") else tuple(
                _number(v, key) for v in value.split(":"))
        else:
            raise DataError(f"--preprocess: unknown key {key[:40]!r} (keys: scale, mean, std)")
    try:
        return Preprocess(**fields)
    except DataError as exc:
        raise DataError(f"--preprocess {text[:60]!r}: {str(exc).split(': ', 1)[-1]}") from None


def as_preprocess(p) -> Preprocess:
    """A :class:`Preprocess` from one, a preset or old name (``'mean'``,
    ``'scale255'``), a ``--preprocess`` text or a :meth:`Preprocess.to_dict` dict."""
    if isinstance(p, Preprocess):
        return p
    if isinstance(p, dict):
        return Preprocess.from_dict(p)
    return parse_preprocess(p)


def compute_mean(prep: Preprocess, X) -> np.ndarray:
    """The mean ``prep`` subtracts, computed from the images ``X`` the way its
    trainer did (the training split for ``pixel-split``, all training images
    otherwise: the caller chooses ``X``).

    Returns
    -------
    numpy.ndarray
        float32 ``(C, H, W)`` (``(C, 1, 1)`` for ``channel``), in scaled units.
    """
    X = _as_images(X, "compute_mean")
    if X.shape[0] == 0:
        raise DataError("compute_mean: no training images")
    if prep.mean == "pixel-split":
        return Preprocess(prep.scale, "none").apply(compute_pixel_mean(X)[None])[0]
    if prep.mean == "pixel-all":
        # np.mean(x, axis=0) of float32 images: a float32 running sum, image after image
        unscaled = Preprocess(prep.scale, "none")
        total = np.zeros(X.shape[1:], np.float32)
        step = 1024
        for i in range(0, X.shape[0], step):
            block = unscaled.apply(X[i:i + step])
            stack = np.concatenate([total[None], block])
            total = np.add.reduce(stack, axis=0, dtype=np.float32)
        return (total / np.float32(X.shape[0])).astype(np.float32)
    if prep.mean == "channel":
        total = np.zeros(X.shape[1], np.float64)
        for i in range(0, X.shape[0], 4096):
            total += X[i:i + 4096].sum(axis=(0, 2, 3), dtype=np.float64)
        total /= float(X.shape[0]) * X.shape[2] * X.shape[3]
        return (total * prep.scale).astype(np.float32).reshape(-1, 1, 1)
    raise DataError(f"preprocessing {prep.spec} subtracts no mean")


def mean_cache_path(prep: Preprocess, folder, dataset: str, count: int) -> str:
    """Where the mean of ``prep`` over ``count`` training images is cached in
    ``folder`` (the data folder or a run folder), e.g.
    ``cifar10_mean_pixel-all_scale1-255_n50000.npy``."""
    scale = _scale_text(prep.scale).replace("/", "-")
    return os.path.join(os.fspath(folder),
                        f"{dataset}_mean_{prep.mean}_scale{scale}_n{int(count)}.npy")
