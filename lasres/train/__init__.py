"""Training: the legacy recipe as a library API, one concept a module.

:mod:`.recipe`
    The legacy objective (loss, accuracy, trainable parameters) and the
    inference function.
:mod:`.schedule`
    Learning-rate schedules (``--lr-schedule``).
:mod:`.trainer`
    :class:`TrainerBase` (what :func:`fit` may call) and :class:`Trainer`,
    the C backend's trainer; the optimizers.
:mod:`.jax_trainer`
    :class:`~lasres.train.jax_trainer.JaxTrainer`, the state on the JAX
    devices (imported on its own: ``from lasres.train.jax_trainer import
    JaxTrainer``).
:mod:`.loop`
    The epoch loop :func:`fit`: checkpoints, plots, NaN detection, interrupts.
:mod:`.history`
    :class:`History`, written as CSV and JSON.
:mod:`.resume`
    The checks a checkpoint passes before it continues a run, and the
    trainer's state restored from it.
:mod:`.evaluation`
    Predictions batch by batch, scores and the test report.
:mod:`.interrupts`
    Ctrl-C and SIGTERM ending a run alike, held while an epoch's files are
    written.
:mod:`.distributed`
    Several processes, one run (:mod:`jax.distributed`).
:mod:`.plotting`
    The training curves and the comparison plot (matplotlib, optional).

The recipes themselves (:data:`lasres.recipes.LEGACY`,
:data:`lasres.recipes.KERAS_SEED`) sit one floor down, in
:mod:`lasres.recipes`, because the data preparation and the model registry
read them too.
"""
from ..recipes import LEGACY_SCHEDULE
from .evaluation import predict_in_batches
from .loop import TrainingDiverged, fit
from .history import History
from .resume import check_resumable, restore_training_state
from .schedule import Schedule, learning_rate_at, parse_schedule
from .trainer import (OPTIMIZERS, Trainer, TrainerBase, check_optimizer_state,
                      optimizer_updates)

__all__ = ["LEGACY_SCHEDULE", "parse_schedule", "learning_rate_at", "Schedule", "TrainerBase",
           "Trainer", "TrainingDiverged", "History", "fit", "predict_in_batches", "OPTIMIZERS",
           "optimizer_updates", "restore_training_state", "check_resumable",
           "check_optimizer_state"]
