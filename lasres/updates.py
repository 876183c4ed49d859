"""Update rules (Lasagne's ``lasagne.updates``).

Each returns an ``OrderedDict`` mapping shared variables to their update
expressions, to pass as ``pytensor.function(..., updates=...)``. The formulas
are written exactly as Lasagne wrote them (same operations in the same
order), which matters for bit-level reproduction in float32.
"""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable

from . import utils
from .ops.fused import fused_elemwise

__all__ = ["sgd", "apply_momentum", "momentum", "apply_nesterov_momentum",
           "nesterov_momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamax", "amsgrad",
           "norm_constraint", "total_norm_constraint", "get_or_compute_grads"]


def get_or_compute_grads(loss_or_grads, params):
    """Gradients of a loss w.r.t. ``params``, or the given list of gradients."""
    if any(not isinstance(p, SharedVariable) for p in params):
        raise ValueError("params must contain shared variables only. If it contains "
                         "arbitrary parameter expressions, then lasres.utils."
                         "collect_shared_vars() may help you.")
    if isinstance(loss_or_grads, list):
        if not len(loss_or_grads) == len(params):
            raise ValueError(f"Got {len(loss_or_grads)} gradient expressions for "
                             f"{len(params)} parameters")
        return loss_or_grads
    return pytensor.grad(loss_or_grads, params)


def _zeros_like(param):
    value = param.get_value(borrow=True)
    return pytensor.shared(np.zeros(value.shape, dtype=value.dtype), shape=param.type.shape)


def sgd(loss_or_grads, params, learning_rate):
    """``param ← param - learning_rate · grad``."""
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, grad in zip(params, grads):
        updates[param] = param - learning_rate * grad
    return updates


def apply_momentum(updates, params=None, momentum=0.9):
    """Add classical momentum to an update dictionary."""
    if params is None:
        params = updates.keys()
    updates = OrderedDict(updates)
    for param in params:
        velocity = _zeros_like(param)
        x = momentum * velocity + updates[param]
        updates[velocity] = x - param
        updates[param] = x
    return updates


def momentum(loss_or_grads, params, learning_rate, momentum=0.9):
    """SGD with classical momentum."""
    updates = sgd(loss_or_grads, params, learning_rate)
    return apply_momentum(updates, momentum=momentum)


def apply_nesterov_momentum(updates, params=None, momentum=0.9):
    """Add Nesterov momentum to an update dictionary:
    ``v ← momentum·v + (update - param)``, ``param ← momentum·v + update``."""
    if params is None:
        params = updates.keys()
    updates = OrderedDict(updates)
    for param in params:
        velocity = _zeros_like(param)
        x = momentum * velocity + updates[param] - param
        updates[velocity] = x
        updates[param] = momentum * x + updates[param]
    return updates


def nesterov_momentum(loss_or_grads, params, learning_rate, momentum=0.9):
    """SGD with Nesterov momentum (the legacy ResNet recipe's optimizer).

    The arithmetic of ``apply_nesterov_momentum(sgd(...))`` as Theano's
    optimizer compiled it for Lasagne, built as one fused node per parameter:
    ``v ← momentum·v - learning_rate·grad``,
    ``param ← momentum·v + (param - learning_rate·grad)``. Lasagne wrote the
    velocity as ``momentum·v + (param - learning_rate·grad) - param``; Theano's
    algebraic canonicalisation cancelled the two ``param`` terms (PyTensor's
    still does, for the stock-op form). Evaluated literally in float32 the
    cancellation costs one rounding of ``param`` in every velocity, which
    doubled the float32-vs-float64 error of the trained parameters.
    """
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    rates = {}  # the learning rate cast and broadcast once per (dtype, 0-d or 1-d)

    def rule(p, g, v, lr_, m):
        dp = lr_ * g
        x = m * v - dp
        return x, m * x + (p - dp)

    for param, grad in zip(params, grads):
        velocity = _zeros_like(param)
        # a filter runs as one flat loop: PyTensor's elementwise loop over
        # a 4-d filter with a broadcast learning rate ran twice as slow
        flat = param.ndim > 1
        key = (param.dtype, min(param.ndim, 1))
        if key not in rates:
            rates[key] = learning_rate if not hasattr(learning_rate, "type") else \
                pt.shape_padleft(pt.cast(learning_rate, param.dtype), key[1])
        args = [t.reshape((-1,)) if flat else t for t in (param, grad, velocity)]
        new_v, new_p = fused_elemwise(rule, *args, rates[key], momentum)
        if flat:
            new_v, new_p = new_v.reshape(param.shape), new_p.reshape(param.shape)
        updates[param] = new_p
        updates[velocity] = new_v
    return updates


def adagrad(loss_or_grads, params, learning_rate=1.0, epsilon=1e-6):
    """Adagrad."""
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    for param, grad in zip(params, grads):
        accu = _zeros_like(param)
        accu_new = accu + grad ** 2
        updates[accu] = accu_new
        updates[param] = param - (learning_rate * grad / pt.sqrt(accu_new + epsilon))
    return updates


def rmsprop(loss_or_grads, params, learning_rate=1.0, rho=0.9, epsilon=1e-6):
    """RMSProp."""
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    one = pt.constant(1)
    for param, grad in zip(params, grads):
        accu = _zeros_like(param)
        accu_new = rho * accu + (one - rho) * grad ** 2
        updates[accu] = accu_new
        updates[param] = param - (learning_rate * grad / pt.sqrt(accu_new + epsilon))
    return updates


