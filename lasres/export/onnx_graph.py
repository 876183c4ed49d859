"""Export a network's deterministic (inference) graph to ONNX.

:func:`to_onnx` walks the layers (:func:`lasres.layers.get_all_layers`) and
emits, for each layer class, ONNX nodes with the same semantics as the
layer's ``get_output_for(..., deterministic=True)``:

=================================  ==================================================
layer                              ONNX
=================================  ==================================================
InputLayer                         a graph input (batch axis dynamic, ``N``; its dtype)
Conv2DLayer, Conv2DDNNLayer        ``Conv`` (W flipped when ``flip_filters``: ONNX
                                   convolutions correlate; ``num_groups``), bias,
                                   nonlinearity
BatchNormLayer                     ``BatchNormalization`` (channel axis), else
                                   ``Sub``/``Mul``/``Add``; folded into the preceding
                                   convolution or dense layer with ``fold_bn``
KerasBatchNormLayer (Keras layout)  ``BatchNormalization`` (its variance and epsilon)
DenseLayer                         ``Flatten``/``Reshape``, ``Gemm`` or ``MatMul``
Pool2DLayer (all modes, borders)   ``MaxPool``, ``AveragePool``; ``sum`` as a
                                   depthwise ``Conv`` of ones
GlobalPoolLayer                    ``ReduceMean`` / ``ReduceMax`` / ``ReduceSum`` / ...
ElemwiseSumLayer, ElemwiseMerge..  ``Add``/``Sum`` (times the coefficients), ``Mul``, ...
ConcatLayer                        ``Concat``
PadLayer, SliceLayer               ``Pad``, ``Slice``/``Gather`` (the option-A shortcut)
NonlinearityLayer, Bias, Scale     the nonlinearity, ``Add``, ``Mul``
Flatten, Reshape, Dimshuffle       ``Flatten``/``Reshape``, ``Transpose``, ...
DropoutLayer, GaussianNoiseLayer   nothing (identity, as when deterministic)
InverseLayer                       the gradient graph of the inverted layer
every other layer                  its PyTensor graph, op by op
=================================  ==================================================

Every other layer -- an ``ExpressionLayer``, a subclass that overrides
``get_output_for``, a nonlinearity outside :mod:`lasres.nonlinearities`,
1D/3D/transposed/dilated convolutions, N-d pooling, LRN, upscaling,
embedding, the recurrent layers (their ``Scan`` as an ONNX ``Loop``) -- is
exported by translating its deterministic PyTensor graph op by op
(:mod:`.pytensor_graph`, :mod:`.pytensor_onnx`); an op without a
translation raises a one-line :class:`ExportError` naming the layer, its
class and the op.

Batch normalisation: Lasagne stores ``inv_std = 1/sqrt(var + epsilon)``;
the exported ``BatchNormalization`` node gets ``var = 1/inv_std**2 - eps``
(computed in float64) with the layer's ``eps`` (or a smaller one where
``1/inv_std**2`` is not above ``2 eps``, so that the subtraction never
cancels), so ``1/sqrt(var + eps)`` gives back ``inv_std`` to float32
rounding.

The model is float32 (parameters are cast). ``onnx`` is needed only here
(``pip install 'lasres[onnx]'``); the rest of lasres never imports it.

>>> from lasres.models import build
>>> from lasres.export import to_onnx
>>> net = build('normal', 18)
>>> model = to_onnx(net, 'resnet110.onnx', pixel_mean=mean)  # doctest: +SKIP
"""
import functools
import os

import numpy as np
import pytensor
import pytensor.tensor as pt

from .. import __version__, layers as L, nonlinearities as nl
from ..data import load_pixel_mean
from ..errors import ExportError, LasresError
from ..io.atomic import atomic_path
from ..ops.elemwise import relu
from .pytensor_graph import symbolic_inputs, Walker
from .pytensor_onnx import OnnxEmitter, pool_nodes

__all__ = ["to_onnx", "build_model", "OPSET"]

#: The ONNX operator set the models use (supported by ONNX Runtime >= 1.12,
#: TensorRT >= 8.6, OpenVINO, ...).
OPSET = 17
_IR_VERSION = 8  # the IR version that goes with opset 17
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


def _onnx():
    try:
        import onnx
    except ImportError:
        raise LasresError("exporting to ONNX needs the onnx package: "
                          "pip install 'lasres[onnx]'") from None
    return onnx


