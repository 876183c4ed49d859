"""The command line of a multi-process run (see :mod:`lasres.train.distributed`):
its flags, and the supervisor that runs each process's training in a child.

* :func:`add_arguments` / :func:`settings_from_args`: ``--coordinator
  HOST:PORT --num-processes P --process-id I --dist-timeout S``, or the same
  through ``LASRES_COORDINATOR``, ``LASRES_NUM_PROCESSES``,
  ``LASRES_PROCESS_ID`` and ``LASRES_DIST_TIMEOUT`` (flags win); inside a
  SLURM step of several tasks (``srun``) with none of them set, JAX reads
  the coordinator and the process ids from SLURM's variables.
* :func:`supervise`: runs the training command in a child process and turns
  its crash into one ``error:`` line. When a process of the run dies, JAX's
  distributed runtime stops the others itself (by aborting them) — at once
  when the coordinator dies, after ``S`` seconds without a heartbeat
  otherwise; the supervisor then reports it instead of a bare abort.
"""
import os
import signal
import subprocess
import sys

from ..train.distributed import (DEFAULT_TIMEOUT, JOINED_FD_ENV, MIN_STARTUP_TIMEOUT, WORKER_ENV,
                           Settings)
from ..errors import LasresError

__all__ = ["ENVIRONMENT", "add_arguments", "settings_from_args", "supervise"]

#: The environment variables read when the flags are not given.
ENVIRONMENT = {"coordinator": "LASRES_COORDINATOR", "num_processes": "LASRES_NUM_PROCESSES",
               "process_id": "LASRES_PROCESS_ID", "timeout": "LASRES_DIST_TIMEOUT"}


def add_arguments(parser):
    """Add ``--coordinator``, ``--num-processes``, ``--process-id`` and
    ``--dist-timeout`` to an :mod:`argparse` parser."""
    parser.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                        help="jax backend, several processes (hosts): process 0's address and a "
                             "free port (also $LASRES_COORDINATOR)")
    parser.add_argument("--num-processes", type=int, default=None, metavar="P",
                        help="number of processes of the run (also $LASRES_NUM_PROCESSES)")
    parser.add_argument("--process-id", type=int, default=None, metavar="I",
                        help="this process, 0..P-1; 0 writes the run folder "
                             "(also $LASRES_PROCESS_ID)")
    parser.add_argument("--dist-timeout", type=int, default=None, metavar="S",
                        help="a process silent for S seconds stops the run "
                             f"(default {DEFAULT_TIMEOUT}; also $LASRES_DIST_TIMEOUT)")


def _int(value, what):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LasresError(f"{what} must be an integer, got {value!r}") from None


def settings_from_args(args, environ=None):
    """The :class:`Settings` of a command line (flags, then environment
    variables, then SLURM), or ``None`` for a one-process run.

    Parameters
    ----------
    args : argparse.Namespace
        With the attributes :func:`add_arguments` adds (missing ones count
        as not given).
    environ : mapping, optional
        Defaults to :data:`os.environ`.

    Raises
    ------
    LasresError
        For an incomplete or inconsistent setting.
    """
    env = os.environ if environ is None else environ
    given = {}
    for key, var in ENVIRONMENT.items():
        flag = getattr(args, "dist_timeout" if key == "timeout" else key, None)
        if flag is not None:
            given[key] = (flag, "--" + ("dist-timeout" if key == "timeout"
                                        else key.replace("_", "-")))
        elif env.get(var, "").strip():
            given[key] = (env[var].strip(), "$" + var)
    timeout = DEFAULT_TIMEOUT
    if "timeout" in given:
        timeout = _int(*given.pop("timeout"))
        if timeout < 1:
            raise LasresError(f"the distributed timeout must be at least 1 second, got {timeout}")
    if not given:
        n_tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
        if n_tasks and "SLURM_PROCID" in env and _int(n_tasks, "$SLURM_NTASKS") > 1 \
                and (getattr(args, "backend", None) or env.get("LASRES_BACKEND")) == "jax":
            return Settings(timeout=timeout, slurm=True)
        return None
    names = {"coordinator": "--coordinator HOST:PORT", "num_processes": "--num-processes P",
             "process_id": "--process-id I"}
    missing = [names[k] for k in names if k not in given]
    if missing:
        what = ", ".join(src for _, src in given.values())
        variables = ", ".join(ENVIRONMENT[k] for k in names)
        raise LasresError(f"{what} given without {', '.join(missing)}: a multi-process run "
                          f"needs all three (or the variables {variables})")
    coordinator, src = given["coordinator"]
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LasresError(f"{src} must be HOST:PORT (process 0's address and a free port), "
                          f"got {coordinator!r}")
    n = _int(*given["num_processes"])
    i = _int(*given["process_id"])
    if n < 1:
        raise LasresError(f"the number of processes must be at least 1, got {n}")
    if not 0 <= i < n:
        raise LasresError(f"the process id must be in 0..{n - 1} for {n} processes, got {i}")
    return Settings(coordinator=str(coordinator), num_processes=n, process_id=i,
                    timeout=timeout)


