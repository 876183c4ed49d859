"""``scripts/train_nn.py``: train a network with the legacy recipe."""
import argparse
import os
import time
import zlib
from typing import List, Optional

import numpy as np

from ..data import save_pixel_mean
from ..errors import LasresError
from ..recipes import LEGACY, LEGACY_SCHEDULE, RECIPES
from ..train import OPTIMIZERS, distributed, fit, predict_in_batches
from ..train.evaluation import evaluate_probabilities
from ..train.interrupts import interrupted_status
from . import processes, run_setup
from .files import check_output_folder, make_output_folder
from .network import add_model_arguments, banner, build_network
from .options import check_backend
from .runner import start_time
from .weight_registry import check_resume_preprocess, training_preprocess
from .weight_search import auto_layout, load_network_weights, load_resume_checkpoint

__all__ = ["train_parser", "train_main", "RESUME_SETTINGS", "check_resume_settings"]

#: The settings ``--resume`` compares with what the checkpoint recorded:
#: ``--resume-override`` name -> (the checkpoint's ``extra`` key, the flag).
RESUME_SETTINGS = {
    "seed": ("seed", "--seed"), "batch-size": ("batch_size", "--batch-size"),
    "lr-schedule": ("schedule", "--lr-schedule"), "augment": ("augment", "--augment"),
    "recipe": ("recipe", "--recipe"), "optimizer": ("optimizer", "--optimizer"),
    "l2": ("l2", "--l2"), "momentum": ("momentum", "--momentum"),
}


def _shown(key, value):
    if key == "schedule" and isinstance(value, list):
        try:
            return ",".join(f"{int(e)}:{float(r):g}" for e, r in value)
        except (TypeError, ValueError):
            pass
    if key == "augment" and value is None:
        return "none"
    return str(value)[:60]


def check_resume_settings(extra, current: dict, override=None, path="the checkpoint") -> list:
    """Refuse to resume with other settings than the checkpoint recorded.

    Parameters
    ----------
    extra : dict or None
        The checkpoint's ``extra`` (what :func:`lasres.train.fit` wrote).
    current : dict
        This run's values, by ``extra`` key (``seed``, ``batch_size``,
        ``schedule`` as ``[[epoch, rate], ...]``, ``augment``, ``recipe``...).
    override : str, optional
        ``--resume-override``: comma-separated names of :data:`RESUME_SETTINGS`
        whose new values are accepted.
    path : str
        The checkpoint, for the message.

    Returns
    -------
    list of str
        The names overridden (that differed).

    Raises
    ------
    LasresError
        An unknown name in ``override``, or a setting that differs and is not
        overridden (settings the checkpoint does not record are not compared).
    """
    names = [n.strip() for n in (override or "").split(",") if n.strip()]
    unknown = [n for n in names if n.replace("_", "-") not in RESUME_SETTINGS]
    if unknown:
        raise LasresError(f"--resume-override: unknown setting(s) "
                          f"{', '.join(n[:40] for n in unknown[:5])} (choose from "
                          f"{', '.join(RESUME_SETTINGS)})")
    allowed = {n.replace("_", "-") for n in names}
    extra = extra if isinstance(extra, dict) else {}
    differ, accepted = [], []
    for name, (key, flag) in RESUME_SETTINGS.items():
        if key not in extra or key not in current:
            continue
        theirs, ours = extra[key], current[key]
        if isinstance(theirs, (int, float)) and isinstance(ours, (int, float)) \
                and not isinstance(theirs, bool):
            same = float(theirs) == float(ours)
        else:
            same = theirs == ours
        if same:
            continue
        (accepted if name in allowed else differ).append(
            (name, f"{flag} {_shown(key, theirs)}, not {_shown(key, ours)}"))
    if differ:
        raise LasresError(f"--resume: {path} was trained with "
                          + "; ".join(d for _, d in differ)
                          + f": give the same values, or --resume-override "
                          f"{','.join(n for n, _ in differ)} to continue with the new ones")
    return [n for n, _ in accepted]


