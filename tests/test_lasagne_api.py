"""Lasagne's init, objectives and update rules against NumPy formulas
written here from Lasagne's documented definitions."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres
from lasres import init, objectives, updates


def test_initializers_follow_their_formulas():
    lasres.random.set_rng(np.random.RandomState(0))
    try:
        w = init.HeNormal(gain="relu")((256, 64, 3, 3))
        assert w.dtype == np.float32
        assert abs(w.std() - np.sqrt(2.0 / (64 * 9))) < 0.01 * np.sqrt(2.0 / (64 * 9)) * 5
        d = init.HeNormal()((500, 300))  # dense: fan_in = shape[0]
        assert abs(d.std() - np.sqrt(1.0 / 500)) / np.sqrt(1.0 / 500) < 0.02
        g = init.GlorotUniform()((64, 32, 3, 3))
        bound = np.sqrt(3) * np.sqrt(2.0 / ((64 + 32) * 9))
        assert np.abs(g).max() <= bound and np.abs(g).max() > 0.95 * bound
        q = init.Orthogonal()((4, 5, 3)).reshape(4, -1)  # orthonormal rows
        np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-5)
        q = init.Orthogonal()((20, 4, 3)).reshape(20, -1)  # orthonormal columns
        np.testing.assert_allclose(q.T @ q, np.eye(12), atol=1e-5)
        np.testing.assert_array_equal(init.Constant(0.5)((2, 3)), np.full((2, 3), 0.5))
    finally:
        lasres.random.set_rng(np.random)


def test_objectives():
    p = pt.matrix("p")
    t = pt.ivector("t")
    t2 = pt.matrix("t2")
    pv = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], "float32")
    tv = np.array([0, 1], "int32")
    ce = pytensor.function([p, t], objectives.categorical_crossentropy(p, t))(pv, tv)
    np.testing.assert_allclose(ce, -np.log([0.7, 0.3]), rtol=1e-6)
    ce1h = pytensor.function([p, t2], objectives.categorical_crossentropy(p, t2))(
        pv, np.eye(3, dtype="float32")[tv])
    np.testing.assert_allclose(ce1h, -np.log([0.7, 0.3]), rtol=1e-6)
    acc = pytensor.function([p, t], objectives.categorical_accuracy(p, t))(pv, np.array([0, 1], "int32"))
    np.testing.assert_array_equal(acc, [1, 0])
    top2 = pytensor.function([p, t], objectives.categorical_accuracy(p, t, top_k=2))(pv, tv)
    np.testing.assert_array_equal(top2, [1, 1])
    a, b = pt.vector("a"), pt.vector("b")
    av, bv = np.array([0.2, 0.9], "float32"), np.array([0.0, 1.0], "float32")
    bce = pytensor.function([a, b], objectives.binary_crossentropy(a, b))(av, bv)
    np.testing.assert_allclose(bce, -np.log([0.8, 0.9]), rtol=1e-6)
    se = pytensor.function([a, b], objectives.squared_error(a, b))(av, bv)
    np.testing.assert_allclose(se, [0.04, 0.01], rtol=1e-5)
    loss = pt.vector("l")
    w = pt.vector("w")
    f = pytensor.function([loss, w], [objectives.aggregate(loss), objectives.aggregate(loss, w, "sum"),
                                      objectives.aggregate(loss, w, "normalized_sum")])
    m, s, n = f(np.array([1, 3], "float32"), np.array([1, 0.5], "float32"))
    assert (m, s, n) == (2.0, 2.5, pytest.approx(2.5 / 1.5))


def _run(rule, steps=3, **kw):
    w = pytensor.shared(np.array([1.0, -2.0, 3.0], "float32"))
    loss = (w ** 2).sum() + w.sum()
    f = pytensor.function([], loss, updates=rule(loss, [w], **kw))
    for _ in range(steps):
        f()
    return w.get_value()


def _numpy(rule, steps=3):
    w = np.array([1.0, -2.0, 3.0])
    state = {}
    for t in range(1, steps + 1):
        g = 2 * w + 1
        w = rule(w, g, t, state)
    return w


@pytest.mark.parametrize("name,kw,ref", [
    ("sgd", dict(learning_rate=0.1), lambda w, g, t, s: w - 0.1 * g),
    ("momentum", dict(learning_rate=0.1, momentum=0.9), lambda w, g, t, s: _mom(w, g, s)),
    ("nesterov_momentum", dict(learning_rate=0.1, momentum=0.9), lambda w, g, t, s: _nest(w, g, s)),
    ("adagrad", dict(learning_rate=0.1), lambda w, g, t, s: _adagrad(w, g, s)),
    ("rmsprop", dict(learning_rate=0.01), lambda w, g, t, s: _rms(w, g, s)),
    ("adam", dict(learning_rate=0.01), lambda w, g, t, s: _adam(w, g, t, s)),
])
def test_update_rules(name, kw, ref):
    np.testing.assert_allclose(_run(getattr(updates, name), **kw), _numpy(ref), rtol=2e-5, atol=1e-6)


def _mom(w, g, s):
    s["v"] = 0.9 * s.get("v", 0) - 0.1 * g
    return w + s["v"]


def _nest(w, g, s):
    s["v"] = 0.9 * s.get("v", 0) - 0.1 * g
    return w + 0.9 * s["v"] - 0.1 * g


def _adagrad(w, g, s):
    s["a"] = s.get("a", 0) + g ** 2
    return w - 0.1 * g / np.sqrt(s["a"] + 1e-6)


def _rms(w, g, s):
    s["a"] = 0.9 * s.get("a", 0) + 0.1 * g ** 2
    return w - 0.01 * g / np.sqrt(s["a"] + 1e-6)


def _adam(w, g, t, s):
    s["m"] = 0.9 * s.get("m", 0) + 0.1 * g
    s["v"] = 0.999 * s.get("v", 0) + 0.001 * g ** 2
    a = 0.01 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
    return w - a * s["m"] / (np.sqrt(s["v"]) + 1e-8)


def test_total_norm_constraint():
    a, b = pt.vector("a"), pt.vector("b")
    scaled, norm = updates.total_norm_constraint([a, b], max_norm=1.0, return_norm=True)
    out = pytensor.function([a, b], scaled + [norm])(np.array([3.0, 0], "float32"),
                                                     np.array([0, 4.0], "float32"))
    assert out[2] == pytest.approx(5.0)
    np.testing.assert_allclose(np.concatenate(out[:2]), [0.6, 0, 0, 0.8], rtol=1e-5)
