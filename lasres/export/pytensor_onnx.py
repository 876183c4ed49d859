"""PyTensor graph -> ONNX nodes, op by op (see :mod:`.pytensor_graph`).

Translated: elementwise ops (arithmetic, comparisons, ``switch``, casts,
the usual unary functions, Lasagne's rectifier, composites), ``DimShuffle``,
``Reshape``, ``Shape``/``Shape_i``, basic and set/inc indexing
(``Subtensor``, ``IncSubtensor``), ``AdvancedSubtensor`` on one axis
(``Gather``), ``Alloc``, ``Join``, ``MakeVector``, ``ARange``, reductions
(``Sum``, ``Max``, ``Min``, ``Prod``, ``Argmax``, ``All``/``Any``), ``Dot``,
``Softmax``/``LogSoftmax``, lasres's convolution ops (forward, transposed,
``Conv2dGradWeights`` for dilated convolutions, N-d) and its pooling op,
and ``Scan`` (the recurrent layers) as an ONNX ``Loop``.
"""
import numpy as np
from pytensor.scalar import basic as ps
from pytensor.scalar.basic import upcast
from pytensor.tensor.type_other import NoneTypeT, SliceType

from ..ops._args import resolve_pad
from ..ops.shape import broadcast_pattern
from ..ops.shape import pool_output_length
from .pytensor_graph import Const, index_entries, OpEmitter, Unsupported, Walker

_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


def _tensor_type(onnx, dtype):
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype("bool" if dtype == "bool" else dtype))


