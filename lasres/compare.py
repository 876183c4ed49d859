"""Train several architectures side by side and plot their curves together.

``scripts/compare.py`` is a thin wrapper over :func:`compare_main`::

    compare.py resnet:3 plain:3 rir:8:1 cnn:8:1 --epochs 20 --limit 5000 \\
        --data data --out runs/compare --lr-schedule 0:0.1,10:0.01

Every model is given the same budget: the same data (one split, one pixel
mean), the same epochs, learning-rate schedule, batch size, augmentation and
seed; each network's images are preprocessed as ``train_nn.py`` does it
(:func:`lasres.recipes.recipe_for_layout`: ``x / 255`` for ``layout=keras``,
the legacy mean subtraction otherwise). Each run is trained with the trainer
``train_nn.py`` builds for the backend (:func:`lasres.cli.make_trainer`) and
:func:`lasres.training.fit` in its own folder ``OUT/TYPE_nDEPTH_kWIDTH``
(checkpoints and history); at the end a table is printed and
``OUT/compare.png`` (training loss and validation error of all runs) and
``OUT/compare.json`` (every run's arguments, size and history) are written.
``--dataset`` picks another dataset of :data:`lasres.data.DATASETS`
(``mnist``, ``fashion-mnist``: the nets are built for 1 x 28 x 28 input and
trained without the CIFAR crop and flip unless ``--augment`` says so).
``--resume`` continues each run from its ``last.h5`` (runs already done are
kept), so a comparison longer than one sitting is made in pieces.

A model is ``TYPE[:DEPTH[:WIDTH]]`` with the type's defaults for what is
left out, optionally followed by ``:KEY=VALUE`` architecture options
(``resnet:3:1:preact=1``, ``ror-wrn:2:2:dropout=0.3``).
"""
import argparse
import json
import math
import os
import time
import warnings
from typing import Callable, List, Optional, Tuple

from .errors import LasresError
from .recipes import LEGACY, LEGACY_SCHEDULE, recipe_for_layout

__all__ = ["ModelRequest", "parse_model", "compare_parser", "compare_main", "run_comparison"]


class ModelRequest(object):
    """One ``TYPE[:DEPTH[:WIDTH]][:KEY=VALUE...]`` request, resolved against
    the registry (defaults filled in, arguments and options validated)."""

    def __init__(self, type, depth, width, options):
        self.type, self.depth, self.width, self.options = type, depth, width, dict(options)

    def build(self, image_shape=(3, 32, 32), num_classes=10):
        """Build the network (raises LasresError for impossible arguments)."""
        from .models import build
        return build(self.type, self.depth, self.width, num_classes=num_classes,
                     input_shape=(None,) + tuple(image_shape), **self.options)

    @property
    def label(self):
        opts = "".join(f":{k}={v}" for k, v in self.options.items())
        return f"{self.type}:{self.depth}:{self.width}{opts}"

    @property
    def folder(self):
        opts = "".join(f"_{k}{v}" for k, v in self.options.items())
        return f"{self.type}_n{self.depth}_k{self.width}{opts}"

    def __repr__(self):
        return f"ModelRequest({self.label!r})"


def parse_model(text: str) -> ModelRequest:
    """Parse ``TYPE[:DEPTH[:WIDTH]][:KEY=VALUE...]`` into a :class:`ModelRequest`.

    Raises
    ------
    LasresError
        Unknown type, non-integer or impossible depth/width, unknown option.
    """
    from .cli import parse_options
    from .models import get_spec
    parts = [p.strip() for p in str(text).split(":")]
    if not parts or not parts[0]:
        raise LasresError(f"bad model {text!r}: expected TYPE[:DEPTH[:WIDTH]], e.g. resnet:3")
    spec = get_spec(parts[0])
    numbers, options = [], []
    for p in parts[1:]:
        if "=" in p:
            options.append(p)
        elif options:
            raise LasresError(f"bad model {text!r}: options (KEY=VALUE) come after DEPTH and WIDTH")
        else:
            numbers.append(p)
    if len(numbers) > 2:
        raise LasresError(f"bad model {text!r}: expected TYPE[:DEPTH[:WIDTH]]")
    try:
        values = [int(n) for n in numbers]
    except ValueError:
        raise LasresError(f"bad model {text!r}: DEPTH and WIDTH must be integers") from None
    depth = values[0] if len(values) > 0 else spec.default_depth
    width = values[1] if len(values) > 1 else spec.default_width
    spec.validate(depth, width)
    opts = parse_options(options)
    unknown = set(opts) - set(spec.options)
    if unknown:
        raise LasresError(f"bad model {text!r}: {spec.name} has no option "
                          f"{', '.join(sorted(unknown))}"
                          + (f" (it takes {', '.join(spec.options)})" if spec.options else ""))
    return ModelRequest(spec.name, depth, width, opts)


