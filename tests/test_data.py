"""Tests of lasres.data on a small real CIFAR-10 subset rebuilt by make_cifar10.py."""
import gzip
import hashlib
import io
import os
import pickle
import shutil
import tarfile
import warnings

import numpy as np
import pytest

from _datasets import cifar10_subset, idx_bytes, write_mnist
from lasres.data import (CIFAR10_CLASSES, FASHION_MNIST_CLASSES, compute_pixel_mean, crop_flip,
                         download_cifar10, find_cifar10, iterate_minibatches, legacy_split,
                         load_cifar10, load_cifar100, load_fashion_mnist, load_mnist,
                         load_pixel_mean, prepare_cifar10, prepare_dataset, preprocess,
                         save_pixel_mean)
from lasres.errors import DataError, LasresError

N_TRAIN, N_TEST = 500, 100


@pytest.fixture(scope="session")
def cifar_dir():
    return cifar10_subset(N_TRAIN, N_TEST)


@pytest.fixture(scope="session")
def cifar(cifar_dir):
    return load_cifar10(cifar_dir)


# --- loading -------------------------------------------------------------------
def test_both_layouts_identical(cifar_dir, cifar):
    py = load_cifar10(cifar_dir, layout="py")
    binary = load_cifar10(cifar_dir, layout="bin")
    for a, b in zip(py, binary):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert py.label_names == binary.label_names == CIFAR10_CLASSES
    assert cifar.source.endswith("cifar-10-batches-py")  # auto prefers python
    # the layout folders themselves are accepted too
    for sub in ("cifar-10-batches-py", "cifar-10-batches-bin"):
        again = load_cifar10(cifar_dir / sub)
        np.testing.assert_array_equal(again.X_test, py.X_test)


