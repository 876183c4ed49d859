"""Moved to :mod:`lasres.io.atomic`. This alias is kept only for the scripts of
``benchmarks/``, which still import from here; nothing in lasres, its tests
or its documentation uses it, and it goes once they import from
``lasres.io.atomic``."""
from .io.atomic import *  # noqa: F401,F403
from .io.atomic import __all__  # noqa: F401