def compare_parser():
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
    from .cli import add_dataset_argument
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


def _fmt_pct(x):
    return "   n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:6.2%}"


def format_table(results):
    """The final comparison table, one line per run."""
    head = (f"{'model':<24} {'layers':>6} {'params':>11} {'best val':>9} {'last val':>9} "
            f"{'test':>7} {'train loss':>10} {'time':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r['label']:<24} {r['layers']:>6} {r['params']:>11,} "
                     f"{_fmt_pct(r['best_val_acc']):>9} {_fmt_pct(r['last_val_acc']):>9} "
                     f"{_fmt_pct(r['test_acc']):>7} {r['last_train_loss']:>10.4f} "
                     f"{r['seconds']:>7.1f}s")
    return "\n".join(lines)


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
    from .cli import banner
    from .layers import count_params
    from .models import get_spec
    from .evaluation import loss_and_accuracy
    from .cli.factory import make_trainer
    from .training import fit, predict_in_batches, restore_training_state

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
        arch = {"type": req.type, "depth": req.depth, "width": req.width, **req.options}
        if dataset != "cifar10":  # as train_nn.py records it in checkpoints
            arch["dataset"] = dataset
        run_dir = os.path.join(out_dir, req.folder if label == req.label else f"{req.folder}_{i}")
        last, ckpt = os.path.join(run_dir, "last.h5"), None
        if resume and os.path.exists(last):
            from .cli.weight_search import load_resume_checkpoint
            ckpt = load_resume_checkpoint(network, last, arch)
        trainer = make_trainer(network, argparse.Namespace(l2=l2, momentum=momentum, seed=seed,
                                                           backend=backend), schedule[0][1])
        history, start_epoch, earlier = None, 0, 0.0
        if ckpt is not None:
            trainer.sync_to_device()
            history, start_epoch = restore_training_state(trainer, ckpt)
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
    from .plotting import plot_comparison
    from .training import parse_schedule

    args = compare_parser().parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        raise LasresError("--epochs and --batch-size must be positive")
    from .cli import check_backend, check_common_numbers, check_output_folder, make_output_folder
    from .random import seed_everything
    check_common_numbers(args)
    check_backend(args)
    requests = [parse_model(m) for m in args.models]
    schedule = parse_schedule(args.lr_schedule)
    check_output_folder(args.out)
    from .data import download_dataset, get_dataset, prepare_dataset
    info = get_dataset(args.dataset)
    augment = args.augment or info.default_augment
    seed_everything(args.seed)  # initial weights follow --seed
    from .models import get_spec
    from .models.registry import check_model_size
    for req in requests:  # what does not fit the machine is refused before anything is built
        check_model_size(get_spec(req.type), req.depth, req.width, req.options,
                         info.num_classes, info.input_shape, args.batch_size)
    for req in requests:  # every network is built (checked) before any training
        req.network = req.build(info.input_shape[1:], info.num_classes)
    if args.download:
        download_dataset(args.dataset, args.data)
    # each network's preprocessing is train_nn.py's (one preparation per preprocessing)
    preps = [recipe_for_layout(req.options).preprocess for req in requests]
    prepared = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for prep in dict.fromkeys(preps):
            prepared[prep] = prepare_dataset(
                args.dataset, args.data, pixel_mean_path=os.path.join(args.out, "pixel_mean.npy"),
                limit=args.limit, seed=args.seed, valid_fraction=args.valid_fraction,
                preprocessing=prep)
    for req, prep in zip(requests, preps):
        req.data = prepared[prep]
    data = prepared[preps[0]]
    make_output_folder(args.out)
    print(f"data   | {len(data.X_train)} training, {len(data.X_valid)} validation, "
          f"{len(data.X_test)} test images from {args.data}; {args.epochs} epochs each, "
          f"schedule {','.join(f'{e}:{lr:g}' for e, lr in schedule)}")
    results, histories = run_comparison(
        requests, data, epochs=args.epochs, out_dir=args.out, batch_size=args.batch_size,
        schedule=schedule, augment=None if augment == "none" else augment,
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
    from ._atomic import atomic_path
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(_json_safe(record), f, indent=1)
    print(f"wrote  | {path}" + (f" and {png}" if written else " (no plot: matplotlib missing)"))
    return 0
