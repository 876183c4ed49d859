"""Command-line front ends: ``scripts/train_nn.py`` and ``scripts/test_model.py``
are thin wrappers over :func:`train_main` and :func:`test_main`.

Both keep the Lasagne seed's positional interface ``[type] [depth] [width]``
(defaults ``normal 18 1``; depth is the per-stage block multiplier n). Every
user mistake ends with a one-line ``error: ...`` and exit status 2, never a
traceback.
"""
import argparse
import contextlib
import os
import sys
import time
import warnings

import numpy as np

from .errors import LasresError

__all__ = ["train_main", "test_main", "banner", "depth_hint",
           "find_weights", "load_network_weights", "main_wrapper", "RECIPES",
           "preprocessing_for", "save_predictions", "check_output_folder", "make_output_folder"]

REPO_WEIGHTS = "weights"
#: When the scripts started (set by them before their imports), so that the
#: reported start-up times include importing PyTensor.
_T0 = None


def _positional(parser):
    from .models import available
    parser.add_argument("type", nargs="?", default="normal",
                        help=f"architecture: {', '.join(available())} (default normal)")
    parser.add_argument("depth", nargs="?", type=int, default=None,
                        help="per-stage block multiplier n (default: the type's, 18 for normal)")
    parser.add_argument("width", nargs="?", type=int, default=None,
                        help="widening factor k (wide nets; default 1, 4 for wide)")
    parser.add_argument("--data", default="data", help="folder holding cifar-10-batches-py/ or "
                        "cifar-10-batches-bin/ (default data/)")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "cifar100", "mnist"),
                        help="cifar10 (default), cifar100 (python layout) or mnist (IDX files)")
    parser.add_argument("--backend", default=None, help="c (CPU, default), jax, numba, py")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N training and N test images (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option (e.g. dropout=0.3, preact=1, layout=keras for "
                             "the RoR seed's exact Keras networks); repeatable")


def _parse_options(items):
    opts = {}
    for item in items:
        if "=" not in item:
            raise LasresError(f"--option expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        for conv in (int, float):
            try:
                v = conv(v)
                break
            except ValueError:
                continue
        else:
            v = {"true": True, "false": False, "yes": True, "no": False}.get(v.lower(), v)
        opts[k.strip().replace("-", "_")] = v
    return opts


def depth_hint(type, depth, width):
    """A note when ``depth`` looks like a total depth rather than n, or None
    (each architecture's registry entry knows its formula)."""
    from .models import get_spec
    return get_spec(type).depth_hint(depth, width)


def banner(spec, depth, width, network, backend, options=None, log=print):
    """Print what is being built: architecture, layers, parameters, backend, device."""
    from .config import default_backend, describe_device
    from .layers import count_params, get_all_layers
    backend = backend or default_backend()
    total = spec.total_depth(depth, width)
    layers = get_all_layers(network)
    opt = "" if not options else "  options " + ", ".join(f"{k}={v}" for k, v in options.items())
    log(f"lasres | {spec.title}")
    log(f"       | type {spec.name}, depth n={depth}, width k={width}: {total} weighted layers "
        f"({spec.depth_formula}){opt}")
    log(f"       | {len(layers)} lasres layers, {count_params(network):,} parameters "
        f"({count_params(network, trainable=True):,} trainable)")
    log(f"       | backend {backend}, device {describe_device(backend)}")
    if backend.lower() == "c":  # the other backends run lasres ops' Python code or XLA
        from .ops import kernels
        log(f"       | convolution kernels {kernels()} (LASRES_KERNELS=numpy|onednn to choose)")


def _build(args):
    from .data import get_dataset
    from .models import build, get_spec
    info = get_dataset(args.dataset)
    input_shape, num_classes = info.input_shape, info.num_classes
    spec = get_spec(args.type)
    depth = spec.default_depth if args.depth is None else args.depth
    width = spec.default_width if args.width is None else args.width
    options = _parse_options(args.option)
    spec.validate(depth, width)
    hint = depth_hint(args.type, depth, width)
    if hint:
        print(hint)
    network = build(args.type, depth, width, num_classes=num_classes, input_shape=input_shape,
                    **options)
    return spec, depth, width, options, network


def find_weights(type, depth, width, weights=None, search=(REPO_WEIGHTS,), runs="runs"):
    """Where test_model reads weights: ``weights`` if given; else the seed's
    file name for these arguments in ``weights/``; else the best checkpoint
    of a train_nn run with the same arguments (``runs/TYPE_nN_kK/best.h5``)."""
    if weights:
        if not os.path.exists(weights):
            raise LasresError(f"weight file {weights} does not exist")
        return weights
    tried = []
    from .models import get_spec
    legacy = get_spec(type).weights.get((depth, width))
    if legacy:
        for folder in search:
            tried.append(os.path.join(folder, legacy))
    tried.append(os.path.join(runs, f"{type}_n{depth}_k{width}", "best.h5"))
    for folder in search:
        tried.append(os.path.join(folder, f"{type}_n{depth}_k{width}.h5"))
        tried.append(os.path.join(folder, f"{type}_n{depth}_k{width}.pklz"))
    for path in tried:
        if os.path.exists(path):
            return path
    raise LasresError(f"no weights found for {type} {depth} {width}: looked for "
                      f"{', '.join(tried)} (give --weights PATH)")


def check_output_folder(out, flag="--out"):
    """Raise :class:`LasresError` unless ``out`` is a folder or can be created
    as one; creates nothing (see :func:`make_output_folder`)."""
    path = os.path.abspath(os.fspath(out))
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise LasresError(f"{flag} {out}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise LasresError(f"{flag} {out}: the folder is not writable")
        return
    parent = path
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise LasresError(f"{flag} {out}: cannot create it, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise LasresError(f"{flag} {out}: cannot create it, {parent} is not writable")


def make_output_folder(out, flag="--out"):
    """Create the folder ``out`` (and its parents); a failure is one :class:`LasresError`."""
    check_output_folder(out, flag)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise LasresError(f"{flag} {out}: cannot create it ({exc.strerror or exc})") from None


def load_network_weights(network, path, arch=None):
    """Load a weight file (legacy .pklz, pickle, .npz or lasres HDF5) into
    ``network``; returns the :class:`lasres.weights.Checkpoint` or None.

    The file may hold at most what the network's parameters take (twice
    their float64 size, see :func:`lasres.sizecheck.network_budget`), and an
    HDF5 checkpoint must declare the network's parameter shapes: both are
    checked before anything is read."""
    from .layers import get_all_params, set_all_param_values
    from .sizecheck import network_budget
    from .weights import detect_format, load_weights
    params = get_all_params(network)
    shapes = [p.get_value(borrow=True).shape for p in params]
    limit, reason = network_budget([(sh, p.dtype) for sh, p in zip(shapes, params)])
    expected = shapes if detect_format(path) == "hdf5" else None
    values, ckpt = load_weights(path, with_checkpoint=True, network=network, max_bytes=limit,
                                expected_shapes=expected)
    if ckpt is not None and ckpt.arch and arch:
        keys = ("type", "depth", "width", "dataset")
        theirs = {k: ckpt.arch.get(k) for k in keys}
        ours = {k: arch.get(k) for k in keys}
        if theirs != ours:
            def desc(a):
                return " ".join(str(a[k]) for k in keys[:3]) + (f" ({a['dataset']})"
                                                                 if a["dataset"] else "")
            raise LasresError(f"{path} holds weights of {desc(theirs)}, not {desc(ours)}")
    try:
        set_all_param_values(network, values)
    except LasresError as exc:
        raise LasresError(f"{path} does not fit this network: {exc}") from None
    return ckpt


# --- the RoR seed's Keras networks: layout, preprocessing, recipe ------------------
#: What each preprocessing does, for the banners.
PREPROCESSING_TEXT = {
    "mean": "per-pixel mean subtracted, no scaling (the Lasagne seed's)",
    "scale255": "x / 255, no mean subtracted (the RoR seed's Keras preprocessing)",
}

#: Training recipes: the defaults each sets (explicit flags still win).
RECIPES = {
    "legacy": {},
    # the RoR seed's cifar10_ror_wrn.py: Adam 1e-3, no weight decay, batch 64,
    # 300 epochs, ImageDataGenerator(rotation_range=15, width/height_shift_range=5/32)
    "keras-seed": {"optimizer": "adam", "lr_schedule": "0.001", "l2": 0.0,
                   "augment": "keras-seed", "epochs": 300},
}


def preprocessing_for(options):
    """``'scale255'`` (the RoR seed's ``x / 255``) for networks built with
    ``layout=keras``, else ``'mean'`` (the Lasagne seed's mean subtraction)."""
    return "scale255" if (options or {}).get("layout") == "keras" else "mean"


def _checkpoint_layout(path):
    """The ``layout`` option recorded in a lasres checkpoint, or None."""
    from .weights import checkpoint_arch
    try:
        arch = checkpoint_arch(path)
    except LasresError:
        return None  # the regular path reports it
    return (arch or {}).get("layout")


def _auto_layout(args):
    """Add ``--option layout=keras`` when the weights test_model will read need
    the seed's Keras layout (a Keras weight file, or a checkpoint trained with
    that layout) and no layout was chosen."""
    from .models import get_spec
    from .weights import detect_format
    try:
        spec = get_spec(args.type)
        if "layout" not in spec.options or "layout" in _parse_options(args.option):
            return
        depth = spec.default_depth if args.depth is None else args.depth
        width = spec.default_width if args.width is None else args.width
        path = find_weights(spec.name, depth, width, args.weights)
        fmt = detect_format(path)
    except LasresError:
        return  # the regular path reports it
    layout = "keras" if fmt == "keras" else _checkpoint_layout(path) if fmt == "hdf5" else None
    if layout and layout != "paper":
        args.option = list(args.option) + [f"layout={layout}"]
        print(f"note: {path} needs layout={layout}: building the "
              f"{'RoR seed' if layout == 'keras' else layout}'s network")


def save_predictions(path, probs):
    """Write the softmax outputs ``(images, classes)`` as float32 ``.npy``, atomically."""
    from ._atomic import atomic_path
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(probs, dtype=np.float32), allow_pickle=False)


def _check_output_path(path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LasresError(f"cannot write {path}: folder {folder} does not exist")


@contextlib.contextmanager
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def main_wrapper(fn, argv=None, t0=None):
    """Run ``fn(argv)``; turn user errors into one line and exit status 2.
    ``t0`` is when the calling script started (for the start-up times)."""
    global _T0
    _T0 = t0
    try:
        with _quiet_warnings():
            return fn(argv)
    except LasresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a folder removed under us, permissions...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2


# --- train_nn --------------------------------------------------------------
def _check_common_numbers(args):
    """Ranges of the numeric options shared by the scripts."""
    if not 0 <= args.seed < 2 ** 32:
        raise LasresError(f"--seed must be in 0..{2 ** 32 - 1}, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        raise LasresError(f"--limit must be positive, got {args.limit}")
    vf = getattr(args, "valid_fraction", None)
    if vf is not None and not 0.0 <= vf < 1.0:
        raise LasresError(f"--valid-fraction must be in [0, 1), got {vf}")


def _check_backend_flags(args):
    """The backend name; an error for jax-only flags on another backend."""
    from .config import BACKENDS, default_backend
    backend = (args.backend or default_backend()).lower()
    if backend not in BACKENDS:
        raise LasresError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    jax_only = [flag for flag, on in (("--devices", args.devices is not None),
                                      ("--precision bf16", args.precision != "float32"),
                                      ("--device-augment", args.device_augment)) if on]
    if jax_only and backend != "jax":
        raise LasresError(f"{', '.join(jax_only)} need(s) --backend jax")
    return backend


def make_trainer(network, args, learning_rate):
    """A :class:`lasres.training.Trainer`, or for ``--backend jax`` a
    :class:`lasres.jax_trainer.JaxTrainer` (state on the device, optional
    data parallelism and bf16)."""
    backend = _check_backend_flags(args)
    optimizer = getattr(args, "optimizer", "nesterov")
    if backend == "jax" and optimizer != "nesterov":
        raise LasresError(f"--optimizer {optimizer} (e.g. --recipe keras-seed) needs the c "
                          f"backend")
    if backend == "jax":
        from .config import get_mode
        get_mode("jax")  # a clear error when jax is missing
        from .jax_trainer import JaxTrainer
        return JaxTrainer(network, l2=args.l2, momentum=args.momentum,
                          learning_rate=learning_rate, devices=args.devices,
                          precision=args.precision, device_augment=args.device_augment,
                          seed=args.seed)
    from .training import Trainer
    return Trainer(network, l2=args.l2, momentum=args.momentum, learning_rate=learning_rate,
                   backend=backend, optimizer=optimizer)


def train_parser():
    p = argparse.ArgumentParser(
        prog="train_nn.py", description="Train a residual network on CIFAR-10 with the legacy "
        "recipe (batch 64, Nesterov momentum 0.9, L2 1e-4, lr 0.01/0.1/0.01/0.001 at epochs "
        "0/10/80/120, per-batch crop+flip augmentation).")
    _positional(p)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr-schedule", default="legacy",
                   help="'legacy', a constant rate, or EPOCH:RATE,... e.g. 0:0.1,30:0.01")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--augment", choices=("batch", "image", "keras-seed", "none"), default=None,
                   help="crop+flip per batch (legacy; the default for CIFAR), per image, the "
                        "RoR seed's rotation+shift per image (keras-seed), or none (the default "
                        "for MNIST)")
    p.add_argument("--recipe", choices=tuple(RECIPES), default="legacy",
                   help="legacy (the Lasagne seed's) or keras-seed (the RoR seed's: Adam 1e-3, "
                        "no L2, rotation 15 deg + shifts 5/32, 300 epochs); explicit flags win")
    p.add_argument("--optimizer", choices=("nesterov", "adam"), default="nesterov",
                   help="nesterov (legacy, with --momentum) or adam")
    p.add_argument("--valid-fraction", type=float, default=0.1)
    p.add_argument("--weights", default=None, help="initialise from a weight file")
    p.add_argument("--resume", nargs="?", const="auto", default=None,
                   help="resume from OUT/last.h5 (or the given checkpoint)")
    p.add_argument("--out", default=None, help="run folder (default runs/TYPE_nN_kK)")
    p.add_argument("--download", action="store_true",
                   help="download CIFAR-10 into --data when it is missing")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--devices", type=int, default=None,
                   help="jax backend: data-parallel over N devices (the batch is split, "
                        "gradients all-reduced; the same update as one device)")
    p.add_argument("--precision", choices=("float32", "bf16"), default="float32",
                   help="jax backend: bf16 mixed precision (float32 master weights)")
    p.add_argument("--device-augment", action="store_true",
                   help="jax backend: crop and flip on the device instead of the host")
    from . import distributed
    distributed.add_arguments(p)
    return p


def train_main(argv=None):
    """``train_nn.py [type] [depth] [width] [options]``; returns an exit status."""
    from .training import (check_resumable, fit, parse_schedule, predict_in_batches,
                           restore_training_state)
    from .evaluation import evaluate_probabilities

    parser = train_parser()
    args = parser.parse_args(argv)
    if RECIPES[args.recipe]:  # a recipe sets defaults; parse again so explicit flags win
        parser.set_defaults(**RECIPES[args.recipe])
        args = parser.parse_args(argv)
    from . import distributed
    dist = distributed.settings_from_args(args)  # None: a one-process run
    if dist is not None:
        if _check_backend_flags(args) != "jax":
            raise LasresError("a multi-process run (--coordinator, --num-processes, "
                              "--process-id or $LASRES_*) needs --backend jax")
        if not distributed.in_worker():
            return distributed.supervise(argv, dist, t0=_T0)
        distributed.initialize(dist)  # before anything touches a device
        if not distributed.is_primary():
            distributed.silence_stdout()  # process 0 reports for the run
    batch_size = args.batch_size or 64
    if batch_size < 1 or args.epochs < 1:
        raise LasresError("--batch-size and --epochs must be positive")
    _check_common_numbers(args)
    schedule = parse_schedule(args.lr_schedule)
    _check_backend_flags(args)
    t_start = time.time() if _T0 is None else _T0
    from .random import seed_everything
    seed_everything(args.seed)  # initial weights and dropout streams follow --seed
    if args.weights:
        _auto_layout(args)
    spec, depth, width, options, network = _build(args)
    arch = {"type": spec.name, "depth": depth, "width": width, **options}
    if args.dataset != "cifar10":
        arch["dataset"] = args.dataset
    out = args.out or os.path.join("runs", f"{spec.name}_n{depth}_k{width}"
                                   + ("" if args.dataset == "cifar10" else f"_{args.dataset}"))
    check_output_folder(out)
    augment = args.augment
    if augment is None:
        from .data import get_dataset
        augment = get_dataset(args.dataset).default_augment
    banner(spec, depth, width, network, args.backend, options)
    preprocessing = preprocessing_for(options)
    print(f"prep   | {PREPROCESSING_TEXT[preprocessing]}; recipe {args.recipe} "
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
        ckpt = load_network_weights(network, resume_path, arch)
        if ckpt is None:
            raise LasresError(f"{resume_path} is not a lasres checkpoint (resume needs one, with "
                              "the optimizer state)")
        check_resumable(ckpt, network)
        if (ckpt.epoch or 0) >= args.epochs:
            raise LasresError(f"{resume_path} is at epoch {ckpt.epoch}: nothing left to do for "
                              f"--epochs {args.epochs} (give more epochs to train further)")
    elif args.weights:
        load_network_weights(network, args.weights, arch)
        print(f"init   | weights from {args.weights}")

    if args.download and args.dataset == "cifar10":
        from .data import download_cifar10, find_cifar10
        try:
            find_cifar10(args.data)
        except LasresError:
            download_cifar10(args.data)
    primary = distributed.is_primary()  # several processes: only process 0 writes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from .data import prepare_dataset, save_pixel_mean
        # a missing or broken dataset fails here, with the run folder not yet created
        mean_path = os.path.join(out, "pixel_mean.npy")
        have_mean = os.path.isfile(mean_path)
        data = prepare_dataset(args.dataset, args.data,
                               pixel_mean_path=mean_path if have_mean else None,
                               limit=args.limit, seed=args.seed,
                               valid_fraction=args.valid_fraction, preprocessing=preprocessing)
    if primary:
        make_output_folder(out)
        if not have_mean and data.pixel_mean is not None:
            save_pixel_mean(mean_path, data.pixel_mean)
    print(f"data   | {len(data.X_train)} training, {len(data.X_valid)} validation, "
          f"{len(data.X_test)} test images from {args.data}")

    history, start_epoch = None, 0
    trainer = make_trainer(network, args, schedule[0][1])
    if ckpt is not None:
        if hasattr(trainer, "sync_to_device"):
            trainer.sync_to_device()
        history, start_epoch = restore_training_state(trainer, ckpt)
        print(f"resume | from {resume_path}, epoch {start_epoch}")
    if distributed.process_count() > 1:
        import zlib
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
                      augment=None if augment == "none" or args.device_augment else augment,
                      seed=args.seed, arch=arch, history=history, start_epoch=start_epoch,
                      plot=not args.no_plot, t_start=t_start)
    except KeyboardInterrupt:
        return 130
    best = os.path.join(out, "best.h5")
    distributed.barrier("lasres-fit-done")  # process 0 has written best.h5
    found = distributed.all_agree(os.path.exists(best))
    if any(found) and not all(found):
        raise LasresError(f"{best} is missing for process(es) "
                          f"{', '.join(str(i) for i, f in enumerate(found) if not f)}: --out "
                          "must be on a filesystem all processes share")
    if all(found) and len(data.X_test):
        load_network_weights(network, best, arch)
        if hasattr(trainer, "sync_to_device"):
            trainer.sync_to_device()
        ev = evaluate_probabilities(predict_in_batches(trainer.predict_fn, data.X_test), data.y_test)
        print(f"done   | best checkpoint {best}: test accuracy {ev.accuracy:.2%} "
              f"(error {ev.error:.2%}) on {ev.count} images")
    return 0


# --- test_model --------------------------------------------------------------
def test_parser():
    p = argparse.ArgumentParser(
        prog="test_model.py", description="Evaluate a residual network on the CIFAR-10 test "
        "images: accuracy, per-class accuracy, confusion matrix.")
    _positional(p)
    p.add_argument("--weights", default=None,
                   help="weight file (.pklz, .npz, lasres .h5 or Keras 1 .h5, which selects "
                        "layout=keras); default: the seed's file in "
                        "weights/ or runs/TYPE_nN_kK/best.h5")
    p.add_argument("--pixel-mean", default=None, help="pixel_mean.npy to subtract")
    p.add_argument("--save-predictions", default=None, metavar="PATH.npy",
                   help="write the softmax outputs (float32, images x classes, test-set order)")
    return p


def _pixel_mean_for(args, weights_path, ckpt):
    from .data import load_pixel_mean
    if args.pixel_mean:
        return load_pixel_mean(args.pixel_mean), args.pixel_mean
    if ckpt is not None and ckpt.pixel_mean is not None:
        return np.asarray(ckpt.pixel_mean, np.float32), weights_path
    for cand in (os.path.join(os.path.dirname(os.path.abspath(weights_path)), "pixel_mean.npy"),
                 os.path.join(args.data, "pixel_mean.npy")):
        if os.path.exists(cand):
            return load_pixel_mean(cand), cand
    return None, None


def test_main(argv=None):
    """``test_model.py [type] [depth] [width] [options]``; returns an exit status."""
    from .data import (CIFAR10_CLASSES, compute_pixel_mean, legacy_split, load_raw, preprocess,
                       scale255)
    from .evaluation import evaluate_probabilities, format_report
    from .config import get_mode
    from .layers import get_output
    from .training import _input_var, predict_in_batches
    import pytensor

    args = test_parser().parse_args(argv)
    _check_common_numbers(args)
    t_start = time.time() if _T0 is None else _T0
    if args.save_predictions:
        _check_output_path(args.save_predictions)
    _auto_layout(args)
    spec, depth, width, options, network = _build(args)
    arch = {"type": spec.name, "depth": depth, "width": width, **options}
    if args.dataset != "cifar10":
        arch["dataset"] = args.dataset
    path = find_weights(spec.name, depth, width, args.weights)
    banner(spec, depth, width, network, args.backend, options)
    ckpt = load_network_weights(network, path, arch)
    print(f"weights| {path}")
    raw = load_raw(args.dataset, args.data)
    preprocessing = preprocessing_for(options)
    print(f"prep   | {PREPROCESSING_TEXT[preprocessing]}")
    mean = None
    if preprocessing == "mean":
        mean, mean_from = _pixel_mean_for(args, path, ckpt)
        if mean is None:
            X_tr, _, _, _ = legacy_split(raw.X_train, raw.y_train, 0.1, args.seed)
            mean = compute_pixel_mean(X_tr)
            print("warning: no pixel mean found next to the weights or in the data folder: "
                  "computed it from the training batches (give --pixel-mean for the exact one)",
                  file=sys.stderr)
        else:
            print(f"mean   | pixel mean from {mean_from}")
    X_test, y_test = raw.X_test, raw.y_test
    if args.limit:
        X_test, y_test = X_test[:args.limit], y_test[:args.limit]
    X_test = scale255(X_test) if preprocessing == "scale255" else preprocess(X_test, mean)
    t0 = time.perf_counter()
    predict_fn = pytensor.function([_input_var(network)], get_output(network, deterministic=True),
                                   mode=get_mode(args.backend))
    compile_s = time.perf_counter() - t0
    batch = args.batch_size or 100
    first = predict_fn(X_test[:batch])
    print(f"ready  | compiled in {compile_s:.1f}s; first prediction {time.time() - t_start:.1f}s "
          f"after the start")
    t0 = time.perf_counter()
    rest = predict_in_batches(predict_fn, X_test[batch:], batch, progress=True, desc="test")
    probs = np.concatenate([first, rest]) if len(rest) else first
    seconds = time.perf_counter() - t0
    ev = evaluate_probabilities(probs, y_test, num_classes=probs.shape[1])
    names = raw.label_names or (CIFAR10_CLASSES if args.dataset == "cifar10" else None)
    print(format_report(ev, names))
    print(f"({len(X_test)} images in {seconds:.1f}s after the first batch)")
    if args.save_predictions:
        save_predictions(args.save_predictions, probs)
        print(f"saved  | softmax outputs {probs.shape} (float32) to {args.save_predictions}")
    return 0
