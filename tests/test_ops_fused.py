"""The graph-compacting ops: gradients checked numerically and values
compared with the stock-op formulas they replace."""

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import verify_grad

from lasres.ops.elemwise import relu
from lasres.ops.fused import attach, fused_elemwise, sum_of_squares

RNG = np.random.default_rng(7)


def test_relu_matches_theano_formula_and_its_gradient():
    x = pt.fvector("x")
    w = pt.fvector("w")
    ours = relu(x)
    theano_relu = 0.5 * (x + abs(x))
    f = pytensor.function([x, w], [ours, theano_relu, pytensor.grad((ours * w).sum(), x),
                                   pytensor.grad((theano_relu * w).sum(), x)])
    xv = np.array([-2.5, -0.0, 0.0, 1e-30, -1e-30, 3.25, 7.0], "float32")
    wv = RNG.normal(size=7).astype("float32")
    a, b, ga, gb = f(xv, wv)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ga, gb)
    np.testing.assert_array_equal(ga[[1, 2]], 0.5 * wv[[1, 2]])  # gradient 0.5 at exactly 0


def test_relu_verify_grad_and_jax():
    xv = RNG.normal(size=(3, 4)) + 0.1  # away from the kink
    verify_grad(lambda x: relu(x) * 1.5, [xv], rng=RNG)
    jax = pytest.importorskip("jax")  # noqa: F841
    x = pt.matrix("x")
    outs = [relu(x), pytensor.grad((relu(x) ** 2).sum(), x)]
    xv32 = np.array([[-1, 0, 2.5], [0.5, -0.0, 3]], "float32")
    for a, b in zip(pytensor.function([x], outs, mode="JAX")(xv32),
                    pytensor.function([x], outs)(xv32)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6)


def test_sum_of_squares():
    xv = RNG.normal(size=(4, 3, 2))
    verify_grad(sum_of_squares, [xv], rng=RNG)
    x = pt.ftensor3("x")
    f = pytensor.function([x], [sum_of_squares(x), pytensor.grad(3 * sum_of_squares(x), x)])
    v, g = f(xv.astype("float32"))
    assert v.dtype == np.float32
    np.testing.assert_allclose(v, (xv.astype("float32").astype("float64") ** 2).sum(), rtol=1e-6)
    np.testing.assert_allclose(g, 6 * xv.astype("float32"), rtol=1e-6)


def test_attach_passes_gradient_and_collects_default_updates():
    s = pytensor.shared(np.float32(1.0))
    c = s.clone()
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        c.default_update = c + 1
    x = pt.fvector("x")
    y = attach(x * 2, c)
    f = pytensor.function([x], [y, pytensor.grad(y.sum(), x)])
    out, g = f(np.ones(3, "float32"))
    np.testing.assert_array_equal(out, [2, 2, 2])
    np.testing.assert_array_equal(g, [2, 2, 2])
    assert s.get_value() == 2.0  # the clone's default update reached the shared storage


def test_fused_elemwise_keeps_float32_and_broadcasts():
    a = pt.fmatrix("a")
    b = pt.fvector("b")
    out = fused_elemwise(lambda x, y, k: k * x + y, a, b, 0.1)
    assert out.dtype == "float32"
    f = pytensor.function([a, b], out)
    av = RNG.normal(size=(2, 3)).astype("float32")
    bv = RNG.normal(size=3).astype("float32")
    np.testing.assert_allclose(f(av, bv), np.float32(0.1) * av + bv, rtol=1e-6)


def test_fused_nesterov_equals_lasagne_composition():
    """nesterov_momentum (fused) == apply_nesterov_momentum(sgd(...)) (Lasagne's
    composition, stock ops) over several steps."""
    from lasres import updates
    w0 = RNG.normal(size=(5, 4)).astype("float32")
    x = pt.fmatrix("x")

    def run(make):
        w = pytensor.shared(w0.copy())
        loss = ((pt.dot(x, w) - 1) ** 2).sum()
        f = pytensor.function([x], loss, updates=make(loss, [w]))
        xv = np.random.default_rng(1).normal(size=(3, 5)).astype("float32")
        return [f(xv) for _ in range(5)], w.get_value()

    l1, w1 = run(lambda loss, p: updates.nesterov_momentum(loss, p, 0.01, 0.9))
    l2, w2 = run(lambda loss, p: updates.apply_nesterov_momentum(
        updates.sgd(loss, p, 0.01), momentum=0.9))
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-6)


