#!/usr/bin/env python
"""Train several architectures side by side on CIFAR-10 and plot their curves:
``compare.py resnet:3 plain:3 rir:8:1 cnn:8:1 --epochs E --limit N --out DIR``.

A thin wrapper over :func:`lasres.compare.compare_main`; ``--help`` lists the options.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lasres.cli import main_wrapper  # noqa: E402
from lasres.compare import compare_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_wrapper(compare_main))
