"""The RoR seed's Keras 1.x weight files (issue 11): the seed's exact networks
(``layout=keras``), the HDF5 reader and writer, and the scripts, checked
against files and predictions of the real Keras 1.2.2 (../shared/fixtures/keras).

The larger configurations are checked against an independent replay of the
seed's code: :class:`SeedGraph` re-enacts the Keras calls of the seed's
``ror.py`` / ``ror_wrn.py`` (layer classes, automatic names, inbound layers,
weight shapes) and orders the layers as Keras 1's ``Container`` does (the
recursive longest-depth walk); on the fixtures it reproduces the real Keras's
layer lists exactly, so it is trusted for the configurations without a file.
"""
import json
import os
import pickle
import subprocess
import sys

import h5py
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from conftest import SHARED, require_shared
from lasres import cli
from lasres.errors import LasresError, WeightFileError
from lasres.weights.keras_h5 import (is_keras_h5, keras_layer_order, load_keras_h5, read_keras_h5,
                             save_keras_h5)
from lasres.layers import (count_params, get_all_layers, get_all_param_values, get_output,
                           set_all_param_values, KerasBatchNormLayer)
from lasres.models import build
from lasres.weights import detect_format, load_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS = SHARED / "fixtures" / "keras"
FIXTURES = {"ror_wrn_N1_k1": ("ror-wrn", 1, 1), "ror_N1": ("ror", 1, 1)}


@pytest.fixture(scope="module")
def keras_dir():
    require_shared()
    if not (KERAS / "README.md").is_file():
        pytest.fail(f"the Keras fixtures are missing: expected {KERAS}")
    return KERAS


def fixture(keras_dir, name):
    js = json.loads((keras_dir / f"{name}.json").read_text())
    io = dict(np.load(keras_dir / f"{name}_io.npz"))
    tol = json.loads((keras_dir / f"{name}_tol.json").read_text())["tolerance"]["prob_abs"]
    return js, io, tol


# --- an independent replay of the seed's Keras code -------------------------
class SeedGraph(object):
    """Replays Keras 1 layer calls: names ``<class lower>_<n>``, inbound lists,
    weight shapes ('th' ordering), then Keras's depth sort."""

    def __init__(self):
        self.layers, self.uid = [], {}

    def add(self, cls, inbound, weights=(), name=None, channels=None):
        if name is None:
            prefix = cls.lower()
            self.uid[prefix] = self.uid.get(prefix, 0) + 1
            name = f"{prefix}_{self.uid[prefix]}"
        if channels is None:
            channels = inbound[0]["channels"] if inbound else None
        layer = {"class": cls, "name": name, "inbound": inbound, "weights": list(weights),
                 "channels": channels}
        self.layers.append(layer)
        return layer

    def Input(self):
        self.uid["input"] = self.uid.get("input", 0) + 1
        return self.add("InputLayer", [], channels=3, name=f"input_{self.uid['input']}")

    def Convolution2D(self, x, f, size, name=None):
        return self.add("Convolution2D", [x], [(f, x["channels"], size, size), (f,)], name, f)

    def BatchNormalization(self, x):
        c = x["channels"]
        return self.add("BatchNormalization", [x], [(c,)] * 4)

    def Activation(self, x):
        return self.add("Activation", [x])

    def merge(self, xs):
        return self.add("Merge", list(xs))

    def MaxPooling2D(self, x):
        return self.add("MaxPooling2D", [x])

    def head(self, x, classes):
        x = self.add("AveragePooling2D", [x])
        x = self.add("Flatten", [x])
        return self.add("Dense", [x], [(x["channels"], classes), (classes,)], channels=classes)

    def model_layers(self, output):
        """Keras 1's Container: recursive walk from the output, a layer walked
        again whenever reached deeper than before (Keras re-walks at every new
        depth; the deepest walk decides), longest depth, ties in first-visit
        order; deepest first."""
        depths, first = {}, {}

        def walk(layer, depth):
            key = id(layer)
            depths[key] = max(depth, depths.get(key, depth))
            first.setdefault(key, len(first))
            for inp in layer["inbound"]:
                if id(inp) not in depths or depths[id(inp)] < depths[key] + 1:
                    walk(inp, depths[key] + 1)

        walk(output, 0)
        by_id = {id(l): l for l in self.layers}
        return sorted((by_id[k] for k in depths), key=lambda l: (-depths[id(l)], first[id(l)]))


