"""benchmarks/opencv_digits_to_idx.py: OpenCV's digits.png mosaic as MNIST IDX
files that lasres's MNIST reader loads (a synthetic mosaic whose every cell
says where it came from)."""
import importlib.util
import pathlib

import numpy as np
import pytest

from lasres.data import load_mnist

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "opencv_digits_to_idx.py"


def _tool():
    spec = importlib.util.spec_from_file_location("opencv_digits_to_idx", _PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mosaic():
    """1000 x 2000 mosaic: cell (r, c) holds r + 1 at its top-left pixel,
    c + 1 at its bottom-right pixel, 255 along its left column."""
    img = np.zeros((1000, 2000), np.uint8)
    for r in range(50):
        for c in range(100):
            cell = img[20 * r:20 * r + 20, 20 * c:20 * c + 20]
            cell[:, 0] = 255
            cell[0, 0] = r + 1
            cell[19, 19] = c + 1
    return img


def test_mosaic_becomes_mnist_files_lasres_reads(tmp_path):
    tool = _tool()
    tool.write_idx_dataset(_mosaic(), tmp_path / "digits")
    d = load_mnist(tmp_path / "digits")
    assert d.X_train.shape == (2500, 1, 28, 28) and d.X_test.shape == (2500, 1, 28, 28)
    assert d.X_train.dtype == np.uint8
    for X, y, col0 in ((d.X_train, d.y_train, 0), (d.X_test, d.y_test, 50)):
        img = X[:, 0]
        rows, cols = img[:, 4, 4].astype(int) - 1, img[:, 23, 23].astype(int) - 1
        # the label is the mosaic row's tenth, the columns are the split's half
        np.testing.assert_array_equal(y, rows // 5)
        assert set(cols) == set(range(col0, col0 + 50))
        assert len(set(zip(rows, cols))) == 2500  # every cell exactly once
        assert np.bincount(y, minlength=10).tolist() == [250] * 10
        # 4 pixels of zero padding around each 20 x 20 digit
        assert not img[:, :4].any() and not img[:, 24:].any()
        assert not img[:, :, :4].any() and not img[:, :, 24:].any()
        assert (img[:, 5:23, 4] == 255).all()
    assert not list((tmp_path / "digits").glob("*.part"))


def test_wrong_size_png_is_refused():
    with pytest.raises(ValueError, match="2000 x 1000"):
        _tool().split_mosaic(np.zeros((1000, 1000), np.uint8))


def test_command_line_writes_the_files(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    png = tmp_path / "digits.png"
    Image.fromarray(_mosaic()).save(png)
    _tool().main([str(png), str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f + ".gz" for f in _tool().FILES)
    with pytest.raises(SystemExit, match="error: .*nothing.png"):
        _tool().main([str(tmp_path / "nothing.png"), str(tmp_path / "o2")])
