"""The set-up the training commands share (``train_nn.py``, ``compare.py``):
arguments -> :class:`~lasres.recipes.Recipe` + model -> data -> trainer.

Each command keeps its own flags; from the parsed arguments on, both go
through the same steps:

1. :func:`read_arguments`: the arguments, under a ``--recipe``'s defaults
   (explicit flags win);
2. :func:`plan_run`: the numbers checked once, then the batch size, the
   learning-rate schedule and the augmentation of the run (a
   :class:`RunPlan`), and the random generator seeded;
3. :func:`prepare_run_data`: the dataset, prepared with the run's
   preprocessing (the models are checked and built before, by
   :func:`lasres.cli.build_network` or ``compare.py``'s model requests; both
   record them with :func:`lasres.models.registry.arch_record`);
4. :func:`start_trainer`: the trainer of the backend
   (:func:`lasres.cli.make_trainer`), continued from the checkpoint of a
   resumed run.
"""
import argparse
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

from .. import data as datasets
from ..errors import LasresError
from ..random import seed_everything
from ..recipes import LEGACY, RECIPES, Recipe
from ..train import Schedule, parse_schedule, restore_training_state
from .factory import make_trainer
from .options import check_common_numbers

__all__ = ["RunPlan", "read_arguments", "plan_run", "download_if_asked", "prepare_run_data",
           "start_trainer"]


@dataclass(frozen=True)
class RunPlan:
    """What a training command's arguments settle, checked.

    Attributes
    ----------
    recipe : Recipe
        The recipe whose defaults the flags started from.
    backend : str
        The backend (already checked by :func:`lasres.cli.check_backend`).
    batch_size : int
    schedule : Schedule
        ``((epoch, rate), ...)``.
    augment : str
        ``--augment``, or the dataset's default: ``batch``, ``image``,
        ``keras-seed`` or ``none``.
    fit_augment : str or None
        What :func:`lasres.train.fit` does on the host: ``augment``, or
        None for ``none`` and for ``--device-augment``.
    """

    recipe: Recipe
    backend: str
    batch_size: int
    schedule: Schedule
    augment: str
    fit_augment: Optional[str]


def read_arguments(parser: argparse.ArgumentParser, argv=None) -> Tuple[argparse.Namespace,
                                                                          Recipe]:
    """``parser``'s arguments and their recipe (``--recipe``, where the
    command has it, else the legacy one): the recipe's values become the
    defaults, and explicit flags still win."""
    args = parser.parse_args(argv)
    recipe = RECIPES[getattr(args, "recipe", LEGACY.name)]
    if recipe.overrides():  # a recipe sets defaults; parse again so explicit flags win
        parser.set_defaults(**recipe.overrides())
        args = parser.parse_args(argv)
    return args, recipe


def plan_run(args, recipe: Recipe, backend: str) -> RunPlan:
    """Check the numbers every training command shares, seed the generator
    of the initial weights (and of the layers' random streams) with
    ``--seed``, and settle the run's batch size, schedule and augmentation.

    Raises
    ------
    LasresError
        A number out of range (``--batch-size``, ``--seed``, ``--limit``,
        ``--valid-fraction``, ``--epochs``) or a bad ``--lr-schedule``.
    """
    check_common_numbers(args)  # --batch-size 0 is refused, not read as the default
    batch_size = recipe.batch_size if args.batch_size is None else args.batch_size
    if args.epochs < 1:
        raise LasresError(f"--epochs must be positive, got {args.epochs}")
    schedule = parse_schedule(args.lr_schedule)
    augment = args.augment or datasets.get_dataset(args.dataset).default_augment
    fit_augment = None if augment == "none" or getattr(args, "device_augment", False) \
        else augment
    seed_everything(args.seed)  # initial weights and dropout streams follow --seed
    return RunPlan(recipe, backend, batch_size, schedule, augment, fit_augment)


def download_if_asked(args) -> None:
    """``--download``: fetch the dataset into ``--data`` when it is missing."""
    if args.download:
        datasets.download_dataset(args.dataset, args.data)


def prepare_run_data(args, preprocessing, pixel_mean_path=None):
    """The dataset of a run (``--dataset``, ``--data``, ``--limit``,
    ``--seed``, ``--valid-fraction``), prepared with ``preprocessing`` by
    :func:`lasres.data.prepare_dataset` (its warning about a pixel mean
    computed afresh is left out: the commands say where the mean is)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return datasets.prepare_dataset(args.dataset, args.data,
                                        pixel_mean_path=pixel_mean_path, limit=args.limit,
                                        seed=args.seed, valid_fraction=args.valid_fraction,
                                        preprocessing=preprocessing)


def start_trainer(network, args, learning_rate: float, backend: Optional[str] = None,
                  ckpt=None):
    """The trainer of a run and where it starts.

    Parameters
    ----------
    network : Layer
    args : argparse.Namespace
        What :func:`lasres.cli.make_trainer` reads (``l2``, ``momentum``,
        ``seed``, ``backend``...).
    learning_rate : float
        The schedule's first rate.
    backend : str, optional
        The backend already checked.
    ckpt : Checkpoint, optional
        The checkpoint of a resumed run (loaded into ``network``): its
        optimizer state, random streams and history are restored.

    Returns
    -------
    (TrainerBase, History or None, int)
        The trainer, the history so far and the number of epochs done.
    """
    trainer = make_trainer(network, args, learning_rate, backend=backend)
    history, start_epoch = None, 0
    if ckpt is not None:
        trainer.sync_to_device()
        history, start_epoch = restore_training_state(trainer, ckpt)
    return trainer, history, start_epoch
