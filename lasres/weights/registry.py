"""The published Lasagne-era weight files lasres knows, by name and by content.

Each :class:`WeightEntry` records a file's name, size and checksum, the
architecture it belongs to (``lasres.models.build(type, depth, width,
**options)``), the preprocessing its trainer used (a
:class:`lasres.data.preprocessing.Preprocess`), the error its authors published
and where, its source and licence, and the error lasres measured with it on
the shared CIFAR-10 copies (quality-75 JPEGs: every published net loses
points there, see ``docs/RESULTS.md``).

Checksums: the SHA-256 of the file where it is known. The Lasagne seed's and
the RoR seed's files are published inside git repositories whose stored
copies lack them (too large), so only their **git blob SHA-1** is known (the
SHA-1 of ``b"blob <size>\\0" + content``, what ``git hash-object FILE``
prints): it identifies the whole content as well; :func:`identify` and
:func:`fetch` check whichever is recorded. No checksum here is guessed.

:func:`identify` recognises a file by content, :func:`fetch` downloads one
and checks it, :func:`entries` / :func:`get` list and look up.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Optional

from ..data.download import _fetch
from ..data.preprocessing import Preprocess
from ..errors import DataError, WeightFileError

__all__ = ["WeightEntry", "entries", "get", "identify", "fetch", "sha256_file",
           "git_blob_sha1_file", "check_file", "check_arch", "named_like", "ENTRIES", "SHARED_DATA"]

_CHUNK = 1 << 20
#: Largest file hashed to compare with an entry of unknown size (the seeds'
#: files take tens of MB; a larger file is not one of them and is not read).
MAX_UNSIZED_BYTES = 256 << 20
#: Where the shared-data figures were measured (see docs/RESULTS.md).
SHARED_DATA = ("the shared CIFAR-10 copies (../shared/data/cifar10-jpeg.tar.gz: quality-75 JPEGs "
               "of the 10,000 test images)")


@dataclass(frozen=True)
class WeightEntry:
    """One published weight file.

    Attributes
    ----------
    name : str
        Registry name (``lasres.weights.fetch(name, ...)``).
    file_name : str
        The file's published name.
    arch : dict
        ``type``, ``depth``, ``width`` and ``options`` (a dict) for
        :func:`lasres.models.build`.
    preprocess : Preprocess
    size : int or None
        Bytes, where known.
    sha256 : str or None
        Full SHA-256 (hex), where known.
    git_blob_sha1 : str or None
        The git blob SHA-1 of the file in its source repository, where known.
    published_error : float or None
        CIFAR-10 test error in percent, as published.
    published_where : str
    source_url : str or None
        Where :func:`fetch` downloads it.
    licence : str
    measured_error : float or None
        Test error (percent) lasres measured on :data:`SHARED_DATA`, None if
        not measured.
    measured_note : str
    """

    name: str
    file_name: str
    arch: dict
    preprocess: Preprocess
    size: Optional[int] = None
    sha256: Optional[str] = None
    git_blob_sha1: Optional[str] = None
    published_error: Optional[float] = None
    published_where: str = ""
    source_url: Optional[str] = None
    licence: str = ""
    measured_error: Optional[float] = None
    measured_note: str = ""
    title: str = field(default="", compare=False)

    @property
    def args(self) -> str:
        """The ``test_model.py`` arguments, e.g. ``'ror-wrn 6 2 --option layout=keras'``."""
        a = self.arch
        text = f"{a['type']} {a['depth']}" + (f" {a['width']}" if a.get("width", 1) != 1
                                               else "")
        for k, v in (a.get("options") or {}).items():
            text += f" --option {k}={v}"
        return text

    @property
    def checksum(self) -> str:
        """The checksum recorded, as text (``sha256:...`` or ``git-blob-sha1:...``)."""
        if self.sha256:
            return f"sha256:{self.sha256}"
        if self.git_blob_sha1:
            return f"git-blob-sha1:{self.git_blob_sha1}"
        return "none known"

    def matches_arch(self, type: str, depth: int, width: int, options: Optional[dict] = None
                     ) -> bool:
        """Whether ``type depth width`` with exactly ``options`` builds this
        entry's network."""
        a = self.arch
        return ((type, depth, width) == (a["type"], a["depth"], a.get("width", 1))
                and dict(options or {}) == dict(a.get("options") or {}))

    def summary(self) -> str:
        """One line for listings."""
        pub = "?" if self.published_error is None else f"{self.published_error:.2f}%"
        meas = "not measured" if self.measured_error is None else f"{self.measured_error:.2f}%"
        return (f"{self.name:24s} {self.args:36s} published {pub:7s} shared JPEG data {meas:13s}"
                f" {self.preprocess.spec}")


