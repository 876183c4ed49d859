"""Shape-changing layers (Lasagne's ``lasagne.layers.shape``)."""
import numpy as np
import pytensor.tensor as pt

from .base import Layer

__all__ = ["FlattenLayer", "flatten", "ReshapeLayer", "reshape", "DimshuffleLayer",
           "dimshuffle", "PadLayer", "pad", "SliceLayer"]


class FlattenLayer(Layer):
    """Flatten trailing axes so that the output has ``outdim`` dimensions."""

    def __init__(self, incoming, outdim=2, **kwargs):
        super().__init__(incoming, **kwargs)
        self.outdim = outdim
        if outdim < 1:
            raise ValueError(f"Dim must be >0, was {outdim}")

    def get_output_shape_for(self, input_shape):
        to_flatten = input_shape[self.outdim - 1:]
        if any(s is None for s in to_flatten):
            flattened = None
        else:
            flattened = int(np.prod(to_flatten))
        return input_shape[:self.outdim - 1] + (flattened,)

    def get_output_for(self, input, **kwargs):
        return input.flatten(self.outdim)


flatten = FlattenLayer


class ReshapeLayer(Layer):
    """Reshape with Lasagne's spec: ints, -1 (inferred, once) and ``[i]``
    (the size of input axis i)."""

    def __init__(self, incoming, shape, **kwargs):
        super().__init__(incoming, **kwargs)
        shape = tuple(shape)
        for s in shape:
            if isinstance(s, int):
                if s == 0 or s < -1:
                    raise ValueError("`shape` integers must be positive or -1")
            elif isinstance(s, list):
                if len(s) != 1 or not isinstance(s[0], int) or s[0] < 0:
                    raise ValueError("`shape` input references must be single-element lists "
                                     "of int >= 0")
            elif hasattr(s, "owner"):
                if s.ndim != 0:
                    raise ValueError(f"A symbolic variable in a shape specification must be "
                                     f"a scalar, but had {s.ndim} dimensions")
            else:
                raise ValueError("`shape` must be a tuple of int and/or [int]")
        if sum(s == -1 for s in shape if isinstance(s, int)) > 1:
            raise ValueError("`shape` cannot contain multiple -1")
        self.shape = shape
        self.get_output_shape_for(self.input_shape)

    def get_output_shape_for(self, input_shape, **kwargs):
        output_shape = list(self.shape)
        masked_input_shape = list(input_shape)
        masked_output_shape = list(output_shape)
        for dim, o in enumerate(output_shape):
            if isinstance(o, list):
                if o[0] >= len(input_shape):
                    raise ValueError(f"specification contains [{o[0]}], but input shape has "
                                     f"{len(input_shape)} dimensions only")
                output_shape[dim] = input_shape[o[0]]
                masked_output_shape[dim] = input_shape[o[0]]
                if (input_shape[o[0]] is None) and (masked_input_shape[o[0]] is None):
                    masked_input_shape[o[0]] = 1
                    masked_output_shape[dim] = 1
        for dim, o in enumerate(output_shape):
            if hasattr(o, "owner"):
                output_shape[dim] = None
                masked_output_shape[dim] = None
        input_size = (None if any(x is None for x in masked_input_shape)
                      else np.prod(masked_input_shape))
        output_size = (None if any(x is None for x in masked_output_shape)
                       else np.prod(masked_output_shape))
        del masked_input_shape, masked_output_shape
        if -1 in output_shape:
            dim = output_shape.index(-1)
            if (input_size is None) or (output_size is None):
                output_shape[dim] = None
                output_size = None
            else:
                output_size *= -1
                output_shape[dim] = input_size // output_size
                output_size *= output_shape[dim]
        if (input_size is not None) and (output_size is not None) and (input_size != output_size):
            raise ValueError(f"{self.shape} cannot be reshaped to specification {input_shape}. "
                             f"The total size mismatches.")
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        output_shape = list(self.shape)
        for dim, o in enumerate(output_shape):
            if isinstance(o, list):
                output_shape[dim] = input.shape[o[0]]
        return input.reshape(tuple(output_shape))


