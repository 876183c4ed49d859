"""The console entry points that ``pip install`` makes (setup.py), beside the
scripts of ``scripts/``: each is what its script runs.

=======================  ==========================  ======================================
entry point              script                      main
=======================  ==========================  ======================================
``lasres-train``         ``scripts/train_nn.py``     :func:`lasres.cli.train_main`
``lasres-test``          ``scripts/test_model.py``   :func:`lasres.cli.test_main`
``lasres-compare``       ``scripts/compare.py``      :func:`lasres.cli.compare_main`
``lasres-export``        ``scripts/export_onnx.py``  :func:`lasres.cli.export_main`
``lasres-export-torch``  ``scripts/export_torch.py`` :func:`lasres.cli.export_torch_main`
=======================  ==========================  ======================================

Each returns the exit status (the console script exits with it).
"""
import time

from .runner import main_wrapper

__all__ = ["train", "test", "compare", "export_onnx", "export_torch"]

_T0 = time.time()  # (a script takes its start time before importing lasres)


def train() -> int:
    """``lasres-train``: ``scripts/train_nn.py``."""
    from .run_train import train_main
    return main_wrapper(train_main, t0=_T0)


def test() -> int:
    """``lasres-test``: ``scripts/test_model.py``."""
    from .run_test import test_main
    return main_wrapper(test_main, t0=_T0)


test.__test__ = False  # (not a pytest test)


def compare() -> int:
    """``lasres-compare``: ``scripts/compare.py``."""
    from .run_compare import compare_main
    return main_wrapper(compare_main)


def export_onnx() -> int:
    """``lasres-export``: ``scripts/export_onnx.py``."""
    from .run_export import export_main
    return main_wrapper(export_main)


def export_torch() -> int:
    """``lasres-export-torch``: ``scripts/export_torch.py``."""
    from .run_export import export_torch_main
    return main_wrapper(export_torch_main)
