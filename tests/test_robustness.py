"""Issue 12: nothing a file or a user does may exhaust the machine, lose work
or make a run unrepeatable.

One test (or table row) per finding of the issue: crafted sizes refused
before allocating (run under an address-space limit), the restricted
unpickler, --seed and exact resume after Ctrl-C, one-line errors for bad
input, metadata ranges, file modes, stale temporaries, nothing created
before the arguments are known to be good.
"""
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest

from _datasets import cifar10_subset
from _memlimit import REPO, run_limited
from lasres import cli
from lasres import layers as L
from lasres.cli import compare_main
from lasres.errors import DataError, WeightFileError
from lasres.train.interrupts import Terminated, deferred_interrupts, sigterm_as_interrupt
from lasres.weights import load_checkpoint, load_pklz, load_weights, save_checkpoint, save_pklz

MiB = 1024 ** 2


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def _normal1_values():
    from lasres.layers import get_all_param_values
    from lasres.models import build
    return get_all_param_values(build("normal", 1, 1))


@pytest.fixture(scope="module")
def real_checkpoint(tmp_path_factory, legacy_dir):
    """A lasres checkpoint of the real Lasagne normal 1 weights, with optimizer
    state, history and pixel mean (as fit writes them)."""
    from lasres.models import build
    values = load_pklz(legacy_dir / "normal_n1_k1.pklz")
    net = build("normal", 1, 1)
    L.set_all_param_values(net, values)
    trainable = [p.get_value() for p in L.get_all_params(net, trainable=True)]
    path = tmp_path_factory.mktemp("ckpt") / "last.h5"
    save_checkpoint(path, values, arch={"type": "normal", "depth": 1, "width": 1},
                    param_names=[f"p{i}" for i in range(len(values))],
                    pixel_mean=np.zeros((3, 32, 32), np.float32), epoch=1,
                    optimizer_state=[np.zeros_like(v) for v in trainable],
                    history={"epoch": [1], "train_loss": [2.0], "train_acc": [0.1],
                             "val_loss": [2.0], "val_acc": [0.1], "learning_rate": [0.1],
                             "seconds": [1.0]},
                    extra={"completed": True, "seed": 0})
    return path


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture(scope="module")
def cifar():
    return cifar10_subset(5000, 1000)


# --------------------------------------------------------------------------
# finding 1: a crafted 'count' attribute
# --------------------------------------------------------------------------
def test_crafted_count_attribute_is_refused_before_allocating(real_checkpoint, tmp_path):
    bad = _copy(real_checkpoint, tmp_path / "count.h5")
    with h5py.File(bad, "r+") as f:
        f["params"].attrs["count"] = 10 ** 9
    # 200 MiB of headroom: a list of 10**9 names needs tens of GB
    rc, rep, err = run_limited(f"""
try:
    lasres.weights.load_checkpoint({str(bad)!r})
    _report(outcome='loaded')
except lasres.errors.WeightFileError as e:
    _report(outcome='WeightFileError', msg=str(e))
""", 200 * MiB)
    assert rc == 0 and rep is not None, err[-2000:]
    assert rep["outcome"] == "WeightFileError" and "count" in rep["msg"], rep


@pytest.mark.parametrize("value", [-1, "many", 3.5, 10 ** 6])
def test_bad_count_values(real_checkpoint, tmp_path, value):
    bad = _copy(real_checkpoint, tmp_path / "count.h5")
    with h5py.File(bad, "r+") as f:
        f["params"].attrs["count"] = value
    with pytest.raises(WeightFileError, match="count"):
        load_checkpoint(bad)


# --------------------------------------------------------------------------
# finding 2: decompression bombs and uninitialised giants
# --------------------------------------------------------------------------
def test_pklz_bomb_is_refused_against_the_network(tmp_path):
    bomb = tmp_path / "bomb.pklz"
    save_pklz(bomb, [np.zeros((8000, 8000), np.float32)])  # 256 MiB of zeros, ~250 KB on disk
    assert bomb.stat().st_size < 2 * MiB
    # 120 MiB of headroom: reading the 256 MiB array would fail with MemoryError
    rc, rep, err = run_limited(f"""
from lasres.models import build
net = build('normal', 1, 1)
try:
    lasres.cli.load_network_weights(net, {str(bomb)!r})
    _report(outcome='loaded')
except lasres.errors.LasresError as e:
    _report(outcome=type(e).__name__, msg=str(e))
""", 120 * MiB)
    assert rc == 0 and rep is not None, err[-2000:]
    assert rep["outcome"] == "WeightFileError" and "refusing to load" in rep["msg"], rep


