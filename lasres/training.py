"""Training: the legacy recipe as a library API.

:class:`Trainer` compiles a network's training step (mean cross-entropy +
L2 penalty, Nesterov momentum, batch-norm running averages through their
default updates — exactly the Lasagne seed's ``train_nn.py``) and one
inference function shared by validation and testing. :func:`fit` runs
epochs with a progress bar, a learning-rate schedule, checkpoints (best and
last, atomic, resumable), NaN detection, Ctrl-C handling, and writes the
history as CSV/JSON and the training curves as PNG.
"""
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field

from types import MappingProxyType
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import pytensor

from ._atomic import atomic_path
from . import updates as lupdates
from .config import get_mode
from .errors import LasresError
from .evaluation import loss_and_accuracy
from .layers import count_params, get_all_params
from .recipe import compile_predict, legacy_objective
from .recipes import LEGACY, LEGACY_SCHEDULE

__all__ = ["LEGACY_SCHEDULE", "parse_schedule", "learning_rate_at", "TrainerBase", "Trainer",
           "TrainingDiverged",
           "History", "fit", "predict_in_batches", "OPTIMIZERS", "optimizer_updates",
           "restore_training_state", "check_resumable", "check_optimizer_state"]

#: A learning-rate schedule: ``(first epoch, rate)`` pairs sorted by epoch.
Schedule = Tuple[Tuple[int, float], ...]

class TrainingDiverged(LasresError):
    """The training loss became NaN or infinite."""


def parse_schedule(text: Optional[str]) -> Schedule:
    """Parse ``'0:0.01,10:0.1,80:0.01,120:0.001'`` (or ``'legacy'``) into a
    sorted tuple of ``(first_epoch, learning_rate)``; a single number means a
    constant rate."""
    if text is None or text == "legacy":
        return LEGACY_SCHEDULE
    try:
        if ":" not in text:
            return ((0, float(text)),)
        pairs = []
        for item in text.split(","):
            epoch, lr = item.split(":")
            pairs.append((int(epoch), float(lr)))
    except ValueError:
        raise LasresError(f"bad learning-rate schedule {text!r}: expected 'legacy', a number, "
                          "or EPOCH:RATE pairs such as '0:0.01,10:0.1,80:0.01,120:0.001'") from None
    pairs.sort()
    if pairs[0][0] != 0:
        raise LasresError(f"bad learning-rate schedule {text!r}: it must start at epoch 0")
    return tuple(pairs)


def learning_rate_at(schedule: Schedule, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based) under ``schedule``."""
    lr = schedule[0][1]
    for first, rate in schedule:
        if epoch >= first:
            lr = rate
    return lr


class TrainerBase(object):
    """What :func:`fit`, :func:`restore_training_state` and the front ends may
    call on a trainer; :class:`Trainer` and
    :class:`lasres.jax_trainer.JaxTrainer` are its two implementations.

    A subclass sets :attr:`network`, :attr:`learning_rate`, :attr:`train_fn`,
    :attr:`predict_fn` and :attr:`velocities`; the defaults here are those of
    a trainer whose state lives in the network's shared variables, in one
    process, on one device.

    Attributes
    ----------
    network : Layer
        Output layer.
    learning_rate : shared variable or :class:`lasres.jax_trainer.HostScalar`
        ``get_value()`` / ``set_value()``; :func:`fit` sets it each epoch.
    train_fn : callable
        ``train_fn(X, y) -> (loss, accuracy)``, one optimizer step.
    predict_fn : callable
        ``predict_fn(X) -> probabilities`` with the stored BN statistics.
    velocities : list of shared variables
        The optimizer state, in parameter order.
    compile_seconds : dict
    process_index : int
        This process's index in a multi-process run; only process 0 writes files.
    num_devices : int
        Devices a training batch is split over (it must split evenly).
    exact_resume : bool
        True: the random streams of a checkpoint must fit, or resuming fails.
    """

    network = None
    learning_rate = None
    train_fn = None
    predict_fn = None
    velocities = ()
    compile_seconds = MappingProxyType({})
    process_index = 0
    num_devices = 1
    exact_resume = False

    @property
    def num_params(self) -> int:
        """The number of parameter values of :attr:`network`."""
        return count_params(self.network)

    def sync_to_host(self) -> None:
        """Bring the network's shared variables and :attr:`velocities` up to
        date with the trainer's own copy of the state (nothing to do here)."""

    def sync_to_device(self) -> None:
        """Hand values set on the shared variables to the trainer's own copy of
        the state (nothing to do here)."""

    def optimizer_state(self) -> list:
        """The optimizer state as NumPy arrays, in parameter order (syncs first)."""
        self.sync_to_host()
        return [v.get_value() for v in self.velocities]

    def set_optimizer_state(self, values) -> None:
        """Set the optimizer state (e.g. from a checkpoint).

        Raises
        ------
        LasresError
            Not one array of the right shape per optimizer variable.
        """
        check_optimizer_state(values, [v.get_value(borrow=True).shape for v in self.velocities])
        for v, val in zip(self.velocities, values):
            v.set_value(np.asarray(val, dtype=v.dtype))