def test_nesterov_updates_a_filter_in_one_flat_loop():
    """A 4-d filter's update is one elementwise loop over the flat values (a
    4-d loop with a broadcast learning rate ran at half the speed), the same
    bits as the rule applied to the 4-d arrays."""
    from lasres import updates
    from lasres.ops.fused import fused_elemwise
    from pytensor.tensor.elemwise import Elemwise

    rng = np.random.default_rng(5)
    w0 = rng.normal(size=(8, 4, 3, 3)).astype("float32")
    g0 = rng.normal(size=w0.shape).astype("float32")
    lr = pytensor.shared(np.float32(0.1))
    w = pytensor.shared(w0.copy())
    g = pt.ftensor4("g")
    upd = updates.nesterov_momentum([g], [w], lr, 0.9)
    f = pytensor.function([g], [], updates=upd)
    loops = [n for n in f.maker.fgraph.apply_nodes if isinstance(n.op, Elemwise)
             and n.outputs[0].ndim > 0]
    assert loops and all(n.outputs[0].ndim == 1 for n in loops), loops
    v = [k for k in upd if k is not w][0]
    # the rule on the 4-d arrays, as before
    w4, v4 = pytensor.shared(w0.copy()), pytensor.shared(np.zeros_like(w0))
    nv, nw = fused_elemwise(lambda p, g_, v_, r, m: (m * v_ - r * g_, m * (m * v_ - r * g_) + (p - r * g_)),
                            w4, g, v4, pt.shape_padleft(lr, 4), 0.9)
    f4 = pytensor.function([g], [], updates={w4: nw, v4: nv})
    for step in range(3):
        f(g0 * (step + 1))
        f4(g0 * (step + 1))
        np.testing.assert_array_equal(w.get_value(), w4.get_value())
        np.testing.assert_array_equal(v.get_value(), v4.get_value())


def test_sum_of_squares_of_many_tensors_is_one_node():
    xs = [RNG.normal(size=(3, 4)), RNG.normal(size=5), RNG.normal(size=(2, 2, 2))]
    verify_grad(lambda *v: sum_of_squares(*v) * 0.5, xs, rng=RNG)
    vs = [pt.dmatrix(), pt.dvector(), pt.dtensor3()]
    total = sum_of_squares(*vs)
    assert total.owner.op is sum_of_squares and total.owner.inputs == vs
    f = pytensor.function(vs, [total] + pytensor.grad(2 * total, vs))
    got = f(*xs)
    # float64: exactly the per-tensor sums added in order, as sum(...) does
    assert got[0] == sum(float(np.sum(x ** 2)) for x in xs)
    for g, x in zip(got[1:], xs):
        np.testing.assert_allclose(g, 4 * x, rtol=1e-15)
    with pytest.raises(TypeError):
        sum_of_squares()


def test_l2_penalty_of_a_list_is_one_node():
    from lasres.regularization import apply_penalty, l1, l2
    ps = [pt.dmatrix(), pt.dvector(), pt.dtensor4()]
    pen = apply_penalty(ps, l2)
    assert pen.owner.op is sum_of_squares and pen.owner.inputs == ps
    vals = [RNG.normal(size=(2, 3)), RNG.normal(size=4), RNG.normal(size=(1, 2, 2, 2))]
    expected = sum(float(np.sum(v ** 2)) for v in vals)
    assert pytensor.function(ps, pen)(*vals) == expected
    # other penalties keep Lasagne's sum of per-tensor terms
    np.testing.assert_allclose(pytensor.function(ps, apply_penalty(ps, l1))(*vals),
                               sum(np.abs(v).sum() for v in vals), rtol=1e-14)


_SSQ_SHAPES = [(16, 3, 3, 3), (16, 16, 3, 3), (64, 64, 3, 3), (10, 64), (64,), (7,), (130,),
               (8193,), (1,)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sum_of_squares_c_code_sums_as_numpy(dtype):
    # the C backend's code against NumPy's pairwise sum, bit for bit: in
    # float64 the output shows every bit of the sum; NumPy squares a
    # transposed or strided input into an array of its memory order and
    # sums that in memory order, and so must the C code
    from lasres.config import get_mode
    from lasres.ops.fused import SumOfSquares
    rng = np.random.RandomState(3)
    vs = [pt.tensor(dtype=dtype, shape=(None,) * len(s)) for s in _SSQ_SHAPES]
    calls = []
    perform = SumOfSquares.perform
    try:   # patched before the compile: a Python thunk binds perform then
        SumOfSquares.perform = lambda self, *a: calls.append(1) or perform(self, *a)
        f = pytensor.function(vs, sum_of_squares(*vs), mode=get_mode("c"))
        for trial in range(20):
            xs = [(rng.randn(*s) * rng.choice([1e-3, 1.0, 30.0])).astype(dtype)
                  for s in _SSQ_SHAPES]
            xs[1] = np.ascontiguousarray(xs[1].transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3)
            xs[3] = np.asfortranarray(xs[3])
            xs[7] = np.concatenate([xs[7], xs[7]])[::2]
            total = 0.0
            for x in xs:
                total += np.sum(np.square(x, dtype=np.float64))
            got = f(*xs)
            assert got.dtype == dtype
            assert got.tobytes() == np.asarray(total, dtype=dtype).tobytes(), trial
    finally:
        SumOfSquares.perform = perform
    assert calls == []   # the C code ran, not perform
