#!/usr/bin/env python
"""Export a network with its weights to ONNX:
``export_onnx.py TYPE DEPTH WIDTH --weights FILE --out model.onnx``.

A thin wrapper over :func:`lasres.cli.export_main` (installed as the console
entry point ``lasres-export``); ``--help`` lists the options.
"""
import sys

from lasres.cli import export_main, main_wrapper

if __name__ == "__main__":
    sys.exit(main_wrapper(export_main))