def test_shapes_dtypes_and_balance(cifar):
    X_train, y_train, X_test, y_test = cifar
    assert X_train.shape == (N_TRAIN, 3, 32, 32) and X_train.dtype == np.uint8
    assert X_test.shape == (N_TEST, 3, 32, 32) and X_test.dtype == np.uint8
    assert y_train.dtype == np.int32 and y_test.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), [N_TRAIN // 10] * 10)
    np.testing.assert_array_equal(np.bincount(y_test, minlength=10), [N_TEST // 10] * 10)
    # real photographs: full dynamic range, not constant, channels differ
    assert X_train.min() == 0 and X_train.max() == 255
    assert 80 < X_train.mean() < 170
    assert not np.array_equal(X_train[:, 0], X_train[:, 2])


def test_channel_major_layout(cifar_dir, cifar):
    """Rows of the batch files are 1024 R, 1024 G, 1024 B bytes, row-major."""
    rec = np.fromfile(cifar_dir / "cifar-10-batches-bin" / "test_batch.bin", dtype=np.uint8)
    first = rec[:3073]
    assert first[0] == cifar.y_test[0]
    np.testing.assert_array_equal(cifar.X_test[0, 1, 0, :], first[1 + 1024:1 + 1024 + 32])
    np.testing.assert_array_equal(cifar.X_test[0, 2, 31, 31], first[3072])


# --- legacy split and mean ------------------------------------------------------
def test_legacy_split(cifar):
    X, y = cifar.X_train, cifar.y_train
    Xtr, ytr, Xva, yva = legacy_split(X, y, 0.1, seed=0)
    assert len(Xtr) == 450 and len(Xva) == 50 and len(ytr) == 450 and len(yva) == 50
    # a permutation: every image exactly once, labels travel with their images
    key = lambda A: {a.tobytes() for a in A}
    assert key(Xtr) | key(Xva) == key(X) and not key(Xtr) & key(Xva)
    lookup = {x.tobytes(): lab for x, lab in zip(X, y)}
    assert all(lookup[x.tobytes()] == lab for x, lab in zip(Xva, yva))
    # reproducible with a seed, different with another
    again = legacy_split(X, y, 0.1, seed=0)
    np.testing.assert_array_equal(again[2], Xva)
    assert not np.array_equal(legacy_split(X, y, 0.1, seed=1)[3], yva)
    # sklearn's rounding: ceil(0.1 * n) held out
    assert len(legacy_split(X[:99], y[:99], 0.1, seed=0)[2]) == 10
    assert len(legacy_split(X, y, 0.0, seed=0)[2]) == 0
    with pytest.raises(DataError):
        legacy_split(X, y, 1.0)
    with pytest.raises(DataError):
        legacy_split(X, y[:10])


def test_pixel_mean_and_preprocess(cifar):
    X = cifar.X_train
    mean = compute_pixel_mean(X)
    assert mean.shape == (3, 32, 32) and mean.dtype == np.float32
    np.testing.assert_allclose(mean, X.astype(np.float64).mean(axis=0), rtol=0, atol=1e-4)
    np.testing.assert_allclose(compute_pixel_mean(X.reshape(len(X), -1), chunk=7), mean,
                               atol=1e-4)
    P = preprocess(X, mean)
    assert P.dtype == np.float32 and P.shape == X.shape
    # no 1/255 scaling: values are pixel units minus the mean
    np.testing.assert_array_equal(P, X.astype(np.float32) - mean)
    assert P.max() > 100 and P.min() < -100
    np.testing.assert_allclose(P.mean(axis=0), 0, atol=1e-3)
    # flat rows (N, 3072) as stored in the batches give the same result
    np.testing.assert_array_equal(preprocess(X.reshape(len(X), -1), mean), P)
    assert X.dtype == np.uint8  # input untouched
    with pytest.raises(DataError, match="pixel mean"):
        preprocess(X, mean[:, :16])


def test_pixel_mean_file(tmp_path, cifar):
    mean = compute_pixel_mean(cifar.X_train)
    p = tmp_path / "pixel_mean.npy"
    save_pixel_mean(p, mean)
    np.testing.assert_array_equal(load_pixel_mean(p), mean)
    assert os.listdir(tmp_path) == ["pixel_mean.npy"]
    np.save(tmp_path / "bad.npy", np.zeros(5))
    with pytest.raises(DataError, match="bad.npy"):
        load_pixel_mean(tmp_path / "bad.npy")
    with pytest.raises(DataError, match="not found"):
        load_pixel_mean(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(DataError):
        load_pixel_mean(tmp_path / "junk.npy")


def test_prepare_cifar10(tmp_path, cifar_dir, cifar):
    pm = tmp_path / "pixel_mean.npy"
    with pytest.warns(UserWarning, match="computed"):
        d = prepare_cifar10(cifar_dir, pixel_mean_path=pm, seed=3)
    assert pm.exists() and d.pixel_mean_computed
    assert d.X_train.shape == (450, 3, 32, 32) and d.X_valid.shape == (50, 3, 32, 32)
    assert d.X_test.shape == (N_TEST, 3, 32, 32) and d.X_train.dtype == np.float32
    Xtr, ytr, Xva, yva = legacy_split(cifar.X_train, cifar.y_train, 0.1, seed=3)
    np.testing.assert_array_equal(d.pixel_mean, compute_pixel_mean(Xtr))
    np.testing.assert_array_equal(d.X_valid, preprocess(Xva, d.pixel_mean))
    np.testing.assert_array_equal(d.y_valid, yva)
    np.testing.assert_array_equal(d.X_test, preprocess(cifar.X_test, d.pixel_mean))
    assert d.label_names == CIFAR10_CLASSES
    # second run reads the saved mean back (as test_model.py did), silently,
    # even with another split
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d2 = prepare_cifar10(cifar_dir, pixel_mean_path=pm, seed=4, limit=(100, 20))
    assert not d2.pixel_mean_computed
    np.testing.assert_array_equal(d2.pixel_mean, d.pixel_mean)
    assert len(d2.X_train) + len(d2.X_valid) == 100 and len(d2.X_test) == 20
    np.testing.assert_array_equal(d2.X_test, d.X_test[:20])
    with pytest.warns(UserWarning, match="no pixel mean file"):
        d3 = prepare_cifar10(cifar_dir, limit=50, layout="bin")
    assert len(d3.X_train) == 45 and len(d3.X_test) == 50


# --- augmentation -----------------------------------------------------------------
PAD = 4
CANDIDATES = [(dy, dx, f) for dy in range(2 * PAD + 1) for dx in range(2 * PAD + 1)
              for f in (False, True)]


def _identify(orig, aug):
    """All (dy, dx, flip) producing ``aug`` from ``orig`` (one image, C x H x W)."""
    hits = []
    for dy, dx, f in CANDIDATES:
        if np.array_equal(crop_flip(orig[None], dy, dx, f, PAD)[0], aug):
            hits.append((dy, dx, f))
    return hits


@pytest.fixture(scope="module")
def images():
    # strictly positive pixels, so zero padding is recognisable and every
    # (offset, flip) produces a different image
    rng = np.random.RandomState(0)
    X = rng.randint(1, 256, size=(130, 3, 32, 32)).astype(np.float32)
    return X, np.arange(130, dtype=np.int32)


def test_crop_flip_basics(images):
    X, _ = images
    np.testing.assert_array_equal(crop_flip(X, PAD, PAD, False), X)
    np.testing.assert_array_equal(crop_flip(X, PAD, PAD, True), X[..., ::-1])
    shifted = crop_flip(X, 0, 2 * PAD, False)  # down-left shift by 4
    assert np.all(shifted[:, :, :PAD, :] == 0) and np.all(shifted[:, :, :, -PAD:] == 0)
    np.testing.assert_array_equal(shifted[:, :, PAD:, :-PAD], X[:, :, :-PAD, PAD:])
    # the per-image (vectorised) path agrees with the per-batch path
    n = len(X)
    np.testing.assert_array_equal(crop_flip(X, np.full(n, 1), np.full(n, 7), np.ones(n, bool)),
                                  crop_flip(X, 1, 7, True))
    with pytest.raises(ValueError):
        crop_flip(X, 9, 0, False)


def test_batch_mode_one_offset_per_batch(images):
    X, y = images
    X_before = X.copy()
    seen = set()
    for i, (xb, yb) in enumerate(iterate_minibatches(X, y, 16, shuffle=False, mode="batch",
                                                     rng=np.random.RandomState(5))):
        orig = X[yb]
        assert xb.shape == orig.shape and xb.dtype == X.dtype
        per_image = [set(_identify(o, a)) for o, a in zip(orig, xb)]
        assert all(len(h) == 1 for h in per_image)
        common = set.intersection(*per_image)
        assert len(common) == 1, "images of one batch were shifted/flipped differently"
        seen |= common
    np.testing.assert_array_equal(X, X_before)
    assert len(seen) > 3  # batches differ from each other
    assert {f for _, _, f in seen} == {False, True}


def test_image_mode_differs_per_image(images):
    X, y = images
    for xb, yb in iterate_minibatches(X, y, 64, shuffle=True, mode="image",
                                      rng=np.random.default_rng(2)):
        hits = [_identify(o, a) for o, a in zip(X[yb], xb)]
        assert all(len(h) == 1 for h in hits), "crop left the padded image"
        params = {h[0] for h in hits}
        if len(xb) > 8:
            assert len(params) > len(xb) // 2
            assert {f for _, _, f in params} == {False, True}
            assert {dy for dy, _, _ in params} >= {0, 2 * PAD}


def test_offsets_cover_range_and_stay_within_padding(images):
    X, y = images
    seen_dy, seen_dx = set(), set()
    rng = np.random.RandomState(11)
    for _ in range(30):
        for xb, yb in iterate_minibatches(X[:2], y[:2], 2, mode="batch", rng=rng):
            (dy, dx, _), = _identify(X[yb[0]], xb[0])
            seen_dy.add(dy)
            seen_dx.add(dx)
            # at most `pad` rows / columns of padding ever show up
            zero_rows = np.all(xb[0] == 0, axis=(0, 2)).sum()
            assert zero_rows == abs(dy - PAD)
    assert seen_dy <= set(range(9)) and len(seen_dy) >= 7 and len(seen_dx) >= 7


def test_partial_batch_kept_and_every_sample_once(images):
    X, y = images
    sizes, labels = [], []
    for xb, yb in iterate_minibatches(X, y, 64, rng=0):
        sizes.append(len(xb))
        labels.extend(yb.tolist())
    assert sizes == [64, 64, 2]  # like the seed: ceil(n / batch_size) batches
    assert sorted(labels) == list(range(130)) and labels != sorted(labels)
    sizes = [len(xb) for xb, _ in iterate_minibatches(X, y, 64, rng=0, drop_last=True)]
    assert sizes == [64, 64]


def test_iterator_deterministic_and_plain(images):
    X, y = images
    for mode in ("batch", "image"):
        for make in (np.random.RandomState, np.random.default_rng):
            a = list(iterate_minibatches(X, y, 32, mode=mode, rng=make(7)))
            b = list(iterate_minibatches(X, y, 32, mode=mode, rng=make(7)))
            for (xa, ya), (xb, yb) in zip(a, b):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)
    plain = list(iterate_minibatches(X, y, 50, shuffle=False, augment=False))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in plain]), X)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in plain]), y)
    with pytest.raises(ValueError):
        next(iterate_minibatches(X, y, 8, mode="pixel"))


