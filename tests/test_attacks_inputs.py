"""Issue 29, items 5-14, 16, 18-20: files and command lines that used to take
the machine's memory, hang, or end in a traceback.

Every case must end with one ``error:`` line (or one
:class:`~lasres.errors.LasresError`), exit status 2 from the scripts, within
a few seconds. Cases that hung or allocated gigabytes before run in a
subprocess under ``RLIMIT_AS`` (:mod:`_memlimit`) and ``signal.alarm``, so
that the old behaviour fails the test instead of stalling CI.
"""
import json
import os
import pickle
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from _memlimit import REPO, run_limited
from lasres import cli
from lasres import layers as L
from lasres.errors import DataError, LasresError, WeightFileError
from lasres.models import build
from lasres.weights import save_keras_h5, save_pklz

MiB = 1024 ** 2
SECONDS = 5.0


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert len(err[0]) < 600, err[0]
    return err[0]


def _fake_cifar(folder, n=20, labels=None, meta=None):
    """A CIFAR-10 python layout of ``n`` random images per batch."""
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.RandomState(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        y = list(rng.randint(0, 10, n)) if labels is None else labels
        batch = {b"data": rng.randint(0, 256, (len(y), 3072)).astype(np.uint8),
                 b"labels": [int(v) for v in y]}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    if meta is not None:
        (d / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture(scope="module")
def normal1_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "normal1.pklz"
    save_pklz(path, L.get_all_param_values(build("normal", 1, 1)))
    return path


# --------------------------------------------------------------------------
# items 10, 11, 18: command-line values
# --------------------------------------------------------------------------
@pytest.mark.parametrize("flags,message", [
    (["--option", "num_classes=5"], "unknown option(s) num_classes"),
    (["--option", "input_shape=3"], "unknown option(s) input_shape"),
    (["--batch-size", "0"], "--batch-size must be in 1.."),
    (["--batch-size", "-3"], "--batch-size must be in 1.."),
])
def test_train_nn_bad_values_are_one_line(tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    rc = cli.main_wrapper(cli.train_main, ["normal", "1", "--data", str(tmp_path / "nodata"),
                                           "--out", str(out), "--no-plot"] + flags)
    line = _one_error_line(capsys)
    assert rc == 2 and message in line, line
    assert not out.exists()


def test_test_model_negative_batch_size_is_one_line(tmp_path, capsys, normal1_weights):
    data = _fake_cifar(tmp_path / "data")
    rc = cli.main_wrapper(cli.test_main, ["normal", "1", "--data", str(data), "--weights",
                                          str(normal1_weights), "--batch-size", "-5"])
    line = _one_error_line(capsys)
    assert rc == 2 and "--batch-size" in line, line


def test_ror_option_with_a_bad_value_is_one_line(tmp_path, capsys):
    rc = cli.main_wrapper(cli.train_main, ["ror", "1", "--data", str(tmp_path / "nodata"),
                                           "--out", str(tmp_path / "run"), "--option",
                                           "dropout=abc"])
    line = _one_error_line(capsys)
    assert rc == 2 and "dropout" in line, line


# --------------------------------------------------------------------------
# item 9: architectures larger than the machine
# --------------------------------------------------------------------------
HUGE = """
import signal, sys, time
from lasres import cli
def alarm(*a):
    raise TimeoutError('still building after 8 s')
signal.signal(signal.SIGALRM, alarm)
out = []
from lasres.cli import compare_main
for argv in ARGVS:
    t0 = time.perf_counter()
    signal.alarm(8)
    try:
        main = compare_main if ':' in argv[0] else cli.train_main
        rc = cli.main_wrapper(main, argv)
        out.append(dict(argv=argv, rc=rc, seconds=time.perf_counter() - t0))
    except BaseException as e:
        out.append(dict(argv=argv, rc=None, exc=type(e).__name__, msg=str(e)[:200]))
    finally:
        signal.alarm(0)
_report(cases=out)
"""


def test_architectures_larger_than_the_machine_are_refused_before_building(tmp_path):
    argvs = [[*args, "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "run")]
             for args in (["normal", "1000000000"], ["normal", "100000"], ["wide", "1", "1000000"],
                          ["cnn:18:3", "normal:100000"])]  # (compare.py)
    rc, rep, err = run_limited(HUGE.replace("ARGVS", repr(argvs)), 2048 * MiB, timeout=120)
    assert rc == 0 and rep is not None, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    for case in rep["cases"]:
        assert case["rc"] == 2 and case["seconds"] < SECONDS, case
    assert len(lines) == 4 and all(ln.startswith("error: ") for ln in lines), lines
    for ln, name in zip(lines, ("normal 1000000000", "normal 100000", "wide 1 1000000",
                                "normal 100000")):
        assert name in ln and "estimated" in ln and "memory" in ln, ln
        print(ln)
    assert not (tmp_path / "run").exists()


def test_the_registry_nets_fit_the_estimate_of_a_small_machine():
    """The estimate refuses nothing the seeds trained, on an 8 GiB machine."""
    from lasres.models import get_spec
    from lasres.models.registry import check_model_size, estimate_memory
    for t, d, w in [("normal", 18, 1), ("bottleneck", 18, 1), ("wide", 2, 4), ("resnet", 18, 1),
                    ("ror", 2, 1), ("ror-wrn", 6, 2), ("rir", 18, 3), ("cnn", 18, 3)]:
        check_model_size(get_spec(t), d, w, batch_size=128, memory=8 * 1024 ** 3)
    params, _ = estimate_memory(get_spec("normal"), 18, 1)
    assert 0.5 < params / 1.73e6 < 2  # ResNet-110 has 1.73M parameters


# --------------------------------------------------------------------------
# items 12-14: data files
# --------------------------------------------------------------------------
def test_cifar_label_beyond_int64_is_one_line(tmp_path):
    from lasres.data import load_cifar10
    data = _fake_cifar(tmp_path / "data", n=3, labels=[1, 2 ** 70, 3])
    with pytest.raises(DataError, match="labels"):
        load_cifar10(data)


@pytest.mark.parametrize("names", [list(range(10)), [None] * 10, [["a"]] * 10])
def test_cifar_class_names_must_be_strings(tmp_path, names):
    from lasres.data import load_cifar10
    data = _fake_cifar(tmp_path / "data", n=3, meta={b"label_names": names})
    with pytest.raises(DataError, match="class names"):
        load_cifar10(data)


def test_mnist_dimensions_whose_product_wraps_are_one_line(tmp_path):
    from lasres.data.mnist import read_idx
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2 ** 22, 2 ** 21, 2 ** 21))
    with pytest.raises(DataError, match="IDX body has 0 bytes"):
        read_idx(p, expect_ndim=3)


def test_a_cifar_key_listing_is_bounded(tmp_path):
    from lasres.data.cifar import _read_py_batch
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({f"key{i}" * 20: i for i in range(20_000)}, protocol=2))
    with pytest.raises(DataError) as info:
        _read_py_batch(str(p))
    assert len(str(info.value)) < 800, len(str(info.value))


# --------------------------------------------------------------------------
# item 8: non-regular files
# --------------------------------------------------------------------------
NONREGULAR = """
import signal, time
import numpy as np
def alarm(*a):
    raise TimeoutError('blocked for 3 s')
signal.signal(signal.SIGALRM, alarm)
from lasres.weights import load_weights, load_checkpoint
from lasres.data import load_pixel_mean
from lasres.data.mnist import read_idx
from lasres.data.cifar import _read_py_batch, _read_bin_batch
out = []
for name, call in CASES:
    t0 = time.perf_counter()
    signal.alarm(3)
    try:
        eval(call)
        out.append(dict(name=name, outcome='loaded'))
    except lasres.errors.LasresError as e:
        out.append(dict(name=name, outcome='refused', msg=str(e), seconds=time.perf_counter() - t0))
    except BaseException as e:
        out.append(dict(name=name, outcome=type(e).__name__, msg=str(e)[:200]))
    finally:
        signal.alarm(0)
_report(cases=out)
"""


def test_fifos_devices_and_directories_are_refused_before_opening(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    f, z = repr(str(fifo)), repr("/dev/zero")
    cases = [("weights fifo", f"load_weights({f})"),
             ("checkpoint fifo", f"load_checkpoint({f})"),
             ("pixel mean fifo", f"load_pixel_mean({f})"),
             ("mnist fifo", f"read_idx({f})"),
             ("mnist device", f"read_idx({z})"),
             ("cifar fifo", f"_read_py_batch({f})"),
             ("cifar bin device", f"_read_bin_batch({z})"),
             ("weights device", f"load_weights({z})"),
             ("weights directory", f"load_weights({repr(str(tmp_path))})")]
    rc, rep, err = run_limited(NONREGULAR.replace("CASES", repr(cases)), 512 * MiB, timeout=120)
    assert rc == 0 and rep is not None, err[-3000:]
    for case in rep["cases"]:
        assert case["outcome"] == "refused" and case["seconds"] < 1, case
        assert ("FIFO" in case["msg"] or "character device" in case["msg"]
                or "directory" in case["msg"]), case


def test_a_fifo_as_weights_is_one_line_from_the_script(tmp_path):
    fifo = tmp_path / "w.pklz"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    try:
        p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "test_model.py"),
                            "normal", "1", "--weights", str(fifo), "--data",
                            str(tmp_path / "nodata")], capture_output=True, text=True,
                           timeout=120, cwd=str(tmp_path))
    except subprocess.TimeoutExpired:
        pytest.fail("test_model.py blocked on a FIFO given as --weights")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "FIFO" in lines[0], p.stderr[-2000:]
    print(f"{lines[0]} ({time.monotonic() - t0:.1f} s with the interpreter's start)")


