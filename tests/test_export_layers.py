"""Every layer class of lasres.layers through both exporters: ONNX Runtime
and the exported PyTorch module against lasres's deterministic outputs
(1e-5 of the output scale), or a one-line ExportError naming the layer,
its class and the missing op; the recurrent layers on masked sequences
(backwards, only_return_final, precompute_input, initial states as
layers), with a training step in PyTorch; docs/EXPORT.md's table is this
file's verdicts."""
import inspect
import os
import pkgutil
import importlib
import re

import numpy as np
import pytensor.tensor as pt
import pytest

import lasres.layers as L
import lasres.random
from lasres import nonlinearities as nl
from lasres.errors import ExportError
from lasres.layers import cuda_convnet as cc
from lasres.layers import dnn
from lasres.layers.corrmm import Conv2DMMLayer
from _export_checks import (assert_close, check_training_step, lasres_outputs, needs_torch,
                            onnx_outputs, randomise, sample, skip_without_torch, torch,
                            torch_outputs)

from lasres.export import to_onnx, to_torch


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def img(c=4, h=8, w=8):
    return L.InputLayer((None, c, h, w), name="x")


def seq():
    return L.InputLayer((None, 5, 3), name="x"), L.InputLayer((None, 5), name="mask")


def vol():
    return L.InputLayer((None, 3, 6, 6, 6), name="x")


def line():
    return L.InputLayer((None, 4, 10), name="x")


def _recurrent(kind, **kw):
    x, mask = seq()
    cls = {"rnn": L.RecurrentLayer, "lstm": L.LSTMLayer, "gru": L.GRULayer}[kind]
    return cls(x, 4, mask_input=mask, **kw)


def _custom_recurrent():
    x, mask = seq()
    in_to_hid = L.DenseLayer(L.InputLayer((None, 3)), 4, nonlinearity=None)
    hid_to_hid = L.DenseLayer(L.InputLayer((None, 4)), 4, nonlinearity=None)
    return L.CustomRecurrentLayer(x, in_to_hid, hid_to_hid, nonlinearity=nl.tanh,
                                  mask_input=mask, backwards=True)


def _transformer():
    x = img(2, 6, 6)
    theta = L.DenseLayer(L.FlattenLayer(x), 6, nonlinearity=None)
    return L.TransformerLayer(x, theta, downsample_factor=1)


def _tps():
    x = img(2, 6, 6)
    return L.TPSTransformerLayer(x, L.DenseLayer(L.FlattenLayer(x), 32, nonlinearity=None),
                                 control_points=16)


