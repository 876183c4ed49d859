#!/usr/bin/env python
"""Evaluate a residual network on the CIFAR-10 test set:
``test_model.py [type] [depth] [width]``.

A thin wrapper over :func:`lasres.cli.test_main`; ``--help`` lists the options.
"""
import time

T0 = time.time()

import os  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from lasres.cli import main_wrapper, test_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_wrapper(test_main, t0=T0))