# --- the graph being built ------------------------------------------------------
class _Graph:
    """Nodes, initialisers and unique tensor names of the ONNX graph."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes = []
        self.initializers = []
        self.used = set()

    def name(self, base):
        base = "".join(c if c.isalnum() or c in "_.-/" else "_" for c in str(base)) or "t"
        name, i = base, 1
        while name in self.used:
            name = f"{base}_{i}"
            i += 1
        self.used.add(name)
        return name

    def const(self, value, base, dtype=np.float32):
        """An initialiser holding ``value``; returns its name."""
        name = self.name(base)
        arr = np.array(value, dtype=dtype, order="C")  # (ascontiguousarray makes 0-d 1-d)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, values, base):
        return self.const(np.asarray(values, dtype=np.int64).reshape(-1), base, np.int64)

    def node(self, op, inputs, base, **attrs):
        """Append one node with one output; returns the output's name."""
        out = self.name(base)
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out],
                                                     name=self.name(f"{base}/{op}"), **attrs))
        return out


# --- converters ------------------------------------------------------------------
class _Context:
    """What a converter needs beyond its inputs: the graph, the shapes, the
    BN folds, and how to name the layer in errors."""

    def __init__(self, graph, shapes, folds, describe, dtypes=None):
        self.g = graph
        self.shapes = shapes
        self.dtypes = {} if dtypes is None else dtypes
        self.params = {}  # shared variable -> initialiser, for the translated graphs
        self.folds = folds  # linear layer -> the BatchNormLayer folded into it
        self.describe = describe

    def unsupported(self, layer, why):
        return ExportError(f"cannot export {self.describe(layer)} to ONNX: {why}")


def _value(param, dtype=np.float64):
    return np.asarray(param.get_value(), dtype=dtype)


def _bn_params(bn):
    """gamma, beta, mean, inv_std of a BatchNormLayer, float64."""
    mean, inv_std = _value(bn.mean), _value(bn.inv_std)
    gamma = np.ones_like(mean) if bn.gamma is None else _value(bn.gamma)
    beta = np.zeros_like(mean) if bn.beta is None else _value(bn.beta)
    return gamma, beta, mean, inv_std


def _nonlinearity(ctx, layer, f, x, base):
    """Emit ``f(x)``; ``f`` one of lasres.nonlinearities."""
    g = ctx.g
    if f is None or f is nl.identity or f is nl.linear:
        return x
    if f is nl.rectify or f is relu:
        return g.node("Relu", [x], base + "_relu")
    if f is nl.sigmoid:
        return g.node("Sigmoid", [x], base + "_sigmoid")
    if f is nl.tanh:
        return g.node("Tanh", [x], base + "_tanh")
    if f is nl.softmax:
        return g.node("Softmax", [x], base + "_softmax", axis=-1)
    if f is nl.softplus:
        return g.node("Softplus", [x], base + "_softplus")
    if f is nl.elu:
        return g.node("Elu", [x], base + "_elu", alpha=1.0)
    if isinstance(f, nl.LeakyRectify):
        # Theano's 0.5(1+a)x + 0.5(1-a)|x| is x for x > 0 and a·x below, for any a
        return g.node("LeakyRelu", [x], base + "_leaky_relu", alpha=float(f.leakiness))
    if isinstance(f, nl.SELU):
        return g.node("Selu", [x], base + "_selu", alpha=float(f.scale_neg),
                      gamma=float(f.scale))
    if isinstance(f, nl.ScaledTanH):
        y = g.node("Mul", [x, g.const(f.scale_in, base + "_scale_in")], base + "_scaled")
        y = g.node("Tanh", [y], base + "_tanh")
        return g.node("Mul", [y, g.const(f.scale_out, base + "_scale_out")], base + "_scaled_tanh")
    # any other function: its PyTensor graph, op by op
    shape = ctx.shapes[layer]
    return _translate(ctx, layer, lambda xs: f(xs[0]), [x], [shape], ["float32"], base)[0]


def _input_layer(ctx, layer, x, base):
    return x  # bound to the graph input before conversion


