"""lasres: Lasagne's residual networks on PyTensor.

A Lasagne script ports by renaming imports (``lasagne`` -> ``lasres``,
``theano`` -> ``pytensor``). Importing lasres makes PyTensor's floatX float32
and its default mode the C backend (see :mod:`lasres.config`).
"""
from . import config  # noqa: F401  (sets floatX and the default mode first)
from . import utils, random, init, nonlinearities, objectives, regularization, updates  # noqa: F401
from . import layers  # noqa: F401
from . import models, weights, data  # noqa: F401
from .errors import LasresError

__version__ = "0.1.0"
__all__ = ["config", "utils", "random", "init", "nonlinearities", "objectives",
           "regularization", "updates", "layers", "models", "weights", "data", "LasresError"]
