"""The port against the real Lasagne: networks built, randomised and run by
Lasagne 0.2.dev1 on Theano 1.0.5 (``../shared/fixtures/legacy``).

The networks are written here the way a Lasagne user wrote them (the seed's
``models.py``, with ``lasagne`` renamed to ``lasres``), independently of
``lasres.models``; ``test_models_legacy.py`` checks the library builders.
Tolerances come from each fixture's ``_tol.json`` and are never widened.
"""
import json

import numpy as np
import pytest
import pytensor
import pytensor.tensor as T

import lasres
from lasres.config import get_mode
from lasres.init import HeNormal
from lasres.layers import (BatchNormLayer, DenseLayer, ElemwiseSumLayer, GlobalPoolLayer,
                           InputLayer, NonlinearityLayer, batch_norm, get_all_layers,
                           get_all_params, get_output, set_all_param_values)
from lasres.layers.dnn import Conv2DDNNLayer as ConvLayer
from lasres.nonlinearities import rectify, softmax
from lasres.weights import load_pklz

FIXTURES = ["normal_n1_k1", "bottleneck_n1_k1", "wide_n1_k2"]
he_norm = HeNormal(gain="relu")


# --- the seed's models, as a Lasagne user writes them ----------------------
def _block(l, filters, stride, first, shortcut, bottleneck=False):
    bn_pre_relu = l if first else NonlinearityLayer(BatchNormLayer(l), rectify)
    if bottleneck:
        c = batch_norm(ConvLayer(bn_pre_relu, num_filters=filters // 4, filter_size=(1, 1),
                                 stride=(1, 1), nonlinearity=rectify, pad='same', W=he_norm))
        c = batch_norm(ConvLayer(c, num_filters=filters // 4, filter_size=(3, 3),
                                 stride=stride, nonlinearity=rectify, pad='same', W=he_norm))
        c = ConvLayer(c, num_filters=filters, filter_size=(1, 1), stride=(1, 1),
                      nonlinearity=None, pad='same', W=he_norm)
    else:
        c = batch_norm(ConvLayer(bn_pre_relu, num_filters=filters, filter_size=(3, 3),
                                 stride=stride, nonlinearity=rectify, pad='same', W=he_norm))
        c = ConvLayer(c, num_filters=filters, filter_size=(3, 3), stride=(1, 1),
                      nonlinearity=None, pad='same', W=he_norm)
    if shortcut == 'projection':
        p = ConvLayer(bn_pre_relu, num_filters=filters, filter_size=(1, 1), stride=stride,
                      nonlinearity=None, pad='same', b=None)
        return ElemwiseSumLayer([c, p])
    return ElemwiseSumLayer([c, l])


def seed_network(kind, n, k, input_var, size=32):
    l_in = InputLayer(shape=(None, 3, size, size), input_var=input_var)
    l = batch_norm(ConvLayer(l_in, num_filters=16, filter_size=(3, 3), stride=(1, 1),
                             nonlinearity=rectify, pad='same', W=he_norm))
    if kind == 'normal':
        widths, blocks, bottleneck, first_proj = (16, 32, 64), (n, n, n), False, False
    elif kind == 'bottleneck':
        widths, blocks, bottleneck, first_proj = (64, 128, 256), (n, n, n), True, True
    else:
        widths, blocks, bottleneck, first_proj = (16 * k, 32 * k, 64 * k), (n, n + 2, n + 2), \
            False, True
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            first = stage == 0 and i == 0
            stride = (2, 2) if stage > 0 and i == 0 else (1, 1)
            proj = (stage > 0 and i == 0) or (first and first_proj)
            l = _block(l, width, stride, first, 'projection' if proj else 'identity', bottleneck)
    l = NonlinearityLayer(BatchNormLayer(l), rectify)
    feat = GlobalPoolLayer(l)
    return DenseLayer(feat, num_units=10, W=HeNormal(), nonlinearity=softmax), feat


# --- helpers -------------------------------------------------------------------
def _load(legacy_dir, name):
    with open(legacy_dir / f"{name}.json") as f:
        meta = json.load(f)
    with open(legacy_dir / f"{name}_tol.json") as f:
        tol = json.load(f)["tolerance"]
    io = np.load(legacy_dir / f"{name}_io.npz")
    train = np.load(legacy_dir / f"{name}_train.npz")
    return meta, tol, io, train


