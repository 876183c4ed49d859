"""The epoch loop: :func:`fit` trains a :class:`~lasres.train.trainer.TrainerBase`
with a progress bar and a learning-rate schedule, writes checkpoints (best
and last, atomic, resumable), stops on a NaN loss, ends cleanly on Ctrl-C,
and writes the history as CSV/JSON and the training curves as PNG.
"""
import math
import os
import time
from typing import Callable, Optional

import numpy as np
from tqdm import tqdm

from ..data import iterate_minibatches
from ..errors import LasresError
from ..layers import get_all_params
from ..layers.streams import get_stream_states
from ..recipes import LEGACY, LEGACY_SCHEDULE
from .. import weights
from .evaluation import loss_and_accuracy, predict_in_batches
from .history import History
from .interrupts import deferred_interrupts
from .plotting import plot_history
from .schedule import Schedule, learning_rate_at
from .trainer import TrainerBase

__all__ = ["fit", "TrainingDiverged"]


class TrainingDiverged(LasresError):
    """The training loss became NaN or infinite."""



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
    In a multi-process run (:mod:`lasres.train.distributed`) every process calls
    ``fit`` alike; only process 0 (``trainer.process_index == 0``) writes
    files, logs and shows progress.
    With ``t_start`` (a ``time.time()``), the time from then to the end of
    the first training step is logged.

    Returns
    -------
    History
    """
    # several processes (lasres.train.distributed): only process 0 writes files and reports
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
        extra = {**(settings or {}), "completed": completed, "seed": seed,
                 "batch_size": batch_size, "schedule": [list(s) for s in schedule],
                 "augment": augment, "rng_streams": get_stream_states(trainer.network)}
        weights.save_checkpoint(path, [p.get_value() for p in params], arch=arch,
                                param_names=names, pixel_mean=getattr(data, "pixel_mean", None),
                                epoch=epoch, optimizer_state=trainer.optimizer_state(),
                                history=history.as_dict(), extra=extra)

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