#: class name -> (builder, ONNX verdict, PyTorch verdict); a verdict is
#: "exported", "eval only" (PyTorch: the layer is random or batch-dependent
#: in training, which only a runtime class reproduces) or "refused: <the
#: error's reason>".
CASES = {
    "InputLayer": (lambda: L.NonlinearityLayer(img(), nl.identity), "exported", "exported"),
    "Conv1DLayer": (lambda: L.Conv1DLayer(line(), 3, 3, pad="same"), "exported", "exported"),
    "Conv2DLayer": (lambda: L.Conv2DLayer(img(), 6, (3, 2), pad="full", num_groups=2),
                    "exported", "exported"),
    "Conv3DLayer": (lambda: L.Conv3DLayer(vol(), 2, 3, stride=2, pad=1), "exported", "exported"),
    "DilatedConv2DLayer": (lambda: L.DilatedConv2DLayer(img(), 3, 3, dilation=2),
                           "exported", "exported"),
    "TransposedConv2DLayer": (lambda: L.TransposedConv2DLayer(img(), 3, 3, stride=2, crop=1),
                              "exported", "exported"),
    "TransposedConv3DLayer": (lambda: L.TransposedConv3DLayer(vol(), 2, 2, stride=2),
                              "exported", "exported"),
    "Conv2DMMLayer": (lambda: Conv2DMMLayer(img(), 3, 3, pad=1), "exported", "exported"),
    "Conv2DCCLayer": (lambda: cc.Conv2DCCLayer(img(16), 16, 3, pad=1), "exported", "exported"),
    "MaxPool2DCCLayer": (lambda: cc.MaxPool2DCCLayer(img(16), 3, stride=2), "exported",
                         "exported"),
    "NINLayer_c01b": (lambda: cc.NINLayer_c01b(cc.ShuffleBC01ToC01BLayer(img()), 3),
                      "exported", "exported"),
    "ShuffleBC01ToC01BLayer": (lambda: cc.ShuffleBC01ToC01BLayer(img()), "exported", "exported"),
    "ShuffleC01BToBC01Layer": (lambda: cc.ShuffleC01BToBC01Layer(
        cc.ShuffleBC01ToC01BLayer(img())), "exported", "exported"),
    "DenseLayer": (lambda: L.DenseLayer(img(), 5, nonlinearity=nl.LeakyRectify(0.2)),
                   "exported", "exported"),
    "NINLayer": (lambda: L.NINLayer(img(), 3, untie_biases=True), "exported", "exported"),
    "Conv2DDNNLayer": (lambda: dnn.Conv2DDNNLayer(img(), 3, 3, stride=2), "exported", "exported"),
    "Conv3DDNNLayer": (lambda: dnn.Conv3DDNNLayer(vol(), 2, 3, pad="same"), "exported",
                       "exported"),
    "MaxPool2DDNNLayer": (lambda: dnn.MaxPool2DDNNLayer(img(), 3, stride=2, pad=1), "exported",
                          "exported"),
    "MaxPool3DDNNLayer": (lambda: dnn.MaxPool3DDNNLayer(vol(), 2), "exported", "exported"),
    "Pool2DDNNLayer": (lambda: dnn.Pool2DDNNLayer(img(), 3, stride=2, pad=1,
                                                  mode="average_exc_pad"), "exported", "exported"),
    "Pool3DDNNLayer": (lambda: dnn.Pool3DDNNLayer(vol(), 3, stride=2, pad=1,
                                                  mode="average_inc_pad"), "exported", "exported"),
    "SpatialPyramidPoolingDNNLayer": (lambda: dnn.SpatialPyramidPoolingDNNLayer(img(), [3, 1]),
                                      "exported", "exported"),
    "EmbeddingLayer": (lambda: L.EmbeddingLayer(
        L.InputLayer((None, 5), input_var=pt.imatrix(), name="x"), 10, 3), "exported",
        "exported"),
    "LocallyConnected2DLayer": (lambda: L.LocallyConnected2DLayer(img(), 3, 3, pad="same"),
                                "exported", "exported"),
    "ConcatLayer": (lambda: L.ConcatLayer([img(), L.Conv2DLayer(img(), 2, 3)], axis=1,
                                          cropping=[None, "center", "lower", "upper"]),
                    "exported", "exported"),
    "ElemwiseMergeLayer": (lambda: L.ElemwiseMergeLayer([img(), img()], pt.maximum), "exported",
                           "exported"),
    "ElemwiseSumLayer": (lambda: L.ElemwiseSumLayer([img(), img()], coeffs=[0.5, -1]),
                         "exported", "exported"),
    "DropoutLayer": (lambda: L.DropoutLayer(img(), p=0.3), "exported", "exported"),
    "GaussianNoiseLayer": (lambda: L.GaussianNoiseLayer(img()), "exported", "exported"),
    "BatchNormLayer": (lambda: L.BatchNormLayer(img(), axes=(0, 2)), "exported", "exported"),
    "KerasBatchNormLayer": (lambda: L.KerasBatchNormLayer(img()), "exported", "exported"),
    "LocalResponseNormalization2DLayer": (lambda: L.LocalResponseNormalization2DLayer(
        img(6), alpha=0.1, n=3), "exported", "exported"),
    "StandardizationLayer": (lambda: L.StandardizationLayer(img()), "exported", "exported"),
    "FeaturePoolLayer": (lambda: L.FeaturePoolLayer(img(), 2), "exported", "exported"),
    "FeatureWTALayer": (lambda: L.FeatureWTALayer(img(), 2), "exported", "exported"),
    "GlobalPoolLayer": (lambda: L.GlobalPoolLayer(img(), pt.max), "exported", "exported"),
    "MaxPool1DLayer": (lambda: L.MaxPool1DLayer(line(), 3, ignore_border=False), "exported",
                       "exported"),
    "MaxPool2DLayer": (lambda: L.MaxPool2DLayer(img(4, 7, 7), 2, ignore_border=False),
                       "exported", "exported"),
    "MaxPool3DLayer": (lambda: L.MaxPool3DLayer(vol(), 2), "exported", "exported"),
    "Pool1DLayer": (lambda: L.Pool1DLayer(line(), 3, stride=2, mode="sum"), "exported",
                    "exported"),
    "Pool2DLayer": (lambda: L.Pool2DLayer(img(4, 7, 7), 3, stride=2, mode="average_inc_pad",
                                          ignore_border=False), "exported", "exported"),
    "Pool3DLayer": (lambda: L.Pool3DLayer(vol(), 2, mode="average_exc_pad"), "exported",
                    "exported"),
    "SpatialPyramidPoolingLayer": (lambda: L.SpatialPyramidPoolingLayer(img(), [4, 2, 1]),
                                   "exported", "exported"),
    "Upscale1DLayer": (lambda: L.Upscale1DLayer(line(), 3), "exported", "exported"),
    "Upscale2DLayer": (lambda: L.Upscale2DLayer(img(), 2, mode="dilate"), "exported", "exported"),
    "Upscale3DLayer": (lambda: L.Upscale3DLayer(vol(), 2), "exported", "exported"),
    "CustomRecurrentLayer": (_custom_recurrent, "exported", "exported"),
    "GRULayer": (lambda: _recurrent("gru", backwards=True), "exported", "exported"),
    "LSTMLayer": (lambda: _recurrent("lstm", peepholes=True, only_return_final=True),
                  "exported", "exported"),
    "RecurrentLayer": (lambda: _recurrent("rnn", precompute_input=False), "exported", "exported"),
    "DimshuffleLayer": (lambda: L.DimshuffleLayer(img(), (0, 3, "x", 1, 2)), "exported",
                        "exported"),
    "FlattenLayer": (lambda: L.FlattenLayer(img(), outdim=3), "exported", "exported"),
    "PadLayer": (lambda: L.PadLayer(img(), width=[(1, 2), 0], val=0.5), "exported", "exported"),
    "ReshapeLayer": (lambda: L.ReshapeLayer(img(), ([0], -1, [3])), "exported", "exported"),
    "SliceLayer": (lambda: L.SliceLayer(img(), slice(6, 0, -2), axis=-1), "exported", "exported"),
    "BiasLayer": (lambda: L.BiasLayer(img(), shared_axes=(0, 1)), "exported", "exported"),
    "ExpressionLayer": (lambda: L.ExpressionLayer(
        img(), lambda x: pt.sqr(x[:, :, ::2, ::2]) - x.mean(axis=1, keepdims=True)[:, :, ::2, ::2],
        output_shape="auto"), "exported", "exported"),
    "InverseLayer": (lambda: _inverse(), "exported", "exported"),
    "NonlinearityLayer": (lambda: L.NonlinearityLayer(img(), nl.SELU()), "exported", "exported"),
    "ParametricRectifierLayer": (lambda: L.ParametricRectifierLayer(img()), "exported",
                                 "exported"),
    "RandomizedRectifierLayer": (lambda: L.RandomizedRectifierLayer(img()), "exported",
                                 "eval only"),
    "ScaleLayer": (lambda: L.ScaleLayer(img()), "exported", "exported"),
    "TransformerLayer": (_transformer, "exported", "exported"),
    "TPSTransformerLayer": (_tps, "exported", "exported"),
}