def _build(meta, legacy_dir, name):
    cfg = meta["config"]
    x = T.tensor4('inputs')
    net, feat = seed_network(cfg["type"], cfg["n"], cfg["k"], x)
    set_all_param_values(net, load_pklz(legacy_dir / f"{name}.pklz"))
    return x, net, feat


def _assert_rel(actual, expected, rel, what):
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:g} x {scale:.3g}"


@pytest.mark.parametrize("name", FIXTURES)
def test_param_order_and_tags(legacy_dir, name):
    meta, _, _, _ = _load(legacy_dir, name)
    cfg = meta["config"]
    net, _ = seed_network(cfg["type"], cfg["n"], cfg["k"], None)
    found = []
    for layer in get_all_layers(net):
        for p in layer.get_params():
            found.append({"layer": type(layer).__name__.replace("DNN", ""),
                          "param": p.name.split(".")[-1] if p.name else None,
                          "shape": list(p.get_value().shape),
                          "tags": sorted(layer.params[p])})
    assert len(found) == meta["num_arrays"]
    for i, (a, e) in enumerate(zip(found, meta["params_in_order"])):
        assert a == {**e, "tags": sorted(e["tags"])}, f"parameter {i}"
    assert sum(int(np.prod(f["shape"])) for f in found) == meta["total_params"]


@pytest.mark.parametrize("name", FIXTURES)
def test_forward_matches_lasagne(legacy_dir, name):
    meta, tol, io, _ = _load(legacy_dir, name)
    x, net, feat = _build(meta, legacy_dir, name)
    test_out = get_output([net, feat], deterministic=True)
    train_out = get_output([net, feat], deterministic=False)
    f = pytensor.function([x], test_out + train_out, no_default_updates=True)
    before = [p.get_value() for p in get_all_params(net)]
    prob_test, feat_test, prob_train, feat_train = f(io["X"])
    assert prob_test.dtype == np.float32
    np.testing.assert_allclose(prob_test, io["prob_test"], rtol=0, atol=tol["prob_abs"])
    np.testing.assert_allclose(prob_train, io["prob_train"], rtol=0, atol=tol["prob_abs"])
    _assert_rel(feat_test, io["feat_test"], tol["feat_rel"], "feat_test")
    _assert_rel(feat_train, io["feat_train"], tol["feat_rel"], "feat_train")
    for b, p in zip(before, get_all_params(net)):  # nothing was updated
        np.testing.assert_array_equal(b, p.get_value())


@pytest.mark.parametrize("backend", ["c", "jax"])
@pytest.mark.parametrize("name", FIXTURES)
def test_first_training_loss_matches_lasagne(legacy_dir, name, backend):
    """The legacy training step on Lasagne's fixture net: its first loss (a
    forward pass, which no ReLU kink can move) within the fixture's tolerance
    of the loss the real Lasagne computed.

    The losses of steps 2 and 3 and the parameters after step 3 are no
    longer compared here, one fixture at a time: in float32 they are a draw
    of the kink lottery (a batch-norm output within round-off of zero lands
    on the other side of a ReLU, for lasres and for Lasagne alike), so a
    single fixture passed or failed with the CPU model (issue 33: on an
    AVX-512 Xeon two of the real Lasagne's three-step nets missed their
    tolerance; on an AVX2 EPYC other float32 checks did).
    test_float32_statistics.py judges them over 60 nets against the real
    Lasagne's own float32, and its float64 against Lasagne's float64 to 1e-10.
    """
    if backend == "jax":
        pytest.importorskip("jax")
    meta, tol, io, train = _load(legacy_dir, name)
    x, net, _ = _build(meta, legacy_dir, name)
    y = T.ivector('targets')
    prediction = get_output(net)
    loss = lasres.objectives.categorical_crossentropy(prediction, y).mean()
    loss = loss + 1e-4 * lasres.regularization.regularize_layer_params(
        get_all_layers(net), lasres.regularization.l2)
    params = get_all_params(net, trainable=True)
    updates = lasres.updates.nesterov_momentum(loss, params, learning_rate=float(train["lr"]),
                                               momentum=0.9)
    step = pytensor.function([x, y], loss, updates=updates, mode=get_mode(backend))
    first = float(step(io["X"], io["y"]))
    np.testing.assert_allclose(first, train["losses"][0], rtol=0, atol=tol["loss_abs"])
    assert len(get_all_params(net)) == meta["num_arrays"]
