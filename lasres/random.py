"""The random number generator used to initialise parameters
(Lasagne's ``lasagne.random``): NumPy's global generator unless set."""
import numpy as np

_rng = np.random

__all__ = ["get_rng", "set_rng"]


def get_rng():
    """The current generator (by default the ``numpy.random`` module)."""
    return _rng


def set_rng(new_rng):
    """Use ``new_rng`` (e.g. ``np.random.RandomState(42)``) from now on."""
    global _rng
    _rng = new_rng
