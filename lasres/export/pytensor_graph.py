"""Walking a PyTensor graph op by op, for the exporters.

A layer whose computation the exporters have no dedicated translation for
(an ``ExpressionLayer``, a class that overrides ``get_output_for``, a
nonlinearity outside :mod:`lasres.nonlinearities`, ...) is exported by
building its deterministic graph on symbolic inputs of the layer's static
shapes and translating that graph node by node. :class:`Walker` does the
walking shared by both backends: parameters (shared variables) and
constants, constant folding (every node whose inputs are all known at
export time is computed here, with the op's own ``perform``: shapes of
known sizes, index arithmetic, ...), and one-line errors naming the op that
has no translation. A backend supplies ``emit(node, values)``.
"""
import numpy as np
from pytensor.tensor.subtensor import get_idx_list
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant
from pytensor.scan.op import Scan
from pytensor.tensor.random.op import RandomVariable
import pytensor.tensor as pt

from ..errors import ExportError
from ..layers import MergeLayer


class Const:
    """A value known at export time."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = np.asarray(value)

    def __repr__(self):
        return f"Const({self.value!r})"


def op_name(op):
    """A short name of a PyTensor op for messages."""
    name = type(op).__name__
    scalar = getattr(op, "scalar_op", None)
    if scalar is not None:
        name += f"{{{type(scalar).__name__}}}"
    return name


class Unsupported(Exception):
    """Raised by a backend for an op (or a use of it) with no translation."""


def index_entries(node, ins, value, skip=0):
    """The index list of a ``Subtensor``-like node, each entry (each bound of
    a slice) replaced by ``value(entry, v)``: ``v`` is the backend's value of
    an entry that is a graph variable (a :class:`Const` for a constant one),
    None for an entry the op holds itself. ``skip``: the inputs before the
    indexed tensor's, as ``IncSubtensor``'s update."""
    lookup = dict(zip(node.inputs, ins))

    def one(x):
        if x is None:
            return None
        if hasattr(x, "type"):
            return value(x, lookup[x] if x in lookup else Const(x.data))
        return value(x, None)

    return [slice(one(i.start), one(i.stop), one(i.step)) if isinstance(i, slice) else one(i)
            for i in get_idx_list(node.inputs[skip:], node.op.idx_list)]


class OpEmitter:
    """The dispatch of a backend that translates op by op: a node goes to
    the method ``op_<Class>`` of its op's class, or else of the nearest base
    class that has one; it returns an output or a list of outputs."""

    def __call__(self, node, ins):
        for cls in type(node.op).__mro__:
            fn = getattr(self, "op_" + cls.__name__, None)
            if fn is not None:
                out = fn(node, ins)
                return out if isinstance(out, list) else [out]
        raise Unsupported("")


def _is_random(node):
    return isinstance(node.op, RandomVariable)


def toposort(inputs, outputs):
    try:
        from pytensor.graph.traversal import io_toposort
    except ImportError:  # older PyTensor
        from pytensor.graph.basic import io_toposort
    return io_toposort(inputs, outputs)


def fold(node, values):
    """The outputs of ``node`` computed from constant inputs, or None."""
    if _is_random(node):
        return None
    if isinstance(node.op, Scan):
        return None
    try:
        storage = [[None] for _ in node.outputs]
        node.op.perform(node, [v.value for v in values], storage)
        return [Const(np.asarray(s[0], dtype=o.dtype)) for s, o in zip(storage, node.outputs)]
    except NotImplementedError:
        return None
    except Exception:  # noqa: BLE001 -- a perform that cannot run here
        return None


class Walker:
    """Translate the graph from ``inputs`` to ``outputs`` with ``emit``.

    ``values`` maps the symbolic inputs to backend values. ``param(var)``
    gives the backend value of a shared variable. ``emit(node, ins)`` gets
    the node and its inputs' values (:class:`Const` or backend values) and
    returns one value per output; it raises :class:`Unsupported` for an op
    it cannot translate.
    """

    def __init__(self, emit, param, fail):
        self.emit = emit
        self.param = param
        self.fail = fail  # fail(message) -> an ExportError to raise

    def value(self, var, values):
        if var in values:
            return values[var]
        if isinstance(var, Constant):
            return Const(var.data)
        if isinstance(var, SharedVariable):
            v = self.param(var)
            values[var] = v
            return v
        raise self.fail(f"the graph reads the variable {var} ({var.type}), which is neither "
                        "its input nor a parameter")

    def static_size(self, node, shape_of):
        """A size that the static shapes know (``x.shape`` fully known,
        ``x.shape[i]``, ``Shape_i``), or None."""
        name = type(node.op).__name__
        x = node.inputs[0]
        if name == "Shape":
            shape_of[node.outputs[0]] = x.type.shape
            if None not in x.type.shape:
                return Const(np.asarray(x.type.shape, dtype=node.outputs[0].dtype))
        elif name == "Shape_i":
            d = x.type.shape[node.op.i]
            if d is not None:
                return Const(np.asarray(d, dtype=node.outputs[0].dtype))
        elif name == "Subtensor" and x in shape_of and len(node.op.idx_list) == 1:
            (i,) = get_idx_list(node.inputs, node.op.idx_list)
            if isinstance(i, Constant):
                i = int(i.data)
            if isinstance(i, (int, np.integer)) and -len(shape_of[x]) <= i < len(shape_of[x]):
                d = shape_of[x][i]
                if d is not None:
                    return Const(np.asarray(d, dtype=node.outputs[0].dtype))
        return None

    def run(self, inputs, outputs, values):
        shape_of = {}
        for node in toposort(list(inputs), list(outputs)):
            ins = [self.value(i, values) for i in node.inputs]
            outs = None
            known = self.static_size(node, shape_of)
            if known is not None:
                outs = [known]
            elif all(isinstance(v, Const) for v in ins):
                outs = fold(node, ins)
            if outs is None:
                if _is_random(node):
                    raise self.fail(f"its graph draws random numbers ({op_name(node.op)}) "
                                    "in the deterministic pass")
                try:
                    outs = self.emit(node, ins)
                except Unsupported as exc:
                    why = str(exc)
                    raise self.fail(f"no translation for the PyTensor op {op_name(node.op)}"
                                    + (f" ({why})" if why else "")) from None
            for o, v in zip(node.outputs, outs):
                values[o] = v
        return [self.value(o, values) for o in outputs]


def symbolic_inputs(shapes, dtypes, names=None):
    """Fresh symbolic tensors of the given static shapes and dtypes."""
    return [pt.tensor(dtype=d, shape=tuple(s), name=None if names is None else names[i])
            for i, (s, d) in enumerate(zip(shapes, dtypes))]


def layer_graph(layer, in_shapes, in_dtypes, deterministic=True, **kwargs):
    """(inputs, output) of ``layer.get_output_for`` on fresh symbolic inputs."""
    xs = symbolic_inputs(in_shapes, in_dtypes)
    if isinstance(layer, MergeLayer):
        y = layer.get_output_for(xs, deterministic=deterministic, **kwargs)
    else:
        y = layer.get_output_for(xs[0], deterministic=deterministic, **kwargs)
    return xs, pt.as_tensor_variable(y)


__all__ = ["Const", "Walker", "Unsupported", "op_name", "layer_graph", "symbolic_inputs",
           "ExportError"]
