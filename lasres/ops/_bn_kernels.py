"""Numba kernels for the batch-norm ops' CPU path (channel layout
``(N, C, M)``): channel by channel, float64 accumulation, two passes over
the data forward and two backward, no full-size temporaries. Serial on
purpose: a parallel numba region between OpenBLAS calls made the whole
training step slower on 2 cores (measured: 102 vs 147 img/s, ResNet-20)."""
import numpy as np
from numba import njit


@njit(cache=True)
def bn_train_forward(x3, gamma, beta, eps, y3, mean_out, inv_out):  # pragma: no cover (jit)
    n_, c_, m_ = x3.shape
    count = n_ * m_
    for c in range(c_):
        s = 0.0
        for n in range(n_):
            for i in range(m_):
                s += x3[n, c, i]
        mu = s / count
        v = 0.0
        for n in range(n_):
            for i in range(m_):
                d = x3[n, c, i] - mu
                v += d * d
        inv = 1.0 / np.sqrt(v / count + eps)
        mean_out[c] = mu
        inv_out[c] = inv
        scale = gamma[c] * inv
        mu_t = x3.dtype.type(mu)
        scale_t = x3.dtype.type(scale)
        b = beta[c]
        for n in range(n_):
            for i in range(m_):
                y3[n, c, i] = (x3[n, c, i] - mu_t) * scale_t + b


@njit(cache=True)
def bn_train_backward(x3, gy3, gamma, mean, inv_std, gx3, ggamma_out, gbeta_out):  # pragma: no cover
    n_, c_, m_ = x3.shape
    count = n_ * m_
    for c in range(c_):
        mu = mean[c]
        inv = inv_std[c]
        sb = 0.0
        sg = 0.0
        for n in range(n_):
            for i in range(m_):
                g = gy3[n, c, i]
                sb += g
                sg += g * ((x3[n, c, i] - mu) * inv)
        gbeta_out[c] = sb
        ggamma_out[c] = sg
        k = gamma[c] * inv
        mb = sb / count
        mg = sg / count
        for n in range(n_):
            for i in range(m_):
                xhat = (x3[n, c, i] - mu) * inv
                gx3[n, c, i] = (gy3[n, c, i] - mb - xhat * mg) * k


@njit(cache=True)
def bn_infer(x3, gamma, beta, mean, inv_std, y3):  # pragma: no cover (jit)
    n_, c_, m_ = x3.shape
    for c in range(c_):
        scale = gamma[c] * inv_std[c]
        mu = mean[c]
        b = beta[c]
        for n in range(n_):
            for i in range(m_):
                y3[n, c, i] = (x3[n, c, i] - mu) * scale + b
