"""Embedding layer (Lasagne's ``lasagne.layers.embedding``)."""
from .. import init
from .base import Layer

__all__ = ["EmbeddingLayer"]


class EmbeddingLayer(Layer):
    """Look up a learned vector for each integer index: ``output = W[input]``.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        Integer indices in ``[0, input_size)``, of any shape.
    input_size : int
        Number of distinct indices (rows of ``W``).
    output_size : int
        Size of each embedding vector.
    W : initializer, array, shared variable or expression
        The embedding matrix of shape ``(input_size, output_size)``
        (default ``init.Normal()``).

    The output has the input's shape plus a trailing axis of ``output_size``.
    Note that an :class:`InputLayer` makes a float input variable: give it
    an integer ``input_var`` (e.g. ``pytensor.tensor.imatrix()``).
    """

    def __init__(self, incoming, input_size, output_size, W=init.Normal(), **kwargs):
        super().__init__(incoming, **kwargs)
        self.input_size = input_size
        self.output_size = output_size
        self.W = self.add_param(W, (input_size, output_size), name="W")

    def get_output_shape_for(self, input_shape):
        return tuple(input_shape) + (self.output_size,)

    def get_output_for(self, input, **kwargs):
        return self.W[input]