def _inverse():
    x = img()
    conv = L.Conv2DLayer(x, 3, 3, stride=2)
    pool = L.MaxPool2DLayer(x, 2)
    dense = L.DenseLayer(x, 5)
    return L.ConcatLayer([L.InverseLayer(conv, conv), L.InverseLayer(pool, pool),
                          L.InverseLayer(dense, dense)], axis=1)


def every_layer_class():
    """Every concrete layer class that lasres.layers' modules define."""
    seen = {}
    for m in pkgutil.iter_modules(L.__path__):
        mod = importlib.import_module("lasres.layers." + m.name)
        for name, c in vars(mod).items():
            if inspect.isclass(c) and issubclass(c, L.Layer) and \
                    c.__module__.startswith("lasres.layers") and not c.__name__.startswith("_") \
                    and c not in (L.Layer, L.MergeLayer, L.BaseConvLayer):
                seen[c.__name__] = c
    return seen


def test_every_layer_class_has_a_case():
    assert set(every_layer_class()) == set(CASES)


def _build(name, seed=0):
    lasres.random.set_rng(np.random.RandomState(seed))
    net = CASES[name][0]()
    randomise(net, seed)
    return net


@pytest.mark.parametrize("name", sorted(CASES))
def test_layer_class_exports(name, tmp_path):
    _, onnx_verdict, torch_verdict = CASES[name]
    net = _build(name)
    xs = sample(net, 3, 0)
    expected, = lasres_outputs([net], xs)
    # the thin-plate spline's bilinear sampling amplifies float32 round-off
    tol = 5e-5 if name == "TPSTransformerLayer" else 1e-5
    if onnx_verdict == "exported":
        got, = onnx_outputs(net, xs, tmp_path / "m.onnx")
        assert_close(got, expected, f"{name} ONNX", tol)
    else:
        check_refused(lambda: to_onnx(net, tmp_path / "m.onnx"), name, onnx_verdict)
    skip_without_torch()
    if torch_verdict in ("exported", "eval only"):
        module = to_torch(net, tmp_path / "torch")
        got, = torch_outputs(module, xs)
        assert_close(got, expected, f"{name} PyTorch", tol)
        if torch_verdict == "eval only":
            module.train()
            with pytest.raises(NotImplementedError, match="evaluation only|deterministic pass"):
                module(*[torch.from_numpy(x) for x in xs])
    else:
        check_refused(lambda: to_torch(net, tmp_path / "torch"), name, torch_verdict)
        assert not os.listdir(tmp_path) or os.listdir(tmp_path) == ["m.onnx"]


