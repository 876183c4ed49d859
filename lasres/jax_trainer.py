"""Moved to :mod:`lasres.train.jax_trainer`. This alias is kept only for the scripts of
``benchmarks/``, which still import from here; nothing in lasres, its tests
or its documentation uses it, and it goes once they import from
``lasres.train.jax_trainer``."""
from .train.jax_trainer import *  # noqa: F401,F403
from .train.jax_trainer import __all__  # noqa: F401
