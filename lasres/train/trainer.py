"""The trainers' common face and the C backend's trainer.

:class:`TrainerBase` is what :func:`lasres.train.fit.fit`,
:func:`lasres.train.resume.restore_training_state` and the front ends may
call on a trainer. :class:`Trainer` compiles a network's training step
(mean cross-entropy + L2 penalty, Nesterov momentum, batch-norm running
averages through their default updates: exactly the Lasagne seed's
``train_nn.py``) and one inference function shared by validation and
testing; :class:`lasres.train.jax_trainer.JaxTrainer` is the other
implementation.
"""
import time
from types import MappingProxyType
from typing import Optional, Sequence

import numpy as np
import pytensor

from .. import updates as lupdates
from ..config import collector_held, get_mode
from ..errors import LasresError
from ..layers import count_params
from ..recipes import LEGACY, LEGACY_SCHEDULE
from .recipe import compile_predict, legacy_objective

__all__ = ["TrainerBase", "Trainer", "OPTIMIZERS", "optimizer_updates", "check_optimizer_state"]


class TrainerBase(object):
    """What :func:`fit`, :func:`restore_training_state` and the front ends may
    call on a trainer; :class:`Trainer` and
    :class:`lasres.train.jax_trainer.JaxTrainer` are its two implementations.

    A subclass sets :attr:`network`, :attr:`learning_rate`, :attr:`train_fn`,
    :attr:`predict_fn` and :attr:`velocities`; the defaults here are those of
    a trainer whose state lives in the network's shared variables, in one
    process, on one device.

    Attributes
    ----------
    network : Layer
        Output layer.
    learning_rate : shared variable or :class:`lasres.train.jax_trainer.HostScalar`
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
        with collector_held():  # building and compiling the graphs
            self._build(network, l2, momentum, learning_rate, backend, optimizer)

    def _build(self, network, l2, momentum, learning_rate, backend, optimizer):
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
