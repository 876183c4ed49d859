"""The convolution output length as a scalar shape op (lasres.ops.shape.ConvLength):
its C code against its ``perform`` and against Theano's rule written out
here, on every pad kind, strides, dilations, and lengths that give zero or
negative outputs (Python's floor division, not C's truncation)."""
import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from lasres.config import get_mode
from lasres.ops.shape import ConvLength


def _rule(n, k, stride, pad, dilation):
    extent = (k - 1) * dilation + 1
    pad = {"valid": 0, "same": extent // 2, "half": extent // 2,
           "full": extent - 1}.get(pad, pad)
    return (n + 2 * pad - extent) // stride + 1


_LENGTHS = (0, 1, 2, 3, 4, 5, 7, 8, 31, 32, 33)
_KERNELS = (1, 2, 3, 5, 7)


@pytest.mark.parametrize("pad", [0, 1, 2, 3, "valid", "same", "half", "full"])
def test_c_code_perform_and_the_rule_agree(pad):
    n, k = pt.lscalar("n"), pt.lscalar("k")
    for stride, dilation in itertools.product((1, 2, 3), (1, 2)):
        op = ConvLength(stride, pad, dilation)
        out = op(n, k)
        f_c = pytensor.function([n, k], out, mode=get_mode("c"))
        f_py = pytensor.function([n, k], out, mode=get_mode("py"))
        assert any(isinstance(node.op, ConvLength) for node in f_c.maker.fgraph.apply_nodes)
        for length, kernel in itertools.product(_LENGTHS, _KERNELS):
            want = _rule(length, kernel, stride, pad, dilation)
            got_c, got_py = int(f_c(length, kernel)), int(f_py(length, kernel))
            assert got_c == got_py == want, (length, kernel, stride, pad, dilation)


def test_the_c_backend_runs_c_code():
    # the compiled thunk is C (no Python perform call per step)
    n, k = pt.lscalar("n"), pt.lscalar("k")
    calls = []
    original = ConvLength.perform
    try:   # patched before the compile: a Python thunk binds perform then
        ConvLength.perform = lambda self, *a: calls.append(1) or original(self, *a)
        f = pytensor.function([n, k], ConvLength(2, 1)(n, k), mode=get_mode("c"))
        assert int(f(np.int64(32), np.int64(3))) == 16
    finally:
        ConvLength.perform = original
    assert calls == []
