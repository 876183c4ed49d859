"""Evaluation of a classifier: its predictions, batch by batch, and their
accuracy, loss, per-class accuracy and confusion matrix, with a plain-text
report."""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np
from tqdm import tqdm

__all__ = ["Evaluation", "predict_in_batches", "evaluate_probabilities", "loss_and_accuracy",
           "format_report"]


def predict_in_batches(predict_fn: Callable, X: np.ndarray, batch_size: int = 500,
                       progress: bool = False, desc: str = "predict") -> np.ndarray:
    """Probabilities for all of ``X``, computed ``batch_size`` images at a time."""
    out = []
    starts = range(0, len(X), batch_size)
    for start in tqdm(starts, desc=desc, unit="batch", leave=False, disable=not progress):
        out.append(np.asarray(predict_fn(X[start:start + batch_size])))
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


@dataclass
class Evaluation:
    """Scores of predictions against labels."""

    accuracy: float
    loss: float
    per_class_accuracy: np.ndarray
    confusion: np.ndarray  # rows: true class, columns: predicted class
    count: int

    @property
    def error(self):
        return 1.0 - self.accuracy


def loss_and_accuracy(probs, y) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy of class probabilities against labels.

    The loss is the legacy objective's data term computed in NumPy
    (probabilities below 1e-30 count as 1e-30).

    Parameters
    ----------
    probs : array_like
        ``(N, C)`` class probabilities.
    y : array_like
        ``(N,)`` integer labels.

    Returns
    -------
    (float, float)
        ``(loss, accuracy)``; both NaN for no images.
    """
    probs = np.asarray(probs)
    y = np.asarray(y).astype(np.int64)
    if not len(y):
        return float("nan"), float("nan")
    p = probs[np.arange(len(y)), y]
    loss = float(-np.mean(np.log(np.maximum(p, 1e-30))))
    accuracy = float(np.mean(probs.argmax(axis=1) == y))
    return loss, accuracy


def evaluate_probabilities(probs, y, num_classes: Optional[int] = None) -> Evaluation:
    """Score class probabilities against integer labels.

    Parameters
    ----------
    probs, y : array_like
        As for :func:`loss_and_accuracy`.
    num_classes : int, optional
        Size of the confusion matrix (default ``C``).

    Returns
    -------
    Evaluation
    """
    probs = np.asarray(probs)
    y = np.asarray(y).astype(np.int64)
    num_classes = num_classes or probs.shape[1]
    pred = probs.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    support = confusion.sum(axis=1)
    per_class = np.divide(np.diag(confusion), support, out=np.full(num_classes, np.nan),
                          where=support > 0)
    loss, accuracy = loss_and_accuracy(probs, y)
    return Evaluation(accuracy, loss, per_class, confusion, len(y))


def format_report(ev, label_names=None):
    """Multi-line text: accuracy/error, per-class accuracy, confusion matrix."""
    n = ev.confusion.shape[0]
    names = list(label_names or [str(i) for i in range(n)])
    w = max(6, max(len(s) for s in names))
    lines = [f"test accuracy {ev.accuracy:.2%}   test error {ev.error:.2%}   "
             f"loss {ev.loss:.4f}   ({ev.count} images)", "", "per-class accuracy:"]
    for name, acc, row in zip(names, ev.per_class_accuracy, ev.confusion):
        lines.append(f"  {name:>{w}}  {acc:7.2%}  ({int(row.sum())} images)")
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              " " * (w + 2) + "".join(f"{s[:6]:>7}" for s in names)]
    for name, row in zip(names, ev.confusion):
        lines.append(f"  {name:>{w}}" + "".join(f"{int(v):7d}" for v in row))
    return "\n".join(lines)
