"""lasres's own 16-to-16-channel 3x3 convolution (``lasres/ops/c/conv_fwd16.c``),
run by the fused inference program (:mod:`lasres.ops.onednn_program`) and the
training graph's blocked convolutions in place of oneDNN's kernels: the same
bits as oneDNN's on every row geometry it takes (one block a row, two, and
blocks between), with and without ReLU, batch norm and a residual sum, near
a float64 convolution, and oneDNN's kernel where it does not apply. On
AVX-512 (16-channel blocks) and AVX2 (8-channel blocks; on an AVX-512
machine the whole file runs again in a subprocess with oneDNN held to AVX2:
:func:`test_the_avx2_kernel`)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres import init, layers as L
from lasres.layers import (BatchNormLayer, Conv2DLayer, ElemwiseSumLayer, InputLayer,
                           NonlinearityLayer, get_all_params)
from lasres.nonlinearities import rectify
from lasres.ops import fused_infer, native, onednn, onednn_program

pytestmark = [
    pytest.mark.skipif(onednn.kernels() != "onednn", reason="needs the oneDNN kernels"),
    pytest.mark.skipif(onednn_program.channel_block() not in (8, 16),
                       reason="the kernel runs on oneDNN's 8- or 16-channel blocks"),
]
#: this machine's channel block (16: AVX-512; 8: AVX2) and the name of the
#: kernel oneDNN runs instead (brgemm on NHWC's bytes; AVX2's direct kernel)
B = onednn_program.channel_block()
ONEDNN = "brg" if B == 16 else "jit"


@pytest.fixture(autouse=True)
def _library(monkeypatch):
    monkeypatch.setenv(native.ENV, "1")
    if native.library() is None:
        pytest.skip("no C++ compiler for lasres's native library")


def _net(xv, shape, relu, bn, residual, seed):
    rng = np.random.RandomState(seed)
    l0 = Conv2DLayer(InputLayer(shape, xv), 16, 3, pad=1, nonlinearity=rectify)
    l1 = Conv2DLayer(l0, 16, 3, pad=1, nonlinearity=None if (bn or residual) else
                     (rectify if relu else None), b=None if bn else init.Constant(0.))
    out = BatchNormLayer(l1) if bn else l1
    if residual:
        out = ElemwiseSumLayer([out, l0])
    if (bn or residual) and relu:
        out = NonlinearityLayer(out, rectify)
    for p in get_all_params(out):
        v = p.get_value()
        if p.name in ("inv_std", "gamma"):
            p.set_value((0.6 + 0.8 * rng.rand(*v.shape)).astype(v.dtype))
        elif p.name in ("b", "beta", "mean"):
            p.set_value((rng.randn(*v.shape) * 0.3).astype(v.dtype))
        elif p.name == "W":
            p.set_value((rng.randn(*v.shape) * 0.3).astype(v.dtype))
    return out


def _impls(fn):
    nodes = [n for n in fn.maker.fgraph.toposort()
             if isinstance(n.op, fused_infer.OneDNNInference)]
    assert nodes, "the rewrite did not fuse anything"
    return [i for p in nodes[0].op._program._plans.values() for i in p.impls]


def _functions(monkeypatch, net, xv, brgemm=False):
    """(fused, plain) functions of ``net``; with ``brgemm`` also the fused
    function with oneDNN's kernel in place of lasres's."""
    out = L.get_output(net, deterministic=True)
    fused = pytensor.function([xv], out)
    monkeypatch.setenv(fused_infer.FUSE_ENV, "0")
    plain = pytensor.function([xv], out)
    monkeypatch.delenv(fused_infer.FUSE_ENV)
    if not brgemm:
        return fused, plain
    onednn_fused = pytensor.function([xv], out)

    def run(x):   # planned (at its first call per shape) with lasres's kernel turned off
        monkeypatch.setenv(native.ENV, "0")
        try:
            return onednn_fused(x)
        finally:
            monkeypatch.setenv(native.ENV, "1")
    run.maker = onednn_fused.maker
    return fused, plain, run


@pytest.mark.parametrize("h,w", [(32, 32), (5, 16), (1, 48), (9, 64)]
                         + ([(3, 7), (4, 13), (2, 5)] if B == 8 else []))
@pytest.mark.parametrize("relu,bn,residual", [(True, False, False), (False, False, False),
                                              (True, True, False), (True, True, True),
                                              (False, False, True)])
def test_same_bits_as_onednn(monkeypatch, h, w, relu, bn, residual):
    """The same bits as oneDNN's brgemm kernel in the same program, and,
    where no batch norm is folded into the filters, as the ops one by one
    (oneDNN's direct kernel, then the sum and the ReLU)."""
    xv = pt.tensor4("x")
    net = _net(xv, (None, 3, h, w), relu, bn, residual, seed=h * w)
    fused, plain, brgemm = _functions(monkeypatch, net, xv, brgemm=True)
    x = np.random.RandomState(w).randn(3, 3, h, w).astype("float32")
    got = fused(x)
    np.testing.assert_array_equal(got, brgemm(x))
    if not bn and not (residual and B == 8):   # AVX2's sum post-op starts from the summand
        np.testing.assert_array_equal(got, plain(x))
    else:
        np.testing.assert_allclose(got, plain(x), rtol=0, atol=1e-5 * np.abs(got).max())
    assert _impls(fused) == [_impls(fused)[0], "lasres:conv16"]
    assert _impls(brgemm)[1].startswith(ONEDNN)


def test_near_a_float64_convolution(monkeypatch):
    """Independent of oneDNN: against NumPy's float64 cross-correlation."""
    xv = pt.tensor4("x")
    net = _net(xv, (None, 16, 32, 32), relu=False, bn=False, residual=False, seed=3)
    l1 = net
    # the second layer alone, on a 16-channel input
    yv = pt.tensor4("y")
    inner = L.get_output(l1, {l1.input_layer: yv}, deterministic=True)
    f = pytensor.function([yv], inner)
    x = np.maximum(np.random.RandomState(4).randn(4, 16, 32, 32), 0).astype("float32")
    got = f(x)
    W = l1.W.get_value().astype(np.float64)[:, :, ::-1, ::-1]   # Lasagne flips: a convolution
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros(got.shape)
    for i in range(3):
        for j in range(3):
            want += np.einsum("nchw,oc->nohw", xp[:, :, i:i + 32, j:j + 32], W[:, :, i, j])
    want += l1.b.get_value()[None, :, None, None]
    err = np.abs(got - want)
    assert err.max() < 2e-5 * np.abs(want).max(), err.max()


def test_the_program_runs_it_when_the_input_is_a_fused_activation(monkeypatch):
    """The kernel takes 16-channel activations of the program (not its NCHW
    inputs), and a program run twice with new parameters re-prepares it."""
    xv = pt.tensor4("x")
    net = _net(xv, (None, 3, 32, 32), relu=True, bn=True, residual=True, seed=9)
    fused, _, brgemm = _functions(monkeypatch, net, xv, brgemm=True)
    x = np.random.RandomState(2).randn(2, 3, 32, 32).astype("float32")
    np.testing.assert_array_equal(fused(x), brgemm(x))
    for p in get_all_params(net):
        p.set_value(p.get_value() * np.float32(1.25))
    np.testing.assert_array_equal(fused(x), brgemm(x))


@pytest.mark.skipif(B != 16, reason="with 8-channel blocks every width runs the kernel")
@pytest.mark.parametrize("w", [20, 33])
def test_other_widths_run_onednn(monkeypatch, w):
    xv = pt.tensor4("x")
    net = _net(xv, (None, 3, 8, w), relu=True, bn=False, residual=False, seed=w)
    fused, plain = _functions(monkeypatch, net, xv)
    x = np.random.RandomState(w).randn(2, 3, 8, w).astype("float32")
    np.testing.assert_array_equal(fused(x), plain(x))
    assert _impls(fused)[1].startswith("brg")


def test_turned_off_runs_onednn(monkeypatch):
    monkeypatch.setenv(native.ENV, "0")
    xv = pt.tensor4("x")
    net = _net(xv, (None, 3, 32, 32), relu=True, bn=False, residual=False, seed=1)
    fused, plain = _functions(monkeypatch, net, xv)
    x = np.random.RandomState(1).randn(2, 3, 32, 32).astype("float32")
    np.testing.assert_array_equal(fused(x), plain(x))
    assert _impls(fused)[1].startswith(ONEDNN)


def test_a_failed_build_leaves_no_file(tmp_path):
    """The library is compiled under a temporary name and renamed into
    place: a compiler error leaves nothing behind, not a half-written file."""
    import subprocess
    import pytensor
    path = str(tmp_path / "lib" / "lasres_x.so")
    with pytest.raises(subprocess.CalledProcessError):
        native._build(path, "this is not C++\n", pytensor.config.cxx or "g++")
    assert list((tmp_path / "lib").iterdir()) == []
    native._build(path, 'extern "C" int f(void) { return 7; }\n', pytensor.config.cxx or "g++")
    assert [p.name for p in (tmp_path / "lib").iterdir()] == ["lasres_x.so"]


_SETTLED_SCRIPT = """
import threading
started = []
threading.Thread.start = lambda self: started.append(self.name)   # the thread never runs
import pytensor
from lasres.ops import native
param = type(pytensor.config).__dict__["compiledir"]
before = hasattr(param, "val")
native.prefetch()
print(started, before, hasattr(param, "val"))
"""


def test_prefetch_settles_pytensors_config_on_the_calling_thread():
    """PyTensor computes the compile directory's default (with the
    compiler's version) on first use and raises when a second thread's
    first use overlaps: the background build must not be the first user
    while the main thread compiles (it was, in CI: a fused graph's rewrite
    starts it, then the C modules' prebuild asks PyTensor for its cache)."""
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != native.ENV}
    out = subprocess.run([sys.executable, "-c", _SETTLED_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["['lasres-native']", "False", "True"]


def test_a_killed_builds_leftovers_are_removed(tmp_path):
    """Temporary files a killed build left (older than an hour) go at the
    next build; a build under way (a fresh file) is left alone."""
    import os
    import time
    import pytensor
    folder = tmp_path / "lib"
    folder.mkdir()
    old, fresh = folder / "tmpold1.cpp", folder / "tmpnew1.so"
    old.write_text("x")
    fresh.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    native._build(str(folder / "lasres_y.so"), 'extern "C" int f(void) { return 1; }\n',
                  pytensor.config.cxx or "g++")
    assert sorted(p.name for p in folder.iterdir()) == ["lasres_y.so", "tmpnew1.so"]


# ---- the training graph's ops (lasres/ops/c/onednn_conv.c) ------------------------

def _blocked_ops(flip, bias, addend, hw=(9, 32)):
    from lasres.config import get_mode
    from lasres.ops.conv import Conv2d, Conv2dGradInputs, Conv2dSum
    kw = dict(stride=(1, 1), pad=(1, 1), filter_flip=flip, blocks=(B, B))
    xv = pt.tensor(dtype="float32", shape=(None,) * 5)
    av = pt.tensor(dtype="float32", shape=(None,) * 5)
    wv, bv = pt.tensor4("w"), pt.vector("b")
    args = [xv, wv] + ([bv] if bias else [])
    out = Conv2dSum(**kw)(*args, av) if addend else Conv2d(**kw)(*args)
    fwd = pytensor.function([xv, wv, bv, av], out, mode=get_mode("c"), on_unused_input="ignore")
    bwd = pytensor.function([xv, wv], Conv2dGradInputs(**kw)(xv, wv, pt.as_tensor(list(hw))),
                            mode=get_mode("c"))
    return fwd, bwd


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("bias,addend", [(False, False), (True, False), (True, True),
                                         (False, True)])
def test_training_ops_same_bits_as_onednn(monkeypatch, flip, bias, addend):
    """The training graph's blocked forward convolution (with its bias and a
    residual addend) and input gradient: the same bits as oneDNN's kernels
    (the brgemm forward, the direct input gradient, which sums the taps in
    reverse), near float64."""
    from lasres.ops import conv_numpy
    from lasres.ops.shape import from_blocked, to_blocked
    rng = np.random.RandomState(int(flip) + 2 * bias + 4 * addend)
    x = rng.randn(5, 16, 9, 32).astype("float32")
    w = rng.randn(16, 16, 3, 3).astype("float32")
    b = rng.randn(16).astype("float32")
    a = rng.randn(5, 16, 9, 32).astype("float32")
    xb, ab = to_blocked(x, B), to_blocked(a, B)
    fwd, bwd = _blocked_ops(flip, bias, addend)
    mine = from_blocked(fwd(xb, w, b, ab)), from_blocked(bwd(xb, w))
    monkeypatch.setenv(native.ENV, "0")
    theirs = from_blocked(fwd(xb, w, b, ab)), from_blocked(bwd(xb, w))
    np.testing.assert_array_equal(mine[0], theirs[0])
    np.testing.assert_array_equal(mine[1], theirs[1])
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want = conv_numpy.conv2d_forward_numpy(x64, w64, b.astype(np.float64) if bias else None,
                                           stride=(1, 1), pad=(1, 1), filter_flip=flip)
    want = want + (a if addend else 0)
    np.testing.assert_allclose(mine[0], want, rtol=0, atol=2e-5 * np.abs(want).max())
    want = conv_numpy.conv2d_grad_inputs_numpy(x64, w64, (9, 32), stride=(1, 1), pad=(1, 1),
                                               filter_flip=flip)
    np.testing.assert_allclose(mine[1], want, rtol=0, atol=2e-5 * np.abs(want).max())


_VERBOSE_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from test_ops_conv_fwd16 import B, _blocked_ops
from lasres.ops.shape import to_blocked
fwd, bwd = _blocked_ops(True, False, False, (8, 16))
x = to_blocked(np.ones((2, 16, 8, 16), np.float32), B)
w = np.ones((16, 16, 3, 3), np.float32)
fwd(x, w, np.zeros(16, np.float32), x)
bwd(x, w)
"""


@pytest.mark.parametrize("on", [True, False])
def test_training_ops_call_no_onednn_convolution(on):
    """With the kernel on, oneDNN runs no 16-channel convolution (its
    verbose log, in a subprocess: oneDNN reads the switch once)."""
    import os
    import subprocess
    import sys
    script = _VERBOSE_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, ONEDNN_VERBOSE="profile_exec", **{native.ENV: "1" if on else "0"})
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    convs = [l for l in proc.stdout.splitlines() if ",exec," in l and "convolution" in l]
    assert (convs == []) == on, convs


@pytest.mark.skipif(B != 16, reason="runs the AVX2 kernel where this machine has AVX-512")
def test_the_avx2_kernel(tmp_path):
    """This file again, in a subprocess whose oneDNN is held to AVX2: 8-channel
    blocks, where the activations are no longer NHWC and the kernel has its
    AVX2 form (its own order: oneDNN's AVX2 kernel sums input-channel block
    by block, from the bias; its sum post-op starts from the summand)."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           os.path.abspath(__file__), "-k", "not avx2"],
                          env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and " skipped" in proc.stdout   # the widths test
