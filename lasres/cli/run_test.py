"""``scripts/test_model.py``: evaluate a network on a dataset's test images."""
import argparse
import sys
import time
import warnings
from typing import List, Optional

import numpy as np

from ..data import CIFAR10_CLASSES, prepare_dataset
from ..recipes import LEGACY
from ..train import predict_in_batches
from ..train.evaluation import evaluate_probabilities, format_report
from ..train.recipe import compile_predict
from .files import check_output_path, save_predictions
from .network import add_model_arguments, banner, build_network
from .options import check_common_numbers
from .runner import start_time
from .weight_registry import (apply_registered_options, check_registered_arch, choose_preprocess,
                              cli_preprocess, format_weight_list, registered_entry)
from .weight_search import auto_layout, find_weights, load_network_weights, pixel_mean_for

__all__ = ["test_parser", "test_main"]


def test_parser() -> argparse.ArgumentParser:
    """The argument parser of ``test_model.py``."""
    p = argparse.ArgumentParser(
        prog="test_model.py", description="Evaluate a residual network on the CIFAR-10 test "
        "images: accuracy, per-class accuracy, confusion matrix.")
    add_model_arguments(p)
    p.add_argument("--weights", default=None,
                   help="weight file (.pklz, .npz, lasres .h5 or Keras 1 .h5, which selects "
                        "layout=keras); default: the seed's file in "
                        "weights/ or runs/TYPE_nN_kK/best.h5")
    p.add_argument("--pixel-mean", default=None, help="pixel_mean.npy to subtract")
    p.add_argument("--preprocess", default=None, metavar="SPEC",
                   help="the weights' preprocessing: a preset (legacy, keras-seed, recipes) or "
                        "scale=1/255,mean=pixel-all[,std=...] (mean: pixel-split, pixel-all, "
                        "channel, none); default: the weights registry's for a registered "
                        "file, else the checkpoint's, else the recipe's")
    p.add_argument("--list-weights", action="store_true",
                   help="list the registered weight files (architecture, preprocessing, "
                        "published and measured errors) and exit")
    p.add_argument("--save-predictions", default=None, metavar="PATH.npy",
                   help="write the softmax outputs (float32, images x classes, test-set order)")
    return p


def test_main(argv: Optional[List[str]] = None) -> int:
    """``test_model.py [type] [depth] [width] [options]``; returns an exit status."""

    args = test_parser().parse_args(argv)
    if args.list_weights:
        print(format_weight_list())
        return 0
    check_common_numbers(args)
    given = cli_preprocess(args.preprocess)
    t_start = time.time() if start_time() is None else start_time()
    if args.save_predictions:
        check_output_path(args.save_predictions)
    auto_layout(args)
    apply_registered_options(args)
    model = build_network(args)
    spec, depth, width, options, network = model
    path = find_weights(spec.name, depth, width, args.weights)
    entry = registered_entry(path)  # recognised by content
    check_registered_arch(entry, spec.name, depth, width, options, path)
    banner(spec, depth, width, network, args.backend, options)
    ckpt = load_network_weights(network, path, model.arch(args.dataset))
    print(f"weights| {path}" + (f" (registered: {entry.name}, {entry.checksum} checked)"
                                if entry else ""))
    prep, prep_from = choose_preprocess(given, entry, ckpt, options)
    mean = mean_from = None
    if prep.mean == "pixel-split":
        mean, mean_from = pixel_mean_for(args, path, ckpt)
    elif prep.needs_mean and args.pixel_mean:
        mean, mean_from = pixel_mean_for(args, path, None)
    elif prep.needs_mean and prep_from == "checkpoint" and ckpt.pixel_mean is not None:
        mean, mean_from = pixel_mean_for(args, path, ckpt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        # the training part of the legacy split gives the mean when none was found
        data = prepare_dataset(args.dataset, args.data, limit=(None, args.limit),
                               seed=args.seed, valid_fraction=LEGACY.valid_fraction,
                               preprocessing=prep,
                               pixel_mean=mean, test_only=True, mean_cache=args.data)
    print(f"prep   | {prep.describe()}; from the {prep_from}")
    if mean_from is not None:
        print(f"mean   | pixel mean from {mean_from}")
    elif prep.needs_mean and prep.mean != "pixel-split":
        if data.pixel_mean_computed:
            where = f", cached as {data.pixel_mean_file}" if data.pixel_mean_file else ""
            print(f"mean   | computed from the training images in {args.data}{where}")
        else:
            print(f"mean   | from {data.pixel_mean_file} (the cached mean of the training "
                  f"images)")
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message} (found none next to the weights or in the data "
                  f"folder; give --pixel-mean for the exact one)", file=sys.stderr)
    X_test, y_test = data.X_test, data.y_test
    t0 = time.perf_counter()
    predict_fn = compile_predict(network, args.backend)
    compile_s = time.perf_counter() - t0
    batch = 100 if args.batch_size is None else args.batch_size
    first = predict_fn(X_test[:batch])
    print(f"ready  | compiled in {compile_s:.1f}s; first prediction {time.time() - t_start:.1f}s "
          f"after the start")
    t0 = time.perf_counter()
    rest = predict_in_batches(predict_fn, X_test[batch:], batch, progress=True, desc="test")
    probs = np.concatenate([first, rest]) if len(rest) else first
    seconds = time.perf_counter() - t0
    ev = evaluate_probabilities(probs, y_test, num_classes=probs.shape[1])
    names = data.label_names or (CIFAR10_CLASSES if args.dataset == "cifar10" else None)
    print(format_report(ev, names))
    print(f"({len(X_test)} images in {seconds:.1f}s after the first batch)")
    if args.save_predictions:
        save_predictions(args.save_predictions, probs)
        print(f"saved  | softmax outputs {probs.shape} (float32) to {args.save_predictions}")
    return 0
