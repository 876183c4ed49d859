"""Softmax / log-softmax inlined by the C backend's mode (lasres/ops/inline.py)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.tensor.special import LogSoftmax, Softmax, log_softmax, softmax

from lasres.config import get_mode


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inlined_softmax_matches_the_symbolic_op_and_numpy(dtype):
    rng = np.random.default_rng(3)
    x = pt.matrix("x", dtype=dtype)
    w = pt.matrix("w", dtype=dtype)
    outs = [softmax(x, axis=-1), log_softmax(x, axis=-1)]
    outs += pytensor.grad((outs[0] * w).sum() + (outs[1] * w).sum(), [x])
    c_fn = pytensor.function([x, w], outs, mode=get_mode("c"))
    ops = {type(n.op) for n in c_fn.maker.fgraph.toposort()}
    assert not ops & {Softmax, LogSoftmax}, ops
    ref_fn = pytensor.function([x, w], outs, mode=Mode(linker="py", optimizer="fast_run"))
    xv = (rng.normal(size=(7, 10)) * 30).astype(dtype)  # large logits: the max shift matters
    wv = rng.normal(size=(7, 10)).astype(dtype)
    got, ref = c_fn(xv, wv), ref_fn(xv, wv)
    tol = 1e-6 if dtype == "float32" else 1e-14
    for g, r in zip(got, ref):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)
    # independent reference in float64
    z = xv.astype(np.float64) - xv.max(axis=1, keepdims=True)
    sm = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got[0], sm, rtol=10 * tol, atol=10 * tol)
    np.testing.assert_allclose(got[1], z - np.log(np.exp(z).sum(axis=1, keepdims=True)),
                               rtol=10 * tol, atol=10 * tol)
