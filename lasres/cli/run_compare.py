"""``scripts/compare.py``: train several architectures side by side and
plot their curves together::

    compare.py resnet:3 plain:3 rir:8:1 cnn:8:1 --epochs 20 --limit 5000 \\
        --data data --out runs/compare --lr-schedule 0:0.1,10:0.01

Every model is given the same budget: the same data (one split, one pixel
mean), the same epochs, learning-rate schedule, batch size, augmentation and
seed; each network's images are preprocessed as ``train_nn.py`` does it
(:func:`lasres.recipes.recipe_for_layout`: ``x / 255`` for ``layout=keras``,
the legacy mean subtraction otherwise). The arguments, the data and the
trainers go through the set-up ``train_nn.py`` uses (:mod:`.run_setup`:
the trainer of the backend from :func:`lasres.cli.make_trainer`), and each
run is trained by :func:`lasres.train.fit` in its own folder
``OUT/TYPE_nDEPTH_kWIDTH`` (checkpoints and history); at the end a table is
printed and ``OUT/compare.png`` (training loss and validation error of all
runs) and ``OUT/compare.json`` (every run's arguments, size and history) are
written. ``--dataset`` picks another dataset of :data:`lasres.data.DATASETS`
(``mnist``, ``fashion-mnist``: the nets are built for 1 x 28 x 28 input and
trained without the CIFAR crop and flip unless ``--augment`` says so).
``--resume`` continues each run from its ``last.h5`` (runs already done are
kept), so a comparison longer than one sitting is made in pieces.

The models are :class:`lasres.compare.ModelRequest` values
(``TYPE[:DEPTH[:WIDTH]][:KEY=VALUE...]``, :func:`lasres.compare.parse_model`).
"""
import argparse
import json
import math
import os
import time
from typing import Callable, List, Optional, Tuple

from ..io.atomic import atomic_path
from ..compare import ModelRequest, format_table, parse_model
from ..data import get_dataset
from ..train.evaluation import loss_and_accuracy
from ..layers import count_params
from ..models import get_spec
from ..models.registry import check_model_size
from ..train.plotting import plot_comparison
from ..recipes import LEGACY, LEGACY_SCHEDULE, recipe_for_layout
from ..train import fit, predict_in_batches
from . import run_setup
from .files import check_output_folder, make_output_folder
from .network import add_dataset_argument, banner
from .options import check_backend
from .weight_search import load_resume_checkpoint

__all__ = ["compare_parser", "compare_main", "run_comparison"]


def compare_parser() -> argparse.ArgumentParser:
    """The argument parser of ``compare.py``."""
    p = argparse.ArgumentParser(
        prog="compare.py", description="Train several architectures for the same budget on "
        "one dataset (CIFAR-10 by default) and plot their training loss and validation error "
        "together.")
    p.add_argument("models", nargs="+", metavar="TYPE[:DEPTH[:WIDTH]]",
                   help="models to compare, e.g. resnet:3 plain:3 rir:8:1 cnn:8:1")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training and N test images")
    p.add_argument("--data", default="data", help="folder holding cifar-10-batches-py/ or "
                   "cifar-10-batches-bin/ (default data/), or the dataset's files")
    add_dataset_argument(p)
    p.add_argument("--out", default=os.path.join("runs", "compare"),
                   help="output folder (default runs/compare)")
    p.add_argument("--lr-schedule", default=LEGACY.lr_schedule,
                   help="'legacy', a constant rate, or EPOCH:RATE,... e.g. 0:0.1,30:0.01")
    p.add_argument("--batch-size", type=int, default=LEGACY.batch_size)
    p.add_argument("--momentum", type=float, default=LEGACY.momentum)
    p.add_argument("--l2", type=float, default=LEGACY.l2)
    p.add_argument("--augment", choices=("batch", "image", "none"), default=LEGACY.augment,
                   help="legacy crop+flip per batch or per image, or none (default: the "
                        "dataset's: batch for CIFAR, none for the MNISTs)")
    p.add_argument("--valid-fraction", type=float, default=LEGACY.valid_fraction)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default=None, help="c (CPU, default), jax, numba, py")
    p.add_argument("--title", default=None, help="title of the plot")
    p.add_argument("--download", action="store_true",
                   help="download the dataset (CIFAR-10 or MNIST) into --data when it is "
                        "missing")
    p.add_argument("--resume", action="store_true",
                   help="continue each run from OUT/RUN/last.h5 where there is one (runs "
                        "already at --epochs are not trained again)")
    return p