def _conv(ctx, layer, x, base):
    if layer.convolution is not None:  # a custom convolution: its graph
        return _generic(ctx, layer, x, base)
    g = ctx.g
    W = _value(layer.W)
    channels = ctx.shapes[layer.input_layer][1]
    groups = int(getattr(layer, "num_groups", 1))
    if channels is not None and channels != W.shape[1] * groups:
        raise ctx.unsupported(layer, f"its input has {channels} channels, its weights take "
                                     f"{W.shape[1]}")
    if layer.flip_filters:  # a true convolution; ONNX Conv correlates
        W = W[:, :, ::-1, ::-1]
    b = None if layer.b is None else _value(layer.b)
    bn = ctx.folds.get(layer)
    if bn is not None:
        gamma, beta, mean, inv_std = _bn_params(bn)
        scale = gamma * inv_std
        W = W * scale[:, None, None, None]
        b = ((0.0 if b is None else b) - mean) * scale + beta
    pad = layer.explicit_pad()
    inputs = [x, g.const(W, base + ".W")]
    untied = b is not None and layer.untie_biases
    if b is not None and not untied:
        inputs.append(g.const(b, base + ".b"))
    y = g.node("Conv", inputs, base, kernel_shape=list(layer.filter_size),
               strides=list(layer.stride), pads=list(pad) + list(pad), dilations=[1, 1],
               group=groups)
    if untied:
        y = g.node("Add", [y, g.const(b, base + ".b")], base + "_bias")
    return _nonlinearity(ctx, layer, layer.nonlinearity, y, base)


def _dense(ctx, layer, x, base):
    g = ctx.g
    in_shape = ctx.shapes[layer.input_layer]
    lead = layer.num_leading_axes
    if lead < 0:
        lead += len(in_shape)
    W = _value(layer.W)
    features = in_shape[lead:]
    if None not in features and int(np.prod(features)) != W.shape[0]:
        raise ctx.unsupported(layer, f"its input {in_shape} has {int(np.prod(features))} "
                                     f"features, its weights take {W.shape[0]}")
    b = None if layer.b is None else _value(layer.b)
    bn = ctx.folds.get(layer)
    if bn is not None:
        gamma, beta, mean, inv_std = _bn_params(bn)
        scale = gamma * inv_std
        W = W * scale[None, :]
        b = ((0.0 if b is None else b) - mean) * scale + beta
    if len(in_shape) > lead + 1:
        if lead == 1:
            x = g.node("Flatten", [x], base + "_flatten", axis=1)
        else:
            x = g.node("Reshape", [x, g.ints([0] * lead + [-1], base + "_shape")],
                       base + "_flatten")
    if lead == 1 and b is not None:
        y = g.node("Gemm", [x, g.const(W, base + ".W"), g.const(b, base + ".b")], base)
    else:
        y = g.node("MatMul", [x, g.const(W, base + ".W")], base)
        if b is not None:
            y = g.node("Add", [y, g.const(b, base + ".b")], base + "_bias")
    return _nonlinearity(ctx, layer, layer.nonlinearity, y, base)


def _broadcast_shape(ndim, axes, shape):
    """Shape of a parameter over the non-``axes`` dimensions, broadcastable to x."""
    out, k = [], 0
    for d in range(ndim):
        if d in axes:
            out.append(1)
        else:
            out.append(shape[k])
            k += 1
    return out


def _batch_norm(ctx, layer, x, base):
    g = ctx.g
    gamma, beta, mean, inv_std = _bn_params(layer)
    ndim = len(ctx.shapes[layer])
    axes = tuple(a % ndim for a in layer.axes)
    if ndim >= 2 and axes == (0,) + tuple(range(2, ndim)):
        var_eps = 1.0 / np.square(inv_std)
        floor = float(var_eps.min()) / 2 if var_eps.size else 0.0
        eps = float(np.float32(min(float(layer.epsilon), floor)))
        var = var_eps - eps
        return g.node("BatchNormalization",
                      [x, g.const(gamma, base + ".gamma"), g.const(beta, base + ".beta"),
                       g.const(mean, base + ".mean"), g.const(var, base + ".var")],
                      base, epsilon=eps)
    # any other layout: Lasagne's own formula, (x - mean) * (gamma * inv_std) + beta
    shape = _broadcast_shape(ndim, axes, mean.shape)
    y = g.node("Sub", [x, g.const(mean.reshape(shape), base + ".mean")], base + "_centred")
    y = g.node("Mul", [y, g.const((gamma * inv_std).reshape(shape), base + ".scale")],
               base + "_scaled")
    return g.node("Add", [y, g.const(beta.reshape(shape), base + ".beta")], base)


