"""lasres's float32 judged against the real Lasagne's float32, statistically
(issue 33).

Why statistics and not one fixture. Over three training steps the
float32-vs-float64 distance of a network is a lottery, for lasres and for
the real Lasagne alike: wherever a batch-norm output lies within float32
round-off of zero, float32 and float64 can put it on opposite sides of a
ReLU's kink, one gradient jumps, and the losses and parameters after the
next step differ by far more than round-off. Which nets draw such a flip
depends on the exact rounding of every sum, hence on the CPU (AVX2 or
AVX-512 kernels) and on the kernel family (oneDNN or NumPy's im2col + GEMM,
Lasagne's algorithm). A single fixture's training-step tolerance therefore
passed on one CPU and failed on another, and the suite carried per-CPU
``xfail`` marks. These are replaced by this test, whose expectation does
not depend on the CPU: over many nets lasres must be as close to the truth
as Lasagne is, with flips going both ways in about equal numbers. The
well-posed single-fixture checks stay where they were: the forward outputs
and the first training loss of Lasagne's fixture nets
(``test_legacy_fixtures.py``), the forward pass layer by layer and every
convolution pass's round-off (``test_float32_precision.py``).

The references (``fixtures_stats/lasagne_refs.npz``, made by
``fixtures_stats/make_refs.py`` with Lasagne 0.2.dev1 on Theano 1.0.5): 20
randomised nets per family -- ``normal`` n=1 and 2, ``bottleneck`` n=1 and
2, ``wide`` k=2 with n=1 and 2, 10 seeds each, 8 images of 8x8 -- each run
for three legacy steps (mean cross-entropy + 1e-4 L2, Nesterov momentum 0.9
at rate 0.01, BN running averages) in float64 and in float32 from the same
float32 numbers (``fixtures_stats/_draws.py``).

Per net, with Lasagne's float64 as the truth:

- the loss distance: the largest |loss32 - loss64| over the three steps;
- the parameter distance: the largest over parameters of
  ``||p32 - p64|| / ||p64 - p0||``, the error relative to the change the
  three steps made, skipping parameters that float64 did not change (a conv
  bias whose every consumer is a batch norm);

both floored at half a float32 ulp of the value, and the ratio
``lasres / Lasagne`` of each. Asserted per family, for the default (oneDNN)
and the NumPy kernels:

- the median ratio is at most 1.5;
- (nets where lasres is > 10x further) - (nets where Lasagne is > 10x
  further) <= 2;
- lasres in float64 equals Lasagne in float64 to 1e-10 (every loss, and
  checksums of every final parameter).

And for the first loss alone (a forward pass: no kink lottery), the median
ratio is at most 1.5 and lasres is nowhere 10x further than Lasagne. (This
replaces a single-draw check of the first loss of randomised nets against
a bound below one float32 ulp of the loss, which one CPU's kernels met and
another's missed by one ulp.)
"""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve().parent
STATS = HERE / "fixtures_stats"
sys.path.insert(0, str(STATS))
import _draws  # noqa: E402

REFS = STATS / "lasagne_refs.npz"
FAMILIES = ("normal", "bottleneck", "wide")
EPS32 = float(np.finfo(np.float32).eps)
MEDIAN_RATIO = 1.5
OUTLIER = 10.0
OUTLIER_EXCESS = 2
F64_EQUAL = 1e-10


def _run(out_dir, floatX, kernels=None, f64_dir=None):
    env = dict(os.environ)
    if kernels:
        env["LASRES_KERNELS"] = kernels
    env["PYTENSOR_FLAGS"] = ",".join(f for f in (env.get("PYTENSOR_FLAGS", ""),
                                                 f"floatX={floatX}") if f)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH", ""))
                                        if p)
    args = [sys.executable, str(STATS / "_lasres_run.py"), str(out_dir)]
    subprocess.run(args + ([str(f64_dir)] if f64_dir else []), env=env, check=True,
                   capture_output=True, text=True)
    with np.load(out_dir / "summary.npz") as z:
        return {key: z[key] for key in z.files}


@pytest.fixture(scope="module")
def refs():
    with np.load(REFS) as z:
        return {key: z[key] for key in z.files}


@pytest.fixture(scope="module")
def lasres_runs(tmp_path_factory):
    """lasres's runs: float64 once, float32 per kernel family (cached)."""
    f64_dir = tmp_path_factory.mktemp("f64")
    cache = {"float64": _run(f64_dir, "float64")}

    def get(kernels):
        if kernels not in cache:
            cache[kernels] = _run(tmp_path_factory.mktemp(kernels), "float32", kernels, f64_dir)
        return cache[kernels]
    return get


