"""Tests of lasres.weights: legacy .pklz files, the restricted unpickler, checkpoints."""
import gzip
import os
import pickle
import pickletools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from _datasets import legacy_fixtures_dir
from _memlimit import run_bounded, shrink_global_heap_free_space
from lasres.errors import LasresError, WeightFileError
from lasres.weights import (CHECKPOINT_FORMAT_VERSION, Checkpoint, detect_format,
                            load_checkpoint, load_pklz, load_weights, load_weights_with_checkpoint,
                            save_checkpoint, save_pklz)

FIXTURES = legacy_fixtures_dir()
PKLZ = sorted(FIXTURES.glob("*.pklz"))


def _npz_list(path):
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def _same(a_list, b_list):
    assert len(a_list) == len(b_list)
    for a, b in zip(a_list, b_list):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def _values(rng=None):
    rng = np.random.RandomState(0) if rng is None else rng
    return [rng.randn(16, 3, 3, 3).astype(np.float32), rng.randn(16).astype(np.float32),
            np.arange(10, dtype=np.int64), np.array(2.5, dtype=np.float32),
            np.zeros((0, 4), dtype=np.float32), rng.randn(64, 10)]


# --- legacy files ------------------------------------------------------------
def test_fixtures_present():
    assert len(PKLZ) >= 3, f"expected the legacy .pklz fixtures in {FIXTURES}"


@pytest.mark.parametrize("path", PKLZ, ids=lambda p: p.stem)
def test_load_legacy_pklz_matches_npz(path):
    raw = gzip.open(path).read()
    assert raw[:1] == b"(", "fixture should be a protocol-0 pickle"
    values = load_pklz(path)
    _same(values, _npz_list(path.with_suffix(".npz")))
    assert load_weights(path) is not None
    _same(load_weights(path), values)
    assert detect_format(path) == "pklz"


def test_legacy_fixture_needs_latin1():
    # documents why the loader decodes with latin1
    with pytest.raises(UnicodeDecodeError):
        pickle.load(gzip.open(PKLZ[0]))


def test_npz_and_plain_pickle_accepted(tmp_path):
    vals = _values()
    np.savez(tmp_path / "w.npz", *vals)
    _same(load_pklz(tmp_path / "w.npz"), vals)
    vals12 = [np.full(2, i) for i in range(12)]  # arr_10 sorts after arr_9
    np.savez(tmp_path / "w12.npz", *vals12)
    _same(load_weights(tmp_path / "w12.npz"), vals12)
    for proto in (0, 2, 4, 5):
        p = tmp_path / f"w{proto}.pkl"
        p.write_bytes(pickle.dumps(vals, protocol=proto))
        assert detect_format(p) == "pickle"
        _same(load_pklz(p), vals)
    # gzip'd modern pickle under a misleading extension
    p = tmp_path / "weights.h5"
    p.write_bytes(gzip.compress(pickle.dumps(vals, protocol=4)))
    _same(load_weights(p), vals)


# --- saving -------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_save_pklz_roundtrip(tmp_path, protocol):
    vals = _values()
    p = tmp_path / "w.pklz"
    save_pklz(p, vals, protocol=protocol)
    _same(load_pklz(p), vals)
    # plain Python-3 pickle reads it with any encoding (as a user script would)
    for enc in ("ASCII", "latin1", "bytes"):
        _same(pickle.load(gzip.open(p), encoding=enc), vals)
    assert [f for f in os.listdir(tmp_path)] == ["w.pklz"]


def test_save_pklz_protocol2_is_legacy_compatible(tmp_path):
    """Protocol 2 output only names globals a Python 2 / NumPy 1 loader can import."""
    p = tmp_path / "w.pklz"
    save_pklz(p, _values())
    raw = gzip.open(p).read()
    globals_ = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray",
                        "numpy dtype", "_codecs encode"}
    assert pickletools.genops(raw).__next__()[1] == 2
    # a legacy fixture re-saved reads back identically
    legacy = load_pklz(PKLZ[0])
    save_pklz(p, legacy)
    _same(load_pklz(p), legacy)