def _keras_batch_norm(ctx, layer, x, base):
    """Keras 1's BN (``running_std`` holds a variance): ONNX's own formula."""
    g = ctx.g
    ndim = len(ctx.shapes[layer])
    axes = tuple(a % ndim for a in layer.axes)
    if not (ndim >= 2 and axes == (0,) + tuple(range(2, ndim))):
        raise ctx.unsupported(layer, f"Keras batch normalisation over axes {layer.axes}")
    return g.node("BatchNormalization",
                  [x, g.const(_value(layer.gamma), base + ".gamma"),
                   g.const(_value(layer.beta), base + ".beta"),
                   g.const(_value(layer.running_mean), base + ".mean"),
                   g.const(_value(layer.running_std), base + ".var")],
                  base, epsilon=float(layer.epsilon))


def _folded(ctx, layer, x, base):
    return x  # the linear layer below already applied this batch normalisation


def _pool(ctx, layer, x, base):
    g, ws = ctx.g, layer.pool_size
    return pool_nodes(lambda op, inputs, **attrs: g.node(op, inputs, base, **attrs), x,
                      ctx.shapes[layer.input_layer], ws, layer.stride, layer.pad,
                      layer.ignore_border, layer.mode,
                      lambda c: g.const(np.ones((c, 1) + tuple(ws)), base + ".ones"),
                      lambda message: ctx.unsupported(layer, message))


def _reduce(g, op, x, axes, base):
    if op == "ReduceSum":  # opset 13+: axes as an input
        return g.node(op, [x, g.ints(axes, base + "_axes")], base, keepdims=0)
    return g.node(op, [x], base, axes=list(axes), keepdims=0)


def _global_pool(ctx, layer, x, base):
    ops = ((pt.mean, "ReduceMean"), (pt.max, "ReduceMax"), (pt.sum, "ReduceSum"),
           (pt.min, "ReduceMin"))
    op = next((name for f, name in ops if layer.pool_function is f), None)
    if op is None:
        return _generic(ctx, layer, x, base)
    ndim = len(ctx.shapes[layer.input_layer])
    if ndim < 3:
        return _generic(ctx, layer, x, base)
    return _reduce(ctx.g, op, x, range(2, ndim), base)


def _same_shapes(ctx, layer):
    """Whether the inputs need no cropping (else the layer's graph is translated)."""
    if getattr(layer, "cropping", None) is None:
        return True
    shapes = [ctx.shapes[i] for i in layer.input_layers]
    return not (any(None in s for s in shapes) or len({s[1:] for s in shapes}) > 1)


def _sum(ctx, layer, xs, base):
    if not _same_shapes(ctx, layer):
        return _generic(ctx, layer, xs, base)
    g = ctx.g
    terms = [x if c == 1 else g.node("Mul", [x, g.const(c, f"{base}.coeff{i}")], f"{base}_term{i}")
             for i, (x, c) in enumerate(zip(xs, layer.coeffs))]
    if len(terms) == 1:
        return terms[0]
    return g.node("Add" if len(terms) == 2 else "Sum", terms, base)


def _merge(ctx, layer, xs, base):
    if not _same_shapes(ctx, layer):
        return _generic(ctx, layer, xs, base)
    ops = ((pt.add, "Add"), (pt.mul, "Mul"), (pt.sub, "Sub"), (pt.maximum, "Max"),
           (pt.minimum, "Min"), (pt.true_div, "Div"))
    op = next((name for f, name in ops if layer.merge_function is f), None)
    if op is None:  # any other function: its graph
        return _generic(ctx, layer, xs, base)
    y = xs[0]
    for i, x in enumerate(xs[1:], start=1):
        y = ctx.g.node(op, [y, x], base if i == len(xs) - 1 else f"{base}_{i}")
    return y


def _concat(ctx, layer, xs, base):
    if not _same_shapes(ctx, layer):
        return _generic(ctx, layer, xs, base)
    return ctx.g.node("Concat", xs, base, axis=int(layer.axis))


def _nonlinearity_layer(ctx, layer, x, base):
    return _nonlinearity(ctx, layer, layer.nonlinearity, x, base)


def _identity(ctx, layer, x, base):
    return x


def _bias(ctx, layer, x, base):
    if layer.b is None:
        return x
    ndim = len(ctx.shapes[layer])
    b = _value(layer.b)
    shape = _broadcast_shape(ndim, layer.shared_axes, b.shape)
    return ctx.g.node("Add", [x, ctx.g.const(b.reshape(shape), base + ".b")], base)


def _scale(ctx, layer, x, base):
    ndim = len(ctx.shapes[layer])
    s = _value(layer.scales)
    shape = _broadcast_shape(ndim, layer.shared_axes, s.shape)
    return ctx.g.node("Mul", [x, ctx.g.const(s.reshape(shape), base + ".scales")], base)