def check_refused(export, name, verdict):
    with pytest.raises(ExportError) as exc:
        export()
    msg = str(exc.value)
    assert "\n" not in msg and f"({name})" in msg, msg
    assert verdict.split(": ", 1)[1] in msg, msg


# --- the recurrent layers on masked sequences ------------------------------------------
RECURRENT = {
    "rnn-backwards-final": lambda x, m: L.RecurrentLayer(x, 4, mask_input=m, backwards=True,
                                                         only_return_final=True),
    "rnn-unrolled": lambda x, m: L.RecurrentLayer(x, 4, mask_input=m, unroll_scan=True),
    "lstm-no-precompute": lambda x, m: L.LSTMLayer(x, 4, mask_input=m, precompute_input=False,
                                                   backwards=True, grad_clipping=5.0),
    "lstm-init-layers": lambda x, m: L.LSTMLayer(
        x, 4, mask_input=m, hid_init=L.InputLayer((None, 4), name="h0"),
        cell_init=L.InputLayer((None, 4), name="c0"), peepholes=False),
    "gru-final-no-precompute": lambda x, m: L.GRULayer(x, 4, mask_input=m,
                                                       only_return_final=True,
                                                       precompute_input=False),
    "gru-learn-init": lambda x, m: L.GRULayer(x, 4, mask_input=m, learn_init=True),
}


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_layers_on_masked_sequences(name, tmp_path):
    lasres.random.set_rng(np.random.RandomState(3))
    x = L.InputLayer((None, 5, 3), name="x")
    mask = L.InputLayer((None, 5), name="mask")
    net = RECURRENT[name](x, mask)
    randomise(net, 3)
    xs = sample(net, 4, 3, mask_density=0.6)  # ragged: some sequences end early
    expected, = lasres_outputs([net], xs)
    got, = onnx_outputs(net, xs, tmp_path / "r.onnx")
    assert_close(got, expected, f"{name} ONNX")
    skip_without_torch()
    got, = torch_outputs(to_torch(net, tmp_path / "torch"), xs)
    assert_close(got, expected, f"{name} PyTorch")


def test_recurrent_onnx_takes_any_sequence_length(tmp_path):
    """The exported Loop runs over the input's length: one model, several lengths."""
    lasres.random.set_rng(np.random.RandomState(4))
    x = L.InputLayer((None, None, 3), name="x")
    mask = L.InputLayer((None, None), name="mask")
    net = L.LSTMLayer(x, 4, mask_input=mask)
    randomise(net, 4)
    import onnxruntime as ort
    to_onnx(net, tmp_path / "r.onnx")
    sess = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    module = None if torch is None else to_torch(net, tmp_path / "torch")
    for length in (2, 7):
        rng = np.random.RandomState(length)
        xs = [rng.randn(3, length, 3).astype("float32"),
              (rng.rand(3, length) < 0.7).astype("float32")]
        expected, = lasres_outputs([net], xs)
        got = sess.run(None, {"x": xs[0], "mask": xs[1]})[0]
        assert_close(got, expected, f"ONNX length {length}")
        if module is None:
            continue
        got, = torch_outputs(module, xs)
        assert_close(got, expected, f"PyTorch length {length}")