def test_augment_real_data(cifar):
    mean = compute_pixel_mean(cifar.X_train)
    P = preprocess(cifar.X_train[:64], mean)
    (xb, yb), = list(iterate_minibatches(P, cifar.y_train[:64], 64, shuffle=False,
                                         rng=np.random.RandomState(0)))
    hits = _identify(P[0], xb[0])
    assert len(hits) == 1
    np.testing.assert_array_equal(xb, crop_flip(P, *hits[0], pad=PAD))


# --- bad inputs -------------------------------------------------------------------
def _copy_layout(src, dst, layout):
    sub = {"py": "cifar-10-batches-py", "bin": "cifar-10-batches-bin"}[layout]
    shutil.copytree(src / sub, dst / sub)
    return dst / sub


def test_missing_dirs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_cifar10(tmp_path / "nope")
    with pytest.raises(DataError, match="no CIFAR-10 found") as ei:
        load_cifar10(tmp_path)
    assert str(tmp_path) in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(DataError, match="layout"):
        load_cifar10(tmp_path, layout="csv")
    assert issubclass(DataError, LasresError)


@pytest.mark.parametrize("layout", ["py", "bin"])
def test_missing_batch(tmp_path, cifar_dir, layout):
    folder = _copy_layout(cifar_dir, tmp_path, layout)
    suffix = ".bin" if layout == "bin" else ""
    os.unlink(folder / f"data_batch_3{suffix}")
    with pytest.raises(DataError, match=f"data_batch_3{suffix}: missing CIFAR-10 batch"):
        load_cifar10(tmp_path, layout=layout)
    other = "py" if layout == "bin" else "bin"
    with pytest.raises(DataError, match=f"expected cifar-10-batches-{other}/"):
        find_cifar10(tmp_path, other)