class OnnxEmitter(OpEmitter):
    """Emits ONNX nodes into ``g`` (an ``onnx_graph._Graph``)."""

    def __init__(self, g, base, params):
        self.g = g
        self.base = base
        self.params = params  # shared variable -> initialiser name (cache)

    # --- values -----------------------------------------------------------------
    def name(self, v, dtype):
        """The ONNX tensor of value ``v`` (a Const becomes an initialiser)."""
        if isinstance(v, Const):
            return self.g.const(np.asarray(v.value, dtype=dtype), self.base + "_const",
                                dtype=np.dtype(dtype))
        return v

    def param(self, var):
        if var not in self.params:
            value = np.asarray(var.get_value(), dtype=var.dtype)
            self.params[var] = self.g.const(value, var.name or (self.base + ".param"),
                                            dtype=value.dtype)
        return self.params[var]

    def cast(self, v, from_dtype, to_dtype):
        if isinstance(v, Const):
            return self.name(Const(np.asarray(v.value).astype(to_dtype)), to_dtype)
        if from_dtype == to_dtype:
            return v
        return self.node("Cast", [v], to=_tensor_type(self.g.onnx, to_dtype))

    def node(self, op, inputs, **attrs):
        return self.g.node(op, inputs, self.base + "_" + op.lower(), **attrs)

    def ints(self, values):
        return self.g.ints(values, self.base + "_ints")

    def int64(self, v, var):
        """An int64 ONNX tensor of a value ``v`` of variable ``var``."""
        return self.cast(v, var.dtype, "int64")

    def vector(self, parts, vars_):
        """An int64 vector from scalar values (Const or names)."""
        if all(isinstance(p, Const) for p in parts):
            return self.ints([int(p.value) for p in parts])
        pieces = []
        for p, var in zip(parts, vars_):
            if isinstance(p, Const):
                pieces.append(self.ints([int(p.value)]))
            else:
                pieces.append(self.node("Reshape", [self.int64(p, var), self.ints([1])]))
        return self.node("Concat", pieces, axis=0)

    # --- elementwise ---------------------------------------------------------------
    def op_Elemwise(self, node, ins):
        return self.scalar(node.op.scalar_op, ins, [i.dtype for i in node.inputs],
                           node.outputs[0].dtype)

    _UNARY = {"Abs": "Abs", "Exp": "Exp", "Log": "Log", "Sqrt": "Sqrt", "Tanh": "Tanh",
              "Neg": "Neg", "Floor": "Floor", "Ceil": "Ceil", "Sin": "Sin", "Cos": "Cos",
              "Tan": "Tan", "Sign": "Sign", "Erf": "Erf", "Sigmoid": "Sigmoid",
              "Softplus": "Softplus", "Reciprocal": "Reciprocal", "Invert": "Not",
              "ScalarRectify": "Relu", "RoundHalfToEven": "Round", "IsNan": "IsNaN",
              "IsInf": "IsInf", "Cosh": "Cosh", "Sinh": "Sinh", "ArcTan": "Atan",
              "ArcSin": "Asin", "ArcCos": "Acos"}
    _BINARY = {"Sub": "Sub", "TrueDiv": "Div", "Pow": "Pow", "EQ": "Equal", "LT": "Less",
               "GT": "Greater", "LE": "LessOrEqual", "GE": "GreaterOrEqual", "AND": "And",
               "OR": "Or", "XOR": "Xor", "Mod": "Mod"}
    _NARY = {"Add": "Add", "Mul": "Mul", "Maximum": "Max", "Minimum": "Min",
             "ScalarMaximum": "Max", "ScalarMinimum": "Min"}

    def scalar(self, sop, ins, in_dtypes, out_dtype):
        kind = type(sop).__name__
        if kind == "Composite":
            return self.composite(sop, ins, in_dtypes)
        work = upcast(*in_dtypes) if in_dtypes else out_dtype
        if kind in ("EQ", "NEQ", "LT", "GT", "LE", "GE", "AND", "OR", "XOR"):
            pass
        elif kind in ("Switch", "Cast", "Identity", "Second", "IsNan", "IsInf", "Invert"):
            pass
        else:
            work = out_dtype
        if kind in ("Cast", "Identity"):
            return self.cast(ins[0], in_dtypes[0], out_dtype) if kind == "Cast" else \
                self.cast(ins[0], in_dtypes[0], out_dtype)
        if kind == "Switch":
            cond = self.cast(ins[0], in_dtypes[0], "bool")
            a = self.cast(ins[1], in_dtypes[1], out_dtype)
            b = self.cast(ins[2], in_dtypes[2], out_dtype)
            return self.node("Where", [cond, a, b])
        if kind == "Second":  # second(a, b): b broadcast to a's shape
            b = self.cast(ins[1], in_dtypes[1], out_dtype)
            a = self.name(ins[0], in_dtypes[0])
            return self.node("Expand", [b, self.node("Shape", [a])])
        xs = [self.cast(v, d, work) for v, d in zip(ins, in_dtypes)]
        if kind in self._UNARY:
            y = self.node(self._UNARY[kind], xs)
        elif kind == "Sqr":
            y = self.node("Mul", [xs[0], xs[0]])
        elif kind == "Log1p":
            one = self.name(Const(1), work)
            y = self.node("Log", [self.node("Add", [xs[0], one])])
        elif kind == "Expm1":
            one = self.name(Const(1), work)
            y = self.node("Sub", [self.node("Exp", xs), one])
        elif kind == "Log2" or kind == "Log10":
            c = self.name(Const(np.log(2.0 if kind == "Log2" else 10.0)), work)
            y = self.node("Div", [self.node("Log", xs), c])
        elif kind == "Exp2":
            y = self.node("Pow", [self.name(Const(2.0), work), xs[0]])
        elif kind == "NEQ":
            y = self.node("Not", [self.node("Equal", xs)])
        elif kind == "IntDiv":  # floor division
            q = self.node("Div", xs)
            if np.dtype(work).kind == "f":
                y = self.node("Floor", [q])
            else:  # ONNX truncates: correct where the signs differ and it is inexact
                f32 = [self.cast(x, work, "float64") for x in xs]
                y = self.cast(self.node("Floor", [self.node("Div", f32)]), "float64", work)
        elif kind == "Clip":
            y = self.node("Max", [self.node("Min", [xs[0], xs[2]]), xs[1]])
        elif kind in self._BINARY:
            y = self.node(self._BINARY[kind], xs)
        elif kind in self._NARY:
            y = xs[0]
            for x in xs[1:]:
                y = self.node(self._NARY[kind], [y, x])
        elif kind == "ScalarRectifyGrad":  # gz * (x > 0), Lasagne's rectifier gradient
            pos = self.node("Greater", [xs[0], self.name(Const(0), work)])
            y = self.node("Where", [pos, xs[1], self.name(Const(0), work)])
        else:
            raise Unsupported(f"scalar op {kind}")
        return self.cast(y, work, out_dtype)

    def composite(self, sop, ins, in_dtypes):
        values = dict(zip(sop.fgraph.inputs, ins))
        dtypes = {v: d for v, d in zip(sop.fgraph.inputs, in_dtypes)}
        for n in sop.fgraph.toposort():
            args = []
            for i in n.inputs:
                if i in values:
                    args.append(values[i])
                else:  # a scalar constant
                    args.append(Const(i.data))
                    dtypes[i] = i.dtype
            y = self.scalar(n.op, args, [dtypes[i] for i in n.inputs], n.outputs[0].dtype)
            values[n.outputs[0]] = y
            dtypes[n.outputs[0]] = n.outputs[0].dtype
        return [values[o] for o in sop.fgraph.outputs]

    # --- shapes ------------------------------------------------------------------------
    def op_DimShuffle(self, node, ins):
        x = self.name(ins[0], node.inputs[0].dtype)
        ndim = node.inputs[0].ndim
        order = list(node.op.new_order)
        kept = [p for p in order if p != "x"]
        dropped = [d for d in range(ndim) if d not in kept]
        if dropped:
            x = self.node("Squeeze", [x, self.ints(dropped)])
        remaining = [d for d in range(ndim) if d not in dropped]
        perm = [remaining.index(p) for p in kept]
        if perm != sorted(perm):
            x = self.node("Transpose", [x], perm=perm)
        new = [i for i, p in enumerate(order) if p == "x"]
        if new:
            x = self.node("Unsqueeze", [x, self.ints(new)])
        if x is ins[0]:
            x = self.node("Identity", [x])
        return x

    def op_Reshape(self, node, ins):
        x = self.name(ins[0], node.inputs[0].dtype)
        return self.node("Reshape", [x, self.int64(self.name(ins[1], node.inputs[1].dtype)
                                                   if not isinstance(ins[1], Const) else
                                                   Const(np.asarray(ins[1].value, "int64")),
                                                   node.inputs[1])])

    def op_Shape(self, node, ins):
        y = self.node("Shape", [self.name(ins[0], node.inputs[0].dtype)])
        return self.cast(y, "int64", node.outputs[0].dtype)

    def op_Shape_i(self, node, ins):
        s = self.node("Shape", [self.name(ins[0], node.inputs[0].dtype)])
        y = self.node("Gather", [s, self.g.const(np.int64(node.op.i), self.base + "_i",
                                                  np.int64)], axis=0)
        return self.cast(y, "int64", node.outputs[0].dtype)

    def op_SpecifyShape(self, node, ins):
        return ins[0] if not isinstance(ins[0], Const) else self.name(ins[0], node.inputs[0].dtype)

    def op_ScalarFromTensor(self, node, ins):
        return ins[0]

    op_TensorFromScalar = op_ScalarFromTensor

    def op_MakeVector(self, node, ins):
        dtype = node.outputs[0].dtype
        parts = [self.node("Reshape", [self.cast(v, i.dtype, dtype), self.ints([1])])
                 for v, i in zip(ins, node.inputs)]
        return self.node("Concat", parts, axis=0)

    def op_Join(self, node, ins):
        axis = ins[0]
        if not isinstance(axis, Const):
            raise Unsupported("a symbolic axis")
        dtype = node.outputs[0].dtype
        xs = [self.cast(v, i.dtype, dtype) for v, i in zip(ins[1:], node.inputs[1:])]
        ax = int(axis.value) % node.outputs[0].ndim
        return self.node("Concat", xs, axis=ax) if len(xs) > 1 else self.node("Identity", xs)

    def op_Alloc(self, node, ins):
        dtype = node.outputs[0].dtype
        v = self.cast(ins[0], node.inputs[0].dtype, dtype)
        shape = self.vector(ins[1:], node.inputs[1:])
        return self.node("Expand", [v, shape])

    def op_AllocEmpty(self, node, ins):
        shape = self.vector(ins, node.inputs)
        zero = self.g.onnx.numpy_helper.from_array(np.zeros(1, dtype=node.outputs[0].dtype))
        return self.node("ConstantOfShape", [shape], value=zero)

    def op_ARange(self, node, ins):
        dtype = node.outputs[0].dtype
        xs = [self.node("Reshape", [self.cast(v, i.dtype, dtype), self.ints([])])
              if not isinstance(v, Const) else self.name(Const(np.asarray(v.value, dtype)), dtype)
              for v, i in zip(ins, node.inputs)]
        return self.node("Range", xs)

    # --- indexing ---------------------------------------------------------------------
    def _indices(self, node, ins, skip=0):
        """The index list with ``(value, variable)`` pairs in place of the
        entries (``(Const, None)`` for the op's own)."""
        return index_entries(node, ins, lambda x, v: (Const(x), None) if v is None else (v, x),
                             skip)

    def _scalar64(self, pair):
        v, var = pair
        if isinstance(v, Const):
            return self.ints([int(v.value)])
        return self.node("Reshape", [self.int64(v, var), self.ints([1])])

    def op_Subtensor(self, node, ins):
        x = self.name(ins[0], node.inputs[0].dtype)
        idx = self._indices(node, ins)
        starts, ends, axes, steps, squeeze = [], [], [], [], []
        for axis, i in enumerate(idx):
            if isinstance(i, slice):
                step = 1 if i.step is None else None
                if i.step is not None:
                    if not isinstance(i.step[0], Const):
                        raise Unsupported("a symbolic slice step")
                    step = int(i.step[0].value)
                if i.start is None and i.stop is None and step == 1:
                    continue
                start = i.start if i.start is not None else (Const(0 if step > 0 else -1), None)
                stop = i.stop if i.stop is not None else (
                    Const(_INT64_MAX if step > 0 else _INT64_MIN), None)
                starts.append(start)
                ends.append(stop)
                steps.append(step)
                axes.append(axis)
            else:
                # x[k]: slice k:k+1, then squeeze (k = -1 ends at INT64_MAX)
                v, var = i
                if isinstance(v, Const):
                    k = int(v.value)
                    starts.append((Const(k), None))
                    ends.append((Const(k + 1 if k != -1 else _INT64_MAX), None))
                else:
                    k = self.int64(v, var)
                    starts.append((k, node.inputs[0]))  # int64 already
                    end = self.node("Add", [k, self.g.const(np.int64(1), "one", np.int64)])
                    # -1 + 1 = 0 would be an empty slice: use Where(k == -1, MAX, k + 1)
                    is_last = self.node("Equal", [k, self.g.const(np.int64(-1), "m1", np.int64)])
                    end = self.node("Where", [is_last, self.g.const(np.int64(_INT64_MAX),
                                                                    "max", np.int64), end])
                    ends.append((end, None))
                steps.append(1)
                axes.append(axis)
                squeeze.append(axis)
        y = x
        if axes:
            def vec(pairs):
                parts = []
                for v, var in pairs:
                    if isinstance(v, Const):
                        parts.append(self.ints([int(v.value)]))
                    else:
                        vv = v if var is None or var.dtype == "int64" else self.int64(v, var)
                        parts.append(self.node("Reshape", [vv, self.ints([1])]))
                if all(isinstance(p, str) for p in parts) and len(parts) == 1:
                    return parts[0]
                return self.node("Concat", parts, axis=0)
            y = self.node("Slice", [x, vec(starts), vec(ends), self.ints(axes), self.ints(steps)])
        if squeeze:
            y = self.node("Squeeze", [y, self.ints(squeeze)])
        if y is x:
            y = self.node("Identity", [x])
        return y

    def op_IncSubtensor(self, node, ins):
        """x[idx] = y (or +=) as ScatterND over the indexed positions."""
        x = self.name(ins[0], node.inputs[0].dtype)
        dtype = node.outputs[0].dtype
        y = self.cast(ins[1], node.inputs[1].dtype, dtype)
        idx = self._indices(node, ins, skip=1)
        ndim = node.inputs[0].ndim
        shape = self.node("Shape", [x])
        ranges, kept = [], []
        for axis in range(ndim):
            i = idx[axis] if axis < len(idx) else slice(None)
            size = self.node("Gather", [shape, self.g.const(np.int64(axis), "axis", np.int64)],
                             axis=0)
            if isinstance(i, slice):
                # the positions a slice selects: Slice of Range(0, size)
                r = self.node("Range", [self.g.const(np.int64(0), "zero", np.int64), size,
                                        self.g.const(np.int64(1), "one", np.int64)])
                step = 1 if i.step is None else int(i.step[0].value)
                start = (self._scalar64(i.start) if i.start is not None
                         else self.ints([0 if step > 0 else -1]))
                stop = (self._scalar64(i.stop) if i.stop is not None
                        else self.ints([_INT64_MAX if step > 0 else _INT64_MIN]))
                r = self.node("Slice", [r, start, stop, self.ints([0]), self.ints([step])])
                kept.append(axis)
            else:
                k = self._scalar64(i)
                k = self.node("Where", [self.node("Less", [k, self.ints([0])]),
                                        self.node("Add", [k, self.node(
                                            "Reshape", [size, self.ints([1])])]), k])
                r = k  # one position; the update lacks this axis
            ranges.append(r)
        # the update broadcast to the selected block's shape
        block = self.node("Concat", [self.node("Shape", [r]) for r in ranges], axis=0)
        ushape = [a for a in range(ndim) if a not in kept]
        if ushape:
            y = self.node("Unsqueeze", [y, self.ints(ushape)])
        y = self.node("Expand", [y, block])
        grids = []
        for axis, r in enumerate(ranges):
            shp = [1] * ndim
            shp[axis] = -1
            gr = self.node("Expand", [self.node("Reshape", [r, self.ints(shp)]), block])
            grids.append(self.node("Unsqueeze", [gr, self.ints([ndim])]))
        index = self.node("Concat", grids, axis=ndim)
        attrs = {} if node.op.set_instead_of_inc else {"reduction": "add"}
        return self.node("ScatterND", [x, index, y], **attrs)

    def _gather_index(self, v, var):
        if isinstance(v, Const):
            return self.g.const(np.asarray(v.value, np.int64), self.base + "_index", np.int64)
        return self.int64(v, var)

    def op_AdvancedSubtensor1(self, node, ins):
        x = self.name(ins[0], node.inputs[0].dtype)
        return self.node("Gather", [x, self._gather_index(ins[1], node.inputs[1])], axis=0)

    def op_AdvancedSubtensor(self, node, ins):
        x = self.name(ins[0], node.inputs[0].dtype)
        args = list(zip(node.inputs[1:], ins[1:]))
        # x[idx] and x[:, idx]...: one integer index array, full slices elsewhere
        arrays = [k for k, (var, _) in enumerate(args) if not isinstance(
            var.type, (SliceType, NoneTypeT))]
        if len(arrays) != 1:
            raise Unsupported("indexing with several index arrays")
        k = arrays[0]
        for j, (var, v) in enumerate(args):
            if j != k and not (isinstance(v, Const) and v.value.item() == slice(None)):
                raise Unsupported("indexing that mixes an index array with partial slices")
        var, v = args[k]
        if var.dtype == "bool":
            raise Unsupported("boolean mask indexing")
        return self.node("Gather", [x, self._gather_index(v, var)], axis=k)

    # --- reductions, products -------------------------------------------------------------
    _REDUCE = {"Sum": "ReduceSum", "Max": "ReduceMax", "Min": "ReduceMin", "Prod": "ReduceProd",
               "Mean": "ReduceMean"}

    def op_CAReduce(self, node, ins):
        sop = node.op.scalar_op
        ndim = node.inputs[0].ndim
        axes = list(range(ndim)) if node.op.axis is None else [a % ndim for a in node.op.axis]
        dtype = node.outputs[0].dtype
        kinds = {ps.Add: "ReduceSum", ps.Mul: "ReduceProd", ps.ScalarMaximum: "ReduceMax",
                 ps.ScalarMinimum: "ReduceMin", ps.AND: "ReduceMin", ps.OR: "ReduceMax"}
        op = next((v for k, v in kinds.items() if isinstance(sop, k)), None)
        if op is None:
            raise Unsupported(f"a reduction by {type(sop).__name__}")
        work = dtype if op not in ("ReduceMin", "ReduceMax") or dtype != "bool" else "int32"
        x = self.cast(ins[0], node.inputs[0].dtype, work)
        if not axes:
            return self.cast(x, work, dtype)
        if op in ("ReduceSum",):
            y = self.node(op, [x, self.ints(axes)], keepdims=0)
        else:
            y = self.node(op, [x], axes=axes, keepdims=0)
        return self.cast(y, work, dtype)

    op_Sum = op_Max = op_Min = op_Prod = op_All = op_Any = op_CAReduce

    def op_Argmax(self, node, ins):
        axis = node.op.axis
        ndim = node.inputs[0].ndim
        axes = list(range(ndim)) if axis is None else [a % ndim for a in axis]
        x = self.name(ins[0], node.inputs[0].dtype)
        if len(axes) != 1:
            raise Unsupported("argmax over several axes")
        return self.node("ArgMax", [x], axis=axes[0], keepdims=0)

    def op_Dot(self, node, ins):
        dtype = node.outputs[0].dtype
        a = self.cast(ins[0], node.inputs[0].dtype, dtype)
        b = self.cast(ins[1], node.inputs[1].dtype, dtype)
        return self.node("MatMul", [a, b])

    op_Dot22 = op_Dot

    def op_Softmax(self, node, ins):
        axis = node.op.axis
        return self.node("Softmax", [self.name(ins[0], node.inputs[0].dtype)],
                         axis=-1 if axis is None else int(axis))

    def op_LogSoftmax(self, node, ins):
        axis = node.op.axis
        return self.node("LogSoftmax", [self.name(ins[0], node.inputs[0].dtype)],
                         axis=-1 if axis is None else int(axis))

    # --- lasres's convolution and pooling ops -----------------------------------------------
    def _filters(self, v, var, flip, n):
        """The filters (flipped over the spatial axes for a true convolution)."""
        if isinstance(v, Const):  # filters known at export time: flipped here
            w = np.asarray(v.value, dtype=var.dtype)
            if flip:
                w = w[(slice(None), slice(None)) + (slice(None, None, -1),) * n]
            return self.g.const(np.ascontiguousarray(w), self.base + ".W", dtype=w.dtype)
        if not flip:
            return v
        return self.node("Slice", [v, self.ints([-1] * n), self.ints([_INT64_MIN] * n),
                                   self.ints(list(range(2, 2 + n))), self.ints([-1] * n)])

    def _shape_const(self, var, n):
        s = var.type.shape
        if any(d is None for d in s[-n:]):
            return None
        return [int(d) for d in s[-n:]]

    def _pads(self, pad, k, dilation=None):
        p = resolve_pad(pad, k, dilation)
        return [int(v) for v in p] * 2

    def op_Conv2d(self, node, ins):
        op = node.op
        x = self.name(ins[0], node.inputs[0].dtype)
        w = self._filters(ins[1], node.inputs[1], op.filter_flip, 2)
        k = list(node.inputs[1].type.shape[2:])
        if None in k:
            raise Unsupported("filters of unknown size")
        inputs = [x, w] + ([self.name(ins[2], node.inputs[2].dtype)] if len(ins) > 2 else [])
        return self.node("Conv", inputs, kernel_shape=k, strides=list(op.stride),
                         pads=self._pads(op.pad, k), dilations=[1, 1], group=1)

    def op_ConvNd(self, node, ins):
        op = node.op
        x = self.name(ins[0], node.inputs[0].dtype)
        w = self._filters(ins[1], node.inputs[1], op.filter_flip, op.n)
        k = list(node.inputs[1].type.shape[2:])
        if None in k:
            raise Unsupported("filters of unknown size")
        return self.node("Conv", [x, w], kernel_shape=k, strides=list(op.stride),
                         pads=self._pads(op.pad, k, op.dilation), dilations=list(op.dilation),
                         group=1)

    def _transposed(self, node, ins, n, dilation):
        op = node.op
        gz = self.name(ins[0], node.inputs[0].dtype)
        w = self._filters(ins[1], node.inputs[1], op.filter_flip, n)
        k = list(node.inputs[1].type.shape[2:])
        target = ins[2]
        if not isinstance(target, Const):
            raise Unsupported("a transposed convolution needs a known output size (give "
                              "input_shape with the spatial sizes)")
        target = [int(t) for t in np.asarray(target.value).reshape(-1)[-n:]]
        in_sizes = node.inputs[0].type.shape[2:]
        if None in in_sizes or None in k:
            raise Unsupported("a transposed convolution needs known input sizes")
        pads = self._pads(op.pad, k, dilation)[:n]
        extra = [t - ((i - 1) * s - 2 * p + (kk - 1) * d + 1)
                 for t, i, s, p, kk, d in zip(target, in_sizes, op.stride, pads, k, dilation)]
        if min(extra) < 0 or any(e >= s for e, s in zip(extra, op.stride)):
            raise Unsupported(f"an output size {target} that a stride cannot give")
        return self.node("ConvTranspose", [gz, w], kernel_shape=k, strides=list(op.stride),
                         pads=pads * 2, dilations=list(dilation), output_padding=extra, group=1)

    def op_Conv2dGradInputs(self, node, ins):
        return self._transposed(node, ins, 2, [1, 1])

    def op_ConvNdGradInputs(self, node, ins):
        return self._transposed(node, ins, node.op.n, list(node.op.dilation))

    def op_Conv2dGradWeights(self, node, ins):
        """dW of a strided correlation = a dilated correlation of the inputs with the
        output gradient, batch and channels swapped (Lasagne's dilated convolution)."""
        op = node.op
        target = ins[2]
        if not isinstance(target, Const):
            raise Unsupported("unknown filter size")
        target = [int(t) for t in np.asarray(target.value).reshape(-1)[-2:]]
        x = self.node("Transpose", [self.name(ins[0], node.inputs[0].dtype)], perm=[1, 0, 2, 3])
        gz = self.node("Transpose", [self.name(ins[1], node.inputs[1].dtype)], perm=[1, 0, 2, 3])
        k = node.inputs[1].type.shape[2:]
        if None in k:
            raise Unsupported("an output gradient of unknown size")
        pads = self._pads(op.pad, target)
        y = self.node("Conv", [x, gz], kernel_shape=list(k), strides=[1, 1], pads=pads,
                      dilations=list(op.stride), group=1)
        y = self.node("Slice", [y, self.ints([0, 0]), self.ints(target), self.ints([2, 3]),
                                self.ints([1, 1])])
        if op.filter_flip:
            y = self.node("Slice", [y, self.ints([-1, -1]), self.ints([_INT64_MIN] * 2),
                                    self.ints([2, 3]), self.ints([-1, -1])])
        return self.node("Transpose", [y], perm=[1, 0, 2, 3])

    def op_Pool2d(self, node, ins):
        op, dtype = node.op, node.inputs[0].dtype
        return pool_nodes(self.node, self.name(ins[0], dtype), node.inputs[0].type.shape, op.ws,
                          op.stride, op.pad, op.ignore_border, op.mode,
                          lambda c: self.g.const(np.ones((c, 1) + tuple(op.ws), dtype), "ones",
                                                 np.dtype(dtype)),
                          Unsupported)

    def op_Pool2dGrad(self, node, ins):
        """Max unpooling (InverseLayer of a max pooling): each window's output
        gradient goes to the positions that hold its maximum; windows that
        tile the input (stride = pool size, no padding) only."""
        op = node.op
        if op.mode != "max" or tuple(op.stride) != tuple(op.ws) or any(op.pad):
            raise Unsupported("the gradient of pooling other than max pooling with "
                              "stride = pool size and no padding")
        shape = node.inputs[0].type.shape
        if None in shape[2:]:
            raise Unsupported("unpooling needs known spatial sizes")
        x = self.name(ins[0], node.inputs[0].dtype)
        H, W = shape[2:]
        s0, s1 = op.ws

        def up(v, var):
            v = self.name(v, var.dtype)
            h, w = var.type.shape[2:]
            if h is None or w is None:
                raise Unsupported("unpooling needs known sizes")
            y = self.node("Unsqueeze", [v, self.ints([3, 5])])
            full = self.node("Concat", [self.node("Slice", [self.node("Shape", [v]),
                                                            self.ints([0]), self.ints([2]),
                                                            self.ints([0]), self.ints([1])]),
                                        self.ints([h, s0, w, s1])], axis=0)
            y = self.node("Expand", [y, full])
            y = self.node("Reshape", [y, self.ints([0, 0, h * s0, w * s1])])
            return self.node("Pad", [y, self.ints([0, 0, 0, 0, 0, 0, max(0, H - h * s0),
                                                   max(0, W - w * s1)])]) \
                if H > h * s0 or W > w * s1 else \
                self.node("Slice", [y, self.ints([0, 0]), self.ints([H, W]), self.ints([2, 3]),
                                    self.ints([1, 1])])
        z = up(ins[1], node.inputs[1])
        gz = up(ins[2], node.inputs[2])
        mask = self.node("Equal", [x, z])
        zero = self.name(Const(0), node.outputs[0].dtype)
        return self.node("Where", [mask, gz, zero])

    def op_BatchNormInfer(self, node, ins):
        x = self.name(ins[0], node.inputs[0].dtype)
        ndim = node.inputs[0].ndim
        pattern = broadcast_pattern(ndim, node.op.axes)
        shape = [-1 if p != "x" else 1 for p in pattern]

        def p(k):
            return self.node("Reshape", [self.name(ins[k], node.inputs[k].dtype),
                                         self.ints(shape)])
        y = self.node("Sub", [x, p(3)])
        y = self.node("Mul", [y, self.node("Mul", [p(1), p(4)])])
        y = self.node("Add", [y, p(2)])
        if type(node.op).__name__ == "BatchNormInferRelu":
            y = self.node("Relu", [y])
        return y

    # --- scan: the recurrent layers, as an ONNX Loop ------------------------------------------
    def op_Scan(self, node, ins):
        return scan_to_loop(self, node, ins)

    def op_GradClip(self, node, ins):
        return self.node("Identity", [self.name(ins[0], node.inputs[0].dtype)])

    op_ViewOp = op_OutputGuard = op_DeepCopyOp = op_GradClip