# --------------------------------------------------------------------------
# items 5-7: one budget for every file
# --------------------------------------------------------------------------
LOAD = """
import time
t0 = time.perf_counter()
try:
    CALL
    _report(outcome='loaded')
except lasres.errors.LasresError as e:
    _report(outcome=type(e).__name__, msg=str(e), seconds=time.perf_counter() - t0)
"""


def _refused_limited(call, headroom, timeout=120):
    code = LOAD.replace("    CALL", textwrap.indent(textwrap.dedent(call).strip(), "    "))
    rc, rep, err = run_limited(code, headroom, timeout=timeout)
    assert rc == 0 and rep is not None, err[-3000:]
    assert rep["outcome"] != "loaded", rep
    assert "\n" not in rep["msg"] and len(rep["msg"]) < 600, rep["msg"]
    assert rep["seconds"] < SECONDS, rep
    rep["peak_mib"] = (rep["vm_peak"] - rep["vm_base"]) / MiB
    print(f"{rep['seconds']:.2f} s, peak +{rep['peak_mib']:.0f} MiB: {rep['msg']}")
    return rep


def test_keras_file_declaring_a_giant_is_refused_before_reading(tmp_path):
    """A 400 KB Keras file declaring an 800 MB kernel for an 83k-parameter net
    (read under a fixed 2 GiB cap before: 0.9 GB in the main process)."""
    knet = build("ror-wrn", 1, 1, layout="keras")
    path = tmp_path / "big.h5"
    save_keras_h5(knet, path)
    with h5py.File(path, "r+") as f:
        top = f["model_weights"] if "model_weights" in f else f
        for lname in top.attrs["layer_names"]:
            lname = lname.decode() if isinstance(lname, bytes) else lname
            wn = top[lname].attrs["weight_names"]
            if len(wn):
                w = wn[0].decode() if isinstance(wn[0], bytes) else wn[0]
                del top[lname][w]
                top[lname].create_dataset(w, shape=(20000, 10000), dtype="f4")  # unwritten
                break
    assert path.stat().st_size < 2 * MiB
    rep = _refused_limited(f"""
from lasres.models import build
net = build('ror-wrn', 1, 1, layout='keras')
lasres.cli.load_network_weights(net, {str(path)!r})""", 400 * MiB)
    # the shapes are compared first, no data read: the file is named a misfit
    assert "does not fit this network" in rep["msg"] and "(20000, 10000)" in rep["msg"], rep
    assert rep["peak_mib"] < 64, rep


