"""Behaviours of Lasagne 0.2.dev1 that its own test suite checks and that a
ported script can meet (issue 33). Each test states the Lasagne behaviour it
pins down; the expected values come from Lasagne's source
(``../shared/tools/lasagne-reference/lasagne/``) and its tests.

Lasagne's own test files, imports renamed (``lasagne`` -> ``lasres``,
``theano`` -> ``pytensor``), also need a few renames that are not lasres's
business: ``theano.gof.graph.is_same_graph`` is
``pytensor.graph.rewriting.utils.is_same_graph``, ``theano.Variable`` is
``pytensor.graph.basic.Variable``, and ``theano.scan_module.scan_utils``'s
``equal_computations`` is ``pytensor.graph.basic.equal_computations``.
"""
import warnings

import numpy as np
import pytensor
import pytensor.tensor as T
import pytest
from pytensor.graph.basic import Variable
from pytensor.graph.rewriting.utils import is_same_graph

from lasres.utils import floatX


# -- objectives.aggregate ------------------------------------------------------

def test_aggregate_builds_lasagnes_graphs():
    """mean, sum, weighted mean, weighted sum and normalized sum: the very
    graphs Lasagne's ``aggregate`` builds (``weights.sum()`` included)."""
    from lasres.objectives import aggregate
    x, w = T.matrix("x"), T.matrix("w")
    assert is_same_graph(aggregate(x), x.mean())
    assert is_same_graph(aggregate(x, mode="mean"), x.mean())
    assert is_same_graph(aggregate(x, mode="sum"), x.sum())
    assert is_same_graph(aggregate(x, w), (x * w).mean())
    assert is_same_graph(aggregate(x, w, mode="sum"), (x * w).sum())
    assert is_same_graph(aggregate(x, w, "normalized_sum"), (x * w).sum() / w.sum())
    with pytest.raises(ValueError, match="mode must be"):
        aggregate(x, mode="asdf")
    with pytest.raises(ValueError, match="require weights"):
        aggregate(x, mode="normalized_sum")


# -- rectify on arrays, multiclass_hinge_loss ----------------------------------

def test_rectify_of_an_array_is_an_array():
    """Lasagne's ``rectify`` is Theano's ``relu``, which on a NumPy array
    computes ``0.5 * (x + abs(x))`` and returns an array (Lasagne's hinge
    loss test relies on it), keeping the array's dtype."""
    from lasres.nonlinearities import rectify
    x = floatX(np.array([-1.5, -0.0, 0.0, 2.25]))
    y = rectify(x)
    assert isinstance(y, np.ndarray) and y.dtype == x.dtype
    np.testing.assert_array_equal(y, [0, 0, 0, 2.25])
    assert rectify(-3.0) == 0.0 and rectify(2) == 2
    assert isinstance(rectify(T.vector()), Variable)


def test_multiclass_hinge_loss():
    """Lasagne's test: the loss against a NumPy reference built with
    ``rectify`` on arrays, int8 targets given for an ivector."""
    from lasres.nonlinearities import rectify
    from lasres.objectives import multiclass_hinge_loss
    p, t = T.matrix("p"), T.ivector("t")
    c = multiclass_hinge_loss(p, t)
    rng = np.random.RandomState(1)
    predictions = rng.rand(10, 20).astype(pytensor.config.floatX)
    targets = rng.randint(0, 20, (10,)).astype("int8")
    one_hot = np.zeros((10, 20))
    one_hot[np.arange(10), targets] = 1
    correct = predictions[one_hot > 0]
    rest = predictions[one_hot < 1].reshape((10, 19)).max(axis=1)
    hinge = rectify(1 + rest - correct)
    assert np.allclose(hinge, c.eval({p: predictions, t: targets}))
    with pytest.raises(TypeError, match="rank mismatch"):
        multiclass_hinge_loss(T.vector(), T.matrix())


# -- init: the class tree ------------------------------------------------------

def test_initializer_subclasses_sample_their_shape():
    """Lasagne's ``test_shape``: every subclass of ``Initializer`` (and each
    subclass of those that have some: HeNormal/HeUniform,
    GlorotNormal/GlorotUniform) constructs with no argument and samples the
    shape asked for. ``Glorot`` and ``He`` are direct subclasses."""
    from lasres.init import Glorot, He, Initializer
    subclasses = Initializer.__subclasses__()
    assert Glorot in subclasses and He in subclasses
    for klass in subclasses:
        if klass.__subclasses__():
            for sub_klass in klass.__subclasses__():
                assert sub_klass().sample((12, 23)).shape == (12, 23)
        else:
            assert klass().sample((12, 23)).shape == (12, 23)