def scan_to_loop(em, node, ins):
    """A PyTensor ``Scan`` with sequences, single-tap recurrent states
    (``sit_sot``), per-step outputs (``nit_sot``) and non-sequences, as an
    ONNX ``Loop``. The body reads the sequences at the iteration number and
    the non-sequences from the outer scope."""
    onnx = em.g.onnx
    op = node.op
    info = op.info
    if info.n_mit_mot or info.n_mit_sot or info.n_shared_outs or \
            getattr(info, "n_untraced_sit_sot_outs", 0):
        raise Unsupported("a scan with multi-tap or shared-variable states")
    if info.as_while:
        raise Unsupported("a scan with a stopping condition")
    n_seqs, n_sit, n_nit = info.n_seqs, info.n_sit_sot, info.n_nit_sot
    # outer inputs: n_steps, sequences, sit_sot buffers, nit_sot sizes, non-sequences
    outer = list(zip(node.inputs, ins))
    n_steps = outer[0]
    seqs = outer[1:1 + n_seqs]
    sits = outer[1 + n_seqs:1 + n_seqs + n_sit]
    non_seqs = outer[1 + n_seqs + n_sit + n_nit:]
    inner_in = op.inner_inputs
    inner_out = op.inner_outputs
    in_seqs = inner_in[:n_seqs]
    in_sits = inner_in[n_seqs:n_seqs + n_sit]
    in_non = inner_in[n_seqs + n_sit:]
    g = em.g
    base = em.base + "_loop"
    # the initial states: the first entry of each sit_sot buffer
    inits = []
    for (var, v), iv in zip(sits, in_sits):
        buf = em.name(v, var.dtype)
        inits.append(em.node("Gather", [buf, g.const(np.int64(0), "zero", np.int64)], axis=0))
    # the body graph
    body = type(g)(onnx)  # a graph of the caller's kind (onnx_graph._Graph)
    body.used = g.used  # one namespace: the body reads outer names
    iter_name = body.name(base + "_iter")
    cond_in = body.name(base + "_cond_in")
    state_names = [body.name(base + f"_state{i}") for i in range(n_sit)]
    sub = OnnxEmitter(body, base, em.params)
    values = {}
    for iv, (var, v) in zip(in_seqs, seqs):
        s = em.name(v, var.dtype)
        values[iv] = sub.node("Gather", [s, iter_name], axis=0)
    for iv, nm in zip(in_sits, state_names):
        values[iv] = nm
    for iv, (var, v) in zip(in_non, non_seqs):
        values[iv] = v if isinstance(v, Const) else em.name(v, var.dtype)
    walker = Walker(sub, sub.param, lambda msg: Unsupported(msg))
    outs = walker.run(inner_in, inner_out, values)
    out_names = []
    for o, v in zip(inner_out, outs):
        nm = sub.name(v, o.dtype)
        out_names.append(sub.node("Identity", [nm]))
    cond_out = sub.node("Identity", [cond_in])
    # sit_sot outputs are both carried and scanned, nit_sot outputs scanned;
    # PyTensor's inner outputs order: mit_mot, mit_sot, sit_sot, nit_sot
    sit_outs = out_names[:n_sit]
    nit_outs = out_names[n_sit:n_sit + n_nit]
    scanned = [body.node("Identity", [s], base + "_scan") for s in sit_outs]
    vi = onnx.helper.make_tensor_value_info
    body_inputs = [vi(iter_name, onnx.TensorProto.INT64, []),
                   vi(cond_in, onnx.TensorProto.BOOL, [])]
    for iv, nm in zip(in_sits, state_names):
        body_inputs.append(vi(nm, _tensor_type(onnx, iv.dtype), None))
    body_outputs = [vi(cond_out, onnx.TensorProto.BOOL, [])]
    for o, nm in zip(inner_out[:n_sit], sit_outs):
        body_outputs.append(vi(nm, _tensor_type(onnx, o.dtype), None))
    for o, nm in zip(inner_out[:n_sit], scanned):
        body_outputs.append(vi(nm, _tensor_type(onnx, o.dtype), None))
    for o, nm in zip(inner_out[n_sit:n_sit + n_nit], nit_outs):
        body_outputs.append(vi(nm, _tensor_type(onnx, o.dtype), None))
    # constants the body made go into it as initialisers
    graph = onnx.helper.make_graph(body.nodes, base + "_body", body_inputs, body_outputs,
                                   initializer=body.initializers)
    steps_var, steps_v = n_steps
    trip = em.node("Reshape", [em.int64(em.name(steps_v, steps_var.dtype)
                                        if not isinstance(steps_v, Const) else steps_v, steps_var),
                               em.ints([])])
    true = g.const(np.array(True), "true", np.bool_)
    n_out = n_sit + n_sit + n_nit
    outs = [g.name(base + f"_out{i}") for i in range(n_out)]
    g.nodes.append(onnx.helper.make_node("Loop", [trip, true] + inits, outs,
                                         name=g.name(base + "/Loop"), body=graph))
    results = []
    # a sit_sot output is the whole buffer: the initial state, then every step's
    for i in range(n_sit):
        first = em.node("Unsqueeze", [inits[i], em.ints([0])])
        results.append(em.node("Concat", [first, outs[n_sit + i]], axis=0))
    results += outs[2 * n_sit:]
    return results