class Trainer(TrainerBase):
    """Compiled functions for training and evaluating ``network``.

    Parameters
    ----------
    network : Layer
        Output layer (softmax probabilities).
    l2 : float
        Weight of the L2 penalty over all regularizable params (the legacy
        recipe's, :data:`lasres.recipes.LEGACY`; BN gammas included, as in Lasagne).
    momentum : float
        Nesterov momentum.
    learning_rate : float
        Initial value of :attr:`learning_rate`.
    backend : str or None
        ``'c'`` (default), ``'jax'``, ... (see :mod:`lasres.config`).
    optimizer : {'nesterov', 'adam'}
        ``'adam'``: Adam with Keras's and Lasagne's defaults (beta1 0.9,
        beta2 0.999, epsilon 1e-8), the RoR seed's optimizer; ``momentum``
        is then unused.

    Attributes
    ----------
    train_fn : callable
        ``train_fn(X, y) -> (loss, accuracy)``, one Nesterov step.
    predict_fn : callable
        ``predict_fn(X) -> probabilities`` with the stored BN statistics.
    learning_rate : shared variable
    params : list of shared variables
        The trainable parameters.
    velocities : list of shared variables
        The optimizer state, in parameter order (for Adam: the moments and
        the step counter).
    compile_seconds : dict
    """

    exact_resume = True  # the C backend resumes exactly or not at all

    def __init__(self, network, l2: float = LEGACY.l2, momentum: float = LEGACY.momentum,
                 learning_rate: float = LEGACY_SCHEDULE[0][1], backend: Optional[str] = None,
                 optimizer: str = LEGACY.optimizer):
        self.network = network
        self.backend = backend
        mode = get_mode(backend)
        self.learning_rate = pytensor.shared(np.float32(learning_rate), name="learning_rate")
        obj = legacy_objective(network, l2)
        self.params = obj.params
        upd = optimizer_updates(optimizer, obj.loss, self.params, self.learning_rate, momentum)
        param_set = set(self.params)
        self.velocities = [v for v in upd if v not in param_set]
        self.compile_seconds = {}
        t0 = time.perf_counter()
        self.train_fn = pytensor.function([obj.inputs, obj.targets], [obj.loss, obj.accuracy],
                                          updates=upd, mode=mode)
        self.compile_seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.predict_fn = compile_predict(network, backend)
        self.compile_seconds["predict"] = time.perf_counter() - t0


OPTIMIZERS = ("nesterov", "adam")


def optimizer_updates(optimizer: str, loss, params: list, learning_rate,
                      momentum: float = LEGACY.momentum) -> dict:
    """The update dictionary of ``optimizer`` (see :data:`OPTIMIZERS`)."""
    if optimizer == "nesterov":
        return lupdates.nesterov_momentum(loss, params, learning_rate, momentum)
    if optimizer == "adam":
        return lupdates.adam(loss, params, learning_rate)
    raise LasresError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")