_LASAGNE_SEED = "https://github.com/FlorianMuellerklein/Identity-Mapping-ResNet-Lasagne"
_LASAGNE_SEED_RAW = f"{_LASAGNE_SEED}/raw/51bc6b32d324cde2c23e4d2508c69d8f9fb95b86/data/weights/"
_RECIPES_RAW = ("https://github.com/Lasagne/Recipes/raw/7b4516e722aab6055841d02168eba049a11fe6da/"
                "papers/deep_residual_learning/")
_ROR_RAW = ("https://github.com/titu1994/Residual-of-Residual-Networks/raw/"
            "e05384a356778a0173050daa3e7786e50eb994de/weights/")
_LEGACY = Preprocess(1.0, "pixel-split")



def _lasagne_seed(name, file_name, arch, git_blob_sha1, published_error, paper, title):
    """A file of the Lasagne seed's repository: the legacy preprocessing, its
    README's error, no licence, and a mean that was never published."""
    return WeightEntry(
        name, file_name, arch, _LEGACY, git_blob_sha1=git_blob_sha1,
        published_error=published_error,
        published_where=f"{_LASAGNE_SEED} README (paper: {paper})",
        source_url=_LASAGNE_SEED_RAW + file_name, licence="none stated by the repository",
        measured_note="the mean of its (unseeded) training split is not published: keep the "
                      "seed's pixel_mean.npy beside it",
        title=title)


def _recipes(name, file_name, depth, size, sha256, git_blob_sha1, published_error,
             measured_error, measured_note, title):
    """A file of Lasagne/Recipes' CIFAR ResNet: ``x / 255`` minus the mean of
    all training images, the error its script's docstring gives, MIT."""
    return WeightEntry(
        name, file_name,
        {"type": "resnet", "depth": depth, "width": 1, "options": {"shortcut": "subsample"}},
        Preprocess(1 / 255, "pixel-all"), size=size, sha256=sha256,
        git_blob_sha1=git_blob_sha1, published_error=published_error,
        published_where="Lasagne/Recipes papers/deep_residual_learning/"
                        "Deep_Residual_Learning_CIFAR-10.py docstring (validation error)",
        source_url=_RECIPES_RAW + file_name, licence="MIT (Lasagne/Recipes)",
        measured_error=measured_error, measured_note=measured_note, title=title)