def _pad(ctx, layer, x, base):
    ndim = len(ctx.shapes[layer])
    widths = layer.pad_widths(ndim)
    before = [0] * layer.batch_ndim + [lo for lo, _ in widths]
    after = [0] * layer.batch_ndim + [hi for _, hi in widths]
    g = ctx.g
    return g.node("Pad", [x, g.ints(before + after, base + "_pads"),
                          g.const(layer.val, base + "_value")], base, mode="constant")


def _slice(ctx, layer, x, base):
    g = ctx.g
    ndim = len(ctx.shapes[layer.input_layer])
    axis = layer.axis % ndim
    s = layer.slice
    if isinstance(s, (int, np.integer)):
        return g.node("Gather", [x, g.const(np.int64(s), base + "_index", np.int64)], base,
                      axis=axis)
    step = 1 if s.step is None else int(s.step)
    size = ctx.shapes[layer.input_layer][axis]
    if size is not None:
        start, stop, step = s.indices(size)
        if step < 0 and stop < 0:
            stop = _INT64_MIN  # indices() says "before 0", which ONNX reads from the end
    else:
        start = s.start if s.start is not None else (0 if step > 0 else -1)
        stop = s.stop if s.stop is not None else (_INT64_MAX if step > 0 else _INT64_MIN)
    return g.node("Slice", [x, g.ints([start], base + "_starts"), g.ints([stop], base + "_ends"),
                            g.ints([axis], base + "_axes"), g.ints([step], base + "_steps")],
                  base)


def _flatten(ctx, layer, x, base):
    g = ctx.g
    if layer.outdim == 2:
        return g.node("Flatten", [x], base, axis=1)
    return g.node("Reshape", [x, g.ints([0] * (layer.outdim - 1) + [-1], base + "_shape")], base)


def _reshape(ctx, layer, x, base):
    g = ctx.g
    in_shape = ctx.shapes[layer.input_layer]
    parts, dynamic = [], False
    for dim, s in enumerate(layer.shape):
        if isinstance(s, list):
            if s[0] == dim:
                parts.append(0)  # ONNX: copy the input's size at this position
            elif in_shape[s[0]] is not None:
                parts.append(int(in_shape[s[0]]))
            else:
                parts.append(("input", s[0]))
                dynamic = True
        elif isinstance(s, (int, np.integer)):
            parts.append(int(s))
        else:
            raise ctx.unsupported(layer, "its shape holds a symbolic variable")
    if not dynamic:
        shape = g.ints(parts, base + "_shape")
    else:
        full = g.node("Shape", [x], base + "_input_shape")
        pieces = []
        for i, p in enumerate(parts):
            if isinstance(p, tuple):
                pieces.append(g.node("Gather", [full, g.ints([p[1]], f"{base}_dim{i}")],
                                     f"{base}_size{i}", axis=0))
            else:
                pieces.append(g.ints([p], f"{base}_size{i}"))
        shape = g.node("Concat", pieces, base + "_shape", axis=0)
    return g.node("Reshape", [x, shape], base)


def _dimshuffle(ctx, layer, x, base):
    g = ctx.g
    ndim = len(ctx.shapes[layer.input_layer])
    kept = [p for p in layer.pattern if p != "x"]
    dropped = [d for d in range(ndim) if d not in kept]
    if dropped:
        x = g.node("Squeeze", [x, g.ints(dropped, base + "_squeeze_axes")], base + "_squeezed")
    remaining = [d for d in range(ndim) if d not in dropped]
    perm = [remaining.index(p) for p in kept]
    if perm != sorted(perm):
        x = g.node("Transpose", [x], base + "_transposed", perm=perm)
    new = [i for i, p in enumerate(layer.pattern) if p == "x"]
    if new:
        x = g.node("Unsqueeze", [x, g.ints(new, base + "_unsqueeze_axes")], base)
    return x