def check_optimizer_state(values: Sequence, shapes: Sequence[tuple]) -> None:
    """Raise :class:`LasresError` unless ``values`` are one array per shape of ``shapes``."""
    if len(values) != len(shapes):
        raise LasresError(f"the checkpoint holds {len(values)} optimizer arrays, the "
                          f"network needs {len(shapes)}")
    for i, (val, shape) in enumerate(zip(values, shapes)):
        if np.shape(val) != tuple(shape):
            raise LasresError(f"optimizer array {i} has shape {np.shape(val)}, its parameter "
                              f"has shape {tuple(shape)}")


def check_resumable(ckpt, network) -> None:
    """Raise :class:`LasresError` unless ``ckpt`` can resume training ``network``
    (checked before anything is compiled or written): written at the end of
    an epoch, with one optimizer array of the right shape per trainable
    parameter."""
    extra = ckpt.extra or {}
    if extra.get("completed") is False:
        raise LasresError("the checkpoint was saved part-way through an epoch by an older "
                          "lasres and cannot be resumed exactly (use it with --weights to "
                          "start a new run from its parameters)")
    if ckpt.optimizer_state is None:
        raise LasresError("the checkpoint holds no optimizer state (resume needs one written "
                          "by train_nn.py)")
    shapes = [p.get_value(borrow=True).shape for p in get_all_params(network, trainable=True)]
    if len(ckpt.optimizer_state) == len(shapes):  # one velocity per parameter (Nesterov);
        check_optimizer_state(ckpt.optimizer_state, shapes)  # Adam's is checked by the trainer
    streams = extra.get("rng_streams")
    if streams is not None and not isinstance(streams, list):
        raise LasresError("the checkpoint's random-stream states are malformed")


def restore_training_state(trainer: TrainerBase, ckpt) -> Tuple["History", int]:
    """Set ``trainer``'s optimizer state and random streams from a checkpoint
    written by :func:`fit` (its parameters are loaded separately, e.g. by
    :func:`lasres.cli.load_network_weights`).

    Returns
    -------
    (History, int)
        The history so far and the epoch to start from.

    Raises
    ------
    LasresError
        A checkpoint saved part-way through an epoch (by lasres before 0.3),
        without optimizer state, or whose optimizer state or random streams
        do not fit the trainer.
    """
    from .random import set_stream_states
    check_resumable(ckpt, trainer.network)
    extra = ckpt.extra or {}
    trainer.set_optimizer_state(ckpt.optimizer_state)
    streams = extra.get("rng_streams")
    if streams is not None:
        try:
            set_stream_states(trainer.network, streams)
        except LasresError:
            if trainer.exact_resume:
                raise
    try:
        history = History.from_dict(ckpt.history)
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise LasresError("the checkpoint's history is malformed") from None
    if len({len(getattr(history, k)) for k in History.FIELDS}) != 1:
        raise LasresError("the checkpoint's history is malformed (curves of different lengths)")
    start = int(ckpt.epoch or 0)
    if len(history) and len(history) != start:
        raise LasresError(f"the checkpoint is at epoch {start} but its history has "
                          f"{len(history)} epochs")
    return history, start


