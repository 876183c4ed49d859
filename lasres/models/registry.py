"""The registry mapping architecture names to builders.

A builder is a plain function ``builder(depth, width, input_var, num_classes,
input_shape, **options) -> output layer``. :func:`register_model` (a
decorator) or :func:`register` adds one with what the scripts need to
describe it: the total-depth formula, a check of its depth/width arguments,
the note printed when a depth looks like a total depth, and the seeds'
published weight files.
"""
import os
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import ArchitectureError, LasresError
from ..io.sizecheck import format_bytes
from ..recipes import LEGACY
from ..weights.registry import entries

__all__ = ["ModelSpec", "register", "register_model", "get_spec", "available", "build",
           "parse_options", "arch_record",
           "total_depth_hint", "estimate_memory", "machine_memory", "check_model_size"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build and describe one architecture family.

    Attributes
    ----------
    name : str
        The type name used by the scripts.
    builder : callable
        ``builder(depth, width, input_var, num_classes, input_shape, **options)``.
    title : str
        One line for banners and the README.
    total_depth : callable
        ``(depth, width) -> int``: the number of weighted layers.
    depth_formula : str
        The formula, for messages (e.g. ``'6n+2'``).
    default_depth, default_width : int
    check : callable or None
        ``(depth, width) -> None``, raising ArchitectureError when impossible.
    options : tuple of str
        Names of the extra keyword options the builder accepts.
    weights : dict
        ``{(depth, width): file name}``: the seeds' published weight files.
    hint : callable or None
        ``(depth, width) -> str or None``: a note when ``depth`` looks like a
        total depth rather than the per-stage multiplier.
    channels : int
        Channels of the first stage per unit of width (16 for the CIFAR
        ResNets; 32 where two streams or doubled filters run side by side),
        for :func:`estimate_memory`.
    """

    name: str
    builder: Callable
    title: str
    total_depth: Callable
    depth_formula: str
    default_depth: int = 18
    default_width: int = 1
    check: Optional[Callable] = None
    options: tuple = field(default_factory=tuple)
    weights: dict = field(default_factory=dict)
    hint: Optional[Callable] = None
    channels: int = 16

    def validate(self, depth, width):
        if not isinstance(depth, int) or depth < 1:
            raise ArchitectureError(f"{self.name}: depth must be a positive integer "
                                    f"(the per-stage block multiplier n), got {depth!r}")
        if not isinstance(width, int) or width < 1:
            raise ArchitectureError(f"{self.name}: width must be a positive integer, got {width!r}")
        if self.check is not None:
            self.check(depth, width)

    def depth_hint(self, depth, width):
        """The note for arguments that look like a total depth, or None."""
        return self.hint(depth, width) if self.hint is not None else None

    def build(self, depth: int, width: int, input_var=None, num_classes: int = 10,
              input_shape: tuple = (None, 3, 32, 32), **options):
        """Build this architecture from arguments already checked by
        :meth:`validate` (see :func:`build`, which checks them first).

        Raises
        ------
        ArchitectureError
            An option the builder does not take.
        """
        unknown = set(options) - set(self.options)
        if unknown:
            raise ArchitectureError(f"{self.name}: unknown option(s) {', '.join(sorted(unknown))}"
                                    + (f"; it takes {', '.join(self.options)}"
                                       if self.options else ""))
        return self.builder(depth, width, input_var=input_var, num_classes=num_classes,
                            input_shape=tuple(input_shape), **options)


def total_depth_hint(name, formula, total_depth, minimum, label=None):
    """A ``hint`` for a spec: when ``depth`` (at least ``minimum``) equals the
    total depth of some smaller multiplier m, say that ``'name m'`` builds it.

    ``label`` names such a net (default ``name``; e.g. ``'ResNet'``)."""
    def hint(depth, width):
        if depth < minimum:
            return None
        for m in range(1, depth):
            if total_depth(m, width) > depth:  # (increasing in m: stop, depth may be 10**9)
                break
            if total_depth(m, width) == depth:
                args = f"{m}" if width == 1 else f"{m} {width}"
                mine = f"{depth}" if width == 1 else f"{depth} {width}"
                return (f"note: depth is the per-stage block multiplier n ({formula} layers); "
                        f"{label or name}-{depth} is '{name} {args}', while '{name} {mine}' "
                        f"has {total_depth(depth, width)} layers")
        return None
    return hint


_REGISTRY = {}


def parse_options(items) -> dict:
    """Architecture options from ``KEY=VALUE`` strings.

    Values become int, float or bool (``true``/``false``/``yes``/``no``)
    where they read as one, else stay strings; ``-`` in keys becomes ``_``.

    Parameters
    ----------
    items : iterable of str

    Returns
    -------
    dict

    Raises
    ------
    LasresError
        An item without ``=``.
    """
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


def arch_record(type: str, depth: int, width: int, options=None,
                dataset: str = "cifar10") -> dict:
    """The ``arch`` record of checkpoints: type, depth, width, options, and
    the dataset when it is not CIFAR-10 (what a weight file is checked
    against when it is loaded)."""
    arch = {"type": type, "depth": depth, "width": width, **(options or {})}
    if dataset != "cifar10":
        arch["dataset"] = dataset
    return arch


def register(spec):
    """Add a :class:`ModelSpec` to the registry (its name must be new)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_model(name, title, total_depth, depth_formula, **spec):
    """Decorator form of :func:`register`: ``@register_model('normal', ...)``
    above a builder function registers it under ``name`` (keywords as
    :class:`ModelSpec`) and returns it unchanged."""
    def deco(builder):
        register(ModelSpec(name, builder, title, total_depth, depth_formula, **spec))
        return builder
    return deco


def available(pretrained: bool = False):
    """The registered type names, sorted; with ``pretrained=True``, the
    registered weight files instead (:mod:`lasres.weights.registry`): a list
    of :class:`~lasres.weights.registry.WeightEntry` (``.name``, ``.arch``,
    ``.preprocess``, ``.published_error``, ``.measured_error``; ``print(e.summary())``
    for one line each)."""
    if pretrained:
        return list(entries())
    return sorted(_REGISTRY)


def get_spec(type):
    """The :class:`ModelSpec` of a type name; a one-line error for unknown names."""
    try:
        return _REGISTRY[type]
    except KeyError:
        raise ArchitectureError(f"unknown model type {type!r}: choose one of "
                                f"{', '.join(available())}") from None


def build(type, depth=None, width=None, input_var=None, num_classes=10,
          input_shape=(None, 3, 32, 32), **options):
    """Build a registered architecture and return its output layer.

    Parameters
    ----------
    type : str
        Architecture name (see :func:`available`).
    depth : int
        The per-stage block multiplier n, as in the original scripts
        (``normal 18`` is ResNet-110, ``bottleneck 18`` ResNet-164).
    width : int
        Widening factor k (wide nets); 1 elsewhere.
    input_var : PyTensor variable or None
    num_classes : int
    input_shape : tuple
        ``(None, channels, height, width)``; e.g. ``(None, 1, 28, 28)`` for MNIST.
    **options
        Architecture-specific options (see the spec's ``options``).
    """
    spec = get_spec(type)
    depth = spec.default_depth if depth is None else depth
    width = spec.default_width if width is None else width
    spec.validate(depth, width)
    return spec.build(depth, width, input_var=input_var, num_classes=num_classes,
                      input_shape=input_shape, **options)


def estimate_memory(spec, depth: int, width: int, input_shape=(None, 3, 32, 32),
                    batch_size: int = LEGACY.batch_size,
                    num_classes: int = 10) -> tuple[int, int]:
    """What training ``spec`` at ``depth`` / ``width`` would take, from the
    arguments alone (nothing is built).

    The estimate assumes the three stages of the CIFAR nets: the weighted
    layers (``spec.total_depth``) split evenly over stages of ``c``, ``2c`` and
    ``4c`` channels (``c = spec.channels * width``) at full, half and quarter
    resolution, 3x3 convolutions throughout. It is within a factor of about
    two of the real figures of the registry's nets (``normal 18``: 1.77M
    parameters estimated, 1.73M real).

    Returns
    -------
    (int, int)
        The number of parameter values and the bytes training would need:
        float32 parameters, gradients and two optimizer arrays, plus the
        activations of a batch kept for the backward pass (twice their
        forward size).
    """
    layers = int(spec.total_depth(depth, width))
    c = int(spec.channels) * int(width)
    hw = 1
    for d in tuple(input_shape)[2:]:
        hw *= int(d or 1)
    params = layers * 9 * 21 * c * c // 3 + 4 * c * int(num_classes)
    per_image = layers * c * hw * 7 // 12  # (c hw + 2c hw/4 + 4c hw/16) / 3 a layer
    return params, 4 * 4 * params + 2 * 4 * per_image * int(batch_size)


def machine_memory() -> int | None:
    """The memory this process may use: the physical memory, or the address
    space limit (``RLIMIT_AS``) when lower; None where neither is known."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        pass
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            total = soft if total is None else min(total, soft)
    except (ImportError, ValueError, OSError):  # pragma: no cover
        pass
    return total


def check_model_size(spec, depth: int, width: int, options=None, num_classes: int = 10,
                     input_shape=(None, 3, 32, 32), batch_size: int = LEGACY.batch_size,
                     memory: int | None = None) -> int:
    """Refuse, before anything is built, a network that cannot fit this machine.

    Parameters
    ----------
    spec : ModelSpec
    depth, width : int
        Already checked by :meth:`ModelSpec.validate`.
    options : dict, optional
        Unused today (no option changes the size by more than the estimate's slack).
    num_classes : int
    input_shape : tuple
    batch_size : int
        The images of one step (training or inference).
    memory : int, optional
        The memory available (default :func:`machine_memory`).

    Returns
    -------
    int
        The estimated bytes.

    Raises
    ------
    ArchitectureError
        When the estimate exceeds the memory available, naming both.
    """
    params, nbytes = estimate_memory(spec, depth, width, input_shape, batch_size, num_classes)
    memory = machine_memory() if memory is None else memory
    if memory is not None and nbytes > memory:
        args = f"{depth}" if width == spec.default_width and spec.default_width == 1 \
            else f"{depth} {width}"
        raise ArchitectureError(
            f"{spec.name} {args}: the network would have about {params:.3g} parameter values "
            f"and need about {format_bytes(nbytes)} to train at batch size {batch_size} "
            f"(estimated from the arguments), more than this machine's "
            f"{format_bytes(memory)} of memory: refusing to build it")
    return nbytes
