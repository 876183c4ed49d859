"""Residual sums in the C mode: the chain ``x + f1 + f2 + ...`` of a residual
stage stays a chain of binary sums in the model's order (PyTensor's additive
canonicaliser, which would flatten it into O(n^2) n-ary sums, is excluded)."""
import collections

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.scalar import basic as ps
from pytensor.tensor.elemwise import Elemwise

import lasres  # noqa: F401  (modes)
from lasres.config import get_mode


def _nary_adds(fn):
    """How many activation additions (4-d, or 5-d in the training graphs'
    channel-blocked layout, lasres/ops/layout.py) of each arity the compiled
    graph holds (PyTensor's ``Add`` or lasres's :class:`ParallelAdd`)."""
    from lasres.ops.add import ParallelAdd

    count = collections.Counter()
    for node in fn.maker.fgraph.apply_nodes:
        if (isinstance(node.op, ParallelAdd) or isinstance(node.op, Elemwise)
                and isinstance(node.op.scalar_op, ps.Add)) and node.outputs[0].ndim in (4, 5):
            count[len(node.inputs)] += 1
    return count


def test_residual_sums_stay_binary_in_the_training_step():
    """The residual chain ``x + f1 + f2 + ...`` of a stage (and the gradient
    accumulations along it) is not flattened into n-ary sums over all earlier
    block outputs (O(n^2) memory passes per stage)."""
    from lasres.models import build
    from lasres.train import Trainer

    from lasres.ops.bn import BatchNormReluTrainGrad

    trainer = Trainer(build("normal", 3, 1), backend="c")
    adds = _nary_adds(trainer.train_fn)
    assert adds and set(adds) == {2}, adds
    # the gradient sums at the blocks' inputs are written by the batch-norm
    # gradients (lasres.ops.bn.local_bn_grad_addend), here on blocked arrays
    folded = [n for n in trainer.train_fn.maker.fgraph.apply_nodes
              if isinstance(n.op, BatchNormReluTrainGrad) and len(n.inputs) == 8]
    assert len(folded) >= 6, len(folded)


def test_residual_chain_in_lasagnes_order_bit_for_bit():
    """Each block's output is ``previous + branch`` in float32, as Lasagne's
    ElemwiseSumLayer adds, even where the partial sums have other uses."""
    xs = [pt.tensor4(f"x{i}") for i in range(5)]
    partial, outs = xs[0], []
    for x in xs[1:]:
        partial = partial + x
        outs.append(pt.sqr(partial))  # a second use of every partial sum
    f = pytensor.function(xs, outs, mode=get_mode("c"))
    rng = np.random.default_rng(4)
    vals = [rng.normal(0, 10.0 ** k, (2, 3, 4, 4)).astype(np.float32) for k in range(5)]
    got = f(*vals)
    acc = vals[0]
    for v, g in zip(vals[1:], got):
        acc = acc + v
        np.testing.assert_array_equal(g, np.square(acc))


def test_folded_residual_sums_give_the_training_step_bit_for_bit(monkeypatch):
    """The residual sums folded into the convolutions (forward) and the
    batch-norm gradients (backward) leave the training step's results as
    they were, bit for bit (``LASRES_CONV_ADDEND=0``, ``LASRES_BN_ADDEND=0``:
    the separate sums)."""
    import lasres.random
    from lasres.layers import get_all_param_values, set_all_param_values
    from lasres.models import build
    from lasres.ops.conv import Conv2dSum
    from lasres.train import Trainer

    lasres.random.set_rng(np.random.RandomState(1))
    vals = get_all_param_values(build("bottleneck", 1, 1))
    rng = np.random.RandomState(0)
    x = rng.randn(16, 3, 32, 32).astype("float32")
    y = rng.randint(0, 10, 16).astype("int32")
    res = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("LASRES_CONV_ADDEND", flag)
        monkeypatch.setenv("LASRES_BN_ADDEND", flag)
        net = build("bottleneck", 1, 1)
        set_all_param_values(net, vals)
        tr = Trainer(net, backend="c")
        sums = sum(isinstance(n.op, Conv2dSum) for n in tr.train_fn.maker.fgraph.apply_nodes)
        losses = [tr.train_fn(x, y)[0] for _ in range(2)]
        res[flag] = (sums, losses, get_all_param_values(net))
    from lasres.ops import layout
    if layout.block_size():
        assert res["1"][0] >= 2 and res["0"][0] == 0, (res["1"][0], res["0"][0])
    np.testing.assert_array_equal(res["1"][1], res["0"][1])
    for a, b in zip(res["1"][2], res["0"][2]):
        np.testing.assert_array_equal(a, b)