reshape = ReshapeLayer


class DimshuffleLayer(Layer):
    """Permute axes and insert broadcastable ones ('x')."""

    def __init__(self, incoming, pattern, **kwargs):
        super().__init__(incoming, **kwargs)
        used_dims = set()
        for p in pattern:
            if isinstance(p, int):
                if p in used_dims:
                    raise ValueError(f"pattern contains dimension {p} more than once")
                used_dims.add(p)
            elif p != "x":
                raise ValueError("pattern should only contain dimension indices or 'x', "
                                 f"not {p!r}")
        self.pattern = pattern
        self.get_output_shape_for(self.input_shape)

    def get_output_shape_for(self, input_shape):
        output_shape = []
        dims_used = [False] * len(input_shape)
        for p in self.pattern:
            if isinstance(p, int):
                if p < 0 or p >= len(input_shape):
                    raise ValueError(f"pattern contains {p}, but input shape has "
                                     f"{len(input_shape)} dimensions only")
                o = input_shape[p]
                dims_used[p] = True
            else:
                o = 1
            output_shape.append(o)
        for i, (dim_size, used) in enumerate(zip(input_shape, dims_used)):
            if not used and dim_size != 1 and dim_size is not None:
                raise ValueError(f"pattern attempted to collapse dimension {i} of size "
                                 f"{dim_size}; dimensions with size != 1/None are not "
                                 "broadcastable and cannot be collapsed")
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        return input.dimshuffle(self.pattern)


dimshuffle = DimshuffleLayer


def _pair(w):
    """A (before, after) padding width from an int or a pair."""
    try:
        lo, hi = w
    except TypeError:
        lo = hi = w
    return lo, hi


class PadLayer(Layer):
    """Pad the trailing axes (after ``batch_ndim``) with ``val``.

    ``width`` is an int (all axes, both sides), a tuple of ints (per axis) or
    a tuple of (before, after) pairs.
    """

    def __init__(self, incoming, width, val=0, batch_ndim=2, **kwargs):
        super().__init__(incoming, **kwargs)
        self.width = width
        self.val = val
        self.batch_ndim = batch_ndim

    def pad_widths(self, ndim):
        """``(before, after)`` padding of each padded axis of an ``ndim``-d input."""
        n = ndim - self.batch_ndim
        if isinstance(self.width, int):
            widths = [(self.width, self.width)] * n
        else:
            widths = [_pair(w) for w in self.width]
        return widths

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        for k, (lo, hi) in enumerate(self.pad_widths(len(input_shape))):
            d = self.batch_ndim + k
            if output_shape[d] is not None:
                output_shape[d] += lo + hi
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        widths = self.pad_widths(input.ndim)
        out_shape = [input.shape[d] for d in range(input.ndim)]
        idx = [slice(None)] * input.ndim
        for k, (lo, hi) in enumerate(widths):
            d = self.batch_ndim + k
            out_shape[d] = out_shape[d] + lo + hi
            idx[d] = slice(lo, lo + input.shape[d])
        out = pt.alloc(pt.cast(self.val, input.dtype), *out_shape)
        return pt.set_subtensor(out[tuple(idx)], input)


pad = PadLayer


class SliceLayer(Layer):
    """Slice the input along one ``axis`` with an int or a slice."""

    def __init__(self, incoming, indices, axis=-1, **kwargs):
        super().__init__(incoming, **kwargs)
        self.slice = indices
        self.axis = axis

    def get_output_shape_for(self, input_shape):
        output_shape = list(input_shape)
        if isinstance(self.slice, int):
            del output_shape[self.axis]
        elif input_shape[self.axis] is not None:
            output_shape[self.axis] = len(range(*self.slice.indices(input_shape[self.axis])))
        else:
            output_shape[self.axis] = None
        return tuple(output_shape)

    def get_output_for(self, input, **kwargs):
        axis = self.axis
        if axis < 0:
            axis += input.ndim
        return input[(slice(None),) * axis + (self.slice,)]