def adadelta(loss_or_grads, params, learning_rate=1.0, rho=0.95, epsilon=1e-6):
    """Adadelta."""
    grads = get_or_compute_grads(loss_or_grads, params)
    updates = OrderedDict()
    one = pt.constant(1)
    for param, grad in zip(params, grads):
        accu = _zeros_like(param)
        delta_accu = _zeros_like(param)
        accu_new = rho * accu + (one - rho) * grad ** 2
        updates[accu] = accu_new
        update = grad * pt.sqrt(delta_accu + epsilon) / pt.sqrt(accu_new + epsilon)
        updates[param] = param - learning_rate * update
        updates[delta_accu] = rho * delta_accu + (one - rho) * update ** 2
    return updates


def adam(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """Adam."""
    all_grads = get_or_compute_grads(loss_or_grads, params)
    t_prev = pytensor.shared(utils.floatX(0.0))
    updates = OrderedDict()
    one = pt.constant(1)
    t = t_prev + 1
    a_t = learning_rate * pt.sqrt(one - beta2 ** t) / (one - beta1 ** t)
    for param, g_t in zip(params, all_grads):
        m_prev = _zeros_like(param)
        v_prev = _zeros_like(param)
        m_t = beta1 * m_prev + (one - beta1) * g_t
        v_t = beta2 * v_prev + (one - beta2) * g_t ** 2
        step = a_t * m_t / (pt.sqrt(v_t) + epsilon)
        updates[m_prev] = m_t
        updates[v_prev] = v_t
        updates[param] = param - step
    updates[t_prev] = t
    return updates


def adamax(loss_or_grads, params, learning_rate=0.002, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """Adamax."""
    all_grads = get_or_compute_grads(loss_or_grads, params)
    t_prev = pytensor.shared(utils.floatX(0.0))
    updates = OrderedDict()
    one = pt.constant(1)
    t = t_prev + 1
    a_t = learning_rate / (one - beta1 ** t)
    for param, g_t in zip(params, all_grads):
        m_prev = _zeros_like(param)
        u_prev = _zeros_like(param)
        m_t = beta1 * m_prev + (one - beta1) * g_t
        u_t = pt.maximum(beta2 * u_prev, abs(g_t))
        step = a_t * m_t / (u_t + epsilon)
        updates[m_prev] = m_t
        updates[u_prev] = u_t
        updates[param] = param - step
    updates[t_prev] = t
    return updates


def amsgrad(loss_or_grads, params, learning_rate=0.001, beta1=0.9, beta2=0.999, epsilon=1e-8):
    """AMSGrad (Reddi et al., 2018): Adam whose second-moment estimate never
    decreases (the step divides by the running maximum ``v_hat`` of ``v``).

    Returns an ``OrderedDict`` of updates: for each parameter its first and
    second moments, ``v_hat`` and the parameter, then the step counter.
    """
    all_grads = get_or_compute_grads(loss_or_grads, params)
    t_prev = pytensor.shared(utils.floatX(0.0))
    updates = OrderedDict()
    one = pt.constant(1)
    t = t_prev + 1
    a_t = learning_rate * pt.sqrt(one - beta2 ** t) / (one - beta1 ** t)
    for param, g_t in zip(params, all_grads):
        m_prev = _zeros_like(param)
        v_prev = _zeros_like(param)
        v_hat_prev = _zeros_like(param)
        m_t = beta1 * m_prev + (one - beta1) * g_t
        v_t = beta2 * v_prev + (one - beta2) * g_t ** 2
        v_hat_t = pt.maximum(v_hat_prev, v_t)
        step = a_t * m_t / (pt.sqrt(v_hat_t) + epsilon)
        updates[m_prev] = m_t
        updates[v_prev] = v_t
        updates[v_hat_prev] = v_hat_t
        updates[param] = param - step
    updates[t_prev] = t
    return updates


def norm_constraint(tensor_var, max_norm, norm_axes=None, epsilon=1e-7):
    """Rescale ``tensor_var`` so its norms over ``norm_axes`` are at most ``max_norm``."""
    ndim = tensor_var.ndim
    if norm_axes is not None:
        sum_over = tuple(norm_axes)
    elif ndim == 2:
        sum_over = (0,)
    elif ndim in (3, 4, 5):
        sum_over = tuple(range(1, ndim))
    else:
        raise ValueError(f"Unsupported tensor dimensionality {ndim}. Must specify `norm_axes`")
    dtype = np.dtype(pytensor.config.floatX).type
    norms = pt.sqrt(pt.sum(pt.sqr(tensor_var), axis=sum_over, keepdims=True))
    target_norms = pt.clip(norms, 0, dtype(max_norm))
    return tensor_var * (target_norms / (dtype(epsilon) + norms))


def total_norm_constraint(tensor_vars, max_norm, epsilon=1e-7, return_norm=False):
    """Rescale a list of tensors (gradients) so their joint norm is at most ``max_norm``."""
    norm = pt.sqrt(sum(pt.sum(tensor ** 2) for tensor in tensor_vars))
    dtype = np.dtype(pytensor.config.floatX).type
    target_norm = pt.clip(norm, 0, dtype(max_norm))
    multiplier = target_norm / (dtype(epsilon) + norm)
    tensor_vars_scaled = [step * multiplier for step in tensor_vars]
    if return_norm:
        return tensor_vars_scaled, norm
    return tensor_vars_scaled