@functools.lru_cache(maxsize=None)
def _converters():
    """(layer class, converter, methods that must not be overridden), most
    specific classes first. A subclass that overrides one of the methods
    computes something else and is not exported."""
    keras_bn = getattr(L, "KerasBatchNormLayer", None)  # the Keras layout of ror/ror-wrn
    return ((() if keras_bn is None else ((keras_bn, _keras_batch_norm, ("get_output_for",)),))
            + (
        (L.InputLayer, _input_layer, ()),
        (L.Conv2DLayer, _conv, ("get_output_for", "convolve")),
        (L.DenseLayer, _dense, ("get_output_for",)),
        (L.BatchNormLayer, _batch_norm, ("get_output_for",)),
        (L.Pool2DLayer, _pool, ("get_output_for",)),
        (L.GlobalPoolLayer, _global_pool, ("get_output_for",)),
        (L.ElemwiseSumLayer, _sum, ("get_output_for",)),
        (L.ElemwiseMergeLayer, _merge, ("get_output_for",)),
        (L.ConcatLayer, _concat, ("get_output_for",)),
        (L.NonlinearityLayer, _nonlinearity_layer, ("get_output_for",)),
        (L.BiasLayer, _bias, ("get_output_for",)),
        (L.ScaleLayer, _scale, ("get_output_for",)),
        (L.DropoutLayer, _identity, ("get_output_for",)),
        (L.GaussianNoiseLayer, _identity, ("get_output_for",)),
        (L.PadLayer, _pad, ("get_output_for", "pad_widths")),
        (L.InverseLayer, _inverse, ("get_output_for",)),
        (L.SliceLayer, _slice, ("get_output_for",)),
        (L.FlattenLayer, _flatten, ("get_output_for",)),
        (L.ReshapeLayer, _reshape, ("get_output_for",)),
        (L.DimshuffleLayer, _dimshuffle, ("get_output_for",)),
    ))


def _find_converter(layer, ctx):
    """The dedicated converter of the layer's class, or the translation of its
    PyTensor graph (a class without one, or one overriding its computation)."""
    cls = type(layer)
    for base_cls, fn, methods in _converters():
        if isinstance(layer, base_cls):
            if all(getattr(cls, m, None) is getattr(base_cls, m, None) for m in methods):
                return fn
            break
    return _generic