def train_parser() -> argparse.ArgumentParser:
    """The argument parser of ``train_nn.py``."""
    p = argparse.ArgumentParser(
        prog="train_nn.py", description=f"Train a residual network on CIFAR-10 with the legacy "
        f"recipe (batch {LEGACY.batch_size}, Nesterov momentum {LEGACY.momentum:g}, L2 "
        f"{LEGACY.l2:g}, lr {'/'.join(f'{lr:g}' for _, lr in LEGACY_SCHEDULE)} at epochs "
        f"{'/'.join(str(e) for e, _ in LEGACY_SCHEDULE)}, per-batch crop+flip augmentation).")
    add_model_arguments(p)
    p.add_argument("--epochs", type=int, default=LEGACY.epochs)
    p.add_argument("--lr-schedule", default=LEGACY.lr_schedule,
                   help="'legacy', a constant rate, or EPOCH:RATE,... e.g. 0:0.1,30:0.01")
    p.add_argument("--momentum", type=float, default=LEGACY.momentum)
    p.add_argument("--l2", type=float, default=LEGACY.l2)
    p.add_argument("--augment", choices=("batch", "image", "keras-seed", "none"),
                   default=LEGACY.augment,
                   help="crop+flip per batch (legacy; the default for CIFAR), per image, the "
                        "RoR seed's rotation+shift per image (keras-seed), or none (the default "
                        "for MNIST)")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=LEGACY.name,
                   help="legacy (the Lasagne seed's) or keras-seed (the RoR seed's: Adam 1e-3, "
                        "no L2, rotation 15 deg + shifts 5/32, 300 epochs); explicit flags win")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=LEGACY.optimizer,
                   help="nesterov (legacy, with --momentum) or adam")
    p.add_argument("--valid-fraction", type=float, default=LEGACY.valid_fraction)
    p.add_argument("--preprocess", default=None, metavar="SPEC",
                   help="legacy (default), keras-seed (the default for layout=keras), recipes, "
                        "or scale=1/255,mean=pixel-all[,std=...]; recorded in the checkpoints")
    p.add_argument("--weights", default=None, help="initialise from a weight file")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from OUT/last.h5 (or the given checkpoint)")
    p.add_argument("--resume-override", default=None, metavar="KEY[,KEY]",
                   help="with --resume: continue with new values of these settings instead "
                        f"of refusing them ({', '.join(RESUME_SETTINGS)})")
    p.add_argument("--out", default=None, help="run folder (default runs/TYPE_nN_kK)")
    p.add_argument("--download", action="store_true",
                   help="download the dataset (CIFAR-10 or MNIST) into --data when it is "
                        "missing")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--devices", type=int, default=None,
                   help="jax backend: data-parallel over N devices (the batch is split, "
                        "gradients all-reduced; the same update as one device)")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="jax backend: bf16 mixed precision (float32 master weights)")
    p.add_argument("--device-augment", action="store_true",
                   help="jax backend: crop and flip on the device instead of the host")
    processes.add_arguments(p)
    return p


