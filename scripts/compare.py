#!/usr/bin/env python
"""Train several architectures side by side on CIFAR-10 and plot their curves:
``compare.py resnet:3 plain:3 rir:8:1 cnn:8:1 --epochs E --limit N --out DIR``.

A thin wrapper over :func:`lasres.cli.compare_main` (installed as the console
entry point ``lasres-compare``); ``--help`` lists the options.
"""
import sys

from lasres.cli import compare_main, main_wrapper

if __name__ == "__main__":
    sys.exit(main_wrapper(compare_main))
