"""A lasres (Lasagne) network as a readable, self-contained PyTorch module.

:func:`to_torch` writes ``model.py`` -- the runtime of
:mod:`.torch_runtime` (Lasagne's layers in torch: batch norm with Lasagne's
running averages of ``mean`` and ``inv_std``, dropout's rescale,
``flip_filters``, Theano's pooling, the nonlinearities), then one class
``Net`` with one submodule per Lasagne layer, named after it -- and
``weights.pt`` (its ``state_dict``), and returns the loaded module.

Layers without a runtime class (an ``ExpressionLayer``, a class overriding
``get_output_for``, LRN, upscaling, the recurrent layers, ...) become a
module of their own whose ``forward`` is their deterministic PyTensor graph
translated op by op into torch (a ``Scan`` becomes a Python loop); where a
layer's training graph differs from that one (it draws random numbers or
uses batch statistics), its module refuses training mode.
"""
import keyword
import os
import re
import shutil
import tempfile

import numpy as np
from pytensor.graph.basic import equal_computations
from pytensor.scalar import basic as ps
from pytensor.tensor.type_other import NoneTypeT, SliceType
import importlib.util
import pytensor.tensor as pt

from .. import __version__, layers as L, nonlinearities as nl
from ..errors import ExportError, LasresError
from ..ops._args import resolve_pad
from ..ops.shape import broadcast_pattern
from ..ops.convnd import conv3d
from ..ops.elemwise import relu
from ..theano_extensions import conv as c1
from .onnx_graph import _describe_factory
from .pytensor_graph import (Const, index_entries, OpEmitter, symbolic_inputs, Unsupported,
                             Walker)

__all__ = ["to_torch", "torch_source", "regularizable_parameters"]

_TORCH_DTYPES = {"float32": "torch.float32", "float64": "torch.float64", "int64": "torch.int64",
                 "int32": "torch.int32", "int16": "torch.int16", "int8": "torch.int8",
                 "uint8": "torch.uint8", "bool": "torch.bool", "float16": "torch.float16"}


def _torch():
    try:
        import torch
    except ImportError:
        raise LasresError("exporting to PyTorch needs torch: pip install 'lasres[torch]'") \
            from None
    return torch


def _ident(name, used):
    """A Python identifier from a layer or parameter name, unique in ``used``."""
    s = re.sub(r"\W", "_", str(name)).strip("_") or "layer"
    if s[0].isdigit():
        s = "l_" + s
    if keyword.iskeyword(s) or s in ("self", "torch", "nn", "F", "math", "dev"):
        s += "_"
    base, i = s, 1
    while s in used:
        i += 1
        s = f"{base}_{i}"
    used.add(s)
    return s


def _lit(v):
    """A Python literal of a (nested) value."""
    if isinstance(v, np.ndarray):
        return _lit(v.tolist())
    if isinstance(v, (np.integer,)):
        return repr(int(v))
    if isinstance(v, (np.floating, float)):
        f = float(v)
        if np.isinf(f):
            return 'float("inf")' if f > 0 else '-float("inf")'
        if np.isnan(f):
            return 'float("nan")'
        return repr(f)
    if isinstance(v, np.bool_):
        return repr(bool(v))
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_lit(x) for x in v) + "]"
    if isinstance(v, slice):
        return f"slice({_lit(v.start)}, {_lit(v.stop)}, {_lit(v.step)})"
    return repr(v)


# --- nonlinearities ------------------------------------------------------------------
def _nl_spec(f):
    """The runtime's spec of a lasres nonlinearity, or None (translate it)."""
    if f is None or f is nl.identity or f is nl.linear:
        return ("identity",)
    for fn, name in ((nl.rectify, "rectify"), (relu, "rectify"), (nl.sigmoid, "sigmoid"),
                     (nl.tanh, "tanh"), (nl.softmax, "softmax"), (nl.softplus, "softplus"),
                     (nl.elu, "elu")):
        if f is fn:
            return (name,)
    if isinstance(f, nl.LeakyRectify):
        return ("leaky_rectify", float(f.leakiness))
    if isinstance(f, nl.SELU):
        return ("selu", float(f.scale), float(f.scale_neg))
    if isinstance(f, nl.ScaledTanH):
        return ("scaled_tanh", float(f.scale_in), float(f.scale_out))
    return None


# --- PyTensor ops as torch code ---------------------------------------------------------
class _Val:
    """A torch-side value: a Python expression and its kind ('tensor', or
    'int' for a Python int/bool scalar, or 'seq' for a tuple of ints)."""
    __slots__ = ("expr", "kind")

    def __init__(self, expr, kind="tensor"):
        self.expr, self.kind = expr, kind


