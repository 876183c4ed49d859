"""lasres.models.build reproduces the real Lasagne on the legacy fixtures:
the library's builders load the fixture .pklz and give its outputs."""
import json

import numpy as np
import pytest
import pytensor

from lasres.config import get_mode
from lasres.layers import get_output
from lasres.models import build, get_spec
from lasres.train.recipe import input_var as _input_var
from lasres.weights import load_pklz
from lasres.layers import set_all_param_values, get_all_layers, count_params


@pytest.mark.parametrize("backend", ["c", "jax"])
@pytest.mark.parametrize("name", ["normal_n1_k1", "bottleneck_n1_k1", "wide_n1_k2"])
def test_build_loads_legacy_weights_and_reproduces_outputs(legacy_dir, name, backend):
    if backend == "jax":
        pytest.importorskip("jax")
    meta = json.loads((legacy_dir / f"{name}.json").read_text())
    tol = json.loads((legacy_dir / f"{name}_tol.json").read_text())["tolerance"]
    io = np.load(legacy_dir / f"{name}_io.npz")
    cfg = meta["config"]
    net = build(cfg["type"], cfg["n"], cfg["k"])
    assert count_params(net) == meta["total_params"]
    set_all_param_values(net, load_pklz(legacy_dir / f"{name}.pklz"))
    f = pytensor.function([_input_var(net)], get_output(net, deterministic=True),
                          mode=get_mode(backend))
    np.testing.assert_allclose(np.asarray(f(io["X"])), io["prob_test"], rtol=0,
                               atol=tol["prob_abs"])


@pytest.mark.parametrize("type,n,k,depth", [("normal", 18, 1, 110), ("normal", 3, 1, 20),
                                            ("bottleneck", 18, 1, 164), ("wide", 2, 4, 22)])
def test_total_depth_formulas(type, n, k, depth):
    assert get_spec(type).total_depth(n, k) == depth


def test_resnet110_layout():
    """ResNet-110 (normal 18): 109 3x3 convolutions + the softmax layer, plus
    2 projections at the stage changes; about 1.7M parameters (He et al.)."""
    from lasres.layers import Conv2DLayer, DenseLayer
    net = build("normal", 18)
    layers = get_all_layers(net)
    convs = [l for l in layers if isinstance(l, Conv2DLayer)]
    proj = [l for l in convs if l.filter_size == (1, 1)]
    assert len(convs) - len(proj) + sum(isinstance(l, DenseLayer) for l in layers) == 110
    assert len(proj) == 2
    # He et al. 2016 report 1.7M parameters for the pre-activation ResNet-110.
    assert 1.6e6 < count_params(net, trainable=True) < 1.8e6
