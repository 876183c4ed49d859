"""What a comparison of architectures is made of: the model requests
``TYPE[:DEPTH[:WIDTH]][:KEY=VALUE...]`` and the table of results.

``compare.py`` (:mod:`lasres.cli.run_compare`) trains each request with the
same budget and prints :func:`format_table`::

    compare.py resnet:3 plain:3 rir:8:1 cnn:8:1 --epochs 20 --limit 5000

A model is ``TYPE[:DEPTH[:WIDTH]]`` with the type's defaults for what is
left out, optionally followed by ``:KEY=VALUE`` architecture options
(``resnet:3:1:preact=1``, ``ror-wrn:2:2:dropout=0.3``).
"""
import math

from .errors import LasresError
from .models import build, get_spec
from .models.registry import arch_record, parse_options

__all__ = ["ModelRequest", "parse_model", "format_table"]


class ModelRequest(object):
    """One ``TYPE[:DEPTH[:WIDTH]][:KEY=VALUE...]`` request, resolved against
    the registry (defaults filled in, arguments and options validated)."""

    def __init__(self, type, depth, width, options):
        self.type, self.depth, self.width, self.options = type, depth, width, dict(options)

    def build(self, image_shape=(3, 32, 32), num_classes=10):
        """Build the network (raises LasresError for impossible arguments)."""
        return build(self.type, self.depth, self.width, num_classes=num_classes,
                     input_shape=(None,) + tuple(image_shape), **self.options)

    def arch(self, dataset: str = "cifar10") -> dict:
        """The ``arch`` record of its checkpoints (as ``train_nn.py`` writes it)."""
        return arch_record(self.type, self.depth, self.width, self.options, dataset)

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
