"""Lasagne's objectives.huber_loss / aggregate / binary_hinge_loss,
updates.amsgrad and the utils (create_param, as_tuple,
as_theano_expression, collect_shared_vars, unroll_scan, inspect_kwargs,
int_types, shared_empty, compute_norms), plus the base-layer behaviours
they drive (parameter expressions in add_param/get_params, messages)."""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres
from lasres import init, objectives, updates, utils
from lasres import layers as L


# ---------------------------------------------------------------- objectives
def test_huber_loss():
    p, t = pt.vector("p"), pt.vector("t")
    pv = np.array([0.0, 0.5, 2.0, -3.0, 1.0], "float32")
    tv = np.array([0.0, 0.0, 0.0, 0.0, 2.5], "float32")
    for delta in (1, 0.25):
        got = pytensor.function([p, t], objectives.huber_loss(p, t, delta))(pv, tv)
        d = np.abs(pv - tv).astype(float)
        ref = np.where(d <= delta, 0.5 * d ** 2, delta * (d - delta / 2))
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    col = pt.col("col")  # a column of predictions with a vector of targets
    got = pytensor.function([col, t], objectives.huber_loss(col, t))(pv[:, None], tv)
    assert got.shape == (5, 1)


def test_aggregate_weighted_forms():
    loss, w = pt.vector("loss"), pt.vector("w")
    lv = np.array([1.0, 2.0, 4.0], "float32")
    wv = np.array([0.5, 0.0, 2.0], "float32")
    forms = [
        (objectives.aggregate(loss, w, "mean"), (lv * wv).mean()),
        (objectives.aggregate(loss, w, "sum"), (lv * wv).sum()),
        (objectives.aggregate(loss, w, "normalized_sum"), (lv * wv).sum() / wv.sum()),
        (objectives.aggregate(loss, wv, "normalized_sum"), (lv * wv).sum() / wv.sum()),
        (objectives.aggregate(loss, 2.0, "normalized_sum"), (lv * 2).sum() / 2.0),
        (objectives.aggregate(loss, mode="sum"), lv.sum()),
    ]
    f = pytensor.function([loss, w], [e for e, _ in forms], on_unused_input="ignore")
    for got, (_, ref) in zip(f(lv, wv), forms):
        assert got == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="require weights for mode='normalized_sum'"):
        objectives.aggregate(loss, mode="normalized_sum")
    with pytest.raises(ValueError, match="mode must be 'mean', 'sum' or 'normalized_sum', "
                                         "got 'max'"):
        objectives.aggregate(loss, mode="max")


def test_binary_hinge_loss_requires_log_odds_like_lasagne():
    p, t = pt.vector("p"), pt.vector("t")
    with pytest.raises(FutureWarning):
        objectives.binary_hinge_loss(p, t)
    pv = np.array([0.9, 0.2, 0.6], "float32")
    tv = np.array([1, 0, 0], "float32")
    got = pytensor.function([p, t], objectives.binary_hinge_loss(p, t, log_odds=False))(pv, tv)
    logit = np.log(pv / (1 - pv))
    np.testing.assert_allclose(got, np.maximum(0, 1 - logit * (2 * tv - 1)), rtol=1e-5)
    got = pytensor.function([p, t], objectives.binary_hinge_loss(p, t, log_odds=True,
                                                                 binary=False))(pv, 2 * tv - 1)
    np.testing.assert_allclose(got, np.maximum(0, 1 - pv * (2 * tv - 1)), rtol=1e-6)


# ---------------------------------------------------------------- updates
def test_amsgrad_matches_numpy_loop():
    w = pytensor.shared(np.array([1.0, -2.0, 3.0], "float32"))
    loss = (w ** 2).sum() + (w ** 3).sum() * 0.1
    upd = updates.amsgrad(loss, [w], learning_rate=0.1, beta1=0.8, beta2=0.9, epsilon=1e-6)
    assert isinstance(upd, OrderedDict) and len(upd) == 5  # m, v, v_hat, w, t
    f = pytensor.function([], loss, updates=upd)
    wn = np.array([1.0, -2.0, 3.0])
    m = v = vhat = np.zeros(3)
    for t in range(1, 6):
        f()
        g = 2 * wn + 0.3 * wn ** 2
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g ** 2
        vhat = np.maximum(vhat, v)
        a = 0.1 * np.sqrt(1 - 0.9 ** t) / (1 - 0.8 ** t)
        wn = wn - a * m / (np.sqrt(vhat) + 1e-6)
        np.testing.assert_allclose(w.get_value(), wn, rtol=1e-5)


