"""Real-data fixtures shared by the test modules: a rebuilt CIFAR-10 subset.

``cifar10_subset(limit_train, limit_test)`` runs
``<repo>/../shared/tools/make_cifar10.py OUTDIR --limit-train N --limit-test M``
once per process for each size and returns ``OUTDIR`` (holding both
``cifar-10-batches-py/`` and ``cifar-10-batches-bin/``). With
``$LASRES_TEST_DATA`` set, subsets are cached there across sessions
(``cifar10_<N>_<M>/``, marked complete by a ``.complete`` file and built
under a temporary name, then renamed); otherwise under a temporary folder
removed at exit.

The shared folder is required: if it is missing the helper raises, so tests
that use it fail instead of being skipped.

Use from a test module::

    from _datasets import cifar10_subset

    @pytest.fixture(scope="session")
    def cifar_small():
        return cifar10_subset(500, 100)
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MAKE_CIFAR10 = SHARED / "tools" / "make_cifar10.py"
CIFAR10_TAR = SHARED / "data" / "cifar10-jpeg.tar.gz"
LEGACY_FIXTURES = SHARED / "fixtures" / "legacy"

_cache: dict[tuple[int, int], Path] = {}
_lock = threading.Lock()
_tmp_root: Path | None = None


def shared_dir() -> Path:
    """Return ``<repo>/../shared``, raising if it (or what tests need) is missing."""
    for need in (SHARED, MAKE_CIFAR10, CIFAR10_TAR):
        if not need.exists():
            raise RuntimeError(
                f"{need} not found: the tests need the shared folder at {SHARED} "
                f"(tools/make_cifar10.py, data/cifar10-jpeg.tar.gz, fixtures/legacy/)")
    return SHARED


def legacy_fixtures_dir() -> Path:
    """Return ``<repo>/../shared/fixtures/legacy``, raising if it is missing."""
    if not LEGACY_FIXTURES.is_dir():
        raise RuntimeError(f"{LEGACY_FIXTURES} not found: the tests need the legacy fixtures "
                           f"of the shared folder")
    return LEGACY_FIXTURES


def _root() -> Path:
    global _tmp_root
    env = os.environ.get("LASRES_TEST_DATA")
    if env:
        root = Path(env).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root
    if _tmp_root is None:
        _tmp_root = Path(tempfile.mkdtemp(prefix="lasres-test-data-"))
        atexit.register(shutil.rmtree, _tmp_root, True)
    return _tmp_root


def _build(outdir: Path, limit_train: int, limit_test: int) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        cmd = [sys.executable, str(MAKE_CIFAR10), str(staging),
               "--limit-train", str(limit_train), "--limit-test", str(limit_test)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"make_cifar10.py failed (exit {res.returncode}): "
                               f"{(res.stderr or res.stdout).strip()[-2000:]}")
        (staging / ".complete").write_text(f"{limit_train} {limit_test}\n")
        try:
            os.replace(staging, outdir)
        except OSError:
            # another process finished first; use its copy
            if not (outdir / ".complete").exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def cifar10_subset(limit_train: int = 5000, limit_test: int = 1000) -> Path:
    """Build (once) and return a balanced CIFAR-10 subset in both official layouts.

    Parameters
    ----------
    limit_train, limit_test : int
        Subset sizes, multiples of 10 (``limit // 10`` images per class).

    Returns
    -------
    pathlib.Path
        Folder with ``cifar-10-batches-py/`` and ``cifar-10-batches-bin/``.

    Raises
    ------
    RuntimeError
        If the shared folder is missing or the build fails.
    """
    key = (int(limit_train), int(limit_test))
    with _lock:
        if key in _cache and (_cache[key] / ".complete").exists():
            return _cache[key]
        shared_dir()
        outdir = _root() / f"cifar10_{key[0]}_{key[1]}"
        if not (outdir / ".complete").exists():
            if outdir.exists():  # stale, incomplete build
                shutil.rmtree(outdir)
            _build(outdir, *key)
        _cache[key] = outdir
        return outdir


def idx_bytes(arr, magic_type: int = 0x08) -> bytes:
    """``arr`` as an IDX file (MNIST's format): the magic number (two zero
    bytes, the element type, the number of dimensions), the big-endian
    sizes, then the bytes (unsigned 8-bit by default)."""
    import struct

    import numpy as np
    head = bytes([0, 0, magic_type, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.asarray(arr).astype(np.uint8).tobytes()


def write_mnist(folder, n_train: int = 12, n_test: int = 5, compress: bool = True, rng=None):
    """Write random MNIST-layout IDX files (gzipped unless ``compress`` is
    False) of ``n_train`` training and ``n_test`` test images into
    ``folder``; returns ``{'train': (X, y), 't10k': (X, y)}``."""
    import gzip

    import numpy as np
    rng = rng or np.random.RandomState(0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        X = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        y = rng.randint(0, 10, size=n).astype(np.uint8)
        for kind, arr, nd in (("images", X, 3), ("labels", y, 1)):
            name = f"{split}-{kind}-idx{nd}-ubyte"
            raw = idx_bytes(arr)
            if compress:
                (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
            else:
                (folder / name).write_bytes(raw)
        data[split] = (X, y)
    return data
