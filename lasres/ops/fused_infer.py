"""Inference graphs as oneDNN programs: the C mode's region fusion.

In an inference graph (no gradient op) of the C backend, the rewrite
:data:`fuse_inference` finds regions of connected float32 NCHW nodes that
oneDNN runs well — :class:`~lasres.ops.conv.Conv2d`, per-channel
:class:`~lasres.ops.bn.BatchNormInfer` (with or without its ReLU), binary
sums, :data:`~lasres.ops.elemwise.relu` — and puts one
:class:`OneDNNInference` node in place of each region that holds a
convolution. Inside it (:mod:`lasres.ops.onednn_program`) activations stay
in oneDNN's blocked layout from one primitive to the next, and

* a batch norm that only a convolution feeds is folded into that
  convolution's filters and bias (``W * gamma * inv_std``,
  ``(b - mean) * gamma * inv_std + beta``, recomputed from the parameters
  at every call);
* a residual sum that only a convolution (or its folded batch norm) feeds
  becomes the convolution's ``sum`` post-op, written over the other
  summand's buffer when that summand dies there;
* a ReLU becomes an ``eltwise`` post-op of what it follows;
* the pre-activation blocks' batch norm + ReLU of a sum (which feeds the
  next block's shortcut as well) runs as one binary primitive with
  post-ops, in the same arithmetic as :class:`BatchNormInfer`.

Any Lasagne network gets it, not only lasres's models: the rewrite works on
ops, not layers. What it does not cover (other dtypes, N-d or dilated or
grouped convolutions, pooling, reshapes, ``LASRES_KERNELS=numpy``) stays
with the general ops; a region whose oneDNN plan cannot be built (an
unusual geometry) runs the nodes it replaced, compiled on their own, with
the same results. ``LASRES_FUSE=0`` turns the rewrite off.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
from pytensor.graph.basic import Apply
from pytensor.graph.replace import clone_replace
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.elemwise import Elemwise
from pytensor.scalar.basic import Add
from pytensor.graph.basic import Constant
from pytensor.graph.traversal import ancestors
from pytensor.tensor.shape import Shape_i
import pytensor

from .bn import BatchNormInfer, BatchNormInferRelu, BatchNormTrain, BatchNormTrainGrad
from .conv import Conv2d, Conv2dGradInputs
from .elemwise import ScalarRectify
from . import native
from .onednn import _pad_args, kernels
from .onednn_program import DnnlError, Program, Step, available

__all__ = ["OneDNNInference", "fuse_inference", "set_fallback_mode", "FUSE_ENV", "enabled"]

#: Environment variable: ``0`` turns the fusion off (the ops run one by one).
FUSE_ENV = "LASRES_FUSE"


#: The mode a region's fallback compiles in (a function returning it): the C
#: mode, which registers this module's rewrite, sets it (:func:`set_fallback_mode`);
#: ops know nothing of the modes above them.
_fallback_mode = None


def set_fallback_mode(factory):
    """Compile the fallbacks of fused regions with ``factory()`` (a
    :class:`pytensor.compile.mode.Mode`); :mod:`lasres.config` passes its C mode."""
    global _fallback_mode
    _fallback_mode = factory


#: Non-zero while a region's fallback is compiled (it must not fuse again).
_suspended = 0


def enabled() -> bool:
    """Whether the C mode fuses inference graphs (oneDNN kernels, not turned off)."""
    if _suspended or os.environ.get(FUSE_ENV, "1").strip() in ("0", "false", "no", "off"):
        return False
    try:
        return kernels() == "onednn" and available()
    except Exception:
        return False


class OneDNNInference(Op):
    """A fused region of an inference graph, run as one oneDNN program.

    Inputs: the region's activations (NCHW float32), then its parameters
    (filters, biases, batch-norm vectors, in the order the steps index
    them). Outputs: the region's values used outside it.
    """

    __props__ = ("steps", "n_inputs", "outputs_idx", "out_types")

    def __init__(self, steps, n_inputs, outputs_idx, out_types):
        self.steps = tuple(steps)
        self.n_inputs = int(n_inputs)
        self.outputs_idx = tuple(outputs_idx)
        self.out_types = tuple(out_types)
        self._program = None
        self._fallback = None      # (inner inputs, inner outputs) of the replaced nodes
        self._fallback_fn = None
        native.prefetch()   # its 16-channel kernel, built while the graph compiles

    def make_node(self, *inputs):
        return Apply(self, list(inputs), [t() for t in self.out_types])

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_program"] = d["_fallback_fn"] = None
        return d

    def perform(self, node, inputs, output_storage):
        acts, params = inputs[:self.n_inputs], inputs[self.n_inputs:]
        outs = None
        if self._fallback_fn is None:
            try:
                if self._program is None:
                    self._program = Program(self.steps, self.n_inputs, self.outputs_idx)
                outs = self._program.run(acts, params)
            except DnnlError as exc:
                if self._fallback is None:
                    raise
                warnings.warn(f"lasres: fused oneDNN inference unavailable here ({exc}); "
                              f"running the ops one by one", RuntimeWarning, stacklevel=2)
                self._compile_fallback()
        if outs is None:
            if self._fallback_fn is None:
                self._compile_fallback()
            outs = self._fallback_fn(*inputs)
        for store, y in zip(output_storage, outs):
            store[0] = y

    def _compile_fallback(self):
        global _suspended
        ins, outs = self._fallback
        _suspended += 1
        try:
            mode = _fallback_mode() if _fallback_mode is not None else None
            self._fallback_fn = pytensor.function(ins, outs, mode=mode)
        finally:
            _suspended -= 1

    def __str__(self):
        n = sum(1 for s in self.steps if s.kind == "conv")
        return f"OneDNNInference{{{n} conv, {len(self.steps)} steps}}"


# ---------------------------------------------------------------------------
# the rewrite
# ---------------------------------------------------------------------------
def _f32_4d(v):
    return v.type.dtype == "float32" and v.type.ndim == 4


def _is_relu(node):
    return isinstance(node.op, Elemwise) and isinstance(node.op.scalar_op, ScalarRectify)


def _activation_inputs(node):
    """The inputs of a supported node that are activations (None: unsupported)."""
    op = node.op
    if type(op) is Conv2d:
        if not (_f32_4d(node.inputs[0]) and _f32_4d(node.inputs[1])
                and _f32_4d(node.outputs[0])):   # (blocked convolutions are 5-d)
            return None
        if len(node.inputs) > 2 and not (node.inputs[2].type.ndim == 1
                                         and node.inputs[2].type.dtype == "float32"):
            return None
        return [node.inputs[0]]
    if type(op) in (BatchNormInfer, BatchNormInferRelu):
        if tuple(op.axes) != (0, 2, 3) or not _f32_4d(node.inputs[0]):
            return None
        if not all(p.type.ndim == 1 and p.type.dtype == "float32" for p in node.inputs[1:]):
            return None
        return [node.inputs[0]]
    if _is_relu(node):
        return [node.inputs[0]] if _f32_4d(node.inputs[0]) else None
    if isinstance(op, Elemwise) and type(op.scalar_op) is Add and len(node.inputs) == 2:
        a, b = node.inputs
        if _f32_4d(a) and _f32_4d(b) and not any(a.type.broadcastable) \
                and not any(b.type.broadcastable) and node.outputs[0].type.dtype == "float32":
            return [a, b]
    return None


def _regions(fgraph, order):
    """Lists of supported nodes, each convex (no path leaves and re-enters it)."""
    region_of, deps = {}, {}    # node -> region id; variable -> int bitset of regions above it
    members = []
    for node in order:
        acts = _activation_inputs(node)
        inner = 0
        for v in node.inputs:
            inner |= deps.get(v, 0)
        if acts is None:
            for o in node.outputs:
                deps[o] = inner
            continue
        producers = {region_of[v.owner] for v in acts if v.owner in region_of}
        # regions reached through nodes outside them
        outside = 0
        for v in node.inputs:
            if v.owner is not None and v.owner in region_of:
                outside |= deps.get(v, 0) & ~(1 << region_of[v.owner])
            else:
                outside |= deps.get(v, 0)
        rid = None
        if len(producers) == 1:
            (cand,) = producers
            if not (outside >> cand) & 1:
                rid = cand
        if rid is None:
            rid = len(members)
            members.append([])
        region_of[node] = rid
        members[rid].append(node)
        for o in node.outputs:
            deps[o] = inner | (1 << rid)
    return members


def _build(fgraph, nodes):
    """``(op, inputs, old outputs)`` for one region, or None."""
    in_region = set(nodes)
    clients = fgraph.clients
    outputs_set = set(fgraph.outputs)
    pos = {n: i for i, n in enumerate(nodes)}

    def sole_client(v):
        cl = clients.get(v, [])
        if len(cl) != 1 or v in outputs_set:
            return None
        node = cl[0][0]
        return node if node in in_region else None

    ext, params, values, steps = [], [], {}, []
    absorbed = set()

    def param(v):
        for i, p in enumerate(params):
            if p is v:
                return i
        params.append(v)
        return len(params) - 1

    # external activation inputs first
    for n in nodes:
        for v in _activation_inputs(n):
            if v.owner not in in_region and v not in values:
                values[v] = len(ext)
                ext.append(v)
    next_id = [len(ext)]

    def new_value(v):
        values[v] = next_id[0]
        next_id[0] += 1
        return values[v]

    for n in nodes:
        if n in absorbed:
            continue
        op = n.op
        if type(op) is Conv2d:
            ph, pw, mode = _pad_args(op.pad)
            W = n.inputs[1]
            b = n.inputs[2] if len(n.inputs) > 2 else None
            kw = dict(kind="conv", src=values[n.inputs[0]], stride=tuple(op.stride),
                      pad=(ph, pw, mode), flip=bool(op.filter_flip),
                      params=(param(W), param(b) if b is not None else -1))
            cur = n.outputs[0]
            nxt = sole_client(cur)
            if nxt is not None and type(nxt.op) in (BatchNormInfer, BatchNormInferRelu) \
                    and _activation_inputs(nxt) is not None:
                kw["bn"] = tuple(param(p) for p in nxt.inputs[1:])
                kw["relu"] = type(nxt.op) is BatchNormInferRelu
                absorbed.add(nxt)
                cur = nxt.outputs[0]
                nxt = sole_client(cur)
            if not kw.get("relu") and nxt is not None and isinstance(nxt.op, Elemwise) \
                    and type(nxt.op.scalar_op) is Add and len(nxt.inputs) == 2 \
                    and _activation_inputs(nxt) is not None:
                other = nxt.inputs[1] if nxt.inputs[0] is cur else nxt.inputs[0]
                if other is not cur and values.get(other) is not None \
                        and (other.owner not in in_region or pos[other.owner] < pos[n]):
                    kw["sum_with"] = values[other]
                    absorbed.add(nxt)
                    cur = nxt.outputs[0]
                    nxt = sole_client(cur)
            if not kw.get("relu") and nxt is not None and _is_relu(nxt):
                kw["relu"] = True
                absorbed.add(nxt)
                cur = nxt.outputs[0]
            steps.append(Step(dst=new_value(cur), **kw))
            continue
        if type(op) in (BatchNormInfer, BatchNormInferRelu):
            steps.append(Step(kind="bn", src=values[n.inputs[0]], dst=new_value(n.outputs[0]),
                              bn=tuple(param(p) for p in n.inputs[1:]),
                              relu=type(op) is BatchNormInferRelu))
            continue
        if _is_relu(n):
            steps.append(Step(kind="relu", src=values[n.inputs[0]], dst=new_value(n.outputs[0])))
            continue
        a, b = n.inputs
        cur, relu = n.outputs[0], False
        nxt = sole_client(cur)
        if nxt is not None and _is_relu(nxt):
            absorbed.add(nxt)
            cur, relu = nxt.outputs[0], True
        steps.append(Step(kind="add", src=values[a], other=values[b], dst=new_value(cur),
                          relu=relu))
    if not any(s.kind == "conv" for s in steps):
        return None
    # the region's values used outside it, in step order
    old_outs = []
    for v, vid in sorted(((v, i) for v, i in values.items() if i is not None
                          and i >= len(ext)), key=lambda t: t[1]):
        used_outside = v in outputs_set or any(c not in in_region for c, _ in clients.get(v, []))
        if used_outside:
            old_outs.append(v)
    if not old_outs:
        return None
    op = OneDNNInference(steps, len(ext), [values[v] for v in old_outs],
                         [v.type for v in old_outs])
    inputs = list(ext) + list(params)
    inner_in = [v.type() for v in inputs]
    op._fallback = (inner_in, clone_replace(old_outs, replace=dict(zip(inputs, inner_in))))
    return op, inputs, old_outs


def _shapes_from_outputs(fgraph, inputs, new, old_shapes):
    """Read the fused outputs' shapes from the outputs themselves.

    The graph may still compute a replaced value's shape symbolically (the
    chains of output-length ops and broadcast assertions that a global
    pooling's divisor reads): one scalar op per layer per call. The fused
    node checks its shapes itself (a mismatch fails its plan, and the
    fallback raises the ops' own errors), so each such scalar becomes a
    ``Shape_i`` of the fused output."""
    upstream = None
    for nv, shape in zip(new, old_shapes):
        if shape is None:
            continue
        for d, s in enumerate(shape):
            if isinstance(s, Constant) or s.owner is None or isinstance(s.owner.op, Shape_i) \
                    or s not in fgraph.clients or not fgraph.clients[s]:
                continue
            if upstream is None:
                upstream = set(ancestors(inputs))
            if s in upstream:
                continue
            new_s = Shape_i(d)(nv)
            if new_s.type != s.type:
                continue
            fgraph.replace(s, new_s, reason="lasres_fuse_inference_shapes")


class FuseInference(GraphRewriter):
    """Replace the oneDNN-friendly regions of an inference graph by
    :class:`OneDNNInference` nodes (see the module docstring)."""

    def add_requirements(self, fgraph):
        pass

    def apply(self, fgraph):
        if not enabled():
            return
        order = fgraph.toposort()
        if any(isinstance(n.op, (Conv2dGradInputs, BatchNormTrain, BatchNormTrainGrad))
               for n in order):
            # a training graph: its convolutions keep their ops, whose outputs
            # the gradients read in plain layout (a weight-gradient op alone
            # is no sign of training: Lasagne's dilated convolution is one)
            return
        for nodes in _regions(fgraph, order):
            if not any(type(n.op) is Conv2d for n in nodes):
                continue
            built = _build(fgraph, nodes)
            if built is None:
                continue
            op, inputs, old_outs = built
            new = op.make_node(*inputs).outputs
            sf = getattr(fgraph, "shape_feature", None)
            old_shapes = [sf.shape_of.get(v) if sf is not None else None for v in old_outs]
            fgraph.replace_all_validate(list(zip(old_outs, new)), reason="lasres_fuse_inference")
            _shapes_from_outputs(fgraph, inputs, new, old_shapes)


fuse_inference = FuseInference()