def predict_in_batches(predict_fn: Callable, X: np.ndarray, batch_size: int = 500,
                       progress: bool = False, desc: str = "predict") -> np.ndarray:
    """Probabilities for all of ``X``, computed ``batch_size`` images at a time."""
    from tqdm import tqdm
    out = []
    starts = range(0, len(X), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress):
        out.append(np.asarray(predict_fn(X[start:start + batch_size])))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class History:
    """Per-epoch records of a run."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    learning_rate: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "learning_rate",
              "seconds")

    def append(self, **row):
        for k in self.FIELDS:
            getattr(self, k).append(row[k])

    def as_dict(self):
        return {k: list(getattr(self, k)) for k in self.FIELDS}

    @classmethod
    def from_dict(cls, d):
        h = cls()
        for k in cls.FIELDS:
            getattr(h, k).extend(float(v) if k != "epoch" else int(v) for v in (d or {}).get(k, []))
        return h

    def __len__(self):
        return len(self.epoch)

    def write(self, out_dir):
        """Write ``history.csv`` and ``history.json`` atomically."""
        rows = list(zip(*(getattr(self, k) for k in self.FIELDS)))
        with atomic_path(os.path.join(out_dir, "history.csv")) as tmp, \
                open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            w.writerows(rows)
        with atomic_path(os.path.join(out_dir, "history.json")) as tmp, open(tmp, "w") as f:
            json.dump(self.as_dict(), f, indent=1)


def fit(trainer: TrainerBase, data, *, epochs: int, out_dir: str,
        batch_size: int = LEGACY.batch_size,
        schedule: Schedule = LEGACY_SCHEDULE, augment: Optional[str] = "batch", seed: int = 0,
        arch: Optional[dict] = None, history: Optional["History"] = None, start_epoch: int = 0,
        progress: bool = True, log: Callable = print, plot: bool = True,
        t_start: Optional[float] = None, settings: Optional[dict] = None) -> "History":
    """Train ``trainer`` (a :class:`TrainerBase`: fit calls nothing else) for
    ``epochs`` epochs on ``data`` (a :class:`lasres.data.PreparedDataset` or
    any object with ``X_train, y_train, X_valid, y_valid, pixel_mean``).

    Each epoch uses its own generator seeded from ``seed`` and the epoch, so a
    run resumed at an epoch boundary repeats the same batches. The best
    validation epoch is saved to ``out_dir/best.h5`` and every epoch to
    ``out_dir/last.h5`` (with the optimizer state, the states of the
    dropout/noise streams, the history and the run's settings, for
    ``--resume``: see :func:`restore_training_state`). ``best.h5`` is written
    *before* ``last.h5``: a process killed between the two writes (``kill
    -9``) resumes from the previous ``last.h5``, repeats the epoch and writes
    the same ``best.h5`` again, so the pair always ends as an uninterrupted
    run's. ``settings`` (JSON values, e.g. the recipe) are recorded in both
    files beside ``seed``, ``batch_size``, ``schedule`` and ``augment``. A
    Ctrl-C (or, under the scripts, a
    SIGTERM) that arrives while an epoch's files are written waits for them;
    elsewhere it discards the unfinished epoch
    (``last.h5`` stays the end of the previous one, so that a resumed run
    equals an uninterrupted one bit for bit) and re-raises KeyboardInterrupt;
    a NaN loss raises :class:`TrainingDiverged` after saving nothing new.
    In a multi-process run (:mod:`lasres.distributed`) every process calls
    ``fit`` alike; only process 0 (``trainer.process_index == 0``) writes
    files, logs and shows progress.
    With ``t_start`` (a ``time.time()``), the time from then to the end of
    the first training step is logged.

    Returns
    -------
    History
    """
    from tqdm import tqdm

    from .data import iterate_minibatches
    from .interrupts import deferred_interrupts
    from .plotting import plot_history
    from .random import get_stream_states
    from .weights import save_checkpoint

    # several processes (lasres.distributed): only process 0 writes files and reports
    primary = trainer.process_index == 0
    if primary:
        os.makedirs(out_dir, exist_ok=True)
    else:
        progress, plot, t_start, log = False, False, None, (lambda *args, **kwargs: None)
    history = history or History()
    params = get_all_params(trainer.network)
    names = [p.name or f"param{i}" for i, p in enumerate(params)]
    best_acc = max(history.val_acc) if len(history) else -1.0

    def save(path, epoch, completed):
        if not primary:
            return
        trainer.sync_to_host()  # device-resident trainers
        save_checkpoint(path, [p.get_value() for p in params], arch=arch, param_names=names,
                        pixel_mean=getattr(data, "pixel_mean", None), epoch=epoch,
                        optimizer_state=trainer.optimizer_state(), history=history.as_dict(),
                        extra={**(settings or {}), "completed": completed, "seed": seed,
                               "batch_size": batch_size,
                               "schedule": [list(s) for s in schedule], "augment": augment,
                               "rng_streams": get_stream_states(trainer.network)})

    epoch = start_epoch
    try:
        for epoch in range(start_epoch, epochs):
            lr = learning_rate_at(schedule, epoch)
            trainer.learning_rate.set_value(np.float32(lr))
            rng = np.random.RandomState((seed * 100003 + epoch) % (2 ** 32))
            t0 = time.time()
            tot_loss = tot_acc = 0.0
            # data-parallel trainers need batches that split evenly over the devices
            devices = trainer.num_devices
            drop_last = devices > 1 and len(data.X_train) % batch_size % devices != 0
            batches = iterate_minibatches(data.X_train, data.y_train, batch_size, shuffle=True,
                                          augment=bool(augment), mode=augment or "batch", rng=rng,
                                          drop_last=drop_last)
            n_batches = (len(data.X_train) // batch_size if drop_last
                         else -(-len(data.X_train) // batch_size))
            bar = tqdm(batches, total=n_batches, desc=f"epoch {epoch + 1}/{epochs}",
                       unit="batch", leave=False, disable=not progress)
            done = 0
            for Xb, yb in bar:
                loss, acc = trainer.train_fn(Xb, yb)
                loss = float(loss)
                if not math.isfinite(loss):
                    raise TrainingDiverged(
                        f"the training loss became {loss} at epoch {epoch + 1}, batch {done + 1} "
                        f"(learning rate {lr:g}); stopped. Lower the learning rate or check the "
                        f"data; the last good checkpoint is {os.path.join(out_dir, 'last.h5')}")
                tot_loss += loss
                tot_acc += float(acc)
                done += 1
                if t_start is not None and done == 1 and epoch == start_epoch:
                    bar.write(f"step   | first training step done {time.time() - t_start:.1f}s "
                              f"after the start")
                if done % 10 == 0:
                    bar.set_postfix(loss=f"{tot_loss / done:.4f}")
            bar.close()
            train_loss, train_acc = tot_loss / max(done, 1), tot_acc / max(done, 1)
            if len(getattr(data, "X_valid", ())):
                probs = predict_in_batches(trainer.predict_fn, data.X_valid)
                val_loss, val_acc = loss_and_accuracy(probs, data.y_valid)
            else:
                val_loss, val_acc = float("nan"), float("nan")
            seconds = time.time() - t0
            # The epoch's bookkeeping is whole: a Ctrl-C or SIGTERM here waits for it.
            with deferred_interrupts():
                history.append(epoch=epoch + 1, train_loss=train_loss, train_acc=train_acc,
                               val_loss=val_loss, val_acc=val_acc, learning_rate=lr,
                               seconds=seconds)
                improved = val_acc > best_acc or (math.isnan(val_acc) and epoch == epochs - 1)
                if improved and not math.isnan(val_acc):
                    best_acc = val_acc
                log(f"epoch {epoch + 1:3d}/{epochs}  train loss {train_loss:.4f}  train acc "
                    f"{train_acc:6.2%}  val loss {val_loss:.4f}  val acc {val_acc:6.2%}  "
                    f"lr {lr:g}  {seconds:.1f}s" + ("  *best*" if improved else ""))
                # best.h5 first: killed between the two, the resumed run repeats
                # this epoch from the previous last.h5 and writes best.h5 again
                if improved or not os.path.exists(os.path.join(out_dir, "best.h5")):
                    save(os.path.join(out_dir, "best.h5"), epoch + 1, True)
                save(os.path.join(out_dir, "last.h5"), epoch + 1, True)
                if primary:
                    history.write(out_dir)
                if plot:
                    plot_history(history, os.path.join(out_dir, "curves.png"), title=_title(arch))
    except KeyboardInterrupt:
        # The resume point stays the last epoch-end checkpoint: saving the
        # weights of part of an epoch would make a resumed run apply those
        # batches twice.
        last = os.path.join(out_dir, "last.h5")
        if not primary:
            pass  # process 0 reports for the run
        elif len(history) == epoch + 1:  # held until the epoch's files were written
            log(f"interrupted after epoch {len(history)}: {last} (end of epoch "
                f"{len(history)}) is the resume point (resume with --resume)")
        elif len(history):  # the history is always that of last.h5 here
            log(f"interrupted in epoch {epoch + 1}: its partial work is discarded; {last} "
                f"(end of epoch {len(history)}) is the resume point (resume with --resume)")
        else:
            log(f"interrupted in epoch {epoch + 1}, before any epoch was completed: "
                f"nothing saved")
        raise
    return history


def _title(arch):
    if not arch:
        return None
    return f"{arch.get('type')} depth {arch.get('depth')} width {arch.get('width')}"
