"""The network a front end asks for: built from the positional arguments
``[type] [depth] [width]`` and ``--option``, checked once, and described in
the banner."""
from typing import NamedTuple, Optional

from ..config import default_backend, describe_device
from ..data import DATASETS, get_dataset
from ..errors import ArchitectureError, LasresError
from ..layers import count_params, get_all_layers
from ..models import available, get_spec
from ..models.registry import arch_record, check_model_size
from ..ops import kernels
from ..ops.fused_infer import enabled as fused
from ..recipes import LEGACY
from .options import parse_options

__all__ = ["add_model_arguments", "add_dataset_argument", "ModelChoice", "build_network",
           "banner", "depth_hint"]


def add_model_arguments(parser) -> None:
    """Add the seed's positional ``[type] [depth] [width]`` and the options
    every script shares (``--data``, ``--dataset``, ``--backend``,
    ``--batch-size``, ``--limit``, ``--seed``, ``--option``) to ``parser``."""
    parser.add_argument("type", nargs="?", default="normal",
                        help=f"architecture: {', '.join(available())} (default normal)")
    parser.add_argument("depth", nargs="?", type=int, default=None,
                        help="per-stage block multiplier n (default: the type's, 18 for normal)")
    parser.add_argument("width", nargs="?", type=int, default=None,
                        help="widening factor k (wide nets; default 1, 4 for wide)")
    parser.add_argument("--data", default="data", help="folder holding cifar-10-batches-py/ or "
                        "cifar-10-batches-bin/ (default data/)")
    add_dataset_argument(parser)
    parser.add_argument("--backend", default=None, help="c (CPU, default), jax, numba, py")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N training and N test images (smoke runs)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option (e.g. dropout=0.3, preact=1, layout=keras for "
                             "the RoR seed's exact Keras networks); repeatable")


def add_dataset_argument(parser) -> None:
    """``--dataset``: one of :data:`lasres.data.DATASETS` (default cifar10)."""
    parser.add_argument("--dataset", default="cifar10", choices=tuple(DATASETS),
                        help="cifar10 (default), cifar100 (python layout), mnist or "
                             "fashion-mnist (the four IDX files)")


def depth_hint(type: str, depth: int, width: int) -> Optional[str]:
    """A note when ``depth`` looks like a total depth rather than n, or None
    (each architecture's registry entry knows its formula)."""
    return get_spec(type).depth_hint(depth, width)


class ModelChoice(NamedTuple):
    """A network built from the command line (see :func:`build_network`)."""

    spec: object  # lasres.models.ModelSpec
    depth: int
    width: int
    options: dict
    network: object  # the output Layer

    def arch(self, dataset: str = "cifar10") -> dict:
        """The ``arch`` record of checkpoints: type, depth, width, options, and
        the dataset when it is not CIFAR-10."""
        return arch_record(self.spec.name, self.depth, self.width, self.options, dataset)


def build_network(args, log=print) -> ModelChoice:
    """Build the network of parsed arguments (``type``, ``depth``, ``width``,
    ``option``, ``dataset``), with the type's defaults for what is left out.

    The arguments are validated once, then a note is logged when ``depth``
    looks like a total depth.

    Returns
    -------
    ModelChoice
        ``(spec, depth, width, options, network)``.

    Raises
    ------
    LasresError
        Unknown type, dataset or option, or impossible depth/width.
    """
    info = get_dataset(args.dataset)
    spec = get_spec(args.type)
    depth = spec.default_depth if args.depth is None else args.depth
    width = spec.default_width if args.width is None else args.width
    options = parse_options(args.option)
    spec.validate(depth, width)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:  # num_classes=, input_shape= included: the dataset sets those
        raise ArchitectureError(f"{spec.name}: unknown option(s) {', '.join(unknown)}"
                                + (f"; it takes {', '.join(spec.options)}" if spec.options
                                   else "; it takes none"))
    check_model_size(spec, depth, width, options, info.num_classes, info.input_shape,
                     LEGACY.batch_size if getattr(args, "batch_size", None) is None
                     else args.batch_size)
    hint = spec.depth_hint(depth, width)
    if hint:
        log(hint)
    try:
        network = spec.build(depth, width, num_classes=info.num_classes,
                             input_shape=info.input_shape, **options)
    except (TypeError, ValueError) as exc:
        if not options or isinstance(exc, LasresError):
            raise
        shown = ", ".join(f"{k}={v!r}"[:60] for k, v in options.items())
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ArchitectureError(f"{spec.name}: bad option value(s) {shown} ({msg})") from None
    return ModelChoice(spec, depth, width, options, network)


def banner(spec, depth: int, width: int, network, backend: Optional[str],
           options: Optional[dict] = None, log=print) -> None:
    """Print what is being built: architecture, layers, parameters, backend, device."""
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
        log(f"       | convolution kernels {kernels()} (LASRES_KERNELS=numpy|onednn to choose)"
            + ("; inference fused into oneDNN programs (LASRES_FUSE=0: op by op)"
               if fused() else ""))