def seed_ror_wrn(N, k, classes=10):
    """ror_wrn.create_pre_residual_of_residual((3, 32, 32), classes, N, k, 0.0)."""
    K = SeedGraph()

    def block(x, f, initial):
        init = x
        if initial or x["channels"] != f:
            init = K.Convolution2D(x, f, 1)
        y = K.Convolution2D(K.Activation(K.BatchNormalization(x)), f, 3)
        y = K.Convolution2D(K.Activation(K.BatchNormalization(y)), f, 3)
        return K.merge([init, y])

    x = K.Convolution2D(K.Input(), 16, 3)
    l1 = K.Convolution2D(x, 64 * k, 1, name="conv0_level1_shortcut")
    l2 = K.Convolution2D(x, 16 * k, 1, name="conv1_level2_shortcut")
    for i in range(N):
        x = block(x, 16 * k, i == 0)
    x = K.MaxPooling2D(K.merge([x, l2]))
    l2 = K.Convolution2D(x, 32 * k, 1, name="conv2_level2_shortcut")
    for i in range(N):
        x = block(x, 32 * k, False)
    x = K.MaxPooling2D(K.merge([x, l2]))
    l2 = K.Convolution2D(x, 64 * k, 1, name="conv3_level2_shortcut")
    for i in range(N):
        x = block(x, 64 * k, False)
    x = K.merge([K.merge([x, l2]), l1])
    out = K.head(K.Activation(K.BatchNormalization(x)), classes)
    return K.model_layers(out)


def seed_ror(N, classes=10):
    """ror.create_residual_of_residual((3, 32, 32), classes, N, 0.0)."""
    K = SeedGraph()

    def block(x, f, initial=False, is_last=False):
        init = x
        if initial or x["channels"] != f:
            init = K.Convolution2D(x, f, 1)
        y = K.Activation(K.BatchNormalization(K.Convolution2D(x, f, 3)))
        y = K.BatchNormalization(K.Convolution2D(y, f, 3))
        m = K.merge([init, y])
        return m if is_last else K.Activation(m)

    x = K.Activation(K.BatchNormalization(K.Convolution2D(K.Input(), 16, 3)))
    l1 = K.Convolution2D(x, 64, 1, name="conv0_level1_shortcut")
    l2 = K.Convolution2D(x, 16, 1, name="conv1_level2_shortcut")
    for i in range(9 * N - 1):
        x = block(x, 16, initial=(i == 0))
    x = K.MaxPooling2D(K.Activation(K.merge([x, l2])))
    l2 = K.Convolution2D(x, 32, 1, name="conv2_level2_shortcut")
    for i in range(9 * N - 1):
        x = block(x, 32)
    x = K.MaxPooling2D(K.Activation(K.merge([x, l2])))
    l2 = K.Convolution2D(x, 64, 1, name="conv3_level2_shortcut")
    for i in range(9 * N - 1):
        x = block(x, 64, is_last=(i == N - 1))
    x = K.merge([K.merge([x, l2]), l1])
    return K.model_layers(K.head(K.Activation(x), classes))


def lasres_layer_list(net):
    """(name, weight shapes in Keras order) of the network in Keras order."""
    return [(l.name, [tuple(p.get_value().shape) for p in l.params])
            for l in keras_layer_order(net)]


def seed_layer_list(layers):
    return [(l["name"], [tuple(w) for w in l["weights"]]) for l in layers]


# --- the seed's graphs ----------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_replay_matches_real_keras_layer_list(keras_dir, name):
    """The replay of the seed's code gives the real Keras's model.layers
    (names, order, inbound layers, weight shapes)."""
    js, _, _ = fixture(keras_dir, name)
    typ, N, k = FIXTURES[name]
    layers = seed_ror_wrn(N, k) if typ == "ror-wrn" else seed_ror(N)
    assert [l["name"] for l in layers] == [l["name"] for l in js["layers"]]
    assert [[i["name"] for i in l["inbound"]] for l in layers] == \
        [l["inbound"] for l in js["layers"]]
    assert [[tuple(w) for w in l["weights"]] for l in layers] == \
        [[tuple(w["shape"]) for w in l["weights"]] for l in js["layers"]]


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_keras_layout_is_the_seed_graph(keras_dir, name):
    """The lasres network: one layer per Keras layer, same names, classes,
    inbound layers, weight shapes, configuration, and Keras's order."""
    js, _, _ = fixture(keras_dir, name)
    typ, N, k = FIXTURES[name]
    net = build(typ, N, k, layout="keras")
    order = keras_layer_order(net)
    assert [l.name for l in order] == [l["name"] for l in js["layers"]]
    classes = {"InputLayer": "InputLayer", "Convolution2D": "Conv2DLayer",
               "BatchNormalization": "KerasBatchNormLayer", "Activation": "NonlinearityLayer",
               "Merge": "ElemwiseSumLayer", "MaxPooling2D": "MaxPool2DLayer",
               "AveragePooling2D": "Pool2DLayer", "Flatten": "FlattenLayer",
               "Dense": "DenseLayer"}
    for l, kl in zip(order, js["layers"]):
        assert type(l).__name__ == classes[kl["class"]], kl["name"]
        inbound = [i.name for i in getattr(l, "input_layers", [])] or \
            ([l.input_layer.name] if getattr(l, "input_layer", None) is not None else [])
        assert inbound == kl["inbound"], kl["name"]
        assert [tuple(p.get_value().shape) for p in l.params] == \
            [tuple(w["shape"]) for w in kl["weights"]], kl["name"]
        if kl["class"] == "Convolution2D":
            assert l.stride == tuple(kl["subsample"]) and l.pad == "same" and l.flip_filters
            assert l.filter_size == tuple(kl["kernel"]) and kl["bias"] and l.b is not None
        if kl["class"] == "BatchNormalization":
            assert l.epsilon == kl["epsilon"] == 1e-3 and l.momentum == kl["momentum"]
        if kl["class"] in ("MaxPooling2D", "AveragePooling2D"):
            assert l.pool_size == tuple(kl["pool_size"]) and l.stride == tuple(kl["strides"])
    assert count_params(net) == js["total_params"]
    assert count_params(net, trainable=True) == js["trainable_params"]


