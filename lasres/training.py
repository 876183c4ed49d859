"""Moved to :mod:`lasres.train`. This alias is kept only for the scripts of
``benchmarks/``, which still import from here; nothing in lasres, its tests
or its documentation uses it, and it goes once they import from
``lasres.train``."""
from .train import *  # noqa: F401,F403
from .train import __all__  # noqa: F401