class TorchEmitter(OpEmitter):
    """Emits lines of a ``forward`` for a layer's PyTensor graph."""

    _UNARY = {"Abs": "torch.abs", "Exp": "torch.exp", "Log": "torch.log", "Sqrt": "torch.sqrt",
              "Tanh": "torch.tanh", "Floor": "torch.floor", "Ceil": "torch.ceil",
              "Sin": "torch.sin", "Cos": "torch.cos", "Sign": "torch.sign", "Erf": "torch.erf",
              "Sigmoid": "torch.sigmoid", "Softplus": "F.softplus", "Log1p": "torch.log1p",
              "Expm1": "torch.expm1", "Reciprocal": "torch.reciprocal",
              "Invert": "torch.logical_not", "ScalarRectify": "torch.relu",
              "RoundHalfToEven": "torch.round", "IsNan": "torch.isnan", "IsInf": "torch.isinf",
              "Cosh": "torch.cosh", "Sinh": "torch.sinh", "ArcTan": "torch.atan",
              "Log2": "torch.log2", "Log10": "torch.log10", "Exp2": "torch.exp2",
              "Trunc": "torch.trunc"}
    _INFIX = {"Add": "+", "Mul": "*", "Sub": "-", "TrueDiv": "/", "IntDiv": "//", "EQ": "==",
              "NEQ": "!=", "LT": "<", "GT": ">", "LE": "<=", "GE": ">=", "Pow": "**", "Mod": "%"}
    _TENSOR_BIN = {"AND": "torch.logical_and", "OR": "torch.logical_or",
                   "XOR": "torch.logical_xor", "Maximum": "torch.maximum",
                   "Minimum": "torch.minimum", "ScalarMaximum": "torch.maximum",
                   "ScalarMinimum": "torch.minimum"}

    def __init__(self, owner, lines, used, indent="        "):
        self.owner = owner  # the _LayerModule collecting parameters and constants
        self.lines = lines
        self.used = used
        self.indent = indent

    # values
    def new(self, base="t"):
        return _ident(base, self.used)

    def assign(self, expr, kind="tensor", base="t"):
        name = self.new(base)
        self.lines.append(f"{self.indent}{name} = {expr}")
        return _Val(name, kind)

    def expr(self, v, dtype=None):
        """The expression of a value; a Const becomes a literal (0-d, small) or a buffer."""
        if isinstance(v, _Val):
            if v.kind == "seq":  # a shape used as a tensor
                return f"torch.tensor({v.expr}, dtype=torch.int64, device=dev)"
            return v.expr
        a = np.asarray(v.value)
        if a.ndim == 0:
            x = a.item()
            return _lit(x) if not isinstance(x, float) else _lit(float(x))
        return self.owner.constant(a)

    def param(self, var):
        return _Val(self.owner.parameter(var))

    def is_scalar(self, v):
        return (isinstance(v, Const) and np.asarray(v.value).ndim == 0) or \
            (isinstance(v, _Val) and v.kind == "int")

    # elementwise
    def op_Elemwise(self, node, ins):
        out = node.outputs[0]
        scalar = out.ndim == 0 and all(self.is_scalar(v) for v in ins) \
            and out.dtype not in ("float32", "float64")
        if scalar:
            return self.py_scalar(node.op.scalar_op, ins, out.dtype)
        args = []
        has_tensor = any(isinstance(v, _Val) and v.kind == "tensor" for v in ins)
        for v, i in zip(ins, node.inputs):
            if isinstance(v, _Val) and v.kind in ("int", "seq"):
                v = self.tensor(v, i.dtype)
            elif isinstance(v, Const) and has_tensor and np.asarray(v.value).size == 1 \
                    and type(node.op.scalar_op).__name__ not in ("Switch", "Second"):
                v = Const(np.asarray(v.value).reshape(()))  # broadcasts as a Python scalar
            args.append(v)
        return self.scalar(node.op.scalar_op, args, [i.dtype for i in node.inputs], out.dtype)

    def is_int_val(self, v):
        return isinstance(v, _Val) and v.kind == "int"

    def tensor(self, v, dtype):
        return _Val(f"torch.tensor({v.expr}, dtype={_TORCH_DTYPES[dtype]}, device=dev)")

    def py_scalar(self, sop, ins, dtype):
        kind = type(sop).__name__
        e = [self.expr(v) for v in ins]
        if kind in self._INFIX:
            expr = f" {self._INFIX[kind]} ".join(f"({x})" for x in e)
        elif kind in ("Maximum", "ScalarMaximum"):
            expr = f"max({', '.join(e)})"
        elif kind in ("Minimum", "ScalarMinimum"):
            expr = f"min({', '.join(e)})"
        elif kind == "Neg":
            expr = f"-({e[0]})"
        elif kind in ("Cast", "Identity"):
            expr = f"{'bool' if dtype == 'bool' else 'int'}({e[0]})"
        elif kind == "Switch":
            expr = f"({e[1]}) if ({e[0]}) else ({e[2]})"
        elif kind == "Abs":
            expr = f"abs({e[0]})"
        else:
            raise Unsupported(f"scalar op {kind} on integers")
        return self.assign(expr, "int", "n")

    def scalar(self, sop, ins, in_dtypes, out_dtype):
        kind = type(sop).__name__
        if kind == "Composite":
            values = dict(zip(sop.fgraph.inputs, ins))
            dtypes = dict(zip(sop.fgraph.inputs, in_dtypes))
            for n in sop.fgraph.toposort():
                args = [values[i] if i in values else Const(i.data) for i in n.inputs]
                ds = [dtypes.get(i, getattr(i, "dtype", None)) for i in n.inputs]
                values[n.outputs[0]] = self.scalar(n.op, args, ds, n.outputs[0].dtype)
                dtypes[n.outputs[0]] = n.outputs[0].dtype
            return [values[o] for o in sop.fgraph.outputs] if len(sop.fgraph.outputs) > 1 \
                else values[sop.fgraph.outputs[0]]
        e = [self.expr(v) for v in ins]
        td = _TORCH_DTYPES.get(out_dtype)
        if kind == "Cast":
            return self.assign(f"torch.as_tensor({e[0]}).to({td})" if not isinstance(ins[0], _Val)
                               else f"{e[0]}.to({td})")
        if kind == "Identity":
            return ins[0] if isinstance(ins[0], _Val) else self.assign(e[0])
        if kind == "Switch":
            cond = e[0] if in_dtypes[0] == "bool" else f"({e[0]}) != 0"
            a = self._as_tensor(ins[1], e[1], out_dtype)
            b = self._as_tensor(ins[2], e[2], out_dtype)
            return self.assign(f"torch.where({cond}, {a}, {b})")
        if kind == "Second":
            b = self._as_tensor(ins[1], e[1], out_dtype)
            return self.assign(f"torch.broadcast_to({b}, {e[0]}.shape)")
        if kind in self._UNARY:
            x = self._as_tensor(ins[0], e[0], in_dtypes[0])
            return self.assign(f"{self._UNARY[kind]}({x})")
        if kind == "Neg":
            return self.assign(f"-{e[0]}")
        if kind == "Sqr":
            return self.assign(f"{e[0]} * {e[0]}")
        if kind == "IntDiv":
            return self.assign(f"torch.div({e[0]}, {e[1]}, rounding_mode='floor')")
        if kind == "Clip":
            return self.assign(f"torch.clamp({e[0]}, {e[1]}, {e[2]})")
        if kind == "ScalarRectifyGrad":
            return self.assign(f"torch.where({e[0]} > 0, {e[1]}, torch.zeros_like({e[1]}))")
        if kind in self._INFIX:
            op = self._INFIX[kind]
            if kind == "Pow" and not isinstance(ins[0], _Val):
                return self.assign(f"torch.pow({e[0]}, {e[1]})")
            expr = e[0]
            for x in e[1:]:
                expr = f"{expr} {op} {x}"
            return self.assign(expr)
        if kind in self._TENSOR_BIN:
            f = self._TENSOR_BIN[kind]
            xs = [x if isinstance(v, _Val) else f"torch.tensor({x}, dtype={td}, device=dev)"
                  for v, x in zip(ins, e)]
            expr = xs[0]
            for x in xs[1:]:
                expr = f"{f}({expr}, {x})"
            return self.assign(expr)
        raise Unsupported(f"scalar op {kind}")

    def _as_tensor(self, v, e, dtype):
        if isinstance(v, _Val):
            return e
        return f"torch.tensor({e}, dtype={_TORCH_DTYPES[dtype]}, device=dev)"

    # shapes
    def op_DimShuffle(self, node, ins):
        return self.assign(f"dimshuffle({self.expr(ins[0])}, {_lit(tuple(node.op.new_order))})")

    def _seq(self, v):
        if isinstance(v, Const):
            return _lit(tuple(int(x) for x in np.asarray(v.value).reshape(-1)))
        if v.kind == "seq":
            return v.expr
        return f"tuple(int(s) for s in {v.expr})"

    def op_Reshape(self, node, ins):
        return self.assign(f"{self.expr(ins[0])}.reshape({self._seq(ins[1])})")

    def op_Shape(self, node, ins):
        return self.assign(f"tuple({self.expr(ins[0])}.shape)", "seq", "shape")

    def op_Shape_i(self, node, ins):
        return self.assign(f"{self.expr(ins[0])}.shape[{node.op.i}]", "int", "n")

    def op_SpecifyShape(self, node, ins):
        return ins[0]

    def op_ScalarFromTensor(self, node, ins):
        v = ins[0]
        if isinstance(v, _Val) and v.kind == "tensor":
            return self.assign(f"{v.expr}.item()", "int", "n")
        return v

    op_TensorFromScalar = op_ScalarFromTensor

    def op_MakeVector(self, node, ins):
        if node.outputs[0].dtype.startswith(("int", "uint")) and \
                all(self.is_scalar(v) or (isinstance(v, _Val) and v.kind == "int") for v in ins):
            return self.assign(_lit_tuple([self.expr(v) for v in ins]), "seq", "shape")
        td = _TORCH_DTYPES[node.outputs[0].dtype]
        parts = ", ".join(f"torch.as_tensor({self.expr(v)}, dtype={td}, device=dev)" for v in ins)
        return self.assign(f"torch.stack([{parts}])")

    def op_Join(self, node, ins):
        if not isinstance(ins[0], Const):
            raise Unsupported("a symbolic axis")
        axis = int(ins[0].value)
        parts = ins[1:]
        if node.outputs[0].ndim == 1 and node.outputs[0].dtype.startswith("int") and all(
                isinstance(p, Const) or p.kind == "seq" for p in parts):
            return self.assign(" + ".join(self._seq(p) for p in parts), "seq", "shape")
        return self.assign(f"torch.cat([{', '.join(self.expr(p) for p in parts)}], dim={axis})")

    def op_Alloc(self, node, ins):
        shape = _lit_tuple([self.expr(v) for v in ins[1:]])
        td = _TORCH_DTYPES[node.outputs[0].dtype]
        if self.is_scalar(ins[0]) or isinstance(ins[0], Const):
            if isinstance(ins[0], Const) and np.asarray(ins[0].value).ndim > 0:
                return self.assign(f"torch.broadcast_to({self.expr(ins[0])}, {shape}).clone()")
            return self.assign(f"torch.full({shape}, {self.expr(ins[0])}, dtype={td}, device=dev)")
        return self.assign(f"torch.broadcast_to({self.expr(ins[0])}, {shape})")

    def op_AllocEmpty(self, node, ins):
        shape = _lit_tuple([self.expr(v) for v in ins])
        return self.assign(f"torch.zeros({shape}, dtype={_TORCH_DTYPES[node.outputs[0].dtype]}, "
                           "device=dev)")

    def op_ARange(self, node, ins):
        td = _TORCH_DTYPES[node.outputs[0].dtype]
        return self.assign(f"torch.arange({', '.join(self.expr(v) for v in ins)}, dtype={td}, "
                           "device=dev)")

    # indexing
    def _key(self, node, ins, skip=0):
        def val(x, v):
            if v is None:
                return int(x)
            if isinstance(v, Const):
                return int(np.asarray(v.value))
            return _Raw(v.expr if v.kind == "int" else f"int({v.expr})")
        key = index_entries(node, ins, val, skip)
        negative = any(isinstance(i, slice) and i.step is not None
                       and (isinstance(i.step, _Raw) or i.step < 0) for i in key)
        return key, negative

    def op_Subtensor(self, node, ins):
        key, negative = self._key(node, ins)
        x = ins[0]
        if isinstance(x, _Val) and x.kind == "seq":
            kind = "int" if node.outputs[0].ndim == 0 else "seq"
            return self.assign(f"{x.expr}[{_key_src(key)}]", kind,
                               "n" if kind == "int" else "shape")
        if negative:
            return self.assign(f"index({self.expr(x)}, {_key_tuple(key)})")
        return self.assign(f"{self.expr(x)}[{_key_src(key)}]")

    def op_IncSubtensor(self, node, ins):
        key, negative = self._key(node, ins, skip=1)
        if negative:
            raise Unsupported("set/inc_subtensor with a negative step")
        y = self.assign(f"{self.expr(ins[0])}.clone()")
        op = "=" if node.op.set_instead_of_inc else "+="
        self.lines.append(f"{self.indent}{y.expr}[{_key_src(key)}] {op} {self.expr(ins[1])}")
        return y

    def op_AdvancedSubtensor1(self, node, ins):
        return self.assign(f"{self.expr(ins[0])}[{self.expr(ins[1])}.long()]"
                           if isinstance(ins[1], _Val) else
                           f"{self.expr(ins[0])}[{self.expr(ins[1])}.long()]")

    def op_AdvancedSubtensor(self, node, ins):
        args = list(zip(node.inputs[1:], ins[1:]))
        parts = []
        for var, v in args:
            if isinstance(var.type, SliceType):
                s = v.value.item() if isinstance(v, Const) else None
                if s != slice(None):
                    raise Unsupported("partial slices mixed with index arrays")
                parts.append(":")
            elif isinstance(var.type, NoneTypeT):
                parts.append("None")
            else:
                if var.dtype == "bool":
                    raise Unsupported("boolean mask indexing")
                parts.append(f"{self.expr(v)}.long()" if isinstance(v, _Val)
                             else f"torch.as_tensor({self.expr(v)}, device=dev).long()")
        return self.assign(f"{self.expr(ins[0])}[{', '.join(parts)}]")

    # reductions, products
    def op_CAReduce(self, node, ins):
        sop = node.op.scalar_op
        ndim = node.inputs[0].ndim
        axes = tuple(range(ndim)) if node.op.axis is None else tuple(a % ndim for a in node.op.axis)
        x = self.expr(ins[0])
        td = _TORCH_DTYPES[node.outputs[0].dtype]
        if not axes:
            return self.assign(f"{x}.to({td})")
        if isinstance(sop, ps.Add):
            return self.assign(f"{x}.sum(dim={_lit(axes)}).to({td})")
        if isinstance(sop, ps.ScalarMaximum):
            return self.assign(f"torch.amax({x}, dim={_lit(axes)})")
        if isinstance(sop, ps.ScalarMinimum):
            return self.assign(f"torch.amin({x}, dim={_lit(axes)})")
        if isinstance(sop, (ps.Mul, ps.AND, ps.OR)):
            f = {ps.Mul: "prod", ps.AND: "all", ps.OR: "any"}[next(
                k for k in (ps.Mul, ps.AND, ps.OR) if isinstance(sop, k))]
            y = x
            for a in sorted(axes, reverse=True):
                y = f"{y}.{f}(dim={a})"
            return self.assign(f"{y}.to({td})")
        raise Unsupported(f"a reduction by {type(sop).__name__}")

    def op_Argmax(self, node, ins):
        axis = node.op.axis
        if axis is None or len(axis) != 1:
            raise Unsupported("argmax over several axes")
        return self.assign(f"{self.expr(ins[0])}.argmax(dim={axis[0]})")

    def op_Dot(self, node, ins):
        return self.assign(f"torch.matmul({self.expr(ins[0])}, {self.expr(ins[1])})")

    def op_Softmax(self, node, ins):
        axis = -1 if node.op.axis is None else int(node.op.axis)
        return self.assign(f"torch.softmax({self.expr(ins[0])}, dim={axis})")

    def op_LogSoftmax(self, node, ins):
        axis = -1 if node.op.axis is None else int(node.op.axis)
        return self.assign(f"torch.log_softmax({self.expr(ins[0])}, dim={axis})")

    # lasres's convolutions and pooling
    def _pad(self, pad, k, dilation=None):
        return tuple(int(p) for p in resolve_pad(pad, k, dilation))

    def _w(self, v, flip, n):
        w = self.expr(v)
        return f"flip({w}, {n})" if flip else w

    def op_Conv2d(self, node, ins):
        op = node.op
        k = node.inputs[1].type.shape[2:]
        if None in k:
            raise Unsupported("filters of unknown size")
        b = self.expr(ins[2]) if len(ins) > 2 else "None"
        return self.assign(f"F.conv2d({self.expr(ins[0])}, {self._w(ins[1], op.filter_flip, 2)}, "
                           f"{b}, {_lit(tuple(op.stride))}, {_lit(self._pad(op.pad, k))})")

    def op_ConvNd(self, node, ins):
        op = node.op
        k = node.inputs[1].type.shape[2:]
        if None in k:
            raise Unsupported("filters of unknown size")
        w = self._w(ins[1], op.filter_flip, op.n)
        pad = _lit(self._pad(op.pad, k, op.dilation))
        return self.assign(f"F.conv{op.n}d({self.expr(ins[0])}, {w}, None, "
                           f"{_lit(tuple(op.stride))}, {pad}, {_lit(tuple(op.dilation))})")

    def _transposed(self, node, ins, n, dilation):
        op = node.op
        k = node.inputs[1].type.shape[2:]
        in_sizes = node.inputs[0].type.shape[2:]
        if not isinstance(ins[2], Const) or None in k or None in in_sizes:
            raise Unsupported("a transposed convolution needs known sizes")
        target = [int(t) for t in np.asarray(ins[2].value).reshape(-1)[-n:]]
        pads = self._pad(op.pad, k, dilation)
        extra = tuple(t - ((i - 1) * s - 2 * p + (kk - 1) * d + 1) for t, i, s, p, kk, d in
                      zip(target, in_sizes, op.stride, pads, k, dilation))
        return self.assign(f"F.conv_transpose{n}d({self.expr(ins[0])}, "
                           f"{self._w(ins[1], op.filter_flip, n)}, None, {_lit(tuple(op.stride))}, "
                           f"{_lit(pads)}, {_lit(extra)}, 1, {_lit(tuple(dilation))})")

    def op_Conv2dGradInputs(self, node, ins):
        return self._transposed(node, ins, 2, (1, 1))

    def op_ConvNdGradInputs(self, node, ins):
        return self._transposed(node, ins, node.op.n, tuple(node.op.dilation))

    def op_Conv2dGradWeights(self, node, ins):
        op = node.op
        if not isinstance(ins[2], Const):
            raise Unsupported("unknown filter size")
        target = [int(t) for t in np.asarray(ins[2].value).reshape(-1)[-2:]]
        pads = self._pad(op.pad, target)
        x, gz = self.expr(ins[0]), self.expr(ins[1])
        y = self.assign(f"F.conv2d({x}.transpose(0, 1), {gz}.transpose(0, 1), None, 1, "
                        f"{_lit(pads)}, {_lit(tuple(op.stride))})"
                        f"[:, :, :{target[0]}, :{target[1]}]")
        if op.filter_flip:
            y = self.assign(f"flip({y.expr}, 2)")
        return self.assign(f"{y.expr}.transpose(0, 1)")

    def op_Pool2d(self, node, ins):
        op = node.op
        return self.assign(f"pool2d({self.expr(ins[0])}, {_lit(tuple(op.ws))}, "
                           f"{_lit(tuple(op.stride))}, {_lit(tuple(op.pad))}, {op.mode!r}, "
                           f"{op.ignore_border})")

    def op_Pool2dGrad(self, node, ins):
        """Max unpooling for windows that tile the input (see the ONNX one)."""
        op = node.op
        if op.mode != "max" or tuple(op.stride) != tuple(op.ws) or any(op.pad):
            raise Unsupported("the gradient of pooling other than max pooling with "
                              "stride = pool size and no padding")
        x, z, gz = (self.expr(v) for v in ins)
        s0, s1 = op.ws

        def up(e):
            return (f"F.pad({e}.repeat_interleave({s0}, 2).repeat_interleave({s1}, 3), "
                    f"(0, max(0, {x}.shape[3] - {e}.shape[3] * {s1}), 0, "
                    f"max(0, {x}.shape[2] - {e}.shape[2] * {s0})))"
                    f"[:, :, :{x}.shape[2], :{x}.shape[3]]")
        return self.assign(f"torch.where({x} == {up(z)}, {up(gz)}, torch.zeros_like({x}))")

    def op_BatchNormInfer(self, node, ins):
        pattern = _lit(tuple(broadcast_pattern(node.inputs[0].ndim, node.op.axes)))
        x, gamma, beta, mean, inv_std = (self.expr(v) for v in ins)
        y = self.assign(f"(({x} - dimshuffle({mean}, {pattern})) * dimshuffle({gamma} * "
                        f"{inv_std}, {pattern})) + dimshuffle({beta}, {pattern})")
        if type(node.op).__name__ == "BatchNormInferRelu":
            y = self.assign(f"torch.relu({y.expr})")
        return y

    def op_GradClip(self, node, ins):
        return ins[0]

    op_ViewOp = op_OutputGuard = op_DeepCopyOp = op_GradClip

    def op_Scan(self, node, ins):
        return _scan_loop(self, node, ins)


