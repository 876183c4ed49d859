"""Running a front end: one ``error:`` line and exit status 2 for every user
mistake, Ctrl-C and ``kill`` (SIGTERM) ending a run alike, and the time the
calling script started."""
import contextlib
import sys
import warnings
from typing import Callable, List, Optional

from ..errors import LasresError
from ..train.interrupts import Terminated, interrupted_status, sigterm_as_interrupt

__all__ = ["main_wrapper", "start_time", "one_line"]

#: When the scripts started (set by them before their imports), so that the
#: reported start-up times include importing PyTensor.
_T0 = None


def start_time() -> Optional[float]:
    """The ``time.time()`` at which the running script started, or None
    (not started through :func:`main_wrapper` with a ``t0``)."""
    return _T0


#: Longest ``error:`` line printed (a message quoting a file's content is cut).
MAX_ERROR_CHARS = 1000


def one_line(message) -> str:
    """``message`` on one line (a library's message over several lines, as
    libhdf5 writes a failed write, joined with spaces) of at most
    :data:`MAX_ERROR_CHARS` characters."""
    text = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    if len(text) > MAX_ERROR_CHARS:
        text = text[:MAX_ERROR_CHARS - 3] + "..."
    return text


@contextlib.contextmanager
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def main_wrapper(fn: Callable[[Optional[List[str]]], int], argv: Optional[List[str]] = None,
                 t0: Optional[float] = None) -> int:
    """Run ``fn(argv)``; turn user errors into one line and exit status 2.

    Parameters
    ----------
    fn : callable
        A main function, ``fn(argv) -> exit status``.
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``, as argparse reads them).
    t0 : float, optional
        When the calling script started (for the start-up times).

    Returns
    -------
    int
        ``fn``'s status; 2 after a :class:`LasresError` or an ``OSError``,
        130 after Ctrl-C, 143 after SIGTERM (``kill``), which inside ``fn``
        raises :class:`lasres.train.interrupts.Terminated`, a KeyboardInterrupt.
    """
    global _T0
    _T0 = t0
    try:
        with _quiet_warnings(), sigterm_as_interrupt():
            return fn(argv)
    except LasresError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return interrupted_status(exc)
    except OSError as exc:  # a full disk, a folder removed under us, permissions...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {one_line(f'{exc.strerror or exc}{where}')}", file=sys.stderr)
        return 2
