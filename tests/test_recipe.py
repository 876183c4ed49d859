"""lasres.train.recipe (the legacy objective, written once), TrainerBase (what fit
may call) and data.prepare_dataset (one preparation for every dataset),
checked against values computed independently in NumPy."""
import numpy as np
import pytest

from _datasets import cifar10_subset, write_mnist
from lasres import layers as L
from lasres.data import (PreparedCifar10, PreparedDataset, compute_pixel_mean, legacy_split,
                         load_cifar10, prepare_dataset, preprocess, scale255)
from lasres.train.evaluation import loss_and_accuracy
from lasres.train.recipe import compile_predict, input_var, legacy_objective
from lasres.train import Trainer, TrainerBase


def _softmax_net():
    from lasres.nonlinearities import rectify, softmax
    l_in = L.InputLayer((None, 3, 4, 4))
    l = L.DenseLayer(l_in, 5, nonlinearity=rectify)
    l = L.BatchNormLayer(l)
    return L.DenseLayer(l, 3, nonlinearity=softmax)


def _numpy_forward(params, X):
    """The network of _softmax_net in NumPy, training mode (batch statistics)."""
    W1, b1, beta, gamma, _mean, _inv_std, W2, b2 = [np.asarray(p, np.float64) for p in params]
    h = np.maximum(X.reshape(len(X), -1) @ W1 + b1, 0)
    mu, var = h.mean(axis=0), h.var(axis=0)
    h = (h - mu) / np.sqrt(var + 1e-4) * gamma + beta
    z = h @ W2 + b2
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def test_legacy_objective_is_mean_ce_plus_l2_over_weights_and_bn_gammas():
    import pytensor
    rng = np.random.RandomState(0)
    net = _softmax_net()
    for p in L.get_all_params(net):  # gammas away from 1, so that their penalty shows
        p.set_value((rng.randn(*p.get_value().shape) * 0.5 + 0.3).astype(p.dtype))
    obj = legacy_objective(net, l2=1e-4)
    assert obj.inputs is input_var(net)
    assert obj.params == L.get_all_params(net, trainable=True)
    f = pytensor.function([obj.inputs, obj.targets], [obj.loss, obj.accuracy])
    X = rng.randn(6, 3, 4, 4).astype("float32")
    y = rng.randint(0, 3, 6).astype("int32")
    loss, acc = f(X, y)
    values = [p.get_value() for p in L.get_all_params(net)]
    probs = _numpy_forward(values, X)
    ce = -np.mean(np.log(probs[np.arange(6), y]))
    W1, _, _, gamma, _, _, W2, _ = [np.asarray(v, np.float64) for v in values]
    penalty = 1e-4 * sum((w ** 2).sum() for w in (W1, gamma, W2))  # no biases, beta, stats
    assert float(loss) == pytest.approx(ce + penalty, rel=1e-5)
    assert float(acc) == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    # l2=0 leaves the penalty out
    obj0 = legacy_objective(net, l2=0)
    f0 = pytensor.function([obj0.inputs, obj0.targets], obj0.loss)
    assert float(f0(X, y)) == pytest.approx(ce, rel=1e-5)


def test_compile_predict_uses_the_stored_statistics():
    rng = np.random.RandomState(1)
    net = _softmax_net()
    X = rng.randn(4, 3, 4, 4).astype("float32")
    values = [p.get_value() for p in L.get_all_params(net)]
    W1, b1, beta, gamma, mean, inv_std, W2, b2 = values
    h = np.maximum(X.reshape(4, -1) @ W1 + b1, 0)
    h = (h - mean) * inv_std * gamma + beta
    z = h @ W2 + b2
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(compile_predict(net, "c")(X), expected, rtol=1e-5)


def test_input_var_needs_one_input_layer():
    a, b = L.InputLayer((None, 2)), L.InputLayer((None, 2))
    with pytest.raises(ValueError, match="one InputLayer, found 2"):
        input_var(L.ElemwiseSumLayer([a, b]))


def test_loss_and_accuracy():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.5, 0.0]])
    y = np.array([0, 1, 2])
    loss, acc = loss_and_accuracy(probs, y)
    assert loss == pytest.approx(-(np.log(0.7) + np.log(0.3) + np.log(1e-30)) / 3)
    assert acc == pytest.approx(1 / 3)
    assert all(np.isnan(v) for v in loss_and_accuracy(np.zeros((0, 3)), np.zeros(0, int)))


def test_trainer_is_a_trainer_base():
    tr = Trainer(_softmax_net(), learning_rate=0.1, backend="c")
    assert isinstance(tr, TrainerBase)
    assert (tr.process_index, tr.num_devices, tr.exact_resume) == (0, 1, True)
    assert tr.num_params == L.count_params(tr.network)
    state = tr.optimizer_state()
    assert [s.shape for s in state] == [p.get_value().shape for p in tr.params]
    with pytest.raises(Exception, match="optimizer array 0 has shape"):
        tr.set_optimizer_state([np.zeros((1, 1))] + state[1:])
    tr.set_optimizer_state([np.ones_like(s) for s in state])
    assert all((s == 1).all() for s in tr.optimizer_state())


# --- data -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cifar_dir():
    return cifar10_subset(500, 100)


def test_prepare_dataset_test_only_with_a_given_mean(cifar_dir):
    raw = load_cifar10(cifar_dir)
    mean = np.full((3, 32, 32), 100.0, np.float32)
    d = prepare_dataset("cifar10", cifar_dir, pixel_mean=mean, test_only=True, limit=(None, 30))
    assert isinstance(d, PreparedCifar10) and not d.pixel_mean_computed
    assert len(d.X_train) == len(d.X_valid) == 0
    np.testing.assert_array_equal(d.X_test, raw.X_test[:30].astype(np.float32) - 100)


def test_prepare_dataset_test_only_computes_the_mean_of_the_legacy_training_part(cifar_dir):
    raw = load_cifar10(cifar_dir)
    with pytest.warns(UserWarning, match="no pixel mean file"):
        d = prepare_dataset("cifar10", cifar_dir, test_only=True, seed=5)
    X_tr, _, _, _ = legacy_split(raw.X_train, raw.y_train, 0.1, 5)
    np.testing.assert_array_equal(d.pixel_mean, compute_pixel_mean(X_tr))
    np.testing.assert_array_equal(d.X_test, preprocess(raw.X_test, compute_pixel_mean(X_tr)))
    s = prepare_dataset("cifar10", cifar_dir, preprocessing="scale255", limit=20)
    np.testing.assert_array_equal(s.X_test, scale255(raw.X_test[:20]))
    assert s.pixel_mean is None


def test_prepare_dataset_mnist_is_not_cifar10(tmp_path):
    write_mnist(tmp_path, 50, 20)
    pm = tmp_path / "mean.npy"
    with pytest.warns(UserWarning, match="computed"):
        d = prepare_dataset("mnist", tmp_path, pixel_mean_path=pm, limit=(40, 10), seed=1)
    assert type(d) is PreparedDataset and pm.exists() and d.pixel_mean_computed
    assert (len(d.X_train), len(d.X_valid), len(d.X_test)) == (36, 4, 10)
    assert d.X_train.shape[1:] == (1, 28, 28)
    with pytest.raises(ValueError, match="CIFAR-10 only"):
        prepare_dataset("mnist", tmp_path, layout="bin")
