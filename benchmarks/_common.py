"""Helpers shared by the benchmark scripts (benchmarks/ only, never lasres)."""
import numpy as np


def calibrate(net, x):
    """Set every BN's statistics to those of its input on ``x`` (a
    training-mode pass): a fresh deep net would otherwise saturate its
    softmax, and an agreement check between frameworks would compare ones
    and zeros."""
    import pytensor
    from lasres.layers import BatchNormLayer, get_all_layers, get_output
    from lasres.train.recipe import input_var
    bns = [l for l in get_all_layers(net) if isinstance(l, BatchNormLayer)]
    f = pytensor.function([input_var(net)], get_output(
        [b.input_layer for b in bns], deterministic=True, batch_norm_use_averages=False))
    for bn, v in zip(bns, f(x)):
        bn.mean.set_value(v.mean(axis=bn.axes).astype("float32"))
        bn.inv_std.set_value((1 / np.sqrt(v.var(axis=bn.axes) + bn.epsilon)).astype("float32"))