@pytest.mark.parametrize("typ,N,k,printed", [
    ("ror-wrn", 6, 2, "Residual-in-Residual-Network-40-2"),   # the published weights
    ("ror-wrn", 2, 4, "Residual-in-Residual-Network-16-4"),
    ("ror", 2, 1, "Residual-in-Residual-Network-110"),
])
def test_larger_configurations_match_the_seed(typ, N, k, printed):
    """Names, Keras order, weight shapes and parameter counts of larger
    nets against the replay of the seed's code (and its printed depth)."""
    layers = seed_ror_wrn(N, k) if typ == "ror-wrn" else seed_ror(N)
    net = build(typ, N, k, layout="keras")
    assert lasres_layer_list(net) == seed_layer_list(layers)
    total = sum(int(np.prod(w)) for l in layers for w in l["weights"])
    assert count_params(net) == total
    convs = sum(l["class"] == "Convolution2D" for l in layers)
    if typ == "ror-wrn":
        assert convs == 6 * N + 8 and printed.endswith(f"-{6 * N + 4}-{k}")
    else:  # the seed counts 8 + 2 per block
        assert convs == 6 * (9 * N - 1) + 8 and printed.endswith(f"-{convs}")
    assert count_params(net) == (wrn_params(N, k) if typ == "ror-wrn" else ror_params(N))


def wrn_params(N, k, classes=10):
    """Parameters of ror_wrn.py's network, counted from its code."""
    total = 16 * 3 * 9 + 16 + (64 * k * 16 + 64 * k)          # stem, level-1 shortcut
    cin = 16
    for f in (16 * k, 32 * k, 64 * k):
        total += f * cin + f                                     # level-2 shortcut
        for i in range(N):
            c = cin if i == 0 else f
            if i == 0:                                           # initial / width change
                total += f * c + f
            total += 4 * c + (f * c * 9 + f) + 4 * f + (f * f * 9 + f)
        cin = f
    return total + 4 * 64 * k + 64 * k * classes + classes


def ror_params(N, classes=10):
    """Parameters of ror.py's network, counted from its code."""
    total = 16 * 3 * 9 + 16 + 4 * 16 + (64 * 16 + 64)
    cin = 16
    for f in (16, 32, 64):
        total += f * cin + f
        for i in range(9 * N - 1):
            c = cin if i == 0 else f
            if i == 0:
                total += f * c + f
            total += (f * c * 9 + f) + 4 * f + (f * f * 9 + f) + 4 * f
        cin = f
    return total + 64 * classes + classes


def test_parameter_formulas_match_real_keras(keras_dir):
    assert wrn_params(1, 1) == fixture(keras_dir, "ror_wrn_N1_k1")[0]["total_params"]
    assert ror_params(1) == fixture(keras_dir, "ror_N1")[0]["total_params"]


def test_ror_drops_the_relu_of_stage3_block_N_minus_1():
    """ror.py's is_last = (i == N - 1): in ror 2 the sum of stage 3's second
    block feeds the next block directly; the stage's last block keeps its ReLU."""
    net = build("ror", 2, layout="keras")
    merges = [l for l in get_all_layers(net) if type(l).__name__ == "ElemwiseSumLayer"]
    consumers = {}
    for l in get_all_layers(net):
        for i in getattr(l, "input_layers", [getattr(l, "input_layer", None)]):
            consumers.setdefault(i, []).append(l)
    stage3 = [m for m in merges if m.output_shape[1] == 64 and m.output_shape[2] == 8]
    # 17 block sums, then the level-2 and the level-1 sums
    assert len(stage3) == 17 + 2
    relu_after = [any(type(c).__name__ == "NonlinearityLayer" for c in consumers[m])
                  for m in stage3[:17]]
    assert relu_after == [i != 1 for i in range(17)]


# --- reading the fixtures: predictions of the real Keras ------------------------
def _functions(net):
    x = pt.tensor4("x")
    flat = [l for l in get_all_layers(net) if type(l).__name__ == "FlattenLayer"][0]
    test = pytensor.function([x], [get_output(net, x, deterministic=True),
                                   get_output(flat, x, deterministic=True)])
    train = pytensor.function([x], [
        get_output(net, x, deterministic=False, batch_norm_update_averages=False),
        get_output(flat, x, deterministic=False, batch_norm_update_averages=False)])
    return test, train