@needs_torch
def test_recurrent_training_step_matches_lasres(tmp_path):
    """A masked LSTM + GRU classifier: one legacy training step in PyTorch
    (the scans as Python loops, autograd through them) equals lasres's."""
    lasres.random.set_rng(np.random.RandomState(5))
    x = L.InputLayer((None, 5, 3), name="x")
    mask = L.InputLayer((None, 5), name="mask")
    h = L.LSTMLayer(x, 6, mask_input=mask)
    h = L.GRULayer(h, 5, mask_input=mask, only_return_final=True, backwards=True)
    net = L.DenseLayer(h, 3, nonlinearity=nl.softmax)
    randomise(net, 5)
    xs = sample(net, 4, 5, mask_density=0.6)
    y = np.array([0, 2, 1, 2], dtype="int32")
    check_training_step(net, to_torch(net, tmp_path / "torch"), xs, y)


# --- bad input -------------------------------------------------------------------------------
@needs_torch
def test_refusals_are_one_line_and_leave_nothing(tmp_path):
    l_in = L.InputLayer((None, 3), name="x")
    layer = L.ExpressionLayer(l_in, lambda v: pt.sort(v), name="sorted")
    for export, target in ((lambda p: to_onnx(layer, p), tmp_path / "m.onnx"),
                           (lambda p: to_torch(layer, p), tmp_path / "out")):
        with pytest.raises(ExportError) as exc:
            export(target)
        msg = str(exc.value)
        assert "\n" not in msg and "'sorted' (ExpressionLayer)" in msg and "SortOp" in msg, msg
    assert os.listdir(tmp_path) == []  # no half-written file or folder
    # an existing folder is kept unless force=True
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    ok = L.DenseLayer(l_in, 2)
    with pytest.raises(lasres.errors.LasresError, match="exists"):
        to_torch(ok, tmp_path / "out")
    assert os.listdir(tmp_path / "out") == ["mine.txt"]
    to_torch(ok, tmp_path / "out", force=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["model.py", "weights.pt"]
    # a failed forced export leaves the old folder as it was
    with pytest.raises(ExportError):
        to_torch(layer, tmp_path / "out", force=True)
    assert sorted(os.listdir(tmp_path / "out")) == ["model.py", "weights.pt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


# --- the docs table ---------------------------------------------------------------------------
def test_docs_table_is_this_files_verdicts():
    text = open(os.path.join(REPO, "docs", "EXPORT.md")).read()
    rows = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*`(\w+)`\s*\|([^|]*)\|([^|]*)\|", line)
        if m:
            rows[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    assert set(rows) == set(CASES)
    for name, (_, onnx_verdict, torch_verdict) in CASES.items():
        assert rows[name][0].startswith(onnx_verdict), (name, rows[name])
        assert rows[name][1].startswith(torch_verdict), (name, rows[name])


# --- scripts/export_torch.py -------------------------------------------------------------
def run_script(*args, cwd=None):
    import subprocess
    import sys
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "export_torch.py"),
                        *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=600)
    return p.returncode, p.stdout, p.stderr


@needs_torch
def test_export_torch_script(legacy_dir, tmp_path):
    """Legacy .pklz in, PyTorch out: the real Lasagne's probabilities; an
    existing folder needs --force; mistakes are one 'error:' line."""
    import json
    from lasres.export.torch_codegen import load_module
    io = np.load(legacy_dir / "normal_n1_k1_io.npz")
    tol = json.loads((legacy_dir / "normal_n1_k1_tol.json").read_text())["tolerance"]["prob_abs"]
    out = tmp_path / "net"
    weights = legacy_dir / "normal_n1_k1.pklz"
    rc, stdout, stderr = run_script("normal", 1, "--weights", weights, "--out", out, cwd=tmp_path)
    assert rc == 0, stderr
    assert "wrote" in stdout and sorted(os.listdir(out)) == ["model.py", "weights.pt"]
    got, = torch_outputs(load_module(str(out)), [io["X"]])
    np.testing.assert_allclose(got, io["prob_test"], rtol=0, atol=max(tol, 1e-5))
    stamp = os.path.getmtime(out / "weights.pt")
    rc, stdout, stderr = run_script("normal", 1, "--weights", weights, "--out", out, cwd=tmp_path)
    assert rc == 2 and stderr.startswith("error: ") and "--force" in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert os.path.getmtime(out / "weights.pt") == stamp
    rc, _, stderr = run_script("normal", 1, "--weights", weights, "--out", out, "--force",
                               cwd=tmp_path)
    assert rc == 0, stderr
    rc, _, stderr = run_script("squeeze", 1, "--out", tmp_path / "x", cwd=tmp_path)
    assert rc == 2 and "unknown model type 'squeeze'" in stderr and not (tmp_path / "x").exists()


def test_lasres_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, lasres, lasres.cli, lasres.export, lasres.models; "
            "sys.exit(int('torch' in sys.modules))")
    env = dict(os.environ, PYTHONPATH=REPO)
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


