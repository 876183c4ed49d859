"""Fetching the official CIFAR-10 python archive.

:func:`download_cifar10` downloads ``cifar-10-python.tar.gz`` with
:mod:`urllib` (``file://`` URLs work too), checks its MD5, and unpacks
``cifar-10-batches-py/`` under ``data_dir`` -- the layout the seed expected
in ``data/``. Every step writes to a temporary name first and renames at the
end, so an interrupted run never leaves a half-written archive or folder
under the final name.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request

from ..errors import DataError
from .cifar import PY_DIR, TEST_BATCH, TRAIN_BATCHES

__all__ = ["download_cifar10", "OFFICIAL_URL", "OFFICIAL_MD5", "ARCHIVE_NAME", "md5sum"]

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
_CHUNK = 1 << 20


def md5sum(path, chunk=_CHUNK):
    """Hex MD5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _complete(folder):
    return all(os.path.isfile(os.path.join(folder, b)) for b in TRAIN_BATCHES + (TEST_BATCH,))


def _fetch(url, dest, progress):
    """Stream ``url`` into the already-created file ``dest``; return its MD5."""
    h = hashlib.md5()
    try:
        resp = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(f"{url}: download failed ({reason})") from None
    with resp:
        total = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        total = int(total) if total and str(total).isdigit() else None
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=os.path.basename(url) or "download", leave=False)
            except ImportError:  # pragma: no cover
                bar = None
        try:
            with open(dest, "wb") as out:
                while True:
                    try:
                        block = resp.read(_CHUNK)
                    except OSError as exc:
                        raise DataError(f"{url}: download interrupted ({exc})") from None
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    if bar is not None:
                        bar.update(len(block))
                out.flush()
                os.fsync(out.fileno())
        finally:
            if bar is not None:
                bar.close()
    return h.hexdigest()


def _extract(archive, dest):
    try:
        with tarfile.open(archive, "r:*") as tf:
            # tarfile's "data" filter refuses absolute paths, traversal, links
            # leaving the folder and special files (PEP 706)
            tf.extractall(dest, filter="data")
    except tarfile.FilterError as exc:
        raise DataError(f"{archive}: unsafe member in archive, refusing to extract ({exc})"
                        ) from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{archive}: cannot extract archive ({type(exc).__name__}: {exc})"
                        ) from None


def download_cifar10(data_dir="data", url=OFFICIAL_URL, md5=OFFICIAL_MD5, progress=True,
                     force=False, keep_archive=True):
    """Download and unpack the CIFAR-10 python archive under ``data_dir``.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Destination; ``data_dir/cifar-10-batches-py/`` is created.
    url : str
        Archive location (``https://``, ``http://`` or ``file://``).
    md5 : str or None
        Expected hex MD5 of the archive; ``None`` skips the check (not
        recommended). The official archive's is :data:`OFFICIAL_MD5`.
    progress : bool
        Show a tqdm progress bar.
    force : bool
        Download and unpack again even if the folder is complete.
    keep_archive : bool
        Keep the verified archive as ``data_dir/cifar-10-python.tar.gz``
        (a later call reuses it instead of downloading again).

    Returns
    -------
    str
        Path of ``cifar-10-batches-py/``.

    Raises
    ------
    DataError
        Download failure, MD5 mismatch, an archive with unsafe paths or
        links, or an archive without the expected batches.
    """
    data_dir = os.path.abspath(os.fspath(data_dir))
    target = os.path.join(data_dir, PY_DIR)
    if not force and _complete(target):
        return target
    os.makedirs(data_dir, exist_ok=True)
    archive = os.path.join(data_dir, ARCHIVE_NAME)
    md5 = md5.lower() if md5 else None

    tmp_archive = None
    if force or not (os.path.isfile(archive) and (md5 is None or md5sum(archive) == md5)):
        fd, tmp_archive = tempfile.mkstemp(prefix="." + ARCHIVE_NAME + ".", suffix=".part",
                                           dir=data_dir)
        os.close(fd)
        try:
            got = _fetch(url, tmp_archive, progress)
            if md5 is not None and got != md5:
                raise DataError(f"{url}: MD5 mismatch (expected {md5}, got {got}); "
                                f"the download is corrupt or not the CIFAR-10 archive")
        except BaseException:
            os.unlink(tmp_archive)
            raise
        src = tmp_archive
    else:
        src = archive

    staging = tempfile.mkdtemp(prefix=".cifar-10-extract.", dir=data_dir)
    try:
        _extract(src, staging)
        found = os.path.join(staging, PY_DIR)
        if not _complete(found):
            raise DataError(f"{url}: archive lacks {PY_DIR}/ with data_batch_1..5 and "
                            f"test_batch (not the CIFAR-10 python archive)")
        if os.path.exists(target):  # incomplete or forced: move the old one away first
            old = tempfile.mkdtemp(prefix=".cifar-10-old.", dir=data_dir)
            os.replace(target, os.path.join(old, PY_DIR))
            shutil.rmtree(old, ignore_errors=True)
        os.replace(found, target)
        if tmp_archive is not None:
            if keep_archive:
                os.replace(tmp_archive, archive)
            else:
                os.unlink(tmp_archive)
            tmp_archive = None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if tmp_archive is not None and os.path.exists(tmp_archive):
            os.unlink(tmp_archive)
    return target
