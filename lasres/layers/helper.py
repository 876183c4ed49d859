"""Functions over whole networks (Lasagne's ``lasagne.layers.helper``)."""
from collections import deque
from itertools import chain

import numpy as np

from .. import utils
from ..errors import ShapeMismatchError

__all__ = ["get_all_layers", "get_output", "get_output_shape", "get_all_params",
           "count_params", "get_all_param_values", "set_all_param_values"]


def get_all_layers(layer, treat_as_input=None):
    """All layers below ``layer`` (a layer or a list), each after its inputs.

    A depth-first walk from the output: a merge layer's inputs are visited in
    the order of its ``incoming`` list; this order defines the order of
    :func:`get_all_params` and so the layout of weight files.
    """
    try:
        queue = deque(layer)
    except TypeError:
        queue = deque([layer])
    seen = set()
    done = set()
    result = []
    if treat_as_input is not None:
        seen.update(treat_as_input)
    while queue:
        layer = queue[0]
        if layer is None:
            queue.popleft()
        elif layer not in seen:
            seen.add(layer)
            if hasattr(layer, "input_layers"):
                queue.extendleft(reversed(layer.input_layers))
            elif hasattr(layer, "input_layer"):
                queue.appendleft(layer.input_layer)
        else:
            queue.popleft()
            if layer not in done:
                result.append(layer)
                done.add(layer)
    return result


def get_output(layer_or_layers, inputs=None, **kwargs):
    """The symbolic output of one layer or a list of layers.

    Parameters
    ----------
    layer_or_layers : Layer or list of Layer
    inputs : None, expression, or dict
        None: the networks' InputLayers' variables; an expression (or array):
        the input for the single InputLayer; a dict mapping layers (input
        layers or any other) to expressions to substitute for their outputs.
    **kwargs
        Passed to every layer's ``get_output_for`` (e.g. ``deterministic=True``).
    """
    from .input import InputLayer as _Input
    from .base import Layer as _Layer
    if isinstance(inputs, dict):  # as Lasagne: keys are layers (or None)
        for input_key in inputs.keys():
            if (input_key is not None) and (not isinstance(input_key, _Layer)):
                raise TypeError("The inputs dictionary keys must be"
                                " lasagne layers not %s." % type(input_key))
    treat_as_input = inputs.keys() if isinstance(inputs, dict) else []
    all_layers = get_all_layers(layer_or_layers, treat_as_input)
    all_outputs = dict((layer, layer.input_var) for layer in all_layers
                       if isinstance(layer, _Input) and layer not in treat_as_input)
    if isinstance(inputs, dict):
        all_outputs.update((layer, utils.as_theano_expression(expr))
                           for layer, expr in inputs.items())
    elif inputs is not None:
        if len(all_outputs) > 1:
            raise ValueError("get_output() was called with a single input expression on a "
                             "network with multiple input layers. Please call it with a "
                             "dictionary of input expressions instead.")
        for input_layer in all_outputs:
            all_outputs[input_layer] = utils.as_theano_expression(inputs)
    accepted_kwargs = {"deterministic"}
    for layer in all_layers:
        if layer not in all_outputs:
            try:
                if hasattr(layer, "input_layers"):
                    layer_inputs = [all_outputs[input_layer] for input_layer in layer.input_layers]
                else:
                    layer_inputs = all_outputs[layer.input_layer]
            except KeyError:
                raise ValueError(f"get_output() was called without giving an input expression "
                                 f"for the free-floating layer {layer!r}. Please call it with "
                                 "a dictionary mapping this layer to an input expression.")
            all_outputs[layer] = layer.get_output_for(layer_inputs, **kwargs)
            try:
                accepted_kwargs |= set(utils.inspect_kwargs(layer.get_output_for))
            except TypeError:  # introspection not possible
                pass
            accepted_kwargs |= set(getattr(layer, "get_output_kwargs", []))
    unused_kwargs = set(kwargs.keys()) - accepted_kwargs
    if unused_kwargs:
        import warnings
        suggestions = []
        for kwarg in unused_kwargs:
            import difflib
            suggestion = difflib.get_close_matches(kwarg, accepted_kwargs)
            if suggestion:
                suggestions.append(f"{kwarg} (perhaps you meant {suggestion[0]})")
            else:
                suggestions.append(kwarg)
        warnings.warn("get_output() was called with unused kwargs:\n\t" + "\n\t".join(suggestions))
    try:
        return [all_outputs[layer] for layer in layer_or_layers]
    except TypeError:
        return all_outputs[layer_or_layers]