def test_keras_file_with_the_right_shapes_is_read_under_the_network_budget(tmp_path):
    """Shapes that fit, and a budget smaller than the file: refused before reading."""
    from lasres.weights.keras_h5 import load_keras_h5
    knet = build("ror-wrn", 1, 1, layout="keras")
    path = tmp_path / "k.h5"
    save_keras_h5(knet, path)
    with pytest.raises(WeightFileError, match="refusing to load") as info:
        load_keras_h5(path, knet, max_bytes=64 * 1024)
    assert "64.0 KiB allowed" in str(info.value)
    assert len(load_keras_h5(path, knet)) == len(L.get_all_params(knet))  # its own budget


def test_pixel_mean_beside_the_weights_is_capped_to_the_image_size(tmp_path, normal1_weights):
    folder = tmp_path / "run"
    folder.mkdir()
    mean = folder / "pixel_mean.npy"
    with open(mean, "wb") as f:  # a sparse 3 GiB float32 "mean"
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (3, 32768, 8192)})
        f.truncate(f.tell() + 3 * 32768 * 8192 * 4)
    weights = folder / "w.pklz"
    weights.write_bytes(normal1_weights.read_bytes())
    args = dict(pixel_mean=None, data=str(tmp_path / "nodata"), dataset="cifar10")
    rep = _refused_limited(f"""
from types import SimpleNamespace
lasres.cli.pixel_mean_for(SimpleNamespace(**{args!r}), {str(weights)!r}, None)""", 512 * MiB)
    assert "refusing to load" in rep["msg"] and "(3, 32, 32)" in rep["msg"], rep
    assert rep["peak_mib"] < 64, rep


def _zip_with_directory(path, entries):
    """A zip whose one real member is listed ``entries`` times in the directory."""
    name = b"arr_0.npy"
    import io
    buf = io.BytesIO()
    np.save(buf, np.zeros(3, np.float32))
    data = buf.getvalue()
    import zlib
    crc = zlib.crc32(data)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, len(data), len(data),
                        len(name), 0) + name + data
    cd_one = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, len(data),
                         len(data), len(name), 0, 0, 0, 0, 0, 0)
    cd = (cd_one + name) * entries
    # it declares one member: zipfile parses the whole directory all the same
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(local), 0)
    path.write_bytes(local + cd + eocd)
    return path


