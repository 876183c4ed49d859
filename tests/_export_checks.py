"""Shared checks of the exporters: a network's deterministic outputs from
lasres, ONNX Runtime and the exported PyTorch module, and one legacy
training step (cross-entropy + 1e-4 L2, Nesterov 0.9) in lasres and torch."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import lasres.layers as L
from lasres import objectives, regularization, updates
from lasres.layers import get_all_layers, get_output

try:  # the test extra installs torch; without it the PyTorch halves are skipped
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def skip_without_torch():
    if torch is None:
        pytest.skip("torch is not installed: the ONNX half ran")


TOL = 1e-5  # of the output's scale


def inputs_of(net):
    outs = net if isinstance(net, list) else [net]
    return [layer for layer in get_all_layers(outs) if isinstance(layer, L.InputLayer)]


def randomise(net, seed):
    """Seeded parameters of sensible scale: He-normal weights (activations
    keep their scale through the net), small biases, batch-norm gammas
    near 1, betas and means near 0, inv_std near 1."""
    rng = np.random.RandomState(seed)
    outs = net if isinstance(net, list) else [net]
    for layer in get_all_layers(outs):
        for p in layer.get_params():
            v = p.get_value()
            kind = (p.name or "").split(".")[-1]
            if v.dtype.kind != "f":
                continue
            if kind in ("gamma", "inv_std", "scales", "running_std"):
                new = rng.uniform(0.8, 1.2, v.shape)
            elif kind in ("beta", "mean", "b") or v.ndim <= 1:
                new = rng.normal(0, 0.1, v.shape)
            else:
                if isinstance(layer, L.DenseLayer) or v.ndim == 2:
                    fan_in = v.shape[0]
                else:
                    fan_in = int(np.prod(v.shape[1:]))
                new = rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), v.shape)
            p.set_value(new.astype(v.dtype))


def sample(net, batch, seed, mask_density=0.7):
    """Random inputs for the network's InputLayers (masks of 0/1 for a
    2-d float input named 'mask'; ints for integer inputs)."""
    rng = np.random.RandomState(seed)
    xs = []
    for layer in inputs_of(net):
        shape = [batch if i == 0 and s is None else s for i, s in enumerate(layer.shape)]
        if any(s is None for s in shape):
            raise ValueError(f"give {layer.name or 'the input'} a shape: {layer.shape}")
        dtype = layer.input_var.dtype
        if dtype.startswith("int"):
            xs.append(rng.randint(0, 10, shape).astype(dtype))
        elif layer.name == "mask":
            m = (rng.rand(*shape) < mask_density).astype(dtype)
            m[:, 0] = 1
            xs.append(m)
        else:
            xs.append(rng.randn(*shape).astype(dtype))
    return xs


def lasres_outputs(net, xs):
    outs = net if isinstance(net, list) else [net]
    fn = pytensor.function([i.input_var for i in inputs_of(net)],
                           get_output(outs, deterministic=True))
    return fn(*xs)


def assert_close(got, expected, what, tol=TOL):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    scale = float(np.abs(expected).max()) or 1.0
    err = float(np.abs(got.astype(np.float64) - expected).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} x scale {scale:.3g}"


def onnx_outputs(net, xs, path, **kwargs):
    import onnxruntime as ort
    from lasres.export import to_onnx
    to_onnx(net, path, **kwargs)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})


def torch_outputs(module, xs):
    import torch
    module.eval()
    with torch.no_grad():
        out = module(*[torch.from_numpy(x) for x in xs])
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out]


def lasres_training_step(net, xs, y, lr=0.1, l2=1e-4, momentum=0.9):
    """One legacy step: (loss, {param: grad}, {param: new value}, {stat: new value})."""
    targets = pt.ivector("y")
    prediction = get_output(net)  # training mode: BN batch statistics and running averages
    loss = objectives.categorical_crossentropy(prediction, targets).mean()
    loss = loss + l2 * regularization.regularize_layer_params(get_all_layers(net),
                                                             regularization.l2)
    params = L.get_all_params(net, trainable=True)
    grads = pytensor.grad(loss, params)
    upd = updates.nesterov_momentum(grads, params, learning_rate=lr, momentum=momentum)
    stats = [p for p in L.get_all_params(net) if p not in params]
    fn = pytensor.function([i.input_var for i in inputs_of(net)] + [targets], [loss] + grads,
                           updates=upd)
    out = fn(*xs, y)
    return (float(out[0]), dict(zip(params, out[1:])), {p: p.get_value() for p in params},
            {p: p.get_value() for p in stats})


def torch_training_step(module, xs, y, lr=0.1, l2=1e-4, momentum=0.9):
    """The same step in torch: the generated l2 helper and torch's SGD with
    Nesterov momentum (from zero velocity it is Lasagne's rule)."""
    import torch
    module.train()
    model_globals = type(module).forward.__globals__
    out = module(*[torch.from_numpy(x) for x in xs])
    picked = out[torch.arange(len(y)), torch.from_numpy(y).long()]
    loss = -torch.log(picked).mean() + l2 * model_globals["l2_penalty"](module)
    opt = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr,
                          momentum=momentum, nesterov=True)
    opt.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().numpy().copy() for n, p in module.named_parameters()
             if p.grad is not None}
    opt.step()
    state = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    return loss.item(), grads, state


def check_training_step(net, module, xs, y, tol=1e-4):
    """Loss, gradients, updated parameters and BN statistics agree (``xs``:
    an array or a list, one per InputLayer)."""
    xs = xs if isinstance(xs, list) else [xs]
    import copy
    before = {p: p.get_value() for p in L.get_all_params(net)}
    t_loss, t_grads, t_state = torch_training_step(copy.deepcopy(module), xs, y)
    try:
        loss, grads, new, stats = lasres_training_step(net, xs, y)
    finally:
        for p, v in before.items():
            p.set_value(v)
    keys = module.lasres_keys
    assert abs(loss - t_loss) <= 1e-5 * max(1.0, abs(loss)), (loss, t_loss)
    for p, g in grads.items():
        assert_close(t_grads[keys[p]], g, f"gradient of {p.name}", tol)
    for p, v in {**new, **stats}.items():
        assert_close(t_state[keys[p]], v, f"updated {p.name}", tol)
    return loss
