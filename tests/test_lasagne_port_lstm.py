"""A Lasagne user's LSTM script ports by renaming imports.

The script below is written as one would for Lasagne 0.2 on Theano (a
bidirectional LSTM with masks and gradient clipping learning the "adding
problem": the sum of the two marked numbers of a variable-length sequence).
The test renames ``lasagne`` -> ``lasres`` and ``theano`` -> ``pytensor``,
runs it, and checks that a few training steps reduce the loss."""
import numpy as np

LASAGNE_SCRIPT = '''
import numpy as np
import theano
import theano.tensor as T
import lasagne

MIN_LENGTH, MAX_LENGTH = 5, 10
N_HIDDEN = 12
GRAD_CLIP = 100
BATCH_SIZE = 32


def gen_data(rng, n_batch=BATCH_SIZE):
    """Sequences of (value, marker) pairs; the target is the sum of the two
    values whose marker is 1; sequences shorter than MAX_LENGTH are masked."""
    X = np.concatenate([rng.uniform(size=(n_batch, MAX_LENGTH, 1)),
                        np.zeros((n_batch, MAX_LENGTH, 1))], axis=-1)
    mask = np.zeros((n_batch, MAX_LENGTH))
    y = np.zeros((n_batch,))
    for n in range(n_batch):
        length = rng.randint(MIN_LENGTH, MAX_LENGTH)
        mask[n, :length] = 1
        X[n, length:, 0] = 0
        first, second = rng.choice(length, 2, replace=False)
        X[n, first, 1] = X[n, second, 1] = 1
        y[n] = X[n, first, 0] + X[n, second, 0]
    X[:, :, 1] = X[:, :, 1] * mask
    return (X.astype(theano.config.floatX), y.astype(theano.config.floatX),
            mask.astype(theano.config.floatX))


def build_network():
    l_in = lasagne.layers.InputLayer(shape=(None, MAX_LENGTH, 2))
    l_mask = lasagne.layers.InputLayer(shape=(None, MAX_LENGTH))
    l_forward = lasagne.layers.LSTMLayer(
        l_in, N_HIDDEN, mask_input=l_mask, grad_clipping=GRAD_CLIP,
        nonlinearity=lasagne.nonlinearities.tanh, only_return_final=True)
    l_backward = lasagne.layers.LSTMLayer(
        l_in, N_HIDDEN, mask_input=l_mask, grad_clipping=GRAD_CLIP,
        nonlinearity=lasagne.nonlinearities.tanh, only_return_final=True,
        backwards=True)
    l_concat = lasagne.layers.ConcatLayer([l_forward, l_backward])
    l_out = lasagne.layers.DenseLayer(
        l_concat, num_units=1, nonlinearity=lasagne.nonlinearities.linear)
    return l_in, l_mask, l_out


def main(num_steps=25, learning_rate=0.02, seed=0):
    lasagne.random.set_rng(np.random.RandomState(seed))
    rng = np.random.RandomState(seed)
    l_in, l_mask, l_out = build_network()
    target_values = T.vector('target_output')
    prediction = lasagne.layers.get_output(l_out).flatten()
    cost = T.mean((prediction - target_values) ** 2)
    all_params = lasagne.layers.get_all_params(l_out, trainable=True)
    updates = lasagne.updates.adam(cost, all_params, learning_rate)
    train = theano.function([l_in.input_var, target_values, l_mask.input_var],
                            cost, updates=updates)
    compute_cost = theano.function(
        [l_in.input_var, target_values, l_mask.input_var], cost)
    X_val, y_val, mask_val = gen_data(rng, n_batch=200)
    costs = [float(compute_cost(X_val, y_val, mask_val))]
    for _ in range(num_steps):
        X, y, m = gen_data(rng)
        train(X, y, m)
    costs.append(float(compute_cost(X_val, y_val, mask_val)))
    return costs, lasagne.layers.get_all_param_values(l_out)
'''


def port(text):
    """What a user does: rename the imports (and the modules' names)."""
    return text.replace("lasagne", "lasres").replace("theano", "pytensor")


def test_script_is_written_for_lasagne():
    assert "import lasagne" in LASAGNE_SCRIPT and "import theano" in LASAGNE_SCRIPT
    assert "lasres" not in LASAGNE_SCRIPT and "pytensor" not in LASAGNE_SCRIPT


def test_ported_lstm_script_trains():
    namespace = {}
    exec(compile(port(LASAGNE_SCRIPT), "ported_lasagne_lstm.py", "exec"), namespace)
    costs, values = namespace["main"]()
    before, after = costs
    assert np.isfinite(after)
    assert after < 0.7 * before, costs
    # 2 LSTMs (12 gate arrays + 3 peepholes + 2 initial states each), dense W, b
    assert len(values) == 2 * 17 + 2
    assert values[0].shape == (2, 12) and values[-2].shape == (24, 1)