def test_save_pklz_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError):
        save_pklz(tmp_path / "x.pklz", np.zeros(3))
    with pytest.raises(ValueError):
        save_pklz(tmp_path / "x.pklz", [np.zeros(3)], protocol=1)
    with pytest.raises(WeightFileError):
        save_pklz(tmp_path / "missing_dir" / "x.pklz", [np.zeros(3)])
    assert not (tmp_path / "x.pklz").exists()


# --- refusing unsafe and broken files ------------------------------------------
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


@pytest.mark.parametrize("compress", [True, False])
def test_malicious_pickle_refused_and_not_executed(tmp_path, compress):
    marker = tmp_path / "pwned_x"
    payload = pickle.dumps([np.zeros(2), _Evil(f"touch {marker}")], protocol=2)
    p = tmp_path / "evil.pklz"
    p.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(WeightFileError, match=r"forbidden object (posix|os|nt)\.system") as ei:
        load_pklz(p)
    assert "nothing was executed" in str(ei.value)
    assert "\n" not in str(ei.value)
    with pytest.raises(WeightFileError, match="forbidden"):
        load_weights(p)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_eval_and_subprocess_refused(tmp_path, protocol):
    import subprocess
    p = tmp_path / "evil.pklz"
    p.write_bytes(gzip.compress(pickle.dumps([_EvalEvil()], protocol=protocol)))
    with pytest.raises(WeightFileError, match=r"forbidden object builtins\.eval"):
        load_pklz(p)

    class Sub:
        def __reduce__(self):
            return (subprocess.call, (["true"],))
    p.write_bytes(gzip.compress(pickle.dumps(Sub(), protocol=protocol)))
    with pytest.raises(WeightFileError, match="forbidden object subprocess.call"):
        load_pklz(p)


def test_only_latin1_codec_and_no_bytes_constructor(tmp_path):
    p = tmp_path / "x.pkl"
    # [_codecs.encode(u'abc', 'rot13')]
    p.write_bytes(b"\x80\x02]c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13"
                  b"\x86Ra.")
    with pytest.raises(WeightFileError, match="rot13"):
        load_pklz(p)
    # [bytes(10**12)] would allocate a terabyte
    p.write_bytes(b"\x80\x02]c__builtin__\nbytes\n\x8a\x05\x00\x10\xa5\xd4\xe8\x85Ra.")
    with pytest.raises(WeightFileError, match="builtins.bytes with arguments"):
        load_pklz(p)


def test_truncated_gzip(tmp_path):
    raw = (FIXTURES / "normal_n1_k1.pklz").read_bytes()
    p = tmp_path / "trunc.pklz"
    p.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(WeightFileError, match="truncated") as ei:
        load_pklz(p)
    assert str(p) in str(ei.value)


