"""lasres.layers.noise against Lasagne's semantics: dropout's rescaling,
shared axes, dropout_channels / spatial_dropout / dropout_locations,
deterministic passes, Gaussian noise."""
import numpy as np
import pytensor
import pytest

import lasres  # noqa: F401
from lasres import layers as L


def _f(layer, **kw):
    return pytensor.function([L.get_all_layers(layer)[0].input_var],
                             L.get_output(layer, **kw))


X = np.ones((8, 6, 5, 4), "float32")


@pytest.mark.parametrize("rescale", [True, False])
def test_dropout_values_and_rate(rescale):
    layer = L.DropoutLayer(L.InputLayer((None, 6, 5, 4)), p=0.3, rescale=rescale)
    out = _f(layer)(X)
    kept = 1 / 0.7 if rescale else 1.0
    assert set(np.unique(out)) <= {0.0, np.float32(kept)}
    assert abs((out == 0).mean() - 0.3) < 0.06
    np.testing.assert_array_equal(_f(layer, deterministic=True)(X), X)
    np.testing.assert_array_equal(_f(L.DropoutLayer(L.InputLayer((8, 6, 5, 4)), p=0))(X), X)


@pytest.mark.parametrize("make,shared", [
    (lambda l: L.dropout_channels(l, p=0.5), (2, 3)),
    (lambda l: L.spatial_dropout(l, p=0.5), (2, 3)),
    (lambda l: L.dropout_locations(l, p=0.5), (1,)),
    (lambda l: L.DropoutLayer(l, p=0.5, shared_axes=(0, -1)), (0, 3))])
def test_dropout_shared_axes(make, shared):
    layer = make(L.InputLayer((8, 6, 5, 4)))
    assert isinstance(layer, L.DropoutLayer)
    assert tuple(a % 4 for a in layer.shared_axes) == shared
    out = _f(layer)(X)
    for axis in shared:  # the mask is constant along every shared axis
        first = np.take(out, [0], axis=axis)
        np.testing.assert_array_equal(out, np.broadcast_to(first, out.shape))
    other = [a for a in range(4) if a not in shared]
    assert len(np.unique(out)) == 2  # some kept, some dropped
    assert np.any(np.diff(out, axis=other[0]) != 0)
    assert L.spatial_dropout is L.dropout_channels


def test_dropout_with_symbolic_probability():
    p = pytensor.shared(np.float32(0.5))
    layer = L.DropoutLayer(L.InputLayer((8, 6, 5, 4)), p=p)
    f = _f(layer)
    assert abs((f(X) == 0).mean() - 0.5) < 0.06
    p.set_value(np.float32(0.0))
    np.testing.assert_array_equal(f(X), X)


def test_gaussian_noise():
    layer = L.GaussianNoiseLayer(L.InputLayer((None, 1000)), sigma=0.5)
    x = np.zeros((20, 1000), "float32")
    out = _f(layer)(x)
    assert abs(out.std() - 0.5) < 0.02 and abs(out.mean()) < 0.02
    np.testing.assert_array_equal(_f(layer, deterministic=True)(x), x)
    np.testing.assert_array_equal(_f(L.GaussianNoiseLayer(L.InputLayer((2, 3)), sigma=0))(
        x[:2, :3]), x[:2, :3])