def get_output_shape(layer_or_layers, input_shapes=None):
    """The output shape(s) for given input shape(s) (a tuple or a dict
    mapping layers to shapes); the layers' own shapes when None."""
    if input_shapes is None or input_shapes == {}:
        try:
            return [layer.output_shape for layer in layer_or_layers]
        except TypeError:
            return layer_or_layers.output_shape
    from .input import InputLayer as _Input
    if isinstance(input_shapes, dict):
        treat_as_input = input_shapes.keys()
    else:
        treat_as_input = []
    all_layers = get_all_layers(layer_or_layers, treat_as_input)
    all_shapes = dict((layer, layer.shape) for layer in all_layers
                      if isinstance(layer, _Input) and layer not in treat_as_input)
    if isinstance(input_shapes, dict):
        all_shapes.update(input_shapes)
    else:
        if len(all_shapes) > 1:
            raise ValueError("get_output_shape() was called with a single input shape on a "
                             "network with multiple input layers. Please call it with a "
                             "dictionary of input shapes instead.")
        for input_layer in all_shapes:
            all_shapes[input_layer] = input_shapes
    for layer in all_layers:
        if layer not in all_shapes:
            if hasattr(layer, "input_layers"):
                input_shapes = [all_shapes[input_layer] for input_layer in layer.input_layers]
            else:
                input_shapes = all_shapes[layer.input_layer]
            all_shapes[layer] = layer.get_output_shape_for(input_shapes)
    try:
        return [all_shapes[layer] for layer in layer_or_layers]
    except TypeError:
        return all_shapes[layer_or_layers]


def get_all_params(layer, unwrap_shared=True, **tags):
    """All parameters of the network below ``layer``, in layer order, each
    once; filtered by tags (``trainable=True``, ``regularizable=True``, ...)."""
    layers = get_all_layers(layer)
    params = chain.from_iterable(l.get_params(unwrap_shared=unwrap_shared, **tags)
                                 for l in layers)
    return utils.unique(params)


def count_params(layer, **tags):
    """Total number of parameter values (optionally only those with tags)."""
    params = get_all_params(layer, **tags)
    shapes = [p.get_value().shape for p in params]
    counts = [np.prod(shape) for shape in shapes]
    return int(sum(counts))


def get_all_param_values(layer, **tags):
    """The values of :func:`get_all_params` as a list of NumPy arrays."""
    params = get_all_params(layer, **tags)
    return [p.get_value() for p in params]


def _param_description(layer, param):
    for l in get_all_layers(layer):
        if param in l.params:
            return f"{type(l).__name__}.{param.name.split('.')[-1] if param.name else '?'}"
    return param.name or "?"


def set_all_param_values(layer, values, **tags):
    """Set the values of :func:`get_all_params` from a list of arrays.

    Raises :class:`lasres.errors.ShapeMismatchError` (a ``ValueError``) when
    the number of arrays differs, or naming the first parameter whose shape
    does not fit and both shapes; nothing is changed in that case.
    """
    params = get_all_params(layer, **tags)
    if len(params) != len(values):
        raise ShapeMismatchError(f"mismatch: got {len(values)} values to set {len(params)} "
                                 "parameters (is the weight file for another architecture?)")
    for i, (p, v) in enumerate(zip(params, values)):
        pshape = p.get_value(borrow=True).shape
        vshape = np.shape(v)
        if pshape != vshape:
            raise ShapeMismatchError(
                f"mismatch at parameter {i} ({_param_description(layer, p)}): the network has "
                f"shape {pshape}, the values have shape {vshape}")
    for p, v in zip(params, values):
        p.set_value(np.asarray(v, dtype=p.dtype))
