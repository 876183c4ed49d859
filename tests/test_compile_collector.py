"""lasres's compile modes hold Python's cycle collector while PyTensor rewrites
and links a graph (lasres.config.collector_held): a deep net's compile leaves
a million objects in the young generations, and each full collection walked
them all again."""
import gc

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from lasres.config import _EXCLUDED_REWRITES, LasresMode, collector_held, get_mode


@pytest.fixture
def eager_collector():
    """A collector that runs at almost every allocation, counting its passes."""
    passes = []

    def count(phase, info):
        if phase == "start":
            passes.append(info["generation"])

    was_enabled, threshold = gc.isenabled(), gc.get_threshold()
    gc.enable()
    gc.set_threshold(5, 1, 1)
    gc.callbacks.append(count)
    try:
        yield passes
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*threshold)
        if not was_enabled:
            gc.disable()


def _graph():
    x = pt.matrix("x")
    y = x
    for i in range(12):
        y = pt.tanh(y * (i + 1.0)) + pt.exp(-y)
    return x, y.sum()


def _compile(mode):
    x, y = _graph()
    return pytensor.function([x], y, mode=mode)


def _passes(collector, mode):
    x, y = _graph()
    del collector[:]
    f = pytensor.function([x], y, mode=mode)
    return len(collector), f


def test_the_c_mode_compiles_without_the_collectors_passes(eager_collector):
    # PyTensor clones the graph before its FunctionMaker starts: a few
    # passes there; the control is the same compile in PyTensor's own class
    held, f = _passes(eager_collector, get_mode("c"))
    plain, _ = _passes(eager_collector, Mode(linker="cvm", optimizer="fast_run")
                       .excluding(*_EXCLUDED_REWRITES))
    assert plain > 200
    assert held < plain / 20, (held, plain)
    assert gc.isenabled()
    x = np.full((2, 3), 0.1, dtype=pytensor.config.floatX)
    assert np.isfinite(f(x))


def test_the_jax_mode_is_a_lasres_mode():
    from pytensor.compile.mode import predefined_modes
    assert isinstance(predefined_modes["LASRES_JAX"], LasresMode)
    assert isinstance(get_mode("c"), LasresMode)
    # the mode's rewrite registrations and exclusions keep the class
    assert isinstance(get_mode("c").excluding("fusion"), LasresMode)


def test_held_is_reentrant_and_leaves_a_disabled_collector_off():
    was = gc.isenabled()
    try:
        gc.enable()
        with collector_held():
            assert not gc.isenabled()
            with collector_held():
                assert not gc.isenabled()
            assert not gc.isenabled()  # the inner hold does not release the outer
        assert gc.isenabled()
        gc.disable()
        with collector_held():
            pass
        assert not gc.isenabled()
        _compile(get_mode("c"))
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
        else:
            gc.disable()


def test_an_error_in_the_compile_releases_the_collector():
    x = pt.matrix("x")
    assert gc.isenabled()
    with pytest.raises(Exception):
        pytensor.function([x], pt.vector("unrelated_input") * 2, mode=get_mode("c"))
    assert gc.isenabled()
