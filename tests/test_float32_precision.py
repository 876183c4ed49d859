"""Float32 quality: lasres in float32 against lasres in float64 (the truth).

lasres in float64 reproduces the real Lasagne in float64 to ~1e-14
(test_legacy_fixtures.py), so float64 lasres is the reference here.
"""
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
# Even at n=1 a single loss is a coin flip at Lasagne's bound: 1.93e-7 is 0.8
# float32 ulp of a loss of ~2.5. |loss32 - loss64| at steps 1/2/3, n=1
# (lasres, C backend):
#   seed 0      NumPy kernels 1.1e-7 1.3e-7 5.7e-8   oneDNN 1.1e-7 5.9e-7 1.0e-6
#   seed 1      NumPy kernels 4.1e-8 1.7e-7 1.7e-7   oneDNN 4.1e-8 6.3e-8 6.7e-8
#   seed 2      NumPy kernels 1.1e-8 4.2e-7 1.5e-6   oneDNN 1.1e-8 1.8e-7 1.5e-6
#   Lasagne's   NumPy kernels 4.6e-8 2.8e-7 2.7e-7   oneDNN 4.6e-8 4.0e-8 3.1e-8
#   own net (fixture bottleneck_n1_k1, where Lasagne's 1.93e-7 was measured)
# Neither kernel family is systematically further; issue 9's oneDNN drift on
# seed 0 is this lottery (swapping oneDNN's forward pass for the NumPy one
# gives the NumPy step-2 loss bit for bit, yet 5.3e-7 at step 3; the losses do
# not change by a bit with the backward-weights fix below).
# What *is* well posed, and asserted below: the forward pass layer by layer on
# Lasagne's own net, and -- the part where a defect was found and fixed -- the
# round-off of every convolution pass on the real shapes of bottleneck nets
# n=1..3. The training steps are judged statistically against the real Lasagne
# in test_float32_statistics.py (issue 33), over 60 nets. It replaces the
# single-draw checks that stood here and passed or failed with the CPU model
# (AVX2 or AVX-512 kernels), some marked as expected failures on AVX2: three
# steps on Lasagne's fixture net (oneDNN) and on seed 0 (NumPy kernels), a
# draw of the lottery above; and the first loss of randomised nets n=1..3
# within 1.93e-7 (Lasagne's three-step spread on its fixture), which is 0.8
# float32 ulp of a loss of ~2.5: a bound below one ulp asks for correct
# rounding of the whole forward pass, which neither kernel family nor Lasagne
# gives (oneDNN's AVX2 kernels land n=1 one ulp off, 3.5e-7). Lasres's first
# losses are compared with Lasagne's there, statistically, and the first loss
# of Lasagne's fixture nets against the fixtures in test_legacy_fixtures.py.

_HERE = pathlib.Path(__file__).resolve().parent
_REPO = _HERE.parent


@pytest.fixture(scope="module")
def lasagne_net_layers(tmp_path_factory):
    """Every layer's training-mode output on Lasagne's fixture net
    bottleneck_n1_k1: float64, float32 with the default (oneDNN) kernels,
    float32 with the NumPy (im2col + GEMM, Lasagne's algorithm) kernels."""
    out = {}
    for tag, floatX, kernels in (("f64", "float64", None), ("onednn", "float32", "onednn"),
                                 ("gemm", "float32", "numpy")):
        env = dict(os.environ)
        if kernels:
            env["LASRES_KERNELS"] = kernels
        env["PYTENSOR_FLAGS"] = ",".join(f for f in (env.get("PYTENSOR_FLAGS", ""),
                                                     f"floatX={floatX}") if f)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH", ""))
                                            if p)
        path = tmp_path_factory.mktemp("layers") / f"{tag}.npz"
        subprocess.run([sys.executable, str(_HERE / "_float32_step.py"), "layers",
                        "bottleneck_n1_k1", str(path)], env=env, capture_output=True, text=True,
                       check=True)
        with np.load(path) as z:
            out[tag] = [z[f"arr_{i}"] for i in range(len(z["names"]))]
            out["names"] = list(z["names"])
    return out


@pytest.mark.slow
def test_forward_layers_on_lasagnes_net_round_as_gemm(lasagne_net_layers):
    """The forward pass of a training step on Lasagne's own net, layer by
    layer, with the default kernels: each layer's float32 output within 1.5x
    the GEMM path's rms error (or 4 ulps), and every ReLU that float32 and
    float64 set differently decided by an input within round-off of zero
    (|y64| at most 4x the layer's float32 rms error) -- the kink lottery,
    never a wrong value."""
    from lasres.ops import kernels

    if kernels() != "onednn":
        pytest.skip("oneDNN is not installed")
    L = lasagne_net_layers
    names = L["names"]
    for i, (t, o, g) in enumerate(zip(L["f64"], L["onednn"], L["gemm"])):
        err, ref = _rms_rel(o, t), _rms_rel(g, t)
        assert err <= max(GEMM_ERROR_RATIO * ref, ULPS * EPS32), (i, names[i], err, ref)
        if names[i] == "NonlinearityLayer" and i > 0:
            pre64, pre32 = L["f64"][i - 1], L["onednn"][i - 1]
            flips = (pre64 > 0) != (pre32 > 0)
            scale = np.sqrt(np.mean((pre32 - pre64) ** 2))
            assert np.all(np.abs(pre64[flips]) <= 4 * scale), (i, pre64[flips], scale)