def _translate(ctx, layer, fn, xs, shapes, dtypes, base):
    """ONNX nodes for ``fn(symbolic inputs)`` -- a PyTensor graph -- op by op."""
    sym = symbolic_inputs(shapes, dtypes)
    try:
        out = fn(sym)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 -- the layer cannot build its graph
        raise ctx.unsupported(layer, f"building its graph failed: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    outs = [pt.as_tensor_variable(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
    em = OnnxEmitter(ctx.g, base, ctx.params)
    walker = Walker(em, em.param, lambda msg: ctx.unsupported(layer, msg))
    values = walker.run(sym, outs, dict(zip(sym, xs)))
    ctx.out_dtypes = [o.dtype for o in outs]
    return [em.name(v, o.dtype) for v, o in zip(values, outs)]


def _inverse(ctx, layer, xs, base):
    """InverseLayer: the gradient of the inverted layer's graph, rebuilt from
    that layer's input, applied to this layer's input."""
    inv = layer.input_layers[1]
    inner_in = layer.input_layers[2]
    inner_kind = isinstance(inv, __import__("lasres.layers", fromlist=["MergeLayer"]).MergeLayer)
    if inner_kind:
        raise ctx.unsupported(layer, "it inverts a layer with several inputs")

    def build(sym):
        grad_in, below = sym
        out = inv.get_output_for(below, deterministic=True)
        return pytensor.grad(None, wrt=below, known_grads={out: grad_in})
    return _translate(ctx, layer, build, [xs[0], xs[2]],
                      [ctx.shapes[layer.input_layers[0]], ctx.shapes[inner_in]],
                      ["float32", ctx.dtypes.get(inner_in, "float32")], base)[0]


def _generic(ctx, layer, x, base):
    """Any layer: its deterministic ``get_output_for`` graph, translated."""
    merge = isinstance(layer, L.MergeLayer)
    ins = list(layer.input_layers) if merge else [layer.input_layer]
    xs = list(x) if merge else [x]
    shapes = [ctx.shapes[i] for i in ins]
    dtypes = [ctx.dtypes.get(i, "float32") for i in ins]

    def build(sym):
        out = layer.get_output_for(sym if merge else sym[0], deterministic=True)
        return out
    y = _translate(ctx, layer, build, xs, shapes, dtypes, base)[0]
    ctx.dtypes[layer] = ctx.out_dtypes[0]
    return y


# --- the whole network ------------------------------------------------------------------
def _fold_plan(layers, outputs, shapes, fold_bn):
    """Linear layer -> the BatchNormLayer that directly and solely follows it."""
    if not fold_bn:
        return {}
    consumers = {}
    for layer in layers:
        for inp in getattr(layer, "input_layers", None) or [getattr(layer, "input_layer", None)]:
            if inp is not None:
                consumers.setdefault(inp, []).append(layer)
    folds = {}
    for bn in layers:
        if type(bn).get_output_for is not L.BatchNormLayer.get_output_for \
                or not isinstance(bn, L.BatchNormLayer):
            continue
        lin = bn.input_layer
        ndim = len(shapes[bn])
        if tuple(a % ndim for a in bn.axes) != (0,) + tuple(range(2, ndim)):
            continue
        if lin in outputs or consumers.get(lin) != [bn]:
            continue
        if getattr(lin, "nonlinearity", None) not in (nl.identity, nl.linear):
            continue
        if isinstance(lin, L.Conv2DLayer) and ndim == 4:
            ok = (type(lin).get_output_for is L.Conv2DLayer.get_output_for
                  and type(lin).convolve is L.Conv2DLayer.convolve
                  and lin.convolution is None and not lin.untie_biases)
        elif isinstance(lin, L.DenseLayer) and ndim == 2:
            ok = type(lin).get_output_for is L.DenseLayer.get_output_for
        else:
            ok = False
        if ok:
            folds[lin] = bn
    return folds


def _describe_factory(layers):
    index = {layer: i for i, layer in enumerate(layers)}

    def describe(layer):
        name = getattr(layer, "name", None)
        where = f"'{name}'" if name else f"#{index.get(layer, '?')} of {len(layers)}"
        return f"layer {where} ({type(layer).__name__})"
    return describe


def _elem_type(onnx, dtype):
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _onnx_shape(shape, batch_name="N"):
    return [batch_name if (s is None and i == 0) else (None if s is None else int(s))
            for i, s in enumerate(shape)]


def _load_mean(pixel_mean):
    if isinstance(pixel_mean, (str, os.PathLike)):
        return load_pixel_mean(pixel_mean)
    return np.asarray(pixel_mean, dtype=np.float32)


def build_model(network, input_shape=None, pixel_mean=None, fold_bn=False):
    """The ONNX ``ModelProto`` of ``network``'s deterministic graph (see
    :func:`to_onnx`; this builds and checks the model without writing it)."""
    onnx = _onnx()
    outputs = list(network) if isinstance(network, (list, tuple)) else [network]
    layers = L.get_all_layers(outputs)
    describe = _describe_factory(layers)
    inputs = [layer for layer in layers if isinstance(layer, L.InputLayer)]
    if not inputs:
        raise ExportError("cannot export to ONNX: the network has no InputLayer")
    if len(inputs) > 1 and (input_shape is not None or pixel_mean is not None):
        raise ExportError("input_shape and pixel_mean need a network with a single InputLayer "
                          f"(this one has {len(inputs)})")
    # shapes, for the export's input shape
    shapes = {}
    for layer in inputs:
        shape = tuple(layer.shape if input_shape is None else input_shape)
        if len(shape) != len(layer.shape):
            raise ExportError(f"input_shape {tuple(input_shape)} has {len(shape)} dimensions; "
                              f"the network's input has {len(layer.shape)}: {layer.shape}")
        if any(s is not None and (not isinstance(s, (int, np.integer)) or s < 1) for s in shape):
            raise ExportError(f"input_shape must hold positive ints or None, got {shape}")
        shapes[layer] = shape
    for layer in layers:
        if layer in shapes:
            continue
        try:
            if hasattr(layer, "input_layers"):
                shapes[layer] = tuple(layer.get_output_shape_for(
                    [shapes[i] for i in layer.input_layers]))
            else:
                shapes[layer] = tuple(layer.get_output_shape_for(shapes[layer.input_layer]))
        except (ValueError, TypeError, AssertionError) as exc:
            given = [shapes[i] for i in inputs]
            raise ExportError(f"cannot export {describe(layer)} to ONNX for input shape "
                              f"{given[0] if len(given) == 1 else given}: {exc}") from None

    g = _Graph(onnx)
    folds = _fold_plan(layers, outputs, shapes, fold_bn)
    folded = set(folds.values())
    ctx = _Context(g, shapes, folds, describe,
                   {layer: layer.input_var.dtype for layer in inputs})
    graph_inputs, names = [], {}
    for i, layer in enumerate(inputs):
        name = g.name("input" if len(inputs) == 1 else (layer.name or f"input{i}"))
        graph_inputs.append(onnx.helper.make_tensor_value_info(
            name, _elem_type(onnx, ctx.dtypes[layer]), _onnx_shape(shapes[layer])))
        names[layer] = name
        if pixel_mean is not None:
            mean = _load_mean(pixel_mean)
            try:
                ok = np.broadcast_shapes(mean.shape, tuple(
                    1 if s is None else s for s in shapes[layer][1:])) == tuple(
                    1 if s is None else s for s in shapes[layer][1:])
            except ValueError:
                ok = False
            if not ok:
                raise ExportError(f"pixel_mean of shape {mean.shape} does not fit input images "
                                  f"of shape {shapes[layer][1:]}")
            names[layer] = g.node("Sub", [name, g.const(mean, "pixel_mean")], "centred")

    for i, layer in enumerate(layers):
        if isinstance(layer, L.InputLayer):
            continue
        fn = _folded if layer in folded else _find_converter(layer, ctx)
        base = layer.name or f"{type(layer).__name__}_{i}"
        if hasattr(layer, "input_layers"):
            x = [names[inp] for inp in layer.input_layers]
        else:
            x = names[layer.input_layer]
        names[layer] = fn(ctx, layer, x, base)

    # name the outputs
    graph_outputs = []
    produced = {o for n in g.nodes for o in n.output}
    renamed = {}
    for i, layer in enumerate(outputs):
        want = "output" if len(outputs) == 1 else f"output{i}"
        want = g.name(want)
        have = names[layer]
        if have in produced and have not in renamed:
            renamed[have] = want
        else:
            g.nodes.append(onnx.helper.make_node("Identity", [renamed.get(have, have)], [want],
                                                 name=g.name(want + "/Identity")))
        graph_outputs.append(onnx.helper.make_tensor_value_info(
            want, _elem_type(onnx, ctx.dtypes.get(layer, "float32")), _onnx_shape(shapes[layer])))
    for node in g.nodes:
        for k, t in enumerate(node.input):
            if t in renamed:
                node.input[k] = renamed[t]
        for k, t in enumerate(node.output):
            if t in renamed:
                node.output[k] = renamed[t]

    graph = onnx.helper.make_graph(g.nodes, "lasres", graph_inputs, graph_outputs,
                                   initializer=g.initializers)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="lasres")
    model.ir_version = _IR_VERSION
    model.producer_version = __version__
    model.doc_string = ("lasres network, deterministic (inference) graph"
                        + ("; takes raw images: the pixel mean is subtracted inside"
                           if pixel_mean is not None else ""))
    onnx.helper.set_model_props(model, {
        "lasres.input": "raw images (pixel values, float32); the model subtracts the pixel mean"
        if pixel_mean is not None else "preprocessed images (pixel mean already subtracted)",
        "lasres.fold_bn": str(bool(fold_bn))})
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        # a bug of the exporter, not a user mistake
        raise RuntimeError(f"the exported ONNX model does not validate: {exc}") from exc
    return model


