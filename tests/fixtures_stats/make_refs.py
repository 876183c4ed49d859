"""Make ``lasagne_refs.npz``, the references of ``tests/test_float32_statistics.py``,
with the real Lasagne 0.2.dev1 on Theano 1.0.5 (issue 33).

    bash ../shared/tools/lasagne-reference/setup.sh /tmp/lasagne-ref
    OMP_NUM_THREADS=1 PYTHONPATH=../shared/tools/lasagne-reference \\
        /tmp/lasagne-ref/bin/python tests/fixtures_stats/make_refs.py tests/fixtures_stats/lasagne_refs.npz

For every net of ``_draws.CONFIGS`` x ``_draws.SEEDS`` (the seed's legacy
pre-activation ResNets, built as its ``models.py`` did with the cuDNN layer
replaced by ``Conv2DLayer(flip_filters=False)``, its default), it draws the
parameters and a batch (``_draws.draw``), then runs three legacy training
steps -- mean categorical cross-entropy + 1e-4 L2 over every regularizable
parameter, Nesterov momentum 0.9 at rate 0.01, the BN running averages
updated -- once with ``floatX=float64`` and once with ``floatX=float32``
(each in a fresh process: Theano fixes floatX at import), from the same
float32 numbers. It keeps, per net: both precisions' three losses; per
parameter ``||p32 - p64||``, ``||p64 - p0||`` and ``||p64||``
(``_draws.net_stats``); and float64 checksums of the float64 parameters
(``_draws.checksums``). A few hundred kB in all; the arrays themselves stay
in a temporary folder.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _draws  # noqa: E402


def seed_network(kind, n, k, input_var, size):
    """The seed's models.py (Lasagne), cuDNN conv -> Conv2DLayer(flip_filters=False)."""
    import lasagne
    from lasagne.init import HeNormal
    from lasagne.layers import (BatchNormLayer, Conv2DLayer, DenseLayer, ElemwiseSumLayer,
                                GlobalPoolLayer, InputLayer, NonlinearityLayer, batch_norm)
    from lasagne.nonlinearities import rectify, softmax
    he_norm = HeNormal(gain='relu')

    def ConvLayer(*args, **kwargs):
        return Conv2DLayer(*args, flip_filters=False, **kwargs)

    def block(l, filters, stride, first, shortcut, bottleneck):
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
            l = block(l, width, stride, first, 'projection' if proj else 'identity', bottleneck)
    l = NonlinearityLayer(BatchNormLayer(l), rectify)
    return DenseLayer(GlobalPoolLayer(l), num_units=10, W=HeNormal(), nonlinearity=softmax)


def worker(out_dir):
    """Run every net in this process's floatX; save losses and final params."""
    import theano
    import theano.tensor as T
    import lasagne
    from lasagne.layers import get_all_layers, get_all_params, get_output

    floatX = theano.config.floatX
    for kind, n, k in _draws.CONFIGS:
        x, y = T.tensor4('inputs'), T.ivector('targets')
        net = seed_network(kind, n, k, x, _draws.SIZE)
        loss = lasagne.objectives.categorical_crossentropy(get_output(net), y).mean()
        loss = loss + _draws.L2 * lasagne.regularization.regularize_layer_params(
            get_all_layers(net), lasagne.regularization.l2)
        params = get_all_params(net, trainable=True)
        updates = lasagne.updates.nesterov_momentum(loss, params, learning_rate=_draws.LR,
                                                    momentum=_draws.MOMENTUM)
        velocities = [v for v in updates if all(v is not p for p in params)]
        step = theano.function([x, y], loss, updates=updates)
        all_params = get_all_params(net)
        specs = []
        for layer in get_all_layers(net):
            for p in layer.get_params():
                specs.append((type(layer).__name__, p.name.split('.')[-1],
                              tuple(p.get_value().shape)))
        assert len(specs) == len(all_params)
        with open(os.path.join(out_dir, f'{kind}_n{n}_k{k}_specs.json'), 'w') as f:
            json.dump(specs, f)
        for seed in _draws.SEEDS:
            values, X, Y = _draws.draw(specs, _draws.net_seed(kind, n, k, seed))
            for p, v in zip(all_params, values):
                p.set_value(v.astype(floatX))
            for v in velocities:
                v.set_value(np.zeros_like(v.get_value()))
            losses = [float(step(X.astype(floatX), Y)) for _ in range(_draws.STEPS)]
            np.savez(os.path.join(out_dir, f'{kind}_n{n}_k{k}_s{seed}_{floatX}.npz'),
                     losses=np.array(losses), *[p.get_value() for p in all_params])
            print(kind, n, k, seed, floatX, losses, flush=True)


def main(out_path):
    import theano
    import lasagne
    versions = {'lasagne': lasagne.__version__, 'theano': theano.__version__,
                'numpy': np.__version__}
    tmp = tempfile.mkdtemp(prefix='lasagne-refs-')
    for floatX in ('float64', 'float32'):
        env = dict(os.environ)
        env['THEANO_FLAGS'] = ','.join(f for f in (env.get('THEANO_FLAGS', ''),
                                                   f'floatX={floatX}') if f)
        subprocess.run([sys.executable, __file__, '--worker', tmp], env=env, check=True)
    refs = {}
    for kind, n, k in _draws.CONFIGS:
        with open(os.path.join(tmp, f'{kind}_n{n}_k{k}_specs.json')) as f:
            specs = [tuple(s[:2]) + (tuple(s[2]),) for s in json.load(f)]
        for seed in _draws.SEEDS:
            name = f'{kind}_n{n}_k{k}_s{seed}'
            z64 = np.load(os.path.join(tmp, f'{name}_float64.npz'))
            z32 = np.load(os.path.join(tmp, f'{name}_float32.npz'))
            p0, _, _ = _draws.draw(specs, _draws.net_seed(kind, n, k, seed))
            p64 = [z64[f'arr_{i}'] for i in range(len(specs))]
            p32 = [z32[f'arr_{i}'] for i in range(len(specs))]
            assert all(a.dtype == np.float64 for a in p64) and all(a.dtype == np.float32 for a in p32)
            refs[f'{name}/losses64'] = z64['losses']
            refs[f'{name}/losses32'] = z32['losses']
            refs[f'{name}/stats'] = _draws.net_stats(p0, p64, p32)
            refs[f'{name}/checksums64'] = _draws.checksums(p64)
    cpu = ''
    try:
        cpu = subprocess.run(['lscpu'], capture_output=True, text=True).stdout
        cpu = next((l.split(':', 1)[1].strip() for l in cpu.splitlines()
                    if l.startswith('Model name')), '')
    except OSError:
        pass
    meta = {'configs': _draws.CONFIGS, 'seeds': _draws.SEEDS, 'batch': _draws.BATCH,
            'size': _draws.SIZE, 'lr': _draws.LR, 'momentum': _draws.MOMENTUM, 'l2': _draws.L2,
            'steps': _draws.STEPS, 'versions': versions, 'cpu': cpu,
            'theano_flags': os.environ.get('THEANO_FLAGS', '')}
    np.savez_compressed(out_path, meta=np.array(json.dumps(meta)), **refs)
    print('wrote', out_path, os.path.getsize(out_path), 'bytes; arrays in', tmp)


if __name__ == '__main__':
    if sys.argv[1] == '--worker':
        worker(sys.argv[2])
    else:
        main(sys.argv[1])