def test_truncated_pickle_inside_complete_gzip(tmp_path):
    raw = gzip.open(FIXTURES / "normal_n1_k1.pklz").read()
    p = tmp_path / "trunc2.pklz"
    p.write_bytes(gzip.compress(raw[: len(raw) // 3]))
    with pytest.raises(WeightFileError):
        load_pklz(p)


def test_random_bytes(tmp_path):
    p = tmp_path / "random.pklz"
    p.write_bytes(np.random.RandomState(1).bytes(4096).replace(b"\x1f\x8b", b"xx"))
    with pytest.raises(WeightFileError):
        load_weights(p)
    with pytest.raises(WeightFileError):
        load_pklz(p)


def test_corrupt_gzip_body(tmp_path):
    raw = bytearray((FIXTURES / "normal_n1_k1.pklz").read_bytes())
    raw[100:200] = b"\x00" * 100
    p = tmp_path / "corrupt.pklz"
    p.write_bytes(bytes(raw))
    with pytest.raises(WeightFileError):
        load_pklz(p)


@pytest.mark.parametrize("obj, msg", [
    ({"W": np.zeros(3)}, "found dict"),
    ([], "empty list"),
    ([np.zeros(3), "not an array"], "item 1 is str"),
    (np.zeros(3), "single array"),
])
def test_not_a_list_of_arrays(tmp_path, obj, msg):
    p = tmp_path / "x.pklz"
    p.write_bytes(gzip.compress(pickle.dumps(obj, protocol=2)))
    with pytest.raises(WeightFileError, match=msg):
        load_pklz(p)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(WeightFileError, match="not found"):
        load_weights(tmp_path / "nope.pklz")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(WeightFileError, match="unknown weight file format"):
        load_weights(tmp_path / "empty")
    with pytest.raises(WeightFileError, match="directory"):
        load_pklz(tmp_path)


def test_errors_are_lasres_errors():
    assert issubclass(WeightFileError, LasresError)


# --- HDF5 checkpoints ---------------------------------------------------------
def _full_checkpoint_kwargs():
    vals = _values()
    return dict(
        param_values=vals,
        arch={"type": "wide", "depth": 2, "width": 4},
        param_names=[f"p{i}" for i in range(len(vals))],
        pixel_mean=np.random.RandomState(3).rand(3, 32, 32).astype(np.float32),
        epoch=17,
        optimizer_state=[np.ones_like(v) for v in vals],
        optimizer_state_names=[f"v{i}" for i in range(len(vals))],
        history={"train_loss": [2.3, 1.9, 1.5], "valid_error": [0.8, 0.6, 0.5]},
        extra={"lr": 0.1, "note": "ünïcode", "schedule": {"0": 0.01, "10": 0.1}},
    )


def test_checkpoint_roundtrip(tmp_path):
    kw = _full_checkpoint_kwargs()
    p = tmp_path / "ckpt.h5"
    save_checkpoint(p, kw.pop("param_values"), **kw)
    ck = load_checkpoint(p)
    assert isinstance(ck, Checkpoint)
    _same(ck.param_values, _values())
    _same(ck.optimizer_state, [np.ones_like(v) for v in _values()])
    assert ck.arch == kw["arch"] and ck.param_names == kw["param_names"]
    assert ck.epoch == 17 and ck.extra == kw["extra"]
    assert ck.history == kw["history"]
    assert ck.optimizer_state_names == kw["optimizer_state_names"]
    np.testing.assert_array_equal(ck.pixel_mean, kw["pixel_mean"])
    assert ck.format_version == CHECKPOINT_FORMAT_VERSION and ck.created
    values, ck2 = load_weights_with_checkpoint(p)
    _same(values, ck.param_values)
    assert ck2.arch == kw["arch"]
    assert detect_format(p) == "hdf5"
    assert os.listdir(tmp_path) == ["ckpt.h5"]


def test_checkpoint_minimal_and_legacy_values(tmp_path):
    legacy = load_pklz(FIXTURES / "wide_n1_k2.pklz")
    p = tmp_path / "min.h5"
    save_checkpoint(p, legacy)
    ck = load_checkpoint(p)
    _same(ck.param_values, legacy)
    assert ck.arch is None and ck.param_names is None and ck.pixel_mean is None
    assert ck.epoch is None and ck.optimizer_state is None and ck.history is None
    _, none = load_weights_with_checkpoint(FIXTURES / "wide_n1_k2.pklz")
    assert none is None


def test_checkpoint_name_count_mismatch(tmp_path):
    with pytest.raises(ValueError, match="expected 2 names"):
        save_checkpoint(tmp_path / "c.h5", [np.zeros(1), np.zeros(2)], param_names=["a"])
    assert not list(tmp_path.iterdir())


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    import h5py
    p = tmp_path / "ckpt.h5"
    old = [np.full((3, 3), 7.0, dtype=np.float32)]
    save_checkpoint(p, old, epoch=1)

    real = h5py.Group.create_dataset
    calls = {"n": 0}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(p, _values(), epoch=2)
    monkeypatch.undo()
    assert calls["n"] == 3
    ck = load_checkpoint(p)
    assert ck.epoch == 1
    _same(ck.param_values, old)
    assert os.listdir(tmp_path) == ["ckpt.h5"], "temporary file left behind"


def test_interrupted_pklz_save_keeps_previous(tmp_path, monkeypatch):
    import lasres.weights.pklz as W
    p = tmp_path / "w.pklz"
    save_pklz(p, [np.ones(3)])

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(W, "_p2_array", boom)
    with pytest.raises(KeyboardInterrupt):
        save_pklz(p, [np.zeros(3)])
    monkeypatch.undo()
    _same(load_pklz(p), [np.ones(3)])
    assert os.listdir(tmp_path) == ["w.pklz"]


def test_foreign_hdf5_refused(tmp_path):
    import h5py
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("model_weights", data=np.zeros(3))
    with pytest.raises(WeightFileError, match="not a lasres checkpoint"):
        load_checkpoint(p)
    with pytest.raises(WeightFileError, match="not a lasres checkpoint"):
        load_weights(p)
    with pytest.raises(WeightFileError, match="HDF5"):
        load_pklz(p)


def test_future_version_and_corrupt_hdf5(tmp_path):
    import h5py
    p = tmp_path / "c.h5"
    save_checkpoint(p, [np.zeros(2)])
    with h5py.File(p, "a") as f:
        f.attrs["lasres_format_version"] = CHECKPOINT_FORMAT_VERSION + 1
    with pytest.raises(WeightFileError, match="version"):
        load_checkpoint(p)
    save_checkpoint(p, [np.zeros(2)])
    raw = p.read_bytes()
    p.write_bytes(raw[:200])
    with pytest.raises(WeightFileError):
        load_weights(p)
    q = tmp_path / "not.h5"
    q.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(WeightFileError, match="not an HDF5"):
        load_checkpoint(q)


def test_with_checkpoint_flag_is_a_deprecated_alias(tmp_path):
    p = tmp_path / "ckpt.h5"
    save_checkpoint(p, _values(), epoch=4)
    assert isinstance(load_weights(p), list)  # one return type without the flag
    with pytest.warns(DeprecationWarning, match="load_weights_with_checkpoint"):
        values, ck = load_weights(p, with_checkpoint=True)
    _same(values, _values())
    assert isinstance(ck, Checkpoint) and ck.epoch == 4
    with pytest.warns(DeprecationWarning):
        _, none = load_weights(FIXTURES / "wide_n1_k2.pklz", with_checkpoint=True)
    assert none is None


def test_data_reads_pickles_without_the_weights_package():
    # lasres.data depends on the restricted unpickler, not on lasres.weights
    import ast
    import lasres.data.cifar as cifar
    tree = ast.parse(open(cifar.__file__).read())
    sources = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert "io.safepickle" in sources and "weights" not in sources


# --- untrusted HDF5 read in a child process (issue 12: libhdf5 hangs) --------
HANG = Path(__file__).resolve().parent / "fuzz_cases" / "hdf5_hang_bitflip.h5"


def test_hang_file_is_the_global_heap_corruption(tmp_path):
    # The kept fuzz case differs from a fresh checkpoint of the same weights in
    # 'created' and ten flipped bits; the one that hangs is this one.
    assert HANG.is_file()
    raw = HANG.read_bytes()
    gcol = raw.index(b"GCOL")
    assert int.from_bytes(raw[gcol + 8:gcol + 16], "little") == 4096  # the collection's size
    free = gcol + 0x268  # the free-space object (index 0), after 8 strings of 'created', ...
    assert raw[free:free + 2] == b"\x00\x00"
    size = int.from_bytes(raw[free + 8:free + 16], "little")
    assert size == 4096 - 0x268 - 0x400  # 0x998 instead of 0xd98: one flipped bit (0x400)
    fresh = tmp_path / "fresh.h5"
    save_checkpoint(fresh, load_pklz(FIXTURES / "normal_n1_k1.pklz"), arch={"type": "normal"})
    assert shrink_global_heap_free_space(fresh.read_bytes()) != fresh.read_bytes()


def test_hdf5_hang_is_one_clean_error_within_seconds(tmp_path):
    made = tmp_path / "made_hang.h5"
    save_checkpoint(tmp_path / "good.h5", _values(), arch={"type": "normal"}, epoch=1)
    made.write_bytes(shrink_global_heap_free_space((tmp_path / "good.h5").read_bytes()))
    code = f"""
import os, sys, time
import lasres.weights.keras_h5 as K, lasres.weights as W
from lasres.errors import WeightFileError
for path in ({str(HANG)!r}, {str(made)!r}):
    for name in ('load_weights', 'load_checkpoint', 'checkpoint_arch', 'read_keras_h5'):
        t0 = time.monotonic()
        try:
            (getattr(W, name, None) or getattr(K, name))(path)
            print('LOADED', name)
        except WeightFileError as e:
            print('ERR', name, round(time.monotonic() - t0, 1), str(e))
try:
    os.waitpid(-1, os.WNOHANG)
    print('CHILD LEFT')
except ChildProcessError:
    print('NO CHILD LEFT')
"""
    p, seconds = run_bounded(code)
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stdout.splitlines()
    assert lines[-1] == "NO CHILD LEFT", p.stdout
    errors = [l for l in lines if l.startswith("ERR")]
    assert len(errors) == 8, p.stdout  # 2 files x 4 readers, none loaded
    hangs = [l for l in errors if "did not finish reading in 5 s: corrupt?" in l]
    assert len(hangs) == 6, p.stdout  # read_keras_h5: "not a Keras weight file" first
    assert all(float(l.split()[2]) < 20 for l in hangs), p.stdout
    assert seconds < 120


def test_hdf5_hang_in_the_scripts_is_one_error_line(tmp_path):
    script = Path(__file__).resolve().parents[1] / "scripts" / "test_model.py"
    code = (f"import subprocess, sys; p = subprocess.run([sys.executable, {str(script)!r}, "
            f"'normal', '1', '--weights', {str(HANG)!r}], capture_output=True, text=True); "
            f"print(p.returncode); print(p.stderr)")
    p, _ = run_bounded(code, timeout=300)
    rc, *err = p.stdout.splitlines()
    err = [l for l in err if l.strip()]
    assert rc == "2" and len(err) == 1, p.stdout
    assert err[0].startswith("error: ") and "did not finish reading" in err[0]
    assert "Traceback" not in p.stdout


def test_normal_checkpoint_loads_identically_through_the_reader_process(tmp_path):
    kw = _full_checkpoint_kwargs()
    p = tmp_path / "ckpt.h5"
    save_checkpoint(p, kw.pop("param_values"), **kw)
    ck = load_checkpoint(p)
    _same(ck.param_values, _values())
    assert all(v.flags.writeable and v.flags.c_contiguous for v in ck.param_values)
    assert ck.history == kw["history"] and all(isinstance(x, float) for x in
                                               ck.history["valid_error"])
    assert ck.epoch == 17 and isinstance(ck.epoch, int) and ck.arch == kw["arch"]


def test_run_isolated_turns_hang_crash_and_memory_into_errors():
    import signal
    from lasres.io.isolation import run_isolated

    def crash():
        os.kill(os.getpid(), signal.SIGSEGV)

    def greedy():
        return np.ones(2 * 1024 ** 3, dtype=np.uint8)  # 2 GiB, past the child's limit

    def forbidden():
        return {"x": Path("/")}  # not plain data: refused by the parent

    t0 = time.monotonic()
    with pytest.raises(WeightFileError, match=r"f.h5: HDF5 file did not finish reading in "
                                              r"1 s: corrupt\?"):
        run_isolated(time.sleep, 60, path="f.h5", max_bytes=0, timeout=1)
    assert time.monotonic() - t0 < 10
    with pytest.raises(WeightFileError, match="crashed the reader .signal SIGSEGV"):
        run_isolated(crash, path="f.h5", max_bytes=0)
    with pytest.raises(WeightFileError, match="needed more than"):
        run_isolated(greedy, path="f.h5", max_bytes=1024 ** 2)
    with pytest.raises(WeightFileError, match="f.h5: refusing what the reader"):
        run_isolated(forbidden, path="f.h5", max_bytes=0)
    with pytest.raises(WeightFileError, match="^inner message$"):
        run_isolated(lambda: (_ for _ in ()).throw(WeightFileError("inner message")),
                     path="f.h5", max_bytes=0)
    big = run_isolated(np.arange, 1000, path="f.h5", max_bytes=8000)
    np.testing.assert_array_equal(big, np.arange(1000))
    with pytest.raises(WeightFileError, match="refusing what the reader"):
        run_isolated(np.zeros, 10 ** 8, np.uint8, path="f.h5", max_bytes=1000)  # over the cap
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every reader was reaped