def test_pklz_over_the_default_cap_without_a_network(tmp_path):
    bomb = tmp_path / "bomb.pklz"
    save_pklz(bomb, [np.zeros((1024, 1024), np.float32)])  # 4 MiB
    with pytest.raises(WeightFileError, match="refusing to load"):
        load_weights(bomb, max_bytes=1 * MiB)
    assert load_weights(bomb, max_bytes=8 * MiB)[0].shape == (1024, 1024)


@pytest.mark.parametrize("pickled,message", [
    # numpy.ndarray((30000, 30000), 'f4'): 3.6 GB uninitialised, in 45 bytes
    (b"cnumpy\nndarray\n((I30000\nI30000\ntS'f4'\ntR.", "numpy.ndarray(...) is not allowed"),
    (b"(lp0\ncnumpy\nndarray\n((I30000\nI30000\ntS'f4'\ntRa.", "numpy.ndarray(...) is not allowed"),
    # _reconstruct with another shape than NumPy's (0,)
    (b"(lcnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I30000\nI30000\ntS'b'\ntRa.",
     "_reconstruct is only allowed"),
    # BYTEARRAY8 declaring 2**40 bytes
    (b"\x80\x05\x96" + (2 ** 40).to_bytes(8, "little") + b"\x85.", "BYTEARRAY8"),
])
def test_pickles_cannot_allocate_what_they_do_not_hold(tmp_path, pickled, message):
    p = tmp_path / "giant.pkl"
    p.write_bytes(pickled)
    with pytest.raises(WeightFileError) as info:
        load_pklz(p)
    assert message in str(info.value) and "MemoryError" not in str(info.value)


def test_numpy_array_state_must_match_its_data(tmp_path):
    # a legitimate protocol-2 array pickle whose BUILD state declares a
    # larger shape than its data
    good = tmp_path / "good.pkl"
    with open(good, "wb") as f:
        import io
        from lasres.weights import write_portable_pickle
        buf = io.BytesIO()
        write_portable_pickle([np.arange(4, dtype=np.float32)], buf)
        f.write(buf.getvalue())
    assert np.array_equal(load_pklz(good)[0], np.arange(4, dtype=np.float32))
    raw = good.read_bytes().replace(b"K\x04\x85", b"J\x00\x00\x00\x10\x85", 1)
    assert raw != good.read_bytes()
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(raw)
    with pytest.raises(WeightFileError, match="array state"):
        load_pklz(bad)


def test_huge_chunked_dataset_is_refused(real_checkpoint, tmp_path):
    bad = _copy(real_checkpoint, tmp_path / "chunked.h5")
    with h5py.File(bad, "r+") as f:
        del f["params/00000"]
        f["params"].create_dataset("00000", shape=(200000, 200000), dtype="f4",
                                   chunks=(100, 100))
    assert bad.stat().st_size < 2 * MiB
    with pytest.raises(WeightFileError, match="refusing to load"):
        load_checkpoint(bad)
    # against the network, the shape is refused before the size
    from lasres.models import build
    with pytest.raises(WeightFileError, match="shape"):
        cli.load_network_weights(build("normal", 1, 1), str(bad))


def test_npz_header_declaring_a_giant(tmp_path):
    import io
    from numpy.lib import format as npformat
    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False,
                                          "shape": (100000, 100000)})
    buf.write(b"\0" * 64)
    p = tmp_path / "giant.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("arr_0.npy", buf.getvalue())
    with pytest.raises(WeightFileError, match="refusing to load"):
        load_weights(p)


def test_data_readers_are_capped(tmp_path):
    from lasres.data.cifar import _read_pickle
    from lasres.data.mnist import _gunzip_capped
    p = tmp_path / "data_batch_1"
    p.write_bytes(b"cnumpy\nndarray\n((I30000\nI30000\ntS'f4'\ntR.")
    with pytest.raises(DataError):
        _read_pickle(str(p), "CIFAR-10 python batch")
    bomb = gzip.compress(b"\0" * (4 * MiB))
    with pytest.raises(DataError, match="refusing to decompress"):
        _gunzip_capped(bomb, "bomb.gz", cap=1 * MiB)
    assert len(_gunzip_capped(bomb, "bomb.gz", cap=8 * MiB)) == 4 * MiB


# --------------------------------------------------------------------------
# finding 3: --seed seeds everything; finding 4: Ctrl-C then --resume
# --------------------------------------------------------------------------
class _Data:
    def __init__(self, n=48):
        rng = np.random.RandomState(0)
        self.X_train = rng.randn(n, 3, 8, 8).astype("float32")
        self.y_train = rng.randint(0, 10, n).astype("int32")
        self.X_valid, self.y_valid = self.X_train[:16], self.y_train[:16]
        self.pixel_mean = np.zeros((3, 8, 8), "float32")