#: Every registered file, in listing order.
ENTRIES = (
    _lasagne_seed("resnet110-preact-lasagne", "resnet110_fullpreactivation_638.pklz",
                  {"type": "normal", "depth": 18, "width": 1, "options": {}},
                  "1b4bd110dcb08f10c5c829de8131af528d95cc16", 6.38, "6.37%",
                  "pre-activation ResNet-110, the Lasagne seed"),
    _lasagne_seed("resnet164-preact-lasagne", "resnet164_fullpreactivation.pklz",
                  {"type": "bottleneck", "depth": 18, "width": 1, "options": {}},
                  "ffdb6dfe790e5a43994a153237bcb30920b17bca", 5.66, "5.46%",
                  "pre-activation bottleneck ResNet-164, the Lasagne seed"),
    _lasagne_seed("wrn-16-4-lasagne", "wide_resnet_n2_k4.pklz",
                  {"type": "wide", "depth": 2, "width": 4, "options": {}},
                  "686cff23589484afee151f9bf161d5fae17f6d77", 5.41, "5.55% for WRN-16-4",
                  "the Lasagne seed's wide ResNet (n=2, k=4)"),
    WeightEntry(
        "ror-wrn-40-2-keras", "RoR-WRN-40-2-Weights.h5",
        {"type": "ror-wrn", "depth": 6, "width": 2, "options": {"layout": "keras"}},
        Preprocess(1 / 255, "none"),
        git_blob_sha1="e7992b0a100415935301972d781a1a936d49e0ed",
        published_error=5.52,
        published_where="https://github.com/titu1994/Residual-of-Residual-Networks README "
                        "(100 epochs of Adam; paper 5.01% after 500)",
        source_url=_ROR_RAW + "RoR-WRN-40-2-Weights.h5",
        licence="none stated by the repository",
        title="RoR-3-WRN-40-2, the RoR seed (Keras 1 on Theano)"),
    _recipes("resnet32-recipes", "cifar_model_n5.npz", 5, 1_893_452,
             "536662d9c2da893534f82f388ec7c56e80676dbab2fb3a14d840f5c90dbda27a",
             "d89afbaeda091c685b5c59ed093317e205f82751", 7.42, 20.30,
             "10,000 shared JPEG test images; the real Lasagne 0.2.dev1 gives the same "
             "20.30% (../shared/fixtures/recipes/)",
             "original CIFAR ResNet-32, the Lasagne Recipes"),
    _recipes("resnet56-recipes", "cifar_model_n9.npz", 9, 3_477_436,
             "fb32bb0419332b8cb32a871bfd4141c898642be045995261854bc120b4173845",
             "bb7cbb072a8743a9f7716e01b6f815c3fcb636dc", 6.75, 18.21,
             "10,000 shared JPEG test images, lasres only (no real-Lasagne reference "
             "for this file; its ResNet-32 twin matches the real Lasagne exactly)",
             "original CIFAR ResNet-56, the Lasagne Recipes"),
)


def entries() -> tuple:
    """Every :class:`WeightEntry`, in listing order."""
    return ENTRIES


def get(name: str) -> WeightEntry:
    """The entry of a registry name (a file name is accepted too).

    Raises
    ------
    WeightFileError
        Unknown name (the message lists the known ones).
    """
    for e in ENTRIES:
        if name in (e.name, e.file_name):
            return e
    raise WeightFileError(f"no registered weight file {str(name)[:60]!r}: choose one of "
                          f"{', '.join(e.name for e in ENTRIES)}")


def _hash_file(path, h, prefix=b""):
    h.update(prefix)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path) -> str:
    """Hex SHA-256 of a file."""
    return _hash_file(path, hashlib.sha256())


def git_blob_sha1_file(path) -> str:
    """Hex git blob SHA-1 of a file (``git hash-object``)."""
    size = os.path.getsize(path)
    return _hash_file(path, hashlib.sha1(), b"blob %d\0" % size)


def _matches(entry: WeightEntry, path, size: int) -> bool:
    if entry.size is not None and entry.size != size:
        return False
    if entry.sha256:
        return sha256_file(path) == entry.sha256
    if entry.git_blob_sha1:
        return git_blob_sha1_file(path) == entry.git_blob_sha1
    return False


def identify(path) -> Optional[WeightEntry]:
    """The registered entry whose content ``path`` holds, or None.

    A file is hashed (one read) only when it has the size of an entry whose
    size is known, or the extension of an entry whose size is not (the
    seeds' ``.pklz`` and ``.h5``, up to :data:`MAX_UNSIZED_BYTES`: their git
    blob SHA-1 is then computed), so loading other weight files costs nothing.
    """
    path = os.fspath(path)
    try:
        if not os.path.isfile(path):
            return None
        size = os.path.getsize(path)
        ext = os.path.splitext(path)[1].lower()
        sha256 = blob = None
        for e in ENTRIES:
            if e.size is not None and e.size != size:
                continue
            if e.size is None and (os.path.splitext(e.file_name)[1].lower() != ext
                                   or size > MAX_UNSIZED_BYTES):
                continue
            if e.sha256:
                sha256 = sha256 or sha256_file(path)
                if sha256 == e.sha256:
                    return e
            elif e.git_blob_sha1:
                blob = blob or git_blob_sha1_file(path)
                if blob == e.git_blob_sha1:
                    return e
    except OSError:
        return None
    return None


