"""Reading an untrusted file in a child process, under a time and a memory limit.

libhdf5 trusts the structure of the files it reads. A damaged file can make
it loop forever (a global heap collection whose free-space object has the
wrong size: libhdf5 then parses an object of size 0 again and again) or
crash the process. :func:`run_isolated` therefore runs the parse of an
untrusted HDF5 file in a child forked for it:

* the child's address space is capped (``RLIMIT_AS``: what the process maps
  at the fork, plus twice the file's byte budget, plus
  :data:`MEMORY_SLACK`);
* the parent waits at most ``timeout`` seconds (:func:`default_timeout`:
  :data:`TIMEOUT_S` plus :data:`SECONDS_PER_GIB` per GiB of file) and then
  kills the child;
* the result travels back as a pickle that the parent reads with the
  restricted unpickler of :mod:`lasres.io.safepickle`, capped at the byte
  budget: only arrays of the declared sizes, builtin containers and
  scalars, nothing more than the budget.

A hang, a crash or running out of memory becomes one
:class:`lasres.errors.WeightFileError`; a ``WeightFileError`` raised in the
child is raised again, with the same message, in the parent. Where ``fork``
does not exist (Windows) the function runs in the calling process.
"""
from __future__ import annotations

import contextlib
import faulthandler
import gc
import io
import os
import pickle
import select
import signal
import time
import warnings
from typing import Any, Callable

from ..errors import WeightFileError
from .safepickle import restricted_load
from .sizecheck import format_bytes

__all__ = ["run_isolated", "default_timeout", "TIMEOUT_S", "SECONDS_PER_GIB",
           "MEMORY_SLACK", "METADATA_BYTES"]

#: Seconds any parse may take, whatever the file's size; ``LASRES_HDF5_TIMEOUT``
#: (in seconds) replaces it, e.g. for files on a slow network disk.
TIMEOUT_S = 5.0
#: Seconds added per GiB of file.
SECONDS_PER_GIB = 30.0
#: Address space the child may map beyond the file's arrays (libhdf5's caches,
#: Python objects).
MEMORY_SLACK = 256 * 1024 ** 2
#: Bytes the result may hold beyond its arrays (names, JSON metadata).
METADATA_BYTES = 64 * 1024 ** 2

_PICKLE_PROTOCOL = 5


def default_timeout(path) -> float:
    """Seconds the parse of ``path`` may take: :data:`TIMEOUT_S` (or
    ``$LASRES_HDF5_TIMEOUT``) plus :data:`SECONDS_PER_GIB` per GiB of file."""
    base = TIMEOUT_S
    env = os.environ.get("LASRES_HDF5_TIMEOUT")
    if env:
        try:
            base = max(float(env), 0.1)
        except ValueError:
            pass
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return base + SECONDS_PER_GIB * size / 1024 ** 3


class _Timeout(Exception):
    pass


class _PipeReader(io.RawIOBase):
    """The read end of a pipe, giving up at ``deadline`` (``time.monotonic()``)."""

    def __init__(self, fd, deadline):
        super().__init__()
        self._fd = fd
        self._deadline = deadline
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def readable(self):
        return True

    def readinto(self, b):
        left = self._deadline - time.monotonic()
        if left <= 0 or not self._poll.poll(max(int(left * 1000), 1)):
            raise _Timeout()
        return os.readv(self._fd, [b])