def _net():
    """Conv + BN + dropout + dense: initialisation, BN averages and a random stream."""
    from lasres.nonlinearities import softmax
    l = L.InputLayer((None, 3, 8, 8))
    l = L.batch_norm(L.Conv2DLayer(l, 4, 3, pad=1))
    l = L.DropoutLayer(l, p=0.3)
    return L.DenseLayer(l, 10, nonlinearity=softmax)


def _train(out, seed, epochs=3, interrupt_at=None, resume=False):
    from lasres.random import seed_everything
    from lasres.train import Trainer, fit, restore_training_state
    seed_everything(seed)
    net = _net()
    tr = Trainer(net, learning_rate=0.05, backend="c")
    history, start = None, 0
    if resume:
        ckpt = cli.load_network_weights(net, os.path.join(out, "last.h5"))
        history, start = restore_training_state(tr, ckpt)
    if interrupt_at is not None:
        step, real = [0], tr.train_fn

        def train_fn(X, y):
            step[0] += 1
            if step[0] == interrupt_at:
                raise KeyboardInterrupt
            return real(X, y)
        tr.train_fn = train_fn
    hist = fit(tr, _Data(), epochs=epochs, out_dir=str(out), batch_size=8, seed=seed,
               schedule=((0, 0.05),), history=history, start_epoch=start, plot=False,
               progress=False, log=lambda *a: None)
    return hist, [p.get_value() for p in L.get_all_params(net)]


def _same_run(a, b):
    (ha, pa), (hb, pb) = a, b
    for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rate"):
        assert getattr(ha, k) == getattr(hb, k), k
    assert len(pa) == len(pb)
    for x, y in zip(pa, pb):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def test_seed_makes_training_bit_identical(tmp_path):
    a = _train(tmp_path / "a", seed=7, epochs=2)
    b = _train(tmp_path / "b", seed=7, epochs=2)
    _same_run(a, b)
    c = _train(tmp_path / "c", seed=8, epochs=2)
    assert not np.array_equal(a[1][0], c[1][0])  # another seed, other initial weights


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path):
    whole = _train(tmp_path / "whole", seed=3, epochs=3)
    out = tmp_path / "cut"
    # 48 images, batch 8: 6 steps an epoch; Ctrl-C at step 4 of epoch 2
    with pytest.raises(KeyboardInterrupt):
        _train(out, seed=3, epochs=3, interrupt_at=10)
    assert load_checkpoint(out / "last.h5").epoch == 1
    # a fresh process would build the network again from the same seed
    resumed = _train(out, seed=3, epochs=3, resume=True)
    _same_run(whole, resumed)


