"""Model builders: plain functions that stack lasres layers, registered by
type name for the scripts.

>>> from lasres.models import build
>>> net = build('normal', 18)        # pre-activation ResNet-110
"""
from .registry import ModelSpec, available, build, get_spec, register
from . import preact  # noqa: F401  (registers normal, bottleneck, wide)
from . import resnet, ror, rir, cnn  # noqa: F401

__all__ = ["ModelSpec", "available", "build", "get_spec", "register"]