def _status_bytes(key):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _memory_limit(max_bytes):
    """The child's ``RLIMIT_AS`` soft limit, or None where it cannot be set."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    mapped = _status_bytes("VmSize")
    if mapped is None:  # pragma: no cover - no /proc
        return None
    limit = mapped + 2 * int(max_bytes) + MEMORY_SLACK
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return limit if soft == resource.RLIM_INFINITY else min(limit, soft)


def _h5py_lock():
    """h5py's global lock, held across the fork so that no other thread holds it
    in the child; a null context where h5py is absent or differs."""
    try:
        from h5py import _objects
        return getattr(_objects, "phil", None) or contextlib.nullcontext()
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()


def _child(func, args, rfd, wfd, limit, mask):
    """Run in the forked child: never returns."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which kills us
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's raise-in-main handler
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        faulthandler.disable()  # a crash is reported by the parent, in one line
        # The cyclic collector would walk (and so copy-on-write) every object the
        # parent has; the reader lives a fraction of a second.
        gc.disable()
        os.close(rfd)
        if limit is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_AS,
                               (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        try:
            reply = ("ok", func(*args))
        except WeightFileError as exc:
            reply = ("error", str(exc))
        except MemoryError:
            reply = ("memory", limit)
        except BaseException as exc:  # a bug or an unforeseen library error
            msg = str(exc).strip().splitlines()
            reply = ("exception", f"{type(exc).__name__}: {msg[0]}" if msg
                     else type(exc).__name__)
        with os.fdopen(wfd, "wb", buffering=1 << 20) as out:
            # Protocol 5 sends each array's bytes once, as a bytearray the parent's
            # array then uses; fast mode writes no memo (the reply is a tree), so
            # nothing keeps a second copy alive while the parent unpickles.
            pickler = pickle.Pickler(out, protocol=_PICKLE_PROTOCOL)
            pickler.fast = True
            pickler.dump(reply)
    except BaseException:
        code = 70
    finally:
        os._exit(code)


def _reap(pid, deadline):
    """Wait for the child until ``deadline``, then kill it; return its wait status
    (0 where SIGCHLD is ignored and the system reaped it)."""
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                return os.waitpid(pid, 0)[1]
            time.sleep(0.001)
    except (ChildProcessError, ProcessLookupError):
        return 0


def run_isolated(func: Callable[..., Any], *args, path, max_bytes: int,
                 timeout: float | None = None, what: str = "HDF5 file") -> Any:
    """Return ``func(*args)``, computed in a child process under limits.

    Parameters
    ----------
    func : callable
        Reads the untrusted file and returns plain data: numeric NumPy
        arrays, lists, tuples, dicts, strings, numbers, None. It signals a
        bad file with :class:`WeightFileError`.
    *args
        Its arguments (inherited by the child, never pickled).
    path : str
        The file, for the messages (and the default timeout).
    max_bytes : int
        Most bytes the arrays of the result may take (the file's byte
        budget): it sizes the child's memory limit and caps the result.
    timeout : float, optional
        Seconds before the child is killed (default :func:`default_timeout`).
    what : str
        How the messages name the file.

    Returns
    -------
    object
        What ``func`` returned (tuples may come back as tuples or lists).

    Raises
    ------
    WeightFileError
        What ``func`` raised, or: it did not finish within ``timeout``, it
        needed more memory than its limit, it crashed, or it failed otherwise.
    """
    if not hasattr(os, "fork"):  # pragma: no cover - Windows: no isolation
        return func(*args)
    path = os.fspath(path)
    timeout = default_timeout(path) if timeout is None else float(timeout)
    limit = _memory_limit(max_bytes)
    rfd, wfd = os.pipe()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with warnings.catch_warnings(), _h5py_lock():
            warnings.simplefilter("ignore")  # e.g. JAX's "os.fork() was called"
            pid = os.fork()
        if pid == 0:
            _child(func, args, rfd, wfd, limit, mask)
    except OSError as exc:  # no process left to fork (EAGAIN, ENOMEM)
        os.close(rfd)
        raise WeightFileError(f"{path}: cannot start a reader for the {what} ({exc})") from None
    finally:  # (the child never gets here)
        os.close(wfd)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    deadline = time.monotonic() + timeout
    reply, grace = None, 1.0
    try:
        with io.BufferedReader(_PipeReader(rfd, deadline), 1 << 20) as reader:
            reply = restricted_load(reader, max_bytes=int(max_bytes) + METADATA_BYTES)
    except _Timeout:
        grace = 0.0
        raise WeightFileError(f"{path}: {what} did not finish reading in {timeout:.0f} s: "
                              f"corrupt? (libhdf5 can loop forever on a damaged file; the "
                              f"reader was stopped)") from None
    except EOFError:  # the child died before it finished; its status says why
        reply = None
    except Exception as exc:  # over the cap, or not plain data (ForbiddenPickleError)
        raise WeightFileError(f"{path}: refusing what the reader of the {what} returned "
                              f"({type(exc).__name__}: {exc})") from None
    finally:
        os.close(rfd)
        status = _reap(pid, deadline if reply is not None else time.monotonic() + grace)
    if reply is None or not isinstance(reply, tuple) or len(reply) != 2:
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = sig
            raise WeightFileError(f"{path}: reading the {what} crashed the reader (signal "
                                  f"{name}): corrupt?")
        raise WeightFileError(f"{path}: reading the {what} failed (reader exit status "
                              f"{os.WEXITSTATUS(status)}): corrupt?")
    kind, value = reply
    if kind == "ok":
        return value
    if kind == "error":
        raise WeightFileError(str(value))
    if kind == "memory":
        raise WeightFileError(f"{path}: reading the {what} needed more than "
                              f"{format_bytes(value or 0)} of memory: corrupt?")
    raise WeightFileError(f"{path}: corrupt {what}? reading it failed ({value})")
