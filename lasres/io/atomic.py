"""Atomic file replacement, shared by every writer of lasres (weights,
checkpoints, pixel means, histories): a crash mid-write leaves the previous
file intact; the temporary file of an interrupted write (``kill -9``) is
removed by the next write of the same file; files get the user's umask."""
import contextlib
import os
import re
import tempfile

__all__ = ["atomic_path", "remove_stale_temporaries"]

_TMP = re.compile(r"\.(?P<base>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp\Z")


def _fsync_dir(dirname):
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _umask():
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or not ours to judge)
    return True


def remove_stale_temporaries(path):
    """Remove the temporary files that interrupted writes of ``path`` left.

    They are named ``.BASENAME.PID.RANDOM.tmp`` beside ``path``; those of a
    process that no longer runs are removed, those of a live process (a
    concurrent writer) are left alone.

    Returns
    -------
    list of str
        The files removed.
    """
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.split(path)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if not m or m.group("base") != base or _alive(int(m.group("pid"))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; when the block succeeds, the
    file written there is given the mode a plain ``open`` would give it
    (``0o666`` less the umask), fsynced and renamed over ``path``; when it
    fails, the temporary file is removed and ``path`` is untouched.
    Temporary files left by killed writers of ``path`` are removed first."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.{os.getpid()}.",
                               suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