def to_onnx(network, path, input_shape=None, pixel_mean=None, fold_bn=False):
    """Export ``network``'s deterministic (inference) graph to an ONNX file.

    Parameters
    ----------
    network : Layer or list of Layer
        The output layer(s); all layers below are exported.
    path : str or os.PathLike
        The ``.onnx`` file to write (atomically: a failed export leaves no
        file and an existing one intact).
    input_shape : tuple or None
        The model's input shape, None for a dynamic axis (default: the
        InputLayer's shape, batch axis dynamic, named ``N``).
    pixel_mean : array, path or None
        When given (an array broadcastable to one image, e.g. ``(3, 32,
        32)``, or a ``pixel_mean.npy``), the model takes raw images (pixel
        values ``0..255`` as float32) and subtracts the mean itself.
    fold_bn : bool
        Fold every batch normalisation that directly follows a convolution
        or dense layer (and is that layer's only consumer) into its weights
        and bias. The others stay ``BatchNormalization`` nodes.

    Returns
    -------
    onnx.ModelProto
        The model written (input ``input``, output ``output``; several
        outputs are ``output0``, ``output1``, ...), checked by
        ``onnx.checker`` with full shape inference.

    Raises
    ------
    ExportError
        For a layer without an ONNX translation (naming it), or a bad
        ``input_shape`` / ``pixel_mean``.
    LasresError
        When onnx is not installed or the file cannot be written.
    """
    model = build_model(network, input_shape=input_shape, pixel_mean=pixel_mean,
                        fold_bn=fold_bn)
    onnx = _onnx()
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LasresError(f"cannot write {path}: the folder {folder} does not exist")
    try:
        with atomic_path(path) as tmp:
            onnx.save_model(model, tmp)
    except OSError as exc:
        raise LasresError(f"cannot write {path}: {exc.strerror or exc}") from None
    return model
