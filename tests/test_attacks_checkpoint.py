"""Issue 29, items 2 and 17: the checkpoint pair and what --resume accepts.

Item 2: a process killed (``kill -9``: nothing after the kill runs) between
the writes of ``last.h5`` and ``best.h5`` at the end of an epoch must not lose
that epoch's best weights: after ``--resume`` the pair equals an
uninterrupted run's, wherever the kill landed. The run here is scripted so
that the best validation epoch is epoch 2 of 3, the case the old order lost.

Item 17: ``--resume`` compares the seed, batch size, learning-rate schedule,
augmentation and recipe (and optimizer, L2, momentum) with what the
checkpoint recorded and refuses a mismatch, unless ``--resume-override``
names it.
"""
import numpy as np
import pytensor
import pytest

import lasres.weights
from lasres import cli
from lasres import layers as L
from lasres.train import TrainerBase, fit, restore_training_state
from lasres.weights import load_checkpoint, save_checkpoint

#: Validation accuracy of each epoch (1-based) of the scripted run.
VAL_ACC = {1: 0.5, 2: 0.875, 3: 0.625}
STEPS = 3  # training steps an epoch (24 images, batch 8)


class _Killed(BaseException):
    """``kill -9``: no handler of lasres runs (not a KeyboardInterrupt)."""


class _Data:
    def __init__(self):
        rng = np.random.RandomState(0)
        self.X_train = rng.randn(24, 3, 4, 4).astype("float32")
        self.y_train = rng.randint(0, 10, 24).astype("int32")
        self.X_valid, self.y_valid = self.X_train[:8], self.y_train[:8]
        self.pixel_mean = np.zeros((3, 4, 4), "float32")


def _net():
    from lasres.nonlinearities import softmax
    l = L.InputLayer((None, 3, 4, 4))
    return L.DenseLayer(l, 10, nonlinearity=softmax)