def _drop_unused(lines, result):
    """The lines without the assignments whose names nothing reads (sizes
    that the static shapes made constant downstream)."""
    assign = re.compile(r"^\s*([A-Za-z_]\w*) = ")
    while True:
        text = "\n".join(lines) + "\n" + result
        counts = {}
        for w in re.findall(r"[A-Za-z_]\w*", text):
            counts[w] = counts.get(w, 0) + 1
        keep = [line for line in lines
                if not (assign.match(line) and counts[assign.match(line).group(1)] == 1)]
        if len(keep) == len(lines):
            return lines
        lines = keep


class _Raw(str):
    """Source text standing for an int in an index key."""


def _key_src(key):
    parts = []
    for k in key:
        if isinstance(k, slice):
            def s(v):
                return "" if v is None else str(v)
            if k.step is None:
                parts.append(f"{s(k.start)}:{s(k.stop)}")
            else:
                parts.append(f"{s(k.start)}:{s(k.stop)}:{s(k.step)}")
        else:
            parts.append(str(k))
    return ", ".join(parts)


def _key_tuple(key):
    """An index key as a tuple literal of ints and slice(...) (for index())."""
    def s(v):
        return "None" if v is None else str(v)
    parts = [f"slice({s(k.start)}, {s(k.stop)}, {s(k.step)})" if isinstance(k, slice) else str(k)
             for k in key]
    return _lit_tuple(parts)


