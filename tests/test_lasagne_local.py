"""lasres.layers.local.LocallyConnected2DLayer against Lasagne 0.2.dev1's
semantics: parameter shapes, values against a float64 loop (with and
without channelwise, flipped or not), gradients and errors."""
import itertools

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt

from lasres.layers import LocallyConnected2DLayer
from lasres.layers.local import LocallyConnected2DLayer as FromModule

RNG = np.random.default_rng(5)


def shared(a):
    return pytensor.shared(np.asarray(a, np.float64))


def ref_local(x, W, b, flip, channelwise, untie):
    """out[n, f, y, x] = sum over taps (and channels) of the zero-padded
    input around (y, x) times the weights of that output position."""
    n, c, h, w = x.shape
    if channelwise:
        W = W[:, None]                                  # (F, 1, fh, fw, h, w)
    f, _, fh, fw = W.shape[:4]
    xp = np.pad(x, ((0, 0), (0, 0), (fh // 2, fh // 2), (fw // 2, fw // 2)))
    out = np.zeros((n, f, h, w))
    for i, j in itertools.product(range(h), range(w)):
        patch = xp[:, :, i:i + fh, j:j + fw]            # (N, C, fh, fw)
        k = W[..., i, j]
        if flip:
            k = k[:, :, ::-1, ::-1]
        if channelwise:
            out[:, :, i, j] = (patch * k[:, 0][None]).sum(axis=(2, 3))
        else:
            out[:, :, i, j] = np.tensordot(patch, k, axes=([1, 2, 3], [1, 2, 3]))
    return out + (b[None] if untie else b[None, :, None, None])


@pytest.mark.parametrize("channelwise", [False, True])
@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("filter_size, untie", [(3, False), ((3, 5), True), (1, False)])
def test_values(filter_size, untie, flip, channelwise):
    x = RNG.standard_normal((2, 3, 5, 6))
    layer = LocallyConnected2DLayer((None, 3, 5, 6), 3, filter_size, untie_biases=untie,
                                    flip_filters=flip, channelwise=channelwise,
                                    nonlinearity=None)
    fs = filter_size if isinstance(filter_size, tuple) else (filter_size,) * 2
    assert layer.W.get_value().shape == ((3,) if channelwise else (3, 3)) + fs + (5, 6)
    assert layer.b.get_value().shape == ((3, 5, 6) if untie else (3,))
    assert [p.name for p in layer.get_params()] == ["W", "b"]
    W = RNG.standard_normal(layer.W.get_value().shape)
    b = RNG.standard_normal(layer.b.get_value().shape)
    layer.W, layer.b = shared(W), shared(b)
    X = pt.tensor(dtype="float64", shape=(None,) * 4)
    out = pytensor.function([X], layer.get_output_for(X))(x)
    assert layer.output_shape == (None, 3, 5, 6)
    np.testing.assert_allclose(out, ref_local(x, W, b, flip, channelwise, untie),
                               rtol=1e-12, atol=1e-12)


def test_gradient_reaches_every_weight_position():
    layer = LocallyConnected2DLayer((2, 2, 4, 4), 3, 3, W=shared(RNG.standard_normal(
        (3, 2, 3, 3, 4, 4))), flip_filters=False, nonlinearity=None)
    X = pt.tensor(dtype="float64", shape=(None,) * 4)
    g = pytensor.grad(layer.get_output_for(X).sum(), layer.W)
    gw = pytensor.function([X], g)(np.abs(RNG.standard_normal((2, 2, 4, 4))) + 1.0)
    # the top-left tap reads padding at the first output row: no gradient there;
    # the centre tap always gets one
    assert np.all(gw[:, :, 1, 1] != 0) and np.all(gw[:, :, 0, 0, 0, :] == 0)


def test_errors():
    assert FromModule is LocallyConnected2DLayer
    with pytest.raises(NotImplementedError, match="requires stride=1"):
        LocallyConnected2DLayer((None, 3, 5, 5), 4, 3, stride=2)
    with pytest.raises(NotImplementedError, match="requires pad='same'"):
        LocallyConnected2DLayer((None, 3, 5, 5), 4, 3, pad=1)
    with pytest.raises(ValueError, match="channelwise"):
        LocallyConnected2DLayer((None, 3, 5, 5), 4, 3, channelwise=True)
    with pytest.raises(ValueError, match="fixed input shape"):
        LocallyConnected2DLayer((None, 3, None, 5), 4, 3)
