"""The training recipes as values: every default of a run, written once.

A :class:`Recipe` holds what a run does besides its network: batch size,
epochs, learning-rate schedule, L2, optimizer (Nesterov momentum or Adam)
and momentum, the batch-norm averaging, the validation fraction, the
preprocessing and the augmentation. :data:`LEGACY` is the Lasagne seed's
``train_nn.py``, :data:`KERAS_SEED` the RoR seed's ``cifar10_ror_wrn.py``;
:data:`RECIPES` names them for ``--recipe``.

The trainers (:class:`lasres.train.Trainer`,
:class:`lasres.train.jax_trainer.JaxTrainer`), :func:`lasres.train.fit`,
:func:`lasres.data.prepare_dataset` and every command-line default read
them, so a default changes here and nowhere else. (The objective itself,
the loss and the inference function, is :mod:`lasres.train.recipe`.)

This module imports nothing of lasres, so that every level may read it.
"""
from dataclasses import dataclass, replace
from typing import Dict, Optional

__all__ = ["Recipe", "LEGACY", "KERAS_SEED", "RECIPES", "LEGACY_SCHEDULE", "recipe_for_layout"]

#: The Lasagne seed's schedule, ``(first epoch, learning rate)`` pairs: 0.01
#: for epochs 0-9 (warm-up), 0.1 from 10, 0.01 from 80, 0.001 from 120.
LEGACY_SCHEDULE = ((0, 0.01), (10, 0.1), (80, 0.01), (120, 0.001))


@dataclass(frozen=True)
class Recipe:
    """One training recipe (see the module docstring).

    Attributes
    ----------
    name : str
        The ``--recipe`` name.
    batch_size : int
    epochs : int
    lr_schedule : str
        ``--lr-schedule`` text (``'legacy'`` is :data:`LEGACY_SCHEDULE`; a
        constant rate; or ``EPOCH:RATE,...``), read by
        :func:`lasres.train.parse_schedule`.
    l2 : float
        Weight of the L2 penalty over every regularizable parameter (batch-norm
        gammas included, as Lasagne tags them); 0: none.
    optimizer : {'nesterov', 'adam'}
        Nesterov momentum or Adam (Keras's and Lasagne's defaults).
    momentum : float
        The Nesterov momentum (unused by Adam).
    bn_update_averages : bool
        Batch-norm running averages (of ``mean`` and ``inv_std``, each layer's
        ``alpha``) updated by every training step, as Lasagne's default.
    valid_fraction : float
        Fraction of the training images held out for validation
        (:func:`lasres.data.legacy_split`).
    preprocess : str
        A preset of :data:`lasres.data.preprocessing.PRESETS`.
    augment : str or None
        A mode of :func:`lasres.data.augment_batch`; None: the dataset's own
        (the legacy crop + flip per batch for CIFAR, none for the MNISTs).
    """

    name: str
    batch_size: int = 64
    epochs: int = 200
    lr_schedule: str = "legacy"
    l2: float = 1e-4
    optimizer: str = "nesterov"
    momentum: float = 0.9
    bn_update_averages: bool = True
    valid_fraction: float = 0.1
    preprocess: str = "legacy"
    augment: Optional[str] = None

    #: The fields that are command-line flags of ``train_nn.py`` of the same
    #: name (``--batch-size`` is shared with ``test_model.py`` and defaults to
    #: None there; ``--preprocess`` follows the network's layout).
    FLAGS = ("epochs", "lr_schedule", "l2", "optimizer", "momentum", "valid_fraction",
             "augment")

    def flag_defaults(self) -> Dict[str, object]:
        """The defaults of ``train_nn.py``'s flags (:attr:`FLAGS`), by argparse dest."""
        return {f: getattr(self, f) for f in self.FLAGS}

    def overrides(self) -> Dict[str, object]:
        """The flag defaults this recipe sets that differ from :data:`LEGACY`'s
        (``--recipe NAME`` sets them; explicit flags still win)."""
        legacy = LEGACY.flag_defaults()
        return {k: v for k, v in self.flag_defaults().items() if legacy[k] != v}


#: The Lasagne seed's ``train_nn.py``: batch 64, 200 epochs, the legacy
#: schedule, Nesterov momentum 0.9, L2 1e-4, BN averages updated in training,
#: a 90/10 split, the per-pixel mean of the training part subtracted, one
#: random crop and flip per batch.
LEGACY = Recipe("legacy")

#: The RoR seed's ``cifar10_ror_wrn.py``: Adam 1e-3, no weight decay, batch 64,
#: 300 epochs, ImageDataGenerator(rotation_range=15, width/height_shift_range=5/32),
#: ``x / 255``.
KERAS_SEED = replace(LEGACY, name="keras-seed", epochs=300, lr_schedule="0.001", l2=0.0,
                     optimizer="adam", preprocess="keras-seed", augment="keras-seed")

#: The recipes by ``--recipe`` name.
RECIPES: Dict[str, Recipe] = {r.name: r for r in (LEGACY, KERAS_SEED)}


def recipe_for_layout(options: Optional[dict]) -> Recipe:
    """The recipe whose preprocessing a network's weights expect: the Keras
    seed's for networks built with ``layout=keras``, else the legacy one."""
    return KERAS_SEED if (options or {}).get("layout") == "keras" else LEGACY

