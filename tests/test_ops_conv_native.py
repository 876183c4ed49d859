"""lasres's own weight-gradient kernels (lasres/ops/c/conv_bwdw.c): stride
1, channels in whole blocks; 3x3 on rows of 16 outputs or more, 1x1
(unpadded) on images of 256 pixels or more.

Each case runs in a subprocess, because the kernel is chosen once per process
(``LASRES_CONV_NATIVE=0`` gives oneDNN's blocks instead, and
``ONEDNN_MAX_CPU_ISA=AVX2`` the 8-channel blocks and the AVX2 kernel)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lasres.ops import conv_numpy, layout, onednn

needs_onednn = pytest.mark.skipif(onednn.kernels() != "onednn" or not layout.block_size(),
                                  reason="oneDNN's blocked layouts are not available here")

_SCRIPT = """
import json, sys, numpy as np, pytensor, pytensor.tensor as pt
from lasres.config import get_mode
from lasres.ops import layout
from lasres.ops.conv import Conv2dGradWeights
from lasres.ops.shape import to_blocked
xs, ws, pad, blocked, out = json.loads(sys.argv[1])
rng = np.random.RandomState(6)
x = np.maximum(rng.randn(*xs), 0).astype("float32")   # rectified, as activations are
oh = [i + 2 * pad - k + 1 for i, k in zip(xs[2:], ws[2:])]
gz = rng.randn(xs[0], ws[0], *oh).astype("float32")
b = layout.block_size() if blocked else 0
kw = dict(stride=(1, 1), pad=(pad, pad), filter_flip=False, blocks=(b, b))
xv = pt.tensor(dtype="float32", shape=(None,) * (5 if b else 4))
zv = pt.tensor(dtype="float32", shape=(None,) * (5 if b else 4))
f = pytensor.function([xv, zv], Conv2dGradWeights(**kw)(xv, zv, ws[2:]), mode=get_mode("c"))
np.save(out, f(to_blocked(x, b) if b else x, to_blocked(gz, b) if b else gz))
"""


def _run(tmp_path, case, blocked, **env):
    out = str(tmp_path / f"dw_{len(list(tmp_path.iterdir()))}.npy")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(list(case) + [blocked, out])],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out)


def _truth_and_gemm(case):
    """The float64 truth on the float32 inputs, and the GEMM path in float32
    (the algorithm of Theano's CorrMM, Lasagne's)."""
    xs, ws, pad = case
    rng = np.random.RandomState(6)
    x = np.maximum(rng.randn(*xs), 0).astype("float32")
    oh = [i + 2 * pad - k + 1 for i, k in zip(xs[2:], ws[2:])]
    gz = rng.randn(xs[0], ws[0], *oh).astype("float32")
    kw = dict(stride=(1, 1), pad=(pad, pad), filter_flip=False)
    return (conv_numpy.conv2d_grad_weights_numpy(x.astype(np.float64), gz.astype(np.float64),
                                                 ws[2:], **kw),
            conv_numpy.conv2d_grad_weights_numpy(x, gz, ws[2:], **kw))


def _rms(a, truth):
    return float(np.sqrt(np.mean((a.astype(np.float64) - truth) ** 2)))


# (input shape, filter shape, pad): the nets' 32x32 layer; odd widths and
# heights; no padding; padding 2; 32 channels in, 16 out; 1x1: a bottleneck's
# 64-to-16 layer, and 17x19 pixels (chains across rows and images)
CASES = [((16, 16, 32, 32), (16, 16, 3, 3), 1),
         ((3, 16, 17, 19), (16, 16, 3, 3), 1),
         ((2, 16, 18, 20), (32, 16, 3, 3), 0),
         ((2, 32, 16, 16), (16, 32, 3, 3), 2),
         ((8, 64, 32, 32), (16, 64, 1, 1), 0),
         ((6, 16, 17, 19), (32, 16, 1, 1), 0)]


@needs_onednn
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"p{c[2]}")
def test_native_weight_gradient_rounds_better_than_onednn_blocks(tmp_path, case):
    """The kernel's sums (float32 chains of at most 128 products, then
    float64) are nearer the float64 truth than oneDNN's blocks of 512 and
    than a float32 GEMM, and the NCHW and blocked graphs get the same bits
    from it."""
    truth, gemm = _truth_and_gemm(case)
    assert gemm.dtype == np.float32
    native = _run(tmp_path, case, blocked=True)
    plain = _run(tmp_path, case, blocked=False)
    onednn_blocks = _run(tmp_path, case, blocked=True, LASRES_CONV_NATIVE="0")
    np.testing.assert_array_equal(plain, native)
    assert not np.array_equal(native, onednn_blocks)      # another kernel ran
    errors = {k: _rms(v, truth) for k, v in
              (("native", native), ("onednn", onednn_blocks), ("gemm", gemm))}
    assert errors["native"] <= errors["onednn"] * 1.05, errors
    assert errors["native"] <= errors["gemm"] * 1.05, errors


@needs_onednn
@pytest.mark.skipif(layout.block_size() != 16, reason="needs AVX-512 to run both kernels")
@pytest.mark.parametrize("case", [CASES[0], CASES[5]], ids=("3x3", "1x1"))
def test_avx2_kernel_gives_the_avx512_kernels_bits(tmp_path, case):
    """The sums do not depend on the block: the AVX2 kernels (blocks of 8)
    give the AVX-512 kernels' (blocks of 16) results bit for bit."""
    wide = _run(tmp_path, case, blocked=True)
    narrow = _run(tmp_path, case, blocked=True, ONEDNN_MAX_CPU_ISA="AVX2")
    np.testing.assert_array_equal(narrow, wide)


@needs_onednn
def test_geometries_the_kernel_does_not_cover_run_onednn(tmp_path):
    """Rows shorter than 16 outputs, 1x1 filters on fewer than 256 pixels
    or padded, and channels not in whole blocks: the same bits as with the
    kernels turned off."""
    for case in [((4, 16, 8, 8), (16, 16, 3, 3), 1),      # 8-output rows
                 ((3, 12, 16, 16), (16, 12, 3, 3), 1),    # 12 channels
                 ((4, 32, 8, 8), (16, 32, 1, 1), 0),      # 64 pixels
                 ((2, 16, 16, 16), (16, 16, 1, 1), 1)]:   # a padded 1x1
        got = _run(tmp_path, case, blocked=False)
        off = _run(tmp_path, case, blocked=False, LASRES_CONV_NATIVE="0")
        np.testing.assert_array_equal(got, off)
