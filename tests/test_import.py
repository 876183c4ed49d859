"""``import lasres`` stays light: no jax, and JAX-mode functions still find
lasres's JAX implementations (registered when PyTensor's JAX dispatch loads)."""
import subprocess
import sys

import pytest

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _run(code):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()


def test_import_lasres_does_not_import_jax():
    out = _run("import sys, lasres, lasres.layers, lasres.models, lasres.weights, lasres.cli\n"
               "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.'))[:3])")
    assert out[-1] == "[]"


@pytest.mark.parametrize("first", ["lasres", "dispatch"])
def test_jax_implementations_registered_in_either_import_order(first):
    pytest.importorskip("jax")
    imports = ("import lasres\nimport pytensor.link.jax.dispatch" if first == "lasres"
               else "import pytensor.link.jax.dispatch\nimport lasres")
    out = _run(imports + "\n"
               "from pytensor.link.jax.dispatch import jax_funcify\n"
               "from lasres.ops import Conv2d, Pool2d, BatchNormTrain\n"
               "from lasres.ops.elemwise import ScalarRectify\n"
               "from lasres.ops.fused import SumOfSquares\n"
               "print(all(jax_funcify.dispatch(c) is not jax_funcify.dispatch(object)\n"
               "          for c in (Conv2d, Pool2d, BatchNormTrain, ScalarRectify, SumOfSquares)))")
    assert out[-1] == "True"
