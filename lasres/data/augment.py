"""Minibatch iteration with the legacy pad-crop-flip augmentation.

The seed's ``batch_iterator_train_crop_flip`` (``utils.py``) does, per epoch:

* shuffle the whole training set (``sklearn.utils.shuffle``);
* cut it into ``ceil(n / batch_size)`` batches -- the **last, partial batch
  is kept**, not dropped (``range((n + bs - 1) // bs)``);
* per batch, draw ``trans_1, trans_2 = random.randint(0, 8)`` (inclusive:
  9 positions each) and ``flip_lr = random.randint(0, 1)``; every image of
  the batch is zero-padded by 4 pixels on each side (after the mean was
  subtracted, so the padding is the mean colour, not black), cropped to
  ``padded[trans_1:trans_1 + 32, trans_2:trans_2 + 32]`` (``trans_1`` along
  rows, ``trans_2`` along columns) and, if ``flip_lr``, flipped left-right
  (``np.fliplr``: the column axis) -- **one crop offset and one flip
  decision for the whole batch**.

Its validation iterator walks the data in order, without augmentation, with
the same ``ceil`` batching. :func:`iterate_minibatches` covers both, with a
vectorised per-image mode as an option.

Mode ``'keras-seed'`` is the RoR seed's augmentation instead
(:func:`keras_seed_transform`): Keras 1's ``ImageDataGenerator(
rotation_range=15, width_shift_range=5./32, height_shift_range=5./32)``,
a random rotation and shift per image, no flip, no crop.
"""
from __future__ import annotations

import numpy as np

__all__ = ["iterate_minibatches", "augment_batch", "crop_flip", "keras_seed_transform"]

_MODES = ("batch", "image", "keras-seed")


def _make_rng(rng):
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (np.random.RandomState, np.random.Generator)):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.RandomState(int(rng))
    raise TypeError(f"rng must be None, an int, a RandomState or a Generator, got {type(rng)}")


def _randint(rng, high, size=None):
    """Integers in ``[0, high)`` from either RNG flavour."""
    if isinstance(rng, np.random.Generator):
        return rng.integers(0, high, size=size)
    return rng.randint(0, high, size=size)