class _Scripted(TrainerBase):
    """Each step adds 1 to the weights; validation accuracy follows VAL_ACC
    (read back from the weights, so a resumed trainer agrees)."""

    def __init__(self, network):
        self.network = network
        self.learning_rate = pytensor.shared(np.float32(0.1))
        self.W = L.get_all_params(network)[0]

    def train_fn(self, X, y):
        self.W.set_value(self.W.get_value() + 1)
        return np.float32(1.0), np.float32(0.5)

    def predict_fn(self, X):
        steps = int(round(float(self.W.get_value().flat[0] - self._w0)))
        acc = VAL_ACC[steps // STEPS]
        y = _Data().y_valid[:len(X)]
        right = int(round(acc * len(X)))
        probs = np.full((len(X), 10), 0.01, np.float32)
        probs[np.arange(len(X)), np.where(np.arange(len(X)) < right, y, (y + 1) % 10)] = 0.91
        return probs


def _run(out, monkeypatch=None, kill_after=None, resume=False):
    net = _net()
    L.set_all_param_values(net, [np.zeros((48, 10), np.float32), np.zeros(10, np.float32)])
    tr = _Scripted(net)
    tr._w0 = 0.0
    history, start = None, 0
    if resume:
        ckpt = cli.load_network_weights(net, str(out / "last.h5"))
        history, start = restore_training_state(tr, ckpt)
    if kill_after is not None:
        real, writes = lasres.weights.save_checkpoint, []

        def save(path, *args, **kwargs):
            real(path, *args, **kwargs)
            writes.append(path)
            if len(writes) == kill_after:
                raise _Killed(path)
        monkeypatch.setattr(lasres.weights, "save_checkpoint", save)
    try:
        fit(tr, _Data(), epochs=3, out_dir=str(out), batch_size=8, schedule=((0, 0.1),),
            augment=None, history=history, start_epoch=start, plot=False, progress=False,
            log=lambda *a: None)
    finally:
        if monkeypatch is not None:
            monkeypatch.undo()


def _same_file(a, b):
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.epoch == cb.epoch, (a, ca.epoch, cb.epoch)
    for x, y in zip(ca.param_values, cb.param_values):
        assert np.array_equal(x, y)
    for k in ("epoch", "train_loss", "val_acc", "learning_rate"):  # (not the seconds)
        assert ca.history[k] == cb.history[k], k


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    _run(out)
    assert load_checkpoint(out / "best.h5").epoch == 2  # the scripted best
    assert load_checkpoint(out / "last.h5").epoch == 3
    return out


@pytest.mark.parametrize("kill_after", [1, 2, 3, 4, 5])
def test_a_kill_between_the_checkpoint_writes_loses_nothing(whole, tmp_path, monkeypatch,
                                                            kill_after):
    """Killed right after the k-th checkpoint write of the run (5 in all:
    epoch 1 and 2 write both files, epoch 3 only last.h5), then resumed."""
    out = tmp_path / "run"
    with pytest.raises(_Killed):
        _run(out, monkeypatch, kill_after=kill_after)
    if not (out / "last.h5").exists():  # killed before any last.h5: a fresh start
        _run(out)
    else:
        _run(out, resume=True)
    _same_file(out / "best.h5", whole / "best.h5")
    _same_file(out / "last.h5", whole / "last.h5")


def test_best_is_written_before_last(tmp_path, monkeypatch):
    out = tmp_path / "run"
    with pytest.raises(_Killed) as info:
        _run(out, monkeypatch, kill_after=1)
    assert str(info.value).endswith("best.h5")


# --------------------------------------------------------------------------
# item 17: --resume with other settings
# --------------------------------------------------------------------------
RECORDED = {"completed": True, "seed": 0, "batch_size": 64,
            "schedule": [[0, 0.01], [10, 0.1], [80, 0.01], [120, 0.001]], "augment": "batch",
            "recipe": "legacy", "optimizer": "nesterov", "l2": 1e-4, "momentum": 0.9}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A normal 1 checkpoint at epoch 1 recording the default settings, as fit writes it."""
    from lasres.models import build
    net = build("normal", 1, 1)
    values = L.get_all_param_values(net)
    trainable = [p.get_value() for p in L.get_all_params(net, trainable=True)]
    path = tmp_path_factory.mktemp("resume") / "last.h5"
    save_checkpoint(path, values, arch={"type": "normal", "depth": 1, "width": 1}, epoch=1,
                    optimizer_state=[np.zeros_like(v) for v in trainable],
                    history={"epoch": [1], "train_loss": [2.0], "train_acc": [0.1],
                             "val_loss": [2.0], "val_acc": [0.1], "learning_rate": [0.01],
                             "seconds": [1.0]}, extra=RECORDED)
    return path


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("flags,message", [
    (["--seed", "5"], "--seed 0, not 5"),
    (["--batch-size", "32"], "--batch-size 64, not 32"),
    (["--lr-schedule", "0.1"], "--lr-schedule 0:0.01,10:0.1,80:0.01,120:0.001, not 0:0.1"),
    (["--augment", "none"], "--augment batch, not none"),
    (["--recipe", "keras-seed"], "--recipe legacy, not keras-seed"),
    (["--seed", "5", "--l2", "0"], "--seed 0, not 5; --l2 0.0001, not 0"),
])
def test_resume_refuses_other_settings(recorded, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    rc = cli.main_wrapper(cli.train_main, ["normal", "1", "--data", str(tmp_path / "nodata"),
                                           "--out", str(out), "--resume", str(recorded),
                                           "--epochs", "3", "--no-plot"] + flags)
    line = _one_error_line(capsys)
    assert rc == 2 and message in line and "--resume-override" in line, line
    assert not out.exists()


def test_resume_override_accepts_the_named_settings(recorded, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["normal", "1", "--data", str(tmp_path / "nodata"), "--out", str(out), "--resume",
            str(recorded), "--epochs", "3", "--no-plot", "--seed", "5", "--batch-size", "32"]
    rc = cli.main_wrapper(cli.train_main, base + ["--resume-override", "seed"])
    line = _one_error_line(capsys)
    assert rc == 2 and "--batch-size 64, not 32" in line and "--seed" not in line, line
    # both named: the settings pass, the run stops at the (missing) data
    rc = cli.main_wrapper(cli.train_main, base + ["--resume-override", "seed,batch-size"])
    line = _one_error_line(capsys)
    assert rc == 2 and "nodata" in line, line
    rc = cli.main_wrapper(cli.train_main, base + ["--resume-override", "colour"])
    line = _one_error_line(capsys)
    assert rc == 2 and "unknown setting" in line, line


def test_resume_with_the_same_settings_is_not_refused(recorded, tmp_path, capsys):
    rc = cli.main_wrapper(cli.train_main, ["normal", "1", "--data", str(tmp_path / "nodata"),
                                           "--out", str(tmp_path / "run"), "--resume",
                                           str(recorded), "--epochs", "3", "--no-plot"])
    line = _one_error_line(capsys)
    assert rc == 2 and "nodata" in line, line  # it got past the settings, to the data