def _nets(family):
    return [f"{kind}_n{n}_k{k}_s{seed}" for kind, n, k in _draws.CONFIGS if kind == family
            for seed in _draws.SEEDS]


def _loss_distance(l32, l64):
    floor = 0.5 * np.spacing(np.float32(np.abs(l64).max()))
    return max(float(np.abs(np.asarray(l32, np.float64) - l64).max()), float(floor))


def _param_distance(stats):
    """stats: per parameter ||p32 - p64||, ||p64 - p0||, ||p64|| (float64)."""
    num, den, norm = stats.T
    changed = den > 1e-9 * norm
    num = np.maximum(num, 0.5 * EPS32 * norm)
    return float((num[changed] / den[changed]).max())


def family_statistics(refs, runs32, runs64, family):
    """Per-net ratios lasres/Lasagne for the losses, the parameters and the
    first loss, and the largest float64 disagreement between lasres and
    Lasagne."""
    loss_ratio, param_ratio, first_ratio, f64_err = [], [], [], 0.0
    for net in _nets(family):
        l64 = refs[f"{net}/losses64"]
        first_ratio.append(_loss_distance(runs32[f"{net}/losses"][:1], l64[:1])
                           / _loss_distance(refs[f"{net}/losses32"][:1], l64[:1]))
        loss_ratio.append(_loss_distance(runs32[f"{net}/losses"], l64)
                          / _loss_distance(refs[f"{net}/losses32"], l64))
        param_ratio.append(_param_distance(runs32[f"{net}/stats"])
                           / _param_distance(refs[f"{net}/stats"]))
        f64_err = max(f64_err, float(np.abs(runs64[f"{net}/losses"] - l64).max()))
        ours, theirs = runs64[f"{net}/checksums64"], refs[f"{net}/checksums64"]
        scale = np.maximum(theirs[:, 2], 1e-300)
        f64_err = max(f64_err, float((np.abs(ours[:, :2] - theirs[:, :2]).max(axis=1)
                                      / scale).max()))
    return np.array(loss_ratio), np.array(param_ratio), np.array(first_ratio), f64_err


def _summary(ratios):
    return {"median": float(np.median(ratios)), "lasres_10x_worse": int((ratios > OUTLIER).sum()),
            "lasagne_10x_worse": int((ratios < 1 / OUTLIER).sum()), "nets": len(ratios)}


@pytest.mark.slow
@pytest.mark.parametrize("kernels", ["auto", "numpy"])
@pytest.mark.parametrize("family", FAMILIES)
def test_float32_as_faithful_as_lasagne(refs, lasres_runs, family, kernels):
    runs32, runs64 = lasres_runs(kernels), lasres_runs("float64")
    meta = json.loads(str(runs32["meta"]))
    assert meta["floatX"] == "float32"
    if kernels == "auto":
        from lasres.ops.onednn import kernels as available
        assert meta["kernels"] == available()
    else:
        assert meta["kernels"] == "numpy"
    loss_ratio, param_ratio, first_ratio, f64_err = family_statistics(refs, runs32, runs64,
                                                                      family)
    assert len(loss_ratio) >= 20
    print(f"\n{family} ({meta['kernels']}): losses {_summary(loss_ratio)}, "
          f"parameters {_summary(param_ratio)}, first loss {_summary(first_ratio)}, "
          f"float64 {f64_err:.2g}")
    assert f64_err <= F64_EQUAL
    first = _summary(first_ratio)
    assert first["median"] <= MEDIAN_RATIO and first["lasres_10x_worse"] == 0, (first, first_ratio)
    for what, ratios in (("losses", loss_ratio), ("parameters", param_ratio)):
        s = _summary(ratios)
        assert s["median"] <= MEDIAN_RATIO, (what, s, ratios)
        assert s["lasres_10x_worse"] - s["lasagne_10x_worse"] <= OUTLIER_EXCESS, (what, s, ratios)


def test_references_are_what_the_generator_makes(refs):
    """The reference file holds >= 20 nets per family, each with both
    precisions' losses, and was made by the real Lasagne."""
    meta = json.loads(str(refs["meta"]))
    assert meta["versions"]["lasagne"].startswith("0.2.dev1")
    assert meta["versions"]["theano"] == "1.0.5"
    for family in FAMILIES:
        nets = _nets(family)
        assert len(nets) >= 20
        for net in nets:
            assert refs[f"{net}/losses64"].dtype == np.float64
            assert refs[f"{net}/losses64"].shape == refs[f"{net}/losses32"].shape == (3,)
            assert np.abs(refs[f"{net}/losses32"] - refs[f"{net}/losses64"]).max() < 1e-3
