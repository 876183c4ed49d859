#!/usr/bin/env python
"""Turn OpenCV's sample ``digits.png`` into the four MNIST IDX files.

``digits.png`` (OpenCV's ``samples/data``; Debian ships it in ``opencv-doc``
as ``/usr/share/doc/opencv-doc/examples/data/digits.png``) is a 2000 x 1000
grey mosaic of 5,000 real handwritten digits, 20 x 20 pixels each, in 50 rows
of 100: rows 0-4 are the digit 0, rows 5-9 the digit 1, and so on. It is the
only handwritten-digit image set on a machine without MNIST, so it stands in
for MNIST in the RiR comparison (``compare.py ... --dataset mnist``).

Each 20 x 20 digit is centred in a 28 x 28 frame by 4 pixels of zero padding
on every side (MNIST's digits are likewise size-normalised to a 20 x 20 box
inside a 28 x 28 image). The split is OpenCV's tutorial's: the left 50
columns (2,500 digits, 250 per class) train, the right 50 test. Written
gzip'd, in class order as they stand in the mosaic (the trainer shuffles)::

    python benchmarks/opencv_digits_to_idx.py /usr/share/doc/opencv-doc/examples/data/digits.png data/opencv-digits

Needs Pillow to read the PNG.
"""
import argparse
import gzip
import os
import struct
import sys

import numpy as np

CELL, ROWS, COLS, PAD = 20, 50, 100, 4
TRAIN_COLS = 50
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def split_mosaic(img):
    """``(images, labels)`` for train and test from the 1000 x 2000 uint8 mosaic:
    images ``(N, 28, 28)`` uint8, labels ``(N,)`` uint8."""
    if img.shape != (ROWS * CELL, COLS * CELL):
        raise ValueError(f"digits.png should be {COLS * CELL} x {ROWS * CELL} pixels, "
                         f"got {img.shape[1]} x {img.shape[0]}")
    cells = img.reshape(ROWS, CELL, COLS, CELL).transpose(0, 2, 1, 3)  # row, col, y, x
    cells = np.pad(cells, ((0, 0), (0, 0), (PAD, PAD), (PAD, PAD)))
    labels = np.repeat(np.arange(10, dtype=np.uint8), ROWS // 10)[:, None].repeat(COLS, 1)
    out = []
    for cols in (slice(0, TRAIN_COLS), slice(TRAIN_COLS, COLS)):
        out.append((np.ascontiguousarray(cells[:, cols].reshape(-1, 28, 28)),
                    labels[:, cols].reshape(-1)))
    return out


def idx_bytes(arr):
    """An unsigned-byte IDX file's bytes for ``arr``."""
    head = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def write_idx_dataset(img, out_dir):
    """Write the four gzip'd IDX files of ``img``'s split into ``out_dir``;
    returns the paths. Each file is written beside its name and renamed."""
    os.makedirs(out_dir, exist_ok=True)
    (xtr, ytr), (xte, yte) = split_mosaic(img)
    paths = []
    for name, arr in zip(FILES, (xtr, ytr, xte, yte)):
        path = os.path.join(out_dir, name + ".gz")
        with gzip.open(path + ".part", "wb") as f:
            f.write(idx_bytes(arr))
        os.replace(path + ".part", path)
        paths.append(path)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("png", help="OpenCV's digits.png")
    p.add_argument("out", help="folder for the four IDX files")
    a = p.parse_args(argv)
    try:
        from PIL import Image
    except ImportError:
        sys.exit("error: reading digits.png needs Pillow (pip install pillow)")
    try:
        img = np.asarray(Image.open(a.png).convert("L"))
        paths = write_idx_dataset(img, a.out)
    except (OSError, ValueError) as exc:
        sys.exit(f"error: {a.png}: {exc}")
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
