"""Resuming a run: the checks a checkpoint passes before it can continue
training, and the trainer's state restored from it."""
from typing import Tuple

from ..errors import LasresError
from ..layers import get_all_params
from ..layers.streams import set_stream_states
from .history import History
from .trainer import TrainerBase, check_optimizer_state

__all__ = ["check_resumable", "restore_training_state"]


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


def restore_training_state(trainer: TrainerBase, ckpt) -> Tuple[History, int]:
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
