"""The exporters on real Lasagne code: the Lasagne Recipes' ten model-zoo
builders and the deep-residual-learning ``build_cnn``, read out of their
files with the imports renamed (``_recipes``), with seeded random
parameters of sensible scale; ONNX Runtime's and the exported PyTorch
module's outputs equal lasres's deterministic outputs within 1e-5 of the
output scale; one legacy training step in PyTorch equals lasres's; and
the published ResNet-32 weights of the Recipes, exported both ways, give
lasres's and the real Lasagne's predictions on the shared test images."""
import numpy as np
import pytest

import lasres.layers as L
import lasres.random
from _export_checks import (assert_close, check_training_step, lasres_outputs, needs_torch,
                            onnx_outputs, randomise, sample, skip_without_torch, torch,
                            torch_outputs)
from _recipes import SHARED, ZOO, build, load

from lasres.export import to_torch


BATCH = {"resnet50": 1, "c3d": 1}


def _outputs(out):
    """The output, and the logits below it where the output is a softmax layer."""
    outs = [out]
    if isinstance(out, L.NonlinearityLayer):
        outs.append(out.input_layer)
    return outs


@pytest.mark.parametrize("name", sorted(ZOO))
def test_recipes_net_exports_both_ways(name, tmp_path):
    lasres.random.set_rng(np.random.RandomState(0))
    out, _ = build(name)
    randomise(out, 0)
    outs = _outputs(out)
    xs = sample(outs, BATCH.get(name, 2), 0)
    expected = lasres_outputs(outs, xs)
    has_bn = any(isinstance(l, L.BatchNormLayer) for l in L.get_all_layers(out))
    for fold in ((False, True) if has_bn else (False,)):
        got = onnx_outputs(outs, xs, tmp_path / f"{name}.onnx", fold_bn=fold)
        for g, e, o in zip(got, expected, outs):
            assert_close(g, e, f"{name} ONNX fold_bn={fold} {type(o).__name__}")
    skip_without_torch()
    module = to_torch(outs, tmp_path / "torch")
    for g, e, o in zip(torch_outputs(module, xs), expected, outs):
        assert_close(g, e, f"{name} PyTorch {type(o).__name__}")
    source = (tmp_path / "torch" / "model.py").read_text()
    imports = {line.split()[1] for line in source.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports == {"torch", "torch.nn", "torch.nn.functional"}, imports


@needs_torch
@pytest.mark.parametrize("name,kwargs", [("deep_residual_learning", {}),
                                         ("unet", {"input_shape": (None, 1, 16, 16)})])
def test_recipes_training_step_matches_lasres(name, kwargs, tmp_path):
    """Cross-entropy + 1e-4 L2 (Lasagne's regularizable tags, batch-norm
    gammas included), Nesterov momentum 0.9, batch-norm running averages:
    loss, gradients, updated parameters and statistics agree."""
    lasres.random.set_rng(np.random.RandomState(1))
    out, _ = build(name, **kwargs)
    randomise(out, 1)
    (X,) = sample(out, 4, 1)
    n_rows = 4 if out.output_shape[0] is None else out.output_shape[0]
    rows = n_rows if name != "unet" else 4 * 16 * 16
    y = np.random.RandomState(2).randint(0, out.output_shape[1], rows).astype("int32")
    module = to_torch(out, tmp_path / "torch")
    reg = module.regularizable_parameters()
    n_reg = len(L.get_all_params(out, regularizable=True))
    assert len(reg) == n_reg
    check_training_step(out, module, X, y)


def _cifar10_test_and_mean():
    """The 10,000 test images (test_batch order) and the script's pixel mean:
    ``np.mean(x[0:50000], axis=0)`` of the float32 images x/255, which NumPy
    sums row after row in float32 (a float64 mean differs by up to 1.6e-5,
    which moves the published net's probabilities by 2e-4)."""
    import pickle
    from _datasets import cifar10_subset
    folder = cifar10_subset(50000, 10000) / "cifar-10-batches-py"

    def rows(name):
        with open(folder / name, "rb") as f:
            return pickle.load(f, encoding="latin1")["data"]
    train = np.concatenate([rows(f"data_batch_{j}") for j in range(1, 6)])
    assert train.shape == (50000, 3072)
    acc = np.zeros(3072, np.float32)
    for r in train:
        acc += r.astype(np.float32) / np.float32(255)
    mean = (acc / np.float32(50000)).reshape(3, 32, 32)
    return rows("test_batch").reshape(-1, 3, 32, 32), mean


@pytest.mark.slow
def test_published_resnet32_weights_both_ways(tmp_path):
    """The Recipes' published ResNet-32 (option-A shortcuts as an
    ExpressionLayer), its preprocessing (x/255 minus the mean of all 50,000
    training images): ONNX Runtime and PyTorch give lasres's probabilities
    (1e-5) and the real Lasagne's (its 10,000 saved test probabilities)."""
    folder = SHARED / "fixtures" / "recipes"
    from lasres.layers import set_all_param_values
    net = load(ZOO["deep_residual_learning"][0])["build_cnn"](n=5)
    with np.load(folder / "cifar_model_n5.npz") as f:
        set_all_param_values(net, [f[f"arr_{i}"] for i in range(len(f.files))])
    X_test, mean = _cifar10_test_and_mean()
    n = 500
    X = X_test[:n].astype(np.float32) / np.float32(255) - mean
    lasagne_prob = np.load(folder / "cifar_model_n5_lasagne_test_prob.npy")[:n]
    expected, = lasres_outputs([net], [X])
    np.testing.assert_allclose(expected, lasagne_prob, rtol=0, atol=2e-5)
    got = {"ONNX": onnx_outputs(net, [X], tmp_path / "resnet32.onnx", fold_bn=True)[0]}
    if torch is not None:
        got["PyTorch"], = torch_outputs(to_torch(net, tmp_path / "torch"), [X])
    for what, got in got.items():
        assert_close(got, expected, f"ResNet-32 {what} vs lasres")
        np.testing.assert_allclose(got, lasagne_prob, rtol=0, atol=2e-5, err_msg=what)
        assert (got.argmax(1) == lasagne_prob.argmax(1)).all(), what
