#!/usr/bin/env python
"""Export a network with its weights to PyTorch:
``export_torch.py TYPE DEPTH WIDTH --weights FILE --out DIR [--force]``.

A thin wrapper over :func:`lasres.cli.export_torch_main` (installed as the
console entry point ``lasres-export-torch``); ``--help`` lists the options.
"""
import sys

from lasres.cli import export_torch_main, main_wrapper

if __name__ == "__main__":
    sys.exit(main_wrapper(export_torch_main))
