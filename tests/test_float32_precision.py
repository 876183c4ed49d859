"""Float32 quality: lasres in float32 against lasres in float64 (the truth).

lasres in float64 reproduces the real Lasagne in float64 to ~1e-14
(test_legacy_fixtures.py), so float64 lasres is the reference here.
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres import updates

EPS32 = np.finfo(np.float32).eps


def test_nesterov_velocity_is_not_rounded_to_the_parameter_scale():
    """The Nesterov velocity is ``momentum·v - lr·grad``: in float32 its error
    must be a few ulps of the velocity, not of the parameter. (Evaluating
    Lasagne's written form ``momentum·v + (param - lr·grad) - param``
    literally costs one rounding of ``param`` per step: here |param| ~ 1 and
    |velocity| ~ 1e-4, an error ~1e-3 of the velocity.)"""
    rng = np.random.RandomState(0)
    p0 = rng.uniform(0.5, 1.5, 4096).astype(np.float32)
    grads = [rng.normal(0, 0.01, p0.shape).astype(np.float32) for _ in range(3)]
    lr, m = 0.01, 0.9
    p = pytensor.shared(p0.copy())
    g = pt.vector("g", dtype="float32")
    upd = updates.nesterov_momentum([g], [p], learning_rate=lr, momentum=m)
    (velocity,) = [v for v in upd if v is not p]
    step = pytensor.function([g], [], updates=upd)
    # float64 reference on the same float32 numbers (constants as float32 holds them)
    lr64, m64 = float(np.float32(lr)), float(np.float32(m))
    p64, v64 = p0.astype(np.float64), np.zeros(p0.shape)
    for gv in grads:
        step(gv)
        v64 = m64 * v64 - lr64 * gv.astype(np.float64)
        p64 = p64 + m64 * v64 - lr64 * gv.astype(np.float64)
        v32, p32 = velocity.get_value(), p.get_value()
        assert v32.dtype == np.float32
        assert np.abs(v32 - v64).max() <= 4 * EPS32 * np.abs(v64).max()
        assert np.abs(p32 - p64).max() <= 4 * EPS32 * np.abs(p64).max()


# --- the legacy training step on bottleneck nets, float32 against float64 ---------
#
# Why only these assertions. The float32-vs-float64 distance of the *second and
# third* losses of a training run is dominated by chance, for lasres and for the
# real Lasagne alike: wherever a batch-norm output lies within float32 round-off
# of zero (|y| < ~1e-6; expected ~1.6 sign disagreements per forward pass at
# n=2 on this batch, 5 counted in one pass at n=3), float32 and float64 put it on
# opposite sides of the ReLU's kink, the gradient jumps there, and the parameters
# after one step differ by ~1e-3 of their change. Measured (lasres, seeds 0/1/2, |loss32 - loss64| at
# step 3): n=1 5.7e-8 / 1.7e-7 / 1.5e-6, n=2 1.1e-5 / 1.0e-6 / 1.1e-4,
# n=3 7.9e-4 / 7.2e-4 / 9.0e-4. The real Lasagne draws from the same lottery:
# on ../shared/fixtures/legacy/wide_n1_k2 its float32 lands 2.8e-6 from float64
# at step 3 (parameters 7e-3 of their change off) where lasres lands 7e-8.
# What *is* well posed, and asserted below: the forward pass (the first loss,
# which no kink can move), and the whole three-step run of the n=1 net, whose
# Lasagne spread the fixtures document.

#: Lasagne 0.2.dev1 / Theano 1.0.5, float32 vs float64, bottleneck n=1: the
#: largest |loss32 - loss64| over the three legacy steps
#: (../shared/fixtures/legacy/bottleneck_n1_k1_tol.json,
#: "float32_vs_float64_spread" / "loss_abs").
LASAGNE_N1_LOSS_SPREAD = 1.93e-7

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parent


def _losses(n, floatX, seed=0, kernels=None):
    env = dict(os.environ)
    if kernels:
        env["LASRES_KERNELS"] = kernels
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (env.get("PYTENSOR_FLAGS", ""),
                                                 f"floatX={floatX}") if f)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", "")) if p)
    out = subprocess.run([sys.executable, str(_HERE / "_float32_step.py"), str(n), str(seed)],
                         env=env, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["floatX"] == floatX
    return np.array(result["losses"])


@pytest.fixture(scope="module")
def bottleneck_losses():
    cache = {}

    def get(n, kernels=None):
        if (n, kernels) not in cache:
            cache[n, kernels] = _losses(n, "float32", kernels=kernels), _losses(n, "float64")
        return cache[n, kernels]
    return get


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3])
def test_first_loss_float32_as_close_as_lasagne(bottleneck_losses, n):
    """The forward pass: the first training loss of a randomised bottleneck net
    in float32 is within Lasagne's own float32 spread of the float64 loss."""
    l32, l64 = bottleneck_losses(n)
    assert abs(l32[0] - l64[0]) <= LASAGNE_N1_LOSS_SPREAD, (l32[0], l64[0])


@pytest.mark.slow
@pytest.mark.parametrize("kernels", [
    "numpy",
    # Known defect (issue 9, open): with the oneDNN convolutions the step-2/3
    # losses of this net land 5.9e-7 / 1.0e-6 from float64 (step 1: 1.1e-7,
    # within the bound); not yet located (a ReLU-kink flip or the kernels'
    # accumulation). Kept visible as an expected failure, not a wider bound.
    pytest.param("onednn", marks=pytest.mark.xfail(
        reason="oneDNN float32 path drifts past Lasagne's spread at steps 2-3 (issue 9)",
        strict=False))])
def test_three_legacy_steps_n1_float32_as_close_as_lasagne(bottleneck_losses, kernels):
    """Three legacy steps (CE + L2 + Nesterov + BN averages) on bottleneck n=1:
    every loss within Lasagne's float32-vs-float64 spread for that net."""
    l32, l64 = bottleneck_losses(1, kernels)
    assert np.abs(l32 - l64).max() <= LASAGNE_N1_LOSS_SPREAD, (l32, l64)
