"""Stopping a run cleanly: Ctrl-C (SIGINT) and ``kill`` (SIGTERM, what a batch
scheduler sends at its time limit) both end a run as a KeyboardInterrupt, and
neither may land in the middle of the bookkeeping that ends an epoch.

``sigterm_as_interrupt``
    SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) inside the block
    instead of killing the process outright (the front ends run in one).
``deferred_interrupts``
    A signal that arrives inside the block is held and raised when it ends,
    so that the checkpoints and the history written there are a whole epoch.
``interrupted_status``
    The exit status for an interrupted run (130 after Ctrl-C, 143 after
    SIGTERM).
"""
import contextlib
import signal
import threading

__all__ = ["Terminated", "sigterm_as_interrupt", "deferred_interrupts", "interrupted_status"]


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM inside :func:`sigterm_as_interrupt`:
    the run stops as after Ctrl-C (the unfinished epoch discarded, ``last.h5``
    the resume point, one line) rather than being killed mid-write."""


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """``128 + signal``, as a shell reports it: 143 after :class:`Terminated`,
    130 after any other KeyboardInterrupt."""
    return 128 + int(signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)


def _raise_terminated(signum, frame):
    raise Terminated()


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises :class:`Terminated` in the main thread.

    A SIGTERM handler someone else installed is left alone, and so is a
    block entered off the main thread (only it may set handlers)."""
    if not _on_main_thread() or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def deferred_interrupts():
    """Hold SIGINT and SIGTERM while the block runs; raise the first one held
    (KeyboardInterrupt, or :class:`Terminated` for SIGTERM) when it ends.

    Only signals that would raise are held: Python's default SIGINT handler
    and the handler :func:`sigterm_as_interrupt` installs. An ignored SIGINT
    (a ``nohup`` background job) stays ignored, a default SIGTERM still kills.
    If the block itself raises, that exception wins."""
    if not _on_main_thread():
        yield
        return
    pending = []

    def hold(signum, frame):
        pending.append(signum)

    saved = {}
    for sig, raising in ((signal.SIGINT, signal.default_int_handler),
                         (signal.SIGTERM, _raise_terminated)):
        if signal.getsignal(sig) is raising:
            saved[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if pending:
        raise Terminated() if pending[0] == signal.SIGTERM else KeyboardInterrupt()