@pytest.fixture(scope="module")
def loaded(keras_dir):
    out = {}
    for name, (typ, N, k) in FIXTURES.items():
        net = build(typ, N, k, layout="keras")
        set_all_param_values(net, load_keras_h5(keras_dir / f"{name}.h5", net))
        out[name] = (net,) + _functions(net)
    return out


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_fixture_predictions_reproduced(keras_dir, loaded, name):
    """prob (test phase), prob_train (training phase), feat_test / feat_train."""
    js, io, tol = fixture(keras_dir, name)
    net, test, train = loaded[name]
    assert np.array_equal(io["Xp"], io["X"] / np.float32(255))
    prob, feat = test(io["Xp"])
    prob_train, feat_train = train(io["Xp"])
    assert np.abs(prob - io["prob"]).max() <= tol
    assert np.abs(prob_train - io["prob_train"]).max() <= tol
    # features: relative to their scale (they feed a Dense layer scaled for unit logits)
    for ours, theirs in ((feat, io["feat_test"]), (feat_train, io["feat_train"])):
        assert np.abs(ours - theirs).max() <= 1e-5 * max(1.0, np.abs(theirs).max())
    # the test phase is informative: it differs from the training phase
    assert np.abs(io["prob"] - io["prob_train"]).max() > 100 * tol


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_values_are_the_files_arrays(keras_dir, name):
    """Every array of the file lands, unchanged, in the parameter of the same
    Keras name (the mapping is by structure; names only check it here)."""
    typ, N, k = FIXTURES[name]
    net = build(typ, N, k, layout="keras")
    values = load_keras_h5(keras_dir / f"{name}.h5", net)
    from lasres.layers import get_all_params
    by_name = {p.name.replace(".", "_"): v for p, v in zip(get_all_params(net), values)}
    n = 0
    for layer in read_keras_h5(keras_dir / f"{name}.h5"):
        for w, v in zip(layer.weight_names, layer.values):
            assert np.array_equal(by_name[w], v), w
            n += 1
    assert n == len(values) == fixture(keras_dir, name)[0]["counts"]["arrays"]


def test_format_detection(keras_dir, tmp_path):
    path = keras_dir / "ror_wrn_N1_k1.h5"
    assert is_keras_h5(path) and detect_format(path) == "keras"
    with pytest.raises(WeightFileError, match="needs the network"):
        load_weights(path)
    net = build("ror-wrn", 1, 1, layout="keras")
    values = load_weights(path, network=net)
    assert len(values) == 58
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    assert not is_keras_h5(other) and detect_format(other) == "hdf5"


# --- 'tf' ordering, TensorFlow kernels -----------------------------------------
def test_tf_ordering_file(keras_dir, loaded, tmp_path):
    """A 'tf'-ordered file with TensorFlow (correlation) kernels, written
    by hand from the fixture, gives the same predictions."""
    src = keras_dir / "ror_wrn_N1_k1.h5"
    dst = tmp_path / "tf.h5"
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        g.attrs["layer_names"] = f.attrs["layer_names"]
        for name in f.attrs["layer_names"]:
            grp = g.create_group(name.decode())
            grp.attrs["weight_names"] = f[name].attrs["weight_names"]
            for w in f[name].attrs["weight_names"]:
                v = f[name][w][()]
                if v.ndim == 4:  # th (out, in, r, c) convolution -> tf (r, c, in, out) correlation
                    v = v[:, :, ::-1, ::-1].transpose(2, 3, 1, 0)
                grp.create_dataset(w.decode(), data=v)
    net = build("ror-wrn", 1, 1, layout="keras")
    set_all_param_values(net, load_keras_h5(dst, net))
    ref, _, _ = loaded["ror_wrn_N1_k1"]
    for a, b in zip(get_all_param_values(net), get_all_param_values(ref)):
        assert np.array_equal(a, b)
    # and save_keras_h5 writes that file back, bit for bit
    back = tmp_path / "tf_back.h5"
    save_keras_h5(net, back, dim_ordering="tf")
    _assert_same_file(dst, back)


# --- writing -------------------------------------------------------------------
def _assert_same_file(a, b):
    with h5py.File(a, "r") as f, h5py.File(b, "r") as g:
        assert list(f.attrs["layer_names"]) == list(g.attrs["layer_names"])
        for name in f.attrs["layer_names"]:
            fw, gw = list(f[name].attrs["weight_names"]), list(g[name].attrs["weight_names"])
            assert fw == gw, name
            for w in fw:
                x, y = f[name][w], g[name][w]
                assert x.dtype == y.dtype and x.shape == y.shape, w
                assert np.array_equal(x[()], y[()]), w


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_save_keras_h5_writes_the_seed_layout(keras_dir, loaded, tmp_path, name):
    """Loading the fixture and saving it back gives the fixture file's
    layout and arrays exactly (layer_names, weight_names, dtypes, shapes,
    kernel flip, variance), and the file reads back into the same values."""
    net = loaded[name][0]
    out = tmp_path / f"{name}.h5"
    save_keras_h5(net, out)
    _assert_same_file(keras_dir / f"{name}.h5", out)
    with h5py.File(out, "r") as f:  # what Keras 1's load_weights decodes
        assert f.attrs["layer_names"].dtype.kind == "S"
        assert all(f[n].attrs["weight_names"].dtype.kind in "Sf" for n in f.attrs["layer_names"])
    again = build(*FIXTURES[name], layout="keras")
    set_all_param_values(again, load_keras_h5(out, again))
    for a, b in zip(get_all_param_values(again), get_all_param_values(net)):
        assert np.array_equal(a, b)


