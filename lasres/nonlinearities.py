"""Nonlinearities (Lasagne's ``lasagne.nonlinearities``).

``rectify`` is Theano's ``relu``: ``0.5 * (x + |x|)``, whose gradient at
exactly zero is 0.5 (it matters after zero padding), computed by one fused
op (:data:`lasres.ops.elemwise.relu`); the leaky variants use Theano's form.
"""
import pytensor.tensor as pt
from pytensor.graph.basic import Variable

from .ops.elemwise import relu

__all__ = ["sigmoid", "softmax", "tanh", "ScaledTanH", "ScaledTanh", "rectify",
           "LeakyRectify", "leaky_rectify", "very_leaky_rectify", "elu", "SELU", "selu",
           "softplus", "linear", "identity"]


def sigmoid(x):
    """Logistic sigmoid."""
    return pt.sigmoid(x)


def softmax(x):
    """Row-wise softmax of a matrix."""
    return pt.special.softmax(x, axis=-1)


def tanh(x):
    """Hyperbolic tangent."""
    return pt.tanh(x)


class ScaledTanH(object):
    """``scale_out * tanh(scale_in * x)``."""

    def __init__(self, scale_in=1, scale_out=1):
        self.scale_in = scale_in
        self.scale_out = scale_out

    def __call__(self, x):
        return pt.tanh(x * self.scale_in) * self.scale_out


ScaledTanh = ScaledTanH


def rectify(x):
    """Rectified linear unit, computed as Theano did: ``0.5 * (x + |x|)``
    (gradient 0.5 at exactly 0), as one fused graph node.

    As Theano's ``relu``, it computes ``0.5 * (x + abs(x))`` directly on a
    non-symbolic input (a NumPy array or a number) and returns that value,
    not a graph."""
    if not isinstance(x, Variable):
        return 0.5 * (x + abs(x))
    return relu(x)


class LeakyRectify(object):
    """Leaky ReLU ``max(x, leakiness·x)`` in Theano's ``relu(x, alpha)`` form."""

    def __init__(self, leakiness=0.01):
        self.leakiness = leakiness

    def __call__(self, x):
        f1 = 0.5 * (1 + self.leakiness)
        f2 = 0.5 * (1 - self.leakiness)
        return f1 * x + f2 * abs(x)


leaky_rectify = LeakyRectify()
very_leaky_rectify = LeakyRectify(1.0 / 3)


def elu(x):
    """Exponential linear unit: ``x`` if x > 0 else ``exp(x) - 1``."""
    return pt.switch(x > 0, x, pt.expm1(x))


class SELU(object):
    """Scaled exponential linear unit."""

    def __init__(self, scale=1, scale_neg=1):
        self.scale = scale
        self.scale_neg = scale_neg

    def __call__(self, x):
        return self.scale * pt.switch(x > 0.0, x, self.scale_neg * (pt.expm1(x)))


selu = SELU(scale=1.0507009873554804934193349852946,
            scale_neg=1.6732632423543772848170429916717)


def softplus(x):
    """``log(1 + exp(x))``."""
    return pt.softplus(x)


def linear(x):
    """Identity."""
    return x


identity = linear
