"""The trainer a ``train_nn.py`` or ``compare.py`` run asks for."""
from typing import Optional

from ..recipes import LEGACY
from ..train import jax_trainer, trainer
from .options import check_backend

__all__ = ["make_trainer"]


def make_trainer(network, args, learning_rate: float, backend: Optional[str] = None):
    """A :class:`lasres.train.trainer.Trainer`, or for ``--backend jax`` a
    :class:`lasres.train.jax_trainer.JaxTrainer` (state on the device, optional
    data parallelism and bf16).

    Parameters
    ----------
    network : Layer
    args : argparse.Namespace
        ``train_nn.py``'s or ``compare.py``'s arguments (``l2``, ``momentum``,
        ``seed``, ``backend``; ``optimizer``, ``devices``, ``precision`` and
        ``device_augment`` where they have them, else the legacy recipe's and
        one float32 device).
    learning_rate : float
        The initial learning rate.
    backend : str, optional
        The backend already checked by :func:`lasres.cli.check_backend`; by
        default it is checked here.

    Returns
    -------
    lasres.train.trainer.TrainerBase
    """
    backend = backend or check_backend(args)
    optimizer = getattr(args, "optimizer", LEGACY.optimizer)
    if backend == "jax":
        return jax_trainer.JaxTrainer(network, l2=args.l2, momentum=args.momentum,
                          learning_rate=learning_rate, devices=getattr(args, "devices", None),
                          precision=getattr(args, "precision", "float32"),
                          device_augment=getattr(args, "device_augment", False),
                          seed=args.seed, optimizer=optimizer)
    return trainer.Trainer(network, l2=args.l2, momentum=args.momentum, learning_rate=learning_rate,
                   backend=backend, optimizer=optimizer)
