"""The random number generator used to initialise parameters
(Lasagne's ``lasagne.random``): NumPy's global generator unless set.

Besides Lasagne's :func:`get_rng` / :func:`set_rng`, :func:`seed_everything`
seeds the generator that draws the initial weights and the seeds of the
layers' random streams (dropout, Gaussian noise). The states of those
streams, which a checkpoint records so that a resumed run continues the
same sequence, are read and restored where the layers are
(:mod:`lasres.layers.streams`). (The data shuffle and augmentation draw from
a generator seeded from the run's seed and the epoch, see
:func:`lasres.train.fit.fit`.)
"""
import numpy as np

from .errors import LasresError

_rng = np.random

__all__ = ["get_rng", "set_rng", "seed_everything"]


def get_rng():
    """The current generator (by default the ``numpy.random`` module)."""
    return _rng


def set_rng(new_rng):
    """Use ``new_rng`` (e.g. ``np.random.RandomState(42)``) from now on."""
    global _rng
    _rng = new_rng


def seed_everything(seed):
    """Make everything random that lasres draws on the host follow ``seed``.

    Sets :func:`get_rng` to ``numpy.random.RandomState(seed)``: the initial
    weights and the seeds of the dropout / noise streams of layers built
    afterwards follow from it. Call it before building the network.

    Parameters
    ----------
    seed : int
        Non-negative, below 2**32.
    """
    seed = int(seed)
    if not 0 <= seed < 2 ** 32:
        raise LasresError(f"the seed must be in 0..{2 ** 32 - 1}, got {seed}")
    set_rng(np.random.RandomState(seed))
