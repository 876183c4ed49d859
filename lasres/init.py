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


class Glorot(Initializer):
    """Glorot/Xavier: std = gain·sqrt(2 / ((fan_in + fan_out)·receptive field))."""

    def __init__(self, initializer, gain=1.0, c01b=False):
        self.initializer = initializer
        self.gain = _gain(gain)
        self.c01b = c01b

    def sample(self, shape):
        if self.c01b:
            if len(shape) != 4:
                raise RuntimeError("If c01b is True, only shapes of length 4 are accepted")
            n1, n2 = shape[0], shape[3]
            receptive_field_size = shape[1] * shape[2]
        else:
            if len(shape) < 2:
                raise RuntimeError("This initializer only works with shapes of length >= 2")
            n1, n2 = shape[:2]
            receptive_field_size = np.prod(shape[2:])
        std = self.gain * np.sqrt(2.0 / ((n1 + n2) * receptive_field_size))
        return self.initializer(std=std).sample(shape)


class GlorotNormal(Glorot):
    """Glorot with Gaussian samples."""

    def __init__(self, gain=1.0, c01b=False):
        super().__init__(Normal, gain, c01b)


class GlorotUniform(Glorot):
    """Glorot with uniform samples (Lasagne's default for weights)."""

    def __init__(self, gain=1.0, c01b=False):
        super().__init__(Uniform, gain, c01b)


class He(Initializer):
    """He et al.: std = gain·sqrt(1 / fan_in); ``gain='relu'`` means sqrt(2).

    fan_in is ``shape[0]`` for dense weights and the product of the shape
    after the first axis for convolution filters.
    """

    def __init__(self, initializer, gain=1.0, c01b=False):
        self.initializer = initializer
        self.gain = _gain(gain)
        self.c01b = c01b

    def sample(self, shape):
        if self.c01b:
            if len(shape) != 4:
                raise RuntimeError("If c01b is True, only shapes of length 4 are accepted")
            fan_in = np.prod(shape[:3])
        else:
            if len(shape) == 2:
                fan_in = shape[0]
            elif len(shape) > 2:
                fan_in = np.prod(shape[1:])
            else:
                raise RuntimeError("This initializer only works with shapes of length >= 2")
        std = self.gain * np.sqrt(1.0 / fan_in)
        return self.initializer(std=std).sample(shape)


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