def run_comparison(requests: List[ModelRequest], data, *, epochs: int, out_dir: str,
                   batch_size: int = LEGACY.batch_size, schedule=None,
                   augment: Optional[str] = "batch", seed: int = 0, l2: float = LEGACY.l2,
                   momentum: float = LEGACY.momentum,
                   backend: Optional[str] = None, log: Callable = print,
                   progress: bool = True, dataset: str = "cifar10",
                   resume: bool = False) -> Tuple[List[dict], dict]:
    """Train each :class:`ModelRequest` on ``data`` with the same settings.

    With ``resume``, a run whose folder holds a ``last.h5`` continues from
    it (weights, optimizer state, random streams and history, as
    ``train_nn.py --resume``), and a run already at ``epochs`` is not
    trained again: a comparison too long for one sitting is run in pieces.
    Each trainer is the one ``train_nn.py`` would build for ``backend``
    (:func:`lasres.cli.make_trainer`: the JAX trainer for ``'jax'``). A request
    with a ``data`` attribute (its own preprocessing, see :func:`compare_main`)
    trains on that instead of ``data``.

    Returns
    -------
    (list of dict, dict of label -> History)
        One result record per run (label, arguments, layers, params, best and
        last validation accuracy, test accuracy of the last epoch's weights,
        last training loss, seconds, history) and the histories for plotting.
    """
    schedule = schedule or LEGACY_SCHEDULE
    results, histories = [], {}
    for i, req in enumerate(requests, start=1):
        label = req.label if req.label not in histories else f"{req.label}#{i}"
        req_data = data if getattr(req, "data", None) is None else req.data
        req.data = None  # nor the data
        spec = get_spec(req.type)
        log(f"\n=== [{i}/{len(requests)}] {label} ===")
        network = getattr(req, "network", None) or req.build(
            tuple(req_data.X_train.shape[1:]), len(getattr(req_data, "label_names", ())) or 10)
        req.network = None  # the request does not keep the trained net alive
        banner(spec, req.depth, req.width, network, backend, req.options, log=log)
        t0 = time.time()
        arch = req.arch(dataset)  # as train_nn.py records it in checkpoints
        run_dir = os.path.join(out_dir, req.folder if label == req.label else f"{req.folder}_{i}")
        last, ckpt = os.path.join(run_dir, "last.h5"), None
        if resume and os.path.exists(last):
            ckpt = load_resume_checkpoint(network, last, arch)
        trainer, history, start_epoch = run_setup.start_trainer(
            network, argparse.Namespace(l2=l2, momentum=momentum, seed=seed, backend=backend),
            schedule[0][1], ckpt=ckpt)
        earlier = 0.0
        if ckpt is not None:
            earlier = float(sum(history.seconds))
            log(f"resume | {last}: {start_epoch} of {epochs} epochs done")
        if start_epoch < epochs:
            history = fit(trainer, req_data, epochs=epochs, out_dir=run_dir,
                          batch_size=batch_size,
                          schedule=schedule, augment=augment, seed=seed, arch=arch, plot=False,
                          progress=progress, log=log, history=history, start_epoch=start_epoch)
        test_acc = None
        if len(getattr(req_data, "X_test", ())):
            _, test_acc = loss_and_accuracy(predict_in_batches(trainer.predict_fn,
                                                               req_data.X_test), req_data.y_test)
        seconds = time.time() - t0 + earlier  # a resumed run: its earlier epochs' time too
        val = [a for a in history.val_acc if not math.isnan(a)]
        results.append({
            "label": label, "type": req.type, "depth": req.depth, "width": req.width,
            "options": dict(req.options), "layers": spec.total_depth(req.depth, req.width),
            "params": count_params(network), "trainable_params": count_params(network,
                                                                               trainable=True),
            "best_val_acc": max(val) if val else None,
            "last_val_acc": history.val_acc[-1] if len(history) else None,
            "last_train_loss": history.train_loss[-1] if len(history) else float("nan"),
            "test_acc": test_acc, "seconds": seconds,
            "compile_seconds": sum(trainer.compile_seconds.values()),
            "run_dir": run_dir, "history": history.as_dict()})
        histories[label] = history
    return results, histories


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def compare_main(argv: Optional[List[str]] = None) -> int:
    """``compare.py TYPE[:DEPTH[:WIDTH]] ... [options]``; returns an exit status."""
    args, recipe = run_setup.read_arguments(compare_parser(), argv)
    plan = run_setup.plan_run(args, recipe, check_backend(args))
    requests = [parse_model(m) for m in args.models]
    schedule, augment = plan.schedule, plan.augment
    check_output_folder(args.out)
    info = get_dataset(args.dataset)
    for req in requests:  # what does not fit the machine is refused before anything is built
        check_model_size(get_spec(req.type), req.depth, req.width, req.options,
                         info.num_classes, info.input_shape, args.batch_size)
    for req in requests:  # every network is built (checked) before any training
        req.network = req.build(info.input_shape[1:], info.num_classes)
    run_setup.download_if_asked(args)
    # each network's preprocessing is train_nn.py's (one preparation per preprocessing)
    preps = [recipe_for_layout(req.options).preprocess for req in requests]
    mean_path = os.path.join(args.out, "pixel_mean.npy")
    prepared = {prep: run_setup.prepare_run_data(args, prep, mean_path)
                for prep in dict.fromkeys(preps)}
    for req, prep in zip(requests, preps):
        req.data = prepared[prep]
    data = prepared[preps[0]]
    make_output_folder(args.out)
    print(f"data   | {len(data.X_train)} training, {len(data.X_valid)} validation, "
          f"{len(data.X_test)} test images from {args.data}; {args.epochs} epochs each, "
          f"schedule {','.join(f'{e}:{lr:g}' for e, lr in schedule)}")
    results, histories = run_comparison(
        requests, data, epochs=args.epochs, out_dir=args.out, batch_size=args.batch_size,
        schedule=schedule, augment=plan.fit_augment,
        seed=args.seed, l2=args.l2, momentum=args.momentum, backend=args.backend,
        dataset=args.dataset, resume=args.resume)
    for r, prep in zip(results, preps):
        r["preprocess"] = prep
    print()
    print(format_table(results))
    title = args.title or (f"{info.title}, "
                           f"{len(data.X_train)} training images, "
                           f"{args.epochs} epoch{'s' if args.epochs != 1 else ''}")
    png = os.path.join(args.out, "compare.png")
    written = plot_comparison(histories, png, title=title)
    record = {"title": title, "epochs": args.epochs, "limit": args.limit,
              "batch_size": args.batch_size, "schedule": [list(s) for s in schedule],
              "dataset": args.dataset, "augment": augment, "seed": args.seed, "l2": args.l2,
              "momentum": args.momentum, "backend": args.backend or "default",
              "train_images": len(data.X_train), "valid_images": len(data.X_valid),
              "test_images": len(data.X_test), "runs": results}
    path = os.path.join(args.out, "compare.json")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_json_safe(record), f, indent=1)
    print(f"wrote  | {path}" + (f" and {png}" if written else " (no plot: matplotlib missing)"))
    return 0
