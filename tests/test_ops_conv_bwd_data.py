"""Backward-data on oneDNN's blocked layout (lasres/ops/c/onednn_conv.c,
lr_bwd_data_blocked): the strided 3x3 input gradients of the stage
transitions run oneDNN's direct kernel on the activations' own blocks, not
the NHWC brgemm kernel (brgconv_strided) that oneDNN picks when left to
choose, with two whole-activation reorders around it.

Each case runs in a subprocess: the choice is made once per process
(``LASRES_BWD_DATA_BLOCKED=0`` leaves it to oneDNN; ``ONEDNN_MAX_CPU_ISA=AVX2``
gives the 8-channel blocks)."""
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
from lasres.ops.conv import Conv2dGradInputs
from lasres.ops.shape import from_blocked, to_blocked
xs, ws, stride, pad, blocked, out = json.loads(sys.argv[1])
rng = np.random.RandomState(8)
w = rng.randn(*ws).astype("float32")
oh = [(i + 2 * pad - k) // stride + 1 for i, k in zip(xs[2:], ws[2:])]
gz = rng.randn(xs[0], ws[0], *oh).astype("float32")
b = layout.block_size() if blocked else 0
kw = dict(stride=(stride, stride), pad=(pad, pad), filter_flip=False, blocks=(b, b))
zv = pt.tensor(dtype="float32", shape=(None,) * (5 if b else 4))
f = pytensor.function([zv], Conv2dGradInputs(**kw)(zv, pt.constant(w), xs[2:]), mode=get_mode("c"))
gx = f(to_blocked(gz, b) if b else gz)
np.save(out, from_blocked(gx) if b else gx)
"""

# (input shape, filter shape, stride, pad): ResNet-20's two transitions, an
# odd-sized strided case, and a stride-1 layer (the kernel it had already)
CASES = [((8, 16, 32, 32), (32, 16, 3, 3), 2, 1),
         ((8, 32, 16, 16), (64, 32, 3, 3), 2, 1),
         ((3, 16, 15, 13), (32, 16, 3, 3), 2, 1),
         ((4, 32, 16, 16), (32, 32, 3, 3), 1, 1)]


def _run(tmp_path, case, blocked, **env):
    out = str(tmp_path / f"gx_{len(list(tmp_path.iterdir()))}.npy")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(list(case) + [blocked, out])],
                          env=dict(os.environ, **env), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return np.load(out), proc.stdout + proc.stderr


def _truth(case):
    xs, ws, stride, pad = case
    rng = np.random.RandomState(8)
    w = rng.randn(*ws).astype("float32")
    oh = [(i + 2 * pad - k) // stride + 1 for i, k in zip(xs[2:], ws[2:])]
    gz = rng.randn(xs[0], ws[0], *oh).astype("float32")
    return conv_numpy.conv2d_grad_inputs_numpy(gz.astype(np.float64), w.astype(np.float64),
                                               xs[2:], stride=(stride, stride), pad=(pad, pad),
                                               filter_flip=False)


def _rms(a, truth):
    return float(np.sqrt(np.mean((a.astype(np.float64) - truth) ** 2)))


@needs_onednn
@pytest.mark.parametrize("case", CASES, ids=lambda c: "x".join(map(str, c[0])) + f"s{c[2]}")
def test_input_gradient_runs_the_blocked_direct_kernel(tmp_path, case):
    """oneDNN's direct kernel on the blocks, for NCHW and blocked graphs alike
    (the same bits), rounding no worse than the kernel oneDNN picks alone."""
    truth = _truth(case)
    blocked, log = _run(tmp_path, case, True, ONEDNN_VERBOSE="profile_exec")
    plain, _ = _run(tmp_path, case, False)
    alone, alone_log = _run(tmp_path, case, True, ONEDNN_VERBOSE="profile_exec",
                            LASRES_BWD_DATA_BLOCKED="0")
    np.testing.assert_array_equal(blocked, plain)
    kernels = {line.split(",")[4] for line in log.splitlines()
               if line.startswith("onednn_verbose") and ",backward_data," in line}
    assert kernels and all(k.startswith("jit:") for k in kernels), kernels
    if case in CASES[:2]:   # what oneDNN picks alone for ResNet-20's transitions
        assert any(",brgconv_strided" in line and ",backward_data," in line
                   for line in alone_log.splitlines()), alone_log[-2000:]
    assert _rms(blocked, truth) <= _rms(alone, truth) * 1.05, (_rms(blocked, truth),
                                                               _rms(alone, truth))


@needs_onednn
@pytest.mark.skipif(layout.block_size() != 16, reason="needs AVX-512 to run both block sizes")
def test_avx2_blocks_keep_nchw_and_blocked_graphs_equal(tmp_path):
    """With AVX2 kernels (blocks of 8) too, the NCHW and the blocked graphs
    run one kernel: the same bits."""
    for case in CASES[:1] + CASES[2:3]:
        narrow, _ = _run(tmp_path, case, True, ONEDNN_MAX_CPU_ISA="AVX2")
        plain, _ = _run(tmp_path, case, False, ONEDNN_MAX_CPU_ISA="AVX2")
        np.testing.assert_array_equal(narrow, plain)
        assert _rms(narrow, _truth(case)) < 1e-5


# (input shape, filter shape, stride, pad) whose forward pass never reads the
# last row and/or column: oneDNN sees a cropped view (lr_geometry) and the rest
# of the input gradient is lasres's to zero (lr_zero_uncropped)
CROPPED = [((4, 16, 32, 32), (32, 16, 1, 1), 2, 0),    # a projection: row 31 and column 31
           ((2, 16, 8, 9), (16, 16, 1, 1), 2, 0),      # rows only (all 9 columns read)
           ((2, 16, 6, 9), (32, 16, 3, 3), 3, 0),      # stride 3: two rows/columns past the view
           ((3, 32, 16, 16), (16, 32, 3, 3), 2, 1)]    # a 3x3 transition (not cropped): untouched


@needs_onednn
@pytest.mark.parametrize("blocked", [False, True], ids=["nchw", "blocked"])
@pytest.mark.parametrize("case", CROPPED, ids=lambda c: "x".join(map(str, c[0])) + f"k{c[1][2]}s{c[2]}")
def test_input_gradient_outside_the_cropped_view_is_zero(case, blocked):
    """The op's C code run on an output buffer it reuses, filled with NaN
    beforehand: every value is the true gradient, the rows and columns that
    no output reads are exact zeros, nothing of the old buffer is left."""
    import pytensor.tensor as pt
    from pytensor.graph.basic import Constant
    from lasres.ops.conv import Conv2dGradInputs
    from lasres.ops.shape import from_blocked, to_blocked
    xs, ws, stride, pad = case
    b = layout.block_size() if blocked else 0
    rng = np.random.RandomState(8)
    w = rng.randn(*ws).astype("float32")
    oh = [(i + 2 * pad - k) // stride + 1 for i, k in zip(xs[2:], ws[2:])]
    gz = rng.randn(xs[0], ws[0], *oh).astype("float32")
    op = Conv2dGradInputs(stride=(stride, stride), pad=(pad, pad), filter_flip=False,
                          blocks=(b, b))
    zv = pt.tensor(dtype="float32", shape=(None,) * (5 if b else 4))
    node = op.make_node(zv, pt.constant(w), xs[2:])
    storage = {v: [None] for v in node.inputs + node.outputs}
    for v in node.inputs:
        if isinstance(v, Constant):
            storage[v][0] = v.data
    storage[zv][0] = to_blocked(gz, b) if b else gz
    shape = (xs[0], xs[1] // b, xs[2], xs[3], b) if b else tuple(xs)
    compute = {v: [True] for v in node.inputs} | {v: [False] for v in node.outputs}
    thunk = op.make_thunk(node, storage, compute, [], impl="c")
    truth = _truth(case)
    for _ in range(2):   # the second call writes into the first call's array
        stale = np.full(shape, np.nan, np.float32)
        storage[node.outputs[0]][0] = stale
        thunk()
        assert storage[node.outputs[0]][0] is stale   # the buffer was reused
        gx = from_blocked(stale) if b else stale
        assert not np.isnan(gx).any()
        np.testing.assert_allclose(gx, truth, rtol=1e-4, atol=1e-4)
        read_h = (oh[0] - 1) * stride + ws[2] - pad
        read_w = (oh[1] - 1) * stride + ws[3] - pad
        assert (gx[:, :, read_h:, :] == 0).all() and (gx[:, :, :, read_w:] == 0).all()
