"""Parameter initialisers (Lasagne's ``lasagne.init``).

Each initializer is a callable ``init(shape) -> np.ndarray`` (float32), drawing
from :func:`lasres.random.get_rng`, with the same formulas and draw order as
Lasagne so that a seeded script draws the same weights.
"""
import numpy as np

from .random import get_rng
from .utils import floatX

__all__ = ["Initializer", "Normal", "Uniform", "Glorot", "GlorotNormal", "GlorotUniform",
           "He", "HeNormal", "HeUniform", "Constant", "Sparse", "Orthogonal"]


class Initializer(object):
    """Base class: subclasses implement :meth:`sample`."""

    def __call__(self, shape):
        return self.sample(shape)

    def sample(self, shape):
        raise NotImplementedError()


class Normal(Initializer):
    """Samples from N(mean, std)."""

    def __init__(self, std=0.01, mean=0.0):
        self.std = std
        self.mean = mean

    def sample(self, shape):
        return floatX(get_rng().normal(self.mean, self.std, size=shape))


class Uniform(Initializer):
    """Samples from U(range) or, given ``std``, from U(mean ± sqrt(3)·std)."""

    def __init__(self, range=0.01, std=None, mean=0.0):
        if std is not None:
            a = mean - np.sqrt(3) * std
            b = mean + np.sqrt(3) * std
        else:
            try:
                a, b = range
            except TypeError:
                a, b = -range, range
        self.range = (a, b)

    def sample(self, shape):
        return floatX(get_rng().uniform(low=self.range[0], high=self.range[1], size=shape))


def _gain(gain):
    return np.sqrt(2) if gain == "relu" else gain


class _FanScaled(object):
    """Samples of ``initializer`` with ``std = gain * sqrt(variance_scale(shape))``,
    the shape Glorot and He share (``c01b``: cuda-convnet's filter layout).

    A mixin, not an :class:`Initializer`: as in Lasagne, ``Glorot`` and ``He``
    are direct subclasses of ``Initializer`` (code that walks
    ``Initializer.__subclasses__()`` meets them, not this helper)."""

    def __init__(self, initializer, gain=1.0, c01b=False):
        self.initializer = initializer
        self.gain = _gain(gain)
        self.c01b = c01b

    def variance_scale(self, shape):
        raise NotImplementedError

    def sample(self, shape):
        if self.c01b and len(shape) != 4:
            raise RuntimeError("If c01b is True, only shapes of length 4 are accepted")
        if not self.c01b and len(shape) < 2:
            raise RuntimeError("This initializer only works with shapes of length >= 2")
        std = self.gain * np.sqrt(self.variance_scale(shape))
        return self.initializer(std=std).sample(shape)


class Glorot(_FanScaled, Initializer):
    """Glorot/Xavier: std = gain·sqrt(2 / ((fan_in + fan_out)·receptive field))."""

    def variance_scale(self, shape):
        if self.c01b:
            n1, n2 = shape[0], shape[3]
            receptive_field_size = shape[1] * shape[2]
        else:
            n1, n2 = shape[:2]
            receptive_field_size = np.prod(shape[2:])
        return 2.0 / ((n1 + n2) * receptive_field_size)


class GlorotNormal(Glorot):
    """Glorot with Gaussian samples."""

    def __init__(self, gain=1.0, c01b=False):
        super().__init__(Normal, gain, c01b)


class GlorotUniform(Glorot):
    """Glorot with uniform samples (Lasagne's default for weights)."""

    def __init__(self, gain=1.0, c01b=False):
        super().__init__(Uniform, gain, c01b)


class He(_FanScaled, Initializer):
    """He et al.: std = gain·sqrt(1 / fan_in); ``gain='relu'`` means sqrt(2).

    fan_in is ``shape[0]`` for dense weights and the product of the shape
    after the first axis for convolution filters.
    """

    def variance_scale(self, shape):
        if self.c01b:
            fan_in = np.prod(shape[:3])
        elif len(shape) == 2:
            fan_in = shape[0]
        else:
            fan_in = np.prod(shape[1:])
        return 1.0 / fan_in


class HeNormal(He):
    """He with Gaussian samples."""

    def __init__(self, gain=1.0, c01b=False):
        super().__init__(Normal, gain, c01b)


class HeUniform(He):
    """He with uniform samples."""

    def __init__(self, gain=1.0, c01b=False):
        super().__init__(Uniform, gain, c01b)


class Constant(Initializer):
    """Fills with a constant."""

    def __init__(self, val=0.0):
        self.val = val

    def sample(self, shape):
        return floatX(np.ones(shape) * self.val)


class Sparse(Initializer):
    """A matrix with ``sparsity`` of each column non-zero, drawn from N(0, std)."""

    def __init__(self, sparsity=0.1, std=0.01):
        self.sparsity = sparsity
        self.std = std

    def sample(self, shape):
        if len(shape) != 2:
            raise RuntimeError("sparse initializer only works with shapes of length 2")
        w = floatX(np.zeros(shape))
        n_inputs, n_outputs = shape
        size = int(self.sparsity * n_inputs)
        for k in range(n_outputs):
            indices = np.arange(n_inputs)
            get_rng().shuffle(indices)
            indices = indices[:size]
            values = floatX(get_rng().normal(0.0, self.std, size=size))
            w[indices, k] = values
        return w


class Orthogonal(Initializer):
    """An orthogonal matrix (rows or columns) reshaped to ``shape``, times gain."""

    def __init__(self, gain=1.0):
        self.gain = _gain(gain)

    def sample(self, shape):
        if len(shape) < 2:
            raise RuntimeError("Only shapes of length 2 or more are supported.")
        flat_shape = (shape[0], int(np.prod(shape[1:])))
        a = get_rng().normal(0.0, 1.0, flat_shape)
        u, _, v = np.linalg.svd(a, full_matrices=False)
        q = u if u.shape == flat_shape else v
        return floatX(self.gain * q.reshape(shape))