# --- the supervisor ------------------------------------------------------------

# A worker that failed leaves at once: JAX's orderly shutdown would wait
# for the other processes (and then abort with a second message).
_WORKER_CODE = ("import os, sys; from lasres.cli import main_wrapper, {entry}; "
                "status = main_wrapper({entry}, sys.argv[1:], "
                "t0=float(os.environ.pop('LASRES_T0', '') or 0) or None); "
                "sys.stdout.flush(); sys.stderr.flush(); "
                "os._exit(status) if status else sys.exit(0)")


def _die_with_parent():  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGKILL when the supervisor dies."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def supervise(argv, settings, entry="train_main", log=None, t0=None):
    """Run ``lasres.cli.<entry>(argv)`` in a child process (which joins the
    distributed run) and wait for it.

    The child's output goes straight to this process's; SIGTERM is passed on
    (SIGINT from a terminal reaches both). If the child crashes — JAX's
    distributed runtime aborts the survivors of a run that lost a process,
    a signal kills it, an unexpected exception — one ``error:`` line says
    which process stopped and why, and the status is 1. Exit statuses of
    an orderly end (0, 2 for a user error already reported, 130 for an
    interrupt) are passed through.

    Parameters
    ----------
    argv : list of str or None
        The command-line arguments (``None``: ``sys.argv[1:]``).
    settings : Settings
    entry : str
        A function of :mod:`lasres.cli` taking ``argv``.
    log : callable, optional
        Where the error line goes (default: standard error).
    t0 : float, optional
        When the command started (``time.time()``), for the child's report
        of its start-up time.

    Returns
    -------
    int
        The exit status.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ)
    env[WORKER_ENV] = "1"
    if t0 is not None:
        env["LASRES_T0"] = repr(float(t0))
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in
                                         env.get("PYTHONPATH", "").split(os.pathsep) if p])
    cmd = [sys.executable, "-c", _WORKER_CODE.format(entry=entry)] + argv
    joined_r, joined_w = os.pipe()
    env[JOINED_FD_ENV] = str(joined_w)
    try:
        child = subprocess.Popen(cmd, env=env, pass_fds=(joined_w,),
                                 preexec_fn=_die_with_parent
                                 if sys.platform.startswith("linux") else None)
    finally:
        os.close(joined_w)

    def forward(signum, frame):
        child.send_signal(signum)

    old_term = signal.signal(signal.SIGTERM, forward)
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal signals the child too
    try:
        status = child.wait()
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    os.set_blocking(joined_r, False)
    try:
        joined = os.read(joined_r, 1) == b"1"
    except BlockingIOError:
        joined = False
    finally:
        os.close(joined_r)
    if status in (0, 2, 130):
        return status
    who = settings.describe()
    startup = max(settings.timeout, MIN_STARTUP_TIMEOUT)
    if not joined and status in (-signal.SIGABRT, 128 + signal.SIGABRT):
        reason = (f"could not join the run at {settings.coordinator or 'the SLURM coordinator'} "
                  f"within {startup} s (are all processes started, with the same coordinator, "
                  "and is its port reachable?)")
    elif status < 0 or status == 128 + signal.SIGABRT:
        signum = -status if status < 0 else signal.SIGABRT
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        reason = (f"stopped by {name}: the run lost a process (JAX's distributed runtime stops "
                  f"the others when one dies, or sends no heartbeat for {settings.timeout} s)"
                  if signum == signal.SIGABRT else f"killed by {name}")
    else:
        reason = f"failed with exit status {status}"
    line = f"error: {who} {reason}; see the messages above"
    (log or (lambda text: print(text, file=sys.stderr, flush=True)))(line)
    return 1
