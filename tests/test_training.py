"""fit(): Ctrl-C saves a resumable checkpoint, a NaN loss stops with a clear
error, the schedule parser, and a checkpoint that round-trips the state."""
import numpy as np
import pytest

from lasres import layers as L
from lasres.errors import LasresError
from lasres.train import (LEGACY_SCHEDULE, History, TrainerBase, TrainingDiverged, fit,
                             learning_rate_at, parse_schedule)
from lasres.weights import load_checkpoint


class Data:
    def __init__(self, n=40):
        rng = np.random.RandomState(0)
        self.X_train = rng.randn(n, 3, 8, 8).astype("float32")
        self.y_train = rng.randint(0, 10, n).astype("int32")
        self.X_valid, self.y_valid = self.X_train[:8], self.y_train[:8]
        self.pixel_mean = np.zeros((3, 8, 8), "float32")


class FakeTrainer(TrainerBase):
    """A real network with a scripted train_fn (no compilation needed)."""

    def __init__(self, losses):
        l_in = L.InputLayer((None, 3, 8, 8))
        self.network = L.DenseLayer(l_in, 10, nonlinearity=None)
        self.losses = iter(losses)
        self.steps = 0

        class LR:
            value = None

            def set_value(self, v):
                LR.value = v

            def get_value(self):
                return LR.value
        self.learning_rate = LR()
        self.velocities = []

    def train_fn(self, X, y):
        self.steps += 1
        loss = next(self.losses)
        if loss == "interrupt":
            raise KeyboardInterrupt
        self.network.W.set_value(self.network.W.get_value() + 1)  # "a step"
        return np.float32(loss), np.float32(0.1)

    def predict_fn(self, X):
        return np.full((len(X), 10), 0.1, "float32")

    def optimizer_state(self):
        return []


def test_ctrl_c_keeps_the_last_epoch_end_as_the_resume_point(tmp_path):
    # 40 images, batch 8: 5 steps an epoch; interrupted at step 3 of epoch 2
    tr = FakeTrainer([2.3] * 5 + [2.2, 2.2, "interrupt"])
    lines = []
    with pytest.raises(KeyboardInterrupt):
        fit(tr, Data(), epochs=3, out_dir=str(tmp_path), batch_size=8, plot=False, progress=False,
            log=lines.append)
    ck = load_checkpoint(tmp_path / "last.h5")
    # the end of epoch 1 (5 steps), not the 7 steps taken when Ctrl-C came
    assert ck.extra["completed"] is True and ck.epoch == 1
    # each fake step adds 1 to W: the live network is 2 steps past the checkpoint
    np.testing.assert_array_equal(tr.network.W.get_value() - ck.param_values[0], 2.0)
    assert "interrupted in epoch 2" in lines[-1] and "resume point" in lines[-1]


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    tr = FakeTrainer([2.3, float("nan")])
    with pytest.raises(TrainingDiverged, match="training loss became nan at epoch 1, batch 2"):
        fit(tr, Data(), epochs=2, out_dir=str(tmp_path), batch_size=8, plot=False,
            progress=False, log=lambda *a: None)
    assert issubclass(TrainingDiverged, LasresError)


def test_epochs_write_history_and_checkpoints(tmp_path):
    tr = FakeTrainer([2.0] * 10)
    lines = []
    hist = fit(tr, Data(), epochs=2, out_dir=str(tmp_path), batch_size=8, plot=False,
               progress=False, log=lines.append, schedule=((0, 0.5), (1, 0.05)))
    assert hist.epoch == [1, 2] and hist.learning_rate == [0.5, 0.05]
    assert len(lines) == 2 and "lr 0.05" in lines[1]
    ck = load_checkpoint(tmp_path / "last.h5")
    assert ck.epoch == 2 and History.from_dict(ck.history).epoch == [1, 2]
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("epoch,train_loss")


def test_schedules():
    assert parse_schedule("legacy") == LEGACY_SCHEDULE
    assert [learning_rate_at(LEGACY_SCHEDULE, e) for e in (0, 9, 10, 79, 80, 120, 199)] == \
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.001, 0.001]
    assert parse_schedule("0.05") == ((0, 0.05),)
    assert parse_schedule("30:0.01,0:0.1") == ((0, 0.1), (30, 0.01))
    with pytest.raises(LasresError):
        parse_schedule("0:abc")
