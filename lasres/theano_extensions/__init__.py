"""Lasagne's ``lasagne.theano_extensions``: alternative 1D convolutions
(:mod:`.conv`) and constant padding (:mod:`.padding`), on PyTensor."""
from . import conv, padding  # noqa: F401
