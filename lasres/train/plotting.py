"""Training-curve plots (matplotlib, an optional dependency)."""
import warnings

from ..io.atomic import atomic_path

__all__ = ["plot_history", "plot_comparison"]


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no plot written "
                      "(pip install 'lasres[plot]')")
        return None


def _style(epochs):
    """Markers on the curves of short runs."""
    return {"marker": "o", "markersize": 3} if len(epochs) < 30 else {}


def _finish(plt, fig, path):
    """Lay out ``fig``, write it atomically to ``path`` (PNG), close it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_history(history, path, title=None):
    """Training loss and validation error per epoch, as the Lasagne seed's
    figures showed them, written atomically to ``path`` (PNG)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax1 = plt.subplots(figsize=(7, 4.2))
    style = _style(history.epoch)
    ax1.plot(history.epoch, history.train_loss, color="tab:blue", label="training loss", **style)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss", color="tab:blue")
    ax2 = ax1.twinx()
    val_err = [100.0 * (1.0 - a) for a in history.val_acc]
    ax2.plot(history.epoch, val_err, color="tab:red", label="validation error", **style)
    ax2.set_ylabel("validation error (%)", color="tab:red")
    if title:
        ax1.set_title(title)
    return _finish(plt, fig, path)


def plot_comparison(histories, path, title=None, metric="val_error"):
    """One figure of several runs' curves: ``histories`` maps a label to a
    :class:`lasres.train.History`. Left: training loss; right: validation
    error (%)."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, h in histories.items():
        style = _style(h.epoch)
        ax1.plot(h.epoch, h.train_loss, label=label, **style)
        ax2.plot(h.epoch, [100.0 * (1.0 - a) for a in h.val_acc], label=label, **style)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation error (%)")
    ax2.legend()
    if title:
        fig.suptitle(title)
    return _finish(plt, fig, path)
