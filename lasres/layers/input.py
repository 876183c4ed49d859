"""Input layer (Lasagne's ``lasagne.layers.input``)."""
from collections import OrderedDict

import pytensor
import pytensor.tensor as pt

from .base import Layer

__all__ = ["InputLayer"]


class InputLayer(Layer):
    """A network's input.

    Parameters
    ----------
    shape : tuple of int or None
        The input's shape; None for a dimension that varies (the batch size).
    input_var : PyTensor variable or None
        The symbolic input; a new float32 tensor of ``len(shape)`` dimensions
        is made when None.
    name : a string or None
        An optional name for this layer.
    """

    def __init__(self, shape, input_var=None, name=None, **kwargs):
        self.shape = tuple(shape)
        if any(d is not None and d <= 0 for d in self.shape):
            raise ValueError(("Cannot create InputLayer with a non-positive shape "
                              "dimension. shape=%r, self.name=%r") % (self.shape, name))
        ndim = len(self.shape)
        if input_var is None:
            input_var = pt.tensor(dtype=pytensor.config.floatX,
                                  shape=tuple(1 if s == 1 else None for s in self.shape),
                                  name=f"{name}.input" if name is not None else "input")
        elif input_var.ndim != ndim:
            raise ValueError("shape has %d dimensions, but variable has %d"
                             % (ndim, input_var.ndim))
        self.input_var = input_var
        self.name = name
        self.params = OrderedDict()

    @Layer.output_shape.getter
    def output_shape(self):
        return self.shape