def _lit_tuple(exprs):
    return "(" + ", ".join(exprs) + ("," if len(exprs) == 1 else "") + ")"


def _scan_loop(em, node, ins):
    """A ``Scan`` with sequences, single-tap states and per-step outputs as
    a Python loop over time."""
    op = node.op
    info = op.info
    if info.n_mit_mot or info.n_mit_sot or info.n_shared_outs or info.as_while:
        raise Unsupported("a scan with multi-tap or shared-variable states or a condition")
    n_seqs, n_sit, n_nit = info.n_seqs, info.n_sit_sot, info.n_nit_sot
    steps = em.expr(ins[0])
    seqs = ins[1:1 + n_seqs]
    sits = ins[1 + n_seqs:1 + n_seqs + n_sit]
    non = ins[1 + n_seqs + n_sit + n_nit:]
    inner_in, inner_out = op.inner_inputs, op.inner_outputs
    ind = em.indent
    states = [em.assign(f"{em.expr(b)}[0]", base="state") for b in sits]
    lists = [em.new("steps") for _ in range(n_sit + n_nit)]
    em.lines.append(f"{ind}{', '.join(lists)}{',' if len(lists) == 1 else ''} = "
                    f"{', '.join('[]' for _ in lists)}{',' if len(lists) == 1 else ''}")
    t = em.new("step")
    em.lines.append(f"{ind}for {t} in range(int({steps})):  # the scan over time")
    sub = TorchEmitter(em.owner, em.lines, em.used, ind + "    ")
    values = {}
    for iv, s in zip(inner_in[:n_seqs], seqs):
        values[iv] = sub.assign(f"{em.expr(s)}[{t}]", base="x_t")
    for iv, s in zip(inner_in[n_seqs:n_seqs + n_sit], states):
        values[iv] = s
    for iv, v in zip(inner_in[n_seqs + n_sit:], non):
        values[iv] = v
    walker = Walker(sub, sub.param, lambda msg: Unsupported(msg))
    outs = walker.run(inner_in, inner_out, values)
    for st, o in zip(states, outs[:n_sit]):
        em.lines.append(f"{ind}    {st.expr} = {sub.expr(o)}")
    for lst, o in zip(lists[:n_sit], outs[:n_sit]):
        em.lines.append(f"{ind}    {lst}.append({sub.expr(o)})")
    for lst, o in zip(lists[n_sit:], outs[n_sit:n_sit + n_nit]):
        em.lines.append(f"{ind}    {lst}.append({sub.expr(o)})")
    results = []
    for b, lst in zip(sits, lists[:n_sit]):  # the buffer: initial state, then every step's
        results.append(em.assign(f"torch.stack([{em.expr(b)}[0]] + {lst})"))
    for lst in lists[n_sit:]:
        results.append(em.assign(f"torch.stack({lst})"))
    return results


