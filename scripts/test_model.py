#!/usr/bin/env python
"""Evaluate a residual network on the CIFAR-10 test set:
``test_model.py [type] [depth] [width]``.

A thin wrapper over :func:`lasres.cli.test_main` (installed as the console entry
point ``lasres-test``); ``--help`` lists the options.
"""
import time

T0 = time.time()

import sys  # noqa: E402

from lasres.cli import main_wrapper, test_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_wrapper(test_main, t0=T0))