def test_save_keras_h5_of_a_trained_network_round_trips(tmp_path):
    """A fresh network (random He/Glorot weights, a few BN statistics moved)
    survives save -> load exactly; the BN variance stays a variance."""
    net = build("ror-wrn", 1, 2, layout="keras")
    rng = np.random.RandomState(0)
    for l in get_all_layers(net):
        if isinstance(l, KerasBatchNormLayer):
            l.running_std.set_value(rng.uniform(0.5, 2, l.running_std.get_value().shape)
                                    .astype(l.running_std.dtype))
    path = tmp_path / "w.h5"
    save_keras_h5(net, path)
    other = build("ror-wrn", 1, 2, layout="keras")
    set_all_param_values(other, load_keras_h5(path, other))
    for a, b in zip(get_all_param_values(other), get_all_param_values(net)):
        assert np.array_equal(a, b.astype(np.float32))
    with pytest.raises(WeightFileError, match="does not exist"):
        save_keras_h5(net, tmp_path / "missing" / "w.h5")
    with pytest.raises(WeightFileError, match="no Keras 1 counterpart"):
        save_keras_h5(build("ror-wrn", 1, 2), tmp_path / "paper.h5")


# --- bad files: one-line errors ----------------------------------------------------
def test_wrong_size_names_first_layer_and_both_shapes(keras_dir):
    net = build("ror-wrn", 1, 2, layout="keras")
    with pytest.raises(WeightFileError) as e:
        load_keras_h5(keras_dir / "ror_wrn_N1_k1.h5", net)
    msg = str(e.value)
    assert "\n" not in msg
    assert "convolution2d_3" in msg and "(16, 16, 3, 3)" in msg and "(32, 16, 3, 3)" in msg


def test_wrong_architecture_and_depth(keras_dir):
    with pytest.raises(WeightFileError) as e:   # ror file into ror-wrn
        load_keras_h5(keras_dir / "ror_N1.h5", build("ror-wrn", 1, 1, layout="keras"))
    assert "\n" not in str(e.value) and "needs" in str(e.value)
    with pytest.raises(WeightFileError) as e:   # deeper network: file runs out
        load_keras_h5(keras_dir / "ror_wrn_N1_k1.h5", build("ror-wrn", 2, 1, layout="keras"))
    assert "\n" not in str(e.value) and "does not fit" in str(e.value)
    with pytest.raises(WeightFileError, match="layout=keras"):  # paper layout
        load_keras_h5(keras_dir / "ror_wrn_N1_k1.h5", build("ror-wrn", 1, 1))


def test_truncated_and_foreign_files(keras_dir, tmp_path):
    data = (keras_dir / "ror_wrn_N1_k1.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[:len(data) // 2])
    net = build("ror-wrn", 1, 1, layout="keras")
    for path in (cut, tmp_path / "missing.h5"):
        with pytest.raises(WeightFileError) as e:
            load_keras_h5(path, net)
        assert "\n" not in str(e.value)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(WeightFileError, match="not a Keras weight file"):
        load_keras_h5(plain, net)


# --- the scripts ------------------------------------------------------------------
def write_cifar_py(folder, X, labels):
    """A cifar-10-batches-py/ holding X (uint8) as its test batch (and as
    five tiny training batches)."""
    d = folder / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rows = X.reshape(len(X), -1).astype(np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(d / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": [int(v) for v in labels],
                         b"batch_label": name.encode(),
                         b"filenames": [b"%d.png" % i for i in range(len(X))]}, f, protocol=2)
    return folder


@pytest.fixture(scope="module")
def cifar_dirs(keras_dir, tmp_path_factory):
    out = {}
    for name in FIXTURES:
        _, io, _ = fixture(keras_dir, name)
        X = io["X"]
        assert np.array_equal(X, np.round(X)) and X.min() >= 0 and X.max() <= 255
        out[name] = write_cifar_py(tmp_path_factory.mktemp(name), X.astype(np.uint8),
                                   io["prob"].argmax(1))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_test_model_reproduces_keras_predictions(keras_dir, cifar_dirs, tmp_path, name, capsys):
    """test_model.py TYPE N k --weights fixture.h5 picks the keras layout and
    the x/255 preprocessing by itself; --save-predictions holds Keras's prob."""
    _, io, tol = fixture(keras_dir, name)
    typ, N, k = FIXTURES[name]
    out = tmp_path / "pred.npy"
    rc = cli.main_wrapper(cli.test_main, [typ, str(N), str(k), "--data", str(cifar_dirs[name]),
                                          "--weights", str(keras_dir / f"{name}.h5"),
                                          "--save-predictions", str(out)])
    stdout = capsys.readouterr().out
    assert rc == 0
    assert "layout=keras" in stdout and "x / 255, no mean subtracted" in stdout
    assert "accuracy" in stdout and "100.00%" in stdout  # labels = Keras's argmax
    probs = np.load(out)
    assert probs.dtype == np.float32 and probs.shape == (16, 10)
    assert np.abs(probs - io["prob"]).max() <= tol
    assert not [p for p in os.listdir(tmp_path) if p != "pred.npy"]  # no temporary left


def run_script(name, *args, cwd=None):
    p = subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, timeout=900,
                       env=dict(os.environ, PYTHONPATH=REPO))
    return p.returncode, p.stdout, p.stderr