@needs_torch
def test_torch_dropout_and_noise_keep_lasagnes_semantics(tmp_path):
    """Training mode: dropout zeroes with probability p and rescales the rest
    by 1/(1-p), one mask value along shared_axes; Gaussian noise adds
    N(0, sigma); evaluation mode: identity."""
    x = L.InputLayer((None, 6, 5, 5), name="x")
    net = L.ConcatLayer([L.DropoutLayer(x, p=0.25), L.dropout_channels(x, p=0.5),
                         L.GaussianNoiseLayer(x, sigma=0.3)], axis=1)
    module = to_torch(net, tmp_path / "torch")
    X = torch.from_numpy(np.random.RandomState(0).rand(400, 6, 5, 5).astype("float32") + 1)
    torch.manual_seed(0)
    module.train()
    with torch.no_grad():
        y = module(X)
    drop, chan, noise = y[:, :6], y[:, 6:12], y[:, 12:]
    kept = drop != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.01
    assert torch.allclose(drop[kept], X[kept] / 0.75)
    per_channel = (chan != 0).float().mean(dim=(2, 3))
    assert set(per_channel.unique().tolist()) <= {0.0, 1.0}  # whole channels
    assert abs(per_channel.mean().item() - 0.5) < 0.05
    assert torch.allclose(chan[chan != 0], X[chan != 0] / 0.5)
    assert abs((noise - X).std().item() - 0.3) < 0.01
    module.eval()
    with torch.no_grad():
        assert torch.equal(module(X), torch.cat([X, X, X], dim=1))


#: classes whose exported PyTorch forward is checked in training too: one
#: legacy step through the layer under a softmax head (the runtime classes'
#: own backward, and the translated graphs' autograd)
TRAINED = ["BatchNormLayer", "KerasBatchNormLayer", "Conv1DLayer", "Conv2DLayer", "Conv3DLayer",
           "DilatedConv2DLayer",
           "TransposedConv2DLayer", "Pool2DLayer", "MaxPool2DLayer", "Pool3DLayer",
           "LocalResponseNormalization2DLayer", "NINLayer", "Upscale2DLayer", "EmbeddingLayer",
           "SpatialPyramidPoolingLayer", "ParametricRectifierLayer",
           "ExpressionLayer", "InverseLayer", "StandardizationLayer", "FeatureWTALayer",
           "CustomRecurrentLayer", "ScaleLayer"]


@needs_torch
@pytest.mark.parametrize("name", TRAINED)
def test_layer_class_training_step(name, tmp_path):
    lasres.random.set_rng(np.random.RandomState(6))
    body = CASES[name][0]()
    net = L.DenseLayer(body, 3, nonlinearity=nl.softmax)
    randomise(net, 6)
    xs = sample(net, 4, 6)
    y = np.array([0, 1, 2, 1], dtype="int32")
    check_training_step(net, to_torch(net, tmp_path / "torch"), xs, y)


@needs_torch
@pytest.mark.parametrize("type,depth,width,options", [
    ("normal", 1, 1, {}), ("bottleneck", 1, 1, {}), ("wide", 1, 2, {}), ("resnet", 1, 1, {}),
    ("resnet", 1, 1, {"preact": 1}), ("plain", 1, 1, {}), ("ror", 1, 1, {"dropout": 0.3}),
    ("ror-wrn", 1, 2, {"dropout": 0.3}), ("rir", 8, 1, {}), ("cnn", 8, 1, {}),
    ("ror", 1, 1, {"layout": "keras"})])
def test_every_lasres_architecture_to_torch(type, depth, width, options, tmp_path):
    """lasres's own architectures (ONNX: tests/test_export_onnx.py) in PyTorch."""
    from lasres.models import build
    lasres.random.set_rng(np.random.RandomState(0))
    net = build(type, depth, width, **options)
    randomise(net, 0)
    xs = sample(net, 2, 0)
    expected, = lasres_outputs([net], xs)
    got, = torch_outputs(to_torch(net, tmp_path / "torch"), xs)
    assert_close(got, expected, f"{type} {options}")