def pool_nodes(node, x, shape, ws, stride, pad, ignore_border, mode, ones, refuse):
    """The ONNX node of a Theano-style 2-D pooling of ``x`` (shape ``shape``).

    Theano keeps the partial windows at the end when ``ignore_border`` is
    False: the end is padded so that ONNX sees them (max ignores the padding,
    the averages exclude it: Theano averages a partial window over the
    pixels it holds). Sum pooling is a depthwise convolution with a window of
    ones, exact. ``node(op, inputs, **attrs)`` adds a node, ``ones(c)`` the
    window of ones for ``c`` channels, and ``refuse(message)`` makes the
    exception to raise.
    """
    end = list(pad)
    if not ignore_border:
        for a in range(2):
            n = shape[2 + a]
            if n is None:
                raise refuse("pooling with ignore_border=False needs known spatial sizes "
                             "(give input_shape)")
            out = pool_output_length(n, ws[a], stride[a], pad[a], False)
            end[a] = max(0, (out - 1) * stride[a] + ws[a] - n - pad[a])
    attrs = dict(kernel_shape=list(ws), strides=list(stride), pads=list(pad) + end)
    if mode == "max":
        return node("MaxPool", [x], **attrs)
    if mode == "average_exc_pad" or (mode == "average_inc_pad" and not ignore_border):
        return node("AveragePool", [x], count_include_pad=0, **attrs)
    if mode == "average_inc_pad":
        return node("AveragePool", [x], count_include_pad=1, **attrs)
    if mode == "sum":
        c = shape[1]
        if c is None:
            raise refuse("sum pooling needs a known number of channels")
        return node("Conv", [x, ones(c)], group=int(c), dilations=[1, 1], **attrs)
    raise refuse(f"unknown pooling mode {mode!r}")