# --- the generated module ---------------------------------------------------------------
class _LayerModule:
    """The source of one translated layer's module class."""

    def __init__(self, name, owner_params):
        self.name = name
        self.init_lines = []
        self.params = {}  # shared variable -> attribute
        self.used_attrs = set()
        self.constants = []  # (attr, array)
        self.owner_params = owner_params  # shared variable -> (tags)

    def parameter(self, var):
        if var not in self.params:
            attr = _ident((var.name or "param").split(".")[-1], self.used_attrs)
            value = np.asarray(var.get_value())
            tags = self.owner_params.get(var, set())
            if "trainable" in tags and value.dtype.kind == "f":
                self.init_lines.append(f"        self.{attr} = nn.Parameter(torch.empty("
                                       f"{_lit(tuple(value.shape))}, dtype="
                                       f"{_TORCH_DTYPES[str(value.dtype)]}))")
            else:
                self.init_lines.append(f"        self.register_buffer({attr!r}, torch.empty("
                                       f"{_lit(tuple(value.shape))}, dtype="
                                       f"{_TORCH_DTYPES[str(value.dtype)]}))")
            self.params[var] = attr
        return "self." + self.params[var]

    def constant(self, array):
        a = np.asarray(array)
        if a.size <= 16:
            return (f"torch.tensor({_lit(a)}, dtype={_TORCH_DTYPES[str(a.dtype)]}, "
                    "device=dev)")
        attr = _ident("const", self.used_attrs)
        self.init_lines.append(f"        self.register_buffer({attr!r}, torch.empty("
                               f"{_lit(tuple(a.shape))}, dtype={_TORCH_DTYPES[str(a.dtype)]}))")
        self.constants.append((attr, a))
        return "self." + attr


