"""Miscellaneous layers (Lasagne's ``lasagne.layers.special``)."""
import pytensor.tensor as pt

from .. import init, nonlinearities
from .base import Layer

__all__ = ["NonlinearityLayer", "BiasLayer", "ScaleLayer", "ExpressionLayer"]


class NonlinearityLayer(Layer):
    """Apply a nonlinearity (rectify by default; None means identity)."""

    def __init__(self, incoming, nonlinearity=nonlinearities.rectify, **kwargs):
        super().__init__(incoming, **kwargs)
        self.nonlinearity = nonlinearities.identity if nonlinearity is None else nonlinearity

    def get_output_for(self, input, **kwargs):
        return self.nonlinearity(input)


def _shared_pattern(layer, shared_axes, name):
    if shared_axes == "auto":
        shared_axes = (0,) + tuple(range(2, len(layer.input_shape)))
    elif isinstance(shared_axes, int):
        shared_axes = (shared_axes,)
    shape = [size for axis, size in enumerate(layer.input_shape) if axis not in shared_axes]
    if any(size is None for size in shape):
        raise ValueError(f"{name} needs specified input sizes for all axes that {name}s "
                         "are not shared over.")
    return tuple(shared_axes), shape


def _broadcast_param(p, shared_axes, ndim):
    pattern, k = [], 0
    for d in range(ndim):
        if d in shared_axes:
            pattern.append("x")
        else:
            pattern.append(k)
            k += 1
    return p.dimshuffle(pattern)


class BiasLayer(Layer):
    """Add a learned bias, shared over ``shared_axes`` ('auto': all but axis 1)."""

    def __init__(self, incoming, b=init.Constant(0), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes, shape = _shared_pattern(self, shared_axes, "BiasLayer")
        self.b = None if b is None else self.add_param(b, shape, "b", regularizable=False)

    def get_output_for(self, input, **kwargs):
        if self.b is None:
            return input
        return input + _broadcast_param(self.b, self.shared_axes, input.ndim)


class ScaleLayer(Layer):
    """Multiply by a learned scale, shared over ``shared_axes``."""

    def __init__(self, incoming, scales=init.Constant(1), shared_axes="auto", **kwargs):
        super().__init__(incoming, **kwargs)
        self.shared_axes, shape = _shared_pattern(self, shared_axes, "ScaleLayer")
        self.scales = self.add_param(scales, shape, "scales", regularizable=False)

    def get_output_for(self, input, **kwargs):
        return input * _broadcast_param(self.scales, self.shared_axes, input.ndim)


class ExpressionLayer(Layer):
    """Apply an arbitrary function to the input.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
    function : callable
        Maps the input expression to the output expression.
    output_shape : None, tuple, 'auto' or callable
        None: same as the input shape; a tuple: that shape; a callable: maps
        the input shape to the output shape; 'auto': inferred by running the
        function on a dummy input.
    """

    def __init__(self, incoming, function, output_shape=None, **kwargs):
        super().__init__(incoming, **kwargs)
        if output_shape is None:
            self._output_shape = None
        elif output_shape == "auto":
            self._output_shape = "auto"
        elif hasattr(output_shape, "__call__"):
            self.get_output_shape_for = output_shape
        else:
            self._output_shape = tuple(output_shape)
        self.function = function

    def get_output_shape_for(self, input_shape):
        if self._output_shape is None:
            return input_shape
        if self._output_shape == "auto":
            import numpy as np
            import pytensor
            input_shape = (0 if s is None else s for s in input_shape)
            X = pt.alloc(np.asarray(0, dtype=pytensor.config.floatX), *input_shape)
            output_shape = self.function(X).shape.eval()
            output_shape = tuple(s if s else None for s in output_shape)
            return output_shape
        return self._output_shape

    def get_output_for(self, input, **kwargs):
        return self.function(input)
