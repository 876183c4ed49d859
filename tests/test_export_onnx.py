"""ONNX export (lasres.export): every architecture's deterministic graph,
checked by onnx.checker and run by ONNX Runtime, reproduces lasres's
probabilities on real CIFAR-10 images; the real Lasagne's on the legacy
fixtures; each layer translation against lasres on its own; the script end
to end; one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx  # the test extra installs onnx and onnxruntime
import onnxruntime as ort
import pytest
import pytensor
import pytensor.tensor as pt

import lasres.layers as L
import lasres.random
from _datasets import cifar10_subset
from lasres import nonlinearities as nl
from lasres.data import compute_pixel_mean, load_raw, preprocess
from lasres.errors import ExportError, LasresError
from lasres.export import to_onnx
from lasres.layers import get_all_layers, get_output, set_all_param_values
from lasres.models import available, build
from lasres.weights import load_pklz

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5  # absolute, on probabilities


# --- helpers ----------------------------------------------------------------------
def _inputs(net):
    return [l for l in get_all_layers(net) if isinstance(l, L.InputLayer)]


def lasres_fn(net, **kwargs):
    """The compiled deterministic output(s) of ``net`` (a layer or a list)."""
    outs = net if isinstance(net, list) else [net]
    fn = pytensor.function([i.input_var for i in _inputs(outs)],
                           get_output(outs, deterministic=True, **kwargs))
    return fn if isinstance(net, list) else (lambda *xs: fn(*xs)[0])


def ort_run(path, *xs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    return sess.run(None, dict(zip(names, xs)))


def randomise(net, X, rng, logit_std=1.5):
    """Random BN gamma/beta and biases, then BN statistics near those of the
    inputs on ``X`` (mean shifted by N(0, 0.1) sd, inv_std scaled by
    U(0.8, 1.2)) and the softmax layer scaled to logits of sd ``logit_std``:
    the deterministic path stays normalised and its probabilities are
    informative (neither one-hot nor uniform), so that agreement means something."""
    layers = get_all_layers(net)
    for layer in layers:
        for p in layer.get_params():
            v = p.get_value()
            kind = p.name.split(".")[-1]
            if kind == "b":
                p.set_value(rng.normal(0, 0.05, v.shape).astype(v.dtype))
            elif kind == "gamma":
                p.set_value(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
            elif kind == "beta":
                p.set_value(rng.normal(0, 0.1, v.shape).astype(v.dtype))
    bns = [l for l in layers if isinstance(l, L.BatchNormLayer)]
    head = layers[-1]
    f = lasres_fn([b.input_layer for b in bns], batch_norm_use_averages=False)
    for bn, v in zip(bns, f(X)):
        mean, std = v.mean(axis=bn.axes), v.std(axis=bn.axes)
        bn.mean.set_value((mean + rng.normal(0, 0.1, mean.shape) * std).astype("float32"))
        inv = 1 / np.sqrt(std ** 2 + bn.epsilon) * rng.uniform(0.8, 1.2, std.shape)
        bn.inv_std.set_value(inv.astype("float32"))
    feats = lasres_fn(head.input_layer)(X).reshape(len(X), -1)  # deterministic features
    logits = feats @ head.W.get_value() + head.b.get_value()
    head.W.set_value((head.W.get_value() * logit_std / logits.std()).astype("float32"))


def assert_informative(p):
    top = p.max(axis=1)
    assert np.median(top) < 0.95 and top.max() > 0.15, top  # neither one-hot nor uniform


@pytest.fixture(scope="module")
def cifar():
    """Real CIFAR-10: the pixel mean of 5,000 training images, 32 training
    images for the BN statistics and 8 test images (raw uint8) to compare on."""
    raw = load_raw("cifar10", str(cifar10_subset(5000, 1000)))
    mean = compute_pixel_mean(raw.X_train)
    return mean, preprocess(raw.X_train[:32], mean), raw.X_test[:8]


# --- every architecture, on real CIFAR-10 images -------------------------------------
SMALL = [("normal", 1, 1, {}), ("bottleneck", 1, 1, {}), ("wide", 1, 2, {}),
         ("resnet", 1, 1, {}), ("resnet", 1, 1, {"preact": 1}), ("plain", 1, 1, {}),
         ("ror", 1, 1, {"dropout": 0.3}), ("ror-wrn", 1, 2, {"dropout": 0.3}),
         ("rir", 8, 1, {}), ("cnn", 8, 1, {})]


def test_small_configurations_cover_every_architecture():
    assert {c[0] for c in SMALL} == set(available())


def check_architecture(type, depth, width, options, cifar, tmp_path, seed=0, atol=TOL):
    """Export (plain and with folded BN, raw pixels in) and compare ONNX
    Runtime with lasres on real images."""
    mean, X_calib, X_raw = cifar
    lasres.random.set_rng(np.random.RandomState(seed))  # the same net whatever ran before
    net = build(type, depth, width, **options)
    randomise(net, X_calib, np.random.RandomState(seed))
    expected = lasres_fn(net)(preprocess(X_raw, mean))
    assert_informative(expected)
    n_bn = {}
    for fold in (False, True):
        path = tmp_path / f"{type}_{fold}.onnx"
        model = to_onnx(net, path, pixel_mean=mean, fold_bn=fold)
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        n_bn[fold] = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
        got, = ort_run(path, X_raw.astype(np.float32))  # raw pixels: the model subtracts the mean
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol, err_msg=f"fold_bn={fold}")
    # every BN is exported; the ones right after a convolution are folded into it
    assert n_bn[False] == sum(isinstance(l, L.BatchNormLayer) for l in get_all_layers(net))
    assert n_bn[True] < n_bn[False]


@pytest.mark.parametrize("type,depth,width,options", SMALL,
                         ids=[f"{t}-{d}-{w}" + "".join(f"-{k}" for k in o) for t, d, w, o in SMALL])
def test_architecture_matches_lasres_on_cifar10(type, depth, width, options, cifar, tmp_path):
    check_architecture(type, depth, width, options, cifar, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("type,depth,width,atol", [
    ("normal", 18, 1, TOL), ("wide", 2, 4, TOL),
    # ResNet-164's float32 round-off alone spreads further than 1e-5: on this
    # randomised net (seed 1) lasres float32 differs from lasres float64 by up
    # to 2.3e-5, ONNX Runtime from lasres float64 by 2.0e-5 (from lasres
    # float32 by 2.4e-5), so 1e-5 would test the rounding, not the export
    ("bottleneck", 18, 1, 5e-5)])
def test_legacy_full_size_matches_lasres_on_cifar10(type, depth, width, atol, cifar, tmp_path):
    """ResNet-110, ResNet-164 and the seed's wide net: the legacy weights' networks."""
    check_architecture(type, depth, width, {}, cifar, tmp_path, seed=1, atol=atol)


@pytest.mark.parametrize("name", ["normal_n1_k1", "bottleneck_n1_k1", "wide_n1_k2"])
def test_real_lasagne_fixture_probabilities(legacy_dir, name, tmp_path):
    """The real Lasagne's probabilities (computed by Theano on the legacy
    fixture's weights), from the exported model, within the fixture's tolerance."""
    meta = json.loads((legacy_dir / f"{name}.json").read_text())
    tol = json.loads((legacy_dir / f"{name}_tol.json").read_text())["tolerance"]["prob_abs"]
    io = np.load(legacy_dir / f"{name}_io.npz")
    cfg = meta["config"]
    net = build(cfg["type"], cfg["n"], cfg["k"])
    set_all_param_values(net, load_pklz(legacy_dir / f"{name}.pklz"))
    for fold in (False, True):
        to_onnx(net, tmp_path / "m.onnx", fold_bn=fold)
        got, = ort_run(tmp_path / "m.onnx", io["X"])
        np.testing.assert_allclose(got, io["prob_test"], rtol=0, atol=max(tol, TOL))


# --- each translation against lasres ----------------------------------------------------
def compare_layers(outs, shape, tmp_path, rng, atol=1e-5, input_shape=None, scale=1.0):
    X = (rng.randn(*shape) * scale).astype(np.float32)
    expected = lasres_fn(outs)(X)
    path = tmp_path / "layers.onnx"
    to_onnx(outs, path, input_shape=input_shape)
    got = ort_run(path, X)
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a.shape == b.shape, (i, a.shape, b.shape)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=atol, err_msg=f"output {i}")


def test_pooling_all_modes_and_borders(tmp_path):
    rng = np.random.RandomState(0)
    l_in = L.InputLayer((None, 3, 7, 10))
    outs = []
    for mode in ("max", "average_inc_pad", "average_exc_pad", "sum"):
        for ws, stride, pad, ib in [(2, 2, 0, True), (2, 2, 0, False), (3, 2, 1, True),
                                    (3, 2, 0, False), (3, 1, 1, True), (2, 3, 0, False),
                                    ((3, 2), (1, 2), (1, 0), True), (3, 3, 0, False),
                                    (1, 2, 0, False)]:
            outs.append(L.Pool2DLayer(l_in, ws, stride, pad, ignore_border=ib, mode=mode))
    outs.append(L.MaxPool2DLayer(l_in, 2))
    outs.append(L.dnn.MaxPool2DDNNLayer(l_in, 3, stride=2, pad=1))
    for f in (pt.mean, pt.max, pt.sum, pt.min):
        outs.append(L.GlobalPoolLayer(l_in, f))
    compare_layers(outs, (4, 3, 7, 10), tmp_path, rng)


def test_convolutions_flips_pads_strides_biases(tmp_path):
    rng = np.random.RandomState(1)
    l_in = L.InputLayer((None, 3, 9, 8))
    outs = []
    for flip in (True, False):
        for fs, stride, pad in [(3, 1, "same"), (3, 2, "same"), ((3, 2), (2, 1), "valid"),
                                (3, 1, "full"), ((3, 1), 1, (2, 1)), (1, 2, 0), (5, 3, 2)]:
            outs.append(L.Conv2DLayer(l_in, 4, fs, stride=stride, pad=pad, flip_filters=flip,
                                      nonlinearity=None))
    # asymmetric kernels show a missing (or extra) flip
    outs.append(L.Conv2DLayer(l_in, 5, (2, 3), untie_biases=True, nonlinearity=nl.rectify))
    outs.append(L.dnn.Conv2DDNNLayer(l_in, 2, 3, pad="same", b=None, nonlinearity=nl.tanh))
    for layer in outs:
        if layer.b is not None:
            layer.b.set_value(rng.normal(0, 0.5, layer.b.get_value().shape).astype("float32"))
    compare_layers(outs, (2, 3, 9, 8), tmp_path, rng)


def test_every_nonlinearity(tmp_path):
    rng = np.random.RandomState(2)
    l_in = L.InputLayer((None, 6))
    fs = [nl.sigmoid, nl.softmax, nl.tanh, nl.ScaledTanH(0.5, 2.0), nl.rectify,
          nl.LeakyRectify(0.2), nl.leaky_rectify, nl.very_leaky_rectify, nl.elu, nl.SELU(1.5, 0.5),
          nl.selu, nl.softplus, nl.linear, nl.identity, None]
    outs = [L.NonlinearityLayer(l_in, f) for f in fs]
    outs += [L.DenseLayer(l_in, 3, nonlinearity=f) for f in (nl.softmax, nl.elu, None)]
    compare_layers(outs, (5, 6), tmp_path, rng, scale=3.0)


def test_batch_norm_layouts_and_precision(tmp_path):
    """Channel BN (ONNX BatchNormalization, extreme inv_std included: 1/inv_std**2
    far below epsilon), per-position BN (axes=0: Lasagne's formula), BN on a
    dense layer, and the folds into convolution and dense layers."""
    rng = np.random.RandomState(3)
    l_in = L.InputLayer((None, 4, 5, 5))
    bn = L.BatchNormLayer(l_in)
    bn_pos = L.BatchNormLayer(l_in, axes=0, epsilon=1e-3)
    conv = L.Conv2DLayer(l_in, 3, 3, nonlinearity=None)
    conv_bn = L.BatchNormLayer(conv, beta=None, gamma=None)
    dense = L.DenseLayer(l_in, 6, nonlinearity=None, b=None)
    dense_bn = L.BatchNormLayer(dense)
    # a convolution feeding two layers is not folded
    shared = L.Conv2DLayer(l_in, 3, 1, nonlinearity=None)
    shared_bn = L.BatchNormLayer(shared)
    outs = [bn, bn_pos, conv_bn, dense_bn, shared_bn, L.NonlinearityLayer(shared, nl.rectify)]
    for layer in (bn, bn_pos, conv_bn, dense_bn, shared_bn):
        for p in layer.get_params():
            v = p.get_value()
            kind = p.name.split(".")[-1]
            if kind == "inv_std":
                v = np.exp(rng.uniform(-2, 6, v.shape))  # up to 400 = 1/sqrt(6e-6)
            else:
                v = rng.normal(0, 1, v.shape)
            p.set_value(v.astype("float32"))
    compare_layers(outs, (3, 4, 5, 5), tmp_path, rng, atol=1e-4)
    for fold in (False, True):
        model = to_onnx(outs, tmp_path / "bn.onnx", fold_bn=fold)
        n_bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
        assert n_bn == (2 if fold else 4)  # bn, shared_bn stay; conv_bn, dense_bn fold
        X = rng.randn(3, 4, 5, 5).astype("float32")
        for a, b in zip(ort_run(tmp_path / "bn.onnx", X), lasres_fn(outs)(X)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


def test_shape_merge_and_misc_layers(tmp_path):
    rng = np.random.RandomState(4)
    l_in = L.InputLayer((None, 4, 6, 5))
    a = L.Conv2DLayer(l_in, 4, 3, pad="same", nonlinearity=None)
    outs = [
        L.ElemwiseSumLayer([l_in, a], coeffs=[0.5, -2.0]),
        L.ElemwiseSumLayer([l_in, a, l_in]),
        L.ElemwiseMergeLayer([l_in, a], pt.mul),
        L.ElemwiseMergeLayer([l_in, a, l_in], pt.maximum),
        L.ConcatLayer([l_in, a], axis=1),
        L.ConcatLayer([l_in, a], axis=-1),
        L.PadLayer(l_in, width=[(1, 2), 0, 0], batch_ndim=1, val=0.5),  # option-A channel pad
        L.PadLayer(l_in, width=1),
        L.SliceLayer(l_in, slice(None, None, 2), axis=2),
        L.SliceLayer(l_in, slice(4, 0, -2), axis=-1),
        L.SliceLayer(l_in, slice(None, None, -1), axis=1),
        L.SliceLayer(l_in, 1, axis=1),
        L.SliceLayer(l_in, slice(1, 3), axis=0),
        L.FlattenLayer(l_in),
        L.FlattenLayer(l_in, outdim=3),
        L.ReshapeLayer(l_in, ([0], -1, [2])),
        L.ReshapeLayer(l_in, ([0], [3], 4, [2])),
        L.DimshuffleLayer(l_in, (0, 2, 3, 1)),
        L.DimshuffleLayer(L.SliceLayer(l_in, slice(0, 1), axis=1), (0, "x", 3, 2)),
        L.BiasLayer(l_in),
        L.ScaleLayer(l_in, scales=2.5 * np.ones((6, 5), "float32"),
                     shared_axes=(0, 1)),
        L.DropoutLayer(l_in, p=0.5),
        L.dropout_channels(l_in, p=0.2),
        L.GaussianNoiseLayer(l_in),
        L.DenseLayer(l_in, 3, num_leading_axes=2),
    ]
    for layer in outs:
        b = getattr(layer, "b", None)
        if b is not None:
            b.set_value(rng.normal(0, 1, b.get_value().shape).astype("float32"))
    compare_layers(outs, (3, 4, 6, 5), tmp_path, rng)


def test_input_shape_fixed_batch_and_new_size(tmp_path):
    net = build("resnet", 1)
    model = to_onnx(net, tmp_path / "b.onnx", input_shape=(5, 3, 40, 24))
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [5, 3, 40, 24]
    X = np.random.RandomState(5).randn(5, 3, 40, 24).astype("float32")
    got, = ort_run(tmp_path / "b.onnx", X)
    np.testing.assert_allclose(got, lasres_fn(net)(X), rtol=0, atol=TOL)


# --- errors --------------------------------------------------------------------------------
def test_unexportable_layers_are_one_line_errors_naming_the_layer(tmp_path):
    l_in = L.InputLayer((None, 3))
    # PyTensor ops without an ONNX translation (sort, cumulative sum, arctan2)
    cases = [
        (L.ExpressionLayer(l_in, lambda x: pt.sort(x), name="sorted"),
         "'sorted' (ExpressionLayer)", "SortOp"),
        (L.NonlinearityLayer(l_in, lambda x: pt.cumsum(x, axis=1), name="cum"), "'cum'", "CumOp"),
        (L.ElemwiseMergeLayer([l_in, l_in], pt.arctan2, name="angle"), "'angle'", "ArcTan2"),
        (L.GlobalPoolLayer(L.ReshapeLayer(l_in, ([0], 3, 1)),
                           lambda x, axis: pt.sort(x, axis=axis).max(axis=axis)),
         "#2 of 3 (GlobalPoolLayer)", "SortOp"),
    ]

    class Doubled(L.DenseLayer):
        def get_output_for(self, input, **kwargs):
            return pt.sort(super().get_output_for(input, **kwargs))

    cases.append((Doubled(l_in, 2, name="doubled"), "'doubled' (Doubled)", "SortOp"))
    path = tmp_path / "x.onnx"
    path.write_bytes(b"previous")
    for layer, part, op in cases:
        with pytest.raises(ExportError) as exc:
            to_onnx(layer, path)
        msg = str(exc.value)
        assert isinstance(exc.value, LasresError)
        assert "\n" not in msg and "cannot export layer" in msg and part in msg, msg
        assert f"no translation for the PyTensor op {op}" in msg or f"scalar op {op}" in msg, msg
    assert path.read_bytes() == b"previous"  # a failed export leaves the old file intact
    assert sorted(os.listdir(tmp_path)) == ["x.onnx"]
    with pytest.raises(ExportError, match="pixel_mean of shape"):
        to_onnx(build("resnet", 1), path, pixel_mean=np.zeros((3, 28, 28)))
    with pytest.raises(ExportError, match="has 2 channels, its weights take 3"):
        to_onnx(L.Conv2DLayer(L.InputLayer((None, 3, 4, 4)), 2, 3), path,
                input_shape=(None, 2, 4, 4))
    with pytest.raises(ExportError, match="has 75 features, its weights take 48"):
        to_onnx(L.DenseLayer(L.InputLayer((None, 3, 4, 4)), 2), path, input_shape=(1, 3, 5, 5))
    with pytest.raises(ExportError, match="has 3 dimensions"):
        to_onnx(build("resnet", 1), path, input_shape=(None, 3, 32))
    with pytest.raises(LasresError, match="does not exist"):
        to_onnx(build("resnet", 1), tmp_path / "nowhere" / "x.onnx")


def test_lasres_does_not_import_onnx():
    code = ("import sys, lasres, lasres.cli, lasres.export, lasres.models; "
            "sys.exit(int(any(m.split('.')[0] in ('onnx', 'onnxruntime') for m in sys.modules)))")
    env = dict(os.environ, PYTHONPATH=REPO)
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


# --- the script -------------------------------------------------------------------------------
def run_script(*args, cwd=None):
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "export_onnx.py"),
                        *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


@pytest.mark.slow
def test_script_end_to_end(legacy_dir, tmp_path):
    """Legacy .pklz in, ONNX out: the real Lasagne's probabilities, from raw
    pixels when a pixel mean is embedded."""
    io = np.load(legacy_dir / "normal_n1_k1_io.npz")
    tol = json.loads((legacy_dir / "normal_n1_k1_tol.json").read_text())["tolerance"]["prob_abs"]
    mean = np.random.RandomState(6).uniform(100, 150, (3, 32, 32)).astype("float32")
    np.save(tmp_path / "mean.npy", mean)
    out = tmp_path / "model.onnx"
    rc, stdout, stderr = run_script("normal", 1, "--weights", legacy_dir / "normal_n1_k1.pklz",
                                    "--out", out, "--pixel-mean", tmp_path / "mean.npy",
                                    "--fold-bn", cwd=tmp_path)
    assert rc == 0, stderr
    assert "subtracts the pixel mean" in stdout and "wrote" in stdout
    got, = ort_run(out, io["X"] + mean)
    np.testing.assert_allclose(got, io["prob_test"], rtol=0, atol=max(tol, TOL))
    # without a mean (none next to the weights, none in --data)
    rc, stdout, stderr = run_script("normal", 1, "--weights", legacy_dir / "normal_n1_k1.pklz",
                                    "--out", out, "--data", tmp_path / "nodata", cwd=tmp_path)
    assert rc == 0, stderr
    assert "mean-subtracted images" in stdout
    got, = ort_run(out, io["X"])
    np.testing.assert_allclose(got, io["prob_test"], rtol=0, atol=max(tol, TOL))


@pytest.mark.parametrize("args,message", [
    (["normal", 1, "--weights", "missing.pklz", "--out", "m.onnx"],
     "error: weight file missing.pklz does not exist"),
    (["wide", 1, 2, "--weights", "{legacy}/normal_n1_k1.pklz", "--out", "m.onnx"],
     "does not fit this network"),
    (["normal", 1, "--weights", "{legacy}/normal_n1_k1.pklz", "--out", "no/such/m.onnx"],
     "does not exist"),
    (["squeeze", 1, "--out", "m.onnx"], "unknown model type 'squeeze'"),
])
def test_script_bad_input_is_one_line_error(args, message, legacy_dir, tmp_path):
    args = [str(a).format(legacy=legacy_dir) for a in args]
    rc, stdout, stderr = run_script(*args, cwd=tmp_path)
    assert rc == 2, (stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: "), stderr
    assert message in stderr, stderr
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name,type,depth,width", [("ror_N1", "ror", 1, 1),
                                                   ("ror_wrn_N1_k1", "ror-wrn", 1, 1)])
def test_real_keras_fixture_probabilities(shared_dir, name, type, depth, width, tmp_path):
    """The RoR seed's exact networks (layout=keras) with the real Keras 1.2.2
    weight files: the exported model (Keras BN, max-pooling, biased
    convolutions) gives Keras's own predictions on the seed's x/255 inputs."""
    from lasres.weights import load_keras_h5
    folder = shared_dir / "fixtures" / "keras"
    tol = json.loads((folder / f"{name}_tol.json").read_text())["tolerance"]["prob_abs"]
    io = np.load(folder / f"{name}_io.npz")
    net = build(type, depth, width, layout="keras")
    set_all_param_values(net, load_keras_h5(folder / f"{name}.h5", net))
    for fold in (False, True):
        to_onnx(net, tmp_path / "m.onnx", fold_bn=fold)
        onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")), full_check=True)
        got, = ort_run(tmp_path / "m.onnx", io["Xp"])
        np.testing.assert_allclose(got, io["prob"], rtol=0, atol=tol, err_msg=f"fold_bn={fold}")
