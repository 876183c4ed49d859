"""Issue 29, item 1: an HDF5 weight file may not make lasres read another file.

HDF5 can keep a dataset's bytes outside the file (external storage), map a
dataset from other files (virtual datasets) and name objects in other files
(external links; soft links whose target passes through one). Each is tried
here on both HDF5 formats lasres reads (its checkpoints and Keras 1 weight
files), with a "secret" file of float32 values that, before the fix, came
back as weights (and ``export_onnx.py`` wrote them into the ``.onnx``).
Every case must be one :class:`WeightFileError` naming the refusal, and the
secret's bytes must appear nowhere in what the scripts write.
"""
import subprocess
import sys

import h5py
import numpy as np
import pytest

from _memlimit import REPO
from lasres import layers as L
from lasres.errors import WeightFileError
from lasres.models import build
from lasres.weights import load_checkpoint, load_keras_h5, save_checkpoint, save_keras_h5

ARCH = {"type": "normal", "depth": 1, "width": 1}


@pytest.fixture(scope="module")
def net():
    return build("normal", 1, 1)


@pytest.fixture()
def secret(tmp_path):
    """A file outside the weight file, holding recognisable float32 values."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.full(4096, 1234.5, np.float32).tobytes())
    return path


def _checkpoint(net, path):
    save_checkpoint(path, L.get_all_param_values(net), arch=ARCH)
    return path


def _keras(path):
    knet = build("ror-wrn", 1, 1, layout="keras")
    save_keras_h5(knet, path)
    return knet, path


def _first_param(f, kind):
    """(group, name) of the file's first weight array."""
    if kind == "checkpoint":
        return f["params"], "00000"
    top = f
    for lname in top.attrs["layer_names"]:
        lname = lname.decode() if isinstance(lname, bytes) else lname
        wn = top[lname].attrs["weight_names"]
        if len(wn):
            w = wn[0].decode() if isinstance(wn[0], bytes) else wn[0]
            return top[lname], w
    raise AssertionError("no weights")


def _external_storage(g, name, secret):
    shape, dtype = g[name].shape, g[name].dtype
    del g[name]
    nbytes = int(np.prod(shape)) * dtype.itemsize
    g.create_dataset(name, shape=shape, dtype=dtype, external=[(str(secret), 0, nbytes)])


def _virtual(g, name, secret_h5):
    shape, dtype = g[name].shape, g[name].dtype
    with h5py.File(secret_h5, "w") as s:
        s.create_dataset("x", data=np.full(shape, 1234.5, dtype))
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    layout[...] = h5py.VirtualSource(str(secret_h5), "x", shape=shape)
    del g[name]
    g.create_virtual_dataset(name, layout)


def _external_link(g, name, secret_h5):
    shape, dtype = g[name].shape, g[name].dtype
    with h5py.File(secret_h5, "w") as s:
        s.create_dataset("x", data=np.full(shape, 1234.5, dtype))
    del g[name]
    g[name] = h5py.ExternalLink(str(secret_h5), "/x")


def _soft_to_external(g, name, secret_h5):
    shape, dtype = g[name].shape, g[name].dtype
    with h5py.File(secret_h5, "w") as s:
        s.create_dataset("x", data=np.full(shape, 1234.5, dtype))
    del g[name]
    g.file["/elsewhere"] = h5py.ExternalLink(str(secret_h5), "/x")
    g[name] = h5py.SoftLink("/elsewhere")


def _soft_loop(g, name, secret_h5):
    del g[name]
    g.file["/loop_a"] = h5py.SoftLink("/loop_b")
    g.file["/loop_b"] = h5py.SoftLink("/loop_a")
    g[name] = h5py.SoftLink("/loop_a")


CRAFTS = {
    "external storage": (_external_storage, "external file"),
    "virtual dataset": (_virtual, "virtual dataset"),
    "external link": (_external_link, "external link"),
    "soft link to an external link": (_soft_to_external, "external link"),
    "soft-link loop": (_soft_loop, "soft link"),
}


def _craft(path, kind, craft, secret, tmp_path):
    with h5py.File(path, "r+") as f:
        g, name = _first_param(f, kind)
        target = secret if craft is _external_storage else tmp_path / "secret.h5"
        craft(g, name, target)


@pytest.mark.parametrize("craft", list(CRAFTS))
def test_checkpoint_reaching_outside_the_file_is_refused(net, secret, tmp_path, craft):
    func, message = CRAFTS[craft]
    path = _checkpoint(net, tmp_path / "w.h5")
    _craft(path, "checkpoint", func, secret, tmp_path)
    with pytest.raises(WeightFileError, match=message) as e:
        load_checkpoint(path)
    assert len(str(e.value).splitlines()) == 1


@pytest.mark.parametrize("craft", list(CRAFTS))
def test_keras_file_reaching_outside_the_file_is_refused(secret, tmp_path, craft):
    func, message = CRAFTS[craft]
    knet, path = _keras(tmp_path / "k.h5")
    _craft(path, "keras", func, secret, tmp_path)
    with pytest.raises(WeightFileError, match=message):
        load_keras_h5(path, knet)


def test_soft_link_inside_the_file_still_reads(net, tmp_path):
    """A soft link to a dataset of the same file is not an escape."""
    path = _checkpoint(net, tmp_path / "w.h5")
    want = L.get_all_param_values(net)[0]
    with h5py.File(path, "r+") as f:
        f.move("params/00000", "/moved")
        f["params/00000"] = h5py.SoftLink("/moved")
    got = load_checkpoint(path).param_values[0]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [h5py.string_dtype(), np.dtype("complex64"),
                                   np.dtype([("a", "<f4"), ("b", "<f4")]),
                                   h5py.vlen_dtype(np.float32), np.dtype("bool")])
def test_non_numeric_hdf5_dtypes_are_refused(net, tmp_path, dtype):
    path = _checkpoint(net, tmp_path / "w.h5")
    with h5py.File(path, "r+") as f:
        shape = f["params/00000"].shape
        del f["params/00000"]
        f.create_dataset("params/00000", shape=shape, dtype=dtype)
    with pytest.raises(WeightFileError, match="element type|unsupported"):
        load_checkpoint(path)


def test_unknown_filter_plugin_is_refused(net, tmp_path):
    """A dataset whose filter is not built in would make libhdf5 load a plugin."""
    path = _checkpoint(net, tmp_path / "w.h5")
    with h5py.File(path, "r+") as f:
        shape = f["params/00000"].shape
        del f["params/00000"]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(shape)
        dcpl.set_filter(31999, h5py.h5z.FLAG_OPTIONAL)  # an unregistered plugin id
        space = h5py.h5s.create_simple(shape)
        h5py.h5d.create(f["params"].id, b"00000", h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
    with pytest.raises(WeightFileError, match="filter 31999"):
        load_checkpoint(path)


def test_export_onnx_does_not_copy_another_file(net, secret, tmp_path):
    """The attack as reported: export_onnx.py wrote /etc/passwd into the .onnx."""
    pytest.importorskip("onnx")
    path = _checkpoint(net, tmp_path / "w.h5")
    _craft(path, "checkpoint", _external_storage, secret, tmp_path)
    out = tmp_path / "m.onnx"
    p = subprocess.run([sys.executable, "scripts/export_onnx.py", "normal", "1",
                        "--weights", str(path), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "outside the file" in err[0], err
    assert not out.exists()
