"""Fully connected layers (Lasagne's ``lasagne.layers.dense``)."""
import numpy as np
import pytensor.tensor as pt

from .. import init, nonlinearities
from .base import Layer

__all__ = ["DenseLayer", "NINLayer"]


class DenseLayer(Layer):
    """A fully connected layer: ``nonlinearity(x · W + b)``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    num_units : int
        Number of output units.
    W : initializer, array or shared variable
        Weights of shape ``(num_inputs, num_units)``; inputs of more than
        ``num_leading_axes + 1`` dimensions are flattened.
    b : initializer, array, shared variable or None
        Biases of shape ``(num_units,)``; None for no bias.
    nonlinearity : callable or None
        None means identity.
    num_leading_axes : int
        Number of leading axes kept as batch axes (default 1).
    """

    def __init__(self, incoming, num_units, W=init.GlorotUniform(), b=init.Constant(0.0),
                 nonlinearity=nonlinearities.rectify, num_leading_axes=1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        self.num_units = num_units
        if num_leading_axes >= len(self.input_shape):
            raise ValueError(f"Got num_leading_axes={num_leading_axes} for a "
                             f"{len(self.input_shape)}-dimensional input, leaving no trailing "
                             f"axes for the dot product.")
        elif num_leading_axes < -len(self.input_shape):
            raise ValueError(f"Got num_leading_axes={num_leading_axes} for a "
                             f"{len(self.input_shape)}-dimensional input, requesting more "
                             f"trailing axes than there are input dimensions.")
        self.num_leading_axes = num_leading_axes
        if any(s is None for s in self.input_shape[num_leading_axes:]):
            raise ValueError(f"A DenseLayer requires a fixed input shape (except for the "
                             f"leading axes). Got {self.input_shape!r} for num_leading_axes="
                             f"{self.num_leading_axes}.")
        num_inputs = int(np.prod(self.input_shape[num_leading_axes:]))
        self.W = self.add_param(W, (num_inputs, num_units), name="W")
        if b is None:
            self.b = None
        else:
            self.b = self.add_param(b, (num_units,), name="b", regularizable=False)

    def get_output_shape_for(self, input_shape):
        return input_shape[:self.num_leading_axes] + (self.num_units,)

    def get_output_for(self, input, **kwargs):
        num_leading_axes = self.num_leading_axes
        if num_leading_axes < 0:
            num_leading_axes += input.ndim
        if input.ndim > num_leading_axes + 1:
            input = input.flatten(num_leading_axes + 1)
        activation = pt.dot(input, self.W)
        if self.b is not None:
            activation = activation + self.b
        return self.nonlinearity(activation)


class NINLayer(Layer):
    """Network-in-network: a dense layer applied across the second axis
    (the channels) at every position of the trailing axes, i.e. a 1x1
    convolution: ``output[b, u, ...] = nonlinearity(sum_c input[b, c, ...] ·
    W[c, u] + b[u, ...])``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Of shape ``(batch_size, num_input_channels, ...)``.
    num_units : int
        Number of output channels.
    untie_biases : bool
        If True, one bias per unit and position (shape ``(num_units,) +
        input_shape[2:]``); else one per unit.
    W : initializer, array or shared variable
        Weights of shape ``(num_input_channels, num_units)``.
    b : initializer, array, shared variable or None
        Biases; None for no bias.
    nonlinearity : callable or None
        None means identity.
    """

    def __init__(self, incoming, num_units, untie_biases=False, W=init.GlorotUniform(),
                 b=init.Constant(0.), nonlinearity=nonlinearities.rectify, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity
        self.num_units = num_units
        self.untie_biases = untie_biases
        num_input_channels = self.input_shape[1]
        self.W = self.add_param(W, (num_input_channels, num_units), name="W")
        if b is None:
            self.b = None
        else:
            if self.untie_biases:
                biases_shape = (num_units,) + self.output_shape[2:]
            else:
                biases_shape = (num_units,)
            self.b = self.add_param(b, biases_shape, name="b", regularizable=False)

    def get_output_shape_for(self, input_shape):
        return (input_shape[0], self.num_units) + tuple(input_shape[2:])

    def get_output_for(self, input, **kwargs):
        out = pt.tensordot(self.W, input, axes=[[0], [1]])  # u, b, 0, 1, ...
        out = out.dimshuffle(1, 0, *range(2, input.ndim))
        if self.b is None:
            activation = out
        else:
            if self.untie_biases:
                pattern = range(1, input.ndim - 1)
            else:
                pattern = ["x"] * (input.ndim - 2)
            activation = out + self.b.dimshuffle("x", 0, *pattern)
        return self.nonlinearity(activation)
