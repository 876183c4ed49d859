"""lasres.layers.recurrent (Lasagne's recurrent layers) against float64
NumPy loops written here from the layers' documented equations: outputs for
every option (scan and unrolled, backwards, masks, precomputed input,
only_return_final, peepholes, initial states as layers), gradients against
central differences of the NumPy loop, parameter order and names, errors."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres  # noqa: F401
from lasres import nonlinearities
from lasres import layers as L

B, T, F, U = 3, 4, 5, 4


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rand(rng, *shape, scale=0.5):
    return rng.uniform(-scale, scale, size=shape)


def _loop(x, mask, backwards, only_final, state0, cell):
    """Run ``cell(x_t, state) -> state`` (state a tuple, hidden state last)
    over time as the layers document it; masked steps keep the state."""
    steps = range(x.shape[1])
    if backwards:
        steps = reversed(steps)
    state = state0
    out = np.zeros((x.shape[0], x.shape[1], state0[-1].shape[1]))
    for t in steps:
        new = cell(x[:, t], state)
        if mask is not None:
            m = mask[:, t][:, None]
            new = tuple(m * n + (1 - m) * s for n, s in zip(new, state))
        state = new
        out[:, t] = state[-1]
    return state[-1] if only_final else out


def np_lstm(x, p, mask=None, backwards=False, only_final=False, peepholes=True):
    def cell(xt, state):
        c, h = state
        i = xt @ p["Wxi"] + h @ p["Whi"] + p["bi"]
        f = xt @ p["Wxf"] + h @ p["Whf"] + p["bf"]
        g = np.tanh(xt @ p["Wxc"] + h @ p["Whc"] + p["bc"])
        o = xt @ p["Wxo"] + h @ p["Who"] + p["bo"]
        if peepholes:
            i = i + c * p["wci"]
            f = f + c * p["wcf"]
        c = _sig(f) * c + _sig(i) * g
        if peepholes:
            o = o + c * p["wco"]
        return c, _sig(o) * np.tanh(c)
    n = x.shape[0]
    return _loop(x, mask, backwards, only_final,
                 (np.broadcast_to(p["c0"], (n, U)), np.broadcast_to(p["h0"], (n, U))), cell)


def np_gru(x, p, mask=None, backwards=False, only_final=False):
    def cell(xt, state):
        h, = state
        r = _sig(xt @ p["Wxr"] + p["br"] + h @ p["Whr"])
        u = _sig(xt @ p["Wxu"] + p["bu"] + h @ p["Whu"])
        c = np.tanh(xt @ p["Wxc"] + p["bc"] + r * (h @ p["Whc"]))
        return ((1 - u) * h + u * c,)
    return _loop(x, mask, backwards, only_final, (np.broadcast_to(p["h0"], (len(x), U)),), cell)


def np_rnn(x, p, mask=None, backwards=False, only_final=False):
    def cell(xt, state):
        h, = state
        return (np.tanh(xt @ p["W_in"] + p["b"] + h @ p["W_hid"]),)
    return _loop(x, mask, backwards, only_final, (np.broadcast_to(p["h0"], (len(x), U)),), cell)


NAMES = {  # layer parameter name -> key of the NumPy parameters
    "lstm": dict(W_in_to_ingate="Wxi", W_hid_to_ingate="Whi", b_ingate="bi",
                 W_in_to_forgetgate="Wxf", W_hid_to_forgetgate="Whf", b_forgetgate="bf",
                 W_in_to_cell="Wxc", W_hid_to_cell="Whc", b_cell="bc",
                 W_in_to_outgate="Wxo", W_hid_to_outgate="Who", b_outgate="bo",
                 W_cell_to_ingate="wci", W_cell_to_forgetgate="wcf", W_cell_to_outgate="wco",
                 cell_init="c0", hid_init="h0"),
    "gru": dict(W_in_to_resetgate="Wxr", W_hid_to_resetgate="Whr", b_resetgate="br",
                W_in_to_updategate="Wxu", W_hid_to_updategate="Whu", b_updategate="bu",
                W_in_to_hidden_update="Wxc", W_hid_to_hidden_update="Whc",
                b_hidden_update="bc", hid_init="h0"),
    "rnn": {"input_to_hidden.W": "W_in", "hidden_to_hidden.W": "W_hid",
            "input_to_hidden.b": "b", "hid_init": "h0"},
}


def _lstm_params(rng):
    p = {k: _rand(rng, F, U) for k in ("Wxi", "Wxf", "Wxc", "Wxo")}
    p.update({k: _rand(rng, U, U) for k in ("Whi", "Whf", "Whc", "Who")})
    p.update({k: _rand(rng, U) for k in ("bi", "bf", "bc", "bo", "wci", "wcf", "wco")})
    p["c0"], p["h0"] = _rand(rng, 1, U), _rand(rng, 1, U)
    return p


def _gru_params(rng):
    p = {k: _rand(rng, F, U) for k in ("Wxr", "Wxu", "Wxc")}
    p.update({k: _rand(rng, U, U) for k in ("Whr", "Whu", "Whc")})
    p.update({k: _rand(rng, U) for k in ("br", "bu", "bc")})
    p["h0"] = _rand(rng, 1, U)
    return p


def _rnn_params(rng):
    return dict(W_in=_rand(rng, F, U), W_hid=_rand(rng, U, U), b=_rand(rng, U),
                h0=_rand(rng, 1, U))


def _inputs(use_mask, seq_len=T):
    x = pt.tensor3("x", dtype="float64")
    l_in = L.InputLayer((B, seq_len, F), input_var=x)
    m = pt.matrix("m", dtype="float64")
    l_mask = L.InputLayer((B, seq_len), input_var=m) if use_mask else None
    return x, m, l_in, l_mask


def _data(rng, use_mask, seq_len=T):
    xv = rng.standard_normal((B, seq_len, F))
    mv = np.ones((B, seq_len))
    mv[1, -2:] = 0  # a shorter sequence
    mv[2, -1:] = 0
    return xv, (mv if use_mask else None)


def _make_lstm(p, l_in, l_mask, **kw):
    peep = kw.pop("peepholes", True)
    def gate(w, h, b, c=None, nl=nonlinearities.sigmoid):
        return L.Gate(W_in=p[w], W_hid=p[h], b=p[b], W_cell=None if c is None else p[c],
                      nonlinearity=nl)
    return L.LSTMLayer(l_in, U, ingate=gate("Wxi", "Whi", "bi", "wci"),
                       forgetgate=gate("Wxf", "Whf", "bf", "wcf"),
                       cell=gate("Wxc", "Whc", "bc", nl=nonlinearities.tanh),
                       outgate=gate("Wxo", "Who", "bo", "wco"),
                       cell_init=p["c0"], hid_init=p["h0"], peepholes=peep,
                       mask_input=l_mask, **kw)


def _make_gru(p, l_in, l_mask, **kw):
    return L.GRULayer(l_in, U,
                      resetgate=L.Gate(W_in=p["Wxr"], W_hid=p["Whr"], b=p["br"], W_cell=None),
                      updategate=L.Gate(W_in=p["Wxu"], W_hid=p["Whu"], b=p["bu"], W_cell=None),
                      hidden_update=L.Gate(W_in=p["Wxc"], W_hid=p["Whc"], b=p["bc"],
                                           W_cell=None, nonlinearity=nonlinearities.tanh),
                      hid_init=p["h0"], mask_input=l_mask, **kw)


def _make_rnn(p, l_in, l_mask, **kw):
    return L.RecurrentLayer(l_in, U, W_in_to_hid=p["W_in"], W_hid_to_hid=p["W_hid"], b=p["b"],
                            nonlinearity=nonlinearities.tanh, hid_init=p["h0"],
                            mask_input=l_mask, **kw)


KINDS = {"lstm": (_lstm_params, _make_lstm, np_lstm),
         "gru": (_gru_params, _make_gru, np_gru),
         "rnn": (_rnn_params, _make_rnn, np_rnn)}

OPTIONS = [
    dict(),
    dict(backwards=True),
    dict(mask=True),
    dict(mask=True, backwards=True, only_return_final=True),
    dict(unroll_scan=True, backwards=True, mask=True),
    dict(precompute_input=False, mask=True),
    dict(only_return_final=True, unroll_scan=True),
]


def _run(kind, opts, seed=0):
    rng = np.random.RandomState(seed)
    make_params, make_layer, reference = KINDS[kind]
    opts = dict(opts)
    use_mask = opts.pop("mask", False)
    p = make_params(rng)
    x, m, l_in, l_mask = _inputs(use_mask)
    layer = make_layer(p, l_in, l_mask, **opts)
    xv, mv = _data(rng, use_mask)
    ins = [x, m] if use_mask else [x]
    vals = [xv, mv] if use_mask else [xv]
    out = L.get_output(layer)
    got = pytensor.function(ins, out)(*vals)
    ref_kw = dict(mask=mv, backwards=opts.get("backwards", False),
                  only_final=opts.get("only_return_final", False))
    if kind == "lstm":
        ref_kw["peepholes"] = opts.get("peepholes", True)
    return layer, got, reference(xv, p, **ref_kw)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(sorted(o)) or "default")
def test_outputs_match_numpy_loop(kind, opts):
    layer, got, ref = _run(kind, opts)
    assert got.shape == ref.shape
    expected_shape = (B, U) if opts.get("only_return_final") else (B, T, U)
    assert layer.output_shape == expected_shape == got.shape
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_lstm_without_peepholes():
    layer, got, ref = _run("lstm", dict(peepholes=False, backwards=True))
    assert not any("W_cell" in p.name for p in layer.get_params())
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def _numeric_grad(fun, arr, idx, eps=1e-6):
    old = arr[idx]
    arr[idx] = old + eps
    up = fun()
    arr[idx] = old - eps
    down = fun()
    arr[idx] = old
    return (up - down) / (2 * eps)


@pytest.mark.parametrize("kind,opts", [
    ("lstm", dict(mask=True)),
    ("lstm", dict(unroll_scan=True, backwards=True, precompute_input=False)),
    ("gru", dict(mask=True, backwards=True)),
    ("rnn", dict(only_return_final=True)),
])
def test_gradients_match_numpy_central_differences(kind, opts):
    rng = np.random.RandomState(1)
    make_params, make_layer, reference = KINDS[kind]
    opts = dict(opts)
    use_mask = opts.pop("mask", False)
    p = make_params(rng)
    x, m, l_in, l_mask = _inputs(use_mask)
    layer = make_layer(p, l_in, l_mask, learn_init=True, **opts)
    xv, mv = _data(rng, use_mask)
    out = L.get_output(layer)
    weights = rng.standard_normal(layer.output_shape)
    loss = (out * weights).sum()
    params = layer.get_params(trainable=True)
    assert len(params) == len(p)  # learn_init makes the initial states trainable
    ins = [x, m] if use_mask else [x]
    vals = [xv, mv] if use_mask else [xv]
    grads = pytensor.function(ins, pytensor.grad(loss, params + [x]))(*vals)
    ref_kw = dict(mask=mv, backwards=opts.get("backwards", False),
                  only_final=opts.get("only_return_final", False))

    def np_loss():
        return (reference(xv, p, **ref_kw) * weights).sum()
    for param, g in zip(params, grads[:-1]):
        key = NAMES[kind][param.name]
        for idx in [tuple(rng.randint(s) for s in p[key].shape) for _ in range(2)]:
            num = _numeric_grad(np_loss, p[key], idx)
            assert abs(g[idx] - num) <= 1e-6 * max(1.0, abs(num)), (key, idx, g[idx], num)
    gx = grads[-1]
    for idx in [(0, 0, 1), (1, T - 1, 2), (2, 1, 0)]:
        num = _numeric_grad(np_loss, xv, idx)
        assert abs(gx[idx] - num) <= 1e-6 * max(1.0, abs(num)), (idx, gx[idx], num)


def test_verify_grad_through_scan():
    rng = np.random.RandomState(2)
    p = _gru_params(rng)

    def fn(xin):
        l_in = L.InputLayer((B, T, F), input_var=xin)
        return L.get_output(_make_gru(p, l_in, None, backwards=True))
    pytensor.gradient.verify_grad(fn, [rng.standard_normal((B, T, F))], rng=rng)


def test_gradient_steps_truncate_backpropagation():
    rng = np.random.RandomState(3)
    p = _rnn_params(rng)
    x, _, l_in, _ = _inputs(False)
    layer = _make_rnn(p, l_in, None, gradient_steps=1, only_return_final=True)
    g = pytensor.function([x], pytensor.grad(L.get_output(layer).sum(), x))(
        rng.standard_normal((B, T, F)))
    assert np.all(g[:, :T - 1] == 0)
    assert np.all(g[:, T - 1] != 0)


def test_grad_clipping_clips_the_recurrent_gradient():
    # one step of a linear recurrent layer: h = x W + h0 W_hid + b, and a
    # loss of 1000·sum(h): the gradient reaching h's pre-activation is 1000,
    # clipped to 0.5, so d loss / d x = 0.5 · sum of W's columns.
    rng = np.random.RandomState(4)
    p = _rnn_params(rng)
    x, _, l_in, _ = _inputs(False, seq_len=1)
    for clip, scale in [(0, 1000.0), (0.5, 0.5)]:
        layer = L.RecurrentLayer(l_in, U, W_in_to_hid=p["W_in"], W_hid_to_hid=p["W_hid"],
                                 b=p["b"], nonlinearity=None, grad_clipping=clip,
                                 hid_init=np.zeros((1, U)))
        out = L.get_output(layer)
        xv = rng.standard_normal((B, 1, F))
        f = pytensor.function([x], [out, pytensor.grad(1000 * out.sum(), x)])
        o, g = f(xv)
        np.testing.assert_allclose(o[:, 0], xv[:, 0] @ p["W_in"] + p["b"], rtol=1e-12)
        np.testing.assert_allclose(g[:, 0], np.tile(scale * p["W_in"].sum(1), (B, 1)),
                                   rtol=1e-12)


def test_parameter_order_and_names_are_lasagnes():
    l_in = L.InputLayer((None, None, F))
    lstm = L.LSTMLayer(l_in, U, name="lstm")
    gates = ["ingate", "forgetgate", "cell", "outgate"]
    expected = [f"lstm.{w}_to_{g}" if w != "b" else f"lstm.b_{g}"
                for g in gates for w in ("W_in", "W_hid", "b")]
    expected += [f"lstm.W_cell_to_{g}" for g in ("ingate", "forgetgate", "outgate")]
    expected += ["lstm.cell_init", "lstm.hid_init"]
    assert [q.name for q in lstm.get_params()] == expected
    assert [q.name for q in lstm.get_params(trainable=True)] == expected[:-2]
    assert [q.name for q in lstm.get_params(regularizable=True)] == [
        e for e in expected[:-2] if ".b_" not in e]
    gru = L.GRULayer(l_in, U)
    assert [q.name for q in gru.get_params()] == [
        f"{w}_{g}" if w == "b" else f"{w}_to_{g}"
        for g in ("updategate", "resetgate", "hidden_update")
        for w in ("W_in", "W_hid", "b")] + ["hid_init"]
    rnn = L.RecurrentLayer(l_in, U, name="r")
    assert [q.name for q in rnn.get_params()] == [
        "r.hid_init", "r.input_to_hidden.W", "r.input_to_hidden.b", "r.hidden_to_hidden.W"]
    assert rnn.W_in_to_hid is rnn.get_params()[1] and rnn.b is rnn.get_params()[2]
    learned = L.LSTMLayer(l_in, U, learn_init=True)
    assert [q.name for q in learned.get_params(trainable=True)][-2:] == ["cell_init", "hid_init"]
    # Lasagne's defaults: Normal(0.1) gates, zero biases and initial states
    assert lstm.b_ingate.get_value().max() == 0 and lstm.hid_init.get_value().max() == 0
    assert 0.05 < lstm.W_in_to_cell.get_value().std() < 0.15
    assert L.count_params(lstm) == 4 * (F * U + U * U + U) + 3 * U + 2 * U


def test_initial_states_as_layers():
    rng = np.random.RandomState(5)
    p = _lstm_params(rng)
    x, _, l_in, _ = _inputs(False)
    h0, c0 = pt.matrix("h0", dtype="float64"), pt.matrix("c0", dtype="float64")
    l_h0 = L.InputLayer((B, U), input_var=h0)
    l_c0 = L.InputLayer((B, U), input_var=c0)
    layer = _make_lstm(dict(p, h0=l_h0, c0=l_c0), l_in, None)
    assert layer.input_layers == [l_in, l_h0, l_c0]
    assert layer.hid_init is l_h0 and layer.cell_init is l_c0
    assert not any(q.name in ("hid_init", "cell_init") for q in layer.get_params())
    xv = rng.standard_normal((B, T, F))
    hv, cv = rng.standard_normal((B, U)), rng.standard_normal((B, U))
    got = pytensor.function([x, h0, c0], L.get_output(layer))(xv, hv, cv)
    np.testing.assert_allclose(got, np_lstm(xv, dict(p, h0=hv, c0=cv)), rtol=1e-10, atol=1e-12)
    pg = _gru_params(rng)
    gh0 = pt.matrix("gh0", dtype="float64")
    gru = _make_gru(dict(pg, h0=L.InputLayer((B, U), input_var=gh0)), l_in, None,
                    backwards=True)
    got = pytensor.function([x, gh0], L.get_output(gru))(xv, hv)
    np.testing.assert_allclose(got, np_gru(xv, dict(pg, h0=hv), backwards=True),
                               rtol=1e-10, atol=1e-12)


def test_custom_recurrent_layer_equals_recurrent_layer_and_supports_conv():
    rng = np.random.RandomState(7)
    p = _rnn_params(rng)
    x, _, l_in, _ = _inputs(False)
    i2h = L.DenseLayer(L.InputLayer((None, F)), U, W=p["W_in"], b=p["b"], nonlinearity=None)
    h2h = L.DenseLayer(L.InputLayer((None, U)), U, W=p["W_hid"], b=None, nonlinearity=None)
    layer = L.CustomRecurrentLayer(l_in, i2h, h2h, nonlinearity=nonlinearities.tanh,
                                   hid_init=p["h0"], backwards=True)
    assert layer.get_params() == [layer.hid_init, i2h.W, i2h.b, h2h.W]
    xv = rng.standard_normal((B, T, F))
    got = pytensor.function([x], L.get_output(layer))(xv)
    np.testing.assert_allclose(got, np_rnn(xv, p, backwards=True), rtol=1e-10, atol=1e-12)
    # convolutional recurrence: 5D input (batch, time, channels, rows, cols)
    l_in5 = L.InputLayer((2, 3, 2, 5, 5))
    i2h = L.Conv2DLayer(L.InputLayer((None, 2, 5, 5)), 3, 3, pad="same")
    h2h = L.Conv2DLayer(L.InputLayer((None, 3, 5, 5)), 3, 3, pad="same")
    conv_rnn = L.CustomRecurrentLayer(l_in5, i2h, h2h)
    assert conv_rnn.output_shape == (2, 3, 3, 5, 5)
    assert conv_rnn.hid_init.get_value().shape == (1, 3, 5, 5)
    out = pytensor.function([l_in5.input_var], L.get_output(conv_rnn))(
        np.ones((2, 3, 2, 5, 5), "float32"))
    assert out.shape == (2, 3, 3, 5, 5) and np.all(np.isfinite(out))


def test_variable_batch_and_sequence_length():
    l_in = L.InputLayer((None, None, F))
    layer = L.LSTMLayer(l_in, U)
    assert layer.output_shape == (None, None, U)
    f = pytensor.function([l_in.input_var], L.get_output(layer))
    assert f(np.zeros((2, 7, F), "float32")).shape == (2, 7, U)
    assert f(np.zeros((1, 2, F), "float32")).shape == (1, 2, U)


def test_errors_are_lasagnes():
    l_in = L.InputLayer((2, None, F))
    with pytest.raises(ValueError, match="Input sequence length cannot be specified as None"):
        L.LSTMLayer(l_in, U, unroll_scan=True)
    with pytest.raises(ValueError, match="Gradient steps must be -1 when unroll_scan is true"):
        L.GRULayer(L.InputLayer((2, 3, F)), U, unroll_scan=True, gradient_steps=2)
    i2h = L.DenseLayer(L.InputLayer((None, F)), U)
    h2h = L.DenseLayer(L.InputLayer((None, U + 1)), U + 1)
    with pytest.raises(ValueError, match="must be equal after the first dimension"):
        L.CustomRecurrentLayer(l_in, i2h, h2h)
    two_inputs = L.ElemwiseSumLayer([L.InputLayer((None, F)), L.InputLayer((None, F))])
    with pytest.raises(ValueError, match="must have exactly one InputLayer, but it has 2"):
        L.CustomRecurrentLayer(l_in, L.DenseLayer(two_inputs, U),
                               L.DenseLayer(L.InputLayer((None, U)), U))
    with pytest.raises(ValueError, match="When precompute_input == True"):
        L.CustomRecurrentLayer(L.InputLayer((2, 3, F)), L.DenseLayer(L.InputLayer((5, F)), U),
                               L.DenseLayer(L.InputLayer((None, U)), U))


def test_reshape_recipe_from_lasagnes_docs():
    """The module docstring's example: recurrent and dense layers mixed
    through reshapes, with variable batch size and sequence length."""
    l_inp = L.InputLayer((None, None, F))
    batchsize, seqlen, _ = l_inp.input_var.shape
    l_lstm = L.LSTMLayer(l_inp, num_units=U)
    l_shp = L.ReshapeLayer(l_lstm, (-1, U))
    l_dense = L.DenseLayer(l_shp, num_units=2)
    l_out = L.ReshapeLayer(l_dense, (batchsize, seqlen, 2))
    out = pytensor.function([l_inp.input_var], L.get_output(l_out))(
        np.zeros((3, 6, F), "float32"))
    assert out.shape == (3, 6, 2)


def test_unroll_scan_matches_scan_semantics():
    from lasres.utils import unroll_scan
    x = pt.matrix("x", dtype="float64")
    h0 = pt.vector("h0", dtype="float64")
    w = pt.scalar("w", dtype="float64")

    s0 = pt.scalar("s0", dtype="float64")

    def fn(xt, h, s, w_):
        return [h * w_ + xt, s + h.sum()]
    outs_scan = pytensor.scan(fn, sequences=x, outputs_info=[h0, s0], non_sequences=[w],
                              go_backwards=True, return_updates=False)
    outs_unroll = unroll_scan(fn, x, [h0, s0], [w], n_steps=4, go_backwards=True)
    assert isinstance(outs_unroll, list) and len(outs_unroll) == 2
    f = pytensor.function([x, h0, s0, w], list(outs_scan) + outs_unroll)
    xv = np.arange(12.0).reshape(4, 3)
    a, b, c, d = f(xv, np.ones(3), 0.0, 0.5)
    np.testing.assert_allclose(a, c)
    np.testing.assert_allclose(b, d)
    h, ref = np.ones(3), []
    for t in reversed(range(4)):
        h = h * 0.5 + xv[t]
        ref.append(h)
    np.testing.assert_allclose(c, np.array(ref))


def test_jax_backend_matches_c_backend_with_static_input_shapes():
    """On the JAX backend scan needs concrete shapes: give the InputLayer a
    variable of static shape; outputs and gradients then match the C
    backend's."""
    pytest.importorskip("jax")
    from lasres.config import get_mode
    xv = pt.tensor("x", dtype="float32", shape=(B, T, F))
    mv = pt.tensor("m", dtype="float32", shape=(B, T))
    layer = L.LSTMLayer(L.InputLayer((B, T, F), input_var=xv), U, grad_clipping=1.0,
                        mask_input=L.InputLayer((B, T), input_var=mv), backwards=True)
    out = L.get_output(layer)
    outs = [out] + pytensor.grad((out ** 2).sum(), layer.get_params(trainable=True)[:3])
    rng = np.random.RandomState(8)
    vals = [rng.standard_normal((B, T, F)).astype("float32"), np.ones((B, T), "float32")]
    vals[1][0, -2:] = 0
    c = pytensor.function([xv, mv], outs, mode=get_mode("c"))(*vals)
    j = pytensor.function([xv, mv], outs, mode=get_mode("jax"))(*vals)
    for a, b in zip(c, j):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