@pytest.mark.slow
def test_bad_files_are_one_line_errors_in_the_script(keras_dir, cifar_dirs, tmp_path):
    data = (keras_dir / "ror_wrn_N1_k1.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[:5000])
    cases = [(["ror-wrn", 1, 2, "--weights", keras_dir / "ror_wrn_N1_k1.h5"], "(32, 16, 3, 3)"),
             (["ror-wrn", 1, 1, "--weights", keras_dir / "ror_N1.h5"], "does not fit"),
             (["ror-wrn", 1, 1, "--weights", cut], "cut.h5"),
             (["normal", 1, "--weights", keras_dir / "ror_wrn_N1_k1.h5"], "counterpart"),
             (["ror-wrn", 1, 1, "--weights", keras_dir / "ror_wrn_N1_k1.h5",
               "--save-predictions", tmp_path / "no" / "p.npy"], "does not exist")]
    for args, needle in cases:
        rc, stdout, stderr = run_script("test_model.py", *args, "--data",
                                        cifar_dirs["ror_wrn_N1_k1"])
        lines = stderr.strip().splitlines()
        assert rc == 2, (args, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], \
            (args, stderr)


@pytest.mark.slow
def test_save_predictions_for_other_formats(keras_dir, cifar_dirs, tmp_path, capsys):
    """--save-predictions with a lasres checkpoint and a .pklz (paper layout)."""
    from lasres.weights import save_checkpoint, save_pklz
    net = build("ror-wrn", 1, 1)
    values = get_all_param_values(net)
    save_pklz(tmp_path / "w.pklz", values)
    mean = np.zeros((3, 32, 32), np.float32)
    save_checkpoint(tmp_path / "w.h5", values, arch={"type": "ror-wrn", "depth": 1, "width": 1},
                    pixel_mean=mean)
    np.save(tmp_path / "pixel_mean.npy", mean)
    _, io, _ = fixture(keras_dir, "ror_wrn_N1_k1")
    x = pt.tensor4("x")
    ref = pytensor.function([x], get_output(net, x, deterministic=True))(io["X"])
    for w in ("w.pklz", "w.h5"):
        out = tmp_path / f"{w}.npy"
        rc = cli.main_wrapper(cli.test_main, ["ror-wrn", "1", "1", "--data",
                                              str(cifar_dirs["ror_wrn_N1_k1"]), "--weights",
                                              str(tmp_path / w), "--save-predictions", str(out)])
        assert rc == 0
        stdout = capsys.readouterr().out
        assert "per-pixel mean subtracted" in stdout
        probs = np.load(out)
        assert probs.dtype == np.float32 and probs.shape == (16, 10)
        assert np.abs(probs - ref).max() < 1e-5


@pytest.mark.slow
def test_train_keras_seed_recipe_then_test_model(cifar_dirs, tmp_path, capsys):
    """train_nn.py ror-wrn 1 1 --option layout=keras --recipe keras-seed:
    Adam, the seed's augmentation and preprocessing; its checkpoint then
    loads in test_model (which picks the layout from it) and exports to Keras."""
    out = tmp_path / "run"
    rc = cli.main_wrapper(cli.train_main, ["ror-wrn", "1", "1", "--option", "layout=keras",
                                           "--recipe", "keras-seed", "--epochs", "1", "--data",
                                           str(cifar_dirs["ror_wrn_N1_k1"]), "--out", str(out),
                                           "--no-plot", "--valid-fraction", "0.25"])
    stdout = capsys.readouterr().out
    assert rc == 0, stdout[-2000:]
    assert "x / 255" in stdout and "recipe keras-seed (adam, augmentation keras-seed)" in stdout
    from lasres.weights import load_checkpoint
    ck = load_checkpoint(out / "best.h5")
    assert ck.arch["layout"] == "keras" and ck.pixel_mean is None
    assert ck.extra["schedule"] == [[0, 0.001]] and ck.extra["augment"] == "keras-seed"
    n_params = len(ck.param_values)
    assert len(ck.optimizer_state) == 2 * 44 + 1  # Adam: m and v per trainable param, and t
    assert n_params == 58
    rc = cli.main_wrapper(cli.test_main, ["ror-wrn", "1", "1", "--data",
                                          str(cifar_dirs["ror_wrn_N1_k1"]), "--weights",
                                          str(out / "best.h5")])
    stdout = capsys.readouterr().out
    assert rc == 0 and "layout=keras" in stdout and "x / 255" in stdout
    net = build("ror-wrn", 1, 1, layout="keras")
    set_all_param_values(net, ck.param_values)
    save_keras_h5(net, tmp_path / "exported.h5")
    assert detect_format(tmp_path / "exported.h5") == "keras"


# --- the seed's training pieces ---------------------------------------------------
def test_keras_bn_training_updates_running_statistics():
    """Training phase: running_mean and running_std (variance + eps, Keras 1.2
    on Theano) move by momentum 0.99; the output uses the batch statistics."""
    from lasres.layers import InputLayer
    l = KerasBatchNormLayer(InputLayer((None, 3, 4, 4)))
    x = pt.tensor4("x")
    f = pytensor.function([x], get_output(l, x, deterministic=False))
    X = np.random.RandomState(1).normal(2, 3, (5, 3, 4, 4)).astype(pytensor.config.floatX)
    y = f(X)
    mean, var = X.mean((0, 2, 3)), X.var((0, 2, 3))
    ref = (X - mean[None, :, None, None]) / np.sqrt(var + 1e-3)[None, :, None, None]
    assert np.allclose(y, ref, atol=1e-5)
    assert np.allclose(l.running_mean.get_value(), 0.01 * mean, atol=1e-6)
    assert np.allclose(l.running_std.get_value(), 0.99 + 0.01 * (var + 1e-3), atol=1e-6)
    g = pytensor.function([x], get_output(l, x, deterministic=True))
    rm, rv = l.running_mean.get_value(), l.running_std.get_value()
    ref = (X - rm[None, :, None, None]) / np.sqrt(rv + 1e-3)[None, :, None, None]
    assert np.allclose(g(X), ref, atol=1e-5)
    assert np.array_equal(l.running_mean.get_value(), rm)  # the test phase updates nothing


def test_keras_seed_augmentation():
    """Rotation and shift per image, as Keras 1's ImageDataGenerator: a
    NumPy re-derivation of the sampling, and the identity for zero ranges."""
    from lasres.data import augment_batch, keras_seed_transform
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (6, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(keras_seed_transform(X, rng, 0, 0, 0), X)
    out = keras_seed_transform(X, np.random.RandomState(5))
    draws = np.random.RandomState(5)
    for i in range(len(X)):
        theta = np.deg2rad(draws.uniform(-15, 15))
        tx, ty = draws.uniform(-5 / 32, 5 / 32) * 32, draws.uniform(-5 / 32, 5 / 32) * 32
        c, s, o = np.cos(theta), np.sin(theta), 16.5
        expect = np.empty_like(X[i])
        for r in range(32):
            for q in range(32):
                # input coordinate of output (r, q): centre, rotate the shifted point
                a, b = r - o + tx, q - o + ty
                rr, qq = c * a - s * b + o, s * a + c * b + o
                rr = min(max(int(np.round(rr)), 0), 31)
                qq = min(max(int(np.round(qq)), 0), 31)
                expect[:, r, q] = X[i][:, rr, qq]
        # nearest-neighbour rounding at exact .5 ties may differ: allow a few pixels
        assert np.mean(np.any(out[i] != expect, axis=0)) < 0.01
    assert not np.array_equal(out, X)
    b = augment_batch(X, np.random.RandomState(5), mode="keras-seed")
    assert np.array_equal(b, out)


def test_recipe_defaults_and_explicit_flags():
    p = cli.train_parser()
    p.set_defaults(**cli.RECIPES["keras-seed"])
    args = p.parse_args(["ror-wrn", "--lr-schedule", "0:0.001,150:0.0001"])
    assert args.optimizer == "adam" and args.l2 == 0.0 and args.augment == "keras-seed"
    assert args.lr_schedule == "0:0.001,150:0.0001" and args.epochs == 300
    assert cli.preprocessing_for({"layout": "keras"}) == "scale255"
    assert cli.preprocessing_for({}) == "mean"
    with pytest.raises(LasresError, match="layout"):
        build("ror", 1, layout="caffe")


def test_save_keras_h5_of_ror_wrn_40_2_has_the_seed_layout(tmp_path):
    """The file save_keras_h5 writes for RoR-3-WRN-40-2 lists the layers and
    weights the seed's Keras model has (the replay of its code), in its order."""
    net = build("ror-wrn", 6, 2, layout="keras")
    path = tmp_path / "RoR-WRN-40-2-Weights.h5"
    save_keras_h5(net, path)
    seed = seed_ror_wrn(6, 2)
    layers = read_keras_h5(path)
    assert [l.name for l in layers] == [l["name"] for l in seed]
    assert [[tuple(v.shape) for v in l.values] for l in layers] == \
        [[tuple(w) for w in l["weights"]] for l in seed]
    assert all(w.startswith(l.name + "_") for l in layers for w in l.weight_names)
    assert sum(v.size for l in layers for v in l.values) == wrn_params(6, 2)
    assert cli.find_weights("ror-wrn", 6, 2, search=(str(tmp_path),)) == str(path)


@pytest.mark.slow
def test_test_model_picks_the_layout_for_default_weights(keras_dir, cifar_dirs, tmp_path,
                                                         monkeypatch, capsys):
    """Without --weights, a Keras file found at weights/TYPE_nN_kK.h5 also
    selects layout=keras by its content."""
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "ror-wrn_n1_k1.h5").write_bytes(
        (keras_dir / "ror_wrn_N1_k1.h5").read_bytes())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "p.npy"
    rc = cli.main_wrapper(cli.test_main, ["ror-wrn", "1", "1", "--data",
                                          str(cifar_dirs["ror_wrn_N1_k1"]),
                                          "--save-predictions", str(out)])
    assert rc == 0 and "layout=keras" in capsys.readouterr().out
    _, io, tol = fixture(keras_dir, "ror_wrn_N1_k1")
    assert np.abs(np.load(out) - io["prob"]).max() <= tol


def test_keras_bn_gradients():
    """Numerical gradient check of KerasBatchNormLayer, both phases (float64)."""
    from pytensor.gradient import verify_grad
    from lasres.layers import InputLayer
    rng = np.random.RandomState(3)
    X = rng.normal(1, 2, (4, 3, 3, 3))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(0, 0.1, 3)
    mean, var = rng.normal(0, 0.1, 3), rng.uniform(0.5, 2, 3)
    for deterministic in (True, False):
        def f(x, g, b, deterministic=deterministic):
            l = KerasBatchNormLayer(InputLayer((None, 3, 3, 3)), gamma=g, beta=b,
                                    running_mean=mean, running_std=var)
            return get_output(l, x, deterministic=deterministic,
                              batch_norm_update_averages=False)
        verify_grad(f, [X, gamma, beta], rng=rng, abs_tol=1e-6, rel_tol=1e-6)


def test_whole_model_file_is_read(keras_dir, loaded, tmp_path):
    """model.save / ModelCheckpoint files keep the weights in 'model_weights'
    (the seed's training script checkpointed that way): read as well."""
    src = keras_dir / "ror_wrn_N1_k1.h5"
    dst = tmp_path / "model.h5"
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        g.attrs["model_config"] = b'{"class_name": "Model"}'
        f.copy(f["/"], g, name="model_weights")
        for k, v in f.attrs.items():
            g["model_weights"].attrs[k] = v
    assert detect_format(dst) == "keras"
    net = build("ror-wrn", 1, 1, layout="keras")
    values = load_keras_h5(dst, net)
    for a, b in zip(values, get_all_param_values(loaded["ror_wrn_N1_k1"][0])):
        assert np.array_equal(a, b)


def test_tf_dense_rows_follow_keras_flatten():
    """A 'tf' file flattens (h, w, c): the Dense rows are permuted so that
    the lasres (c, h, w) flattening gives the same products, and back."""
    from lasres.weights.keras_h5 import _dense_tf_rows, _to_keras, _to_lasres
    from lasres.layers import DenseLayer, FlattenLayer, InputLayer
    dense = DenseLayer(FlattenLayer(InputLayer((None, 3, 2, 4))), num_units=5)
    rng = np.random.RandomState(0)
    Wk, b = rng.normal(size=(24, 5)), rng.normal(size=5)
    Wl, _ = _to_lasres("dense", dense, [Wk, b], "tf", True)
    F = rng.normal(size=(3, 2, 4))
    assert np.allclose(F.transpose(1, 2, 0).ravel() @ Wk, F.ravel() @ Wl)
    assert np.array_equal(_to_keras("dense", dense, [Wl, b], "tf", True)[0], Wk)
    assert _dense_tf_rows(DenseLayer(FlattenLayer(InputLayer((None, 3, 1, 1))), 5)) is None


def test_keras_file_that_hangs_libhdf5_is_one_error(keras_dir, tmp_path):
    # A Keras weight file whose weight_names attribute is a variable-length
    # string (kept in the global heap), the heap damaged as in
    # tests/fuzz_cases/hdf5_hang_bitflip.h5: libhdf5 would loop forever.
    import h5py
    from _memlimit import run_bounded, shrink_global_heap_free_space
    good = tmp_path / "vlen.h5"
    good.write_bytes((keras_dir / "ror_wrn_N1_k1.h5").read_bytes())
    with h5py.File(good, "r+") as f:
        name = next(n for n in f if len(f[n].attrs["weight_names"]))
        f[name].attrs["weight_names"] = f"{name}_W"  # a str: variable length, in the heap
    bad = tmp_path / "hang.h5"
    bad.write_bytes(shrink_global_heap_free_space(good.read_bytes()))
    code = f"""
from lasres.errors import WeightFileError
from lasres.weights.keras_h5 import read_keras_h5
from lasres.weights import detect_format
print(detect_format({str(bad)!r}))
try:
    read_keras_h5({str(bad)!r})
    print('LOADED')
except WeightFileError as e:
    print('ERR', e)
"""
    p, seconds = run_bounded(code, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    fmt, result = p.stdout.splitlines()[-2:]
    assert fmt == "keras" and result.startswith("ERR "), p.stdout
    assert "Keras weight file did not finish reading in 5 s: corrupt?" in result
    assert seconds < 60
