"""Layers (Lasagne's ``lasagne.layers``): every class and helper is
importable from here and from its Lasagne submodule (``.base``, ``.input``,
``.dense``, ``.conv``, ``.pool``, ``.normalization``, ``.merge``,
``.special``, ``.noise``, ``.shape``, ``.helper``, ``.dnn``, ``.recurrent``,
``.embedding``, ``.local``, ``.corrmm``, ``.cuda_convnet``)."""
from .base import *  # noqa: F401,F403
from .helper import *  # noqa: F401,F403
from .input import *  # noqa: F401,F403
from .dense import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .pool import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .merge import *  # noqa: F401,F403
from .special import *  # noqa: F401,F403
from .noise import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from . import dnn  # noqa: F401
from .recurrent import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .local import *  # noqa: F401,F403
from . import corrmm, cuda_convnet  # noqa: F401
