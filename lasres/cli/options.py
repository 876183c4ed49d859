"""What the command-line values mean: ``--option KEY=VALUE``, the training
recipes, the preprocessing, the backend and the numeric ranges; each is
checked here, once."""
from typing import Optional

from ..config import BACKENDS, default_backend
from ..errors import LasresError
from ..models.registry import parse_options
from ..recipes import LEGACY, recipe_for_layout, RECIPES as _RECIPES

__all__ = ["parse_options", "RECIPES", "PREPROCESSING_TEXT", "preprocessing_for",
           "check_common_numbers", "check_backend", "MAX_BATCH_SIZE"]

#: Largest ``--batch-size`` accepted (the memory estimate of
#: :func:`lasres.models.registry.estimate_memory` refuses what does not fit long before).
MAX_BATCH_SIZE = 1 << 20

#: What each preprocessing does, for the banners.
PREPROCESSING_TEXT = {
    "mean": "per-pixel mean subtracted, no scaling (the Lasagne seed's)",
    "scale255": "x / 255, no mean subtracted (the RoR seed's Keras preprocessing)",
}

#: Training recipes (:data:`lasres.recipes.RECIPES`): the flag defaults each
#: sets over the legacy ones (explicit flags still win).
RECIPES = {name: recipe.overrides() for name, recipe in _RECIPES.items()}


def preprocessing_for(options: Optional[dict]) -> str:
    """``'scale255'`` (the RoR seed's ``x / 255``) for networks built with
    ``layout=keras``, else ``'mean'`` (the Lasagne seed's mean subtraction):
    the preprocessing of :func:`lasres.recipes.recipe_for_layout`, by its old name."""
    return {"legacy": "mean", "keras-seed": "scale255"}[recipe_for_layout(options).preprocess]


def check_common_numbers(args) -> None:
    """Raise :class:`LasresError` unless the numeric options the scripts
    share (``--seed``, ``--limit``, ``--batch-size``, ``--valid-fraction``) are
    in range."""
    batch = getattr(args, "batch_size", None)
    if batch is not None and not 1 <= batch <= MAX_BATCH_SIZE:
        raise LasresError(f"--batch-size must be in 1..{MAX_BATCH_SIZE:,}, got {batch}")
    if not 0 <= args.seed < 2 ** 32:
        raise LasresError(f"--seed must be in 0..{2 ** 32 - 1}, got {args.seed}")
    if args.limit is not None and args.limit < 1:
        raise LasresError(f"--limit must be positive, got {args.limit}")
    vf = getattr(args, "valid_fraction", None)
    if vf is not None and not 0.0 <= vf < 1.0:
        raise LasresError(f"--valid-fraction must be in [0, 1), got {vf}")


def check_backend(args) -> str:
    """The backend name of ``train_nn.py``'s arguments, lower case.

    Raises
    ------
    LasresError
        An unknown backend, jax-only flags (``--devices``, ``--precision
        bf16``, ``--device-augment``) on another backend, or an optimizer
        other than Nesterov on jax.
    """
    backend = (args.backend or default_backend()).lower()
    if backend not in BACKENDS:
        raise LasresError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    jax_only = [flag for flag, on in (
        ("--devices", getattr(args, "devices", None) is not None),
        ("--precision bf16", getattr(args, "precision", "float32") != "float32"),
        ("--device-augment", getattr(args, "device_augment", False))) if on]
    if jax_only and backend != "jax":
        raise LasresError(f"{', '.join(jax_only)} need(s) --backend jax")
    optimizer = getattr(args, "optimizer", LEGACY.optimizer)
    if backend == "jax" and optimizer != "nesterov":
        raise LasresError(f"--optimizer {optimizer} (e.g. --recipe keras-seed) needs the c "
                          f"backend")
    return backend