def test_sigterm_ends_a_front_end_as_ctrl_c_does(capsys):
    """``kill PID`` (a batch scheduler's time limit) reaches the running code as
    a KeyboardInterrupt: one line, status 143, the default handler back after."""
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    seen = []

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the handler raises before this ends
        except KeyboardInterrupt as exc:
            seen.append(exc)
            raise
        return 0

    t0 = time.time()
    assert cli.main_wrapper(main, []) == 143
    assert time.time() - t0 < 10
    assert len(seen) == 1 and isinstance(seen[0], Terminated)
    assert capsys.readouterr().err.strip() == "terminated"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def ctrl_c(argv):
        raise KeyboardInterrupt
    assert cli.main_wrapper(ctrl_c, []) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_deferred_interrupts_hold_a_signal_until_the_block_ends():
    done = []
    with pytest.raises(KeyboardInterrupt) as info:
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            done.append("rest of the block")
    assert done and not isinstance(info.value, Terminated)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(Terminated):
        with sigterm_as_interrupt(), deferred_interrupts():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("again")
    assert done == ["rest of the block", "again"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(ValueError):  # the block's own exception wins
        with deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError


def test_ctrl_c_while_an_epoch_is_saved_keeps_the_epoch(tmp_path, monkeypatch):
    """A Ctrl-C that lands while the epoch's first checkpoint is being written
    waits for the epoch's files: the checkpoint holds that epoch, and the
    message says so."""
    import lasres.weights
    from lasres.train import Trainer, fit
    real, calls = lasres.weights.save_checkpoint, []

    def save_checkpoint(path, *args, **kwargs):
        calls.append(os.path.basename(path))
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return real(path, *args, **kwargs)
    monkeypatch.setattr(lasres.weights, "save_checkpoint", save_checkpoint)
    said = []
    with pytest.raises(KeyboardInterrupt):
        fit(Trainer(_net(), learning_rate=0.05, backend="c"), _Data(), epochs=3,
            out_dir=str(tmp_path), batch_size=8, schedule=((0, 0.05),), plot=False,
            progress=False, log=said.append)
    assert calls == ["best.h5", "last.h5"]  # best first: see test_attacks_checkpoint
    assert load_checkpoint(tmp_path / "last.h5").epoch == 1
    assert load_checkpoint(tmp_path / "best.h5").epoch == 1
    assert len(json.loads((tmp_path / "history.json").read_text())["epoch"]) == 1
    assert said[-1].startswith("interrupted after epoch 1: ") and "(end of epoch 1)" in said[-1]


@pytest.mark.slow
def test_kill_stops_train_nn_at_the_last_epoch_end(cifar, tmp_path):
    """SIGTERM during epoch 2 of train_nn.py: the partial epoch is discarded,
    last.h5 is the end of epoch 1, no temporary file is left, and the
    process says so in a line and exits with 143."""
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-u", os.path.join(REPO, "scripts", "train_nn.py"),
                          "normal", "1", "--data", str(cifar), "--limit", "600", "--epochs",
                          "100", "--lr-schedule", "0.05", "--out", str(out), "--no-plot"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.startswith("epoch   1/100"):
                p.send_signal(signal.SIGTERM)
                break
        rest, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    said = "".join(lines) + rest
    # the signal lands in epoch 1's bookkeeping (held until it is written) or in epoch 2
    assert ("interrupted after epoch 1: " in said or "interrupted in epoch 2: " in said), \
        said[-2000:]
    assert "last.h5 (end of epoch 1) is the resume point" in said, said[-2000:]
    assert load_checkpoint(out / "last.h5").epoch == 1
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


@pytest.mark.slow
def test_train_nn_seed_is_repeatable(cifar, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        rc = cli.main_wrapper(cli.train_main, [
            "normal", "1", "--data", str(cifar), "--epochs", "1", "--limit", "600",
            "--lr-schedule", "0.05", "--out", str(out), "--seed", "1", "--no-plot"])
        assert rc == 0
        hist = json.loads((out / "history.json").read_text())
        runs.append((hist, load_checkpoint(out / "last.h5")))
    (ha, ca), (hb, cb) = runs
    for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert ha[k] == hb[k], k
    for x, y in zip(ca.param_values + ca.optimizer_state, cb.param_values + cb.optimizer_state):
        assert np.array_equal(x, y)


# --------------------------------------------------------------------------
# findings 5, 6, 7: one-line errors, metadata ranges, nothing created
# --------------------------------------------------------------------------
def _edit_h5(src, dst, fn):
    _copy(src, dst)
    with h5py.File(dst, "r+") as f:
        fn(f)
    return dst


def _set_attr(name, value, group="/"):
    def fn(f):
        f[group].attrs[name] = value
    return fn


def _wrong_optimizer(f):
    del f["optimizer/00000"]
    f["optimizer"].create_dataset("00000", data=np.zeros((2, 2), np.float32))


BAD_CHECKPOINTS = [
    # (edit, message)
    (_set_attr("arch_json", "[1, 2]"), "expected an object"),
    (_set_attr("arch_json", "{"), "corrupt checkpoint"),
    (_set_attr("extra_json", "3"), "expected an object"),
    (_set_attr("epoch", -5), "epoch is -5"),
    (_set_attr("epoch", "five"), "attribute epoch"),
    (_set_attr("count", 10 ** 9, "params"), "count"),
    (_set_attr("names_json", "[1]", "params"), "names_json"),
    (_set_attr("lasres_format_version", 99), "version 99"),
]


@pytest.mark.parametrize("edit,message", BAD_CHECKPOINTS)
def test_bad_checkpoint_metadata_is_one_line(real_checkpoint, tmp_path, capsys, edit, message):
    bad = _edit_h5(real_checkpoint, tmp_path / "bad.h5", edit)
    assert cli.main_wrapper(cli.test_main, ["normal", "1", "--weights", str(bad)]) == 2
    line = _one_error_line(capsys)
    assert message in line, line


def test_bad_training_inputs_are_one_line_and_create_nothing(cifar, real_checkpoint, tmp_path,
                                                             capsys):
    a_file = tmp_path / "README.md"
    a_file.write_text("not a folder")
    wrong_opt = _edit_h5(real_checkpoint, tmp_path / "wrongopt.h5", _wrong_optimizer)
    minus5 = _edit_h5(real_checkpoint, tmp_path / "minus5.h5", _set_attr("epoch", -5))
    midepoch = _edit_h5(real_checkpoint, tmp_path / "mid.h5",
                        _set_attr("extra_json", json.dumps({"completed": False})))
    data = ["--data", str(cifar), "--limit", "200", "--no-plot"]
    fresh = tmp_path / "fresh"
    table = [
        (["--out", str(a_file)], "exists and is not a folder"),
        (["--out", str(a_file / "sub")], "is not a folder"),
        (["--out", "/proc/lasres-test/run"], "--out /proc/lasres-test/run"),
        (["--out", str(fresh), "--resume"], "nothing to resume"),
        (["--out", str(fresh), "--resume", str(wrong_opt)], "optimizer array 0 has shape"),
        (["--out", str(fresh), "--resume", str(minus5)], "epoch is -5"),
        (["--out", str(fresh), "--resume", str(midepoch)], "part-way through an epoch"),
        (["--out", str(fresh), "--resume", str(real_checkpoint), "--epochs", "1"],
         "nothing left to do"),
        (["--out", str(fresh), "--seed", "-1"], "--seed must be"),
        (["--out", str(fresh), "--limit", "0"], "--limit must be positive"),
        (["--out", str(fresh), "--valid-fraction", "1.5"], "--valid-fraction"),
        (["--out", str(fresh), "--epochs", "0"], "must be positive"),
        (["--out", str(fresh), "--lr-schedule", "10:0.1"], "must start at epoch 0"),
        (["--out", str(fresh), "--weights", str(tmp_path / "missing.pklz")], "weight file not found"),
        (["--out", str(fresh), "--weights", str(a_file)], "unknown weight file format"),
        (["--out", str(fresh), "--weights", str(minus5)], "epoch is -5"),
        (["--out", str(fresh), "--devices", "2"], "need(s) --backend jax"),
        (["--out", str(fresh), "--backend", "nosuch"], "unknown backend"),
        (["--out", str(fresh), "--option", "preact"], "KEY=VALUE"),
    ]
    for extra, message in table:
        rc = cli.main_wrapper(cli.train_main, ["normal", "1"] + data + extra)
        line = _one_error_line(capsys)
        assert rc == 2 and message in line, (extra, line)
        assert not fresh.exists(), extra  # nothing created before the arguments are good
    # missing data: one line that says how to get it, and no run folder
    rc = cli.main_wrapper(cli.train_main, ["normal", "1", "--data", str(tmp_path / "nodata"),
                                           "--out", str(fresh)])
    line = _one_error_line(capsys)
    assert rc == 2 and "--download" in line and not fresh.exists(), line


def test_compare_bad_out_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "README.md"
    a_file.write_text("x")
    for out, message in ((a_file, "exists and is not a folder"),
                         (a_file / "sub", "is not a folder")):
        assert cli.main_wrapper(compare_main, ["cnn:5:1", "--out", str(out),
                                               "--data", str(tmp_path)]) == 2
        line = _one_error_line(capsys)
        assert message in line, line


def test_scripts_print_no_traceback_for_a_bad_out(tmp_path):
    a_file = tmp_path / "README.md"
    a_file.write_text("x")
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "train_nn.py"), "normal",
                        "1", "--out", str(a_file)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and "error:" in p.stderr


# --------------------------------------------------------------------------
# finding 7: modes and stale temporaries
# --------------------------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mode):
    from lasres.data import save_pixel_mean
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "c.h5", [np.zeros(3)])
        save_pklz(tmp_path / "w.pklz", [np.zeros(3)])
        save_pixel_mean(tmp_path / "m.npy", np.zeros((3, 4, 4)))
    finally:
        os.umask(old)
    for f in ("c.h5", "w.pklz", "m.npy"):
        assert (tmp_path / f).stat().st_mode & 0o777 == mode, f


def test_kill_9_leftovers_are_removed_by_the_next_save(tmp_path):
    # a writer killed in the middle of a checkpoint save
    code = f"""
import os, sys, time
sys.path.insert(0, {REPO!r})
from lasres.io.atomic import atomic_path
with atomic_path({str(tmp_path / 'last.h5')!r}) as tmp:
    with open(tmp, 'wb') as f:
        f.write(b'x' * 1000000)
        f.flush()
        print('writing', flush=True)
        time.sleep(600)
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "writing"
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".last.h5.")
    # a temporary of another, live writer of the same folder is left alone
    live = tmp_path / f".last.h5.{os.getppid()}.abcdefgh.tmp"
    live.write_bytes(b"busy")
    save_checkpoint(tmp_path / "last.h5", [np.zeros(3)])
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith(".tmp")) == [live.name]
    assert load_checkpoint(tmp_path / "last.h5").param_values[0].shape == (3,)
