#!/usr/bin/env python
"""Train a residual network on CIFAR-10: ``train_nn.py [type] [depth] [width]``.

A thin wrapper over :func:`lasres.cli.train_main` (installed as the console entry
point ``lasres-train``); ``--help`` lists the options.
"""
import time

T0 = time.time()

import sys  # noqa: E402

from lasres.cli import main_wrapper, train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main_wrapper(train_main, t0=T0))