def test_get_or_compute_grads_messages():
    w = pytensor.shared(np.zeros(3, "float32"))
    with pytest.raises(ValueError, match="params must contain shared variables only"):
        updates.sgd(w.sum(), [w * 2], 0.1)
    with pytest.raises(ValueError, match="Got 2 gradient expressions for 1 parameters"):
        updates.sgd([w, w], [w], 0.1)


# ---------------------------------------------------------------- collect_shared_vars
def _shared(name, shape=()):
    return pytensor.shared(np.ones(shape, "float32"), name=name)


def test_collect_shared_vars_order_of_first_appearance():
    x, y, z = _shared("x"), _shared("y"), _shared("z")
    assert utils.collect_shared_vars(x ** 2 + pt.log(y)) == [x, y]
    assert utils.collect_shared_vars(pt.log(y) * x) == [y, x]
    assert utils.collect_shared_vars(pt.exp(z) + (y * x) * z) == [z, y, x]
    assert utils.collect_shared_vars([y + x, z, x]) == [y, x, z]
    assert utils.collect_shared_vars(x) == [x]
    assert utils.collect_shared_vars(pt.constant(1.0) + pt.scalar()) == []


def test_parameter_expressions_in_add_param_and_get_params():
    x, y = _shared("x", (4, 3)), _shared("y", (4, 3))
    layer = L.DenseLayer(L.InputLayer((None, 4)), 3, W=x ** 2 + pt.log(y))
    assert layer.get_params() == [x, y, layer.b]
    assert layer.get_params(unwrap_shared=False)[0] is layer.W
    assert L.get_all_params(layer) == [x, y, layer.b]
    other = L.DenseLayer(L.InputLayer((None, 4)), 3, W=pt.log(y) * x, b=None)
    assert other.get_params() == [y, x]
    assert layer.W.name == "W"  # an unnamed expression gets the parameter's name


# ---------------------------------------------------------------- create_param
def test_create_param_specs():
    p = utils.create_param(np.arange(6.0).reshape(2, 3), (2, 3), name="p")
    assert p.dtype == "float64" and p.name == "p"  # an array keeps its dtype
    assert utils.create_param(np.arange(3, dtype="int32"), (3,)).dtype == "int32"
    s = utils.create_param(1, ())
    assert s.get_value() == 1 and s.ndim == 0
    c = utils.create_param(init.Constant(2.0), (2,), name="c")
    assert c.dtype == pytensor.config.floatX and np.all(c.get_value() == 2)
    shared = pytensor.shared(np.zeros((2, 2)), name="mine")
    assert utils.create_param(shared, (2, 2), name="other") is shared
    assert shared.name == "mine"  # a user's name is kept
    expr = pt.matrix()
    assert utils.create_param(expr, (5, 5), name="e") is expr and expr.name == "e"
    from_callable = utils.create_param(lambda shape: pt.zeros(shape), (2, 3))
    assert from_callable.ndim == 2


def test_create_param_errors_are_lasagnes():
    with pytest.raises(ValueError, match=r"Cannot create param with a non-positive shape "
                                         r"dimension. Tried to create param with "
                                         r"shape=\(0, 3\), name='w'"):
        utils.create_param(init.Constant(), (0, 3), name="w")
    with pytest.raises(ValueError, match=r"cannot initialize parameter w: the provided numpy "
                                         r"array has shape \(2,\), should be \(3,\)"):
        utils.create_param(np.zeros(2), (3,), name="w")
    with pytest.raises(ValueError, match=r"cannot initialize parameter w: the numpy array "
                                         r"returned by the provided callable has shape"):
        utils.create_param(lambda shape: np.zeros(2), (3,), name="w")
    with pytest.raises(ValueError, match=r"cannot initialize parameter None: the provided "
                                         r"Theano variable has 2 dimensions, should be 1"):
        utils.create_param(pt.matrix(), (3,))
    with pytest.raises(TypeError, match=r"cannot initialize parameter w: the provided spec is "
                                        r"not a numpy array, a Theano expression, or a "
                                        r"callable"):
        utils.create_param("zeros", (3,), name="w")
    with pytest.raises(TypeError, match=r"the value returned by the provided callable is not "
                                        r"a numpy array or a Theano expression"):
        utils.create_param(lambda shape: "zeros", (3,), name="w")


