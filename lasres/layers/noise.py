"""Noise layers (Lasagne's ``lasagne.layers.noise``)."""
import pytensor.tensor as pt
from pytensor.tensor.random.utils import RandomStream

from ..random import get_rng
from .base import Layer

__all__ = ["DropoutLayer", "dropout", "dropout_channels", "spatial_dropout",
           "dropout_locations", "GaussianNoiseLayer"]


def _stream():
    return RandomStream(get_rng().randint(1, 2147462579))


class DropoutLayer(Layer):
    """Dropout: in training, zero each value with probability ``p`` (and
    rescale the rest by ``1/(1-p)`` when ``rescale``); identity when
    ``deterministic=True``. ``shared_axes`` share one mask value along axes."""

    def __init__(self, incoming, p=0.5, rescale=True, shared_axes=(), **kwargs):
        super().__init__(incoming, **kwargs)
        self._srng = _stream()
        self.p = p
        self.rescale = rescale
        self.shared_axes = tuple(shared_axes)

    def get_output_for(self, input, deterministic=False, **kwargs):
        if deterministic or self.p == 0:
            return input
        one = pt.constant(1)
        retain_prob = one - self.p
        if self.rescale:
            input = input / retain_prob
        mask_shape = tuple(input.shape[a] if s is None else s
                           for a, s in enumerate(self.input_shape))
        if self.shared_axes:
            shared_axes = tuple(a if a >= 0 else a + input.ndim for a in self.shared_axes)
            mask_shape = tuple(1 if a in shared_axes else s for a, s in enumerate(mask_shape))
        mask = pt.cast(self._srng.binomial(n=1, p=retain_prob, size=mask_shape), input.dtype)
        return input * mask


dropout = DropoutLayer


def dropout_channels(incoming, *args, **kwargs):
    """Dropout of whole channels (feature maps)."""
    ndim = len(getattr(incoming, "output_shape", incoming))
    kwargs["shared_axes"] = tuple(range(2, ndim))
    return DropoutLayer(incoming, *args, **kwargs)


spatial_dropout = dropout_channels


def dropout_locations(incoming, *args, **kwargs):
    """Dropout of whole locations: one mask value per position, shared
    across the channels (the second axis)."""
    kwargs["shared_axes"] = (1,)
    return DropoutLayer(incoming, *args, **kwargs)


class GaussianNoiseLayer(Layer):
    """Add N(0, sigma) noise in training; identity when deterministic."""

    def __init__(self, incoming, sigma=0.1, **kwargs):
        super().__init__(incoming, **kwargs)
        self._srng = _stream()
        self.sigma = sigma

    def get_output_for(self, input, deterministic=False, **kwargs):
        if deterministic or self.sigma == 0:
            return input
        return input + self._srng.normal(0, self.sigma, size=input.shape, dtype=input.dtype)
