"""Layers merging several inputs (Lasagne's ``lasagne.layers.merge``)."""
import pytensor.tensor as pt

from .base import MergeLayer

__all__ = ["autocrop", "autocrop_array_shapes", "ConcatLayer", "concat", "ElemwiseMergeLayer",
           "ElemwiseSumLayer"]


def autocrop(inputs, cropping):
    """Crop ``inputs`` to a common size per axis: ``cropping`` holds per axis
    None, 'lower', 'upper' or 'center'."""
    if cropping is None:
        return inputs
    ndim = inputs[0].ndim
    if not all(input.ndim == ndim for input in inputs):
        raise ValueError("Not all inputs are of the same dimensionality. Got "
                         f"{[input.ndim for input in inputs]} inputs of dimensionalities.")
    shapes = [input.shape for input in inputs]
    shapes_tensor = pt.as_tensor_variable(shapes)
    min_shape = pt.min(shapes_tensor, axis=0)
    slices_by_input = [[] for _ in range(len(inputs))]
    cropping = list(cropping)
    if ndim > len(cropping):
        cropping = cropping + [None] * (ndim - len(cropping))
    for dim, cr in enumerate(cropping):
        if cr is None:
            slice_all = slice(None)
            for slices in slices_by_input:
                slices.append(slice_all)
        else:
            sz = min_shape[dim]
            if cr == "lower":
                slc_lower = slice(None, sz)
                for slices in slices_by_input:
                    slices.append(slc_lower)
            elif cr == "upper":
                slc_upper = slice(-sz, None)
                for slices in slices_by_input:
                    slices.append(slc_upper)
            elif cr == "center":
                for sh, slices in zip(shapes, slices_by_input):
                    offset = (sh[dim] - sz) // 2
                    slices.append(slice(offset, offset + sz))
            else:
                raise ValueError(f"Unknown crop mode '{cr}'")
    return [input[tuple(slices)] for input, slices in zip(inputs, slices_by_input)]


def autocrop_array_shapes(input_shapes, cropping):
    """The shapes that :func:`autocrop` produces from ``input_shapes``."""
    if cropping is None:
        return input_shapes
    ndim = len(input_shapes[0])
    if not all(len(sh) == ndim for sh in input_shapes):
        raise ValueError("Not all inputs are of the same dimensionality.")
    result = []
    cropping = list(cropping)
    if ndim > len(cropping):
        cropping = cropping + [None] * (ndim - len(cropping))
    for sh, cr in zip(zip(*input_shapes), cropping):
        if cr is None:
            result.append(sh)
        elif cr in {"lower", "center", "upper"}:
            min_sh = None if any(x is None for x in sh) else min(sh)
            result.append([min_sh] * len(sh))
        else:
            raise ValueError(f"Unknown crop mode '{cr}'")
    return [tuple(sh) for sh in zip(*result)]


class ConcatLayer(MergeLayer):
    """Concatenate inputs along ``axis`` (default 1, the channels)."""

    def __init__(self, incomings, axis=1, cropping=None, **kwargs):
        super().__init__(incomings, **kwargs)
        self.axis = axis
        if cropping is not None:
            cropping = list(cropping)
            cropping[axis] = None
        self.cropping = cropping

    def get_output_shape_for(self, input_shapes):
        input_shapes = autocrop_array_shapes(input_shapes, self.cropping)
        output_shape = [next((s for s in sizes if s is not None), None)
                        for sizes in zip(*input_shapes)]

        def match(shape1, shape2):
            axis = self.axis if self.axis >= 0 else len(shape1) + self.axis
            return (len(shape1) == len(shape2) and
                    all(i == axis or s1 is None or s2 is None or s1 == s2
                        for i, (s1, s2) in enumerate(zip(shape1, shape2))))

        if not all(match(shape, output_shape) for shape in input_shapes):
            raise ValueError("Mismatch: input shapes must be the same except in the "
                             f"concatenation axis; got {input_shapes}")
        sizes = [input_shape[self.axis] for input_shape in input_shapes]
        concat_size = None if any(s is None for s in sizes) else sum(sizes)
        output_shape[self.axis] = concat_size
        return tuple(output_shape)

    def get_output_for(self, inputs, **kwargs):
        inputs = autocrop(inputs, self.cropping)
        return pt.concatenate(inputs, axis=self.axis)


concat = ConcatLayer


class ElemwiseMergeLayer(MergeLayer):
    """Merge inputs with an elementwise binary function (e.g. ``pt.mul``)."""

    def __init__(self, incomings, merge_function, cropping=None, **kwargs):
        super().__init__(incomings, **kwargs)
        self.merge_function = merge_function
        self.cropping = cropping

    def get_output_shape_for(self, input_shapes):
        input_shapes = autocrop_array_shapes(input_shapes, self.cropping)
        output_shape = tuple(next((s for s in sizes if s is not None), None)
                             for sizes in zip(*input_shapes))

        def match(shape1, shape2):
            return (len(shape1) == len(shape2) and
                    all(s1 is None or s2 is None or s1 == s2 for s1, s2 in zip(shape1, shape2)))

        if not all(match(shape, output_shape) for shape in input_shapes):
            raise ValueError(f"Mismatch: not all input shapes are the same: {input_shapes}")
        return output_shape

    def get_output_for(self, inputs, **kwargs):
        inputs = autocrop(inputs, self.cropping)
        output = None
        for input in inputs:
            output = input if output is None else self.merge_function(output, input)
        return output


class ElemwiseSumLayer(ElemwiseMergeLayer):
    """Elementwise sum of the inputs, each times its coefficient (default 1)."""

    def __init__(self, incomings, coeffs=1, cropping=None, **kwargs):
        super().__init__(incomings, pt.add, cropping=cropping, **kwargs)
        if isinstance(coeffs, list):
            if len(coeffs) != len(incomings):
                raise ValueError(f"Mismatch: got {len(coeffs)} coeffs for {len(incomings)} "
                                 "incomings")
        else:
            coeffs = [coeffs] * len(incomings)
        self.coeffs = coeffs

    def get_output_for(self, inputs, **kwargs):
        inputs = [input * coeff if coeff != 1 else input
                  for coeff, input in zip(self.coeffs, inputs)]
        return super().get_output_for(inputs, **kwargs)