# --- each convolution pass on the real shapes of bottleneck nets n=1..3 -------------
#
# Lasagne's float32 ran Theano's CPU convolutions: im2col + an SGEMM, which is
# what lasres's NumPy kernels do. A float32 pass of the default kernels must
# round no worse than that, on every geometry of the net: forward (with the
# fused bias where the layer has one), backward-data and backward-weights.
# (Issue 9: oneDNN's backward-weights summed the N*oh*ow products of a whole
# call in one float32 chain per thread, 2-5x the GEMM's round-off on these
# shapes; it now sums blocks of images in float64 -- and, since an AVX2 CPU
# rounded a single 32x32 image's 1,024 products 2x worse than the GEMM, bands
# of output rows of one image where an image alone exceeds the block.)

#: a float32 pass may round up to this many times the GEMM path's rms error
#: (both against float64) ...
GEMM_ERROR_RATIO = 1.5
#: ... or up to this many float32 ulps (rms relative error), whichever is
#: larger: sums of a few dozen terms end within a few ulps in any order.
ULPS = 4


def _bottleneck_geometries(n, batch=16):
    """The distinct convolution geometries of the seed's bottleneck net of
    depth ``n``: ``(x shape, W shape, stride, pad, has bias)``."""
    import pytensor.tensor as T

    sys.path.insert(0, str(_HERE))
    from test_legacy_fixtures import seed_network
    from lasres.layers import Conv2DLayer, get_all_layers

    net, _ = seed_network("bottleneck", n, 1, T.tensor4("inputs"))
    found = []
    for layer in get_all_layers(net):
        if isinstance(layer, Conv2DLayer):
            assert not layer.flip_filters
            x_shape = (batch,) + tuple(layer.input_shape[1:])
            w_shape = tuple(layer.get_W_shape())
            pad = tuple(k // 2 for k in w_shape[2:]) if layer.pad == "same" else tuple(layer.pad)
            geometry = (x_shape, w_shape, tuple(layer.stride), pad, layer.b is not None)
            if geometry not in found:
                found.append(geometry)
    return found


def _rms_rel(got, want):
    return float(np.sqrt(np.mean((got - want) ** 2)) / np.sqrt(np.mean(want ** 2)))


@pytest.mark.slow
@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_passes_float32_round_off_as_gemm(n):
    from lasres.ops import conv_numpy, kernels
    from lasres.ops.conv import Conv2d, Conv2dGradInputs, Conv2dGradWeights
    from lasres.config import get_mode

    rng = np.random.default_rng(n)
    inputs, outputs, cases = [], [], []
    for x_shape, w_shape, stride, pad, has_bias in _bottleneck_geometries(n):
        kw = dict(stride=stride, pad=pad, filter_flip=False)
        out_hw = tuple((i + 2 * p - k) // s + 1
                       for i, k, s, p in zip(x_shape[2:], w_shape[2:], stride, pad))
        arrays = [rng.normal(size=x_shape), rng.normal(size=w_shape) / np.sqrt(np.prod(w_shape[1:])),
                  rng.normal(size=(x_shape[0], w_shape[0]) + out_hw),
                  rng.normal(size=w_shape[:1]) if has_bias else None]
        x, w, gz, b = [None if a is None else pt.tensor(dtype="float32", shape=a.shape)
                       for a in arrays]
        inputs += [v for v in (x, w, gz, b) if v is not None]
        outputs += [Conv2d(**kw)(x, w, b) if has_bias else Conv2d(**kw)(x, w),
                    Conv2dGradInputs(**kw)(gz, w, x_shape[2:]),
                    Conv2dGradWeights(**kw)(x, gz, w_shape[2:])]
        cases.append((arrays, kw))
    values = [a.astype(np.float32) for arrays, _ in cases for a in arrays if a is not None]
    got = pytensor.function(inputs, outputs, mode=get_mode("c"))(*values)
    for i, (arrays, kw) in enumerate(cases):
        x, w, gz, b = arrays
        x32, w32, gz32, b32 = [None if a is None else a.astype(np.float32) for a in arrays]
        # the float64 truth on the same float32 numbers, and the GEMM path in float32
        truth = [conv_numpy.conv2d_forward_numpy(*[None if a is None else a.astype(np.float64)
                                                  for a in (x32, w32, b32)], **kw),
                 conv_numpy.conv2d_grad_inputs_numpy(gz32.astype(np.float64), w32.astype(np.float64),
                                                     x.shape[2:], **kw),
                 conv_numpy.conv2d_grad_weights_numpy(x32.astype(np.float64), gz32.astype(np.float64),
                                                      w.shape[2:], **kw)]
        gemm = [conv_numpy.conv2d_forward_numpy(x32, w32, b32, **kw),
                conv_numpy.conv2d_grad_inputs_numpy(gz32, w32, x.shape[2:], **kw),
                conv_numpy.conv2d_grad_weights_numpy(x32, gz32, w.shape[2:], **kw)]
        for name, t, g, o in zip(("forward", "backward-data", "backward-weights"), truth, gemm,
                                 got[3 * i:3 * i + 3]):
            assert o.dtype == np.float32
            err, ref = _rms_rel(o, t), _rms_rel(g, t)
            print(f"{kernels()} {name:16s} x{x.shape} W{w.shape} {kw['stride']}: "
                  f"{err:.2e} (GEMM {ref:.2e})")
            assert err <= max(GEMM_ERROR_RATIO * ref, ULPS * EPS32), (name, x.shape, w.shape, kw,
                                                                       err, ref)