def crop_flip(X, dy, dx, flip, pad=4):
    """Zero-pad images by ``pad``, crop back to their size at ``(dy, dx)``, flip.

    Parameters
    ----------
    X : numpy.ndarray
        Batch ``(B, C, H, W)``.
    dy, dx : int or array of int, shape (B,)
        Crop offsets in the padded image, each in ``[0, 2 * pad]``; ``pad``
        means no shift. Scalars apply to the whole batch.
    flip : bool or array of bool, shape (B,)
        Left-right flip (reverse the last axis) after cropping.
    pad : int
        Zero padding on every side.

    Returns
    -------
    numpy.ndarray
        New array of ``X``'s shape and dtype.
    """
    X = np.asarray(X)
    B, C, H, W = X.shape
    if pad:
        padded = np.zeros((B, C, H + 2 * pad, W + 2 * pad), dtype=X.dtype)
        padded[:, :, pad:pad + H, pad:pad + W] = X
    else:
        padded = X
    if np.ndim(dy) == 0 and np.ndim(dx) == 0 and np.ndim(flip) == 0:
        dy, dx = int(dy), int(dx)
        if not (0 <= dy <= 2 * pad and 0 <= dx <= 2 * pad):
            raise ValueError(f"crop offsets ({dy}, {dx}) outside [0, {2 * pad}]")
        out = padded[:, :, dy:dy + H, dx:dx + W]
        if flip:
            out = out[..., ::-1]
        return np.ascontiguousarray(out)
    dy = np.broadcast_to(np.asarray(dy, dtype=np.intp), (B,))
    dx = np.broadcast_to(np.asarray(dx, dtype=np.intp), (B,))
    flip = np.broadcast_to(np.asarray(flip, dtype=bool), (B,))
    if B and (dy.min() < 0 or dx.min() < 0 or dy.max() > 2 * pad or dx.max() > 2 * pad):
        raise ValueError(f"crop offsets outside [0, {2 * pad}]")
    rows = dy[:, None] + np.arange(H)                         # (B, H)
    cols_fwd = np.arange(W)
    cols = dx[:, None] + np.where(flip[:, None], cols_fwd[::-1], cols_fwd)  # (B, W)
    b = np.arange(B)[:, None, None, None]
    c = np.arange(C)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def keras_seed_transform(X, rng, rotation_range=15.0, height_shift_range=5. / 32,
                         width_shift_range=5. / 32):
    """Random rotation and shift of every image, as Keras 1's ``ImageDataGenerator``.

    Per image (Keras 1.2's ``random_transform`` with these three options and
    its defaults otherwise: no shear, zoom, flip; ``fill_mode='nearest'``),
    drawn in this order: an angle ``theta`` uniform in
    ``[-rotation_range, rotation_range]`` degrees, a row shift ``tx`` uniform
    in ``[-height_shift_range, height_shift_range] * H`` pixels, a column
    shift ``ty`` likewise with ``W``. The output pixel ``o`` takes the input
    value at ``M @ o`` (nearest neighbour, ``scipy.ndimage.affine_transform``
    with ``order=0``; outside the image the nearest edge pixel), where
    ``M = C @ R(theta) @ T(tx, ty) @ C^-1`` and ``C`` moves the origin to
    Keras's centre ``(H/2 + 0.5, W/2 + 0.5)``.

    Parameters
    ----------
    X : numpy.ndarray
        Batch ``(B, C, H, W)`` (channels first, as the seed's 'th' ordering).
    rng : numpy.random.RandomState or numpy.random.Generator
    rotation_range : float
        Degrees (the seed's 15).
    height_shift_range, width_shift_range : float
        Fractions of the image size (the seed's 5/32: up to 5 pixels).

    Returns
    -------
    numpy.ndarray
        New array of ``X``'s shape and dtype.
    """
    from scipy import ndimage
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"keras_seed_transform needs images (B, C, H, W), got {X.shape}")
    B, C, H, W = X.shape
    o_x, o_y = H / 2 + 0.5, W / 2 + 0.5
    centre = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    uncentre = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    out = np.empty_like(X)
    for i in range(B):
        theta = np.pi / 180 * rng.uniform(-rotation_range, rotation_range) \
            if rotation_range else 0.0
        tx = rng.uniform(-height_shift_range, height_shift_range) * H \
            if height_shift_range else 0.0
        ty = rng.uniform(-width_shift_range, width_shift_range) * W \
            if width_shift_range else 0.0
        rotation = np.array([[np.cos(theta), -np.sin(theta), 0],
                             [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
        translation = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
        m = centre @ rotation @ translation @ uncentre
        # the channel axis maps to itself: one call per image
        matrix = np.eye(3)
        matrix[1:, 1:] = m[:2, :2]
        offset = np.array([0.0, m[0, 2], m[1, 2]])
        ndimage.affine_transform(X[i], matrix, offset, output=out[i], order=0, mode="nearest")
    return out


def augment_batch(X, rng, mode="batch", pad=4):
    """Apply a random pad-crop-flip to one batch.

    Parameters
    ----------
    X : numpy.ndarray
        Batch ``(B, C, H, W)``.
    rng : numpy.random.RandomState or numpy.random.Generator
        Source of randomness. Draw order: row offset, column offset, flip
        (one each in ``'batch'`` mode, ``B`` each in ``'image'`` mode).
    mode : {'batch', 'image', 'keras-seed'}
        ``'batch'``: one offset pair and one flip for the whole batch (the
        legacy behaviour); ``'image'``: independent per image (vectorised);
        ``'keras-seed'``: the RoR seed's rotation and shift per image
        (:func:`keras_seed_transform`; ``pad`` unused).
    pad : int
        Zero padding; offsets are uniform on ``0 .. 2 * pad`` inclusive.

    Returns
    -------
    numpy.ndarray
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if mode == "keras-seed":
        return keras_seed_transform(X, rng)
    size = None if mode == "batch" else X.shape[0]
    dy = _randint(rng, 2 * pad + 1, size)
    dx = _randint(rng, 2 * pad + 1, size)
    flip = _randint(rng, 2, size).astype(bool) if size is not None else bool(_randint(rng, 2))
    return crop_flip(X, dy, dx, flip, pad)


def iterate_minibatches(X, y, batch_size, shuffle=True, augment=True, mode="batch", rng=None,
                        pad=4, drop_last=False):
    """Yield ``(X_batch, y_batch)`` pairs for one epoch.

    Parameters
    ----------
    X : numpy.ndarray
        Images ``(N, C, H, W)`` (already preprocessed).
    y : numpy.ndarray or None
        Labels ``(N,)``; ``None`` yields ``None`` in their place.
    batch_size : int
        Images per batch (the legacy recipe used 64).
    shuffle : bool
        Visit the images in a random order (one permutation per call).
    augment : bool
        Apply the pad-crop-flip of :func:`augment_batch`.
    mode : {'batch', 'image', 'keras-seed'}
        ``'batch'`` (legacy): one random crop offset and one flip decision per
        batch, shared by all its images; ``'image'``: drawn per image;
        ``'keras-seed'``: the RoR seed's random rotation and shift per image.
    rng : None, int, numpy.random.RandomState or numpy.random.Generator
        Randomness; the same seed/state gives the same batches. The
        permutation is drawn first, then each batch's augmentation in turn.
    pad : int
        Zero padding of the crop (4 in the seed).
    drop_last : bool
        Drop the final partial batch. Default False: like the seed, the last
        batch may be smaller than ``batch_size``.

    Yields
    ------
    (numpy.ndarray, numpy.ndarray)
        The input is never modified; without shuffling and augmentation the
        batches are views of ``X`` and ``y``.
    """
    X = np.asarray(X)
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"{X.shape[0]} images but {y.shape[0]} labels")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if augment and X.ndim != 4:
        raise ValueError(f"augmentation needs images (N, C, H, W), got shape {X.shape}")
    batch_size = int(batch_size)
    n = X.shape[0]
    need_rng = shuffle or augment
    gen = _make_rng(rng) if need_rng else None
    order = gen.permutation(n) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        sl = slice(start, min(start + batch_size, n))
        idx = order[sl] if order is not None else sl
        xb = X[idx]
        yb = None if y is None else y[idx]
        if augment:
            xb = augment_batch(xb, gen, mode, pad)
        yield xb, yb
