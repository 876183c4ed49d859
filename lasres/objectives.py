"""Loss functions and metrics (Lasagne's ``lasagne.objectives``)."""
import pytensor.tensor as pt
from pytensor.tensor.special import Softmax

from .utils import as_theano_expression

__all__ = ["binary_crossentropy", "categorical_crossentropy", "squared_error",
           "binary_hinge_loss", "multiclass_hinge_loss", "huber_loss", "aggregate",
           "binary_accuracy", "categorical_accuracy"]


def align_targets(predictions, targets):
    """Give a vector of targets a trailing axis to match a column of predictions."""
    if (getattr(predictions, "broadcastable", None) == (False, True)
            and getattr(targets, "ndim", None) == 1):
        targets = pt.shape_padright(as_theano_expression(targets))
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
    """Hinge loss ``max(0, delta - p·t)`` for binary targets.

    Parameters
    ----------
    predictions : tensor
        Log-odds (``log_odds=True``) or probabilities (``log_odds=False``,
        converted to log-odds first).
    targets : tensor
        Targets in {0, 1} (``binary=True``) or {-1, 1} (``binary=False``).
    delta : scalar
        The hinge's margin.
    log_odds : bool
        Must be given: as in Lasagne, leaving it None raises a FutureWarning
        (its default was to change from True to False).
    binary : bool
        Whether the targets are in {0, 1}.
    """
    if log_odds is None:
        raise FutureWarning(
            "The `log_odds` argument to `binary_hinge_loss` will change "
            "its default to `False` in a future version. Explicitly give "
            "`log_odds=True` to retain current behavior in your code, "
            "but also check the documentation if this is what you want.")
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


def huber_loss(predictions, targets, delta=1):
    """Elementwise Huber loss: ``0.5·(p - t)²`` where ``|p - t| <= delta``,
    ``delta·(|p - t| - delta/2)`` elsewhere (quadratic near 0, linear beyond).

    Parameters
    ----------
    predictions, targets : tensors of the same shape (or a column of
        predictions with a vector of targets)
    delta : scalar
        Where the loss turns from quadratic to linear.
    """
    predictions, targets = align_targets(predictions, targets)
    abs_diff = abs(targets - predictions)
    ift = 0.5 * squared_error(targets, predictions)
    iff = delta * (abs_diff - delta / 2.)
    return pt.switch(abs_diff <= delta, ift, iff)


def aggregate(loss, weights=None, mode="mean"):
    """Reduce elementwise losses to a scalar.

    Parameters
    ----------
    loss : tensor
        Elementwise losses.
    weights : tensor, array, number or None
        Weights broadcast against ``loss`` (multiplied in before reducing).
    mode : {'mean', 'sum', 'normalized_sum'}
        'normalized_sum' divides the weighted sum by the sum of the weights.
    """
    if weights is not None:
        loss = loss * weights
    if mode == "mean":
        return loss.mean()
    if mode == "sum":
        return loss.sum()
    if mode == "normalized_sum":
        if weights is None:
            raise ValueError("require weights for mode='normalized_sum'")
        return loss.sum() / pt.sum(weights)
    raise ValueError("mode must be 'mean', 'sum' or 'normalized_sum', got %r" % (mode,))


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