def test_npz_directory_is_bounded_before_parsing(tmp_path):
    path = _zip_with_directory(tmp_path / "many.npz", 300_000)
    rep = _refused_limited(f"""
from lasres.models import build
net = build('normal', 1, 1)
lasres.cli.load_network_weights(net, {str(path)!r})""", 96 * MiB)
    assert "members" in rep["msg"] and "directory" in rep["msg"], rep
    assert rep["peak_mib"] < 16, rep


def test_a_small_npz_still_loads(tmp_path):
    from lasres.weights import load_pklz
    p = tmp_path / "ok.npz"
    np.savez(p, *[np.ones((3, 3)), np.zeros(4)])
    assert [v.shape for v in load_pklz(p)] == [(3, 3), (4,)]
    with zipfile.ZipFile(p) as z:
        assert len(z.namelist()) == 2


# --------------------------------------------------------------------------
# item 20: complex and non-finite values
# --------------------------------------------------------------------------
@pytest.mark.parametrize("bad,message", [
    (lambda v: v.astype(np.complex64), "complex values"),
    (lambda v: np.where(np.arange(v.size).reshape(v.shape) == 0, np.nan, v).astype(v.dtype),
     "NaN or infinite"),
    (lambda v: np.full_like(v, np.inf), "NaN or infinite"),
])
def test_complex_or_non_finite_weights_are_refused_naming_the_array(tmp_path, capsys, bad,
                                                                    message):
    values = L.get_all_param_values(build("normal", 1, 1))
    values[3] = bad(values[3])
    path = tmp_path / "w.npz"
    np.savez(path, *values)
    rc = cli.main_wrapper(cli.test_main, ["normal", "1", "--weights", str(path), "--data",
                                          str(tmp_path / "nodata")])
    line = _one_error_line(capsys)
    assert rc == 2 and "array 3" in line and message in line, line


@pytest.mark.parametrize("mean,message", [
    (np.zeros((3, 32, 32), np.complex64), "real numbers"),
    (np.full((3, 32, 32), np.nan, np.float32), "NaN or infinite"),
])
def test_complex_or_non_finite_pixel_means_are_refused(tmp_path, mean, message):
    from lasres.data import load_pixel_mean
    p = tmp_path / "pixel_mean.npy"
    np.save(p, mean)
    with pytest.raises(DataError, match=message):
        load_pixel_mean(p)


# --------------------------------------------------------------------------
# item 16: a full disk
# --------------------------------------------------------------------------
FULL_DISK = """
import resource, signal, numpy as np
from lasres import cli
from lasres.weights import save_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
save_checkpoint(PATH, [np.zeros(10, np.float32)], epoch=1)  # the previous checkpoint
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, resource.RLIM_INFINITY))
rc = cli.main_wrapper(lambda argv: save_checkpoint(PATH, [np.ones((1024, 1024), np.float32)],
                                                   epoch=2) or 0, [])
_report(rc=rc)
"""


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    from lasres.weights import load_checkpoint
    path = tmp_path / "last.h5"
    rc, rep, err = run_limited(FULL_DISK.replace("PATH", repr(str(path))), 512 * MiB)
    assert rc == 0 and rep is not None, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rep["rc"] == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert len(lines[0]) < 600, lines[0]
    print(lines[0])
    assert load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.h5"]


def test_main_wrapper_puts_a_multiline_os_error_on_one_line(capsys):
    def fail(argv):
        raise OSError("Can't write data (file write failed: time = Mon Dec  7\n"
                      "errno = 28, error message = 'No space left on device')")
    assert cli.main_wrapper(fail, []) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line


# --------------------------------------------------------------------------
# item 19 (fixed with item 1 in 14757b9): a Keras file with a broken layer list
# --------------------------------------------------------------------------
def test_keras_file_listing_a_missing_layer_is_named_a_keras_file(tmp_path):
    knet = build("ror-wrn", 1, 1, layout="keras")
    path = tmp_path / "k.h5"
    save_keras_h5(knet, path)
    with h5py.File(path, "r+") as f:
        top = f["model_weights"] if "model_weights" in f else f
        top.attrs["layer_names"] = list(top.attrs["layer_names"]) + [b"nosuch_layer"]
    with pytest.raises(LasresError) as info:
        cli.load_network_weights(build("ror-wrn", 1, 1, layout="keras"), str(path))
    msg = str(info.value)
    assert "Keras weight file" in msg and "nosuch_layer" in msg, msg
    assert "not a lasres checkpoint" not in msg