def test_wrong_record_size(tmp_path, cifar_dir):
    folder = _copy_layout(cifar_dir, tmp_path, "bin")
    raw = (folder / "test_batch.bin").read_bytes()
    (folder / "test_batch.bin").write_bytes(raw[:-5])
    with pytest.raises(DataError, match="3073-byte"):
        load_cifar10(tmp_path)


def test_unpicklable_and_malicious_batches(tmp_path, cifar_dir):
    folder = _copy_layout(cifar_dir, tmp_path, "py")
    (folder / "data_batch_2").write_bytes(os.urandom(1000))
    with pytest.raises(DataError, match="data_batch_2: not a readable"):
        load_cifar10(tmp_path)

    marker = tmp_path / "pwned_data"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match="forbidden"):
        load_cifar10(tmp_path)
    assert not marker.exists()
    (folder / "data_batch_2").write_bytes(pickle.dumps({"labels": [1]}, protocol=2))
    with pytest.raises(DataError, match="no 'data'"):
        load_cifar10(tmp_path)
    (folder / "data_batch_2").write_bytes(pickle.dumps([1, 2], protocol=2))
    with pytest.raises(DataError, match="dict"):
        load_cifar10(tmp_path)


def test_str_key_pickles(tmp_path, cifar):
    """Pickles written by Python 3 (str keys) read like the Python 2 ones (bytes keys)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    X = cifar.X_train.reshape(N_TRAIN, -1)
    for i, idx in enumerate(np.array_split(np.arange(N_TRAIN), 5)):
        blob = {"data": X[idx], "labels": cifar.y_train[idx].tolist()}
        (folder / f"data_batch_{i + 1}").write_bytes(pickle.dumps(blob, protocol=4))
    (folder / "test_batch").write_bytes(pickle.dumps(
        {b"data": cifar.X_test.reshape(N_TEST, -1), b"labels": cifar.y_test.tolist()}))
    out = load_cifar10(tmp_path)
    for a, b in zip(out, cifar):
        np.testing.assert_array_equal(a, b)
    assert out.label_names == CIFAR10_CLASSES  # no batches.meta: standard names


# --- MNIST --------------------------------------------------------------------------
@pytest.mark.parametrize("compress", [True, False])
def test_mnist(tmp_path, compress):
    data = write_mnist(tmp_path / "mnist", compress=compress)
    for where in (tmp_path, tmp_path / "mnist"):
        X_train, y_train, X_test, y_test = load_mnist(where)
        assert X_train.shape == (12, 1, 28, 28) and X_train.dtype == np.uint8
        assert y_train.dtype == np.int32 and X_test.shape == (5, 1, 28, 28)
        np.testing.assert_array_equal(X_train[:, 0], data["train"][0])
        np.testing.assert_array_equal(y_test, data["t10k"][1])


def test_mnist_errors(tmp_path):
    with pytest.raises(DataError, match="no MNIST"):
        load_mnist(tmp_path)
    write_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + raw[4:]))
    with pytest.raises(DataError, match="3 dimensions, expected 1"):
        load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + raw[4:]))
    with pytest.raises(DataError, match="magic"):
        load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(DataError, match="expected"):
        load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(11, np.uint8))))
    with pytest.raises(DataError, match="11 labels for 12 images"):
        load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(raw)[:20])
    with pytest.raises(DataError, match="corrupt gzip"):
        load_mnist(tmp_path)
    os.unlink(tmp_path / "t10k-images-idx3-ubyte.gz")
    labels.write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: missing"):
        load_mnist(tmp_path)


def test_fashion_mnist(tmp_path):
    """Same IDX files as MNIST, its own subfolder, its class names; a
    missing copy is named as Fashion-MNIST in the error."""
    with pytest.raises(DataError, match="no Fashion-MNIST"):
        load_fashion_mnist(tmp_path)
    data = write_mnist(tmp_path / "fashion-mnist", rng=np.random.RandomState(3))
    for where in (tmp_path, tmp_path / "fashion-mnist"):
        splits = load_fashion_mnist(where)
        np.testing.assert_array_equal(splits.X_train[:, 0], data["train"][0])
        np.testing.assert_array_equal(splits.y_test, data["t10k"][1])
        assert splits.label_names == FASHION_MNIST_CLASSES and len(set(splits.label_names)) == 10
        assert splits.label_names[9] == "Ankle boot"  # label 9 of Zalando's list
    assert load_mnist(tmp_path / "fashion-mnist").label_names[9] == "9"
    prepared = prepare_dataset("fashion-mnist", tmp_path, limit=(10, 4), seed=0)
    assert prepared.X_train.shape[1:] == (1, 28, 28) and len(prepared.X_test) == 4
    assert prepared.label_names == FASHION_MNIST_CLASSES


# --- CIFAR-100 ------------------------------------------------------------------------
def test_cifar100(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.RandomState(0)
    blobs = {}
    for split, n in (("train", 20), ("test", 8)):
        blob = {b"data": rng.randint(0, 256, size=(n, 3072)).astype(np.uint8),
                b"fine_labels": rng.randint(0, 100, size=n).tolist(),
                b"coarse_labels": rng.randint(0, 20, size=n).tolist(),
                b"filenames": [b"x.png"] * n, b"batch_label": b"whatever"}
        (folder / split).write_bytes(pickle.dumps(blob, protocol=2))
        blobs[split] = blob
    meta = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    fine = load_cifar100(tmp_path)
    assert fine.X_train.shape == (20, 3, 32, 32) and fine.X_test.shape == (8, 3, 32, 32)
    np.testing.assert_array_equal(fine.X_train.reshape(20, -1), blobs["train"][b"data"])
    np.testing.assert_array_equal(fine.y_test, blobs["test"][b"fine_labels"])
    assert fine.y_train.dtype == np.int32 and fine.label_names[3] == "f3"
    coarse = load_cifar100(folder, label_mode="coarse")
    np.testing.assert_array_equal(coarse.y_train, blobs["train"][b"coarse_labels"])
    assert len(coarse.label_names) == 20
    with pytest.raises(DataError, match="label_mode"):
        load_cifar100(tmp_path, label_mode="medium")
    with pytest.raises(DataError, match="no CIFAR-100"):
        load_cifar100(tmp_path / "nothing")
    blobs["test"][b"fine_labels"][0] = 100
    (folder / "test").write_bytes(pickle.dumps(blobs["test"], protocol=2))
    with pytest.raises(DataError, match="outside 0..99"):
        load_cifar100(tmp_path)


# --- download ---------------------------------------------------------------------------
def _tar_gz(path, members):
    """Write a tar.gz of ``{arcname: bytes or ('symlink', target)}``; return its md5."""
    with tarfile.open(path, "w:gz") as tf:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = content[1]
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return hashlib.md5(path.read_bytes()).hexdigest()


def _archive_members(cifar_dir):
    src = cifar_dir / "cifar-10-batches-py"
    return {f"cifar-10-batches-py/{f}": (src / f).read_bytes() for f in sorted(os.listdir(src))}


def test_download_file_url(tmp_path, cifar_dir, cifar):
    archive = tmp_path / "src" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    md5 = _tar_gz(archive, _archive_members(cifar_dir))
    dest = tmp_path / "data"
    out = download_cifar10(dest, url=archive.as_uri(), md5=md5, progress=False)
    assert out == str(dest / "cifar-10-batches-py")
    got = load_cifar10(dest)
    for a, b in zip(got, cifar):
        np.testing.assert_array_equal(a, b)
    assert sorted(os.listdir(dest)) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]
    # already there: nothing is fetched again (the URL is gone)
    archive.unlink()
    assert download_cifar10(dest, url=archive.as_uri(), md5=md5, progress=False) == out


def test_download_md5_mismatch(tmp_path, cifar_dir):
    archive = tmp_path / "a.tar.gz"
    _tar_gz(archive, _archive_members(cifar_dir))
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="MD5 mismatch"):
        download_cifar10(dest, url=archive.as_uri(), md5="0" * 32, progress=False)
    assert os.listdir(dest) == []  # no partial archive, no folder
    with pytest.raises(DataError, match="download failed"):
        download_cifar10(dest, url=(tmp_path / "missing.tar.gz").as_uri(), md5=None,
                         progress=False)


@pytest.mark.parametrize("members", [
    {"../evil.txt": b"x", "cifar-10-batches-py/test_batch": b"x"},
    {"/tmp/abs_evil.txt": b"x"},
    {"cifar-10-batches-py/link": ("symlink", "/etc/passwd")},
], ids=["traversal", "absolute", "symlink"])
def test_download_refuses_unsafe_archives(tmp_path, members):
    archive = tmp_path / "bad.tar.gz"
    md5 = _tar_gz(archive, members)
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="unsafe|link"):
        download_cifar10(dest, url=archive.as_uri(), md5=md5, progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert os.listdir(dest) == []


def test_download_wrong_archive(tmp_path):
    archive = tmp_path / "other.tar.gz"
    md5 = _tar_gz(archive, {"something/else": b"hello"})
    with pytest.raises(DataError, match="not the CIFAR-10 python archive"):
        download_cifar10(tmp_path / "data", url=archive.as_uri(), md5=md5, progress=False)
    assert os.listdir(tmp_path / "data") == []
