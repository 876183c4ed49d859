"""A real Lasagne script ports by renaming imports: a small U-Net-style
denoiser (dilated and transposed convolutions, upscaling, skip
concatenations) written as a Lasagne 0.2 user wrote it -- ``import
lasagne``, ``import theano`` -- is turned into a lasres script by renaming
the imports only, executed, and trained a few steps on real CIFAR-10 images
(grey, 16x16): the loss must go down."""
import re

import numpy as np
import pytest

from _datasets import cifar10_subset

LASAGNE_SCRIPT = '''
import pickle

import numpy as np
import theano
import theano.tensor as T
import lasagne
from lasagne.layers import (InputLayer, Conv2DLayer, MaxPool2DLayer, TransposedConv2DLayer,
                            Upscale2DLayer, ConcatLayer, DilatedConv2DLayer, PadLayer,
                            get_output, get_all_params, get_all_param_values)
from lasagne.nonlinearities import sigmoid


def load_grey_images(folder, count):
    with open(folder + "/data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    x = batch["data"][:count].reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    x = x.mean(axis=1, keepdims=True)
    # 2x2 average down to 16x16
    return x.reshape(-1, 1, 16, 2, 16, 2).mean(axis=(3, 5)).astype(theano.config.floatX)


def build_unet(input_var=None):
    net = {}
    net["input"] = InputLayer((None, 1, 16, 16), input_var)
    net["enc1"] = Conv2DLayer(net["input"], 8, 3, pad="same")
    net["pool1"] = MaxPool2DLayer(net["enc1"], 2)
    net["enc2"] = Conv2DLayer(net["pool1"], 16, 3, pad="same")
    net["pool2"] = MaxPool2DLayer(net["enc2"], 2)
    net["ctx"] = DilatedConv2DLayer(PadLayer(net["pool2"], 2), 16, 3, dilation=2)
    net["up2"] = TransposedConv2DLayer(net["ctx"], 16, 2, stride=2)
    net["cat2"] = ConcatLayer([net["up2"], net["enc2"]])
    net["dec2"] = Conv2DLayer(net["cat2"], 16, 3, pad="same")
    net["up1"] = Upscale2DLayer(net["dec2"], 2)
    net["cat1"] = ConcatLayer([net["up1"], net["enc1"]])
    net["dec1"] = Conv2DLayer(net["cat1"], 8, 3, pad="same")
    net["output"] = Conv2DLayer(net["dec1"], 1, 1, nonlinearity=sigmoid)
    return net


def train(folder, steps=8, seed=0):
    lasagne.random.set_rng(np.random.RandomState(seed))
    clean = load_grey_images(folder, 64)
    rng = np.random.RandomState(seed)
    noisy = np.clip(clean + 0.2 * rng.randn(*clean.shape), 0, 1).astype(theano.config.floatX)
    x, y = T.tensor4("x"), T.tensor4("y")
    net = build_unet(x)
    prediction = get_output(net["output"])
    loss = lasagne.objectives.squared_error(prediction, y).mean()
    params = get_all_params(net["output"], trainable=True)
    updates = lasagne.updates.adam(loss, params, learning_rate=0.01)
    train_fn = theano.function([x, y], loss, updates=updates)
    losses = [float(train_fn(noisy, clean)) for _ in range(steps)]
    shapes = [v.shape for v in get_all_param_values(net["output"])]
    return losses, shapes, net["up2"].output_shape, net["ctx"].output_shape
'''


def port(source):
    """Rename the imports, as the README tells Lasagne users to."""
    source = re.sub(r"\blasagne\b", "lasres", source)
    return re.sub(r"\btheano\b", "pytensor", source)


@pytest.fixture(scope="module")
def cifar_folder():
    return str(cifar10_subset(500, 100) / "cifar-10-batches-py")


def test_the_script_uses_lasagne_names_only():
    assert "lasres" not in LASAGNE_SCRIPT and "pytensor" not in LASAGNE_SCRIPT
    ported = port(LASAGNE_SCRIPT)
    assert "import lasres" in ported and "import pytensor.tensor as T" in ported


@pytest.mark.slow
def test_ported_unet_trains(cifar_folder):
    namespace = {}
    exec(compile(port(LASAGNE_SCRIPT), "unet_lasagne_ported.py", "exec"), namespace)
    losses, shapes, up2_shape, ctx_shape = namespace["train"](cifar_folder)
    assert ctx_shape == (None, 16, 4, 4) and up2_shape == (None, 16, 8, 8)
    # parameter order and shapes, layer by layer (Lasagne's: W then b, in graph order)
    assert shapes == [(8, 1, 3, 3), (8,), (16, 8, 3, 3), (16,), (16, 16, 3, 3), (16,),
                      (16, 16, 2, 2), (16,), (16, 32, 3, 3), (16,), (8, 24, 3, 3), (8,),
                      (1, 8, 1, 1), (1,)]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses
