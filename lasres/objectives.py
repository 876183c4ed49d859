"""Loss functions and metrics (Lasagne's ``lasagne.objectives``)."""
import pytensor.tensor as pt
from pytensor.tensor.special import Softmax

__all__ = ["binary_crossentropy", "categorical_crossentropy", "squared_error",
           "binary_hinge_loss", "multiclass_hinge_loss", "aggregate",
           "binary_accuracy", "categorical_accuracy"]


def align_targets(predictions, targets):
    """Give a vector of targets a trailing axis to match a column of predictions."""
    if (getattr(predictions, "broadcastable", None) == (False, True)
            and getattr(targets, "ndim", None) == 1):
        targets = pt.shape_padright(targets)
    return predictions, targets


def _log_probabilities(predictions):
    """``log(predictions)``, taken from the logits when ``predictions`` is a
    softmax (numerically safe: no log of an underflowed zero)."""
    owner = predictions.owner
    if owner is not None and isinstance(owner.op, Softmax):
        return pt.special.log_softmax(owner.inputs[0], axis=owner.op.axis)
    return pt.log(predictions)


def binary_crossentropy(predictions, targets):
    """Elementwise ``-t·log(p) - (1-t)·log(1-p)``."""
    predictions, targets = align_targets(predictions, targets)
    return -(targets * pt.log(predictions) + (1.0 - targets) * pt.log(1.0 - predictions))


def categorical_crossentropy(predictions, targets):
    """Per-row cross-entropy ``-log p[target]`` (integer targets) or
    ``-sum(t·log p)`` (one-hot or soft targets, same shape as predictions)."""
    logp = _log_probabilities(predictions)
    if targets.ndim == predictions.ndim:
        return -pt.sum(targets * logp, axis=-1)
    if targets.ndim == predictions.ndim - 1:
        return -logp[pt.arange(targets.shape[0]), targets]
    raise TypeError("rank mismatch between coding and true distributions")


def squared_error(a, b):
    """Elementwise ``(a - b)²``."""
    a, b = align_targets(a, b)
    return pt.square(a - b)


def binary_hinge_loss(predictions, targets, delta=1, log_odds=None, binary=True):
    """Hinge loss for binary targets in {0, 1} (or {-1, 1} with binary=False)."""
    if log_odds is None:
        log_odds = False
    if not log_odds:
        predictions = pt.log(predictions / (1 - predictions))
    if binary:
        targets = 2 * targets - 1
    predictions, targets = align_targets(predictions, targets)
    return pt.maximum(0, delta - predictions * targets)


def multiclass_hinge_loss(predictions, targets, delta=1):
    """Multi-class hinge loss of Crammer and Singer."""
    num_cls = predictions.shape[1]
    if targets.ndim == predictions.ndim - 1:
        targets = pt.eye(num_cls)[targets]
    elif targets.ndim != predictions.ndim:
        raise TypeError("rank mismatch between targets and predictions")
    corrects = predictions[targets.nonzero()]
    rest = pt.reshape(predictions[(1 - targets).nonzero()], (-1, num_cls - 1))
    rest = pt.max(rest, axis=1)
    return pt.maximum(0, rest - corrects + delta)


def aggregate(loss, weights=None, mode="mean"):
    """Reduce elementwise losses: ``mode`` is 'mean', 'sum' or
    'normalized_sum' (weighted sum divided by the sum of weights)."""
    if weights is not None:
        loss = loss * weights
    if mode == "mean":
        return loss.mean()
    if mode == "sum":
        return loss.sum()
    if mode == "normalized_sum":
        if weights is None:
            raise ValueError("require weights for mode='normalized_sum'")
        return loss.sum() / weights.sum()
    raise ValueError(f"mode must be 'mean', 'sum' or 'normalized_sum', got {mode!r}")


def binary_accuracy(predictions, targets, threshold=0.5):
    """1 where ``predictions >= threshold`` agrees with the binary target."""
    predictions, targets = align_targets(predictions, targets)
    predictions = pt.ge(predictions, threshold)
    return pt.eq(predictions, targets)


def categorical_accuracy(predictions, targets, top_k=1):
    """1 where the target is among the ``top_k`` highest predictions."""
    if targets.ndim == predictions.ndim:
        targets = pt.argmax(targets, axis=-1)
    elif targets.ndim != predictions.ndim - 1:
        raise TypeError("rank mismatch between targets and predictions")
    if top_k == 1:
        return pt.eq(pt.argmax(predictions, axis=-1), targets)
    top = pt.argsort(predictions, axis=-1)
    top = top[(slice(None),) * (top.ndim - 1) + (slice(-top_k, None),)]
    targets = pt.shape_padaxis(targets, axis=-1)
    return pt.any(pt.eq(top, targets), axis=-1)
