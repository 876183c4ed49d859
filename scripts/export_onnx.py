#!/usr/bin/env python
"""Export a network with its weights to ONNX:
``export_onnx.py TYPE DEPTH WIDTH --weights FILE --out model.onnx``.

A thin wrapper over :func:`lasres.export.export_main`; ``--help`` lists the options.
"""
import sys

from lasres.cli import main_wrapper  # noqa: E402
from lasres.export import export_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_wrapper(export_main))
