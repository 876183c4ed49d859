"""Graph-size helpers: fused elementwise expressions and an op that attaches
variables to a graph.

PyTensor's rewriting time grows much faster than the graph, so lasres keeps
expressions that are evaluated once per parameter or per layer — update
rules, running averages — as single nodes from the start instead of
relying on the rewriter to fuse them.
"""
import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.utils import MethodNotDefined
from pytensor.link.c.op import COp
from pytensor.scalar import upcast as pytensor_upcast
from pytensor.tensor.elemwise import Elemwise

from ._csource import c_source, c_source_crc

__all__ = ["fused_elemwise", "Attach", "attach", "SumOfSquares", "sum_of_squares"]


def fused_elemwise(fn, *inputs, dtype=None):
    """One elementwise node computing ``fn`` over the inputs' elements.

    Parameters
    ----------
    fn : callable
        Takes one PyTensor scalar per input and returns one scalar
        expression or a tuple of them (written with ``+ - * /`` etc.).
    *inputs : tensors or numbers
        Tensors are broadcast against each other (lower-dimensional ones
        are padded on the left); numbers become scalar constants of
        ``dtype`` inside the fused node (default: the first tensor's dtype),
        so that no float64 creeps into a float32 graph.

    Returns
    -------
    A tensor, or a list of tensors when ``fn`` returns several outputs.
    """
    tensors = [pt.as_tensor_variable(i) for i in inputs if hasattr(i, "type")]
    dtype = dtype or tensors[0].dtype
    ndim = max(t.ndim for t in tensors)
    ins, scalars = [], []
    for i in inputs:
        if hasattr(i, "type"):
            t = pt.as_tensor_variable(i)
            ins.append(pt.shape_padleft(t, ndim - t.ndim) if t.ndim < ndim else t)
            scalars.append(ps.get_scalar_type(t.dtype)())
        else:
            scalars.append(ps.constant(np.asarray(i, dtype=dtype)))
    outs = fn(*scalars)
    multi = isinstance(outs, (tuple, list))
    comp = ps.Composite([s for s in scalars if not isinstance(s, ps.ScalarConstant)],
                        list(outs) if multi else [outs])
    result = Elemwise(comp)(*ins)
    return list(result) if multi else result


class Attach(Op):
    """``attach(x, *others)`` returns ``x`` (a view) with ``others`` made
    inputs of the graph, so that their default updates are collected when a
    function is compiled; gradients flow to ``x`` only."""

    __props__ = ()
    view_map = {0: [0]}

    def make_node(self, x, *others):
        x = pt.as_tensor_variable(x)
        others = [pt.as_tensor_variable(o) for o in others]
        return Apply(self, [x] + others, [x.type()])

    def perform(self, node, inputs, output_storage):
        output_storage[0][0] = inputs[0]

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def connection_pattern(self, node):
        return [[True]] + [[False]] * (len(node.inputs) - 1)

    def pullback(self, inputs, outputs, cotangents):
        return [cotangents[0]] + [DisconnectedType()() for _ in inputs[1:]]


attach = Attach()


class SumOfSquares(COp):
    """``sum(x ** 2)`` summed over one or several tensors, as one node.

    Each tensor's sum of squares is accumulated in float64 and the per-tensor
    sums are added in float64 in the order given (so a float64 graph adds
    exactly as ``sum(sum(x ** 2) for x in xs)`` does), then cast once to the
    output dtype.  The gradient of each input is ``2 * x * gz`` as one fused
    node.  The L2 penalty of a deep net touches every weight tensor: written
    with stock ops it adds some ten nodes per tensor to a training graph, and
    a chain of scalar sums becomes one fused C kernel with a few hundred
    inputs whose one-time compilation alone took 12 s for ResNet-110.
    """

    __props__ = ()

    def make_node(self, *xs):
        if not xs:
            raise TypeError("sum_of_squares needs at least one tensor")
        xs = [pt.as_tensor_variable(x) for x in xs]
        dtype = pytensor_upcast(*[x.dtype for x in xs])
        return Apply(self, xs, [pt.scalar(dtype=dtype)])

    def perform(self, node, inputs, output_storage):
        total = 0.0
        for x in inputs:
            total += np.sum(np.square(x, dtype=np.float64))
        output_storage[0][0] = np.asarray(total, dtype=node.outputs[0].dtype)

    # The C code sums as perform does, bit for bit (c/sum_squares.c): the
    # C backend then makes no Python call for the L2 penalty.
    _sources = ("sum_squares.c",)
    _c_types = {"float32": ("lr_ssq_f32", "float"), "float64": ("lr_ssq_f64", "double")}

    def c_support_code(self, **kwargs):
        return c_source(*self._sources)

    def c_compile_args(self, **kwargs):
        return ["-ffp-contract=off"]

    def c_code_cache_version(self):
        return (2, c_source_crc(*self._sources))

    def c_code(self, node, name, inputs, outputs, sub):
        dtypes = [x.dtype for x in node.inputs] + [node.outputs[0].dtype]
        if any(d not in self._c_types for d in dtypes):
            raise MethodNotDefined(f"SumOfSquares: no C code for {dtypes}")
        (z,) = outputs
        out_type = self._c_types[node.outputs[0].dtype][1]
        out_num = "NPY_FLOAT32" if node.outputs[0].dtype == "float32" else "NPY_FLOAT64"
        lines = ["{", "double total = 0.0;", "PyArrayObject *c;"]
        for x, var in zip(inputs, node.inputs):
            fn, ctype = self._c_types[var.dtype]
            # NumPy squares into an array of the input's memory order and
            # sums that in memory order: a copy in that order (KEEPORDER)
            lines += [f"if (PyArray_IS_C_CONTIGUOUS({x})) {{ c = {x}; Py_INCREF(c); }}",
                      f"else c = (PyArrayObject *)PyArray_NewCopy({x}, NPY_KEEPORDER);",
                      f"if (!c) {{ {sub['fail']} }}",
                      f"total += {fn}((const {ctype} *)PyArray_DATA(c), PyArray_SIZE(c));",
                      "Py_DECREF(c);"]
        lines += [f"if (!{z}) {{",
                  f"    {z} = (PyArrayObject *)PyArray_EMPTY(0, NULL, {out_num}, 0);",
                  f"    if (!{z}) {{ {sub['fail']} }}",
                  "}",
                  f"*({out_type} *)PyArray_DATA({z}) = ({out_type})total;",
                  "}"]
        return "\n".join(lines)

    def infer_shape(self, fgraph, node, shapes):
        return [()]

    def pullback(self, inputs, outputs, cotangents):
        (gz,) = cotangents
        return [fused_elemwise(lambda x_, g, two: two * x_ * g, x, gz.astype(x.dtype), 2)
                for x in inputs]


sum_of_squares = SumOfSquares()
