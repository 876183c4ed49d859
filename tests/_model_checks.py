"""Checks shared by the architecture tests (tests/test_models_*.py)."""
import numpy as np
import pytensor
import pytensor.tensor as pt

from lasres import objectives
from lasres.layers import InputLayer, get_all_layers, get_all_params, get_output
from lasres.layers.conv import Conv2DLayer

FAST = "FAST_COMPILE"  # python perform, little rewriting: seconds instead of ~15 s a function
CIFAR, MNIST = (None, 3, 32, 32), (None, 1, 28, 28)


def by_name(net):
    """The named layers of a network, by name."""
    return {l.name: l for l in get_all_layers(net) if l.name}


def convs(net, size=None):
    """The convolution layers (of one filter size)."""
    return [l for l in get_all_layers(net) if isinstance(l, Conv2DLayer)
            and (size is None or l.filter_size == (size, size))]


def forward_backward(net, input_shape, num_classes, batch=2, seed=0):
    """Compile loss + gradients w.r.t. every trainable param; run on a tiny
    batch; every gradient finite, of the param's shape, and not all zero.
    Returns the number of trainable params."""
    x = next(l for l in get_all_layers(net) if isinstance(l, InputLayer)).input_var
    y = pt.ivector("y")
    prob = get_output(net)
    loss = objectives.categorical_crossentropy(prob, y).mean()
    params = get_all_params(net, trainable=True)
    f = pytensor.function([x, y], [loss, prob] + pytensor.grad(loss, params), mode=FAST)
    rng = np.random.RandomState(seed)
    X = rng.randn(batch, *input_shape[1:]).astype(pytensor.config.floatX)
    Y = rng.randint(0, num_classes, batch).astype("int32")
    loss, prob, *grads = f(X, Y)
    assert np.isfinite(loss) and loss > 0
    assert prob.shape == (batch, num_classes)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    for p, g in zip(params, grads):
        assert g.shape == p.get_value().shape
        assert np.all(np.isfinite(g)), p.name
        assert np.any(g != 0), f"zero gradient for {p.name}"
    return len(params)


def option_a(X, channels):
    """The paper's option A in NumPy: 2x2 stride-2 average pool, zero channels
    padded half before, half after."""
    b, c, h, w = X.shape
    pooled = X.reshape(b, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))
    extra = channels - c
    return np.pad(pooled, ((0, 0), (extra // 2, extra - extra // 2), (0, 0), (0, 0)))