# -- SpatialPyramidPoolingLayer and pool_2d -------------------------------------

def _np_pool_ignore_border(x, ws, stride, reduce):
    oh = (x.shape[2] - ws[0]) // stride[0] + 1
    ow = (x.shape[3] - ws[1]) // stride[1] + 1
    out = np.empty(x.shape[:2] + (oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * stride[0]:i * stride[0] + ws[0], j * stride[1]:j * stride[1] + ws[1]]
            out[:, :, i, j] = reduce(win, axis=(2, 3))
    return out


def _np_spatial_pool(x, pool_dims):
    parts = []
    for n in pool_dims:
        ws = tuple((i + n - 1) // n for i in x.shape[2:])
        stride = tuple(i // n for i in x.shape[2:])
        parts.append(_np_pool_ignore_border(x, ws, stride, np.max).reshape(
            x.shape[0], x.shape[1], n * n))
    return np.concatenate(parts, axis=2)


@pytest.mark.parametrize("mode,reduce", [("max", np.max), ("sum", np.sum),
                                         ("average_exc_pad", np.mean),
                                         ("average_inc_pad", np.mean)])
def test_pool_2d_with_symbolic_window_and_stride(mode, reduce):
    """``lasagne.layers.pool`` imports Theano's ``pool_2d``, which Lasagne's
    SPP layer (and its tests) call with symbolic ``ws``/``stride``."""
    from lasres.layers.pool import pool_2d
    x = floatX(np.random.RandomState(2).randn(2, 3, 17, 13))
    X, ws, st = T.tensor4(), T.ivector(), T.ivector()
    out = pool_2d(X, ws=ws, stride=st, ignore_border=True, pad=None, mode=mode)
    got = out.eval({X: x, ws: np.array([5, 4], "int32"), st: np.array([4, 3], "int32")})
    want = _np_pool_ignore_border(x, (5, 4), (4, 3), reduce)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    fixed = pool_2d(X, ws=(5, 4), stride=(4, 3), ignore_border=True, mode=mode).eval({X: x})
    np.testing.assert_allclose(fixed, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pool_dims", [[1], [1, 2], [1, 2, 3]])
@pytest.mark.parametrize("fixed", [True, False])
def test_spp_fast_get_output_for(pool_dims, fixed):
    """Lasagne's ``test_get_output_for_fast``: window ceil(size/n), stride
    floor(size/n), on a 17x13 input of known or unknown shape."""
    from lasres.layers import InputLayer, SpatialPyramidPoolingLayer
    from lasres.layers.pool import pool_2d
    pool_2d(T.tensor4(), ws=T.ivector(), stride=T.ivector(), ignore_border=True, pad=None)
    x = floatX(np.random.RandomState(3).randn(8, 16, 17, 13))
    layer = SpatialPyramidPoolingLayer(InputLayer(x.shape if fixed else (None,) * 4),
                                       pool_dims=pool_dims)
    got = layer.get_output_for(pytensor.shared(x)).eval()
    want = _np_spatial_pool(x, pool_dims)
    assert got.shape == want.shape and got.shape[2] == layer.output_shape[2]
    assert np.allclose(got, want)


@pytest.mark.parametrize("input_shape,output_shape", [
    ((32, 64, 24, 24), (32, 64, 21)), ((None, 64, 23, 25), (None, 64, 21)),
    ((32, None, 22, 26), (32, None, 21)), ((None, None, None, None), (None, None, 21))])
def test_spp_get_output_shape_for(input_shape, output_shape):
    """Lasagne's ``test_get_output_shape_for`` (pool_dims [1, 2, 4])."""
    from lasres.layers import InputLayer, SpatialPyramidPoolingLayer
    from lasres.layers.pool import pool_2d  # noqa: F401  (Lasagne's test imports it)
    layer = SpatialPyramidPoolingLayer(InputLayer(input_shape), pool_dims=[1, 2, 4])
    assert layer.get_output_shape_for(input_shape) == output_shape


# -- RecurrentLayer backwards ------------------------------------------------------

@pytest.mark.parametrize("unroll_scan", [False, True])
def test_recurrent_backwards_reverses(unroll_scan):
    """``backwards=True`` runs the sequence from its end and returns the
    states in input order: on the reversed input it is the forward layer
    reversed. (Lasagne's ``test_recurrent_bck`` evaluates each output with
    itself given as its own input, a tautology under Theano; PyTensor's
    static shapes refuse to feed a (2, 3, 4) array for an output of width 2.)"""
    import lasres
    from lasres.layers import InputLayer, RecurrentLayer, get_output
    l_inp = InputLayer((2, 3, 4))
    x = T.tensor3()
    lasres.random.get_rng().seed(1234)
    fwd = RecurrentLayer(l_inp, num_units=2, backwards=False, unroll_scan=unroll_scan)
    lasres.random.get_rng().seed(1234)
    bck = RecurrentLayer(l_inp, num_units=2, backwards=True, unroll_scan=unroll_scan)
    x_in = floatX(np.random.RandomState(4).rand(2, 3, 4))
    out_fwd = get_output(fwd, x).eval({x: x_in[:, ::-1].copy()})
    out_bck = get_output(bck, x).eval({x: x_in})
    np.testing.assert_allclose(out_fwd, out_bck[:, ::-1], rtol=1e-6)


# -- DenseLayer num_leading_axes ---------------------------------------------------

def test_dense_refuses_wrong_num_leading_axes():
    """Lasagne's messages, word for word (its test matches on them)."""
    from lasres.layers import DenseLayer, InputLayer
    inp = InputLayer((2, 3, 4))
    with pytest.raises(ValueError) as exc:
        DenseLayer(inp, 5, num_leading_axes=3)
    assert exc.value.args[0] == ("Got num_leading_axes=3 for a 3-dimensional input, "
                                 "leaving no trailing axes for the dot product.")
    with pytest.raises(ValueError) as exc:
        DenseLayer(inp, 5, num_leading_axes=-4)
    assert "requesting more trailing axes" in exc.value.args[0]


# -- get_output: inputs ---------------------------------------------------------------

def test_get_output_input_is_variable():
    """A bare Variable given as the input comes back as the input layer's output."""
    from lasres.layers import InputLayer, get_output
    layer = InputLayer((3, 2))
    variable = Variable(T.matrix().type, None, name="myvariable")
    assert get_output(layer, variable) is variable
    assert get_output(layer, {layer: variable}) is variable


def test_get_output_refuses_a_key_that_is_not_a_layer():
    """Lasagne raises TypeError for an inputs dict keyed by anything but a
    layer or None (a MergeLayer built from a shape, as in its test)."""
    from lasres.layers import InputLayer, MergeLayer, get_output
    layer = MergeLayer([(None, 20), InputLayer((None,))])
    with pytest.raises(TypeError, match="keys must be"):
        get_output(layer, {object(): [1, 2]})
    with pytest.raises(TypeError, match="keys must be"):
        get_output(InputLayer((None, 2)), {"input": T.matrix()})


# -- cuda_convnet layers with dimshuffle=False ------------------------------------------

def test_maxpool2dcc_dimshuffle_false():
    """c01b input given as an array (Lasagne's ``gpu_contiguous`` takes one)."""
    from lasres.layers import InputLayer
    from lasres.layers.cuda_convnet import MaxPool2DCCLayer
    layer = MaxPool2DCCLayer(InputLayer((4, 12, 12, 16)), pool_size=2, dimshuffle=False)
    assert layer.output_shape == (4, 6, 6, 16)
    x = floatX(np.random.RandomState(5).randn(4, 12, 12, 16))
    want = _np_pool_ignore_border(x.transpose(3, 0, 1, 2), (2, 2), (2, 2), np.max)
    got = layer.get_output_for(x).eval()
    np.testing.assert_array_equal(got, want.transpose(1, 2, 3, 0))


def test_conv2dcc_dimshuffle_false():
    """Lasagne's test compares with cuda-convnet's FilterActs (a correlation,
    c01b input, c01f filters): here with the same correlation in NumPy."""
    from lasres.layers import InputLayer
    from lasres.layers.cuda_convnet import Conv2DCCLayer
    rng = np.random.RandomState(6)
    x = floatX(rng.random_sample((4, 5, 5, 8)))       # c01b
    kernel = floatX(rng.random_sample((4, 3, 3, 16)))  # c01f
    layer = Conv2DCCLayer(InputLayer((4, 5, 5, 8)), num_filters=16, filter_size=(3, 3),
                          dimshuffle=False, W=pytensor.shared(kernel), b=None,
                          nonlinearity=None)
    want = np.zeros((16, 3, 3, 8))
    for i in range(3):
        for j in range(3):
            want[:, i, j, :] = np.einsum("cijb,cijf->fb", x[:, i:i + 3, j:j + 3, :].astype(float),
                                         kernel.astype(float))
    for given in (x, pytensor.shared(x)):
        got = np.asarray(layer.get_output_for(given).eval())
        assert got.shape == want.shape == layer.output_shape
        np.testing.assert_allclose(got, want, rtol=1e-5)