def train_main(argv: Optional[List[str]] = None) -> int:
    """``train_nn.py [type] [depth] [width] [options]``; returns an exit status."""
    args, recipe = run_setup.read_arguments(train_parser(), argv)
    backend = check_backend(args)
    dist = processes.settings_from_args(args)  # None: a one-process run
    if dist is not None:
        if backend != "jax":
            raise LasresError("a multi-process run (--coordinator, --num-processes, "
                              "--process-id or $LASRES_*) needs --backend jax")
        if not distributed.in_worker():
            return processes.supervise(argv, dist, t0=start_time())
        distributed.initialize(dist)  # before anything touches a device
        if not distributed.is_primary():
            distributed.silence_stdout()  # process 0 reports for the run
    t_start = time.time() if start_time() is None else start_time()
    plan = run_setup.plan_run(args, recipe, backend)
    batch_size, schedule, augment, fit_augment = (plan.batch_size, plan.schedule, plan.augment,
                                                  plan.fit_augment)
    if args.weights:
        auto_layout(args)
    model = build_network(args)
    spec, depth, width, options, network = model
    prep = training_preprocess(args.preprocess, options)  # recorded with the architecture
    arch = dict(model.arch(args.dataset), preprocess=prep.to_dict())
    out = args.out or os.path.join("runs", f"{spec.name}_n{depth}_k{width}"
                                   + ("" if args.dataset == "cifar10" else f"_{args.dataset}"))
    check_output_folder(out)
    # recorded in the checkpoints, compared by --resume
    settings = {"recipe": args.recipe, "optimizer": args.optimizer, "l2": args.l2,
                "momentum": args.momentum}
    if args.resume_override and not args.resume:
        raise LasresError("--resume-override needs --resume")
    banner(spec, depth, width, network, backend, options)
    print(f"prep   | {prep.describe()}; recipe {args.recipe} "
          f"({args.optimizer}, augmentation {augment})")

    # Everything that can be refused is checked before anything is created:
    # the checkpoint to resume from, the initial weights, then the data.
    ckpt = resume_path = None
    if args.resume:
        resume_path = os.path.join(out, "last.h5") if args.resume == "auto" else args.resume
        found = distributed.all_agree(os.path.exists(resume_path))
        if not all(found):
            raise LasresError(f"nothing to resume: {resume_path} does not exist" + (
                "" if not any(found) else " for process(es) " + ", ".join(
                    str(i) for i, f in enumerate(found) if not f) + " (--out must be on a "
                "filesystem all processes share)"))
        ckpt = load_resume_checkpoint(network, resume_path, arch)
        check_resume_preprocess(ckpt, prep, resume_path)
        changed = check_resume_settings(ckpt.extra, dict(settings, seed=args.seed,
                                                         batch_size=batch_size,
                                                         schedule=[list(s) for s in schedule],
                                                         augment=fit_augment),
                                        args.resume_override, resume_path)
        if changed:
            print(f"resume | with new {', '.join(changed)} (--resume-override)")
        if (ckpt.epoch or 0) >= args.epochs:
            raise LasresError(f"{resume_path} is at epoch {ckpt.epoch}: nothing left to do for "
                              f"--epochs {args.epochs} (give more epochs to train further)")
    elif args.weights:
        load_network_weights(network, args.weights, arch)
        print(f"init   | weights from {args.weights}")

    run_setup.download_if_asked(args)
    primary = distributed.is_primary()  # several processes: only process 0 writes
    # a missing or broken dataset fails here, with the run folder not yet created
    mean_path = os.path.join(out, "pixel_mean.npy")
    have_mean = os.path.isfile(mean_path)
    data = run_setup.prepare_run_data(args, prep, mean_path if have_mean else None)
    if primary:
        make_output_folder(out)
        if not have_mean and data.pixel_mean is not None:
            save_pixel_mean(mean_path, data.pixel_mean)
    print(f"data   | {len(data.X_train)} training, {len(data.X_valid)} validation, "
          f"{len(data.X_test)} test images from {args.data}")

    trainer, history, start_epoch = run_setup.start_trainer(network, args, schedule[0][1],
                                                            backend, ckpt)
    if ckpt is not None:
        print(f"resume | from {resume_path}, epoch {start_epoch}")
    if distributed.process_count() > 1:
        distributed.check_same(
            training_images=len(data.X_train), validation_images=len(data.X_valid),
            test_images=len(data.X_test), epochs=args.epochs, batch_size=batch_size,
            seed=args.seed, start_epoch=start_epoch, parameters=trainer.num_params,
            data_checksum=zlib.crc32(np.ascontiguousarray(data.y_train).tobytes() +
                                     np.ascontiguousarray(data.X_train[:16]).tobytes()))
    compile_s = sum(trainer.compile_seconds.values())
    print(f"ready  | compiled in {compile_s:.1f}s; {time.time() - t_start:.1f}s from start to "
          f"the first training step; writing to {out}/")

    try:
        history = fit(trainer, data, epochs=args.epochs, out_dir=out, batch_size=batch_size,
                      schedule=schedule,
                      augment=fit_augment, seed=args.seed, arch=arch, history=history,
                      start_epoch=start_epoch, plot=not args.no_plot, t_start=t_start,
                      settings=settings)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: fit has said where to resume
        return interrupted_status(exc)
    best = os.path.join(out, "best.h5")
    distributed.barrier("lasres-fit-done")  # process 0 has written best.h5
    found = distributed.all_agree(os.path.exists(best))
    if any(found) and not all(found):
        raise LasresError(f"{best} is missing for process(es) "
                          f"{', '.join(str(i) for i, f in enumerate(found) if not f)}: --out "
                          "must be on a filesystem all processes share")
    if all(found) and len(data.X_test):
        load_network_weights(network, best, arch)
        trainer.sync_to_device()
        ev = evaluate_probabilities(predict_in_batches(trainer.predict_fn, data.X_test),
                                    data.y_test)
        print(f"done   | best checkpoint {best}: test accuracy {ev.accuracy:.2%} "
              f"(error {ev.error:.2%}) on {ev.count} images")
    return 0
