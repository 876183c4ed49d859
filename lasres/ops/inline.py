"""Softmax and log-softmax inlined into the compiled graph.

PyTensor 3 writes ``softmax`` and ``log_softmax`` as symbolic ops (an inner
graph, like ``OpFromGraph``).  Left as they are, the C VM runs them through
their Python ``perform``, which compiles the inner graph as a separate
function the first time it runs — once per function and per process
(about a second each: train, validation and prediction functions all have
one), on every start, warm compile cache or not — and then calls it per
batch.  The C backend's mode (:mod:`lasres.config`) replaces them with
their inner graphs through :data:`local_inline_softmax`, so that their
``max``, ``exp``, ``sum`` and division are compiled (and fused) with the
rest of the graph.  The formula is the inner graph's, so values do not
change; gradients were built from the ops' own ``pullback`` before any
rewrite ran.
"""
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.rewriting.ofg import inline_ofg_node
from pytensor.tensor.special import LogSoftmax, Softmax

__all__ = ["local_inline_softmax"]


@node_rewriter([Softmax, LogSoftmax])
def local_inline_softmax(fgraph, node):
    """Replace a ``Softmax`` / ``LogSoftmax`` node by its inner graph."""
    return inline_ofg_node(node)