def check_file(entry: WeightEntry, path, shown=None) -> None:
    """Raise :class:`WeightFileError` unless ``path`` holds ``entry``'s content
    (one line naming the expected checksum; the file is called ``shown``
    there when given)."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    where = shown or path
    if entry.size is not None and size != entry.size:
        raise WeightFileError(f"{where}: {size:,} bytes, not the {entry.size:,} of "
                              f"{entry.file_name} ({entry.name}; expected {entry.checksum}): "
                              f"damaged or another file")
    if not entry.sha256 and not entry.git_blob_sha1:
        raise WeightFileError(f"{entry.name}: no checksum is known for {entry.file_name}: "
                              f"cannot verify {where}")
    if not _matches(entry, path, size):
        got = sha256_file(path) if entry.sha256 else git_blob_sha1_file(path)
        raise WeightFileError(f"{where}: checksum mismatch for {entry.name}: expected "
                              f"{entry.checksum}, got {got} (damaged or another file)")


def fetch(name: str, cache_dir, url: Optional[str] = None, progress: bool = False) -> str:
    """The path of registered file ``name`` in ``cache_dir``, downloaded there
    first unless a verified copy is there already.

    Parameters
    ----------
    name : str
        A registry name (or the file name).
    cache_dir : str or os.PathLike
        Folder holding the file (created if needed).
    url : str, optional
        Another source than the entry's (``file://`` works: a mirror or a test).

    Returns
    -------
    str
        ``cache_dir/<file name>``, checked against the registered checksum.

    Raises
    ------
    WeightFileError
        Unknown name; no source; download failed (one line saying where to
        put the file by hand); the content does not match (the expected
        checksum named; nothing is left under the final name).
    """
    entry = get(name)
    cache_dir = os.fspath(cache_dir)
    dest = os.path.join(cache_dir, entry.file_name)
    if os.path.isfile(dest):
        check_file(entry, dest)
        return dest
    src = url or entry.source_url
    if not src:
        raise WeightFileError(f"{entry.name}: no download source known: put {entry.file_name} "
                              f"({entry.checksum}) in {cache_dir}")
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{entry.file_name}.", dir=cache_dir)
    os.close(fd)
    try:
        limit = (entry.size or (1 << 30)) + 1
        try:
            _fetch(src, tmp, progress, max_bytes=limit)
        except DataError as exc:
            raise WeightFileError(f"{entry.name}: cannot download {src} "
                                  f"({str(exc).split('(', 1)[-1].rstrip(')')[:120]}): offline? "
                                  f"put {entry.file_name} ({entry.checksum}) in {cache_dir}"
                                  ) from None
        check_file(entry, tmp, shown=src)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _arch_parts(arch: dict):
    """``(type, depth, width, options)`` of an ``arch`` dict, the registry's
    form (``options`` nested) or the checkpoints' (options flattened)."""
    arch = dict(arch)
    options = dict(arch.pop("options", None) or {})
    arch.pop("dataset", None)
    arch.pop("preprocess", None)
    t, d, w = arch.pop("type", None), arch.pop("depth", None), arch.pop("width", 1)
    options.update(arch)
    return t, d, w, options


def check_arch(path, arch: dict) -> Optional[WeightEntry]:
    """The registered entry of ``path`` (or None), after refusing it for
    another architecture than ``arch`` (``{'type', 'depth', 'width',
    'options'}``, or options flattened as in checkpoints).

    Raises
    ------
    WeightFileError
        One line naming the architecture the file belongs to.
    """
    entry = identify(path)
    if entry is not None:
        t, d, w, options = _arch_parts(arch)
        if not entry.matches_arch(t, d, w, options):
            shown = f"{t} {d}" + (f" {w}" if w != 1 else "") + "".join(
                f" --option {k}={v}" for k, v in options.items())
            raise WeightFileError(f"{os.fspath(path)} is the registered {entry.name} "
                                  f"({entry.title}): its network is '{entry.args}', not "
                                  f"'{shown}'")
    return entry


def named_like(path) -> Optional[WeightEntry]:
    """The entry whose published file name ``path`` has (content not checked), or None."""
    base = os.path.basename(os.fspath(path))
    return next((e for e in ENTRIES if e.file_name == base), None)
