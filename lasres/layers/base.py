"""Layer base classes (Lasagne's ``lasagne.layers.base``)."""
from collections import OrderedDict

from pytensor.graph.basic import Variable

from .. import utils

__all__ = ["Layer", "MergeLayer"]


def _check_shape(layer, shape):
    if any(isinstance(s, Variable) for s in shape):
        raise ValueError("%s returned a symbolic output shape from its "
                         "get_output_shape_for() method: %r. This is not "
                         "allowed; shapes must be tuples of integers for "
                         "fixed-size dimensions and Nones for variable "
                         "dimensions." % (layer.__class__.__name__, shape))


class Layer(object):
    """Base class of all layers with a single input.

    Parameters
    ----------
    incoming : a :class:`Layer` instance or a tuple
        The layer feeding into this layer, or the expected input shape.
    name : a string or None
        An optional name to attach to this layer (prefixes its params' names).
    """

    def __init__(self, incoming, name=None):
        if isinstance(incoming, tuple):
            self.input_shape = incoming
            self.input_layer = None
        else:
            self.input_shape = incoming.output_shape
            self.input_layer = incoming
        self.name = name
        self.params = OrderedDict()
        self.get_output_kwargs = []
        if any(d is not None and d <= 0 for d in self.input_shape):
            raise ValueError(("Cannot create Layer with a non-positive input_shape "
                              "dimension. input_shape=%r, self.name=%r")
                             % (self.input_shape, self.name))

    @property
    def output_shape(self):
        shape = self.get_output_shape_for(self.input_shape)
        _check_shape(self, shape)
        return shape

    def get_params(self, unwrap_shared=True, **tags):
        """The layer's parameters, optionally filtered by tags
        (``trainable=True``, ``regularizable=True``, ...), in the order added."""
        result = list(self.params.keys())
        only = set(tag for tag, value in tags.items() if value)
        if only:
            result = [param for param in result if not (only - self.params[param])]
        exclude = set(tag for tag, value in tags.items() if not value)
        if exclude:
            result = [param for param in result if not (self.params[param] & exclude)]
        if unwrap_shared:
            return utils.collect_shared_vars(result)
        return result

    def get_output_shape_for(self, input_shape):
        """The output shape for a given input shape (None for unknown dims)."""
        return input_shape

    def get_output_for(self, input, **kwargs):
        """The output expression for a given input expression."""
        raise NotImplementedError

    def add_param(self, spec, shape, name=None, **tags):
        """Create a parameter from ``spec`` (array, shared variable, expression
        or initializer), register it with its tags and return it.

        Tags ``trainable`` and ``regularizable`` default to True.
        """
        if name is not None and self.name is not None:
            name = f"{self.name}.{name}"
        param = utils.create_param(spec, shape, name)
        tags["trainable"] = tags.get("trainable", True)
        tags["regularizable"] = tags.get("regularizable", True)
        self.params[param] = set(tag for tag, value in tags.items() if value)
        return param


class MergeLayer(Layer):
    """Base class of layers with several inputs.

    Parameters
    ----------
    incomings : a list of :class:`Layer` instances or tuples
        The layers feeding into this layer, or their expected shapes.
    name : a string or None
        An optional name to attach to this layer.
    """

    def __init__(self, incomings, name=None):
        self.input_shapes = [incoming if isinstance(incoming, tuple) else incoming.output_shape
                             for incoming in incomings]
        self.input_layers = [None if isinstance(incoming, tuple) else incoming
                             for incoming in incomings]
        self.name = name
        self.params = OrderedDict()
        self.get_output_kwargs = []

    @Layer.output_shape.getter
    def output_shape(self):
        shape = self.get_output_shape_for(self.input_shapes)
        _check_shape(self, shape)
        return shape

    def get_output_shape_for(self, input_shapes):
        raise NotImplementedError

    def get_output_for(self, inputs, **kwargs):
        raise NotImplementedError