def _layer_tags(layers):
    """shared variable -> its tags (from the first layer that has it)."""
    tags = {}
    for layer in layers:
        for p in layer.get_params():
            if p not in tags:
                t = set(layer.params.get(p, ()))
                if not t:  # a sub-layer's parameter (recurrent layers' gates)
                    t = {"trainable"} if p in layer.get_params(trainable=True) else set()
                    if p in layer.get_params(regularizable=True):
                        t.add("regularizable")
                tags[p] = t
    return tags


class _Codegen:
    def __init__(self, network, describe):
        self.L = L
        self.outputs = list(network) if isinstance(network, (list, tuple)) else [network]
        self.layers = L.get_all_layers(self.outputs)
        self.describe = describe
        self.used_names = set()
        self.names = {}
        self.classes = []  # translated layers' class sources
        self.inits = []  # lines of Net.__init__
        self.ties = []
        self.state = {}  # state_dict key -> array
        self.tags = _layer_tags(self.layers)
        self.owner = {}  # shared var -> "module.attr"
        self.regularizable = []
        self.shapes = {}
        self.dtypes = {}

    def fail(self, layer, why):
        return ExportError(f"cannot export {self.describe(layer)} to PyTorch: {why}")

    def _record(self, mod, attr, var):
        key = f"{mod}.{attr}"
        if var in self.owner:
            self.ties.append(f"        self.{mod}.{attr} = self.{self.owner[var]}  # tied")
            self.state[key] = self.state[self.owner[var]]
            return
        self.owner[var] = key
        self.state[key] = np.asarray(var.get_value())
        if "regularizable" in self.tags.get(var, ()):
            self.regularizable.append(f"self.{key}")

    # the layers with a runtime class
    def runtime(self, layer, mod):
        L = self.L
        cls = type(layer)

        def same(base, *methods):
            return isinstance(layer, base) and all(getattr(cls, m, None) is getattr(base, m, None)
                                                   for m in methods)
        pv = {}  # attr -> shared variable

        def shape(p):
            return None if p is None else tuple(p.get_value().shape)
        if isinstance(layer, L.InputLayer):
            return f"Input({_lit(tuple(layer.shape))})", pv
        if isinstance(layer, L.BaseConvLayer) and type(layer).__name__ in (
                "Conv1DLayer", "Conv2DLayer", "Conv3DLayer", "Conv2DDNNLayer", "Conv3DDNNLayer",
                "Conv2DMMLayer") and getattr(layer, "convolution", None) in (None, _default_conv(
                    layer)):
            spec = _nl_spec(layer.nonlinearity)
            if spec is None:
                return None, pv
            k = layer.filter_size
            pad = layer.pad
            if pad == "same":
                pad = tuple(f // 2 for f in k)
            elif pad == "full":
                pad = tuple(f - 1 for f in k)
            pv = {"W": layer.W, "b": layer.b}
            return (f"Conv(W_shape={_lit(shape(layer.W))}, b_shape={_lit(shape(layer.b))}, "
                    f"stride={_lit(tuple(layer.stride))}, pad={_lit(tuple(pad))}, "
                    f"flip_filters={bool(layer.flip_filters)}, num_groups={layer.num_groups}, "
                    f"untie_biases={bool(layer.untie_biases)}, nonlinearity={_lit(spec)})"), pv
        if same(L.DenseLayer, "get_output_for"):
            spec = _nl_spec(layer.nonlinearity)
            if spec is None:
                return None, pv
            pv = {"W": layer.W, "b": layer.b}
            return (f"Dense(W_shape={_lit(shape(layer.W))}, b_shape={_lit(shape(layer.b))}, "
                    f"num_leading_axes={layer.num_leading_axes}, nonlinearity={_lit(spec)})"), pv
        if same(L.BatchNormLayer, "get_output_for") and type(layer) is not getattr(
                L, "KerasBatchNormLayer", None):
            pv = {"beta": layer.beta, "gamma": layer.gamma, "mean": layer.mean,
                  "inv_std": layer.inv_std}
            return (f"BatchNorm(shape={_lit(shape(layer.mean))}, axes={_lit(tuple(layer.axes))}, "
                    f"epsilon={_lit(float(layer.epsilon))}, alpha={_lit(float(layer.alpha))}, "
                    f"beta={layer.beta is not None}, gamma={layer.gamma is not None})"), pv
        keras_bn = getattr(L, "KerasBatchNormLayer", None)
        if keras_bn is not None and same(keras_bn, "get_output_for"):
            pv = {"gamma": layer.gamma, "beta": layer.beta, "running_mean": layer.running_mean,
                  "running_std": layer.running_std}
            return (f"KerasBatchNorm(shape={_lit(shape(layer.running_mean))}, "
                    f"axes={_lit(tuple(layer.axes))}, epsilon={_lit(float(layer.epsilon))}, "
                    f"momentum={_lit(float(layer.momentum))})"), pv
        if same(L.Pool2DLayer, "get_output_for"):
            return (f"Pool2D(pool_size={_lit(tuple(layer.pool_size))}, "
                    f"stride={_lit(tuple(layer.stride))}, pad={_lit(tuple(layer.pad))}, "
                    f"mode={layer.mode!r}, ignore_border={bool(layer.ignore_border)})"), pv
        if same(L.GlobalPoolLayer, "get_output_for"):
            f = {pt.mean: "mean", pt.max: "max", pt.sum: "sum", pt.min: "min"}.get(
                layer.pool_function)
            if f is None or len(self.shapes[layer.input_layer]) < 3:
                return None, pv
            return f"GlobalPool({f!r})", pv
        if same(L.ElemwiseSumLayer, "get_output_for") and layer.cropping is None:
            return f"ElemwiseSum(coeffs={_lit([float(c) for c in layer.coeffs])})", pv
        if same(L.ElemwiseMergeLayer, "get_output_for") and layer.cropping is None:
            f = {pt.add: "add", pt.mul: "mul", pt.sub: "sub", pt.maximum: "maximum",
                 pt.minimum: "minimum", pt.true_div: "true_div"}.get(layer.merge_function)
            return (None, pv) if f is None else (f"ElemwiseMerge({f!r})", pv)
        if same(L.ConcatLayer, "get_output_for") and layer.cropping is None:
            return f"Concat(axis={int(layer.axis)})", pv
        if same(L.NonlinearityLayer, "get_output_for"):
            spec = _nl_spec(layer.nonlinearity)
            return (None, pv) if spec is None else (f"Nonlinearity({_lit(spec)})", pv)
        if same(L.DropoutLayer, "get_output_for"):
            return (f"Dropout(p={_lit(float(layer.p))}, rescale={bool(layer.rescale)}, "
                    f"shared_axes={_lit(tuple(layer.shared_axes))})"), pv
        if same(L.GaussianNoiseLayer, "get_output_for"):
            return f"GaussianNoise(sigma={_lit(float(layer.sigma))})", pv
        if same(L.PadLayer, "get_output_for", "pad_widths"):
            ndim = len(self.shapes[layer])
            return (f"Pad(widths={_lit([tuple(w) for w in layer.pad_widths(ndim)])}, "
                    f"val={_lit(float(layer.val))}, batch_ndim={layer.batch_ndim})"), pv
        if same(L.FlattenLayer, "get_output_for"):
            return f"Flatten(outdim={layer.outdim})", pv
        if same(L.ReshapeLayer, "get_output_for") and all(
                isinstance(s, (int, np.integer, list)) for s in layer.shape):
            spec = [s if isinstance(s, list) else int(s) for s in layer.shape]
            return f"Reshape({_lit(spec)})", pv
        if same(L.DimshuffleLayer, "get_output_for"):
            return f"Dimshuffle({_lit(tuple(layer.pattern))})", pv
        if same(L.SliceLayer, "get_output_for"):
            return f"Slice({_lit(layer.slice)}, axis={int(layer.axis)})", pv
        if same(L.BiasLayer, "get_output_for"):
            ndim = len(self.shapes[layer])
            pattern = tuple(broadcast_pattern(ndim, layer.shared_axes))
            pv = {"b": layer.b}
            return f"Bias(b_shape={_lit(shape(layer.b))}, pattern={_lit(pattern)})", pv
        if same(L.ScaleLayer, "get_output_for"):
            ndim = len(self.shapes[layer])
            pattern = tuple(broadcast_pattern(ndim, layer.shared_axes))
            pv = {"scales": layer.scales}
            return f"Scale(scales_shape={_lit(shape(layer.scales))}, pattern={_lit(pattern)})", pv
        return None, pv

    # the others: their graph, translated
    def translated(self, layer, mod):
        L = self.L
        merge = isinstance(layer, L.MergeLayer)
        ins = list(layer.input_layers) if merge else [layer.input_layer]
        shapes = [self.shapes[i] for i in ins]
        dtypes = [self.dtypes.get(i, "float32") for i in ins]
        inverse = isinstance(layer, L.InverseLayer) and \
            type(layer).get_output_for is L.InverseLayer.get_output_for
        sym = symbolic_inputs(shapes, dtypes)
        try:
            if inverse:
                import pytensor
                inv = layer.input_layers[1]
                out = inv.get_output_for(sym[2], deterministic=True)
                y = pytensor.grad(None, wrt=sym[2], known_grads={out: sym[0]})
                train = None
            else:
                y = layer.get_output_for(sym if merge else sym[0], deterministic=True)
                sym2 = sym
                try:
                    train = layer.get_output_for(sym2 if merge else sym2[0], deterministic=False)
                except Exception:  # noqa: BLE001
                    train = None
        except ExportError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self.fail(layer, f"building its graph failed: {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        y = pt.as_tensor_variable(y)
        stochastic = train is not None and not equal_computations(
            [pt.as_tensor_variable(train)], [y])
        cls = "Layer_" + mod
        owner_params = self.tags
        lm = _LayerModule(cls, owner_params)
        lines = []
        used = set()
        args = [_ident(f"x{i}", used) for i in range(len(sym))]
        em = TorchEmitter(lm, lines, used)
        walker = Walker(em, em.param, lambda msg: self.fail(layer, msg))
        values = {s: _Val(a) for s, a in zip(sym, args)}
        out, = walker.run(sym, [y], values)
        result = em.expr(out)
        lines = _drop_unused(lines, result)
        note = " (random or batch-dependent in training: evaluation only)" if stochastic else ""
        label = type(layer).__name__ + (f" {layer.name!r}" if layer.name else "")
        doc = (f'    """{label}: its deterministic PyTensor graph, translated op by '
               f'op{note}."""')
        src = [f"class {cls}(Translated):", doc]
        if stochastic:
            src.append("    stochastic = True")
        src += ["", "    def __init__(self):", "        super().__init__()"]
        src += lm.init_lines
        src += ["", f"    def forward(self, {', '.join(args)}):"]
        if stochastic:
            src.append("        self.check_mode()")
        if any(re.search(r"\bdev\b", line) for line in lines):
            src.append(f"        dev = {args[0]}.device")
        src += lines
        src.append(f"        return {result}")
        self.classes.append("\n".join(src))
        for var, attr in lm.params.items():
            self._record(mod, attr, var)
        for attr, a in lm.constants:
            self.state[f"{mod}.{attr}"] = a
        self.dtypes[layer] = y.dtype
        return f"{cls}()"

    def shapes_and_dtypes(self):
        L = self.L
        for layer in self.layers:
            if isinstance(layer, L.InputLayer):
                self.shapes[layer] = tuple(layer.shape)
                self.dtypes[layer] = layer.input_var.dtype
            elif isinstance(layer, L.MergeLayer):
                self.shapes[layer] = tuple(layer.get_output_shape_for(
                    [self.shapes[i] for i in layer.input_layers]))
            else:
                self.shapes[layer] = tuple(layer.get_output_shape_for(
                    self.shapes[layer.input_layer]))

    def build(self):
        L = self.L
        self.shapes_and_dtypes()
        forward = []
        inputs = [layer for layer in self.layers if isinstance(layer, L.InputLayer)]
        in_args = []
        used_args = set()
        for i, layer in enumerate(inputs):
            in_args.append(_ident("input" if len(inputs) == 1 else (layer.name or f"input{i}"),
                                  used_args))
        self.used_names |= used_args
        var = {}
        for i, layer in enumerate(self.layers):
            mod = _ident(layer.name or f"{type(layer).__name__.lower()}_{i}", self.used_names)
            self.names[layer] = mod
            src, pv = self.runtime(layer, mod)
            if src is None:
                src = self.translated(layer, mod)
            else:
                for attr, p in pv.items():
                    if p is not None:
                        self._record(mod, attr, p)
                if not isinstance(layer, L.InputLayer):
                    self.dtypes[layer] = "float32"
            comment = f"  # {layer.name!r}" if layer.name and layer.name != mod else ""
            self.inits.append(f"        self.{mod} = {src}{comment}")
            if isinstance(layer, L.InputLayer):
                args = [in_args[inputs.index(layer)]]
            elif isinstance(layer, L.MergeLayer):
                args = [var[x] for x in layer.input_layers]
            else:
                args = [var[layer.input_layer]]
            var[layer] = mod
            forward.append(f"        {mod} = self.{mod}({', '.join(args)})")
        outs = [var[o] for o in self.outputs]
        return in_args, forward, outs

    def source(self):
        from .torch_runtime import RUNTIME
        in_args, forward, outs = self.build()
        header = (f'"""A Lasagne network ({len(self.layers)} layers) exported by lasres '
                  f'{__version__} (lasres.export.to_torch).\n\n'
                  "Self-contained: it needs only torch. One submodule per Lasagne layer, named "
                  "after it; the\nparameters keep Lasagne's names and layouts (W, b, beta, "
                  "gamma, mean, inv_std, ...).\nLasagne's semantics in training too: batch "
                  "norm's running averages of mean and inv_std,\ndropout's rescale, "
                  "flip_filters, Theano's pooling and padding, the nonlinearities.\n\n"
                  "    model = Net()\n"
                  "    model.load_state_dict(torch.load('weights.pt'))\n"
                  "    model.eval()  # Lasagne's deterministic=True\n\n"
                  "regularizable_parameters(model) gives the parameters Lasagne tags "
                  "'regularizable' (for\nthe L2 penalty, l2_penalty(model)).\n"
                  '"""')
        net = ["class Net(nn.Module):",
               '    """The network: forward(' + ", ".join(in_args) + ") returns "
               + ("its output" if len(outs) == 1 else "its outputs") + '."""', "",
               "    def __init__(self):", "        super().__init__()"]
        net += self.inits + self.ties
        net += ["", f"    def forward(self, {', '.join(in_args)}):"] + forward
        net.append(f"        return {outs[0] if len(outs) == 1 else '(' + ', '.join(outs) + ')'}")
        net += ["", "    def regularizable_parameters(self):",
                '        """The parameters Lasagne tags \'regularizable\' (the weights; the '
                'batch norm gammas, as in Lasagne)."""',
                "        return [" + ",\n                ".join(self.regularizable) + "]"]
        tail = ['def regularizable_parameters(model):',
                '    """The parameters Lasagne tags \'regularizable\', for the L2 penalty."""',
                "    return model.regularizable_parameters()", "", "",
                "def l2_penalty(model):",
                '    """Lasagne\'s regularization.l2 over them: the sum of the squares."""',
                "    return sum((p ** 2).sum() for p in model.regularizable_parameters())"]
        parts = [header, RUNTIME.strip("\n")] + self.classes + ["\n".join(net), "\n".join(tail)]
        return "\n\n\n".join(parts) + "\n"


def _default_conv(layer):
    name = type(layer).__name__
    if name == "Conv1DLayer":
        return c1.conv1d_mc0
    if name in ("Conv3DLayer",):
        return conv3d
    return None


def torch_source(network, keys=False):
    """(model.py source, state_dict arrays) of ``network`` (and, with
    ``keys``, the state_dict key of each lasres parameter)."""
    outputs = list(network) if isinstance(network, (list, tuple)) else [network]
    cg = _Codegen(network, _describe_factory(L.get_all_layers(outputs)))
    try:
        src = cg.source()
    except (ValueError, TypeError, AssertionError) as exc:
        raise ExportError(f"cannot export to PyTorch: {exc}") from None
    return (src, cg.state, dict(cg.owner)) if keys else (src, cg.state)


def load_module(directory):
    """Import ``directory/model.py``, build ``Net`` and load ``weights.pt``."""
    torch = _torch()
    path = os.path.join(directory, "model.py")
    spec = importlib.util.spec_from_file_location(f"lasres_torch_model_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.Net()
    state = torch.load(os.path.join(directory, "weights.pt"), weights_only=True)
    net.load_state_dict(state)
    net.eval()
    return net


def to_torch(network, directory, force=False):
    """Write ``network`` as a PyTorch module: ``directory/model.py`` and
    ``directory/weights.pt``; returns the loaded ``Net`` (in eval mode).

    Parameters
    ----------
    network : Layer or list of Layer
        The output layer(s).
    directory : str or os.PathLike
        Created; an existing one is refused unless ``force`` (then replaced).
        Nothing is left behind by a failed export.

    Raises
    ------
    ExportError
        For a layer that cannot be translated (one line naming it and the op).
    LasresError
        When torch is missing or the directory exists (without ``force``).
    """
    torch = _torch()
    directory = os.fspath(directory)
    if os.path.exists(directory) and not force:
        raise LasresError(f"{directory} exists (give force=True / --force to replace it)")
    parent = os.path.dirname(os.path.abspath(directory))
    if not os.path.isdir(parent):
        raise LasresError(f"cannot write {directory}: the folder {parent} does not exist")
    src, state, keys = torch_source(network, keys=True)
    tmp = tempfile.mkdtemp(prefix=".lasres-torch-", dir=parent)
    try:
        with open(os.path.join(tmp, "model.py"), "w") as f:
            f.write(src)
        tensors = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}
        torch.save(tensors, os.path.join(tmp, "weights.pt"))
        load_module(tmp)  # it loads before it replaces anything
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    net = load_module(directory)
    net.lasres_keys = keys  # lasres parameter -> its state_dict key (not saved)
    return net


def regularizable_parameters(module):
    """The torch parameters Lasagne tags 'regularizable' in an exported module."""
    return module.regularizable_parameters()