# ---------------------------------------------------------------- small utils
def test_as_tuple():
    assert utils.as_tuple(3, 2) == (3, 3)
    assert utils.as_tuple([1, 2], 2, int) == (1, 2)
    assert utils.as_tuple(np.int64(2), 2, utils.int_types) == (2, 2)
    with pytest.raises(TypeError, match="expected a single value or an iterable of int, "
                                        "got 1.5 instead"):
        utils.as_tuple(1.5, 2, int)
    with pytest.raises(TypeError, match="of int, got"):
        utils.as_tuple(1.5, 2, utils.int_types)
    with pytest.raises(TypeError, match="of int or str, got"):
        utils.as_tuple(1.5, 2, (int, str))
    with pytest.raises(ValueError, match=r"expected a single value or an iterable with length "
                                         r"3, got \(1, 2\) instead"):
        utils.as_tuple((1, 2), 3)


def test_as_theano_expression():
    assert utils.as_pytensor_expression is utils.as_theano_expression
    v = pt.vector()
    assert utils.as_theano_expression(v) is v
    c = utils.as_theano_expression(np.arange(3))
    assert isinstance(c, pt.TensorConstant) and np.all(c.data == np.arange(3))
    with pytest.raises(TypeError, match="is not a Theano expression and cannot be wrapped as "
                                        "a Theano constant"):
        utils.as_theano_expression(object())


def test_inspect_kwargs_int_types_shared_empty_compute_norms():
    def f(a, b, c=1, d=None, *args, e=3, **kwargs):
        pass
    assert utils.inspect_kwargs(f) == ["c", "d"]
    assert utils.inspect_kwargs(lambda x: x) == []
    assert isinstance(np.int8(1), utils.int_types) and not isinstance(1.0, utils.int_types)
    e = utils.shared_empty(3)
    assert e.get_value().shape == (1, 1, 1) and e.dtype == pytensor.config.floatX
    assert utils.shared_empty(dtype="int32").dtype == "int32"
    arr = np.array([[3.0, -1.0], [4.0, 0.0]])
    np.testing.assert_allclose(utils.compute_norms(arr), [5.0, 1.0])
    np.testing.assert_allclose(utils.compute_norms(np.array([-2.0, 1.0])), [2.0, 1.0])
    np.testing.assert_allclose(utils.compute_norms(pt.as_tensor(arr)).eval(), [5.0, 1.0])
    with pytest.raises(RuntimeError, match="Unsupported type"):
        utils.compute_norms([1.0, 2.0])
    with pytest.raises(ValueError, match="Unsupported tensor dimensionality 6"):
        utils.compute_norms(np.zeros((1,) * 6))


def test_get_output_warns_only_for_unaccepted_kwargs():
    l_in = L.InputLayer((None, 3))
    layer = L.DropoutLayer(L.DenseLayer(l_in, 2), p=0.5)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        L.get_output(layer, deterministic=True)
    with pytest.warns(UserWarning, match="perhaps you meant deterministic"):
        L.get_output(layer, determinstic=True)
    bn = L.BatchNormLayer(l_in)  # its get_output_for's optional arguments are accepted
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        L.get_output(bn, batch_norm_use_averages=True, batch_norm_update_averages=False)


def test_layer_messages_are_lasagnes():
    with pytest.raises(ValueError, match=r"Cannot create Layer with a non-positive input_shape "
                                         r"dimension. input_shape=\(0, 3\), self.name='x'"):
        L.DenseLayer((0, 3), 2, name="x")
    with pytest.raises(ValueError, match=r"Cannot create InputLayer with a non-positive shape "
                                         r"dimension. shape=\(None, 0\), self.name=None"):
        L.InputLayer((None, 0))
    with pytest.raises(ValueError, match="shape has 2 dimensions, but variable has 3"):
        L.InputLayer((None, 3), input_var=pt.tensor3())
    bad = L.ExpressionLayer(L.InputLayer((2, 3)), lambda x: x,
                            output_shape=lambda shape: (pt.scalar(), 3))
    with pytest.raises(ValueError, match="returned a symbolic output shape from its "
                                         "get_output_shape_for\\(\\) method"):
        bad.output_shape
    assert lasres.utils.unique([3, 1, 3, 2, 1]) == [3, 1, 2]
